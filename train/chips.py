"""dlib-style 150x150 chips from the device's own detector: fit the BlazeFace template, build chip caches.

The ported dlib ResNet (``convert/dlib.py``) was trained on dlib's chips: a similarity warp of dlib's 5 landmarks
onto dlib's template, 150x150 with padding 0.25. The device has BlazeFace's 4 keypoints instead. ``fit`` maps each
training image's BlazeFace keypoints through dlib's own image-to-chip transform (dlib's HOG face box, its 5-point
shape predictor, ``get_face_chip_details``' template) and averages them: the result is the template
``edge.vision.align.TEMPLATES["dlib150"]``, so the device warps BlazeFace keypoints straight onto where dlib would have put
the face. Only training identities are used (the held-out folds never shape the template).

``realign`` writes an alignment cache (the ``train.preprocess`` format) whose crops use another template, from the
landmarks already in a cache, for ``train.evaluate``, ``convert`` and training.

    python -m train.chips fit DATASET --cache CACHE.npz [--pairs PAIRS --folds 1,2]
    python -m train.chips realign DATASET --cache CACHE.npz --template dlib150 --out CACHE-dlib150.npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edge.vision.align import TEMPLATES, align_face
from train.data import fold_pairs, iter_images


def _decode(data: bytes):
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fit(dataset, cache_path, exclude_people=(), progress=True) -> dict:
    """The BlazeFace keypoints' mean position in dlib's 150x150 chip, over images where dlib finds the face."""
    import dlib

    from convert.dlib import dlib_image_to_chip, dlib_model_paths

    with np.load(cache_path) as z:
        at = {k: i for i, k in enumerate(z["keys"])}
        lms, detected = z["landmarks"], z["detected"]
    hog, sp = dlib.get_frontal_face_detector(), dlib.shape_predictor(dlib_model_paths()["shape5"])
    mapped = []
    exclude = set(exclude_people)
    for item, data in tqdm(iter_images(dataset), total=len(at), desc="fit", disable=not progress):
        i = at.get(item.key)
        if i is None or not detected[i] or item.person in exclude:
            continue
        rgb = _decode(data)
        rects = hog(rgb, 1) if rgb is not None else []
        if not rects:
            continue
        cy, cx = rgb.shape[0] / 2, rgb.shape[1] / 2
        rect = min(rects, key=lambda r: (r.center().x - cx) ** 2 + (r.center().y - cy) ** 2)
        shape = sp(rgb, rect)
        parts = np.array([[shape.part(j).x, shape.part(j).y] for j in range(5)], np.float64)
        m = dlib_image_to_chip(parts)
        pts = np.c_[lms[i], np.ones(4)] @ m.T
        mapped.append(pts)
    mapped = np.array(mapped)
    if not len(mapped):
        raise ValueError("dlib found no face in the dataset")
    return {"template": mapped.mean(0), "std": mapped.std(0), "images": int(len(mapped))}


def realign(dataset, cache_path, out, template: str, progress=True) -> int:
    """A copy of the cache whose crops are aligned to ``template`` (from the cache's own landmarks)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; known: {', '.join(TEMPLATES)}")
    with np.load(cache_path) as z:
        cache = {k: z[k] for k in z.files}
    size = TEMPLATES[template].size
    at = {k: i for i, k in enumerate(cache["keys"])}
    crops = np.zeros((len(at), size, size, 3), np.uint8)
    done = np.zeros(len(at), bool)
    for item, data in tqdm(iter_images(dataset), total=len(at), desc=f"realign {template}", disable=not progress):
        i = at.get(item.key)
        rgb = _decode(data) if i is not None else None
        if rgb is not None:
            crops[i] = align_face(rgb, cache["landmarks"][i], template=template)
            done[i] = True
    if not done.all():
        raise ValueError(f"{int((~done).sum())} cached images not found in {dataset}")
    cache["crops"] = crops
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **cache)
    tmp.replace(out)
    return len(crops)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.chips", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit the BlazeFace template in dlib's chip (needs dlib)")
    r = sub.add_parser("realign", help="a cache with crops aligned to another template")
    for p in (f, r):
        p.add_argument("dataset")
        p.add_argument("--cache", required=True)
    f.add_argument("--pairs", help="pairs file whose --folds identities are left out of the fit")
    f.add_argument("--folds", default="1,2")
    r.add_argument("--template", default="dlib150", choices=sorted(TEMPLATES))
    r.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "fit":
            held = fold_pairs(args.pairs, args.folds)[1] if args.pairs else set()
            res = fit(args.dataset, args.cache, held)
            t, s = res["template"], res["std"]
            print(f"BlazeFace keypoints in dlib's 150x150 chip, mean of {res['images']} training images "
                  f"({len(held)} held-out people left out):")
            for name, p, q in zip(("eye (image left)", "eye (image right)", "nose tip", "mouth centre"), t, s):
                print(f"  [{p[0]:.4f}, {p[1]:.4f}],   # {name}, std {q[0]:.2f} / {q[1]:.2f} px")
        else:
            n = realign(args.dataset, args.cache, args.out, args.template)
            print(f"{n} crops aligned to {args.template} -> {args.out}")
    except (FileNotFoundError, ValueError) as exc:
        print(f"train.chips: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
