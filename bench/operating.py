"""Choose a door's operating point from open-set figures: stranger accepts and enrolled rejects for each of the
model's FAR thresholds x a range of margins, on LFW folds the thresholds were not fitted on.

    python -m bench.operating --model models/doorface-dlib-int8.tflite --folds 3,4,5 [--seeds 3]

The protocol is ``bench.accuracy.open_set`` (half the people with 2+ images enrolled from 1-3 images, single-image
decisions), repeated over ``--seeds`` random enrolments; counts are summed over them. Convert with
``python -m convert ... --min-margin M`` to record the chosen margin in the sidecar.
"""
from __future__ import annotations

import argparse
import json
import sys

MARGINS = (0.0, 0.01, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05)


def sweep(sim, persons, thresholds: dict, margins=MARGINS, seeds: int = 3) -> list:
    from bench.accuracy import open_set_runs

    rows = []
    for far, thr in thresholds.items():
        for margin in margins:
            o = open_set_runs(sim, persons, thr, margin, seeds)
            rows.append({"far_target": far, "threshold": float(thr), "margin": margin, **{
                k: o[k] for k in ("strangers_accepted", "stranger_probes", "false_accept_rate", "false_reject_rate",
                                  "genuine_probes")}})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.operating", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--folds", default="3,4,5")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    from bench import accuracy as A
    from bench.__main__ import progress
    from edge.sidecar import read_sidecar
    from train.data import fold_pairs

    _, people = fold_pairs(args.pairs, args.folds)
    keys, persons, images = A.load_images(args.lfw, people)
    emb, ok = A.embed_doorface(images, args.model, args.detector, progress=progress("embed"))
    sim = A.similarity(emb, ok, "cosine")
    meta = read_sidecar(args.model)
    thresholds = {k[4:]: v for k, v in meta["thresholds"].items()}
    rows = sweep(sim, persons, thresholds, seeds=args.seeds)
    print(f"{len(keys)} images of {len(people)} people (folds {args.folds}), {int(ok.sum())} faces found; "
          f"{args.seeds} enrolments")
    print(f"{'FAR':>5} {'threshold':>9} {'margin':>6} {'stranger accept':>22} {'enrolled reject':>15}")
    for r in rows:
        print(f"{r['far_target']:>5} {r['threshold']:>9.4f} {r['margin']:>6.3f} "
              f"{100 * r['false_accept_rate']:>8.3f}% ({r['strangers_accepted']:>4}/{r['stranger_probes']}) "
              f"{100 * r['false_reject_rate']:>14.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "folds": args.folds, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
