"""The compiled shape predictor (``_ert.c``), when the install could build it: found, loaded with ctypes, checked.

``pip install`` (``make install``, ``make install-edge``) compiles ``edge/vision/_ert.c`` as an optional extension
(setup.py): a machine without a C compiler installs without it and the door runs the numpy port of
:mod:`edge.vision.landmarks`, which gives the same landmarks to the bit, about 20 times slower (``doorface check``
says which one runs). Nothing is loaded at import: :func:`library` looks for the file on first use.

``DOORFACE_LANDMARKS=numpy`` in the environment keeps the numpy port (for comparison and tests).
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path
from typing import Optional

import numpy as np

ABI = 2
STEM = "_ert"
_cache: dict = {}


def candidates(folder: Optional[Path] = None) -> list:
    """Where the built library may be: ``_ert<suffix>`` beside this module, for each extension suffix of this Python
    (``.cpython-311-x86_64-linux-gnu.so``, ``.abi3.so``, ``.so``)."""
    folder = Path(folder or Path(__file__).parent)
    return [folder / f"{STEM}{s}" for s in importlib.machinery.EXTENSION_SUFFIXES]


def _bind(path: Path):
    lib = ctypes.CDLL(str(path))
    lib.ert_abi.restype = ctypes.c_int
    if lib.ert_abi() != ABI:
        return None
    p = ctypes.c_void_p
    lib.ert_predict.restype = ctypes.c_int
    lib.ert_predict.argtypes = [p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_double,
                                ctypes.c_double, ctypes.c_double, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                ctypes.c_int, ctypes.c_int, p, p, p, p, p, p, p, p]
    return lib


def library():
    """The loaded library, or None (not built, another ABI, unloadable, or ``DOORFACE_LANDMARKS=numpy``)."""
    if os.environ.get("DOORFACE_LANDMARKS", "").strip().lower() == "numpy":
        return None
    if "lib" not in _cache:
        lib = None
        for path in candidates():
            if path.is_file():
                try:
                    lib = _bind(path)
                except OSError:
                    lib = None
                if lib is not None:
                    break
        _cache["lib"] = lib
    return _cache["lib"]


#: What ``ert_predict`` takes: feature indices fit int16 and the shape its 64-float buffer.
MAX_FEATURES, MAX_PARTS = 32767, 32


def supports(features: int, parts: int) -> bool:
    """Whether a model of this size can run in the compiled loop (else the numpy one runs it)."""
    return 0 < int(features) <= MAX_FEATURES and 0 < int(parts) <= MAX_PARTS


class NativeTrees:
    """One model's arrays laid out for ``ert_predict`` (contiguous, fixed dtypes), and the call. The arrays must have
    passed :func:`edge.vision.landmarks.check_arrays` and :func:`supports`."""

    def __init__(self, lib, init, ref_x, ref_y, anchors, deltas, split_idx, split_thresh_floored, leaves):
        self.lib = lib
        self.init = np.ascontiguousarray(init, np.float32)
        self.ref = np.ascontiguousarray(np.stack([ref_x, ref_y]), np.float64)
        self.anchors = np.ascontiguousarray(anchors, np.int32)
        self.deltas = np.ascontiguousarray(np.moveaxis(np.asarray(deltas, np.float32), 2, 1))   # (S, 2, F)
        self.idx = np.ascontiguousarray(split_idx, np.int16)      # features < 32768 (checked by the caller)
        self.th = np.ascontiguousarray(split_thresh_floored, np.int16)
        self.leaves = np.ascontiguousarray(leaves, np.float32)
        self.stages, self.features = self.anchors.shape
        self.trees, self.splits = self.idx.shape[1:3]
        self.parts = self.init.shape[0]
        if not supports(self.features, self.parts):
            raise ValueError(f"{self.features} features, {self.parts} parts: too large for the compiled loop")
        self._ptrs = [a.ctypes.data for a in (self.init, self.ref, self.anchors, self.deltas, self.idx, self.th,
                                              self.leaves)]

    def shape(self, img: np.ndarray, left: float, top: float, sx: float, sy: float) -> np.ndarray:
        """The (parts, 2) float32 shape in the box's unit square; ``img`` uint8, C-contiguous, (H, W) or (H, W, 3)."""
        out = np.empty((self.parts, 2), np.float32)
        rc = self.lib.ert_predict(img.ctypes.data, img.shape[0], img.shape[1], 1 if img.ndim == 2 else 3,
                                  left, top, sx, sy, self.stages, self.trees, self.splits, self.parts, self.features,
                                  *self._ptrs, out.ctypes.data)
        if rc != 0:
            raise MemoryError("ert_predict could not allocate its feature buffer")
        return out
