"""dlib's 5-point face landmarks (``shape_predictor_5_face_landmarks.dat``) in numpy, without dlib.

The model is dlib's ``shape_predictor``: an ensemble of regression trees (Kazemi and Sullivan 2014) in a cascade of
15 stages of 500 trees of depth 4. A shape is 5 points in the unit square of the face box (``(0, 0)`` is the box's
top-left corner, ``(1, 1)`` its bottom-right one); it starts as the mean shape. Each stage reads 800 pixel
intensities at points placed relative to the current shape (a point = one of the 5 parts + an offset, the offset
turned and scaled by the similarity transform from the mean shape to the current one, rounded to the nearest pixel;
0 outside the image), and every tree of the stage walks down by comparing the difference of two of those intensities
with a threshold and adds the 10 numbers of its leaf to the shape. An RGB pixel's intensity is ``(r + g + b) // 3``
(dlib's grayscale of an ``rgb_pixel``); a grayscale image is read as it is.

The points are in dlib's order: 0 and 1 the outer and inner corner of the eye on the image's right (the subject's
left eye), 2 and 3 the outer and inner corner of the eye on the image's left, 4 the base of the nose.

``box`` is dlib's ``rectangle``: ``(left, top, right, bottom)`` in pixels, right and bottom inclusive, so
``dlib.rectangle(l, t, r, b)`` and ``(l, t, r, b)`` give the same landmarks. The trees were trained on boxes of
dlib's HOG detector (``dlib.get_frontal_face_detector()``), so the door starts them from the box HOG would have
drawn: :func:`fitted_box` predicts it from BlazeFace's box and its four keypoints with the least-squares map the
converter fitted (sidecar ``box_fit``; the keypoints carry the face's turn and tilt, which the box alone does not),
:func:`hog_box` from the box alone with the median map (sidecar ``box_map``, the fallback of models without
``box_fit``).

The arrays come from ``python -m convert.landmarks`` (``.npz`` + sidecar ``format: doorface-landmarks``); the
sidecar is verified like every model's: a missing one, another sha256 or an edited sidecar is a :class:`ModelError`.
"""
from __future__ import annotations

import zipfile
from typing import Optional

import numpy as np

from edge.errors import ModelError
from edge.vision import ertnative
from edge.vision.ertnative import NativeTrees
from edge.vision.liveness import expected_box
from edge.vision.sidecar import read_verified

FORMAT = "doorface-landmarks"
FORMAT_VERSION = 1
REQUIRED = ("sha256", "parts", "box", "box_map", "source")
ARRAYS = ("initial_shape", "anchors", "deltas", "split_idx", "split_thresh", "leaves")
PARTS = ("eye_image_right_outer", "eye_image_right_inner", "eye_image_left_outer", "eye_image_left_inner",
         "nose_base")
#: Leaves per tree -> how a tree's split outcomes (plus one padding bit) are packed: a tree's leaf is one lookup of
#: its packed outcomes in a table of 2**leaves entries (depth 3 or 4; dlib's 5-point model has depth 4).
TABLE_BITS = {8: "<u1", 16: "<u2"}


def hog_box(box, box_map: dict) -> tuple:
    """A BlazeFace ``(x0, y0, x1, y1)`` -> the ``(left, top, right, bottom)`` box dlib's HOG detector would give."""
    x, y, w, h = expected_box(box, box_map)
    return x, y, x + w, y + h


