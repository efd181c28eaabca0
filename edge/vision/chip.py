"""dlib's face chip from its 5 landmarks, without dlib: ``get_face_chip_details`` + ``extract_image_chip``.

This is the crop dlib's face-recognition ResNet was trained on (``dlib.get_face_chip(img, shape, 150, 0.25)``):

- **Geometry** (:func:`chip_details`): the similarity (least squares) from dlib's 5-point template, padded by
  ``padding`` and scaled to ``size``, onto the landmarks gives an angle and a scale; the chip is the ``size`` x
  ``size`` square of side ``size * scale`` around where the chip's centre lands, turned by the angle. Its pixel
  ``(0, 0)`` is the square's top-left corner and ``(size - 1, size - 1)`` the bottom-right one (so a chip pixel is
  ``size / (size - 1)`` times the template's pixel: dlib's own convention, kept).
- **Cutting** (:func:`face_chip`): dlib first shrinks the image with its 2:1 pyramid (a 5-tap ``[1 4 6 4 1]``
  Gaussian, valid part only, integer arithmetic) while the square, one level down, still covers more pixels than the
  chip, then samples bilinearly, truncating to uint8; samples whose 2 x 2 neighbourhood leaves the image are black.
  :func:`pyramid_down` is that pyramid and the sampling is dlib's formula in numpy (float64, truncated), so the chip
  is dlib's to the bit on the sample photos (about 1 ms for the sampling). ``exact=False`` samples with
  ``cv2.warpAffine`` (INTER_LINEAR on float32 pixels, floored) instead: a little faster, but OpenCV places samples
  on a 1/32-pixel grid, which left a mean absolute difference of 0.06-0.08 grey levels (max 3) on the sample photos
  and, through the int8 embedder, a cosine of 0.9988 to dlib's chip on ``biden.jpg``.

:func:`chip_transform` is the image -> chip affine (2 x 3) of the geometry at full resolution, for ``cv2.warpAffine``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: dlib's 5-point template (``get_face_chip_details``), unit square, before padding, in the shape predictor's order.
DLIB_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                   [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                   [0.4901123135679, 0.6277975316475]])
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass(frozen=True)
class ChipDetails:
    """dlib's ``chip_details``: ``rect`` = ``(left, top, right, bottom)`` (float, inclusive) before rotation,
    ``angle`` in radians (about the rect's centre), ``rows`` x ``cols`` the chip's size."""

    rect: tuple
    angle: float
    rows: int
    cols: int


def _lround(v: float) -> int:
    """C's lround: halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple:
    """Least-squares similarity ``dst ~ [[a, -b], [b, a]] @ src + t`` (2-D Umeyama, closed form): ``(a, b, t)``."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    n2 = float((s ** 2).sum())
    a = float((s * d).sum()) / n2
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / n2
    t = md - np.array([[a, -b], [b, a]]) @ ms
    return a, b, t


def chip_details(landmarks5, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> ChipDetails:
    """dlib's ``get_face_chip_details`` for 5 landmarks in the shape predictor's order."""
    pts = np.asarray(landmarks5, np.float64).reshape(-1, 2)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise ValueError(f"chip_details wants 5 finite (x, y) landmarks, got {pts.shape}")
    template = (padding + DLIB_5) / (2 * padding + 1) * size
    a, b, t = _similarity(template, pts)
    scale = math.hypot(a, b)
    cx, cy = np.array([[a, -b], [b, a]]) @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2
    return ChipDetails((cx - half, cy - half, cx + half, cy + half), math.atan2(b, a), int(size), int(size))


def _rotated_corners(rect: tuple, angle: float) -> np.ndarray:
    """The rect's tl, tr, bl, br corners turned by ``angle`` about its centre (dlib's ``rotate_point``)."""
    l, t, r, b = rect
    c = np.array([(l + r) / 2, (t + b) / 2])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    corners = np.array([[l, t], [r, t], [l, b], [r, b]], np.float64)
    return (corners - c) @ rot.T + c


def _chip_to_image(rect: tuple, angle: float, rows: int, cols: int) -> np.ndarray:
    """The 2 x 3 affine taking chip pixel ``(c, r)`` to image pixel: (0, 0) -> the turned top-left corner,
    (cols - 1, 0) -> top-right, (0, rows - 1) -> bottom-left."""
    tl, tr, bl, _ = _rotated_corners(rect, angle)
    return np.column_stack([(tr - tl) / max(cols - 1, 1), (bl - tl) / max(rows - 1, 1), tl])


def chip_transform(landmarks5, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The 2 x 3 affine taking image pixels to dlib's chip pixels (``cv2.warpAffine(img, m, (size, size))`` cuts
    the chip at full resolution, without dlib's pyramid)."""
    d = chip_details(landmarks5, size, padding)
    m = np.vstack([_chip_to_image(d.rect, d.angle, d.rows, d.cols), [0, 0, 1]])
    return np.linalg.inv(m)[:2]


