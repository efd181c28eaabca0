"""Per-door liveness calibration: the threshold from this door's live frames, bounded so that no calibration makes
the door looser than the model's own threshold (a calibration on attack frames included), nor stricter than the
ceiling; stored in the state dir, bound to the model, used by the door and shown by the commands."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge import config
from edge.build import calibrate_liveness
from edge.vision import livecal
from edge.vision.liveness import FakeLiveness


def test_threshold_is_the_target_quantile_of_live_scores_in_log_odds():
    live = [0.999, 0.9995, 0.9998, 0.9999, 0.99995, 0.99999, 0.999995, 0.999999, 0.9999995, 0.9999999]
    th = livecal.threshold_from(live, 0.10, floor=0.5, ceiling=0.9999999)
    below = np.mean(np.asarray(live) < th)
    assert 0.0 < below <= 0.2 and 0.999 < th < 0.9998


def test_a_calibration_on_attack_frames_cannot_go_below_the_floor():
    attacks = list(np.random.default_rng(0).uniform(0.0, 0.3, 50))   # a print held up at the camera
    assert livecal.threshold_from(attacks, 0.10, floor=0.5) == 0.5
    assert livecal.threshold_from(attacks, 0.10, floor=0.0, ceiling=1.0) < 0.3   # what the floor prevents


def test_too_few_frames_keep_the_model_threshold_and_the_ceiling_bounds_it():
    assert livecal.threshold_from([0.99999] * (livecal.MIN_FRAMES - 1), 0.1, floor=0.5) == 0.5
    assert livecal.threshold_from([0.9999999] * 20, 0.1, floor=0.5) == livecal.CEILING


def test_stored_bound_to_the_model_and_checked_when_read(tmp_path):
    cal = livecal.Calibration("sha-a")
    assert cal.add([0.99, 0.98, float("nan"), 1.5, 0.97], "test") == 3
    livecal.save(tmp_path, cal)
    assert oct(livecal.path(tmp_path).stat().st_mode & 0o777) == "0o600"
    assert livecal.load(tmp_path, "sha-a").scores == [0.99, 0.98, 0.97]
    assert livecal.load(tmp_path, "sha-b") is None            # another model: ignored
    d = json.loads(livecal.path(tmp_path).read_text())
    d["scores"] = [0.1, 7.0]
    livecal.path(tmp_path).write_text(json.dumps(d))
    with pytest.raises(livecal.CalibrationError, match="outside"):
        livecal.load(tmp_path, "sha-a")
    livecal.path(tmp_path).write_text("{not json")
    with pytest.raises(livecal.CalibrationError, match="unreadable.*liveness reset"):
        livecal.load(tmp_path, "sha-a")


def test_the_door_uses_its_calibration_and_says_where_the_threshold_comes_from(tmp_path):
    cfg = config.load(None, {"state.dir": str(tmp_path)})
    lv = FakeLiveness(threshold=0.5)
    assert "the model's" in calibrate_liveness(cfg, tmp_path, lv) and lv.threshold == 0.5
    cal = livecal.Calibration(lv.sha256)
    cal.add(list(np.linspace(0.995, 0.9999, 20)), "test")
    livecal.save(tmp_path, cal)
    line = calibrate_liveness(cfg, tmp_path, lv)
    assert line.startswith("calibrated at this door") and 0.995 < lv.threshold < 0.9999
    assert lv.threshold_source == "door calibration"
    off = config.load(None, {"state.dir": str(tmp_path), "liveness.calibration": "off"})
    assert "liveness.calibration = off" in calibrate_liveness(off, tmp_path, lv) and lv.threshold == 0.5
    fixed = config.load(None, {"state.dir": str(tmp_path), "liveness.threshold": 0.7})
    lv7 = FakeLiveness(threshold=0.7)
    assert "from the config" in calibrate_liveness(fixed, tmp_path, lv7) and lv7.threshold == 0.7
    livecal.path(tmp_path).write_text("garbage")
    assert "unreadable" in calibrate_liveness(cfg, tmp_path, lv) and lv.threshold == 0.5   # never a crash loop


def test_cli_calibrate_show_reset_with_the_shipped_model(tmp_path, samples, detector_path, capsys):
    """Through the real liveness model: photos of a live face (the sample photos), then show and reset."""
    from edge import cli

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\ndetector = "{detector_path}"\n[state]\ndir = "{tmp_path / "state"}"\n')
    photos = [str(samples / n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")]
    assert cli.main(["liveness", "calibrate", "--images", *photos, "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "4 live frame(s) of this door added" in out and "the model's" in out      # 4 < MIN_FRAMES: not yet calibrated
    assert cli.main(["liveness", "calibrate", "--images", *photos, "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "calibrated at this door: live when score >=" in out
    assert cli.main(["liveness", "show", "--config", str(cfg)]) == 0
    assert "8 live frames" in capsys.readouterr().out
    assert cli.main(["liveness", "reset", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "removed" in out and "not calibrated at this door" in out


def test_enroll_at_the_camera_gives_the_door_its_live_frames(tmp_path):
    """The frames `enroll --camera` uses are this door's live faces: their scores go into its calibration."""
    from edge.cli.people import add_live_frames
    from edge.door.camera import FakeSource
    from edge.people.enroll import enroll_camera
    from edge.people.gallery import FILENAME, Gallery
    from edge.vision.analyzer import FaceAnalyzer
    from edge.vision.detector import FakeDetector
    from edge.vision.embedder import FakeEmbedder
    from edge.vision.quality import QualityConfig

    rng = np.random.default_rng(3)
    frames = [rng.integers(40, 220, (240, 320, 3), dtype=np.uint8) for _ in range(8)]
    lv = FakeLiveness(lambda rgb, f: 0.999, threshold=0.5)
    loose = QualityConfig(min_eye_distance=0, min_sharpness=0, max_yaw=2, max_roll=90, min_brightness=0,
                          max_brightness=255)
    analyzer = FaceAnalyzer(FakeDetector(), FakeEmbedder(), loose, liveness=lv)
    scores = []
    with Gallery(tmp_path / FILENAME).open(create=True) as g:
        enroll_camera("ann", FakeSource(frames), analyzer, g, 0.8, count=5, say=lambda s: None, live_scores=scores)
    assert len(scores) >= 5 and set(scores) == {0.999}
    cfg = config.load(None, {"state.dir": str(tmp_path)})
    line = add_live_frames(cfg, lv, scores, "enroll --camera ann")
    assert "calibrated at this door" in line and lv.threshold > 0.5
    assert livecal.load(tmp_path, lv.sha256).sources[-1].startswith("enroll --camera ann")
