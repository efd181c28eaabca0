"""Held-out accuracy under door conditions: enrolled clean, seen again in the dark, in IR, blurred, small or side-lit.

Each condition is a fixed, seeded degradation of an aligned crop (pure NumPy/OpenCV, so every model sees the same
pixels). A pair is scored as the door scores it: the first image clean (the enrolment), the second degraded (the
visitor); all-pairs TAR likewise (row image clean, column image degraded).

    python -m train.doorcond --model runs/dlib/model.keras [--model ...] --cache .cache/...-dlib150.npz \
        --pairs ../shared/data/lfw/pairs-dev.txt --folds 1,2 [--out runs/x/doorcond.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.vision.embedder import l2_normalise


def _grey_ir(c, rng):
    g = cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g = np.clip((g - 128) * 1.25 + 128, 0, 255)
    return np.repeat(g[..., None], 3, 2)


def _low_light(c, rng):
    return c.astype(np.float32) * 0.22 + rng.normal(0, 4.0, c.shape)


def _motion_blur(c, rng):
    k = np.zeros((9, 9), np.float32)
    k[4, :] = 1 / 9
    return cv2.filter2D(c.astype(np.float32), -1, k, borderType=cv2.BORDER_REFLECT)


def _low_res(c, rng):
    side = c.shape[0]
    small = cv2.resize(c, (side // 4, side // 4), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _side_light(c, rng):
    ramp = np.linspace(0.25, 1.35, c.shape[1], dtype=np.float32)[None, :, None]
    return c.astype(np.float32) * ramp


CONDITIONS = {"clean": lambda c, rng: c.astype(np.float32), "grey_ir": _grey_ir, "low_light": _low_light,
              "motion_blur": _motion_blur, "low_res": _low_res, "side_light": _side_light}


def degrade(crops: np.ndarray, condition: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fn = CONDITIONS[condition]
    return np.stack([np.clip(fn(c, rng), 0, 255) for c in crops]).astype(np.uint8)


def cross_report(clean: np.ndarray, degraded: np.ndarray, keys, persons, pairs) -> dict:
    """Verification report with the first image of every pair clean and the second degraded."""
    from train.metrics import verification_report

    a, b = l2_normalise(clean), l2_normalise(degraded)
    at = {k: i for i, k in enumerate(keys)}
    rows = [(p, at[p.key_a], at[p.key_b]) for p in pairs if p.key_a in at and p.key_b in at]
    scores = np.array([float(a[i] @ b[j]) for _, i, j in rows])
    sims = a @ b.T
    iu = np.triu_indices(len(keys), 1)
    persons = np.asarray(persons)
    same = persons[iu[0]] == persons[iu[1]]
    return verification_report(scores, np.array([p.same for p, _, _ in rows]), np.array([p.fold for p, _, _ in rows]),
                               sims[iu][same], sims[iu][~same])


def evaluate(embed, crops, keys, persons, pairs, conditions=tuple(CONDITIONS)) -> dict:
    clean = embed(crops)
    out = {}
    for cond in conditions:
        rep = cross_report(clean, clean if cond == "clean" else embed(degrade(crops, cond)), keys, persons, pairs)
        out[cond] = {"accuracy": rep["accuracy"], "tar_1e-3": rep["at_far"]["0.001"]["tar"],
                     "tar_1e-4": rep["at_far"]["0.0001"]["tar"]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.doorcond", description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help=".keras or .tflite, optionally LABEL=PATH")
    ap.add_argument("--cache", required=True, help="alignment cache whose crops fit the models (template)")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--folds", default="1,2")
    ap.add_argument("--out", help="write the figures here (.json)")
    args = ap.parse_args(argv)
    from train.evaluate import eval_subset, keras_embedder, tflite_embedder
    from train.data import parse_folds, read_pairs
    from train.preprocess import load_cache

    cache = load_cache(args.cache)
    idx, pairs = eval_subset(cache, read_pairs(args.pairs), parse_folds(args.folds))
    res = {}
    for m in args.model:
        label, path = m.split("=", 1) if "=" in m else (Path(m).name, m)
        fn = keras_embedder(path) if path.endswith(".keras") else tflite_embedder(path)
        res[label] = evaluate(fn, cache["crops"][idx], cache["keys"][idx], cache["persons"][idx], pairs)
        for cond, r in res[label].items():
            print(f"{label:<24} {cond:<12} acc {100 * r['accuracy']:6.2f}%  TAR@1e-3 {100 * r['tar_1e-3']:6.2f}%  "
                  f"TAR@1e-4 {100 * r['tar_1e-4']:6.2f}%")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"folds": args.folds, "images": int(len(idx)), "models": res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