def box_features(box, keypoints) -> np.ndarray:
    """The 9 inputs of :func:`fitted_box`: BlazeFace's 4 keypoints relative to its box's centre, in box widths, and 1."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w = max(x1 - x0, 1e-6)
    kp = (np.asarray(keypoints, np.float64).reshape(-1, 2)[:4] - ((x0 + x1) / 2, (y0 + y1) / 2)) / w
    return np.concatenate([kp.reshape(-1), [1.0]])


def fitted_box(box, keypoints, box_fit) -> tuple:
    """A BlazeFace box and its 4 keypoints -> the ``(left, top, right, bottom)`` box dlib's HOG detector would give:
    ``(dx, dy, sw, sh) = box_features(...) @ box_fit`` (9 x 4), read as :func:`hog_box` reads the median map."""
    dx, dy, sw, sh = box_features(box, keypoints) @ np.asarray(box_fit, np.float64)
    return hog_box(box, {"dx": dx, "dy": dy, "sw": sw, "sh": sh})


def _leaf_table(splits: int) -> np.ndarray:
    """The leaf a complete tree of ``splits`` nodes ends in, for every pattern of ``splits + 1`` bits (bit i: node
    i's difference was above its threshold, go left; the last bit is padding)."""
    codes = np.arange(1 << (splits + 1))
    node = np.zeros(len(codes), np.int64)
    for _ in range((splits + 1).bit_length() - 1):
        node = 2 * node + 2 - ((codes >> node) & 1)
    return (node - splits).astype(np.intp)


def check_arrays(a: dict, where: str = "landmark model") -> None:
    """Shapes of the six arrays agree with one another and make complete trees (else ModelError)."""
    missing = [k for k in ARRAYS if k not in a]
    if missing:
        raise ModelError(f"{where} lacks arrays {', '.join(missing)}")
    init, anchors, deltas = a["initial_shape"], a["anchors"], a["deltas"]
    idx, th, leaves = a["split_idx"], a["split_thresh"], a["leaves"]
    parts = init.shape[0] if init.ndim == 2 and init.shape[1:] == (2,) else -1
    stages, features = anchors.shape if anchors.ndim == 2 else (-1, -1)
    ok = (parts > 0 and deltas.shape == (stages, features, 2) and idx.ndim == 4 and idx.shape[0] == stages
          and idx.shape[3] == 2 and th.shape == idx.shape[:3] and leaves.shape[:2] == idx.shape[:2]
          and leaves.shape[2] == idx.shape[2] + 1 and leaves.shape[3] == 2 * parts
          and idx.shape[2] + 1 in TABLE_BITS)
    if not ok:
        raise ModelError(f"{where}: inconsistent array shapes (complete trees of depth 3 or 4 expected) " +
                         ", ".join(f"{k} {tuple(a[k].shape)}" for k in ARRAYS if k in a))
    if anchors.size and (anchors.min() < 0 or anchors.max() >= parts):
        raise ModelError(f"{where}: anchor index outside the {parts} parts")
    if idx.size and (idx.min() < 0 or idx.max() >= features):
        raise ModelError(f"{where}: split feature index outside the {features} features")


class ShapePredictor:
    """dlib's shape predictor on numpy arrays: :meth:`load` a converted model, then :meth:`predict`.

    Vectorised per stage: the 800 feature points at once, every split of the 500 trees at once (8000 comparisons
    with one padding split per tree), the splits' outcomes packed 16 bits per tree and looked up in a table of the
    leaf each pattern ends in, and the 500 leaves added in dlib's order (so the float32 sums are dlib's).
    """

    def __init__(self, arrays: dict, meta: Optional[dict] = None, native=None):
        a = {k: np.asarray(arrays[k]) for k in ARRAYS if k in arrays}
        check_arrays(a)
        self.meta = dict(meta or {})
        self.box_map = self.meta.get("box_map")
        init = a["initial_shape"].astype(np.float32)
        self.parts = init.shape[0]
        self.stages, self.trees, self.splits = a["split_idx"].shape[:3]
        self._init = init
        ref = init.astype(np.float64)
        ref_c = ref - ref.mean(0)
        n2 = float((ref_c ** 2).sum())
        self._ref_x, self._ref_y = ref_c[:, 0] / n2, ref_c[:, 1] / n2
        anc = a["anchors"].astype(np.intp)
        self._anchor_at = np.stack([2 * anc, 2 * anc + 1], 1)                      # (stages, 2, F) into cur
        d = a["deltas"].astype(np.float32)
        self._d = np.ascontiguousarray(np.moveaxis(d, 2, 1))                       # (stages, 2, F): dx, dy
        self._d_rot = np.ascontiguousarray(np.stack([-d[..., 1], d[..., 0]], 1))   # (stages, 2, F): -dy, dx
        pad = ((0, 0), (0, 0), (0, 1))                                             # one split per tree: never left
        idx = a["split_idx"].astype(np.intp)
        self._i1 = np.pad(idx[..., 0], pad).reshape(self.stages, -1)
        self._i2 = np.pad(idx[..., 1], pad).reshape(self.stages, -1)
        # An intensity difference d is an integer in [-255, 255]: d > t  <=>  d > floor(t), so int16 thresholds
        # decide exactly as dlib's float ones (the padding split's 511 is never passed).
        th = np.floor(np.clip(a["split_thresh"].astype(np.float64), -511, 511)).astype(np.int16)
        self._th = np.pad(th, pad, constant_values=511).reshape(self.stages, -1)
        self._code = TABLE_BITS[self.splits + 1]
        self._table = _leaf_table(self.splits)
        self._leaves = np.ascontiguousarray(a["leaves"], np.float32).reshape(self.stages, -1, 2 * self.parts)
        self._leaf_base = np.arange(self.trees, dtype=np.intp) * (self.splits + 1)
        self._lut = (np.arange(3 * 255 + 1) // 3).astype(np.int16)                 # (r + g + b) -> dlib's grey
        self._ones = np.ones(3, np.int32)
        #: the compiled loop (:mod:`edge.vision.ertnative`) when a library is given, else None: the numpy loop
        fits = ertnative.supports(a["anchors"].shape[1], self.parts)
        self._native = None if native is None or not fits else NativeTrees(native, init, self._ref_x, self._ref_y,
                                                                               anc, a["deltas"], idx, th, a["leaves"])

    @property
    def backend(self) -> str:
        """``"compiled"`` (the C loop, :mod:`edge.vision.ertnative`) or ``"numpy"``: the same landmarks either way."""
        return "numpy" if self._native is None else "compiled"

    @classmethod
    def load(cls, path, verify: bool = True, native: bool = True) -> "ShapePredictor":
        """The model at ``path`` (``.npz``) after its sidecar's checks (sha256, content digest, format); run by the
        compiled loop when the install built it and ``native``, else by numpy."""
        meta = read_verified(path, FORMAT, FORMAT_VERSION, REQUIRED, verify, what="landmark model",
                             hint="convert it with `python -m convert.landmarks`")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelError(f"landmark model {path} unreadable: {exc}") from None
        return cls(arrays, meta, ertnative.library() if native else None)

    def _similarity(self, cur: np.ndarray) -> tuple:
        """``(a, b)`` of the similarity ``[[a, -b], [b, a]]`` taking the mean shape to ``cur`` (Umeyama's least
        squares, which for 2-D points has this closed form), rounded to float32 as dlib does. The per-point terms
        are summed in point order (numpy sums fewer than 8 numbers one after another), as dlib does."""
        c = cur.astype(np.float64)
        d = c - c.sum(0) / len(c)
        a = (self._ref_x * d[:, 0] + self._ref_y * d[:, 1]).sum()
        b = (self._ref_x * d[:, 1] - self._ref_y * d[:, 0]).sum()
        return np.float32(a), np.float32(b)

    def _features(self, img: np.ndarray, stage: int, cur: np.ndarray, geom: tuple) -> np.ndarray:
        """The stage's pixel intensities (int16) at its feature points placed on the current shape."""
        a, b = self._similarity(cur)
        p = a * self._d[stage] + b * self._d_rot[stage] + cur.reshape(-1).take(self._anchor_at[stage])
        q = np.floor(p.astype(np.float64) * geom[1] + geom[0] + 0.5).astype(np.intp)   # (2, F): x, y
        inside = (q.view(np.uintp) < geom[2]).all(0)                                     # negatives wrap high
        flat = q[1] * img.shape[1] + q[0]
        everywhere = inside.all()
        if not everywhere:
            flat = np.where(inside, flat, 0)
        if img.ndim == 2:
            v = img.reshape(-1).take(flat).astype(np.int16)
        else:
            v = self._lut.take(img.reshape(-1, 3).take(flat, axis=0) @ self._ones)
        return v if everywhere else v * inside

    def _leaf_rows(self, stage: int, f: np.ndarray) -> np.ndarray:
        """The row of the stage's leaf array every tree ends in."""
        go_left = (f.take(self._i1[stage]) - f.take(self._i2[stage])) > self._th[stage]
        codes = np.packbits(go_left, bitorder="little").view(self._code)
        return self._leaf_base + self._table.take(codes)

    def predict(self, image: np.ndarray, box, rounded: bool = False) -> np.ndarray:
        """The ``(parts, 2)`` float64 landmarks of the face in ``box`` = ``(left, top, right, bottom)`` of a uint8
        grayscale (H, W) or RGB (H, W, 3) ``image``. ``rounded``: to the nearest pixel, as dlib returns them."""
        img = np.asarray(image)
        if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
            raise ValueError(f"predict wants a uint8 grayscale or RGB image, got {img.dtype} {img.shape}")
        img = np.ascontiguousarray(img)
        left, top, right, bottom = (float(v) for v in box)
        if not np.isfinite([left, top, right, bottom]).all():
            raise ValueError(f"box {box} is not finite")
        scale = np.array([[right - left], [bottom - top]])
        geom = (np.array([[left], [top]]), scale, np.array([[img.shape[1]], [img.shape[0]]], np.uintp))
        if self._native is not None:
            cur = self._native.shape(img, left, top, float(scale[0, 0]), float(scale[1, 0]))
            out = cur.astype(np.float64) * scale.T + (left, top)
            return np.floor(out + 0.5) if rounded else out
        cur = self._init.copy()
        buf = np.empty((self.trees + 1, 2 * self.parts), np.float32)
        for stage in range(self.stages):
            rows = self._leaf_rows(stage, self._features(img, stage, cur, geom))
            buf[0] = cur.reshape(-1)
            np.take(self._leaves[stage], rows, axis=0, out=buf[1:])
            cur = buf.sum(0).reshape(self.parts, 2)          # dlib's order: shape + tree 1 + tree 2 ... (float32)
        out = cur.astype(np.float64) * scale.T + (left, top)
        return np.floor(out + 0.5) if rounded else out

    def predict_blazeface(self, image: np.ndarray, box, rounded: bool = False) -> np.ndarray:
        """:meth:`predict` on a BlazeFace box, first mapped to the HOG box the trees expect (sidecar ``box_map``)."""
        if not self.box_map:
            raise ModelError("landmark model has no box_map: convert it with `python -m convert.landmarks`")
        return self.predict(image, hog_box(box, self.box_map), rounded)

    def predict_face(self, image: np.ndarray, face, rounded: bool = False) -> np.ndarray:
        """:meth:`predict` on a BlazeFace :class:`~edge.vision.faces.Face`: started from :func:`fitted_box` (sidecar
        ``box_fit``), or from the median map when the model has none."""
        fit = self.meta.get("box_fit")
        if fit is None:
            return self.predict_blazeface(image, face.box, rounded)
        return self.predict(image, fitted_box(face.box, face.landmarks, fit), rounded)
