"""Camera sources behind one small interface, chosen by a URI.

``picamera2`` (Pi camera via libcamera: main stream for alignment, low-res stream for detection),
``v4l2:/dev/video0`` or an index ``0`` (USB camera via OpenCV), ``gst:<pipeline>`` (Jetson CSI via
``nvarguscamerasrc``), ``rtsp://...``, a video file, or a folder of images (sorted). Files and folders end at
end-of-input (:meth:`FrameSource.read` returns None); live sources run in :class:`LatestFrameGrabber`, a thread that
keeps only the newest frame and reopens a failed camera with back-off.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

import cv2
import numpy as np

from edge.errors import CameraError, DoorfaceError
from edge.vision.images import image_files, read_rgb

log = logging.getLogger(__name__)
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


@dataclass
class Frame:
    """An RGB frame; ``detect_image`` (smaller, same field of view) is what the detector sees when set."""

    image: np.ndarray
    t: float
    index: int = 0
    detect_image: Optional[np.ndarray] = None


class FrameSource:
    """Interface. ``read()`` returns a Frame, None at end of input, or raises CameraError."""

    live = False
    name = "source"

    def open(self) -> "FrameSource":
        return self

    def read(self) -> Optional[Frame]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


class FolderSource(FrameSource):
    """Every image of a folder in sorted order (an unreadable file is skipped with a warning).
    Frame times are ``index / fps`` (files are replayed on their own timeline, faster than real time)."""

    def __init__(self, folder, fps: float = 10.0):
        self.folder = Path(folder)
        self.fps = float(fps)
        self.name = str(folder)
        self._files: List[Path] = []
        self._i = 0

    def open(self):
        if not self.folder.is_dir():
            raise CameraError(f"no such image folder: {self.folder}")
        self._files = image_files(self.folder)
        self._i = 0
        return self

    def read(self):
        while self._i < len(self._files):
            p = self._files[self._i]
            self._i += 1
            try:
                rgb = read_rgb(p)     # the same checks as every photo: header size, truncation, file type
            except DoorfaceError as exc:
                log.warning("skipping %s", exc)
                continue
            return Frame(rgb, (self._i - 1) / self.fps, self._i - 1)
        return None


class OpenCVSource(FrameSource):
    """cv2.VideoCapture: a video file (finite), a V4L2 device or index, a GStreamer pipeline or an RTSP URL."""

    def __init__(self, target, api=None, live=True, width=640, height=480, fps=30):
        self.target, self.api, self.live = target, api, live
        self.size, self.fps = (width, height), fps
        self.name = redact_uri(str(target))   # what logs and errors show: never the camera's password
        self._cap = None
        self._i = 0

    def open(self):
        cap = cv2.VideoCapture(self.target, self.api) if self.api is not None else cv2.VideoCapture(self.target)
        if not cap.isOpened():
            raise CameraError(f"cannot open camera source {self.name}")
        if self.live and self.api == cv2.CAP_V4L2:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        self._i = 0
        if not self.live:
            self.fps = cap.get(cv2.CAP_PROP_FPS) or self.fps
        return self

    def read(self):
        if self._cap is None:
            raise CameraError(f"{self.name} is not open")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self.live:
                raise CameraError(f"camera {self.name} stopped delivering frames")
            return None
        self._i += 1
        t = time.time() if self.live else (self._i - 1) / self.fps  # a file runs on its own timeline
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t, self._i - 1)

    def close(self):
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class Picamera2Source(FrameSource):
    """The Pi camera through picamera2 (apt package python3-picamera2): RGB main stream plus a half-size low-res
    stream that the detector uses. cv2 cannot open libcamera cameras on Pi OS Bookworm."""

    live = True
    name = "picamera2"

    def __init__(self, width=640, height=480, fps=30):
        self.size, self.fps = (width, height), fps
        self._cam = None
        self._i = 0

    def open(self):
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(f"picamera2 is not importable ({exc}); on Pi OS: apt install python3-picamera2 "
                              "and create the venv with --system-site-packages") from None
        try:
            cam = Picamera2()
            lores = (self.size[0] // 2 // 2 * 2, self.size[1] // 2 // 2 * 2)
            cfg = cam.create_video_configuration(main={"size": self.size, "format": "RGB888"},
                                                 lores={"size": lores, "format": "YUV420"},
                                                 controls={"FrameRate": self.fps}, buffer_count=4)
            cam.configure(cfg)
            cam.start()
        except Exception as exc:  # libcamera errors are plain RuntimeErrors
            raise CameraError(f"cannot start picamera2: {exc}") from None
        self._cam = cam
        return self

    def read(self):
        try:
            with self._cam.captured_request() as req:
                main = req.make_array("main")     # "RGB888" is BGR byte order in numpy
                yuv = req.make_array("lores")
        except Exception as exc:
            raise CameraError(f"picamera2 capture failed: {exc}") from None
        self._i += 1
        rgb = main[:, :, ::-1].copy()
        small = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
        return Frame(rgb, time.time(), self._i - 1, detect_image=small)

    def close(self):
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None


class FakeSource(FrameSource):
    """Frames from a list (finite), or from a callable ``f(i) -> array | None | Exception`` (raising
    CameraError when it returns an exception), for tests. ``live`` makes it behave as a camera: frames come at
    ``fps`` with wall-clock timestamps."""

    def __init__(self, frames=None, fn: Optional[Callable] = None, live=False, name="fake", fps: float = 10.0):
        self.frames, self.fn, self.live, self.name, self.fps = frames, fn, live, name, fps
        self._i = 0
        self._due = 0.0
        self.opened = 0

    def open(self):
        self.opened += 1
        return self

    def read(self):
        if self.live:
            now = time.monotonic()
            if self._due > now:
                time.sleep(self._due - now)
            self._due = max(now, self._due) + 1.0 / self.fps
        i = self._i
        self._i += 1
        item = self.fn(i) if self.fn else (self.frames[i] if i < len(self.frames) else None)
        if isinstance(item, Exception):
            raise CameraError(str(item))
        if item is None:
            return None
        return Frame(item, time.time() if self.live else i / self.fps, i)


def open_source(uri: str, width=640, height=480, fps=30) -> FrameSource:
    """The source for a URI (see module doc). Does not open it."""
    uri = str(uri)
    if uri == "picamera2":
        return Picamera2Source(width, height, fps)
    if uri.startswith("v4l2:"):
        dev = uri[5:]
        return OpenCVSource(int(dev) if dev.isdigit() else dev, cv2.CAP_V4L2, True, width, height, fps)
    if uri.isdigit():
        return OpenCVSource(int(uri), cv2.CAP_V4L2, True, width, height, fps)
    if uri.startswith("gst:"):
        return OpenCVSource(uri[4:], cv2.CAP_GSTREAMER, True, width, height, fps)
    if uri.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return OpenCVSource(uri, cv2.CAP_FFMPEG, True, width, height, fps)
    if os.path.isdir(uri):
        return FolderSource(uri, fps)
    if os.path.isfile(uri):
        return OpenCVSource(uri, None, False)
    raise CameraError(f"camera source {redact_uri(uri)!r} is neither a known camera URI nor an existing file or "
                      "folder")


#: The user-info of a URL: from ``://`` to the LAST ``@`` before the URL's element ends (the end of the line or a
#: GStreamer `` ! ``). Greedy on purpose: a password may hold a raw ``/``, ``@``, ``:`` or space, and hiding part
#: of a path that holds an ``@`` is the safe way to be wrong.
_USERINFO = re.compile(r"://(?:(?! ! )[^\r\n])*@")
#: Query parameters that carry a secret (``?user=admin&password=...`` on many IP cameras), and GStreamer's
#: ``rtspsrc user-pw=...`` / ``proxy-pw=...`` properties.
_SECRET_PARAM = re.compile(r"([?&;](?:password|passwd|pass|pwd|secret|token|key|apikey|api_key|auth)=|"
                           r"\b(?:user-pw|proxy-pw)=)(?:\"[^\"]*\"|[^&;#\s\"']*)", re.IGNORECASE)


def redact_uri(text: str) -> str:
    """``rtsp://admin:S3cret@cam/...`` -> ``rtsp://***@cam/...`` (also inside a GStreamer pipeline, and when the
    password holds a raw ``/`` or ``@``: everything up to the last ``@`` goes); ``?password=...`` ->
    ``?password=***``."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub("://***@", str(text)))


