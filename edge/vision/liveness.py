"""Passive liveness (presentation-attack detection): is the face in front of the camera a live person, or a printed
photo or a screen held up to it?

The model is a TFLite conversion of Minivision's two MiniFASNet classifiers (``convert/liveness.py``) in one file:
each takes an 80x80 BGR crop (float 0-255) of the face box scaled by its own factor (2.7 and 4.0) about the box's
centre, and gives 3 softmax probabilities (class 1 = live). The face's liveness score is the mean of the models'
live probabilities, as upstream; the face is *live* when the score reaches the threshold.

The models were trained on boxes of another detector (a Caffe SSD), not on BlazeFace's. :func:`expected_box` maps a
BlazeFace box to the box they expect with the linear map stored in the sidecar (``box_map``, fitted by the
converter). Crops follow upstream ``CropImage._get_new_box``: the scale is capped so the crop fits in the frame, and
a crop that would leave the frame is shifted back inside it.

The sidecar (``format: doorface-liveness``) is verified like the embedder's: a missing file, another sha256 or an
edited sidecar is a :class:`ModelError`, and the door stays locked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from edge.errors import ModelError
from edge.vision.faces import Face
from edge.vision.runtime import load_interpreter
from edge.vision.sidecar import read_verified

FORMAT = "doorface-liveness"
FORMAT_VERSION = 1
REQUIRED = ("sha256", "input", "crops", "box_map", "threshold", "live_class")

#: A box map that changes nothing: ``(cx + dx*w, cy + dy*h, w*sw, h*sh)``.
IDENTITY_MAP = {"dx": 0.0, "dy": 0.0, "sw": 1.0, "sh": 1.0}


def expected_box(box, box_map: dict) -> tuple:
    """BlazeFace ``(x0, y0, x1, y1)`` -> the ``(x, y, w, h)`` box the liveness models were trained on."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + box_map["dx"] * w, (y0 + y1) / 2 + box_map["dy"] * h
    nw, nh = w * box_map["sw"], h * box_map["sh"]
    return cx - nw / 2, cy - nh / 2, nw, nh


def crop_window(frame_w: int, frame_h: int, box_xywh, scale: float) -> tuple:
    """Upstream's ``_get_new_box``: the box scaled by ``scale`` about its centre (the scale capped so the window
    fits in the frame), shifted back inside the frame; integer ``(x0, y0, x1, y1)``, both ends inclusive."""
    x, y, bw, bh = (float(v) for v in box_xywh)
    bw, bh = max(bw, 1.0), max(bh, 1.0)
    scale = min((frame_h - 1) / bh, (frame_w - 1) / bw, scale)
    nw, nh = bw * scale, bh * scale
    cx, cy = x + bw / 2, y + bh / 2
    x0, y0, x1, y1 = cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2
    if x0 < 0:
        x1 -= x0
        x0 = 0
    if y0 < 0:
        y1 -= y0
        y0 = 0
    if x1 > frame_w - 1:
        x0 -= x1 - frame_w + 1
        x1 = frame_w - 1
    if y1 > frame_h - 1:
        y0 -= y1 - frame_h + 1
        y1 = frame_h - 1
    return int(x0), int(y0), int(x1), int(y1)


def liveness_crop(rgb: np.ndarray, box_xywh, scale: float, size: int = 80) -> np.ndarray:
    """The ``size`` x ``size`` BGR uint8 crop one model looks at (cv2.resize, bilinear, as upstream)."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = crop_window(w, h, box_xywh, scale)
    patch = rgb[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1]
    if patch.size == 0:
        raise ValueError("empty liveness crop")
    return np.ascontiguousarray(cv2.resize(patch, (size, size))[:, :, ::-1])


def model_crops(rgb: np.ndarray, box, box_map: dict, scales: Sequence[float], size: int = 80) -> list:
    """The crops of every model for a BlazeFace box, in the model's input order."""
    exp = expected_box(box, box_map)
    return [liveness_crop(rgb, exp, s, size) for s in scales]


def read_liveness_sidecar(model_path, verify: bool = True) -> dict:
    meta = read_verified(model_path, FORMAT, FORMAT_VERSION, REQUIRED, verify, what="liveness model",
                         hint="convert it with `python -m convert.liveness`")
    th = meta["threshold"]
    if not isinstance(th, (int, float)) or not 0 < th < 1:
        raise ModelError(f"liveness sidecar of {model_path}: threshold {th!r} is not a probability in (0, 1)")
    if not meta["crops"] or any(not 1.0 <= float(c.get("scale", 0)) <= 10.0 for c in meta["crops"]):
        raise ModelError(f"liveness sidecar of {model_path}: crops need scales in [1, 10]")
    if set(meta["box_map"]) != set(IDENTITY_MAP):
        raise ModelError(f"liveness sidecar of {model_path}: box_map needs {', '.join(IDENTITY_MAP)}")
    return meta


