"""What a training run reads: aligned crops, labels, teacher embeddings, the held-out split, the morph bank; and the
held-out check used during training. Shared by ``train.train``, ``train.bnrecal``, ``train.morph`` and ``train.fit``
(none of them imports another's script).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from train.data import pair_identities, read_pairs


def prepare_data(cfg: dict, progress: bool = True) -> dict:
    """Aligned crops (resized to the model input), labels, teacher embeddings, the held-out split and, when the
    config asks for them, the morph bank (``morph_images``, ``morph_teacher``; see train/morphbank.py)."""
    from train.preprocess import load_cache, preprocess

    d = cfg["data"]
    cache_dir = Path(d["cache_dir"])
    stem = Path(d["dataset"]).name.split(".")[0]
    crops_path = cache_dir / f"{stem}-aligned.npz"
    if not crops_path.exists():
        preprocess(d["dataset"], crops_path, d["detector"], progress=progress)
    from train.config import TEMPLATE

    template = TEMPLATE[cfg["model"]["arch"]]
    if template != "arcface112":   # the same faces and landmarks, aligned to the architecture's template
        from train.chips import realign

        tpl_path = cache_dir / f"{stem}-{template}.npz"
        if not tpl_path.exists():
            realign(d["dataset"], crops_path, tpl_path, template, progress=progress)
        cache = load_cache(tpl_path)
    else:
        cache = load_cache(crops_path)
    size = cfg["model"]["input_size"]
    from edge.vision.align import resize_crop

    images = np.stack([resize_crop(c, size) for c in cache["crops"]])
    persons = cache["persons"]
    keys = cache["keys"]
    teacher = None
    if cfg["loss"]["teacher"] != "none":
        # dlib itself, or its TensorFlow port (no dlib needed): the same network on its own or on BlazeFace chips.
        t_path = cache_dir / f"{stem}-teacher{'' if cfg['loss']['teacher'] == 'dlib' else '-port'}.npz"
        if not t_path.exists():
            from train.teacher import compute

            compute(d["dataset"], crops_path, t_path, progress=progress, teacher=cfg["loss"]["teacher"])
        with np.load(t_path) as z:
            if list(z["keys"]) != list(keys):
                raise ValueError(f"{t_path} does not match {crops_path}; delete it to recompute")
            teacher = z["embeddings"]
    held = set()
    pairs = []
    if d["pairs"]:
        pairs = read_pairs(d["pairs"])
        folds0 = {f - 1 for f in d["holdout_folds"]}
        held = pair_identities(pairs, folds0)
    train_mask = np.array([p not in held for p in persons])
    morph_images = morph_teacher = None
    if teacher is not None:
        # dlib's embeddings share a large common component (mean cosine between different people 0.84 here);
        # distilling that makes every student embedding nearly the same, which BN statistics and int8 then
        # destroy. Centre on the training images' mean (no held-out identity involved): impostor cosine -> 0.01.
        # The ported network itself (model.arch = dlib_port) keeps dlib's geometry: its teacher is not centred.
        mean = teacher[train_mask].mean(axis=0, keepdims=True) if cfg["model"]["arch"] == "small" else \
            np.zeros((1, teacher.shape[1]), np.float32)
        teacher = teacher - mean
        if d["morphs"]:
            from train.morphbank import bank_path, build_bank, load_bank

            path = bank_path(cfg)
            if not path.exists():
                build_bank(d["dataset"], cache, train_mask, d["morphs"], d["morph_seed"], path, progress=progress)
            bank = load_bank(path, held)
            morph_images = np.stack([resize_crop(c, size) for c in bank["crops"]])
            morph_teacher = bank["teacher"] - mean   # the same centre as the real images'
    names = sorted(set(persons[train_mask]))
    label_of = {n: i for i, n in enumerate(names)}
    return {"images": images, "persons": persons, "keys": keys, "teacher": teacher, "train_mask": train_mask,
            "labels": np.array([label_of.get(p, -1) for p in persons]), "held_identities": held,
            "pairs": pairs, "detected": cache["detected"], "morph_images": morph_images,
            "morph_teacher": morph_teacher}


def embed_images(model, images, batch=256):
    out = [model(images[i:i + batch].astype(np.float32), training=False).numpy() for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def holdout_accuracy(model, data: dict, folds0) -> float:
    """k-fold accuracy on the held-out folds' pairs (for the training curve; not used to pick a checkpoint)."""
    from train.metrics import pair_accuracy

    pairs = [p for p in data["pairs"] if p.fold in folds0]
    index = {k: i for i, k in enumerate(data["keys"])}
    needed = sorted({index[k] for p in pairs for k in (p.key_a, p.key_b) if k in index})
    if not needed:
        return float("nan")
    emb = embed_images(model, data["images"][needed])
    return pair_accuracy(emb, [data["keys"][i] for i in needed], pairs)["accuracy"]
