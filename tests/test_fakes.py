"""The fakes shipped beside the real detector and embedder: enroll and the daemon end to end with no model file."""
import numpy as np

from edge import config
from edge.door.camera import FakeSource
from edge.build import daemon as Daemon
from edge.vision.detector import FakeDetector
from edge.vision.embedder import FakeEmbedder
from edge.people.enroll import enroll_images
from edge.people.gallery import FILENAME, Gallery
from edge.vision.analyzer import FaceAnalyzer
from edge.vision.quality import QualityConfig
from edge.door.relay import make_relay


def person(seed, shape=(240, 320)):
    """A textured 'face' picture: the fake embedder tells pictures apart by their content."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, (12, 16, 3)).astype(np.uint8)
    import cv2

    return cv2.resize(small, shape[::-1], interpolation=cv2.INTER_CUBIC)


def test_enroll_and_door_with_fakes_only(tmp_path):
    import cv2

    empty = tmp_path / "e.toml"
    empty.write_text("")
    cfg = config.load(str(empty), {"state.dir": str(tmp_path / "state"), "relay.backend": "mock",
                                   "relay.unlock_seconds": 0.3})
    loose = QualityConfig(min_eye_distance=0, min_sharpness=0, max_yaw=2, max_roll=90, min_brightness=0,
                          max_brightness=255)
    analyzer = FaceAnalyzer(FakeDetector(), FakeEmbedder(), loose)
    ann, eve = person(1), person(2)
    photo = tmp_path / "ann.png"
    cv2.imwrite(str(photo), cv2.cvtColor(ann, cv2.COLOR_RGB2BGR))
    with Gallery(tmp_path / "state" / FILENAME).open(create=True) as g:
        assert enroll_images("ann", [photo], analyzer, g, threshold=0.8) == 1
    frames = [eve] * 8 + [np.zeros_like(ann)] * 20 + [ann] * 6          # a stranger, nobody, then ann
    relay = make_relay("mock", "17", True)
    d = Daemon(cfg, cfg["state"]["dir"], source=FakeSource(frames, fps=10), relay=relay, analyzer=analyzer,
               install_signals=False)
    assert d.run() == 0
    kinds = [(e["decision"], e["identity"]) for e in d.decisions]
    assert kinds == [("deny", None), ("grant", "ann")]
    assert any(on for _, on in relay.timeline()) and not relay.is_unlocked
