"""640x480 frames with one face, made from the sample photos (the same generator as the demo clip)."""
from __future__ import annotations

import numpy as np


def door_frames(samples_dir, detector, n: int = 20, seed: int = 0):
    from pathlib import Path

    import cv2

    from edge.door.democlip import H, W, background, face_patch

    rng = np.random.default_rng(seed)
    patches = []
    for name in ("obama3.jpg", "biden.jpg", "obama2.jpg"):
        rgb = cv2.cvtColor(cv2.imread(str(Path(samples_dir) / name)), cv2.COLOR_BGR2RGB)
        patches.append(face_patch(rgb, detector))
    frames = []
    for i in range(n):
        f = background(rng)
        p = patches[i % len(patches)]
        p = cv2.resize(p, (int(p.shape[1] * 0.8), int(p.shape[0] * 0.8)))
        ph, pw = p.shape[:2]
        x, y = int((W - pw) / 2 + rng.normal(0, 8)), int((H - ph) / 2 + rng.normal(0, 5))
        x, y = int(np.clip(x, 0, W - pw)), int(np.clip(y, 0, H - ph))
        f[y:y + ph, x:x + pw] = p
        frames.append(f)
    return frames
