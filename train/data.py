"""Reading face data: the official LFW archive (``lfw.tgz`` / ``lfw-deepfunneled.tgz``), an extracted LFW tree or
any folder-per-identity tree (``root/<person>/<image>``), and LFW ``pairs.txt``-format files."""
from __future__ import annotations

import os
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Tuple

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")

#: Official LFW downloads, for users with internet (not used by tests or the default demo).
LFW_URLS = {
    "lfw-deepfunneled.tgz": "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
    "lfw.tgz": "http://vis-www.cs.umass.edu/lfw/lfw.tgz",
    "pairs.txt": "http://vis-www.cs.umass.edu/lfw/pairs.txt",
}


def download_lfw(dest_dir, names=("lfw-deepfunneled.tgz", "pairs.txt")) -> List[Path]:
    """Download the official LFW files into ``dest_dir`` (skips files already there)."""
    out = []
    for name in names:
        target = Path(dest_dir) / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".part")
            urllib.request.urlretrieve(LFW_URLS[name], tmp)
            os.replace(tmp, target)
        out.append(target)
    return out


@dataclass(frozen=True)
class Item:
    """One image: its identity and a key unique within the dataset (``Person/Person_0001.jpg``)."""

    person: str
    key: str


def _key(person: str, filename: str) -> str:
    return f"{person}/{filename}"


def list_items(source) -> List[Item]:
    """All images of an archive or a folder tree, sorted by key."""
    if not str(source):   # Path("") is the working directory, never a dataset
        raise FileNotFoundError("no dataset given")
    source = Path(source)
    items = []
    if source.is_file():
        with tarfile.open(source) as tf:
            for m in tf.getmembers():
                parts = m.name.strip("/").split("/")
                if m.isfile() and len(parts) >= 2 and parts[-1].lower().endswith(IMAGE_EXTS):
                    items.append(Item(parts[-2], _key(parts[-2], parts[-1])))
    elif source.is_dir():
        for person in sorted(os.listdir(source)):
            pdir = source / person
            if pdir.is_dir():
                for name in sorted(os.listdir(pdir)):
                    if name.lower().endswith(IMAGE_EXTS):
                        items.append(Item(person, _key(person, name)))
        if not items:  # an extracted archive: root/lfw-deepfunneled/<person>/...
            subs = [d for d in source.iterdir() if d.is_dir()]
            if len(subs) == 1:
                return list_items(subs[0])
    else:
        raise FileNotFoundError(f"no such dataset: {source}")
    return sorted(items, key=lambda i: i.key)


def iter_images(source) -> Iterator[Tuple[Item, bytes]]:
    """Yield ``(item, encoded image bytes)`` for every image, in key order for folders, archive order for tarballs."""
    source = Path(source)
    if source.is_file():
        with tarfile.open(source) as tf:
            for m in tf:
                parts = m.name.strip("/").split("/")
                if m.isfile() and len(parts) >= 2 and parts[-1].lower().endswith(IMAGE_EXTS):
                    yield Item(parts[-2], _key(parts[-2], parts[-1])), tf.extractfile(m).read()
        return
    root = source
    if not any(p.is_dir() and any(f.name.lower().endswith(IMAGE_EXTS) for f in p.iterdir())
               for p in root.iterdir() if p.is_dir()):
        subs = [d for d in root.iterdir() if d.is_dir()]
        if len(subs) == 1:
            root = subs[0]
    for item in list_items(root):
        yield item, (root / item.key).read_bytes()


@dataclass(frozen=True)
class Pair:
    key_a: str
    key_b: str
    same: bool
    fold: int


def lfw_key(person: str, number: int) -> str:
    return _key(person, f"{person}_{int(number):04d}.jpg")


def read_pairs(path) -> List[Pair]:
    """Parse an LFW ``pairs.txt``: a header ``folds<TAB>n``, then per fold n matched and n mismatched lines."""
    lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    header = lines[0]
    if len(header) == 2:
        folds, n = int(header[0]), int(header[1])
        body = lines[1:]
    else:  # pairsDevTrain.txt style: a single count
        folds, n = 1, int(header[0])
        body = lines[1:]
    pairs = []
    for i, parts in enumerate(body):
        fold = i // (2 * n) if folds > 1 else 0
        if len(parts) == 3:
            pairs.append(Pair(lfw_key(parts[0], parts[1]), lfw_key(parts[0], parts[2]), True, fold))
        elif len(parts) == 4:
            pairs.append(Pair(lfw_key(parts[0], parts[1]), lfw_key(parts[2], parts[3]), False, fold))
        else:
            raise ValueError(f"{path}: line {i + 2} is not a pairs line: {' '.join(parts)}")
    return pairs


def pair_identities(pairs, folds=None) -> set:
    """Identities appearing in the pairs of the given folds (all folds when None)."""
    out = set()
    for p in pairs:
        if folds is None or p.fold in folds:
            out.add(p.key_a.split("/")[0])
            out.add(p.key_b.split("/")[0])
    return out


def parse_folds(text: str) -> set:
    """``"1,2"`` (1-based, as on the command line) -> ``{0, 1}`` (``Pair.fold``)."""
    try:
        return {int(f) - 1 for f in str(text).split(",") if f.strip()}
    except ValueError:
        raise ValueError(f"folds must be 1-based numbers separated by commas, not {text!r}") from None


def load_images(archive, people):
    """``(keys, persons, rgb images)`` of every image of ``people`` in an LFW archive or tree."""
    import cv2
    import numpy as np

    keys, persons, images = [], [], []
    for item, data in iter_images(archive):
        if item.person in people:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            keys.append(item.key)
            persons.append(item.person)
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return keys, np.array(persons), images


def fold_pairs(pairs_path, folds: str):
    """``(pairs, identities)`` of the given folds of a pairs file: the one held-out split of evaluation,
    conversion and benchmarks."""
    folds0 = parse_folds(folds)
    pairs = [p for p in read_pairs(pairs_path) if p.fold in folds0]
    return pairs, pair_identities(pairs)
