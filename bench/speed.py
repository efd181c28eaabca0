"""Per-stage speed of one engine in its own process (so startup time and peak RSS are its own).

    python -m bench.speed doorface|dlib --threads N --frames FRAMES.npz [--model M] [--repeat R]

Prints one JSON object: ms per stage (median), whole-loop frames per second, startup seconds to ready, peak RSS MB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's peak: Linux keeps it across exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_ms(ts):
    return float(np.median(ts) * 1000)


def _door_strangers(emb):
    """The shipped cohort's embeddings and how many of a face's closest ones the door's margin is taken over
    (``(None, 0)`` for a model whose default does not)."""
    from edge.people import cohort as co
    from edge.config import defaults
    from edge.vision.sidecar import stranger_neighbours

    k = stranger_neighbours(emb.meta, defaults()["match"])
    path = co.shipped_path(emb.model_path)
    if not k or not path.exists():
        return None, 0
    return co.load(path, emb.sha256).embeddings, k


def bench_doorface(frames, threads, model, detector, repeat, gallery_size=100):
    t0 = time.perf_counter()
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder
    from edge.people.matcher import TemplateIndex
    from edge.vision.analyzer import FaceAnalyzer
    from edge.vision.quality import QualityConfig

    det = BlazeFaceDetector(detector, num_threads=threads).load()
    emb = Embedder(model, threads).load()
    rng = np.random.default_rng(0)
    g = rng.normal(size=(gallery_size, emb.dim)).astype(np.float32)
    strangers, k = _door_strangers(emb)      # the match stage as the door runs it (margin over cohort strangers)
    index = TemplateIndex(g / np.linalg.norm(g, axis=1, keepdims=True), [f"p{i // 5}" for i in range(gallery_size)],
                          strangers=strangers, stranger_k=k)
    an = FaceAnalyzer(det, emb, QualityConfig())
    an.analyze(frames[0])  # warm up
    startup = time.perf_counter() - t0
    st = {"detect": [], "align": [], "embed": [], "match": []}
    for _ in range(repeat):
        for f in frames:
            a = time.perf_counter()
            faces = det.detect(f)
            b = time.perf_counter()
            crop = emb.crop(f, faces[0])
            c = time.perf_counter()
            e = emb.embed_crop(crop)
            d = time.perf_counter()
            index.match(e)
            z = time.perf_counter()
            for k, v in zip(st, (b - a, c - b, d - c, z - d)):
                st[k].append(v)
    t = time.perf_counter()
    n = 0
    for _ in range(repeat):
        for f in frames:
            res = an.analyze(f)
            if res is not None and res.embedding is not None:
                index.match(res.embedding)   # as the door's loop does
            n += 1
    loop = time.perf_counter() - t
    return st, n / loop, startup


def bench_dlib(frames, threads, repeat, gallery_size=100):
    t0 = time.perf_counter()
    import face_recognition

    rng = np.random.default_rng(0)
    known = rng.normal(0, 0.1, (gallery_size, 128))
    face_recognition.face_encodings(frames[0])  # loads and warms the models
    startup = time.perf_counter() - t0
    st = {"detect": [], "align": [], "embed": [], "match": []}
    for _ in range(repeat):
        for f in frames:
            a = time.perf_counter()
            locs = face_recognition.face_locations(f)          # HOG, as in the door-lock tutorials
            b = time.perf_counter()
            enc = face_recognition.face_encodings(f, locs)     # 5-point landmarks + chip + ResNet
            c = time.perf_counter()
            face_recognition.compare_faces(known, enc[0], tolerance=0.6) if enc else None
            d = time.perf_counter()
            st["detect"].append(b - a)
            st["embed"].append(c - b)   # includes dlib's own alignment (landmarks + chip)
            st["match"].append(d - c)
    t = time.perf_counter()
    n = 0
    for _ in range(repeat):
        for f in frames:
            locs = face_recognition.face_locations(f)
            enc = face_recognition.face_encodings(f, locs)
            if enc:
                face_recognition.compare_faces(known, enc[0], tolerance=0.6)
            n += 1
    loop = time.perf_counter() - t
    return st, n / loop, startup


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=["doorface", "dlib"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", required=True)
    ap.add_argument("--model", default="models/doorface-int8.tflite")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    frames = list(np.load(args.frames)["frames"])
    if args.engine == "doorface":
        st, fps, startup = bench_doorface(frames, args.threads, args.model, args.detector, args.repeat)
    else:
        st, fps, startup = bench_dlib(frames, args.threads, args.repeat)
    out = {"engine": args.engine, "threads": args.threads, "frames": len(frames) * args.repeat,
           "ms": {k: _median_ms(v) if v else 0.0 for k, v in st.items()}, "fps": fps, "startup_s": startup,
           "peak_rss_mb": peak_rss_mb(),
           "tensorflow_imported": "tensorflow" in sys.modules}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
