"""Other per-person threshold estimators against the shipped one, each fitted the same way, measured the same way.

    python -m bench.estimators [--model models/doorface-dlib-int8.tflite] [--cache .cache/estimators.npz]
                               [--only normal,topK:50,...]

Every estimator has one parameter, fitted on LFW pairs-dev folds 3-5 (never on UTKFace, never on the reporting folds)
exactly as ``z`` is (``bench.calibration``): each photo enrolled as the door stores it (a jittered template), its own
threshold from its scores against the shipped cohort, the parameter bisected until strangers pass the own thresholds
at 1e-4 per comparison, pooled. Then, in the same run, each is measured with the door's whole rule (the stricter of
the own and the global threshold, the margin over the second person and the face's closest cohort strangers):

- UTKFace (evaluation only; bench.fair's 20 splits, 20 enrolled and 380 strangers per group): false accepts per
  comparison per group and the worst/best ratio;
- LFW folds 1-2 open set (3 enrolments, as ``make bench``): strangers let in and enrolled photos rejected.

Estimators (``scores`` = the person's best-template score against each cohort face):

- ``normal``: mean + p * sd of all scores (the shipped one, p = z);
- ``topK:K``: mean + p * sd of the K highest scores (a tail fit on the neighbours only);
- ``crowdK:K``: mean of the K highest + p (the face-at-the-door crowding, used on the enrolled side);
- ``kth:K``: the K-th highest score + p (an empirical quantile, shifted);
- ``weighted:TAU``: mean + p * sd with each cohort face weighted by exp(score / TAU) (neighbours count more);
- ``symmax``: the normal tail on both sides: also the face at the door's own mean + p * sd against the cohort;
- ``symavg``: the mean of the two sides' normalised scores ((s - mean) / sd) must reach p.

Embeddings are cached (``--cache``): the first run embeds UTKFace and LFW folds 1-5 through the door's pipeline
(about 10 minutes on 2 cores); later runs take seconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DEFAULT = ("normal", "topK:50", "topK:200", "crowdK:3", "kth:20", "weighted:0.1", "weighted:0.03", "symmax", "symavg")


def sorted_scores(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Each row's cosine to every cohort face, highest first."""
    return -np.sort(-(X.astype(np.float64) @ C.T), axis=1)


def template_rule(kind: str, arg):
    """``f(scores (n, N) descending, p) -> (n,)`` thresholds of one enrolled side estimator."""
    def f(sc, p):
        if kind == "normal":
            return sc.mean(1) + p * sc.std(1)
        if kind == "topK":
            t = sc[:, :int(arg)]
            return t.mean(1) + p * t.std(1)
        if kind == "crowdK":
            return sc[:, :int(arg)].mean(1) + p
        if kind == "kth":
            return sc[:, int(arg) - 1] + p
        if kind == "weighted":
            w = np.exp((sc - sc[:, :1]) / float(arg))
            w /= w.sum(1, keepdims=True)
            mu = (w * sc).sum(1)
            return mu + p * np.sqrt((w * (sc - mu[:, None]) ** 2).sum(1))
        raise ValueError(f"unknown estimator {kind}")
    return f


def pair_rule(kind: str, arg):
    """``g(probe scores, enrolled scores, p) -> (probes, enrolled)`` pair thresholds (own side(s) only)."""
    if kind in ("symmax", "symavg"):
        def g(sp, st, p):
            mp, dp, mt, dt = sp.mean(1), sp.std(1), st.mean(1), st.std(1)
            if kind == "symmax":
                return np.maximum((mt + p * dt)[None], (mp + p * dp)[:, None])
            return (2 * p + (mt / dt)[None] + (mp / dp)[:, None]) / ((1 / dt)[None] + (1 / dp)[:, None])
        return g
    f = template_rule(kind, arg)
    return lambda sp, st, p: np.broadcast_to(f(st, p)[None], (len(sp), len(st)))


def fit(g, S, stranger, sp, st, far: float = 1e-4) -> float:
    """The parameter giving pooled stranger rate ``far`` against the own thresholds alone (bisection)."""
    lo, hi = -2.0, 15.0
    for _ in range(50):
        p = (lo + hi) / 2
        rate = ((S >= g(sp, st, p)) & stranger).sum() / stranger.sum()
        lo, hi = (p, hi) if rate > far else (lo, p)
    return (lo + hi) / 2


def open_set_pairs(sim, persons, own_fn, crowd, global_thr: float, margin: float, seeds: int = 3) -> tuple:
    """:func:`bench.accuracy.open_set` (same enrolments per seed) with a threshold that may depend on the face at the
    door too: ``own_fn(probe index, gallery indices) -> threshold``. ``(strangers let in, strangers, reject rate)``."""
    from bench.accuracy import enrolment

    fa = stra = fr = gen = 0
    for seed in range(seeds):
        gallery, probes = enrolment(persons, seed)
        names = sorted(gallery)
        pi = np.array([i for i, _ in probes])
        per = np.stack([sim[pi][:, gallery[n]].max(axis=1) for n in names], axis=1)
        order = np.argsort(-per, axis=1, kind="stable")[:, :2]
        rows = np.arange(len(pi))
        best, second = per[rows, order[:, 0]], np.maximum(per[rows, order[:, 1]], crowd[pi])
        thr = np.array([own_fn(i, gallery[names[o]]) for i, o in zip(pi, order[:, 0])])
        accept = (best >= np.maximum(thr, global_thr)) & (best - second >= margin)
        for a, (_, truth) in zip(accept, probes):
            if truth is None:
                stra, fa = stra + 1, fa + int(a)
            else:
                gen, fr = gen + 1, fr + int(not a)
    return fa, stra, fr / max(gen, 1)


