"""Choose a door's operating point from open-set figures: stranger accepts and enrolled rejects for each of the
model's FAR thresholds x a range of margins x how many cohort strangers the margin is also taken over, on LFW folds
the thresholds were not fitted on.

    python -m bench.operating --model models/doorface-dlib-int8.tflite --folds 3,4,5 [--seeds 3]

The protocol is ``bench.accuracy.open_set`` (half the people with 2+ images enrolled from 1-3 images, single-image
decisions), repeated over ``--seeds`` random enrolments; counts are summed over them. Every rule is the door's
default (``[match] calibration = "cohort"``): each enrolled person's own threshold (:mod:`edge.cohort`) and, for
``neighbours`` > 0, the margin taken over the face's closest strangers too (:func:`edge.cohort.crowding`). The
cohort is every LFW photo of people outside ``--folds`` (as the shipped cohort is every photo outside the reporting
folds), labels unused. The chosen rule is the loosest (fewest enrolled rejects) letting in at most ``--max-far`` of
strangers' photos. Convert with ``python -m convert ... --far-target F --min-margin M --stranger-neighbours K`` to
record it in the sidecar.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

MARGINS = (0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04)
NEIGHBOURS = (0, 3, 5, 10)
FARS = ("1e-3", "1e-4", "1e-5")     # those the model's sidecar has


def sweep(sim, persons, thresholds: dict, own=None, crowds=None, margins=MARGINS, seeds: int = 3,
          progress=None) -> list:
    """One row per (FAR, neighbours, margin). ``crowds``: neighbours -> per-image crowding (None for 0)."""
    from bench.accuracy import open_set_runs

    crowds = crowds or {0: None}
    grid = [(far, k, m) for far in thresholds for k in crowds for m in margins]
    rows = []
    for far, k, margin in (progress(grid) if progress else grid):
        o = open_set_runs(sim, persons, thresholds[far], margin, seeds, own=own, crowd=crowds[k])
        rows.append({"far_target": far, "threshold": float(thresholds[far]), "neighbours": k, "margin": margin,
                     **{key: o[key] for key in ("strangers_accepted", "stranger_probes", "false_accept_rate",
                                                "false_reject_rate", "genuine_probes")}})
    return rows


def choose(rows: list, max_far: float):
    """The loosest rule (fewest enrolled rejects) with at most ``max_far`` of strangers accepted, or None."""
    ok = [r for r in rows if r["false_accept_rate"] <= max_far]
    return min(ok, key=lambda r: (r["false_reject_rate"], r["false_accept_rate"])) if ok else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.operating", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--folds", default="3,4,5")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-far", type=float, default=1e-3, help="strangers' photos the chosen rule may let in")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    from bench import accuracy as A
    from bench.__main__ import progress
    from edge import cohort as co
    from edge.sidecar import read_sidecar
    from train.data import fold_pairs, list_items

    _, people = fold_pairs(args.pairs, args.folds)
    everyone = {it.person for it in list_items(args.lfw)}
    keys, persons, images = A.load_images(args.lfw, everyone)
    emb, ok = A.embed_doorface(images, args.model, args.detector, progress=progress("embed"))
    inside = np.isin(persons, list(people))
    cohort = A.l2_normalise(emb[~inside & ok])
    emb, ok, persons = emb[inside], ok[inside], persons[inside]
    e = A.l2_normalise(emb)
    sim = A.similarity(emb, ok, "cosine")
    meta = read_sidecar(args.model)
    thresholds = {far: meta["thresholds"][f"far_{far}"] for far in FARS if f"far_{far}" in meta["thresholds"]}
    crowds = {k: (co.crowding(e, cohort, k) if k else None) for k in NEIGHBOURS}
    own = lambda idx: co.calibrate(e[idx], cohort)   # noqa: E731 (the door's k and FAR: edge.cohort)
    rows = sweep(sim, persons, thresholds, own, crowds, seeds=args.seeds, progress=progress("rules"))
    print(f"{int(inside.sum())} images of {len(people)} people (folds {args.folds}), {int(ok.sum())} faces found; "
          f"cohort: {len(cohort)} photos of people outside these folds; {args.seeds} enrolments; every rule with "
          f"per-person thresholds")
    print(f"{'FAR':>5} {'threshold':>9} {'strangers':>9} {'margin':>6} {'stranger accept':>22} "
          f"{'enrolled reject':>15}")
    for r in rows:
        print(f"{r['far_target']:>5} {r['threshold']:>9.4f} {r['neighbours']:>9} {r['margin']:>6.3f} "
              f"{100 * r['false_accept_rate']:>8.3f}% ({r['strangers_accepted']:>4}/{r['stranger_probes']}) "
              f"{100 * r['false_reject_rate']:>14.2f}%")
    best = choose(rows, args.max_far)
    if best:
        print(f"chosen (the loosest rule letting in at most {100 * args.max_far:g}% of strangers' photos): FAR "
              f"{best['far_target']}, margin {best['margin']:g} over the second person and the {best['neighbours']} "
              f"closest strangers: {100 * best['false_accept_rate']:.3f}% ({best['strangers_accepted']}/"
              f"{best['stranger_probes']}) let in, {100 * best['false_reject_rate']:.1f}% rejected")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "folds": args.folds, "rows": rows, "chosen": best}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
