"""Frame -> faces -> quality gates -> alignment -> embedding and liveness: the per-frame vision work of the door.

Matching the embedding against the people who are known is :mod:`edge.people.matcher`'s, not this module's."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from edge.vision.detector import Detector
from edge.vision.embedder import Embedder
from edge.vision.faces import Face
from edge.vision.quality import QualityConfig, check

log = logging.getLogger(__name__)


@dataclass
class FaceResult:
    face: Face
    crop: np.ndarray
    rejected: Optional[str] = None        # quality reason, None when the face counts
    embedding: Optional[np.ndarray] = None
    liveness: Optional[float] = None      # live score 0..1; None when liveness is turned off
    live: bool = False                    # the liveness call (True only if live, or liveness explicitly off)


class FaceAnalyzer:
    """Holds the detector, the embedder and the liveness model; :meth:`analyze` runs one frame.

    ``liveness`` None means liveness was explicitly turned off (config ``liveness.enabled = false``): every face
    then counts as live. The composition root (``edge.build``) is the only place that decides that."""

    def __init__(self, detector: Detector, embedder: Embedder, quality: QualityConfig, liveness=None):
        self.detector, self.embedder, self.quality = detector, embedder, quality
        self.liveness = liveness

    def faces(self, rgb: np.ndarray, detect_image: Optional[np.ndarray] = None) -> List[Face]:
        """Faces in frame coordinates, largest first; detection may run on a smaller copy of the frame."""
        if detect_image is None:
            faces = self.detector.detect(rgb)
        else:
            s = rgb.shape[1] / detect_image.shape[1]
            faces = [Face(tuple(v * s for v in f.box), f.landmarks * s, f.score)
                     for f in self.detector.detect(detect_image)]
        return sorted(faces, key=lambda f: -f.area)

    def describe(self, rgb: np.ndarray, face: Face, gate: bool = True) -> FaceResult:
        crop = self.embedder.crop(rgb, face)
        reason = check(face, crop, self.quality) if gate else None
        if reason:
            return FaceResult(face, crop, reason)
        emb = self.embedder.embed_crop(crop)
        if self.liveness is None:
            score, live = None, True
        else:
            lv = self.liveness.check(rgb, face)
            score, live = lv.score, bool(lv.live)
        return FaceResult(face, crop, None, emb, score, live)

    def analyze(self, rgb: np.ndarray, detect_image: Optional[np.ndarray] = None) -> Optional[FaceResult]:
        """The largest face of the frame, gated, embedded and checked for liveness; None when there is no face."""
        faces = self.faces(rgb, detect_image)
        if not faces:
            return None
        result = self.describe(rgb, faces[0])
        if result.rejected:
            log.debug("face rejected: %s", result.rejected)
        return result
