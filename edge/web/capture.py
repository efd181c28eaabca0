"""The door camera, seen from the page through the socket's ``frames`` command: a :class:`FrameSource` for the
enrollment at the door camera (the CLI's guided capture, :func:`edge.people.enroll.enroll_camera`, while the door
keeps deciding) and the admin's live preview (MJPEG)."""
from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from edge.door.camera import Frame, FrameSource
from edge.door.seam import SeamClient
from edge.errors import CameraError, DoorfaceError

#: A frame not arriving for this long ends the capture (seconds).
FRAME_WAIT = 5.0


class SocketFrames(FrameSource):
    """``count`` frames of the door camera at ``fps``, ``width`` wide, asked for on a connection of its own."""

    live = True

    def __init__(self, socket_path, count: int, width: int = 640, fps: float = 8.0, user: str = "web",
                 name: str = "door camera (through the socket)"):
        self.socket_path, self.count, self.width, self.fps, self.user = Path(socket_path), count, width, fps, user
        self.name = name
        self._client: Optional[SeamClient] = None
        self._i = 0
        self._done = False

    def open(self) -> "SocketFrames":
        self._client = SeamClient(self.socket_path, timeout=FRAME_WAIT).connect()
        reply = self._client.command("frames", id="frames", count=self.count, width=self.width, fps=self.fps,
                                     user=self.user)
        if not reply.get("ok"):
            self.close()
            raise CameraError(f"the door refused to send frames: {reply.get('error')}")
        return self

    def jpegs(self) -> Iterator[bytes]:
        """The frames as the door encoded them (JPEG), until the last one or the door goes quiet."""
        if self._client is None:
            self.open()
        try:
            for rec in self._client.records(until=lambda r: r.get("type") == "frame" and r.get("last")):
                if rec.get("type") != "frame":
                    continue
                if rec.get("error"):
                    raise CameraError(f"the door refused to send frames: {rec['error']}")
                yield base64.b64decode(rec["jpeg"])
        except (OSError, EOFError, ValueError):   # a socket timeout is an OSError: the door went quiet
            return

    def read(self) -> Optional[Frame]:
        import cv2

        if self._done:
            return None
        if not hasattr(self, "_it"):
            self._it = self.jpegs()
        data = next(self._it, None)
        if data is None:
            self._done = True
            return None
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        self._i += 1
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.time(), self._i - 1)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def mjpeg(socket_path, seconds: float = 120, width: int = 320, fps: float = 4.0, user: str = "web") -> Iterator[bytes]:
    """A low-resolution live preview as a multipart MJPEG body (``seconds`` long, then it ends; the page reloads it
    on demand)."""
    src = SocketFrames(socket_path, int(seconds * fps), width, fps, user)
    try:
        for data in src.jpegs():
            yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(data)).encode() +
                   b"\r\n\r\n" + data + b"\r\n")
    except DoorfaceError:
        return
    finally:
        src.close()
