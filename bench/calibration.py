"""Choose the per-person threshold estimator (edge.people.cohort) and its ``z`` on LFW folds no figure is reported on,
never on the UTKFace set fairness is measured on.

    python -m bench.calibration --model models/doorface-dlib-int8.tflite [--folds 3,4,5] [--far 1e-4]

Every photo of the people of ``--folds`` is enrolled as the door stores it (the jittered template); every other
person's photos of the folds are its strangers (LFW strangers no cohort here holds). Each estimator x cohort gives each
enrolled photo its own threshold *without* the global floor, and the rate at which strangers pass it is measured:

- estimators: ``normal-tail`` (mean + z sd of the person's scores against the cohort; ``z`` fitted here by bisection
  so that the pooled rate is ``--far``) and ``pot`` (the peaks-over-threshold fit used before, k = 20: the 20 highest
  cohort scores above the 21st taken as exponential and extrapolated to ``--far``);
- cohorts: the one shipped beside the model (FairFace for the default model) and every LFW photo of people outside
  ``--folds``.

Reported: the pooled stranger rate (target ``--far``), the mean and 99th percentile of the per-person rate (a good
estimator gives most people about the same rate: a high p99 means some people's strangers pass far more often), and
the share of same-person photo pairs the door's whole rule (own threshold, never below the global one) accepts.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def own_rates(S: np.ndarray, stranger: np.ndarray, thresholds: np.ndarray) -> tuple:
    """``S`` (probes, enrolled), ``stranger`` where the probe is someone else: ``(pooled rate, per-enrolled rates)``."""
    hit = (S >= thresholds[None]) & stranger
    return hit.sum() / stranger.sum(), hit.sum(0) / np.maximum(stranger.sum(0), 1)


def fit_z(S: np.ndarray, stranger: np.ndarray, mean: np.ndarray, sd: np.ndarray, far: float) -> float:
    """The ``z`` whose thresholds ``mean + z sd`` give the pooled stranger rate ``far`` (bisection)."""
    lo, hi = 0.0, 15.0
    for _ in range(40):
        z = (lo + hi) / 2
        if own_rates(S, stranger, mean + z * sd)[0] > far:
            lo = z
        else:
            hi = z
    return (lo + hi) / 2


def main(argv=None) -> int:
    from bench import accuracy as A

    ap = A.lfw_arguments(argparse.ArgumentParser(prog="python -m bench.calibration",
                                                 description=__doc__.splitlines()[0]))
    ap.add_argument("--far", type=float, default=1e-4)
    args = ap.parse_args(argv)
    from bench.common import progress
    from edge.people import cohort as co
    from edge.config import defaults
    from edge.vision.sidecar import operating_point, read_sidecar

    emb, ok, persons, lfw_cohort, tmpl = A.folds_and_cohort(args, progress("embed"), templates=True)
    E, T, P = A.l2_normalise(emb[ok]), A.l2_normalise(tmpl[ok]), persons[ok]
    S = E @ T.T                                            # probe photo x enrolled template
    stranger = P[:, None] != P[None]
    genuine = ~stranger
    np.fill_diagonal(genuine, False)
    thr = operating_point(read_sidecar(args.model), defaults()["match"])[0]
    cohorts = {"lfw": lfw_cohort}
    if co.shipped_path(args.model).exists():
        cohorts = {"shipped": co.load(co.shipped_path(args.model)).embeddings, **cohorts}
    print(f"{len(set(P))} people of folds {args.folds} ({len(E)} photos, each enrolled as a jittered template); "
          f"cohorts: {', '.join(f'{k} {len(v)} faces' for k, v in cohorts.items())}; target {args.far:g}; global "
          f"threshold {thr:.4f}; the code's z: {co.TAIL_Z}")
    print(f"{'estimator':<26} {'pooled own FAR':>14} {'mean own FAR':>12} {'p99 own FAR':>11} {'genuine accept':>14}")
    for name, C in cohorts.items():
        scores = T @ C.T
        mean, sd = scores.mean(1), scores.std(1)
        z = fit_z(S, stranger, mean, sd, args.far)
        rules = {f"normal-tail {name}, z={z:.2f}": mean + z * sd,
                 f"normal-tail {name}, z={co.TAIL_Z}": mean + co.TAIL_Z * sd,
                 f"pot k=20 {name}": np.array([co.calibrate_pot(t[None], C) for t in T])}
        for label, own in rules.items():
            pooled, per = own_rates(S, stranger, own)
            acc = ((S >= np.maximum(own, thr)[None]) & genuine).sum() / max(genuine.sum(), 1)
            print(f"{label:<26} {pooled:>14.2e} {per.mean():>12.2e} {np.quantile(per, 0.99):>11.2e} {acc:>14.3f}",
                  flush=True)
    acc = ((S >= thr) & genuine).sum() / max(genuine.sum(), 1)
    print(f"{'global alone':<26} {own_rates(S, stranger, np.full(len(T), thr))[0]:>14.2e} {'':>12} {'':>11} "
          f"{acc:>14.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
