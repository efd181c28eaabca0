"""Image files: which files are images, their size from the header, and reading one as RGB, safely.

Shared by enrollment, the cohort builder, ``identify``/``embed``, liveness calibration and the converter's
representative set, so every path reads photos the same way, each refusal one line naming the file: only a regular
file (never a folder, a device or a pipe) of at most :data:`MAX_BYTES`, only JPEG, PNG, BMP or WebP, its size taken
from its real header (a JPEG's segments are walked from the start, however far EXIF/ICC/XMP push the frame header)
and refused above :data:`MAX_PIXELS` before anything is decoded, and a truncated file (a JPEG without its
end-of-image marker, a PNG without its IEND chunk, a BMP or WebP shorter than its header says) refused rather than
decoded into a half-grey picture.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np

from edge.errors import EnrollmentError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(root, recursive: bool = False) -> List[Path]:
    """The image files in a folder (by extension), sorted; with ``recursive`` in all its sub-folders too."""
    found = Path(root).rglob("*") if recursive else Path(root).iterdir()
    return sorted(f for f in found if f.is_file() and f.suffix.lower() in IMAGE_EXTS)


def expand_paths(paths) -> List[Path]:
    """Files and folders (their images, sorted) to image files; a missing path, a device or a pipe is refused."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            files = image_files(p)
            if not files:
                raise EnrollmentError(f"no images in folder {shown_path(p)}")
            out.extend(files)
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise EnrollmentError(f"cannot read image {shown_path(p)}: not a regular file")
        else:
            raise EnrollmentError(f"no such file or folder: {shown_path(p)}")
    return out


#: Largest image accepted (pixels): 40 MP. A 16000x16000 JPEG would take gigabytes once decoded.
MAX_PIXELS = 40_000_000
#: Largest image file read (bytes): a 40 MP photo is far smaller; a bigger file is never read into memory.
MAX_BYTES = 160 * 1024 * 1024
FORMATS = "JPEG, PNG, BMP or WebP"


@dataclass(frozen=True)
class Header:
    """What an image file's header says, read without decoding it: its format, size, and whether the file holds
    all of it (a JPEG up to its end-of-image marker, a PNG up to its IEND chunk, a BMP or WebP all the bytes its
    header counts)."""

    format: str
    width: int
    height: int
    complete: bool


#: In a JPEG's entropy-coded data: an FF that starts a marker (not a stuffed FF 00, a restart marker or a fill byte).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _u16(d: bytes, i: int, order: str = "big") -> int:
    return int.from_bytes(d[i:i + 2], order)


def _jpeg_scan_end(data: bytes, i: int) -> int:
    """Where the entropy-coded data starting at ``i`` ends: the next marker that is neither a stuffed ``FF 00``
    nor a restart marker (searched in C: a scan can be megabytes); -1 when the data ends first (a truncated file)."""
    m = _NEXT_MARKER.search(data, i)
    return m.start() if m else -1


def _jpeg(data: bytes) -> Header:
    """Walk a JPEG's segments from its start (whatever their size: EXIF, ICC or XMP blocks can push the frame header
    far into the file) to its end-of-image marker. Size 0x0 when no frame header comes before the first scan."""
    size, i, n = (0, 0), 2, len(data)
    while i < n:
        if data[i] != 0xFF:                                  # stray bytes between segments: libjpeg skips them too
            i = data.find(b"\xff", i)
            if i < 0:
                break
            continue
        while i < n and data[i] == 0xFF:                     # fill bytes
            i += 1
        if i >= n:
            break
        marker, i = data[i], i + 1
        if marker == 0xD9:                                   # end of image
            return Header("JPEG", *size, True)
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue                                         # no length follows these
        length = _u16(data, i)
        if i + 2 > n or length < 2:
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and size == (0, 0) and length >= 7:
            size = (_u16(data, i + 5), _u16(data, i + 3))    # SOFn: precision, height, width
        i += length
        if marker == 0xDA:                                   # start of scan: entropy-coded data follows
            if size == (0, 0):
                return Header("JPEG", 0, 0, True)            # a scan before any frame header: damaged, not cut
            i = _jpeg_scan_end(data, i)
            if i < 0:
                break
    return Header("JPEG", *size, False)


def _png(data: bytes) -> Header:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return Header("PNG", 0, 0, len(data) >= 24)
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    i = 8
    while i + 12 <= len(data):                               # chunks: length, type, data, CRC
        length, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        if i + 12 + length > len(data):
            break
        if kind == b"IEND":
            return Header("PNG", w, h, True)
        i += 12 + length
    return Header("PNG", w, h, False)


