"""Photos uploaded to the page: read safely (size, format, pixel count checked from the header before anything is
decoded: no decompression bomb), then judged with the enrollment's own checks, each refusal said in words a person
at a phone understands."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

#: Largest photo accepted, in pixels (a 40 MP camera's); the header is read before decoding.
MAX_PIXELS = 40_000_000
MAX_SIDE = 12_000


class PhotoError(ValueError):
    """A photo that cannot be used; the message is for the person who sent it."""


def _png_size(data: bytes) -> Optional[Tuple[int, int]]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        if data[i + 1] == 0xFF:        # fill bytes before a marker (the decoder skips them; so must this)
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def image_size(data: bytes) -> Tuple[str, int, int]:
    """``(format, width, height)`` read from the header alone; :class:`PhotoError` for anything not JPEG or PNG."""
    for fmt, fn in (("png", _png_size), ("jpeg", _jpeg_size)):
        size = fn(data)
        if size is not None:
            return fmt, int(size[0]), int(size[1])
    raise PhotoError("not a JPEG or PNG photo")


def decode(data: bytes) -> np.ndarray:
    """RGB uint8 of an uploaded JPEG or PNG, refused before decoding when its header says it is too big."""
    import cv2

    if not data:
        raise PhotoError("the file is empty")
    fmt, w, h = image_size(data)
    if w <= 0 or h <= 0 or w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise PhotoError(f"the photo is too large ({w} x {h} pixels; at most {MAX_PIXELS // 1_000_000} megapixels)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[0] != h or bgr.shape[1] != w:
        raise PhotoError(f"the {fmt.upper()} file is damaged and cannot be read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


#: The quality gate's reasons (edge.vision.quality.check) in words for the person enrolling.
WORDS = (
    ("too small", "The face is too small: take the photo closer, or crop it around the face."),
    ("head turned", "The head is turned: look straight at the camera."),
    ("head tilted", "The head is tilted: hold it upright."),
    ("too dark", "The photo is too dark: take it in better light."),
    ("too bright", "The photo is washed out: avoid direct sunlight or flash on the face."),
    ("blurred", "The face is blurred: hold the camera still and focus on the face."),
)


def in_words(reason: str) -> str:
    for prefix, words in WORDS:
        if reason.startswith(prefix):
            return f"{words} ({reason})"
    return reason


@dataclass
class Verdict:
    """One photo's outcome: usable (crop and embedding kept) or refused, and why, in words."""

    filename: str
    ok: bool
    message: str
    crop: Optional[np.ndarray] = None
    embedding: Optional[np.ndarray] = None


def safe_name(filename: str) -> str:
    """An uploaded file's name as a label only (never a path): its last part, printable, at most 80 characters."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable())[:80] or "photo"


def judge(filename: str, data: bytes, analyzer) -> Verdict:
    """The enrollment's checks on one uploaded photo: readable, one face, and that face passing the door's quality
    gates (the same as ``doorface enroll --images``)."""
    from edge.vision.jitter import template_embedding

    filename = safe_name(filename)
    try:
        rgb = decode(data)
    except PhotoError as exc:
        msg = str(exc)
        return Verdict(filename, False, msg[:1].upper() + msg[1:] + ".")
    faces = analyzer.faces(rgb)
    if not faces:
        return Verdict(filename, False, "No face found: the whole face should be in the photo, facing the camera.")
    if len(faces) > 1:
        return Verdict(filename, False, f"{len(faces)} faces in the photo: use one of this person alone.")
    res = analyzer.describe(rgb, faces[0])
    if res.rejected:
        return Verdict(filename, False, in_words(res.rejected))
    emb = template_embedding(analyzer.embedder.embed_crop, res.crop)
    return Verdict(filename, True, "Usable.", res.crop, emb)
