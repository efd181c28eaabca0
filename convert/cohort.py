"""The default stranger cohort that ships beside a model: embeddings (no images) of LFW faces, for per-person
thresholds (:mod:`edge.people.cohort`).

    python -m convert.cohort --model models/doorface-dlib-int8.tflite [--lfw ARCHIVE] [--pairs PAIRS]
                             [--exclude-folds 1,2]
    python -m convert.cohort --reseal models/*-cohort.npz      # seal cohorts of format 1, embeddings untouched

Every LFW image of a person who is not in the excluded folds of ``pairs-dev.txt`` (folds 1-2: the folds every
reported figure is measured on, so the people enrolled in those figures are never in the cohort) goes through the
device's own path (BlazeFace, the face nearest the centre, the model's alignment, the TFLite model). The file also
records the model's genuine-score quantiles (every same-person pair of the cohort's images), from which
``doorface enroll`` estimates how hard a strict per-person threshold will be for that person. Writes
``<model>-cohort.npz`` beside the model, sealed (:func:`edge.people.cohort.seal`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

LFW = "../shared/data/lfw/lfw-deepfunneled-train.tgz"
PAIRS = "../shared/data/lfw/pairs-dev.txt"
SOURCE = ("Labeled Faces in the Wild, deep-funneled (Huang, Ramesh, Berg, Learned-Miller 2007; University of "
          "Massachusetts, Amherst; vis-www.cs.umass.edu/lfw), research data set: embeddings only, no images")


def genuine_quantiles(emb: np.ndarray, persons: np.ndarray, n: int = 101) -> list:
    """Quantiles (0, 1/(n-1), ..., 1) of the cosine similarity of every same-person pair of images."""
    sims = []
    for p in np.unique(persons):
        idx = np.flatnonzero(persons == p)
        if len(idx) > 1:
            s = emb[idx] @ emb[idx].T
            sims.append(s[np.triu_indices(len(idx), 1)])
    sims = np.concatenate(sims) if sims else np.zeros(0)
    return [round(float(v), 6) for v in np.quantile(sims, np.linspace(0, 1, n))] if len(sims) else []


def embed_lfw(archive, model: str, detector: str, exclude: set, progress=None):
    """``(embeddings, persons)`` of every image of the archive whose person is not in ``exclude``."""
    import cv2

    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder
    from train.data import iter_images, list_items
    from train.preprocess import pick_central

    det, emb = BlazeFaceDetector(detector), Embedder(model).load()
    items = [it for it in list_items(archive) if it.person not in exclude]
    keep = {it.key for it in items}
    out, persons = [], []
    bar = progress(total=len(items)) if progress else None
    for item, data in iter_images(archive):
        if item.key not in keep:
            continue
        if bar is not None:
            bar.update(1)
        rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        face = pick_central(det.detect(rgb), rgb.shape)
        if face is not None:
            out.append(emb.embed_crop(emb.crop(rgb, face.landmarks)))
            persons.append(item.person)
    if bar is not None:
        bar.close()
    return np.stack(out), np.array(persons), len(items), emb


def reseal(paths) -> int:
    """Seal cohorts written before the meta was sealed (format 1): embeddings and meta are kept as they are."""
    from edge.people import cohort as co

    for path in paths:
        before = Path(path).read_bytes()
        c = co.reseal(path)
        print(f"{path}: sealed (format {co.FORMAT_VERSION}, content_sha256 {c.meta['content_sha256'][:12]}, "
              f"embeddings sha256 {c.sha256[:12]} unchanged; {len(before)} -> {Path(path).stat().st_size} bytes)")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.cohort", description=__doc__.splitlines()[0])
    ap.add_argument("--reseal", nargs="+", metavar="NPZ", help="seal these cohorts of format 1 in place and exit")
    ap.add_argument("--model")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--lfw", default=LFW)
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--exclude-folds", default="1,2", help="people of these pairs folds are left out")
    ap.add_argument("--out", help="default: <model>-cohort.npz beside the model")
    args = ap.parse_args(argv)
    if args.reseal:
        return reseal(args.reseal)
    if not args.model:
        ap.error("--model is required (or --reseal)")
    from tqdm import tqdm

    from edge.people import cohort as co
    from edge.vision.embedder import l2_normalise
    from train.data import pair_identities, parse_folds, read_pairs

    if not Path(args.lfw).exists() or not Path(args.pairs).exists():
        print(f"convert.cohort: {args.lfw} or {args.pairs} not found", file=sys.stderr)
        return 1
    exclude = set(pair_identities(read_pairs(args.pairs), parse_folds(args.exclude_folds)))
    emb, persons, images, embedder = embed_lfw(args.lfw, args.model, args.detector, exclude,
                                               progress=lambda total: tqdm(total=total, desc="cohort"))
    emb = l2_normalise(emb)
    meta = {"name": f"LFW (people outside pairs-dev folds {args.exclude_folds})", "source": SOURCE,
            "licence": "LFW is a research data set without a licence file; these are derived embeddings of its "
                       "public-figure photos, no images",
            "identities": int(len(np.unique(persons))), "images": images, "skipped": images - len(emb),
            "excluded": f"people of pairs-dev.txt folds {args.exclude_folds}",
            "model_sha256": embedder.sha256, "model_file": Path(args.model).name,
            "built_by": "python -m convert.cohort",
            "genuine_quantiles": genuine_quantiles(emb, persons),
            "genuine_source": "every same-person pair of the cohort's images (cosine), quantiles 0..1 in 101 steps"}
    out = Path(args.out) if args.out else co.shipped_path(args.model)
    c = co.save(out, emb, meta, mode=0o644)
    print(f"{c.path}: {len(emb)} faces of {meta['identities']} people ({meta['skipped']} of {images} images "
          f"without a face), {out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