def _bmp(data: bytes) -> Header:
    if len(data) < 34:
        return Header("BMP", 0, 0, False)
    offset, dib = int.from_bytes(data[10:14], "little"), int.from_bytes(data[14:18], "little")
    if dib == 12:                                            # OS/2 core header: 16-bit sizes
        w, h, bpp, compression = _u16(data, 18, "little"), _u16(data, 20, "little"), _u16(data, 24, "little"), 0
    elif dib >= 40:
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = abs(int.from_bytes(data[22:26], "little", signed=True))   # negative: stored top-down
        bpp, compression = _u16(data, 28, "little"), int.from_bytes(data[30:34], "little")
    else:
        return Header("BMP", 0, 0, True)
    if compression in (0, 3, 6):                             # uncompressed (bit fields): every row is stored
        need = offset + ((bpp * max(w, 0) + 31) // 32) * 4 * h
    else:                                                    # RLE and others: the size the file header gives
        need = int.from_bytes(data[2:6], "little")
    return Header("BMP", w, h, len(data) >= need)


def _webp(data: bytes) -> Header:
    if len(data) < 30:
        return Header("WebP", 0, 0, False)
    complete = len(data) >= 8 + int.from_bytes(data[4:8], "little")
    kind = data[12:16]
    if kind == b"VP8X":
        w, h = 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    elif kind == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8 ":
        w, h = _u16(data, 26, "little") & 0x3FFF, _u16(data, 28, "little") & 0x3FFF
    else:
        return Header("WebP", 0, 0, complete)
    return Header("WebP", w, h, complete)


def probe(data: bytes) -> Optional[Header]:
    """The :class:`Header` of a JPEG, PNG, BMP or WebP file's bytes, read without decoding (size 0x0 when the
    header gives none); None for anything else."""
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png(data)
    if data[:2] == b"BM":
        return _bmp(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    return None


def image_size(data: bytes):
    """``(width, height)`` from an image's header without decoding it (see :func:`probe`); None when unknown."""
    h = probe(data)
    return (h.width, h.height) if h and h.width > 0 and h.height > 0 else None


def shown_path(path) -> str:
    """A file name fit for a one-line message: as it is, or escaped when it holds control or invisible characters."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def read_bytes(path, max_bytes: int = MAX_BYTES) -> bytes:
    """A regular file's bytes (never a folder, a device or a pipe: ``/dev/zero`` would never end), at most
    ``max_bytes``; every failure is one :class:`EnrollmentError` naming the file."""
    name = shown_path(path)
    try:   # O_NONBLOCK: opening a pipe must not wait for a writer (it is refused just below)
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise EnrollmentError(f"cannot read image {name}: not a regular file")
            if st.st_size > max_bytes:
                raise EnrollmentError(f"image {name} is {st.st_size / 2**20:.0f} MB: more than "
                                      f"{max_bytes / 2**20:.0f} MB; use a smaller photo")
            data = f.read(max_bytes + 1)
    except IsADirectoryError:
        raise EnrollmentError(f"cannot read image {name}: it is a folder, not an image file") from None
    except FileNotFoundError:
        raise EnrollmentError(f"cannot read image {name}: no such file") from None
    except OSError as exc:
        raise EnrollmentError(f"cannot read image {name}: {exc.strerror or exc.__class__.__name__}") from None
    if len(data) > max_bytes:
        raise EnrollmentError(f"image {name} grew past {max_bytes / 2**20:.0f} MB while being read")
    return data


def read_rgb(path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file as RGB uint8. Refused before decoding, each with one line naming the file: not a file, not a
    JPEG/PNG/BMP/WebP, more than ``max_pixels`` (from its header, wherever that sits), truncated."""
    data, name = read_bytes(path), shown_path(path)
    head = probe(data)
    if head is None:
        what = "an empty file" if not data else f"not a {FORMATS} image"
        raise EnrollmentError(f"cannot read image {name}: {what}")
    if head.width * head.height > max_pixels:
        raise EnrollmentError(f"image {name} is {head.width}x{head.height}: more than "
                              f"{max_pixels // 1_000_000} MP; use a smaller photo")
    if not head.complete:
        raise EnrollmentError(f"image {name} is truncated (its {head.format} data ends early): copy the whole file "
                              "again")
    if head.width <= 0 or head.height <= 0:
        raise EnrollmentError(f"cannot read image {name}: its {head.format} header is damaged (no image size)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise EnrollmentError(f"cannot read image {name} (not an image, or corrupt)")
    if bgr.shape[0] * bgr.shape[1] > max_pixels:
        raise EnrollmentError(f"image {name} is {bgr.shape[1]}x{bgr.shape[0]}: more than "
                              f"{max_pixels // 1_000_000} MP; use a smaller photo")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
