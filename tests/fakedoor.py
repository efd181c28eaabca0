"""A door built from the shipped fakes (FakeDetector, FakeEmbedder, FakeSource, the mock relay): the real daemon, no
model file, for the fault tests (test_lockout.py, test_storage_faults.py)."""
from __future__ import annotations

import threading
import time

import numpy as np

from edge import config


def face(seed: int) -> np.ndarray:
    """A textured 'face' picture: the fake embedder tells pictures apart by their content."""
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(40, 220, (12, 16, 3)).astype(np.uint8), (320, 240),
                      interpolation=cv2.INTER_CUBIC)


ANN, STRANGER, EMPTY = face(1), face(2), np.zeros((240, 320, 3), np.uint8)


def fake_config(state, **over) -> dict:
    """The packaged defaults with a mock relay, no socket, ``state`` as the state dir, then ``over`` ("a.b": v); keys
    this version of the config does not know are left out (so a test runs, and fails for its own reason, on the code
    before a key existed)."""
    d = config.defaults()
    over = {k: v for k, v in over.items() if k.split(".")[1] in d[k.split(".")[0]]}
    return config.load(None, {"state.dir": str(state), "relay.backend": "mock", "relay.unlock_seconds": 0.3,
                              "events.socket": "off", **over})


def enroll_ann(tmp_path, state, analyzer) -> None:
    import cv2

    from edge.people.enroll import enroll_images
    from edge.people.gallery import FILENAME, Gallery

    photo = tmp_path / "ann.png"
    cv2.imwrite(str(photo), ANN)
    with Gallery(state / FILENAME).open(create=True) as g:
        enroll_images("ann", [photo], analyzer, g, threshold=0.8, say=lambda s: None)


def analyzer():
    from edge.vision.analyzer import FaceAnalyzer
    from edge.vision.detector import FakeDetector
    from edge.vision.embedder import FakeEmbedder
    from edge.vision.quality import QualityConfig

    loose = QualityConfig(min_eye_distance=0, min_sharpness=0, max_yaw=2, max_roll=90, min_brightness=0,
                          max_brightness=255)
    return FaceAnalyzer(FakeDetector(), FakeEmbedder(), loose)


def fake_door(tmp_path, source_fn, events_out=None, **over):
    """``(daemon, relay)``: ann enrolled in ``tmp_path/state``; ``source_fn(holder) -> FrameSource``, where
    ``holder["d"]`` is the daemon once built (a source may look at its decisions)."""
    from edge.build import daemon
    from edge.door.relay import make_relay

    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    cfg = fake_config(state, **over)
    an = analyzer()
    enroll_ann(tmp_path, state, an)
    relay = make_relay("mock", "17", True)
    holder = {}
    d = daemon(cfg, analyzer=an, source=source_fn(holder), relay=relay, install_signals=False,
               events_out=events_out)
    holder["d"] = d
    return d, relay


def run_until(d, done, timeout: float) -> dict:
    """Run the daemon on a thread until ``done()`` or ``timeout``, then stop it; ``{"rc", "error", "alive"}``
    (``alive``: the loop was still running when stopped)."""
    out = {"rc": None, "error": None}

    def target():
        try:
            out["rc"] = d.run()
        except BaseException as exc:   # the test reports it
            out["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done() and th.is_alive():
        time.sleep(0.02)
    out["alive"] = th.is_alive()
    d.stop()
    th.join(10)
    assert not th.is_alive(), "the daemon did not stop"
    return out


def kinds(d) -> list:
    return [e["decision"] for e in d.decisions]


#: ``python SCRIPT STATE``: the fake door as a process (signals installed), ann in front of a live camera; with
#: DOORFACE_MOCK_RELAY_FILE set the mock relay mirrors its level there. Cooldown 3 s, pulses 2.5 s.
DOOR_SCRIPT = '''
import logging, sys
sys.path.insert(0, sys.argv[2])
import fakedoor
from edge.build import daemon
from edge.door.camera import FakeSource
from edge.door.relay import make_relay
from pathlib import Path
logging.basicConfig(level=logging.INFO, format="%(relativeCreated)d %(levelname)s %(message)s")
state = Path(sys.argv[1])
state.mkdir(exist_ok=True)
cfg = fakedoor.fake_config(state, **{"relay.unlock_seconds": 2.5, "decision.cooldown_seconds": 3.0})
an = fakedoor.analyzer()
fakedoor.enroll_ann(state.parent, state, an)
d = daemon(cfg, analyzer=an, source=FakeSource(fn=lambda i: fakedoor.ANN, live=True, fps=10),
           relay=make_relay("mock", "17", True))
sys.exit(d.run())
'''