def pyramid_down(img: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>``: a separable ``[1 4 6 4 1]`` filter over the valid part, every other row and column,
    ``// 256``: ``((h - 3) // 2, (w - 3) // 2)`` pixels, pixel ``(x, y)`` centred on ``(2x + 2, 2y + 2)``. In uint16:
    a row sum is at most 255 * 16 and a full sum 255 * 256."""
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return img[:0, :0]
    nc, nr = (w - 3) // 2, (h - 3) // 2
    x = img.astype(np.uint16)
    row = x[:, 0:2 * nc:2] + x[:, 4:4 + 2 * nc:2]
    row += (x[:, 1:1 + 2 * nc:2] + x[:, 3:3 + 2 * nc:2]) * 4
    row += x[:, 2:2 + 2 * nc:2] * 6
    col = row[0:2 * nr:2] + row[4:4 + 2 * nr:2]
    col += (row[1:1 + 2 * nr:2] + row[3:3 + 2 * nr:2]) * 4
    col += row[2:2 + 2 * nr:2] * 6
    return (col >> 8).astype(np.uint8)


def _rect_down(rect: tuple) -> tuple:
    """dlib's ``pyramid_down<2>::rect_down``: ``p / 2 - (1.25, 0.75)`` for both corners."""
    l, t, r, b = rect
    return l / 2 - 1.25, t / 2 - 0.75, r / 2 - 1.25, b / 2 - 0.75


def _area(rect: tuple) -> float:
    l, t, r, b = rect
    return 0.0 if l > r or t > b else (r - l + 1) * (b - t + 1)


def _sample(src: np.ndarray, m: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """dlib's ``interpolate_bilinear`` at ``m @ (c, r, 1)`` for every chip pixel: the same weights in the same
    order (float64), truncated to uint8; black where the 2 x 2 neighbourhood leaves ``src``."""
    h, w = src.shape[:2]
    if h < 2 or w < 2:                                      # nothing to interpolate (dlib: all background)
        return np.zeros((rows, cols) + src.shape[2:], np.uint8)
    c, r = np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64)[:, None]
    x = (m[0, 0] * c + m[0, 1] * r + m[0, 2]).reshape(-1)
    y = (m[1, 0] * c + m[1, 1] * r + m[1, 2]).reshape(-1)
    x0, y0 = np.floor(x), np.floor(y)
    ok = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    fx, fy = x - x0, y - y0
    gx, gy = 1 - fx, 1 - fy
    flat = np.where(ok, y0 * w + x0, 0).astype(np.intp)
    planes = np.ascontiguousarray(src.reshape(h * w, -1).T)                  # (channels, pixels)
    tl, tr = planes.take(flat, axis=1), planes.take(flat + ok, axis=1)
    bl, br = planes.take(flat + w * ok, axis=1), planes.take(flat + (w + 1) * ok, axis=1)
    v = gy * (gx * tl + fx * tr) + fy * (gx * bl + fx * br)
    chip = v.astype(np.uint8)                                # C's cast: truncation (v is in [0, 255])
    chip[:, ~ok] = 0
    return np.ascontiguousarray(chip.T).reshape((rows, cols) + src.shape[2:])


def _sample_cv2(src: np.ndarray, m: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """:func:`_sample` with ``cv2.warpAffine`` (bilinear on a 1/32-pixel grid, float32, floored)."""
    h, w = src.shape[:2]
    out_shape = (rows, cols) + src.shape[2:]
    if h < 2 or w < 2:
        return np.zeros(out_shape, np.uint8)
    f = cv2.warpAffine(src.astype(np.float32), m, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    chip = np.floor(f, out=f).astype(np.uint8).reshape(out_shape)         # f is in [0, 255]: no clip needed
    corners = m @ np.array([[0, cols - 1, 0, cols - 1], [0, 0, rows - 1, rows - 1], [1, 1, 1, 1]], np.float64)
    if corners.min() >= 0 and corners[0].max() < w - 1 and corners[1].max() < h - 1:
        return chip                       # the chip's square maps inside the image (convex): no sample leaves it
    c, r = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    x, y = np.floor(m[0, 0] * c + m[0, 1] * r + m[0, 2]), np.floor(m[1, 0] * c + m[1, 1] * r + m[1, 2])
    chip[~((x >= 0) & (y >= 0) & (x + 1 < w) & (y + 1 < h))] = 0
    return chip


def face_chip(image: np.ndarray, landmarks5, size: int = CHIP_SIZE, padding: float = CHIP_PADDING,
              exact: bool = True) -> np.ndarray:
    """dlib's ``get_face_chip(image, shape, size, padding)``: the ``size`` x ``size`` uint8 chip (RGB in, RGB out;
    a grayscale image gives a grayscale chip). ``exact=False``: sampled with ``cv2.warpAffine`` (see above)."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f"face_chip wants a uint8 image, got {img.dtype} {img.shape}")
    d = chip_details(landmarks5, size, padding)
    n = d.rows * d.cols
    r, grow = _rect_down(d.rect), 2.0
    while _area(r) > n:                                  # dlib's crop margin grows with the pyramid's depth
        r, grow = _rect_down(r), grow * 2 + 2
    corners = _rotated_corners(d.rect, d.angle)
    h, w = img.shape[:2]
    lo = np.maximum(corners.min(0) - grow, 0)
    hi = np.minimum(corners.max(0) + grow, (w - 1, h - 1))
    bl, bt, br, bb = (_lround(v) for v in (lo[0], lo[1], hi[0], hi[1]))
    if bl > br or bt > bb:
        return np.zeros((d.rows, d.cols) + img.shape[2:], np.uint8)
    src = img[bt:bb + 1, bl:br + 1]
    rect = (d.rect[0] - bl, d.rect[1] - bt, d.rect[2] - bl, d.rect[3] - bt)
    while _area(_rect_down(rect)) > n:
        rect, src = _rect_down(rect), pyramid_down(src)
    sample = _sample if exact else _sample_cv2
    return sample(src, _chip_to_image(rect, d.angle, d.rows, d.cols), d.rows, d.cols)
