"""Choose the per-person calibration's tail size (edge.cohort.TAIL_K) on LFW, never on the UTKFace set it is
measured on.

    python -m bench.calibration --model models/doorface-dlib-int8.tflite [--folds 3,4,5] [--far 1e-4]

Every person of ``--folds`` is enrolled from their first photo; the cohort is every LFW photo of the people outside
those folds. For each tail size k, each person's own threshold is computed as the door does (edge.cohort.calibrate),
*without* the global floor, and the false-accept rate it actually gives against the other people of the folds (LFW
strangers the cohort never saw) is measured: a well-calibrated k gives a mean per-person rate at or below ``--far``;
a larger k is stricter than needed (more genuine rejects). Also reported with the global floor, as at the door:
the pooled rate and the genuine accept rate of single photos, and the LFW open-set figures
(``bench.accuracy.open_set``, 3 enrolments).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

KS = (5, 10, 20, 40, 80)


def per_person_far(sim: np.ndarray, stranger: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``sim`` (images, persons), ``stranger`` where the image is someone else's; each person's stranger accept
    rate at their own threshold."""
    return ((sim >= thresholds[None]) & stranger).sum(0) / np.maximum(stranger.sum(0), 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.calibration", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--folds", default="3,4,5")
    ap.add_argument("--far", type=float, default=1e-4)
    args = ap.parse_args(argv)
    from bench import accuracy as A
    from bench.__main__ import progress
    from edge.cohort import calibrate
    from edge.config import defaults
    from edge.sidecar import operating_point, read_sidecar
    from train.data import list_items, pair_identities, parse_folds, read_pairs

    fold_people = set(pair_identities(read_pairs(args.pairs), parse_folds(args.folds)))
    everyone = {it.person for it in list_items(args.lfw)}
    _, persons, images = A.load_images(args.lfw, everyone)
    emb, ok = A.embed_doorface(images, args.model, args.detector, progress=progress("embed"))
    emb = A.l2_normalise(emb)
    inside = np.isin(persons, list(fold_people)) & ok
    cohort, E, P = emb[~np.isin(persons, list(fold_people)) & ok], emb[inside], persons[inside]
    people = sorted(set(P))
    first = np.array([np.flatnonzero(P == p)[0] for p in people])
    sim = E @ E[first].T
    stranger = P[:, None] != np.array(people)[None]
    genuine = ~stranger
    genuine[first, np.arange(len(people))] = False       # the enrolment photo itself is no probe
    thr, margin, far = operating_point(read_sidecar(args.model), defaults()["match"])
    S = E @ E.T
    print(f"{len(people)} people of folds {args.folds} ({len(E)} photos) against a cohort of {len(cohort)} photos "
          f"of other people; global rule {thr:.4f} (FAR {far}), margin {margin:g}; target {args.far:g}")
    print(f"{'k':>3} {'mean own FAR':>12} {'p99 own FAR':>11} {'pooled FAR at door':>18} {'genuine accept':>14} "
          f"{'open set strangers / rejected':>30}")
    fa_global = ((sim >= thr) & stranger).sum() / stranger.sum()
    for k in KS:
        own = np.array([calibrate(E[i:i + 1], cohort, k, args.far) for i in first])
        f = per_person_far(sim, stranger, own)
        door = np.maximum(own, thr)
        pooled = ((sim >= door[None]) & stranger).sum()
        acc = ((sim >= door[None]) & genuine).sum() / max(genuine.sum(), 1)
        o = A.open_set_runs(S, P, thr, margin, own=lambda idx: calibrate(E[idx], cohort, k, args.far))
        print(f"{k:>3} {f.mean():>12.2e} {np.quantile(f, 0.99):>11.2e} {pooled / stranger.sum():>18.2e} "
              f"{acc:>14.3f} {100 * o['false_accept_rate']:>14.2f}% / {100 * o['false_reject_rate']:.1f}%", flush=True)
    g = ((sim >= thr) & genuine).sum() / max(genuine.sum(), 1)
    o = A.open_set_runs(S, P, thr, margin)
    print(f"global alone: pooled FAR {fa_global:.2e}, genuine accept {g:.3f}, open set "
          f"{100 * o['false_accept_rate']:.2f}% / {100 * o['false_reject_rate']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
