"""The demo's door camera: a clip rendered from still photos the way a door camera sees a person (a new small
rotation, scale, shift, exposure, sensor noise and MJPG compression every frame). Used by ``make demo``, the
tests and the benchmarks; it needs only the detector (to find the face to place in the frame).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.vision.faces import largest

FPS = 10
W, H = 640, 480

#: (seconds, sample or None for an empty doorway)
SCRIPT = (
    (1.0, None),
    (2.0, "obama.jpg"),    # the enrolled person seen again by the door camera: grant
    (2.0, None),
    (2.0, "biden.jpg"),    # a stranger: deny, never grant
    (2.0, None),
    (2.0, "obama3.jpg"),   # the enrolled person in a photo years apart: up to the model (never a stranger's grant)
    (4.0, None),           # longer than the cooldown, whatever happened before
    (2.0, "obama.jpg"),    # back after the cooldown: grant again
    (0.5, None),
)


def face_patch(rgb: np.ndarray, detector) -> np.ndarray:
    """The photo cropped around its face so the face fills about 45% of the frame height."""
    face = largest(detector.detect(rgb))
    if face is None:
        raise RuntimeError("no face in a sample photo")
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    side = max(face.width, face.height) / 0.45
    x0, y0 = int(max(0, cx - side * 0.67)), int(max(0, cy - side * 0.5))
    x1, y1 = int(min(rgb.shape[1], cx + side * 0.67)), int(min(rgb.shape[0], cy + side * 0.5))
    patch = rgb[y0:y1, x0:x1]
    scale = H / patch.shape[0]
    return cv2.resize(patch, (int(patch.shape[1] * scale), H), interpolation=cv2.INTER_AREA)


def background(rng) -> np.ndarray:
    g = np.linspace(70, 140, W, dtype=np.float32)[None, :, None]
    bg = np.broadcast_to(g, (H, W, 3)).copy()
    bg[:, :, 2] += 10
    return np.clip(bg + rng.normal(0, 2, bg.shape), 0, 255).astype(np.uint8)


def compose(patch: np.ndarray, rng, bg: np.ndarray | None = None) -> np.ndarray:
    """One door-camera frame (H x W RGB) showing ``patch`` (from :func:`face_patch`): a new small rotation, scale
    and position each call, then exposure and sensor noise."""
    frame = background(rng) if bg is None else bg.copy()
    ang, s = rng.uniform(-4, 4), rng.uniform(0.9, 1.0)
    ph0, pw0 = patch.shape[:2]
    m = cv2.getRotationMatrix2D((pw0 / 2, ph0 / 2), ang, s)
    p = cv2.warpAffine(patch, m, (pw0, ph0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    ph, pw = p.shape[:2]
    x = int(np.clip((W - pw) / 2 + rng.normal(0, 6), 0, max(0, W - pw)))
    y = int(np.clip((H - ph) / 2 + rng.normal(0, 4), 0, max(0, H - ph)))
    pw_, ph_ = min(pw, W - x), min(ph, H - y)
    frame[y:y + ph_, x:x + pw_] = p[:ph_, :pw_]
    return np.clip(frame.astype(np.float32) * rng.uniform(0.8, 1.1) + rng.normal(0, 3, frame.shape),
                   0, 255).astype(np.uint8)


def door_capture(samples_dir, name: str, detector, seed: int = 0) -> np.ndarray:
    """A single door-camera frame of a sample photo (RGB), as :func:`make_clip` renders them, JPEG-compressed."""
    rng = np.random.default_rng(seed)
    bgr = cv2.imread(str(Path(samples_dir) / name))
    frame = compose(face_patch(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), detector), rng)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def make_clip(samples_dir, out_path, detector, fps: int = FPS, seed: int = 0) -> list:
    """Write the demo clip (MJPG AVI, 640x480) and return the ground truth per frame (sample name or None)."""
    rng = np.random.default_rng(seed)
    patches = {}
    truth = []
    writer = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {out_path}")
    try:
        for seconds, name in SCRIPT:
            for _ in range(int(round(seconds * fps))):
                frame = background(rng)
                if name:
                    if name not in patches:
                        bgr = cv2.imread(str(Path(samples_dir) / name))
                        patches[name] = face_patch(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), detector)
                    frame = compose(patches[name], rng, frame)
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                truth.append(name)
    finally:
        writer.release()
    return truth
