"""Verification metrics on similarity scores (higher = more similar). Pure NumPy, no TensorFlow.

- :func:`kfold_accuracy`: LFW protocol: per fold, the threshold that maximises accuracy on the other folds.
- :func:`roc`: false-accept and true-accept rates over all thresholds, with AUC and EER.
- :func:`tar_at_far`: true-accept rate and threshold at a target false-accept rate.
- :func:`pair_accuracy`: k-fold accuracy of cosine scores of embeddings on LFW-style pairs.
"""
from __future__ import annotations

import numpy as np

from edge.vision.embedder import l2_normalise


def best_threshold(scores, labels):
    """Threshold maximising accuracy of ``score >= t``; returns ``(t, accuracy)``."""
    scores = np.asarray(scores, float)
    labels = np.asarray(labels, bool)
    order = np.argsort(scores)
    s, lab = scores[order], labels[order]
    # Threshold just above s[i-1] accepts s[i:]: correct = negatives below + positives at/above.
    neg_below = np.concatenate([[0], np.cumsum(~lab)])
    pos_at_or_above = lab.sum() - np.concatenate([[0], np.cumsum(lab)])
    correct = neg_below + pos_at_or_above
    i = int(np.argmax(correct))
    if i == 0:
        t = s[0] - 1e-6
    elif i == len(s):
        t = s[-1] + 1e-6
    else:
        t = (s[i - 1] + s[i]) / 2
    return float(t), float(correct[i] / len(s))


def kfold_accuracy(scores, labels, folds):
    """Mean and std of accuracy over folds, each with the threshold chosen on the other folds."""
    scores, labels, folds = np.asarray(scores, float), np.asarray(labels, bool), np.asarray(folds)
    accs, ths = [], []
    for f in np.unique(folds):
        test = folds == f
        t, _ = best_threshold(scores[~test], labels[~test]) if (~test).any() else best_threshold(scores, labels)
        accs.append(float(((scores[test] >= t) == labels[test]).mean()))
        ths.append(t)
    return {"accuracy": float(np.mean(accs)), "accuracy_std": float(np.std(accs)), "fold_accuracies": accs,
            "fold_thresholds": ths}


def roc(scores, labels):
    """``(far, tar, thresholds)`` for accepting ``score >= threshold``, thresholds descending; plus AUC and EER."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    order = np.argsort(-scores, kind="mergesort")
    s, lab = scores[order], labels[order]
    tp = np.cumsum(lab)
    fp = np.cumsum(~lab)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # one point per distinct threshold
    tar = np.r_[0, tp[last] / max(lab.sum(), 1)]
    far = np.r_[0, fp[last] / max((~lab).sum(), 1)]
    thr = np.r_[np.inf, s[last]]
    trapezoid = getattr(np, "trapezoid", None) or np.trapz   # numpy 2 renamed it (trapz is gone in 2.4)
    auc = float(trapezoid(tar, far))
    i = int(np.argmin(np.abs(far - (1 - tar))))
    eer = float((far[i] + 1 - tar[i]) / 2)
    return far, tar, thr, auc, eer


def tar_at_far(genuine, impostor, far_target):
    """Highest TAR whose FAR is <= ``far_target``; threshold is the smallest score accepted.

    Returns ``(tar, threshold, achieved_far)``. With fewer than ``1/far_target`` impostors the target cannot be
    resolved and the result is the strictest threshold that accepts no impostor (reported honestly as such).
    """
    genuine, impostor = np.sort(np.asarray(genuine, float)), np.sort(np.asarray(impostor, float))
    n_imp = len(impostor)
    allowed = int(np.floor(far_target * n_imp))
    # Accept scores strictly above the (allowed+1)-th highest impostor.
    thr_floor = impostor[n_imp - allowed - 1] if allowed < n_imp else -np.inf
    threshold = float(np.nextafter(thr_floor, np.inf))
    tar = float((genuine >= threshold).mean()) if len(genuine) else 0.0
    far = float((impostor >= threshold).mean()) if n_imp else 0.0
    return tar, threshold, far


def all_pairs_scores(emb, persons):
    """Cosine scores of every image pair: ``(genuine, impostor)`` arrays (upper triangle only)."""
    emb = np.asarray(emb, np.float32)
    emb = l2_normalise(emb)
    persons = np.asarray(persons)
    sims = emb @ emb.T
    iu = np.triu_indices(len(emb), 1)
    same = persons[iu[0]] == persons[iu[1]]
    vals = sims[iu]
    return vals[same], vals[~same]


def verification_report(pair_scores, pair_labels, pair_folds, genuine, impostor,
                         fars=(1e-2, 1e-3, 1e-4, 1e-5)) -> dict:
    """The full report: k-fold accuracy, AUC and EER on the pairs; TAR and thresholds at each FAR on all pairs."""
    out = {"pairs": int(len(pair_scores))}
    if len(pair_scores):
        out.update(kfold_accuracy(pair_scores, pair_labels, pair_folds))
        far, tar, thr, auc, eer = roc(pair_scores, pair_labels)
        out["auc"], out["eer"] = auc, eer
    out["all_pairs"] = {"genuine": int(len(genuine)), "impostor": int(len(impostor))}
    out["at_far"] = {}
    for f in fars:
        t, th, achieved = tar_at_far(genuine, impostor, f)
        out["at_far"][f"{f:g}"] = {"tar": t, "threshold": th, "far": achieved,
                                   "resolvable": bool(len(impostor) * f >= 1)}
    return out


def pair_accuracy(emb: np.ndarray, keys, pairs) -> dict:
    """k-fold accuracy of cosine scores over the pairs whose two images are both in ``keys``."""
    at = {k: i for i, k in enumerate(keys)}
    rows = [(p, at[p.key_a], at[p.key_b]) for p in pairs if p.key_a in at and p.key_b in at]
    if not rows:
        return {"pairs": 0, "accuracy": float("nan")}
    e = l2_normalise(emb)
    scores = [float(e[a] @ e[b]) for _, a, b in rows]
    acc = kfold_accuracy(scores, [p.same for p, _, _ in rows], [p.fold for p, _, _ in rows])
    return {"pairs": len(rows), "accuracy": acc["accuracy"]}
