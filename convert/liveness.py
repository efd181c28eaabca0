"""The liveness model for the device: Minivision's two MiniFASNet classifiers -> one TFLite file + its sidecar.

    python -m convert.liveness convert --weights ../shared/models/minifasnet --faces LFW.tgz --out models \\
        [--parity-extra DEV.tgz ...] [--threshold T --threshold-note "..."]
    python -m convert.liveness fit-box --detector-dir DIR --images LFW.tgz --out models/liveness-box-map.json

``convert`` checks the two ``.pth`` files' sha256 against the published ones, rebuilds both networks in Keras
(``convert/minifasnet.py``), joins them into one model (two 80x80 crops in, both models' probabilities out) and
writes float32, float16, dynamic-range and int8 variants. Every variant is run on real face crops made the way the
device makes them (BlazeFace box -> ``box_map`` -> upstream's crop) and compared with the PyTorch reference on the
face's liveness score (the mean live probability): the **parity gate** is a max absolute difference <= 1e-3 for
float32, <= 0.02 for the quantised variants, and the same live/attack call on >= 99% of the crops. The fastest
variant that passes (1 thread, this machine) is written as ``doorface-liveness.tflite`` with its sidecar: source
files and their sha256, the upstream commit and licence, the crops, the box map and the threshold.

int8 is calibrated on LFW crops only (never on the anti-spoofing dev sets). ``--parity-extra`` adds dev-set crops to
the *parity* set only (evaluation use: how the port behaves on attack images too).

``fit-box`` fits ``box_map`` (BlazeFace box -> the box of upstream's Caffe SSD face detector, which the models were
trained on) on LFW images where both detectors find the face: the median offset and size ratio. It needs upstream's
``resources/detection_model`` (deploy.prototxt and Widerface-RetinaFace.caffemodel, Apache-2.0), which is not
shipped; the fitted map is (``models/liveness-box-map.json``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

from convert.minifasnet import INPUT_SIZE, UPSTREAM, VARIANTS, WeightsError
from edge.vision.liveness import FORMAT, FORMAT_VERSION, IDENTITY_MAP, model_crops

NAME = "doorface-liveness"
BOX_MAP_FILE = "liveness-box-map.json"
GATES = {"float32": 1e-3, "float16": 0.02, "dynamic": 0.02, "int8": 0.02}
MIN_SAME_CALL = 0.99
MIN_PARITY_CROPS = 200
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


class GateError(Exception):
    """No variant passed the parity gate."""


def iter_image_files(source, keep=None) -> Iterator[Tuple[str, np.ndarray]]:
    """``(member path, BGR image)`` for the images of a .tgz (archive order: a gzip stream is read once, never
    sought back) or a folder tree (sorted). ``keep(i)`` selects images by their index before anything is decoded."""
    source = Path(source)
    keep = keep or (lambda i: True)
    if source.is_file():
        with tarfile.open(source) as tf:
            i = -1
            for m in tf:
                if not (m.isfile() and m.name.lower().endswith(IMAGE_EXTS)):
                    continue
                i += 1
                if not keep(i):
                    continue
                bgr = cv2.imdecode(np.frombuffer(tf.extractfile(m).read(), np.uint8), cv2.IMREAD_COLOR)
                if bgr is not None:
                    yield m.name, bgr
    elif source.is_dir():
        files = [p for p in sorted(source.rglob("*")) if p.suffix.lower() in IMAGE_EXTS]
        for i, p in enumerate(files):
            if keep(i):
                bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if bgr is not None:
                    yield str(p.relative_to(source)), bgr
    else:
        raise FileNotFoundError(f"no such images: {source}")


def face_crops(source, box_map: dict, count: int, detector, start: int = 0, stride: int = 1,
               scales=tuple(v.scale for v in VARIANTS)) -> Tuple[List[tuple], List[str]]:
    """Up to ``count`` faces' model crops (one tuple of BGR crops per face: the largest face of each image) from
    images ``start, start + stride, ...`` of ``source``, made exactly as the device makes them."""
    crops, names = [], []
    for name, bgr in iter_image_files(source, lambda i: i >= start and (i - start) % stride == 0):
        if len(crops) >= count:
            break
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        faces = detector.detect(rgb)
        if not faces:
            continue
        f = max(faces, key=lambda f: f.area)
        try:
            crops.append(tuple(model_crops(rgb, f.box, box_map, scales, INPUT_SIZE)))
        except ValueError:
            continue
        names.append(name)
    return crops, names


def check_weights(weights_dir, allow_other: bool = False) -> List[Path]:
    """The two upstream files, their sha256 checked against the published ones."""
    from edge.vision.assets import sha256_file

    paths = []
    for v in VARIANTS:
        p = Path(weights_dir) / v.file
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found (the MiniFASNet weights, ../shared/models/minifasnet)")
        got = sha256_file(p)
        if got != v.sha256 and not allow_other:
            raise WeightsError(f"{p}: sha256 {got[:12]}... is not the published {v.sha256[:12]}... "
                               "(--allow-other-weights to convert it anyway)")
        paths.append(p)
    return paths


def reference_scores(refs, crops: List[tuple]) -> np.ndarray:
    """``(N, models, 3)`` probabilities of the PyTorch reference."""
    from convert.minifasnet import torch_probs

    return np.stack([torch_probs(r, np.stack([c[i] for c in crops])) for i, r in enumerate(refs)], axis=1)


def tflite_scores(path, crops: List[tuple], threads: int = 1) -> Tuple[np.ndarray, float]:
    """``(N, models, 3)`` probabilities of a converted file, and its ms per face (warm, ``threads`` threads)."""
    from edge.vision.liveness import LivenessModel

    m = LivenessModel(str(path), verify=False, num_threads=threads).load()
    for c in crops[:5]:
        m.probabilities(c)
    t0 = time.perf_counter()
    out = np.stack([m.probabilities(c) for c in crops])
    return out, (time.perf_counter() - t0) / max(len(crops), 1) * 1000


def parity(ref: np.ndarray, got: np.ndarray, threshold: float) -> dict:
    """Differences on the liveness score (mean live probability) and on each model's live probability."""
    rs, gs = ref[:, :, 1].mean(1), got[:, :, 1].mean(1)
    return {"max_abs_diff": float(np.abs(rs - gs).max()), "mean_abs_diff": float(np.abs(rs - gs).mean()),
            "max_abs_diff_per_model": [float(v) for v in np.abs(ref[:, :, 1] - got[:, :, 1]).max(0)],
            "same_call": float(np.mean((rs >= threshold) == (gs >= threshold))), "crops": int(len(rs))}


