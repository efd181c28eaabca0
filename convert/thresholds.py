"""The model's thresholds at each FAR target for the comparison the door makes: an enrolled person's jittered
template (:mod:`edge.vision.jitter`) against the face at the door.

    python -m convert.thresholds models/doorface-dlib-int8.tflite [--lfw ...] [--pairs ...] [--folds 3,4,5]

The converter measures its thresholds photo against photo (sidecar ``evaluation``). The door compares a template,
the mean embedding of an enrolled photo and six slightly moved copies of it, with one photo, and those scores sit
a little higher for strangers as well as for the same person: the port's photo-pair threshold of FAR 1e-5 let in
1.26e-5 of strangers' template comparisons on LFW folds 3-5. This tool embeds every image of the LFW folds the
operating point is chosen on through the door's own pipeline (BlazeFace, alignment, the TFLite model), each as a
template and as the face at the door, scores every ordered pair of two different images (one's template, the
other's face), and records the thresholds at FAR 1e-2 to 1e-5 in the sidecar (``thresholds``), with the counts and
TARs behind them (``thresholds_basis``); the photo-pair thresholds stay under ``thresholds_photo_pairs``. The model
file is untouched (its sha256 is checked) and the sidecar is sealed again. Galleries and cohorts stay valid (their
per-person thresholds come from the cohort, not from these), but the door's operating point should be chosen again
(``python -m bench.operating``), since it is expressed as one of these thresholds.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

FARS = (1e-2, 1e-3, 1e-4, 1e-5)


def door_embeddings(images, model, detector, threads: int = 2, progress=None, templates=None):
    """``(embeddings, found)`` of the central face of every RGB image through the door's pipeline; with
    ``templates`` (True, or a mask of the images wanted), also the template an enrollment from each photo stores
    (:func:`edge.vision.jitter.template_embedding`; zero elsewhere), returned third."""
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder
    from edge.vision.jitter import template_embedding
    from train.preprocess import pick_central

    det = BlazeFaceDetector(detector, num_threads=threads)
    emb = Embedder(model, threads).load()
    out = np.zeros((len(images), emb.dim), np.float32)
    ok = np.zeros(len(images), bool)
    want = None if templates is None else np.broadcast_to(np.asarray(templates, bool), (len(images),))
    tmpl = np.zeros_like(out) if want is not None else None
    for i, img in enumerate(progress(images) if progress else images):
        f = pick_central(det.detect(img), img.shape)
        if f is not None:
            crop = emb.crop(img, f)
            out[i] = emb.embed_crop(crop)
            ok[i] = True
            if want is not None and want[i]:
                tmpl[i] = template_embedding(emb.embed_crop, crop)
    return (out, ok) if want is None else (out, ok, tmpl)


def template_scores(faces: np.ndarray, templates: np.ndarray, persons) -> tuple:
    """``(genuine, impostor)`` scores of every ordered pair of two different images: the template of one against
    the face of the other (both unit length). Pure."""
    s = np.asarray(faces, np.float32) @ np.asarray(templates, np.float32).T
    p = np.asarray(persons)
    same = p[:, None] == p[None, :]
    other = ~np.eye(len(p), dtype=bool)
    return s[same & other], s[~same]


def thresholds_at(genuine, impostor, fars=FARS) -> dict:
    """``{far: {"threshold", "tar", "far"}}`` with :func:`train.metrics.tar_at_far`."""
    from train.metrics import tar_at_far

    out = {}
    for f in fars:
        tar, thr, achieved = tar_at_far(genuine, impostor, f)
        out[f] = {"threshold": thr, "tar": tar, "far": achieved, "resolvable": bool(len(impostor) * f >= 1)}
    return out


def _short(f: float) -> str:
    return f"{f:.0e}".replace("e-0", "e-")


def main(argv=None) -> int:
    from edge.vision.embedder import l2_normalise
    from edge.errors import ModelError
    from edge.vision.jitter import JITTERS
    from edge.vision.sidecar import read_sidecar, write_sidecar

    ap = argparse.ArgumentParser(prog="python -m convert.thresholds", description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the .tflite file whose sidecar gets the thresholds")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--folds", default="3,4,5", help="the folds the operating point is chosen on (not reported on)")
    args = ap.parse_args(argv)
    try:
        meta = read_sidecar(args.model)        # verifies the model's sha256 and the sidecar's seal
    except ModelError as exc:
        print(f"convert.thresholds: {exc}", file=sys.stderr)
        return 1
    from pathlib import Path

    from tqdm import tqdm

    from train.data import fold_pairs, load_images

    if not (Path(args.lfw).exists() and Path(args.pairs).exists()):
        print(f"convert.thresholds: {args.lfw} or {args.pairs} not found", file=sys.stderr)
        return 1
    _, people = fold_pairs(args.pairs, args.folds)
    _, persons, images = load_images(args.lfw, people)
    emb, ok, tmpl = door_embeddings(images, args.model, args.detector, templates=True,
                                    progress=lambda xs: tqdm(xs, desc="embed", file=sys.stderr))
    gen, imp = template_scores(l2_normalise(emb[ok]), l2_normalise(tmpl[ok]), persons[ok])
    at = thresholds_at(gen, imp)
    keep = {k: v for k, v in meta.items() if k != "content_sha256"}
    keep.setdefault("thresholds_photo_pairs", dict(meta["thresholds"]))
    keep["thresholds"] = {f"far_{_short(f)}": v["threshold"] for f, v in at.items()}
    keep["thresholds_basis"] = {
        "comparison": f"an enrolled photo's jittered template (edge.vision.jitter, {len(JITTERS)} copies) against another "
                      "photo as the face at the door, through the door's pipeline on raw LFW images",
        "folds": args.folds, "images": int(ok.sum()), "identities": int(len(set(persons[ok]))),
        "genuine": int(len(gen)), "impostor": int(len(imp)),
        "at_far": {_short(f): {k: v[k] for k in ("threshold", "tar", "far", "resolvable")} for f, v in at.items()},
        "made_by": "python -m convert.thresholds"}
    write_sidecar(args.model, keep)
    old = keep["thresholds_photo_pairs"]
    for f, v in at.items():
        k = f"far_{_short(f)}"
        print(f"FAR {_short(f)}: threshold {v['threshold']:.4f} (photo pairs {old.get(k, float('nan')):.4f}), "
              f"TAR {100 * v['tar']:.2f}%, achieved FAR {v['far']:.2e}")
    print(f"{args.model}: thresholds for template-against-face comparisons on {len(imp):,} stranger and {len(gen):,} "
          f"same-person pairs (folds {args.folds}); choose the operating point again with `python -m bench.operating`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
