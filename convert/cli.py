"""Convert a trained embedder to TFLite, prove int8 matches float, and write the sidecars.

    python -m convert runs/stage4/model.keras --out models --quant int8 \
        --eval-cache .cache/lfw-deepfunneled-train-aligned.npz --pairs ../shared/data/lfw/pairs-dev.txt --folds 1,2

Writes ``NAME-float32.tflite`` (always: the baseline) and ``NAME-QUANT.tflite``, each with its ``.json`` sidecar,
and ``NAME-parity.json``. Calibration faces (``--calib``: an alignment cache ``.npz`` or a folder of face photos,
default the evaluation cache) are drawn one per identity across identities not held out, with lighting
variants. Parity is measured on held-out identities only. The conversion fails (exit 1, the failing model
removed) when int8 loses more than ``--max-acc-drop`` points of accuracy or ``--max-tar-drop`` points of TAR at
FAR 1e-3, or when its mean cosine to the Keras embeddings falls under ``--min-cos``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

import numpy as np


class ParityError(Exception):
    pass


def lighting_variants(crops: np.ndarray, seed: int = 0) -> np.ndarray:
    """A third of the faces darker (door at night), a sixth brighter, a sixth grayscale (IR-like)."""
    rng = np.random.default_rng(seed)
    out = crops.astype(np.float32).copy()
    n = len(out)
    kinds = rng.permutation(np.r_[np.zeros(n - n // 3 - n // 6 * 2, int), np.ones(n // 3, int),
                                  np.full(n // 6, 2), np.full(n // 6, 3)])
    for i, k in enumerate(kinds):
        if k == 1:
            out[i] = out[i] * rng.uniform(0.25, 0.6) + rng.normal(0, 3, out[i].shape)
        elif k == 2:
            out[i] = out[i] * rng.uniform(1.1, 1.4) + 10
        elif k == 3:
            out[i] = out[i].mean(axis=2, keepdims=True)
    return np.clip(out, 0, 255).astype(np.uint8)


def calibration_faces(calib, size: int, exclude_people: set, count: int, seed: int = 0,
                      variants: bool = True, template: str = "arcface112") -> np.ndarray:
    """``count`` aligned faces at ``size``: one per identity (not in ``exclude_people``), with lighting variants.
    A cache's crops are used as they are (its template must be the model's); photos are aligned to ``template``."""
    from edge.vision.align import get_template, resize_crop

    rng = np.random.default_rng(seed)
    calib = Path(calib)
    if calib.is_file():
        with np.load(calib) as z:
            persons, crops = z["persons"], z["crops"]
        first = {}
        for i in rng.permutation(len(persons)):
            if persons[i] not in exclude_people and persons[i] not in first:
                first[persons[i]] = i
        idx = sorted(first.values())[:count] if len(first) <= count else \
            sorted(rng.choice(sorted(first.values()), count, replace=False))
        faces = crops[idx]
    else:
        from edge.vision.detector import BlazeFaceDetector
        from edge.vision.align import align_face
        from edge.vision.images import expand_paths, read_rgb
        from edge.vision.faces import largest

        det = BlazeFaceDetector(os.environ.get("DOORFACE_DETECTOR", "models/face_detection_short_range.tflite"))
        faces = []
        for f in expand_paths([calib])[:count]:
            rgb = read_rgb(f)
            face = largest(det.detect(rgb))
            if face is not None:
                faces.append(align_face(rgb, face.landmarks, template=template))
        side = get_template(template).size
        faces = np.stack(faces) if faces else np.zeros((0, side, side, 3), np.uint8)
    if not len(faces):
        raise ParityError(f"no calibration faces from {calib}")
    faces = lighting_variants(faces, seed) if variants else faces
    return np.stack([resize_crop(c, size) for c in faces])


def run_sidecar_meta(model_path: Path) -> dict:
    """The training config and data summary saved next to a trained model (if any), and the provenance of a
    ported model (``MODEL.source.json``, written by ``python -m convert.dlib``: file, sha256, package, licence)."""
    run = model_path.parent
    meta = {}
    if (run / "config.toml").exists():
        meta["training_config"] = (run / "config.toml").read_text()
    if (run / "data.json").exists():
        meta["training_data"] = json.loads((run / "data.json").read_text())
    if model_path.with_suffix(".source.json").exists():
        meta["source"] = json.loads(model_path.with_suffix(".source.json").read_text())
    return meta


def load_keras(model_path):
    """A trained or ported Keras embedder (the port's custom layer registered)."""
    from convert.dlib import load_keras as load

    return load(model_path)


def normalisation_of(model) -> str:
    """What the model's ``normalise`` layer does to the raw pixels, in words for the sidecar."""
    try:
        cfg = model.get_layer("normalise").get_config()
    except ValueError:
        return "none inside the model"
    offset = np.round(np.asarray(cfg['offset'], np.float64), 6).tolist()
    return f"inside the model: x * {cfg['scale']:.6g} + {offset} (feed raw aligned pixels)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert", description=__doc__.splitlines()[0])
    ap.add_argument("model", help="trained Keras model (.keras)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--quant", default="int8", choices=["int8", "float16", "dynamic", "float32"])
    ap.add_argument("--name", default="doorface")
    ap.add_argument("--eval-cache", required=True, help="alignment cache (.npz) with the evaluation faces")
    ap.add_argument("--calib", help="calibration faces: alignment cache .npz or folder (default: --eval-cache)")
    ap.add_argument("--calib-count", type=int, default=300, help="100-500 faces")
    ap.add_argument("--no-lighting-variants", action="store_true",
                    help="calibrate on the faces as they are (default: a third darker, some brighter or grey)")
    ap.add_argument("--pairs", help="LFW pairs file for verification accuracy")
    ap.add_argument("--folds", default="1,2", help="held-out folds of --pairs (1-based)")
    ap.add_argument("--parity-faces", type=int, default=300)
    ap.add_argument("--max-acc-drop", type=float, default=0.5, help="points of accuracy int8 may lose")
    ap.add_argument("--min-cos", type=float, default=0.98, help="minimum mean cosine int8 vs Keras")
    ap.add_argument("--max-tar-drop", type=float, default=2.0,
                    help="points of TAR at FAR 1e-3 (all pairs of held-out identities) int8 may lose")
    ap.add_argument("--no-flip-average", action="store_true",
                    help="export the plain embedder (default: embedding of the face plus its mirror image, "
                         "see train.model.flip_averaged; twice the embedding cost)")
    ap.add_argument("--template", help="alignment template of the model's crops (edge.vision.align.TEMPLATES; default: the "
                                       "port's source.json, else arcface112)")
    ap.add_argument("--min-margin", type=float,
                    help="the door's margin rule for this model (best person over the second best), recorded as "
                         "decision.min_margin in the sidecar; choose it with `python -m bench.operating`")
    ap.add_argument("--far-target", choices=["1e-2", "1e-3", "1e-4", "1e-5"],
                    help="the door's default FAR target for this model, recorded as decision.far_target")
    ap.add_argument("--stranger-neighbours", type=int,
                    help="how many of a face's closest cohort strangers the margin is also taken over, recorded as "
                         "decision.stranger_neighbours (edge.people.cohort.crowding; 0: the second person only)")
    ap.add_argument("--decision-note", default="", help="how --far-target/--min-margin were chosen (recorded)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        return run(args)
    except (ParityError, ValueError, OSError) as exc:
        print(f"convert: {exc}", file=sys.stderr)
        return 1


def run(args) -> int:
    """Evaluation set -> variants and their parity -> the gate -> files and sidecars."""
    from edge.vision.align import DEFAULT_TEMPLATE, get_template

    model_path = Path(args.model)
    model = load_keras(model_path)
    extra = run_sidecar_meta(model_path)
    template = args.template or extra.get("source", {}).get("template", DEFAULT_TEMPLATE)
    get_template(template)
    normalisation = normalisation_of(model)
    if not args.no_flip_average:
        from train.model import flip_averaged

        model = flip_averaged(model)
    ev = evaluation_set(args, int(model.input_shape[1]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"calibration: {args.calib_count} faces from {args.calib or args.eval_cache}", file=sys.stderr)
    calib = calibration_faces(args.calib or args.eval_cache, ev["size"], ev["held"], args.calib_count,
                              variants=not args.no_lighting_variants, template=template)
    results, paths, keras_emb = convert_variants(model, args, ev, calib, out, template)
    failures = gate(results, args, bool(ev["pairs"]))
    parity = {"model": str(model_path), "input_size": ev["size"], "evaluation_images": int(len(ev["keys"])),
              "evaluation_identities": int(len(ev["held"])), "pairs_folds": args.folds if ev["pairs"] else None,
              "calibration_faces": int(len(calib)), "variants": results,
              "keras": _public_report(keras_emb, ev) if ev["pairs"] else None,
              "gate": {"max_acc_drop": args.max_acc_drop, "min_cos": args.min_cos, "max_tar_drop": args.max_tar_drop,
                       "passed": not failures, "failures": failures}}
    (out / f"{args.name}-parity.json").write_text(json.dumps(parity, indent=1))
    print_table(parity)
    if failures:
        for p in paths.values():
            p.unlink(missing_ok=True)
        raise ParityError("parity gate failed: " + "; ".join(failures) + f" (see {out / f'{args.name}-parity.json'})")
    for quant, tmp in paths.items():
        paths[quant] = out / f"{args.name}-{quant}.tflite"
        os.replace(tmp, paths[quant])
        write_model_sidecar(paths[quant], quant, results[quant], args, ev, template, normalisation,
                            bool(model.layers[-1].name.startswith("l2norm")), extra)
    print(f"wrote {', '.join(str(p) for p in paths.values())} (+ sidecars, {args.name}-parity.json)")
    return 0


def evaluation_set(args, size: int) -> dict:
    """The held-out faces of the cache (identities of ``--folds`` of ``--pairs``, else the last fifth of people
    with 2+ images), their keys, identities, crops and model inputs, and the pairs."""
    from edge.vision.align import resize_crop
    from train.data import fold_pairs
    from train.preprocess import load_cache

    cache = load_cache(args.eval_cache)
    persons = cache["persons"]
    if args.pairs:
        pairs, held = fold_pairs(args.pairs, args.folds)
    else:
        pairs = []
        multi = sorted({p for p in persons if (persons == p).sum() >= 2})
        held = set(multi[-max(2, len(multi) // 5):])
    idx = np.flatnonzero(np.isin(persons, sorted(held)))
    if len(idx) < 2:
        raise ParityError("fewer than two evaluation faces")
    crops = cache["crops"][idx]
    return {"size": size, "pairs": pairs, "held": held, "keys": cache["keys"][idx], "persons": persons[idx],
            "crops": crops, "input": np.stack([resize_crop(c, size) for c in crops])}


def _public_report(emb, ev) -> dict:
    from train.evaluate import public, report

    return public(report(emb, ev["keys"], ev["persons"], ev["pairs"]))


def convert_variants(model, args, ev, calib, out: Path, template: str):
    """float32 and ``--quant``, written to hidden temporary files, each measured against Keras on the
    evaluation set: ``(results, temporary paths, Keras embeddings)``."""
    from convert.tflite import convert, op_summary
    from edge.vision.embedder import l2_normalise
    from train.evaluate import tflite_embedder

    x = ev["input"]
    keras_emb = np.concatenate([model(x[i:i + 256].astype(np.float32), training=False).numpy()
                                for i in range(0, len(x), 256)])
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(x), min(args.parity_faces, len(x)), replace=False))
    results, paths = {}, {}
    for quant in ["float32"] + ([args.quant] if args.quant != "float32" else []):
        path = out / f".{args.name}-{quant}.tmp.tflite"   # moved into place only if the gate passes
        path.write_bytes(convert(model, quant, calib if quant == "int8" else None))
        paths[quant] = path
        emb = tflite_embedder(str(path), args.threads, verify=False, template=template)(ev["crops"])
        cos = np.sum(l2_normalise(emb[idx]) * l2_normalise(keras_emb[idx]), axis=1)
        results[quant] = {"size_bytes": path.stat().st_size, "cosine_to_keras_mean": float(cos.mean()),
                          "cosine_to_keras_min": float(cos.min()), "parity_faces": int(len(idx)),
                          "eval": _public_report(emb, ev), "ops": op_summary(path)}
    return results, paths, keras_emb


def gate(results: dict, args, have_pairs: bool) -> list:
    """Why the quantised variant may not ship (empty: it may)."""
    quant = args.quant
    if quant == "float32":
        return []
    failures = []
    base, q = results["float32"], results[quant]
    if q["cosine_to_keras_mean"] < args.min_cos:
        failures.append(f"{quant} mean cosine to Keras {q['cosine_to_keras_mean']:.4f} < {args.min_cos}")
    tar_drop = 100 * (base["eval"]["at_far"]["0.001"]["tar"] - q["eval"]["at_far"]["0.001"]["tar"])
    if tar_drop > args.max_tar_drop:
        failures.append(f"{quant} loses {tar_drop:.2f} points of TAR at FAR 1e-3 (> {args.max_tar_drop})")
    if have_pairs:
        drop = 100 * (base["eval"]["accuracy"] - q["eval"]["accuracy"])
        if drop > args.max_acc_drop:
            failures.append(f"{quant} loses {drop:.2f} points of accuracy (> {args.max_acc_drop})")
    return failures


def write_model_sidecar(path: Path, quant: str, result: dict, args, ev, template: str, normalisation: str,
                        l2_normalised: bool, extra: dict) -> None:
    from convert.tflite import io_details
    from edge.vision.align import get_template
    from edge.vision.sidecar import write_sidecar

    rep = result["eval"]
    io = io_details(path)
    meta = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quantization": quant,
        "input": {**io["input"], "color_order": "RGB", "value_range": [0, 255], "normalisation": normalisation,
                  "template": template,
                  "alignment": f"edge.vision.align: 4-point similarity to the {template} template, then resize",
                  "crop_size": get_template(template).size},
        "output": {**io["output"], "embedding_dim": int(io["output"]["shape"][-1]), "l2_normalised": l2_normalised},
        "embedding_dim": int(io["output"]["shape"][-1]),
        "metric": "cosine",
        "flip_average": not args.no_flip_average,
        # Thresholds keyed like the config's far_target ("1e-3").
        "thresholds": {f"far_{_short(k)}": v["threshold"] for k, v in rep["at_far"].items()},
        "evaluation": {"accuracy": rep.get("accuracy"), "auc": rep.get("auc"), "eer": rep.get("eer"),
                       "at_far": rep["at_far"], "pairs_folds": args.folds if ev["pairs"] else None,
                       "images": int(len(ev["keys"])), "identities": int(len(ev["held"])),
                       "note": "identities never seen in training"},
        "parity": {"cosine_to_keras_mean": result["cosine_to_keras_mean"],
                   "cosine_to_keras_min": result["cosine_to_keras_min"]},
        **extra,
    }
    write_sidecar(path, with_decision(meta, args.far_target, args.min_margin, args.stranger_neighbours,
                                      args.decision_note))


def with_decision(meta: dict, far_target=None, min_margin=None, stranger_neighbours=None, note: str = "") -> dict:
    """``meta`` with the door's operating point recorded as ``decision`` (only the values given)."""
    decision = {k: v for k, v in (("far_target", far_target), ("min_margin", min_margin),
                                  ("stranger_neighbours", stranger_neighbours)) if v is not None}
    return {**meta, "decision": {**decision, "chosen_by": note}} if decision else meta


def _short(far: str) -> str:
    return {"0.01": "1e-2", "0.001": "1e-3", "0.0001": "1e-4", "1e-05": "1e-5"}.get(far, far)


def print_table(parity: dict) -> None:
    rows = [("variant", "size KB", "cos mean", "cos min", "acc %", "TAR@1e-3 %", "TAR@1e-4 %")]
    if parity["keras"]:
        k = parity["keras"]
        rows.append(("keras", "-", "1", "1", f"{100 * k['accuracy']:.2f}", f"{100 * k['at_far']['0.001']['tar']:.2f}",
                     f"{100 * k['at_far']['0.0001']['tar']:.2f}"))
    for name, v in parity["variants"].items():
        e = v["eval"]
        rows.append((name, f"{v['size_bytes'] / 1024:.0f}", f"{v['cosine_to_keras_mean']:.4f}",
                     f"{v['cosine_to_keras_min']:.4f}", f"{100 * e['accuracy']:.2f}" if "accuracy" in e else "-",
                     f"{100 * e['at_far']['0.001']['tar']:.2f}", f"{100 * e['at_far']['0.0001']['tar']:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    print(f"gate: {'PASSED' if parity['gate']['passed'] else 'FAILED: ' + '; '.join(parity['gate']['failures'])}")