def embeddings(args) -> dict:
    """UTKFace per group and LFW folds 1-5 through the door's pipeline (faces and templates), cached."""
    cache = Path(args.cache)
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from bench import accuracy as A
    from bench import fair as F
    from bench.common import progress
    from train.data import fold_pairs, load_images

    d = {}
    for g, items in F.load_chips(args.utk).items():
        d[f"utk_{g}_e"], d[f"utk_{g}_ok"], d[f"utk_{g}_t"] = F.embed_doorface([im for _, im in items], args.model,
                                                                              args.detector)
    _, people = fold_pairs(args.pairs, "1,2,3,4,5")
    _, persons, images = load_images(args.lfw, people)
    d["lfw_e"], d["lfw_ok"], d["lfw_t"] = A.embed_doorface(images, args.model, args.detector,
                                                           progress=progress("lfw"), templates=True)
    d["lfw_p"] = np.asarray(persons).astype(str)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **d)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.estimators", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/doorface-dlib-int8.tflite")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--utk", default="../shared/data/utkface-dev.tgz")
    ap.add_argument("--cache", default=".cache/estimators.npz")
    ap.add_argument("--only", default=",".join(DEFAULT))
    args = ap.parse_args(argv)
    for p in (args.lfw, args.pairs, args.utk):
        if not Path(p).exists():
            print(f"bench.estimators: {p} not found (../shared/data beside the repo)", file=sys.stderr)
            return 2
    from bench import accuracy as A
    from bench import fair as F
    from edge.config import defaults
    from edge.people import cohort as co
    from edge.vision.sidecar import operating_point, read_sidecar, stranger_neighbours
    from train.data import fold_pairs

    meta = read_sidecar(args.model)
    gthr, margin, _ = operating_point(meta, defaults()["match"])
    nk = stranger_neighbours(meta, defaults()["match"])
    C = co.load(co.shipped_path(args.model)).embeddings.astype(np.float64)
    d = embeddings(args)
    N = A.l2_normalise
    P, ok = d["lfw_p"], d["lfw_ok"]

    def folds(f):
        return np.isin(P, list(fold_pairs(args.pairs, f)[1])) & ok

    m35, m12 = folds("3,4,5"), folds("1,2")
    E35, T35, P35 = N(d["lfw_e"][m35]), N(d["lfw_t"][m35]), P[m35]
    S35, str35 = E35 @ T35.T, P35[:, None] != P35[None]
    sp35, st35 = sorted_scores(E35, C), sorted_scores(T35, C)
    E12, T12, P12 = N(d["lfw_e"][m12]), N(d["lfw_t"][m12]), P[m12]
    S12, sp12, tsc12 = E12 @ T12.T, sorted_scores(E12, C), T12.astype(np.float64) @ C.T
    crowd12 = co.crowding(E12, C.astype(np.float32), nk)
    sizes = {g: len(d[f"utk_{g}_ok"]) for g in F.GROUPS}
    splits = F.splits_of(sizes, 200, 20, 380, 20)
    utk = {}
    for g in F.GROUPS:
        e, okg, t = d[f"utk_{g}_e"], d[f"utk_{g}_ok"], d[f"utk_{g}_t"]
        utk[g] = (A.door_similarity(e, t, okg), okg, sorted_scores(N(e), C), sorted_scores(N(t), C),
                  co.crowding(N(e).astype(np.float32), C.astype(np.float32), nk))
    print(f"fitted on LFW folds 3-5 ({len(E35)} photos) for pooled 1e-4; door's rule: global {gthr:.4f}, margin "
          f"{margin:g} over the second person and {nk} closest cohort strangers; cohort {len(C)} faces")
    print(f"{'estimator':<14} {'param':>7} | UTKFace per comparison e-4: " + " ".join(f"{g:>6}" for g in F.GROUPS)
          + " worst/best | LFW folds 1-2: strangers let in, enrolled rejected")
    for spec in args.only.split(","):
        kind, _, arg = spec.partition(":")
        g = pair_rule(kind, arg or None)
        p = fit(g, S35, str35, sp35, st35)
        rates = {}
        for grp, (sim, okg, sp, st, crowd) in utk.items():
            fa = comp = 0
            for sp_ in splits:
                _, gal, probe = (idx[okg[idx]] for idx in sp_[grp])
                s = sim[np.ix_(probe, gal)]
                thr = np.maximum(g(sp[probe], st[gal], p), gthr)
                fa += int(((s >= thr) & (s - crowd[probe][:, None] >= margin)).sum())
                comp += s.size
            rates[grp] = fa / comp

        def own(i, gal):
            st = -np.sort(-tsc12[gal].max(0))[None]
            return g(sp12[i:i + 1], st, p)[0, 0]

        fa, stra, fr = open_set_pairs(S12, P12, own, crowd12, gthr, margin)
        ratio = max(rates.values()) / max(min(rates.values()), 1e-12)
        print(f"{spec:<14} {p:7.4f} | " + " ".join(f"{1e4 * v:6.2f}" for v in rates.values())
              + f" {ratio:10.2f} | {fa}/{stra} ({100 * fa / max(stra, 1):.2f}%), {100 * fr:.2f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
