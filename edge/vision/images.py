"""Image files: which files are images, their size from the header, and reading one as RGB, safely.

Shared by enrollment, the cohort builder, ``identify``/``embed``, folder camera sources and the converter's
representative set, so every path reads photos the same way (size limit before decoding, one-line errors).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

import cv2
import numpy as np

from edge.errors import EnrollmentError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(root, recursive: bool = False) -> List[Path]:
    """The image files in a folder (by extension), sorted; with ``recursive`` in all its sub-folders too."""
    found = Path(root).rglob("*") if recursive else Path(root).iterdir()
    return sorted(f for f in found if f.is_file() and f.suffix.lower() in IMAGE_EXTS)


def expand_paths(paths) -> List[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            files = image_files(p)
            if not files:
                raise EnrollmentError(f"no images in folder {p}")
            out.extend(files)
        elif p.is_file():
            out.append(p)
        else:
            raise EnrollmentError(f"no such file or folder: {p}")
    return out


#: Largest image accepted (pixels): 40 MP. A 16000x16000 JPEG would take gigabytes once decoded.
MAX_PIXELS = 40_000_000


def image_size(data: bytes):
    """``(width, height)`` from a PNG or JPEG header without decoding it; None for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            i += 2 + length
    return None


def read_rgb(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    data = np.fromfile(str(path), np.uint8) if os.path.getsize(path) else np.zeros(0, np.uint8)
    size = image_size(data[:65536].tobytes()) if data.size else None
    if size and size[0] * size[1] > max_pixels:
        raise EnrollmentError(f"image {path} is {size[0]}x{size[1]}: more than {max_pixels // 1_000_000} MP; "
                              "use a smaller photo")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise EnrollmentError(f"cannot read image {path} (not an image, or corrupt)")
    if bgr.shape[0] * bgr.shape[1] > max_pixels:
        raise EnrollmentError(f"image {path} is {bgr.shape[1]}x{bgr.shape[0]}: more than "
                              f"{max_pixels // 1_000_000} MP; use a smaller photo")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
