"""Train the embedder: identity-balanced batches, online triplet mining, optional distillation from dlib.

    python -m train --config train/configs/default.toml --out runs/default [--resume]

Writes into ``--out``: ``config.toml`` (the resolved config), ``checkpoints/`` (every epoch; ``--resume`` continues
from the newest), ``history.json`` and ``curves.png`` (loss and held-out accuracy per epoch), ``model.keras`` and
``data.json`` (what it was trained on). Evaluate with ``python -m train.evaluate``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from train import config as cfgmod
from train.bnrecal import recalibrate_bn
from train.prepare import holdout_accuracy, prepare_data
from train.sampler import PKSampler


def make_dataset(data: dict, cfg: dict, seed: int):
    import tensorflow as tf

    from train.augment import AugmentConfig, augment

    idx_train = np.flatnonzero(data["train_mask"])
    labels = data["labels"][idx_train]
    b = cfg["batch"]
    sampler = PKSampler(labels, b["p"], b["k"], b["singletons"], seed=seed)
    images = data["images"]
    teacher = data["teacher"] if data["teacher"] is not None else np.zeros((len(images), 128), np.float32)
    tdim = teacher.shape[1]
    n_morph = b["morphs"] if data.get("morph_images") is not None else 0
    rng = np.random.default_rng(seed + 1)

    def gen():
        for batch in sampler:
            for j in idx_train[batch]:
                yield images[j], data["labels"][j], teacher[j]
            # Morphs last, label -1: the metric loss sees only the first sampler.batch_size items.
            for j in rng.integers(0, len(data["morph_images"]), n_morph) if n_morph else ():
                yield data["morph_images"][j], -1, data["morph_teacher"][j]

    size = images.shape[1]
    sig = (tf.TensorSpec((size, size, 3), tf.uint8), tf.TensorSpec((), tf.int64), tf.TensorSpec((tdim,), tf.float32))
    aug_cfg = AugmentConfig(**cfg["augment"])
    ds = tf.data.Dataset.from_generator(gen, output_signature=sig)
    ds = ds.map(lambda x, y, t: (augment(tf.cast(x, tf.float32), aug_cfg), y, t),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(sampler.batch_size + n_morph).prefetch(2), sampler


def plot_curves(history: list, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "metric_loss", "distill_loss", "relational_loss"):
        if key in history[0]:
            ax[0].plot(ep, [h[key] for h in history], marker="o", label=key)
    ax[0].set_xlabel("epoch"), ax[0].set_ylabel("training loss"), ax[0].legend(), ax[0].grid(alpha=0.3)
    ax[1].plot(ep, [100 * h["holdout_accuracy"] for h in history], marker="o", color="C3")
    ax[1].set_xlabel("epoch"), ax[1].set_ylabel("held-out pair accuracy (%)"), ax[1].grid(alpha=0.3)
    ax[1].set_title("identities never trained on")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def init_weights(model, path) -> None:
    """Copy the weights of a saved model of the same architecture into ``model`` (fine-tuning a previous run)."""
    from convert.dlib import load_keras

    src = load_keras(path)
    theirs, ours = src.get_weights(), model.get_weights()
    if [w.shape for w in theirs] != [w.shape for w in ours]:
        raise ValueError(f"{path}: architecture differs from [model] of this config")
    model.set_weights(theirs)


def train(cfg: dict, out, resume: bool = False, progress: bool = True) -> dict:
    import tensorflow as tf
    from tqdm import tqdm

    from train import losses
    from train.model import build_embedder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = cfg["run"]
    tf.config.threading.set_intra_op_parallelism_threads(run["threads"])
    tf.random.set_seed(run["seed"])
    np.random.seed(run["seed"])
    (out / "config.toml").write_text(cfgmod.dumps(cfg))

    data = prepare_data(cfg, progress)
    ds, sampler = make_dataset(data, cfg, run["seed"])
    m = cfg["model"]
    if m["arch"] == "dlib_port":   # fine-tune the ported dlib ResNet (L2-normalised for the metric losses)
        from convert.dlib import build_keras, dlib_model_paths, read_dat

        port = build_keras(read_dat(dlib_model_paths()["resnet"]))
        model = tf.keras.Model(port.input, tf.keras.layers.UnitNormalization(name="l2norm")(port.output),
                               name="dlib_port")
    else:
        model = build_embedder(m["embedding_dim"], m["width"], head_ch=m["head_channels"], input_size=m["input_size"])
    o = cfg["optim"]
    total = o["epochs"] * o["steps_per_epoch"]
    warm = o["warmup_epochs"] * o["steps_per_epoch"]

    def lr_at(step):
        step = tf.cast(step, tf.float32)
        cos = 0.5 * o["lr"] * (1 + tf.cos(math.pi * tf.minimum((step - warm) / max(total - warm, 1), 1.0)))
        return tf.where(step < warm, o["lr"] * (step + 1) / max(warm, 1), cos)

    opt = tf.keras.optimizers.AdamW(learning_rate=o["lr"], weight_decay=o["weight_decay"])
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, optimizer=opt, epoch=epoch_var)
    manager = tf.train.CheckpointManager(ckpt, out / "checkpoints", max_to_keep=2)
    history = []
    if resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        if (out / "history.json").exists():
            history = json.loads((out / "history.json").read_text())["epochs"]
        print(f"resumed from {manager.latest_checkpoint} (epoch {int(epoch_var.numpy())})")
    elif o["init"]:
        init_weights(model, o["init"])
        print(f"initialised from {o['init']}")

    lw = cfg["loss"]
    metric_fn = losses.METRIC_LOSSES[lw["metric"]]
    use_teacher = data["teacher"] is not None
    n_real = sampler.batch_size   # then the batch's morphs, if any (distillation losses only)

    @tf.function
    def step(x, y, t, lr):
        opt.learning_rate.assign(lr)
        with tf.GradientTape() as tape:
            emb = model(x, training=True)
            ml = metric_fn(emb[:n_real], y[:n_real], lw["margin"])
            dl = losses.distillation(emb, t) if use_teacher else tf.constant(0.0)
            rl = losses.relational(emb, t) if use_teacher else tf.constant(0.0)
            loss = lw["metric_weight"] * ml + lw["distill_weight"] * dl + lw["relational_weight"] * rl
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, ml, dl, rl

    folds0 = {f - 1 for f in cfg["data"]["holdout_folds"]}
    clean = data["images"][data["train_mask"]]
    it = iter(ds)
    start_epoch = int(epoch_var.numpy())
    t_start = time.time()
    for epoch in range(start_epoch, o["epochs"]):
        sums = np.zeros(4)
        bar = tqdm(range(o["steps_per_epoch"]), desc=f"epoch {epoch + 1}/{o['epochs']}", disable=not progress)
        for s in bar:
            x, y, t = next(it)
            gstep = epoch * o["steps_per_epoch"] + s
            vals = [float(v) for v in step(x, y, t, lr_at(gstep))]
            sums += vals
            bar.set_postfix(loss=f"{sums[0] / (s + 1):.4f}")
        n = o["steps_per_epoch"]
        recalibrate_bn(model, clean, batches=12)   # inference-mode statistics for the held-out curve
        rec = {"epoch": epoch + 1, "loss": sums[0] / n, "metric_loss": sums[1] / n, "distill_loss": sums[2] / n,
               "relational_loss": sums[3] / n, "holdout_accuracy": holdout_accuracy(model, data, folds0),
               "lr": float(lr_at((epoch + 1) * n - 1)), "seconds": time.time() - t_start}
        history.append(rec)
        print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in rec.items()}), flush=True)
        epoch_var.assign(epoch + 1)
        manager.save()
        (out / "history.json").write_text(json.dumps({"epochs": history}, indent=1))
        plot_curves(history, out / "curves.png")

    recalibrate_bn(model, clean, batches=40)
    model.save(out / "model.keras")
    if m["arch"] == "dlib_port":   # provenance for the converter's sidecar: what these weights started from
        from convert.dlib import SOURCE
        from edge.vision.assets import sha256_file

        src = {**SOURCE, "sha256": sha256_file(dlib_model_paths()["resnet"]), "template": "dlib150",
               "fine_tuned": "python -m train (config.toml beside the model)"}
        (out / "model.source.json").write_text(json.dumps(src, indent=1) + "\n")
    summary = {
        "dataset": cfg["data"]["dataset"], "images": int(len(data["images"])),
        "train_images": int(data["train_mask"].sum()),
        "train_identities": int(len(set(data["persons"][data["train_mask"]]))),
        "held_out_identities": int(len(data["held_identities"])),
        "held_out_folds": cfg["data"]["holdout_folds"], "teacher": cfg["loss"]["teacher"],
        "detected_faces": int(np.asarray(data["detected"]).sum()), "batch_size": sampler.batch_size,
        "steps": total, "params": int(model.count_params()),
        "morphs": int(0 if data["morph_images"] is None else len(data["morph_images"])),
        "morphs_per_batch": int(cfg["batch"]["morphs"]),
    }
    (out / "data.json").write_text(json.dumps(summary, indent=1))
    return {"model": str(out / "model.keras"), "history": history, "data": summary}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="train/configs/default.toml")
    ap.add_argument("--out", required=True, help="run directory")
    ap.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one config value (repeatable)")
    args = ap.parse_args(argv)
    overrides = dict(s.split("=", 1) for s in args.set)
    try:
        cfg = cfgmod.load(args.config, overrides)
    except (ValueError, OSError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    if not os.path.exists(cfg["data"]["dataset"]):
        print(f"train: dataset not found: {cfg['data']['dataset']} (see train/data.py download_lfw)",
              file=sys.stderr)
        return 2
    if cfg["optim"]["init"] and not os.path.exists(cfg["optim"]["init"]):
        print(f"train: optim.init not found: {cfg['optim']['init']}", file=sys.stderr)
        return 2
    try:
        result = train(cfg, args.out, args.resume)
    except ValueError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    print(f"model: {result['model']}")
    return 0