@dataclass(frozen=True)
class Liveness:
    score: float      # mean live probability of the models, 0..1
    live: bool        # score >= threshold


class LivenessModel:
    """Scores faces with the converted MiniFASNet pair. Loads (and verifies) the model on first use."""

    def __init__(self, model_path: str, threshold: Optional[float] = None, num_threads: int = 2,
                 runtime: Optional[list] = None, verify: bool = True):
        self.model_path = str(model_path)
        self._threshold = threshold    # None: the sidecar's
        #: where the threshold comes from: "model" (the sidecar), "config", or a door calibration's description
        self.threshold_source = "model" if threshold is None else "config"
        self.num_threads = int(num_threads)
        self.runtime = runtime
        self.verify = verify
        self.meta = None
        self.backend = None
        self._interp = None

    def load(self) -> "LivenessModel":
        if self._interp is None:
            if self.verify:
                self.meta = read_liveness_sidecar(self.model_path)
            else:   # the converter, before the sidecar exists
                self.meta = {"crops": [{"scale": 2.7}, {"scale": 4.0}], "box_map": dict(IDENTITY_MAP),
                             "threshold": 0.5, "live_class": 1, "input": {"size": 80}}
            self.backend, self._interp = load_interpreter(self.model_path, self.num_threads, self.runtime)
            ins = self._interp.get_input_details()
            self._ins = sorted(ins, key=lambda d: d["name"])   # crop_0, crop_1, ... (the converter's names)
            self._out = self._interp.get_output_details()[0]
            self.size = int(self.meta["input"].get("size", 80))
            if len(self._ins) != len(self.meta["crops"]):
                raise ModelError(f"{self.model_path}: {len(self._ins)} inputs, sidecar lists "
                                 f"{len(self.meta['crops'])} crops")
            for d in self._ins:
                if tuple(int(v) for v in d["shape"]) != (1, self.size, self.size, 3):
                    raise ModelError(f"{self.model_path}: unexpected input shape {tuple(d['shape'])}")
        return self

    @property
    def threshold(self) -> float:
        return float(self._threshold if self._threshold is not None else self.load().meta["threshold"])

    @property
    def model_threshold(self) -> float:
        """The sidecar's threshold (the floor of a door calibration)."""
        return float(self.load().meta["threshold"])

    def set_threshold(self, value: Optional[float], source: str) -> None:
        """Use ``value`` (None: the sidecar's) from now on, saying where it comes from."""
        self._threshold = None if value is None else float(value)
        self.threshold_source = source

    @property
    def sha256(self) -> str:
        return self.load().meta.get("sha256", "")

    def _set(self, d, crop: np.ndarray):
        x = crop.astype(np.float32)
        if d["dtype"] != np.float32:
            scale, zero = d["quantization"]
            info = np.iinfo(d["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(d["dtype"])
        self._interp.set_tensor(d["index"], x[None])

    def probabilities(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``(models, 3)`` softmax probabilities for one face's crops (one per model, BGR uint8)."""
        self.load()
        for d, c in zip(self._ins, crops):
            self._set(d, c)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out["index"])[0]
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return np.asarray(y, np.float32).reshape(len(self._ins), -1)

    def crops(self, rgb: np.ndarray, face: Face) -> list:
        self.load()
        return model_crops(rgb, face.box, self.meta["box_map"], [c["scale"] for c in self.meta["crops"]],
                           self.size)

    def score_crops(self, crops: Sequence[np.ndarray]) -> float:
        return float(self.probabilities(crops)[:, int(self.load().meta["live_class"])].mean())

    def check(self, rgb: np.ndarray, face: Face) -> Liveness:
        """The face's liveness in an RGB frame (``face`` in that frame's pixel coordinates)."""
        try:
            s = self.score_crops(self.crops(rgb, face))
        except ValueError:      # a degenerate box: nothing to look at is not a live face
            s = 0.0
        return Liveness(s, s >= self.threshold)


class FakeLiveness:
    """A stand-in for tests and dry runs: the score is ``fn(rgb, face)`` (default: every face live at 0.99).
    No model file, no runtime."""

    def __init__(self, fn=None, threshold: float = 0.5):
        self.fn = fn or (lambda rgb, face: 0.99)
        self._threshold = float(threshold)
        self.model_path = "fake"
        self.backend = "fake"
        self.meta = {"sha256": "fake-liveness", "threshold": self._threshold}
        self.threshold_source = "model"

    def load(self) -> "FakeLiveness":
        return self

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def model_threshold(self) -> float:
        return float(self.meta["threshold"])

    def set_threshold(self, value: Optional[float], source: str) -> None:
        self._threshold = self.model_threshold if value is None else float(value)
        self.threshold_source = source

    @property
    def sha256(self) -> str:
        return self.meta["sha256"]

    def check(self, rgb: np.ndarray, face: Face) -> Liveness:
        s = float(self.fn(rgb, face))
        return Liveness(s, s >= self._threshold)
