"""Under- or over-fitted? The same figures on the identities a model trained on and on the held-out ones.

For a trained model and its training config: the mean cosine between the student's and the (centred) dlib teacher's
embedding of each clean aligned image, and the k-fold pair accuracy of student and teacher, each split into the
training identities (the folds of the pairs file that were trained on) and the held-out identities. A student far
from the teacher on its own training images is under-fitted; a student much better on the trained-on pairs than on
the held-out pairs (where the teacher scores the same on both) is over-fitted to its training identities.

    python -m train.fit --config train/configs/stage4.toml --model runs/stage4/model.keras
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from edge.vision.embedder import l2_normalise
from train.metrics import pair_accuracy


def fit_report(student: np.ndarray, teacher: np.ndarray, train_mask, keys, pairs, holdout_folds0) -> dict:
    """Student-teacher cosine and pair accuracy, on training identities (``train``) and held-out ones (``held_out``).

    ``holdout_folds0`` are the 0-based folds of ``pairs`` whose identities were held out; the other folds' pairs are
    the training identities' pairs."""
    train_mask = np.asarray(train_mask, bool)
    cos = (l2_normalise(student) * l2_normalise(teacher)).sum(axis=1)
    out = {}
    for name, mask, folds in (("train", train_mask, lambda f: f not in holdout_folds0),
                              ("held_out", ~train_mask, lambda f: f in holdout_folds0)):
        sel = [p for p in pairs if folds(p.fold)]
        out[name] = {
            "images": int(mask.sum()),
            "teacher_cosine": float(cos[mask].mean()) if mask.any() else float("nan"),
            "student": pair_accuracy(student, keys, sel),
            "teacher": pair_accuracy(teacher, keys, sel),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.fit", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the training config the model was trained with")
    ap.add_argument("--model", required=True, help="model.keras")
    ap.add_argument("--out", help="also write the report as JSON here")
    args = ap.parse_args(argv)
    import tensorflow as tf

    from train import config as cfgmod
    from train.prepare import embed_images, prepare_data

    cfg = cfgmod.load(args.config)
    if cfg["loss"]["teacher"] != "dlib":
        print("error: the config has no teacher ([loss] teacher = \"dlib\")", file=sys.stderr)
        return 2
    data = prepare_data(cfg, progress=True)
    model = tf.keras.models.load_model(args.model, compile=False)
    student = embed_images(model, data["images"])
    folds0 = {f - 1 for f in cfg["data"]["holdout_folds"]}
    rep = fit_report(student, data["teacher"], data["train_mask"], data["keys"], data["pairs"], folds0)
    for name, r in rep.items():
        print(f"{name:<9} {r['images']:>5} images  cosine to teacher {r['teacher_cosine']:.3f}  "
              f"pair accuracy student {100 * r['student']['accuracy']:.2f}%  "
              f"teacher {100 * r['teacher']['accuracy']:.2f}%  ({r['student']['pairs']} pairs)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rep, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
