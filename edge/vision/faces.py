"""The Face record shared by detectors, quality gates, alignment and matching."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in pixel coordinates of the frame it came from.

    ``box`` is ``(x0, y0, x1, y1)``. ``landmarks`` is a ``(4, 2)`` float array in this order:
    eye on the image-left (the subject's right eye), eye on the image-right, nose tip, mouth centre.
    """

    box: tuple
    landmarks: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
        }


def largest(faces):
    """The face with the largest box area, or None."""
    return max(faces, key=lambda f: f.area) if faces else None
