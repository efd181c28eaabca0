"""The default stranger cohort that ships beside a model: embeddings (no images) of FairFace or LFW faces, for
per-person thresholds (:mod:`edge.people.cohort`).

    python -m convert.cohort --model models/doorface-dlib-int8.tflite --fairface DIR   # the default model's cohort
    python -m convert.cohort --model models/doorface-dlib-int8.tflite --fairface download
    python -m convert.cohort --model models/doorface-int8.tflite [--lfw ARCHIVE] [--pairs PAIRS] [--exclude-folds 1,2]

**FairFace** (the default model's shipped cohort): the 540 FairFace training images (Kärkkäinen and Joo, WACV 2021;
Flickr / YFCC-100M photos balanced by race, gender and age; CC BY 4.0) that the public repository
thlaiquid-ai/demographic-test-images holds in ``fairface/`` (``fairface_0001.jpg`` ... ``fairface_0540.jpg``, 448 px,
commit :data:`FAIRFACE_COMMIT`). ``DIR`` is that folder from a checkout; ``download`` fetches the 540 files at that
commit into ``.cache/fairface/`` (needs the internet). A rebuild whose images differ from the sha256s the committed
attribution file lists is refused (the figures were measured on those images). Beside the cohort goes its attribution
file (``<model>-cohort-attribution.csv``: per embedding row, the image's file, sha256, link, licence and link to the
licence), which the cohort's meta pins by sha256. The model's genuine-score quantiles still come from LFW (FairFace has
no identities), when the archive is there.
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
            out.append(emb.embed_crop(emb.crop(rgb, face)))
            persons.append(item.person)
    if bar is not None:
        bar.close()
    return np.stack(out), np.array(persons), len(items), emb


FAIRFACE_REPO = "thlaiquid-ai/demographic-test-images"
FAIRFACE_COMMIT = "3225e93be7349143e5496eda971c65969efe7c35"
FAIRFACE_URL = f"https://raw.githubusercontent.com/{FAIRFACE_REPO}/{FAIRFACE_COMMIT}/fairface/"
FAIRFACE_SOURCE = ("FairFace (Kärkkäinen and Joo, 'FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age', "
                   "WACV 2021; github.com/joojs/fairface), training images via HuggingFaceM4/FairFace config 1.25, as "
                   f"sampled into github.com/{FAIRFACE_REPO} (fairface/, commit {FAIRFACE_COMMIT[:7]}): embeddings "
                   "only, no images")
FAIRFACE_LICENCE = "CC BY 4.0"
FAIRFACE_LICENCE_URL = "https://creativecommons.org/licenses/by/4.0/"
FAIRFACE_COUNT = 540
ATTRIBUTION_FIELDS = ("row", "file", "sha256", "link", "age", "gender", "dataset", "licence", "licence_url")


def attribution_path(cohort_path) -> Path:
    """``models/x-cohort.npz`` -> ``models/x-cohort-attribution.csv``."""
    p = Path(cohort_path)
    return p.with_name(p.stem + "-attribution.csv")


def fairface_files(folder) -> list:
    """The 540 FairFace images of the folder (``fairface_NNNN.jpg``, sorted); anything else there is ignored."""
    files = sorted(Path(folder).glob("fairface_[0-9][0-9][0-9][0-9].jpg"))
    if len(files) != FAIRFACE_COUNT:
        raise OSError(f"{folder}: {len(files)} fairface_NNNN.jpg files, expected {FAIRFACE_COUNT} (the fairface/ "
                      f"folder of {FAIRFACE_REPO})")
    return files


def download_fairface(dest=".cache/fairface") -> Path:
    """Fetch the 540 images and ground_truth.json at :data:`FAIRFACE_COMMIT` into ``dest`` (skips files present)."""
    import urllib.request

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = ["ground_truth.json"] + [f"fairface_{i:04d}.jpg" for i in range(1, FAIRFACE_COUNT + 1)]
    for name in names:
        if not (dest / name).exists():
            with urllib.request.urlopen(FAIRFACE_URL + name, timeout=30) as r:
                (dest / name).write_bytes(r.read())
    return dest


def fairface_rows(folder, files, found) -> list:
    """Attribution rows (dicts of :data:`ATTRIBUTION_FIELDS`) of the images with a face, in embedding order."""
    import hashlib
    import json

    gt = {}
    if (Path(folder) / "ground_truth.json").exists():
        gt = {g["filename"]: g for g in json.loads((Path(folder) / "ground_truth.json").read_text())}
    rows = []
    for f, ok in zip(files, found):
        if ok:
            g = gt.get(f.name, {})
            rows.append({"row": len(rows), "file": f.name, "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
                         "link": FAIRFACE_URL + f.name, "age": g.get("age", ""), "gender": g.get("gender", ""),
                         "dataset": "FairFace (Kärkkäinen and Joo, WACV 2021), train split",
                         "licence": FAIRFACE_LICENCE, "licence_url": FAIRFACE_LICENCE_URL})
    return rows


def write_attribution(path: Path, rows: list) -> str:
    """Write the attribution CSV; its sha256."""
    import csv
    import hashlib
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ATTRIBUTION_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    data = buf.getvalue().encode()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def embed_files(files, model: str, detector: str, progress=None):
    """``(embeddings, found)`` of the central face of every image through the device's own path."""
    from convert.thresholds import door_embeddings
    from edge.vision.images import read_rgb

    return door_embeddings([read_rgb(f) for f in files], model, detector, progress=progress)


