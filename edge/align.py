"""Alignment: a similarity transform of the detector's landmarks onto a fixed 112x112 template.

This is the one alignment code path: ``train/`` imports it, so training and the device see the same crops.
The template is the standard ArcFace 5-point template for 112x112 crops; BlazeFace gives the mouth centre rather
than the two mouth corners, so its point is the mean of the template's two mouth corners.
"""
from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 112

#: ArcFace template (x, y) for 112x112: left eye, right eye (as seen in the image), nose tip, mouth corners.
ARCFACE_5 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], dtype=np.float32)

#: The 4-point template matching :class:`edge.faces.Face` landmarks (eyes, nose tip, mouth centre).
TEMPLATE_4 = np.vstack([ARCFACE_5[:3], ARCFACE_5[3:].mean(axis=0, keepdims=True)]).astype(np.float32)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst`` (Umeyama).

    Returns a 2x3 matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var_s = (s ** 2).sum() / len(src)
    scale = np.trace(np.diag(sig) @ sign) / max(var_s, 1e-12)
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]]).astype(np.float32)


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp the face to a ``size`` x ``size`` uint8 crop (template scaled from 112 if ``size`` differs)."""
    template = TEMPLATE_4 * (size / CROP_SIZE)
    m = similarity_transform(np.asarray(landmarks, dtype=np.float32)[:4], template)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A 112x112 aligned crop at the model's input size (area interpolation); unchanged when sizes agree."""
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def model_input(rgb: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """The one preprocessing path of device and training: align to 112x112, then resize to the model's size."""
    return resize_crop(align_face(rgb, landmarks, CROP_SIZE), size)
