"""Choose the per-person calibration's tail size (edge.people.cohort.TAIL_K) on LFW, never on the UTKFace set it is
measured on.

    python -m bench.calibration --model models/doorface-dlib-int8.tflite [--folds 3,4,5] [--far 1e-4]

Every person of ``--folds`` is enrolled from their first photo; the cohort is every LFW photo of the people outside
those folds. For each tail size k, each person's own threshold is computed as the door does (edge.people.cohort.calibrate),
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
    from bench import accuracy as A

    ap = A.lfw_arguments(argparse.ArgumentParser(prog="python -m bench.calibration",
                                                 description=__doc__.splitlines()[0]))
    ap.add_argument("--far", type=float, default=1e-4)
    args = ap.parse_args(argv)
    from bench.common import progress
    from edge.people.cohort import calibrate, crowding
    from edge.config import defaults
    from edge.vision.sidecar import operating_point, read_sidecar, stranger_neighbours

    emb, ok, persons, cohort, _ = A.folds_and_cohort(args, progress("embed"))   # enrolled as plain photos
    E, P = A.l2_normalise(emb[ok]), persons[ok]
    people = sorted(set(P))
    first = np.array([np.flatnonzero(P == p)[0] for p in people])
    sim = E @ E[first].T
    stranger = P[:, None] != np.array(people)[None]
    genuine = ~stranger
    genuine[first, np.arange(len(people))] = False       # the enrolment photo itself is no probe
    meta, match = read_sidecar(args.model), defaults()["match"]
    thr, margin, far = operating_point(meta, match)
    nk = stranger_neighbours(meta, match)     # the door's margin over the closest cohort strangers
    crowd = crowding(E, cohort, nk) if nk else None
    S = E @ E.T
    print(f"{len(people)} people of folds {args.folds} ({len(E)} photos) against a cohort of {len(cohort)} photos "
          f"of other people; global rule {thr:.4f} (FAR {far}), margin {margin:g} over the second person and {nk} closest strangers; target "
          f"{args.far:g}")
    print(f"{'k':>3} {'mean own FAR':>12} {'p99 own FAR':>11} {'pooled FAR at door':>18} {'genuine accept':>14} "
          f"{'open set strangers / rejected':>30}")
    fa_global = ((sim >= thr) & stranger).sum() / stranger.sum()
    for k in KS:
        own = np.array([calibrate(E[i:i + 1], cohort, k, args.far) for i in first])
        f = per_person_far(sim, stranger, own)
        door = np.maximum(own, thr)
        pooled = ((sim >= door[None]) & stranger).sum()
        acc = ((sim >= door[None]) & genuine).sum() / max(genuine.sum(), 1)
        o = A.open_set_runs(S, P, thr, margin, own=lambda idx: calibrate(E[idx], cohort, k, args.far), crowd=crowd)
        print(f"{k:>3} {f.mean():>12.2e} {np.quantile(f, 0.99):>11.2e} {pooled / stranger.sum():>18.2e} "
              f"{acc:>14.3f} {100 * o['false_accept_rate']:>14.2f}% / {100 * o['false_reject_rate']:.1f}%", flush=True)
    g = ((sim >= thr) & genuine).sum() / max(genuine.sum(), 1)
    o = A.open_set_runs(S, P, thr, margin)
    print(f"global alone: pooled FAR {fa_global:.2e}, genuine accept {g:.3f}, open set "
          f"{100 * o['false_accept_rate']:.2f}% / {100 * o['false_reject_rate']:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
