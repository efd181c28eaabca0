import numpy as np
import pytest

from conftest import rgb
from edge.vision.align import TEMPLATE_4, align_face, model_input, similarity_transform
from edge.vision.detector import BlazeFaceDetector, ssd_anchors


def test_anchor_layout():
    a = ssd_anchors()
    assert a.shape == (896, 2) and a.min() > 0 and a.max() < 1


def test_similarity_transform_recovers_a_known_one():
    ang, s, t = np.radians(20), 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    src = np.random.default_rng(0).uniform(0, 100, (4, 2))
    dst = src @ (s * rot).T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], s * rot, atol=1e-4) and np.allclose(m[:, 2], t, atol=1e-3)


def test_detects_one_face_with_ordered_landmarks(samples, detector_path):
    det = BlazeFaceDetector(detector_path)
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        faces = det.detect(rgb(samples / name))
        assert len(faces) == 1, name
        f = faces[0]
        le, re, nose, mouth = f.landmarks
        assert le[0] < re[0]                                   # image-left eye first
        assert nose[1] > max(le[1], re[1]) and mouth[1] > nose[1]
        x0, y0, x1, y1 = f.box
        assert x0 < nose[0] < x1 and y0 < nose[1] < y1


def test_no_face_in_a_blank_image(detector_path):
    assert BlazeFaceDetector(detector_path).detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_alignment_puts_landmarks_on_the_template(samples, detector_path):
    det = BlazeFaceDetector(detector_path)
    img = rgb(samples / "obama.jpg")
    crop = align_face(img, det.detect(img)[0].landmarks)
    assert crop.shape == (112, 112, 3)
    again = det.detect(crop)
    if not again:
        pytest.skip("the detector does not re-detect a tight 112 crop")
    assert np.abs(again[0].landmarks - TEMPLATE_4).max() < 8   # pixels
    assert model_input(img, det.detect(img)[0].landmarks, 96).shape == (96, 96, 3)


def test_missing_model_is_a_clear_error(tmp_path):
    from edge.errors import ModelError

    with pytest.raises(ModelError, match="make models"):
        BlazeFaceDetector(tmp_path / "none.tflite").detect(np.zeros((10, 10, 3), np.uint8))
