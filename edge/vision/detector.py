"""Face detection with landmarks.

:class:`BlazeFaceDetector` runs MediaPipe's BlazeFace (short range) TFLite model through the same runtime shim as
the embedder. Another detector (for example YuNet through ``cv2.FaceDetectorYN``) only has to implement
:class:`Detector`: ``detect(rgb_image) -> list[Face]``.
"""
from __future__ import annotations

from typing import List, Optional, Protocol

import cv2
import numpy as np

from edge.errors import ModelError
from edge.vision.faces import Face
from edge.vision.runtime import load_interpreter

INPUT_SIZE = 128
RAW_SCORE_LIMIT = 80.0


class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> List[Face]:  # pragma: no cover - interface
        ...


class FakeDetector:
    """A stand-in detector for tests and dry runs (as gpiozero ships MockFactory): one upright face in the middle
    of every frame that is not blank, its eyes ``eye_frac`` of the frame's width apart. No model file, no I/O."""

    def __init__(self, eye_frac: float = 0.2, min_std: float = 2.0):
        self.eye_frac, self.min_std = float(eye_frac), float(min_std)
        self.backend = "fake"
        self.model_path = "fake"

    def load(self) -> "FakeDetector":
        return self

    def detect(self, rgb: np.ndarray) -> List[Face]:
        if float(np.asarray(rgb).std()) < self.min_std:
            return []
        h, w = rgb.shape[:2]
        e = self.eye_frac * w
        cx, cy = w / 2, h / 2
        lms = np.array([[cx - e / 2, cy - 0.25 * e], [cx + e / 2, cy - 0.25 * e], [cx, cy + 0.3 * e],
                        [cx, cy + 0.85 * e]], np.float32)
        return [Face((cx - e, cy - 1.1 * e, cx + e, cy + 1.4 * e), lms, 0.99)]


def ssd_anchors(input_size: int = INPUT_SIZE, strides=(8, 16, 16, 16)) -> np.ndarray:
    """Anchor centres (normalised x, y) of BlazeFace short range: 16x16x2 + 8x8x6 = 896 anchors."""
    anchors = []
    layer = 0
    while layer < len(strides):
        repeats = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            repeats += 2
            last += 1
        fm = input_size // strides[layer]
        for y in range(fm):
            for x in range(fm):
                anchors.extend([((x + 0.5) / fm, (y + 0.5) / fm)] * repeats)
        layer = last
    return np.asarray(anchors, dtype=np.float32)


def letterbox(rgb: np.ndarray, size: int = INPUT_SIZE):
    """Resize keeping aspect ratio and pad to ``size`` x ``size``.

    Returns ``(square_image, scale, pad_x, pad_y)`` where original = (square - pad) / scale.
    """
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py:py + nh, px:px + nw] = resized
    return out, scale, px, py


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float):
    """MediaPipe's weighted non-maximum suppression: overlapping detections are averaged, weighted by score.

    ``boxes`` (N, 4) as x0, y0, x1, y1; ``points`` (N, K, 2). Returns lists of (box, score, points).
    """
    order = np.argsort(-scores)
    boxes, scores, points = boxes[order], scores[order], points[order]
    remaining = np.ones(len(scores), dtype=bool)
    out = []
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        x0 = np.maximum(boxes[i, 0], boxes[:, 0])
        y0 = np.maximum(boxes[i, 1], boxes[:, 1])
        x1 = np.minimum(boxes[i, 2], boxes[:, 2])
        y1 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        iou = inter / np.maximum(areas[i] + areas - inter, 1e-9)
        group = remaining & (iou > iou_threshold)
        group[i] = True
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        pts = (points[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[i]), pts))
        remaining &= ~group
    return out


class BlazeFaceDetector:
    """BlazeFace short-range detector (faces within about 2 m, which suits a door camera).

    The model is loaded on first use (constructors do no I/O).
    """

    def __init__(self, model_path: str, min_score: float = 0.6, iou_threshold: float = 0.3,
                 num_threads: int = 2, runtime: Optional[list] = None, sha256: Optional[str] = "known"):
        self.model_path = str(model_path)
        # The file is checked against the one `make models` fetches (edge.vision.assets.DETECTOR_SHA256), like the
        # embedder against its sidecar; None skips the check (another detector file, at the caller's risk).
        self.sha256 = sha256
        self.min_score = float(min_score)
        self.iou_threshold = float(iou_threshold)
        self.num_threads = int(num_threads)
        self.runtime = runtime
        self._interp = None
        self._anchors = ssd_anchors()
        self.backend = None

    def load(self) -> "BlazeFaceDetector":
        if self._interp is None:
            import os

            if not os.path.isfile(self.model_path):
                raise ModelError(f"detector model not found: {self.model_path} (run `make models`)")
            if self.sha256 is not None:
                from edge.vision.assets import DETECTOR_SHA256, sha256_file

                want = DETECTOR_SHA256 if self.sha256 == "known" else self.sha256
                got = sha256_file(self.model_path)
                if got != want:
                    raise ModelError(f"detector {self.model_path} sha256 {got[:12]}... is not the expected "
                                     f"{want[:12]}...: refusing to use it (run `make models`)")
            self.backend, self._interp = load_interpreter(self.model_path, self.num_threads, self.runtime)
            inp = self._interp.get_input_details()[0]
            self._input_index = inp["index"]
            outs = sorted(self._interp.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
            self._reg_index, self._cls_index = outs[0]["index"], outs[1]["index"]
        return self

    def detect(self, rgb: np.ndarray) -> List[Face]:
        """Faces in an RGB uint8 image, highest score first."""
        self.load()
        square, scale, px, py = letterbox(rgb)
        x = (square.astype(np.float32) / 127.5 - 1.0)[None]
        self._interp.set_tensor(self._input_index, x)
        self._interp.invoke()
        reg = self._interp.get_tensor(self._reg_index)[0]
        raw = self._interp.get_tensor(self._cls_index)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        reg, scores, anchors = reg[keep], scores[keep], self._anchors[keep]
        pts = reg.reshape(-1, 8, 2) / INPUT_SIZE
        centre = pts[:, 0] + anchors
        half = pts[:, 1] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) * INPUT_SIZE
        kps = (pts[:, 2:] + anchors[:, None, :]) * INPUT_SIZE
        faces = []
        for box, score, kp in weighted_nms(boxes, scores, kps, self.iou_threshold):
            box = (box - [px, py, px, py]) / scale
            kp = (kp - [px, py]) / scale
            faces.append(Face(box=tuple(float(v) for v in box), landmarks=kp[:4].astype(np.float32), score=score))
        return faces
