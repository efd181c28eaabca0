"""Quality gates: a face must be big enough, sharp enough, frontal enough and well exposed before it counts."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from edge.vision.faces import Face


@dataclass(frozen=True)
class QualityConfig:
    min_eye_distance: float = 28.0
    min_sharpness: float = 15.0
    max_yaw: float = 0.35
    max_roll: float = 25.0
    min_brightness: float = 35.0
    max_brightness: float = 225.0


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian (low = blurred)."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def pose(face: Face):
    """``(yaw, roll_degrees)`` from the landmarks: yaw is the nose's horizontal offset from the eyes' midpoint
    in units of eye distance (0 = frontal); roll is the tilt of the line between the eyes."""
    le, re, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
    d = re - le
    dist = float(np.hypot(*d)) or 1e-6
    roll = math.degrees(math.atan2(float(d[1]), float(d[0])))
    mid = (le + re) / 2
    # Project the nose offset on the eye axis.
    yaw = float(np.dot(nose - mid, d / dist)) / dist
    return yaw, roll


def check(face: Face, crop: np.ndarray, cfg: QualityConfig) -> Optional[str]:
    """None when the face passes, else the reason it does not (for the debug log)."""
    if face.eye_distance < cfg.min_eye_distance:
        return f"too small (eye distance {face.eye_distance:.0f}px < {cfg.min_eye_distance:.0f})"
    yaw, roll = pose(face)
    if abs(yaw) > cfg.max_yaw:
        return f"head turned (yaw {yaw:+.2f})"
    if abs(roll) > cfg.max_roll:
        return f"head tilted (roll {roll:+.0f} deg)"
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    b = float(gray.mean())
    if b < cfg.min_brightness:
        return f"too dark (brightness {b:.0f})"
    if b > cfg.max_brightness:
        return f"too bright (brightness {b:.0f})"
    s = sharpness(gray)
    if s < cfg.min_sharpness:
        return f"blurred (sharpness {s:.0f})"
    return None
