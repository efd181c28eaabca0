"""Detect and align every training image once, into a cache, with the edge detector and alignment.

The cache is one ``.npz``: ``crops`` (N, 112, 112, 3) uint8 RGB, ``keys``, ``persons``, ``boxes`` (N, 4) and
``landmarks`` (N, 4, 2) in original-image pixels, and ``detected`` (False where the detector found no face and the
crop falls back to the dataset's mean landmarks: LFW images are centred on the person). Failures are also listed in
``<cache>.failures.txt``.

    python -m train.preprocess DATASET --out CACHE.npz [--detector models/face_detection_short_range.tflite]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.vision.align import CROP_SIZE, align_face
from edge.vision.detector import BlazeFaceDetector
from edge.vision.faces import Face
from train.data import iter_images, list_items

DEFAULT_DETECTOR = "models/face_detection_short_range.tflite"


def pick_central(faces, shape):
    """The face nearest the image centre (LFW's labelled person is the centred face)."""
    if not faces:
        return None
    cy, cx = shape[0] / 2, shape[1] / 2

    def dist(f: Face):
        bx, by = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        return (bx - cx) ** 2 + (by - cy) ** 2

    return min(faces, key=dist)


def preprocess(dataset, out, detector_path=DEFAULT_DETECTOR, min_score=0.5, progress=True) -> dict:
    det = BlazeFaceDetector(detector_path, min_score=min_score, num_threads=2)
    n = len(list_items(dataset))
    crops = np.zeros((n, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    lms = np.zeros((n, 4, 2), np.float32)
    detected = np.zeros(n, bool)
    keys, persons, shapes, images_failed = [], [], [], []
    pending = []  # (index, rgb) for fallback after the mean landmarks are known
    for i, (item, data) in enumerate(tqdm(iter_images(dataset), total=n, desc="align", disable=not progress)):
        keys.append(item.key)
        persons.append(item.person)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            images_failed.append(item.key)
            shapes.append((0, 0))
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        shapes.append(rgb.shape[:2])
        face = pick_central(det.detect(rgb), rgb.shape)
        if face is None:
            pending.append((i, rgb))
            continue
        detected[i] = True
        boxes[i] = face.box
        lms[i] = face.landmarks
        crops[i] = align_face(rgb, face.landmarks)
    # Fallback: mean landmarks (relative to image size) of the detected faces.
    if detected.any():
        rel = np.array([lms[j] / [shapes[j][1], shapes[j][0]] for j in np.flatnonzero(detected)]).mean(0)
        relbox = np.array([boxes[j] / np.tile([shapes[j][1], shapes[j][0]], 2)
                           for j in np.flatnonzero(detected)]).mean(0)
        for i, rgb in pending:
            h, w = rgb.shape[:2]
            lms[i] = rel * [w, h]
            boxes[i] = relbox * [w, h, w, h]
            crops[i] = align_face(rgb, lms[i])
    keep = np.array([k not in set(images_failed) for k in keys])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, crops=crops[keep], keys=np.array(keys)[keep], persons=np.array(persons)[keep],
             boxes=boxes[keep], landmarks=lms[keep], detected=detected[keep])
    tmp.replace(out)
    failures = [keys[i] for i, _ in pending]
    out.with_name(out.stem + ".failures.txt").write_text(
        "".join(f"no-face\t{k}\n" for k in failures) + "".join(f"unreadable\t{k}\n" for k in images_failed))
    return {"images": n, "detected": int(detected.sum()), "fallback": len(failures), "unreadable": len(images_failed)}


def load_cache(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.preprocess", description=__doc__.splitlines()[0])
    ap.add_argument("dataset", help="LFW archive (.tgz), extracted LFW tree or folder-per-identity tree")
    ap.add_argument("--out", required=True, help="cache file (.npz)")
    ap.add_argument("--detector", default=DEFAULT_DETECTOR)
    args = ap.parse_args(argv)
    try:
        stats = preprocess(args.dataset, args.out, args.detector)
    except FileNotFoundError as exc:
        print(f"train.preprocess: {exc}", file=sys.stderr)
        return 2
    print(f"{stats['images']} images: {stats['detected']} detected, {stats['fallback']} centred fallback, "
          f"{stats['unreadable']} unreadable -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
