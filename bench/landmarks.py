"""dlib's 5-point landmarks and face chip on the device (``edge.vision.landmarks``, ``edge.vision.chip``) against
dlib itself, and what they would change for the embedder.

    python -m bench.landmarks [--lfw ../shared/data/lfw/lfw-deepfunneled-train.tgz] [--count 200]
                              [--landmarks models/doorface-landmarks5.npz] [--model models/doorface-dlib-int8.tflite]
                              [--out benchmarks/landmarks.json]

On the sample photos and on LFW images ``i % 10 == 6`` (the converter's box-map evaluation set; never fitted on):

- **landmarks**: the port vs ``dlib.shape_predictor`` on dlib's HOG boxes (max over points, px);
- **chip**: ``edge.vision.chip.face_chip`` vs ``dlib.get_face_chip`` on dlib's landmarks (mean and max absolute
  pixel difference) and the shipped dlib ResNet port's embedding of both (cosine);
- **the door's crops vs dlib's chip** (cosine of the embeddings): the crop before 5-point landmarks (BlazeFace's 4 keypoints aligned to
  the ``dlib150`` template) and the crop this port would give (BlazeFace box -> box map -> the
  port's 5 points -> dlib's chip), both against dlib's own chip (HOG box, dlib's points, ``get_face_chip``);
- **time** per face on one thread: the port's ``predict`` (RGB and grey), dlib's, and ``face_chip``.

Needs dlib (desktop only).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

LFW = "../shared/data/lfw/lfw-deepfunneled-train.tgz"


def _ms(fn, repeat: int = 100) -> float:
    for _ in range(5):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1000


def timings(port, ref, rgb: np.ndarray) -> dict:
    """ms per face (one thread, warm) on the first face of ``rgb``."""
    from edge.vision.chip import face_chip

    box = ref.boxes(rgb)[0]
    grey = (rgb.astype(np.uint32).sum(2) // 3).astype(np.uint8)
    rect = ref.dlib.rectangle(*box)
    pts = port.predict(rgb, box, rounded=True)
    return {"port_rgb": round(_ms(lambda: port.predict(rgb, box)), 3),
            "port_grey": round(_ms(lambda: port.predict(grey, box)), 3),
            "dlib_rgb": round(_ms(lambda: ref.sp(rgb, rect)), 3),
            "face_chip": round(_ms(lambda: face_chip(rgb, pts), 20), 3),
            "image": f"{rgb.shape[1]}x{rgb.shape[0]}", "box_px": int(box[2] - box[0])}


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def face_record(rgb, port, ref, emb, detector) -> dict:
    """Every figure for the one face HOG finds in ``rgb`` (None when HOG finds no single face)."""
    from convert.landmarks import iou
    from edge.vision.align import model_input
    from edge.vision.chip import face_chip

    boxes = ref.boxes(rgb)
    if len(boxes) != 1:
        return None
    want = ref.shape(rgb, boxes[0])
    got = port.predict(rgb, boxes[0])
    shape = ref.sp(rgb, ref.dlib.rectangle(*boxes[0]))
    dchip = np.asarray(ref.dlib.get_face_chip(rgb, shape, size=150, padding=0.25))
    pchip = face_chip(rgb, want)
    e_ref = emb.embed_crop(dchip)
    diff = np.abs(dchip.astype(np.int16) - pchip.astype(np.int16))
    rec = {"landmark_max_px": float(np.abs(got - want).max()), "chip_mean_abs": float(diff.mean()),
           "chip_max_abs": int(diff.max()), "chip_cos": cosine(emb.embed_crop(pchip), e_ref)}
    faces = detector.detect(rgb)
    face = max(faces, key=lambda f: iou(f.box, boxes[0])) if faces else None
    if face is not None and iou(face.box, boxes[0]) >= 0.5:      # BlazeFace found the same face
        rec["today_cos"] = cosine(emb.embed_crop(model_input(rgb, face.landmarks, 150, "dlib150")), e_ref)
        rec["port_path_cos"] = cosine(emb.embed_crop(face_chip(rgb, port.predict_blazeface(rgb, face.box))), e_ref)
    return rec


def summarise(recs) -> dict:
    def stats(key):
        v = np.array([r[key] for r in recs if key in r])
        if not len(v):
            return None
        return {"n": int(len(v)), "mean": round(float(v.mean()), 5), "min": round(float(v.min()), 5),
                "p5": round(float(np.percentile(v, 5)), 5), "max": round(float(v.max()), 5)}

    return {k: stats(k) for k in ("landmark_max_px", "chip_mean_abs", "chip_max_abs", "chip_cos", "today_cos",
                                  "port_path_cos")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.landmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", default=LFW)
    ap.add_argument("--count", type=int, default=200, help="LFW images (i %% 10 == 6)")
    ap.add_argument("--landmarks", default="models/doorface-landmarks5.npz")
    ap.add_argument("--model", default="models/doorface-dlib-int8.tflite")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    from convert.dlib import dlib_model_paths
    from convert.landmarks import DlibRef, lfw_images, sample_images
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder
    from edge.vision.landmarks import ShapePredictor

    port = ShapePredictor.load(args.landmarks)
    ref = DlibRef(dlib_model_paths()["shape5"])
    emb = Embedder(args.model, num_threads=2).load()
    det = BlazeFaceDetector(args.detector, num_threads=2)
    samples = list(sample_images())
    out = {"ms_per_face_1thread": timings(port, ref, samples[0][1])}
    print(f"ms per face: {out['ms_per_face_1thread']}", file=sys.stderr)
    sets = {"samples": [rgb for _, rgb in samples]}
    if Path(args.lfw).is_file():
        sets["lfw"] = (rgb for _, _, rgb in lfw_images(args.lfw, lambda i: i % 10 == 6 and i < 10 * args.count))
    for name, images in sets.items():
        recs = [r for r in (face_record(rgb, port, ref, emb, det) for rgb in images) if r is not None]
        out[name] = summarise(recs)
        print(f"{name}: {json.dumps(out[name])}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
