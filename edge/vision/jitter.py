"""An enrolled face's template is the mean embedding of its stored crop and a few slightly moved copies of it.

dlib's own ``face_encodings(num_jitters=...)`` does this ("re-sample the face when calculating encoding ... more
accurate"): one photo is a noisy sample of a face, and small shifts, rotations and scales of the alignment move its
embedding the way the next photo of the same person will. Averaging them puts the template nearer the middle of the
person's cloud. Only enrolled templates are jittered, never the face at the door, so the door's per-frame cost is
unchanged; the per-person threshold is computed from the jittered templates (:mod:`edge.people.cohort`), so it guards them.

Measured on LFW with the default port (``python -m bench.operating --seeds 20``, 20 random enrolments, per-person
thresholds, the photo-pair FAR 1e-5 threshold, margin 0.015 over the second person and the 5 closest cohort
strangers; ``--no-jitter`` for plain templates): on folds 3-5, 38 instead of 37 of 37,041 strangers' photos let in
and 23.5% of enrolled photos rejected instead of 26.9%; on folds 1-2, 20 of 28,602 either way and 26.6% instead of
30.2%. Template scores run a little higher for strangers too, so the model's thresholds are measured for this
comparison (``python -m convert.thresholds``) and the operating point was chosen again (``models/README.md``).

The copies are a fixed list (:data:`JITTERS`), not random draws, so that re-embedding a gallery
(``doorface users reembed``) gives the same templates again.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import cv2
import numpy as np

#: ``(degrees, scale, dx, dy)`` of each copy, about the crop's centre; shifts as fractions of the crop's side.
JITTERS: Tuple[Tuple[float, float, float, float], ...] = (
    (3.0, 1.02, 0.015, 0.0),
    (-3.0, 0.98, -0.015, 0.0),
    (2.0, 0.98, 0.0, 0.015),
    (-2.0, 1.02, 0.0, -0.015),
    (0.0, 1.03, -0.01, 0.01),
    (0.0, 0.97, 0.01, -0.01),
)


def jittered(crop: np.ndarray, jitters: Sequence[Tuple[float, float, float, float]] = JITTERS) -> List[np.ndarray]:
    """The crop moved by each jitter (same size and dtype; edges replicated). Pure."""
    h, w = crop.shape[:2]
    out = []
    for deg, scale, dx, dy in jitters:
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(deg), float(scale))
        m[:, 2] += (dx * w, dy * h)
        out.append(cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return out


def template_embedding(embed_crop: Callable[[np.ndarray], np.ndarray], crop: np.ndarray,
                       jitters: Sequence[Tuple[float, float, float, float]] = JITTERS) -> np.ndarray:
    """The unit-length mean of the embeddings of ``crop`` and its jittered copies (``embed_crop``: one aligned
    crop -> one embedding, as :meth:`edge.vision.embedder.Embedder.embed_crop`)."""
    embs = [np.asarray(embed_crop(c), np.float32) for c in [crop, *jittered(crop, jitters)]]
    m = np.mean(embs, axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)
