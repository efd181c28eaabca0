"""Honest evaluation on LFW-format pairs: k-fold accuracy, ROC AUC, EER, TAR at FAR 1e-2/1e-3/1e-4.

Accuracy, AUC and EER use the pairs of the chosen folds (10-fold style: the threshold for each fold is picked on
the others). TAR at a FAR uses every pair of images of the chosen folds' identities (all genuine and all
impostor pairs), which gives enough impostors to resolve FAR 1e-4. The folds should hold identities the model
never trained on (``holdout_folds`` in the training config).

    python -m train.evaluate --model runs/x/model.keras --model models/doorface-int8.tflite --teacher \
        --cache .cache/lfw-deepfunneled-train-aligned.npz --pairs ../shared/data/lfw/pairs-dev.txt --folds 1,2 \
        --out runs/x/eval
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge.vision.embedder import l2_normalise

from train.data import parse_folds, read_pairs
from train.metrics import all_pairs_scores, roc, verification_report


def eval_subset(cache: dict, pairs, folds0):
    """Indices (into the cache) of every image of the folds' identities, and the folds' pairs."""
    sel_pairs = [p for p in pairs if p.fold in folds0]
    people = {k.split("/")[0] for p in sel_pairs for k in (p.key_a, p.key_b)}
    idx = np.flatnonzero(np.isin(cache["persons"], list(people)))
    return idx, sel_pairs


def report(emb: np.ndarray, keys, persons, pairs) -> dict:
    """Metrics for embeddings ``emb`` of images ``keys`` (with identities ``persons``) on ``pairs``."""
    emb = l2_normalise(emb)
    at = {k: i for i, k in enumerate(keys)}
    rows = [(p, at.get(p.key_a), at.get(p.key_b)) for p in pairs]
    missing = sum(a is None or b is None for _, a, b in rows)
    rows = [(p, a, b) for p, a, b in rows if a is not None and b is not None]
    scores = np.array([float(emb[a] @ emb[b]) for _, a, b in rows])
    labels = np.array([p.same for p, _, _ in rows])
    folds = np.array([p.fold for p, _, _ in rows])
    genuine, impostor = all_pairs_scores(emb, persons)
    out = verification_report(scores, labels, folds, genuine, impostor)
    out["missing_pairs"] = int(missing)
    out["_roc"] = roc(scores, labels)[:2] if len(scores) else None
    out["_all_roc"] = roc(np.r_[genuine, impostor], np.r_[np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])[:2]
    return out


def keras_embedder(path):
    from convert.dlib import load_keras

    model = load_keras(path)
    size = model.input_shape[1]

    def fn(crops):
        from edge.vision.align import resize_crop

        x = np.stack([resize_crop(c, size) for c in crops]).astype(np.float32)
        return np.concatenate([model(x[i:i + 256], training=False).numpy() for i in range(0, len(x), 256)])
    return fn


def tflite_embedder(path, threads=2, verify=True, template=None):
    from edge.vision.align import resize_crop
    from edge.vision.embedder import Embedder

    e = Embedder(path, threads, verify=verify, template=template)
    e.load()

    def fn(crops):
        return e.embed_crops([resize_crop(c, e.input_size) for c in crops])
    return fn


def teacher_embeddings(teacher_path, keys):
    with np.load(teacher_path) as z:
        at = {k: i for i, k in enumerate(z["keys"])}
        return z["embeddings"][[at[k] for k in keys]]


def plot_roc(reports: dict, path, title="ROC on held-out identities (all pairs)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name, rep in reports.items():
        far, tar = rep["_all_roc"]
        ok = far > 0
        t3 = rep["at_far"]["0.001"]["tar"]
        ax.plot(far[ok], tar[ok], label=f"{name}: acc {100 * rep['accuracy']:.1f}%, TAR@1e-3 {100 * t3:.1f}%")
    for f in (1e-4, 1e-3, 1e-2):
        ax.axvline(f, color="grey", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (stranger accepted)")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def public(rep: dict) -> dict:
    return {k: v for k, v in rep.items() if not k.startswith("_")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[],
                    help=".keras or .tflite, optionally LABEL=PATH (repeatable)")
    ap.add_argument("--teacher", nargs="?", const="auto", help="also evaluate dlib's embeddings (teacher cache)")
    ap.add_argument("--cache", required=True, help="alignment cache (train.preprocess)")
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--folds", default="1,2", help="1-based folds to evaluate (held out from training)")
    ap.add_argument("--out", required=True, help="folder for metrics.json and roc.png")
    args = ap.parse_args(argv)
    from train.preprocess import load_cache

    cache = load_cache(args.cache)
    folds0 = parse_folds(args.folds)
    idx, pairs = eval_subset(cache, read_pairs(args.pairs), folds0)
    keys, persons, crops = cache["keys"][idx], cache["persons"][idx], cache["crops"][idx]
    reports = {}
    for m in args.model:
        label, m = m.split("=", 1) if "=" in m else (Path(m).name, m)
        fn = keras_embedder(m) if m.endswith((".keras", ".h5")) else tflite_embedder(m)
        reports[label] = report(fn(crops), keys, persons, pairs)
    if args.teacher:
        tpath = args.teacher if args.teacher != "auto" else args.cache.replace("-aligned.npz", "-teacher.npz")
        reports["dlib (teacher)"] = report(teacher_embeddings(tpath, keys), keys, persons, pairs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"folds": sorted(f + 1 for f in folds0), "images": int(len(idx)),
              "identities": int(len(set(persons))), "models": {k: public(v) for k, v in reports.items()}}
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    plot_roc(reports, out / "roc.png")
    for name, rep in reports.items():
        a = rep["at_far"]
        print(f"{name:<28} acc {100 * rep['accuracy']:.2f}% ±{100 * rep['accuracy_std']:.2f}  AUC {rep['auc']:.4f}  "
              f"EER {100 * rep['eer']:.2f}%  TAR@1e-3 {100 * a['0.001']['tar']:.2f}%  "
              f"TAR@1e-4 {100 * a['0.0001']['tar']:.2f}%")
    print(f"-> {out / 'metrics.json'}, {out / 'roc.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