def run_convert(args) -> int:
    from convert import tflite as tfl
    from convert.minifasnet import combined_model, keras_model, load_state_dict, torch_reference
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.sidecar import write_sidecar

    paths = check_weights(args.weights, args.allow_other_weights)
    sds = [load_state_dict(p) for p in paths]
    refs = [torch_reference(sd, v) for sd, v in zip(sds, VARIANTS)]
    model = combined_model([keras_model(sd, v) for sd, v in zip(sds, VARIANTS)])
    box_map = json.loads(Path(args.box_map).read_text())["box_map"] if args.box_map else dict(IDENTITY_MAP)
    det = BlazeFaceDetector(args.detector, num_threads=args.threads)
    print(f"crops: parity {args.parity_count} + calibration {args.calib_count} faces from {args.faces}",
          file=sys.stderr)
    par, par_names = face_crops(args.faces, box_map, args.parity_count, det, start=0, stride=2)
    cal, _ = face_crops(args.faces, box_map, args.calib_count, det, start=1, stride=2)
    sets = {"lfw": len(par)}
    for extra in args.parity_extra or []:
        more, _ = face_crops(extra, box_map, args.extra_count, det)
        sets[Path(extra).name] = len(more)
        par += more
    if len(par) < MIN_PARITY_CROPS:
        raise GateError(f"only {len(par)} parity crops (need {MIN_PARITY_CROPS})")
    ref = reference_scores(refs, par)
    keras = model.predict([np.stack([c[i] for c in par]).astype(np.float32) for i in range(len(VARIANTS))],
                          verbose=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, files = {}, {}
    results["keras"] = parity(ref, keras, args.threshold)
    for quant in tfl.QUANTS:
        tmp = out / f".{NAME}-{quant}.tflite.tmp"
        tmp.write_bytes(tfl.convert(model, quant, cal if quant == "int8" else None, float_io=True))
        got, ms = tflite_scores(tmp, par, threads=1)
        r = parity(ref, got, args.threshold)
        r.update(size_bytes=tmp.stat().st_size, ms_per_face_1thread=round(ms, 3))
        r["passed"] = r["max_abs_diff"] <= GATES[quant] and r["same_call"] >= MIN_SAME_CALL
        results[quant], files[quant] = r, tmp
        print(f"{quant:<8} {r['size_bytes'] / 1024:7.0f} KB  max|diff| {r['max_abs_diff']:.2e} (gate "
              f"{GATES[quant]:g})  same call {100 * r['same_call']:.2f}%  {ms:.2f} ms/face  "
              f"{'PASS' if r['passed'] else 'FAIL'}", file=sys.stderr)
    passed = [q for q in tfl.QUANTS if results[q]["passed"]]
    report = {"created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "parity_sets": sets,
              "parity_crops": len(par), "calibration_crops": len(cal), "threshold": args.threshold,
              "gates": {"max_abs_diff": GATES, "min_same_call": MIN_SAME_CALL}, "variants": results,
              "chosen": None}
    if not passed:
        for f in files.values():
            f.unlink(missing_ok=True)
        (out / f"{NAME}-parity.json").write_text(json.dumps(report, indent=1) + "\n")
        raise GateError("no variant passed the parity gate (see the table)")
    chosen = args.quant or min(passed, key=lambda q: results[q]["ms_per_face_1thread"])
    if chosen not in passed:
        raise GateError(f"--quant {chosen} did not pass the parity gate")
    report["chosen"] = chosen
    (out / f"{NAME}-parity.json").write_text(json.dumps(report, indent=1) + "\n")
    final = out / f"{NAME}.tflite"
    os.replace(files.pop(chosen), final)
    for f in files.values():
        f.unlink(missing_ok=True)
    from edge.vision.assets import sha256_file

    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": report["created"],
        "quantization": chosen,
        "input": {"size": INPUT_SIZE, "color_order": "BGR", "value_range": [0, 255], "dtype": "float32",
                  "normalisation": "none (raw pixels, as upstream)",
                  "names": [f"crop_{i}" for i in range(len(VARIANTS))]},
        "crops": [{"model": v.name, "scale": v.scale, "input": f"crop_{i}"} for i, v in enumerate(VARIANTS)],
        "box_map": box_map,
        "box_map_note": (json.loads(Path(args.box_map).read_text()).get("note", "") if args.box_map
                         else "identity: BlazeFace box used as the upstream detector's"),
        "output": {"shape": [1, len(VARIANTS), 3], "meaning": "softmax per model; class 1 live, 0 and 2 attacks"},
        "live_class": 1,
        "combine": "mean of the models' live probability",
        "threshold": args.threshold,
        "threshold_note": args.threshold_note,
        "source": {"files": [{"file": v.file, "model": v.name, "sha256": sha256_file(p)}
                             for v, p in zip(VARIANTS, paths)], **UPSTREAM,
                   "notice": "Copyright (c) 2020 Minivision; converted by doorface (convert/liveness.py)"},
        "parity": {k: results[chosen][k] for k in ("max_abs_diff", "mean_abs_diff", "same_call", "crops")},
        "ms_per_face_1thread": results[chosen]["ms_per_face_1thread"],
    }
    write_sidecar(final, meta)
    print(f"wrote {final} ({chosen}, {final.stat().st_size / 1024:.0f} KB) + sidecar, {NAME}-parity.json",
          file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------------------------
# fit-box

def upstream_box(net, bgr: np.ndarray, min_conf: float = 0.6) -> Optional[tuple]:
    """Upstream ``Detection.get_bbox`` (the Caffe SSD run on a copy of about 192x192 pixels): ``(x, y, w, h)``."""
    height, width = bgr.shape[:2]
    ar = width / height
    img = bgr
    if width * height >= 192 * 192:
        img = cv2.resize(bgr, (int(192 * math.sqrt(ar)), int(192 / math.sqrt(ar))), interpolation=cv2.INTER_LINEAR)
    net.setInput(cv2.dnn.blobFromImage(img, 1, mean=(104, 117, 123)), "data")
    out = net.forward("detection_out").squeeze()
    i = int(np.argmax(out[:, 2]))
    if out[i, 2] < min_conf:
        return None
    left, top, right, bottom = out[i, 3] * width, out[i, 4] * height, out[i, 5] * width, out[i, 6] * height
    return left, top, right - left + 1, bottom - top + 1


def run_fit_box(args) -> int:
    from edge.vision.detector import BlazeFaceDetector

    d = Path(args.detector_dir)
    net = cv2.dnn.readNetFromCaffe(str(d / "deploy.prototxt"), str(d / "Widerface-RetinaFace.caffemodel"))
    det = BlazeFaceDetector(args.detector)
    rows = []
    for _, bgr in iter_image_files(args.images, lambda i: i % args.stride == 0):
        faces = det.detect(np.ascontiguousarray(bgr[:, :, ::-1]))
        s = upstream_box(net, bgr)
        if not faces or s is None:
            continue
        x0, y0, x1, y1 = max(faces, key=lambda f: f.area).box
        w, h = x1 - x0, y1 - y0
        rows.append(((s[0] + s[2] / 2 - (x0 + x1) / 2) / w, (s[1] + s[3] / 2 - (y0 + y1) / 2) / h, s[2] / w, s[3] / h))
    if len(rows) < 50:
        raise ValueError(f"only {len(rows)} faces found by both detectors")
    r = np.array(rows)
    med = np.median(r, 0)
    box_map = {k: round(float(v), 4) for k, v in zip(("dx", "dy", "sw", "sh"), med)}
    doc = {"box_map": box_map,
           "iqr": {k: round(float(v), 4) for k, v in zip(box_map, np.percentile(r, 75, 0) - np.percentile(r, 25, 0))},
           "faces": len(rows),
           "note": f"median BlazeFace -> upstream Caffe SSD box over {len(rows)} images of {Path(args.images).name} "
                   f"where both find the face (python -m convert.liveness fit-box)"}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.liveness", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="port, gate and write the liveness model")
    c.add_argument("--weights", default="../shared/models/minifasnet", help="folder with the two upstream .pth")
    c.add_argument("--allow-other-weights", action="store_true", help="convert files with another sha256")
    c.add_argument("--faces", required=True, help="real face images (.tgz or folder), e.g. the LFW archive")
    c.add_argument("--parity-extra", nargs="*", help="more images for the parity set only (e.g. the dev sets)")
    c.add_argument("--extra-count", type=int, default=150, help="faces taken from each --parity-extra set")
    c.add_argument("--parity-count", type=int, default=240)
    c.add_argument("--calib-count", type=int, default=200)
    c.add_argument("--box-map", default=f"models/{BOX_MAP_FILE}", help="JSON from fit-box ('' for identity)")
    c.add_argument("--detector", default="models/face_detection_short_range.tflite")
    c.add_argument("--threshold", type=float, default=0.5, help="live when the score reaches this")
    c.add_argument("--threshold-note", default="upstream's rule (live when class 1 wins; 0.5 on the mean)")
    c.add_argument("--quant", choices=["float32", "float16", "dynamic", "int8"],
                   help="ship this variant (default: the fastest that passes)")
    c.add_argument("--out", default="models")
    c.add_argument("--threads", type=int, default=2)
    f = sub.add_parser("fit-box", help="fit the BlazeFace -> upstream detector box map")
    f.add_argument("--detector-dir", required=True, help="upstream resources/detection_model")
    f.add_argument("--images", required=True)
    f.add_argument("--stride", type=int, default=6, help="every n-th image")
    f.add_argument("--detector", default="models/face_detection_short_range.tflite")
    f.add_argument("--out", default=f"models/{BOX_MAP_FILE}")
    args = ap.parse_args(argv)
    try:
        return run_convert(args) if args.cmd == "convert" else run_fit_box(args)
    except (GateError, WeightsError, ValueError, OSError) as exc:
        print(f"convert.liveness: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
