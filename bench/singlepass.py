"""What the mirror pass buys: the shipped model's two-pass embedding (the face and its mirror image, summed) against
the face's own pass alone, both read from the same interpreter call on the same crops (issue 30: a Pi 4 could skip
the mirror pass to halve the embedding cost).

    python -m bench.singlepass --model models/doorface-dlib-int8.tflite [--folds 1,2] [--seeds 3]

The shipped file runs both halves as one batch of two (``train.model.flip_averaged``); with the interpreter's
``experimental_preserve_all_tensors`` the batch's embeddings before they are summed are kept, and the first row is
the single-pass embedding. LFW pairs-dev, the held-out folds: TAR at FAR 1e-3 over all pairs of the folds' images
(:func:`bench.accuracy.pairs_report`) and the open set with the door's default rule (global threshold and margin of
the sidecar, each person's own threshold against the shipped cohort, the margin over the closest cohort strangers;
enrolled photos as jittered templates), as ``python -m bench`` measures them. The single-pass numbers use the two-pass
model's thresholds and cohort: a single-pass model would need its own (``convert --no-flip-average``).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from bench.common import progress


class BothPasses:
    """The shipped embedder, keeping the batch (face, mirror) before the sum: ``embed(crop) -> (two, single)``."""

    def __init__(self, model: str, threads: int = 2):
        from edge.vision.embedder import Embedder
        from edge.vision.runtime import interpreter_class

        self.emb = Embedder(model, threads).load()
        _, cls = interpreter_class()
        self.interp = cls(model_path=model, num_threads=threads, experimental_preserve_all_tensors=True)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        out = self.interp.get_output_details()[0]
        pairs = [d for d in self.interp.get_tensor_details()
                 if tuple(d["shape"]) == (2, self.emb.dim) and d["index"] < out["index"]]
        if not pairs:
            raise SystemExit(f"{model}: no (2, {self.emb.dim}) tensor: not a mirror-averaged model")
        self.pair = pairs[-1]     # the last batch-of-two embedding before the split and sum
        self.out = out

    def embed(self, crop):
        from edge.vision.embedder import l2_normalise

        self.interp.set_tensor(self.inp["index"], self.emb._quantise_input(crop))
        self.interp.invoke()
        two = self.emb._dequantise_output(self.interp.get_tensor(self.out["index"])[0])
        q = self.interp.get_tensor(self.pair["index"])[0]
        scale, zero = self.pair["quantization"]
        one = (q.astype(np.float32) - zero) * scale if scale else q.astype(np.float32)
        return l2_normalise(two), l2_normalise(one)


def embed_both(images, model, detector, threads=2):
    """(two-pass, single-pass) face embeddings and templates of the central face of every image, and ``found``."""
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.jitter import JITTERS, jittered
    from edge.vision.embedder import l2_normalise
    from train.preprocess import pick_central

    det = BlazeFaceDetector(detector, num_threads=threads)
    both = BothPasses(model, threads)
    n, dim = len(images), both.emb.dim
    emb = {k: np.zeros((n, dim), np.float32) for k in ("two", "one")}
    tmpl = {k: np.zeros((n, dim), np.float32) for k in ("two", "one")}
    ok = np.zeros(n, bool)
    for i, img in enumerate(progress("two and single pass")(images)):
        f = pick_central(det.detect(img), img.shape)
        if f is None:
            continue
        crop = both.emb.crop(img, f)
        outs = [both.embed(c) for c in [crop, *jittered(crop, JITTERS)]]
        ok[i] = True
        for j, k in enumerate(("two", "one")):
            emb[k][i] = outs[0][j]
            tmpl[k][i] = l2_normalise(np.mean([o[j] for o in outs], axis=0))
    return emb, tmpl, ok


def main(argv=None) -> int:
    from bench import accuracy as A
    from edge.config import defaults
    from edge.people import cohort
    from edge.vision.sidecar import operating_point, read_sidecar, stranger_neighbours
    from train.data import fold_pairs

    ap = A.lfw_arguments(argparse.ArgumentParser(prog="python -m bench.singlepass"), folds="1,2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    pairs, people = fold_pairs(args.pairs, args.folds)
    keys, persons, images = A.load_images(args.lfw, people)
    emb, tmpl, ok = embed_both(images, args.model, args.detector)
    meta, match = read_sidecar(args.model), defaults()["match"]
    thr, margin, _ = operating_point(meta, match)
    c = cohort.load(cohort.shipped_path(args.model))
    k = stranger_neighbours(meta, match)
    res = {"model": args.model, "folds": args.folds, "images": len(images), "faces_found": int(ok.sum()),
           "threshold": thr, "margin": margin}
    for name in ("two", "one"):
        rep = A.pairs_report(A.similarity(emb[name], ok, "cosine"), keys, persons, pairs)
        door = A.door_similarity(emb[name], tmpl[name], ok)
        t = tmpl[name]
        crowd = cohort.crowding(emb[name], c.embeddings, k) if k else None
        o = A.open_set_runs(door, persons, thr, margin=margin, own=lambda idx, t=t: c.threshold(t[idx]),
                            crowd=crowd, seeds=args.seeds)
        res[name] = {kk: v for kk, v in rep.items() if not kk.startswith("_")}
        res[name]["open_set"] = o
    print(json.dumps(res, indent=1, default=float))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
