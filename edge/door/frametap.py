"""Frames of the door camera for a peer of the socket (the web page's live preview, an enrollment at the door camera
while the door keeps deciding): what the ``frames`` command asked for, sent from the frame loop to that peer only.

The loop calls :meth:`FrameTap.offer` with every frame; a request gets a frame when it is due (its ``fps``), scaled to
its ``width`` and encoded as JPEG (base64 in the line), until its ``count`` is reached or its peer went away. At most
:data:`edge.door.seam.FRAME_PEERS` requests at once: a new one from the same peer replaces its old one, and one more
than that is refused (logged). Frames never reach the bus (not the access log, not the other peers)."""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Callable, List

import numpy as np

from edge.door.seam import FRAME_PEERS

log = logging.getLogger("doorface")


@dataclass
class _Request:
    peer: object
    id: object
    count: int
    width: int
    every: float
    sent: int = 0
    due: float = float("-inf")


def encode(rgb: np.ndarray, width: int, quality: int = 90) -> tuple:
    """``(jpeg bytes, w, h)``: the frame scaled down to ``width`` (never up)."""
    import cv2

    h, w = rgb.shape[:2]
    if w > width:
        rgb = cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return (buf.tobytes() if ok else b""), rgb.shape[1], rgb.shape[0]


class FrameTap:
    def __init__(self):
        self.requests: List[_Request] = []

    def add(self, cmd: dict) -> bool:
        """Take a ``frames`` command (checked by the seam); False when too many peers are already served."""
        self.requests = [r for r in self.requests if r.peer is not cmd["peer"]]
        if len(self.requests) >= FRAME_PEERS:
            log.warning("frames asked by %s refused: %d peers are served already", cmd.get("user"), FRAME_PEERS)
            return False
        self.requests.append(_Request(cmd["peer"], cmd.get("id"), cmd["count"], cmd["width"], 1.0 / cmd["fps"]))
        return True

    def __bool__(self) -> bool:
        return bool(self.requests)

    def offer(self, rgb: np.ndarray, now: float, send_to: Callable[[object, dict], bool]) -> None:
        """Send ``rgb`` to every request that is due; drop the finished ones and those whose peer is gone."""
        keep = []
        for r in self.requests:
            if now >= r.due:
                r.due = max(now, r.due + r.every) if r.due > float("-inf") else now + r.every
                data, w, h = encode(rgb, r.width)
                r.sent += 1
                rec = {"v": 1, "type": "frame", "id": r.id, "n": r.sent, "last": r.sent >= r.count, "w": w, "h": h,
                       "jpeg": base64.b64encode(data).decode()}
                if not send_to(r.peer, rec):
                    continue
            if r.sent < r.count:
                keep.append(r)
        self.requests = keep
