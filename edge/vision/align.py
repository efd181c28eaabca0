"""Alignment: a similarity transform of the detector's landmarks onto a fixed template.

This is the one alignment code path: ``train/`` imports it, so training and the device see the same crops. A
model's sidecar names its template (``input.template``); :data:`TEMPLATES` holds them:

- ``arcface112``: the standard ArcFace 5-point template for 112x112 crops (the small doorface model); BlazeFace
  gives the mouth centre rather than the two mouth corners, so its point is the mean of the two mouth corners.
- ``dlib150``: dlib's 150x150 face chip with padding 0.25 (the ported dlib ResNet), expressed as where BlazeFace's
  4 keypoints land in it, fitted on LFW training images by ``python -m train.chips fit`` (dlib's own HOG box,
  5-point shapes and chip transform; held-out identities left out).
"""
from __future__ import annotations

from dataclasses import dataclass

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

#: The 4-point template matching :class:`edge.vision.faces.Face` landmarks (eyes, nose tip, mouth centre).
TEMPLATE_4 = np.vstack([ARCFACE_5[:3], ARCFACE_5[3:].mean(axis=0, keepdims=True)]).astype(np.float32)

#: BlazeFace's keypoints (eye image-left, eye image-right, nose tip, mouth centre) in dlib's 150x150 chip:
#: `python -m train.chips fit ../shared/data/lfw/lfw-deepfunneled-train.tgz --cache ... --pairs ... --folds 1,2`
#: (mean over DLIB150_IMAGES training images, 844 held-out people left out).
DLIB150_4 = np.array([
    [46.5831, 46.8616],    # eye, image left   (std 3.5 / 2.4 px)
    [102.7615, 47.4280],   # eye, image right  (std 3.4 / 2.9 px)
    [73.9433, 79.0031],    # nose tip          (std 8.3 / 6.2 px: BlazeFace's tip vs dlib's nose base, head pose)
    [73.7940, 108.6384],   # mouth centre      (std 3.7 / 4.0 px)
], dtype=np.float32)
DLIB150_IMAGES = 4501


@dataclass(frozen=True)
class Template:
    name: str
    size: int             # the crop's native side in pixels
    points: np.ndarray    # (4, 2) where the Face landmarks go, in pixels of a size x size crop


TEMPLATES = {
    "arcface112": Template("arcface112", CROP_SIZE, TEMPLATE_4),
    "dlib150": Template("dlib150", 150, DLIB150_4),
}
DEFAULT_TEMPLATE = "arcface112"


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown alignment template {name!r} (known: {', '.join(TEMPLATES)})") from None


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


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = 0, template: str = DEFAULT_TEMPLATE) -> np.ndarray:
    """Warp the face to a ``size`` x ``size`` uint8 crop of ``template`` (its native size when ``size`` is 0).

    A face much larger than the crop is first shrunk with area averaging (as dlib's chip extraction does with its
    image pyramid), so a close-up face at the door is not aliased by the bilinear warp.
    """
    t = get_template(template)
    size = size or t.size
    m = similarity_transform(np.asarray(landmarks, dtype=np.float32)[:4], t.points * (size / t.size))
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2].astype(np.float64)))))
    if scale < 0.5 and min(rgb.shape[:2]) * scale * 2 >= 8:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (max(1, round(w * scale * 2)), max(1, round(h * scale * 2))),
                           interpolation=cv2.INTER_AREA)
        m = m.copy()
        m[:, 0] *= w / small.shape[1]      # the same warp, from the shrunk image's pixels
        m[:, 1] *= h / small.shape[0]
        rgb = small
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """A 112x112 aligned crop at the model's input size (area interpolation); unchanged when sizes agree."""
    if crop.shape[0] == size and crop.shape[1] == size:
        return crop
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def model_input(rgb: np.ndarray, landmarks: np.ndarray, size: int, template: str = DEFAULT_TEMPLATE) -> np.ndarray:
    """The one preprocessing path of device and training: align to the template at its native size, then resize
    to the model's size."""
    return resize_crop(align_face(rgb, landmarks, template=template), size)