def lfw_genuine(args, progress=None) -> list:
    """The model's genuine-score quantiles from LFW people outside the excluded folds ([] without LFW)."""
    from edge.vision.embedder import l2_normalise
    from train.data import pair_identities, parse_folds, read_pairs

    if not Path(args.lfw).exists() or not Path(args.pairs).exists():
        return []
    exclude = set(pair_identities(read_pairs(args.pairs), parse_folds(args.exclude_folds)))
    emb, persons, _, _ = embed_lfw(args.lfw, args.model, args.detector, exclude, progress=progress)
    return genuine_quantiles(l2_normalise(emb), persons)


def build_fairface(args) -> int:
    """The FairFace cohort + its attribution file beside the model."""
    from tqdm import tqdm

    from edge.people import cohort as co
    from edge.vision.embedder import Embedder, l2_normalise

    folder = download_fairface() if args.fairface == "download" else Path(args.fairface)
    files = fairface_files(folder)
    emb, found = embed_files(files, args.model, args.detector, progress=lambda xs: tqdm(xs, desc="fairface"))
    rows = fairface_rows(folder, files, found)
    out = Path(args.out) if args.out else co.shipped_path(args.model)
    att = attribution_path(out)
    if att.exists():
        import csv

        known = {r["file"]: r["sha256"] for r in csv.DictReader(att.read_text().splitlines())}
        other = [r["file"] for r in rows if r["file"] in known and known[r["file"]] != r["sha256"]]
        if other:
            raise OSError(f"{len(other)} image(s) differ from {att} (first: {other[0]}): not the images this cohort "
                          "was measured with")
    meta = {"name": f"FairFace ({len(rows)} faces)", "source": FAIRFACE_SOURCE,
            "licence": f"{FAIRFACE_LICENCE} ({FAIRFACE_LICENCE_URL}): attribution per image in {att.name}",
            "images": len(files), "skipped": len(files) - len(rows),
            "skipped_files": [f.name for f, ok in zip(files, found) if not ok],
            "attribution_file": att.name, "attribution_sha256": write_attribution(att, rows),
            "model_sha256": Embedder(args.model).sha256, "model_file": Path(args.model).name,
            "built_by": "python -m convert.cohort --fairface DIR",
            "genuine_quantiles": lfw_genuine(args, progress=lambda total: tqdm(total=total, desc="lfw genuine")),
            "genuine_source": "every same-person pair of LFW images of people outside pairs-dev folds "
                              f"{args.exclude_folds} (cosine), quantiles 0..1 in 101 steps"}
    c = co.save(out, l2_normalise(emb[found]), meta, mode=0o644)
    print(f"{c.path}: {len(rows)} FairFace faces ({meta['skipped']} of {len(files)} images without a face), "
          f"{out.stat().st_size / 1e6:.2f} MB; attribution {att}")
    return 0


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
    ap.add_argument("--fairface", metavar="DIR|download", help="build the cohort from the FairFace images in DIR "
                                                                 "(or downloaded) instead of LFW")
    ap.add_argument("--out", help="default: <model>-cohort.npz beside the model")
    args = ap.parse_args(argv)
    if args.reseal:
        return reseal(args.reseal)
    if not args.model:
        ap.error("--model is required (or --reseal)")
    if args.fairface:
        try:
            return build_fairface(args)
        except OSError as exc:
            print(f"convert.cohort: {exc}", file=sys.stderr)
            return 1
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
