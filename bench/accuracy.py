"""Accuracy on the same raw LFW images for every engine: the LFW pairs protocol and an open-set door scenario.

Each engine runs its own full pipeline on the original 250x250 images (doorface: BlazeFace + alignment + TFLite;
face_recognition: HOG + dlib landmarks + ResNet). An image where an engine finds no face gets no embedding, and
every pair or probe involving it counts as rejected (reported as detection failures).
"""
from __future__ import annotations

import numpy as np

from edge.door.decision import passes
from edge.vision.embedder import l2_normalise
from train.data import load_images  # noqa: F401 (bench.accuracy.load_images, used by the benches)


def lfw_arguments(ap, folds: str = "3,4,5"):
    """The options of a bench that splits LFW into some pairs-dev folds and a cohort of everyone else."""
    ap.add_argument("--model", required=True)
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--folds", default=folds)
    return ap


def folds_and_cohort(args, progress=None, templates: bool = False):
    """Every LFW image embedded with ``args.model``: ``(embeddings, found, persons)`` of the people of
    ``args.folds``, the unit-length embeddings of everyone else's found faces (a stranger cohort for them) and the
    folds' enrolled-template embeddings (:func:`embed_doorface`; with ``templates`` False, the plain embeddings)."""
    from train.data import fold_pairs, list_items

    _, people = fold_pairs(args.pairs, args.folds)
    _, persons, images = load_images(args.lfw, {it.person for it in list_items(args.lfw)})
    inside = np.isin(persons, list(people))
    out = embed_doorface(images, args.model, args.detector, progress=progress, templates=inside if templates else None)
    emb, ok = out[0], out[1]
    res = (emb[inside], ok[inside], persons[inside], l2_normalise(emb[~inside & ok]))
    return res + (out[2][inside] if templates else emb[inside],)


def embed_doorface(images, model, detector, threads=2, progress=None, templates=None):
    """:func:`convert.thresholds.door_embeddings`: ``(embeddings, found)`` of the central face of every image
    through the door's pipeline, and with ``templates`` the template an enrollment from each photo stores."""
    from convert.thresholds import door_embeddings

    return door_embeddings(images, model, detector, threads, progress, templates)


def embed_dlib(images, progress=None):
    import face_recognition

    out = np.zeros((len(images), 128), np.float32)
    ok = np.zeros(len(images), bool)
    for i, img in enumerate(progress(images) if progress else images):
        locs = face_recognition.face_locations(img)
        if locs:
            cy, cx = img.shape[0] / 2, img.shape[1] / 2
            loc = min(locs, key=lambda l: ((l[0] + l[2]) / 2 - cy) ** 2 + ((l[1] + l[3]) / 2 - cx) ** 2)
            out[i] = face_recognition.face_encodings(img, [loc])[0]
            ok[i] = True
    return out, ok


def similarity(emb, ok, metric):
    """Pairwise similarity matrix (cosine, or minus Euclidean distance for dlib); -inf where a face is missing."""
    if metric == "cosine":
        e = l2_normalise(emb)
        s = e @ e.T
    else:
        sq = (emb ** 2).sum(1)
        s = -np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * emb @ emb.T, 0))
    s[~ok, :] = -np.inf
    s[:, ~ok] = -np.inf
    return s


def door_similarity(emb, tmpl, ok):
    """Probe x enrolled-photo similarity as the door scores it: each photo as the face at the door (``emb``)
    against each photo as an enrolled template (``tmpl``, :func:`embed_doorface`); -inf where a face is missing.
    Rows are probes, columns enrolled photos, as :func:`open_set` reads them."""
    s = l2_normalise(emb) @ l2_normalise(tmpl).T
    s[~ok, :] = -np.inf
    s[:, ~ok] = -np.inf
    return s


def pairs_report(sim, keys, persons, pairs):
    from train.metrics import verification_report, roc

    at = {k: i for i, k in enumerate(keys)}
    rows = [(p, at[p.key_a], at[p.key_b]) for p in pairs if p.key_a in at and p.key_b in at]
    finite_min = np.min(sim[np.isfinite(sim)]) - 1
    sim = np.where(np.isfinite(sim), sim, finite_min)
    scores = np.array([sim[a, b] for _, a, b in rows])
    labels = np.array([p.same for p, _, _ in rows])
    folds = np.array([p.fold for p, _, _ in rows])
    iu = np.triu_indices(len(keys), 1)
    same = persons[iu[0]] == persons[iu[1]]
    vals = sim[iu]
    rep = verification_report(scores, labels, folds, vals[same], vals[~same])
    rep["_roc"] = roc(vals, same)[:2]
    return rep


