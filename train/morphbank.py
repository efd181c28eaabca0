"""Synthetic identities for distillation (the morph bank): face morphs of two training people, labelled by the teacher.

LFW gives the student only a few thousand training faces, too few to learn the teacher's function away from them
(models/README.md, "fit"). A morph of two different training people is a new, plausible face: image B is warped onto
image A's landmarks (similarity transform, in full-image space) and blended, ``lam * A + (1 - lam) * B``; the teacher
embeds the morph exactly as it embeds a real image (its own landmarks and chip inside A's box), and the student's
aligned crop comes from the same edge alignment as every other training image. Morphs carry no identity label: they
feed the distillation and relational losses only. Parents are drawn from the training identities alone, never from
the held-out folds.

Built by ``python -m train.morph`` (or by :func:`train.prepare.prepare_data` when a config asks for morphs).
"""
from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.vision.align import CROP_SIZE, align_face
from train.data import iter_images


def morph_pair(rgb_a: np.ndarray, rgb_b: np.ndarray, lm_a: np.ndarray, lm_b: np.ndarray, lam: float) -> np.ndarray:
    """``lam * A + (1 - lam) * B``, with B warped (similarity transform) so its landmarks land on A's."""
    m, _ = cv2.estimateAffinePartial2D(np.asarray(lm_b, np.float32), np.asarray(lm_a, np.float32))
    if m is None:
        raise ValueError("landmarks are degenerate")
    h, w = rgb_a.shape[:2]
    warped = cv2.warpAffine(rgb_b, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = lam * rgb_a.astype(np.float32) + (1.0 - lam) * warped.astype(np.float32)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def plan(persons: np.ndarray, train_mask: np.ndarray, n: int, seed: int, lam_range=(0.3, 0.7)):
    """``n`` (index A, index B, lam) triples: two images of different training people, ``lam`` uniform in range."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(train_mask)
    if len(set(persons[idx])) < 2:
        raise ValueError("morphs need at least two training identities")
    a = rng.choice(idx, n)
    b = rng.choice(idx, n)
    while True:
        same = persons[a] == persons[b]
        if not same.any():
            break
        b[same] = rng.choice(idx, int(same.sum()))
    lam = rng.uniform(lam_range[0], lam_range[1], n).astype(np.float32)
    return a, b, lam


# Worker state, set before the pool forks (the decoded images are shared copy-on-write, not pickled).
_W: dict = {}


def _work(job):
    i, a, b, lam = job
    images, lms, boxes, teacher = _W["images"], _W["landmarks"], _W["boxes"], _W["teacher"]
    rgb = morph_pair(images[a], images[b], lms[a], lms[b], float(lam))
    return i, align_face(rgb, lms[a]), teacher.embed(rgb, boxes[a], lms[a])


def build_bank(dataset, cache: dict, train_mask: np.ndarray, n: int, seed: int, out, teacher=None,
               workers: int = 2, progress: bool = True) -> dict:
    """Build ``n`` morphs of training people into ``out`` (.npz): ``crops`` (n, 112, 112, 3) uint8, ``teacher``
    (n, D) raw teacher embeddings, ``parent_a``/``parent_b`` (keys) and ``lam``. ``cache`` is the alignment cache."""
    if teacher is None:
        from train.teacher import DlibTeacher

        teacher = DlibTeacher()
    keys, persons = cache["keys"], cache["persons"]
    a, b, lam = plan(persons, train_mask, n, seed)
    need = set(a.tolist()) | set(b.tolist())
    index = {k: i for i, k in enumerate(keys)}
    images = {}
    for item, data in iter_images(dataset):
        i = index.get(item.key)
        if i in need:
            images[i] = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    missing = need - set(images)
    if missing:
        raise ValueError(f"{len(missing)} cached images are not in {dataset}")
    _W.update(images=images, landmarks=cache["landmarks"], boxes=cache["boxes"], teacher=teacher)
    crops = np.zeros((n, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    emb = None
    jobs = list(zip(range(n), a, b, lam))
    # Workers share the decoded images by forking; where there is no fork (Windows) the bank is built serially.
    fork = workers > 1 and "fork" in mp.get_all_start_methods()
    pool = mp.get_context("fork").Pool(workers) if fork else None
    try:
        results = pool.imap_unordered(_work, jobs, chunksize=16) if pool else map(_work, jobs)
        for i, crop, e in tqdm(results, total=n, desc="morphs", disable=not progress):
            emb = np.zeros((n, len(e)), np.float32) if emb is None else emb
            crops[i], emb[i] = crop, e
    finally:
        if pool:
            pool.terminate()
        _W.clear()
    bank = {"crops": crops, "teacher": emb, "parent_a": keys[a], "parent_b": keys[b], "lam": lam}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **bank)
    os.replace(tmp, out)
    return bank


def bank_path(cfg: dict) -> Path:
    """Where a config's morph bank lives: its size, seed and held-out folds are in the name."""
    d = cfg["data"]
    stem = Path(d["dataset"]).name.split(".")[0]
    folds = "".join(str(f) for f in sorted(d["holdout_folds"])) or "none"
    return Path(d["cache_dir"]) / f"{stem}-morphs-{d['morphs']}-seed{d['morph_seed']}-holdout{folds}.npz"


def load_bank(path, held_identities: set) -> dict:
    """Load a bank, refusing one whose parents include a held-out identity (it would leak into the figures)."""
    with np.load(path, allow_pickle=False) as z:
        bank = {k: z[k] for k in z.files}
    parents = {k.split("/")[0] for k in np.concatenate([bank["parent_a"], bank["parent_b"]])}
    leaked = parents & set(held_identities)
    if leaked:
        raise ValueError(f"{path}: {len(leaked)} morph parents are held-out identities; delete it to rebuild")
    return bank