def jetson_csi_pipeline(sensor_id=0, width=640, height=480, fps=30, flip=0) -> str:
    """A GStreamer pipeline for a Jetson CSI camera (use as ``gst:<pipeline>``)."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={fps}/1 ! nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! videoconvert ! "
            "video/x-raw, format=BGR ! appsink drop=true max-buffers=1")


class LatestFrameGrabber:
    """Reads a live source on its own thread and hands over only the newest frame (no growing lag).

    A source that fails is closed and reopened after ``initial`` seconds, doubling up to ``maximum``; each
    failure and recovery is logged. ``latest(timeout)`` returns the newest unseen frame or None.
    """

    def __init__(self, source: FrameSource, initial: float = 1.0, maximum: float = 30.0,
                 on_state: Optional[Callable[[str], None]] = None):
        self.source, self.initial, self.maximum = source, initial, maximum
        self.on_state = on_state or (lambda s: None)
        self._cond = threading.Condition()
        self._frame: Optional[Frame] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.failures = 0
        self.connected = False

    def start(self) -> "LatestFrameGrabber":
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        delay = self.initial
        while not self._stop.is_set():
            try:
                self.source.open()
                if self.failures:
                    log.warning("camera %s reopened", self.source.name)
                self.connected = True
                self.on_state("connected")
                delay = self.initial
                while not self._stop.is_set():
                    frame = self.source.read()
                    if frame is None:
                        raise CameraError(f"camera {self.source.name} ended")
                    with self._cond:
                        self._frame = frame
                        self._cond.notify_all()
            except CameraError as exc:
                self.failures += 1
                self.connected = False
                self.on_state("disconnected")
                log.error("%s; door stays locked; retrying in %.1fs", exc, delay)
                try:
                    self.source.close()
                except Exception:
                    pass
                self._stop.wait(delay)
                delay = min(delay * 2, self.maximum)
        self.source.close()

    def latest(self, timeout: float = 1.0) -> Optional[Frame]:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def stop(self):
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