def enrolment(persons, seed: int = 0) -> tuple:
    """The open set's random enrolment: half of the people with 2+ images enrolled from 1-3 of them. ``(gallery:
    person -> image indices, probes: [(image index, person or None for a stranger)])``, the same for one seed."""
    rng = np.random.default_rng(seed)
    people = sorted(set(persons))
    multi = [p for p in people if (persons == p).sum() >= 2]
    enrolled = set(rng.choice(multi, len(multi) // 2, replace=False))
    gallery, probes = {}, []
    for p in people:
        idx = list(np.flatnonzero(persons == p))
        if p in enrolled:
            k = int(rng.integers(1, min(3, len(idx) - 1) + 1))
            rng.shuffle(idx)
            gallery[p] = idx[:k]
            probes += [(i, p) for i in idx[k:]]
        else:
            probes += [(i, None) for i in idx]
    return gallery, probes


def open_set(sim, persons, threshold, margin=0.0, seed=0, own=None, crowd=None):
    """Enroll half of the people with 2+ images from 1-3 images each; probe with their other images and with
    every image of people never enrolled. A probe is accepted as the enrolled person with the highest score when
    that score reaches ``threshold`` (and beats the second person by ``margin``). ``own(image indices)``, when
    given, is an enrolled person's own threshold (edge.people.cohort) from their enrolment images; the stricter of the two
    applies, as at the door. ``crowd`` (one value per image, :func:`edge.people.cohort.crowding`), when given: the margin
    is taken over the stranger cohort too, as :class:`edge.people.matcher.TemplateIndex` does."""
    gallery, probes = enrolment(persons, seed)
    names = sorted(gallery)
    person_thr = [own(gallery[n]) if own else -np.inf for n in names]
    at_probes = sim[np.array([i for i, _ in probes])]
    per_all = np.stack([at_probes[:, gallery[n]].max(axis=1) for n in names], axis=1)   # probe x person
    order_all = np.argsort(-per_all, axis=1, kind="stable")[:, :2]
    fa = fr = mis = gen = stra = 0
    for (i, truth), per, order in zip(probes, per_all, order_all):
        best, score = names[order[0]], per[order[0]]
        second = per[order[1]] if len(order) > 1 else -np.inf
        if crowd is not None:
            second = max(second, crowd[i])
        accept = bool(np.isfinite(score)) and passes(best, score, score - second, threshold, margin, live=True,
                                                     person_threshold=person_thr[order[0]])
        if truth is None:
            stra += 1
            fa += bool(accept)
        else:
            gen += 1
            if not accept:
                fr += 1
            elif best != truth:
                mis += 1
    return {"enrolled_people": len(names), "genuine_probes": gen, "stranger_probes": stra,
            "false_accept_rate": fa / max(stra, 1), "false_reject_rate": fr / max(gen, 1),
            "misidentified_rate": mis / max(gen, 1), "strangers_accepted": fa, "threshold": float(threshold),
            "margin": margin}


def open_set_runs(sim, persons, threshold, margin=0.0, seeds: int = 3, own=None, crowd=None) -> dict:
    """:func:`open_set` over ``seeds`` random enrolments, counts summed (one enrolment of a few hundred people lets a
    handful of strangers in, too few to compare rules on)."""
    runs = [open_set(sim, persons, threshold, margin, seed, own, crowd) for seed in range(seeds)]
    tot = {k: sum(r[k] for r in runs) for k in ("genuine_probes", "stranger_probes", "strangers_accepted")}
    fr = sum(r["false_reject_rate"] * r["genuine_probes"] for r in runs)
    mis = sum(r["misidentified_rate"] * r["genuine_probes"] for r in runs)
    return {**tot, "enrolments": seeds, "enrolled_people": runs[0]["enrolled_people"],
            "false_accept_rate": tot["strangers_accepted"] / max(tot["stranger_probes"], 1),
            "false_reject_rate": fr / max(tot["genuine_probes"], 1),
            "misidentified_rate": mis / max(tot["genuine_probes"], 1), "threshold": float(threshold),
            "margin": margin}
