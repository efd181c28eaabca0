"""dlib's 5-point landmarks and face chip without dlib (edge.vision.landmarks, edge.vision.chip): parity with dlib
on the sample photos, the box map, the chip's geometry and pixels, the model's sidecar hash and the converter's gate.
Tests that need dlib, the sample photos or the converted model skip and say why."""
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, copy_with_sidecar
from edge.errors import ModelError
from edge.vision.chip import chip_details, chip_transform, face_chip, pyramid_down
from edge.vision.landmarks import ShapePredictor, hog_box

LANDMARKS = ROOT / "models" / "doorface-landmarks5.npz"


@pytest.fixture(scope="module")
def landmarks_model():
    if not LANDMARKS.is_file():
        pytest.skip(f"{LANDMARKS} missing: run `make convert-landmarks`")
    return LANDMARKS


@pytest.fixture(scope="module")
def port(landmarks_model):
    """The numpy loop (the compiled one is checked against it to the bit in tests/test_landmarks_native.py)."""
    return ShapePredictor.load(landmarks_model, native=False)


@pytest.fixture(scope="module")
def dlib_ref():
    pytest.importorskip("dlib", reason="dlib (the dlib-bin package) is not installed: no reference to compare with")
    try:
        from convert.dlib import dlib_model_paths
        from convert.landmarks import DlibRef

        return DlibRef(dlib_model_paths()["shape5"])
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"dlib's shape predictor unavailable (face_recognition_models 0.3.0 ships it): {exc}")


@pytest.fixture(scope="module")
def sample_faces(samples, dlib_ref):
    """``[(name, rgb, hog_box, dlib_points)]`` for every face dlib's HOG detector finds in the sample photos."""
    from edge.vision.images import read_rgb

    out = []
    for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"):
        rgb = read_rgb(samples / name)
        for box in dlib_ref.boxes(rgb):
            out.append((name, rgb, box, dlib_ref.shape(rgb, box)))
    assert len(out) == 4
    return out


# -- landmarks -----------------------------------------------------------------------------------------------------

def test_landmarks_match_dlib_on_the_sample_photos(port, sample_faces):
    for name, rgb, box, want in sample_faces:
        got = port.predict(rgb, box)
        assert got.shape == (5, 2) and got.dtype == np.float64
        assert np.abs(got - want).max() <= 0.5, name                          # dlib rounds to whole pixels
        assert (port.predict(rgb, box, rounded=True) == want).all(), name     # ... and so rounded they are dlib's


def test_grey_input_is_dlibs_grey_of_rgb(port, sample_faces, dlib_ref):
    name, rgb, box, want = sample_faces[0]
    grey = (rgb.astype(np.uint32).sum(2) // 3).astype(np.uint8)               # dlib's rgb_pixel intensity
    assert (port.predict(grey, box, rounded=True) == want).all()
    assert (dlib_ref.shape(grey, box) == want).all()


def test_a_box_partly_outside_the_image_reads_zeros_like_dlib(port, sample_faces, dlib_ref):
    name, rgb, (l, t, r, b), _ = sample_faces[0]
    img = np.ascontiguousarray(rgb[:, l + 60:])                             # the face's left 60 px cut off
    box = (-60, t, r - l - 60, b)
    assert (port.predict(img, box, rounded=True) == dlib_ref.shape(img, box)).all()


def test_bad_input_is_refused(port):
    with pytest.raises(ValueError, match="uint8"):
        port.predict(np.zeros((50, 50, 3), np.float32), (0, 0, 40, 40))
    with pytest.raises(ValueError, match="finite"):
        port.predict(np.zeros((50, 50), np.uint8), (0, 0, float("nan"), 40))


def test_predict_is_vectorised(port, sample_faces):
    _, rgb, box, _ = sample_faces[0]
    port.predict(rgb, box)
    t0 = time.perf_counter()
    for _ in range(20):
        port.predict(rgb, box)
    ms = (time.perf_counter() - t0) / 20 * 1000
    assert ms < 10, f"{ms:.1f} ms per face (about 1 ms when vectorised)"   # loose: shared CI machines


# -- the box map ----------------------------------------------------------------------------------------------------

def test_hog_box_applies_the_map():
    m = {"dx": 0.1, "dy": -0.05, "sw": 1.2, "sh": 0.9}
    # BlazeFace (100, 100, 200, 220): centre (150, 160), 100 x 120 -> centre (160, 154), 120 x 108.
    assert hog_box((100, 100, 200, 220), m) == pytest.approx((100, 100, 220, 208))
    assert hog_box((100, 100, 200, 220), {"dx": 0, "dy": 0, "sw": 1, "sh": 1}) == pytest.approx((100, 100, 200, 220))


def test_the_shipped_box_map_is_the_sidecars(port, landmarks_model, sample_faces):
    meta = json.loads(landmarks_model.with_suffix(".json").read_text())
    m = meta["box_map"]
    assert port.box_map == m and set(m) == {"dx", "dy", "sw", "sh"}
    assert 0.8 < m["sw"] < 1.25 and 0.8 < m["sh"] < 1.25 and abs(m["dx"]) < 0.2 and abs(m["dy"]) < 0.2
    box = (100.0, 100.0, 200.0, 220.0)
    w, h = 100.0, 120.0
    cx, cy = 150 + m["dx"] * w, 160 + m["dy"] * h
    want = (cx - w * m["sw"] / 2, cy - h * m["sh"] / 2, cx + w * m["sw"] / 2, cy + h * m["sh"] / 2)
    assert hog_box(box, m) == pytest.approx(want)
    _, rgb, _, _ = sample_faces[0]
    assert (port.predict_blazeface(rgb, box) == port.predict(rgb, hog_box(box, m))).all()
    assert meta["box_map_error"]["mapped"]["mean_per_interocular"] < 0.05


def test_fitted_box_reads_the_keypoints(port, landmarks_model, sample_faces):
    """The fitted start box: 9 features (BlazeFace's 4 keypoints around its box centre, in box widths, and 1) times
    the sidecar's 9 x 4 map give (dx, dy, sw, sh), read as the median map is; a face turned or tilted moves it."""
    from edge.vision.faces import Face
    from edge.vision.landmarks import box_features, fitted_box

    kp = np.array([[130, 140], [170, 140], [150, 165], [150, 190]], np.float64)
    f = box_features((100, 100, 200, 220), kp)
    assert f.shape == (9,) and f[-1] == 1 and f[:2] == pytest.approx([-0.2, -0.2])
    only_bias = np.zeros((9, 4))
    only_bias[8] = (0.1, -0.05, 1.2, 0.9)                     # the median map, written as a fit
    assert fitted_box((100, 100, 200, 220), kp, only_bias) == pytest.approx((100, 100, 220, 208))
    meta = json.loads(landmarks_model.with_suffix(".json").read_text())
    fit = np.asarray(meta["box_fit"])
    assert fit.shape == (9, 4) and port.meta["box_fit"] == meta["box_fit"]
    assert fitted_box((100, 100, 200, 220), kp, fit) != fitted_box((100, 100, 200, 220), kp + (8, 0), fit)
    err = meta["box_map_error"]
    assert err["fitted"]["mean_per_interocular"] < err["mapped"]["mean_per_interocular"] < 0.05
    assert "folds 1,2 left out" in meta["box_fit_fit"]["data"]
    _, rgb, _, _ = sample_faces[0]
    face = Face((100.0, 100.0, 200.0, 220.0), kp.astype(np.float32), 0.9)
    assert (port.predict_face(rgb, face) == port.predict(rgb, fitted_box(face.box, kp, fit))).all()


def test_the_ports_crop_is_dlibs_chip_from_the_landmark_model(port, port_model, samples, detector_path):
    """The default model's sidecar names dlib's alignment: its crop is dlib's chip around the 5 points the landmark
    model places, started from the fitted box of BlazeFace's face."""
    from conftest import rgb
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder

    emb = Embedder(port_model).load()
    assert emb.template == "dlib-chip" and emb.shape_predictor is not None
    img = rgb(samples / "obama.jpg")
    face = BlazeFaceDetector(detector_path).detect(img)[0]
    want = face_chip(img, port.predict_face(img, face), 150, 0.25, exact=False)
    assert (emb.crop(img, face) == want).all() and want.shape == (150, 150, 3)


def test_the_embedder_refuses_a_landmark_model_it_was_not_measured_with(tmp_path, port_model, landmarks_model):
    from edge.vision.embedder import Embedder
    from edge.vision.sidecar import read_sidecar, write_sidecar

    model = copy_with_sidecar(port_model, tmp_path)
    with pytest.raises(ModelError, match="landmark model not found"):      # the landmark model is not beside it
        Embedder(model).load()
    copy_with_sidecar(landmarks_model, tmp_path)
    assert Embedder(model).load().shape_predictor is not None
    meta = read_sidecar(model)
    write_sidecar(model, {**meta, "input": {**meta["input"], "landmarks": {**meta["input"]["landmarks"],
                                                                           "sha256": "0" * 64}}})
    with pytest.raises(ModelError, match="another landmark model"):
        Embedder(model).load()
    write_sidecar(model, {**meta, "input": {k: v for k, v in meta["input"].items() if k != "landmarks"}})
    with pytest.raises(ModelError, match="needs input.landmarks"):
        Embedder(model).load()


# -- the chip -------------------------------------------------------------------------------------------------------

def _dlib_shape(dlib_ref, points, box=(0, 0, 100, 100)):
    d = dlib_ref.dlib
    return d.full_object_detection(d.rectangle(*box), [d.point(int(x), int(y)) for x, y in points])


def test_chip_geometry_matches_dlib(sample_faces, dlib_ref):
    base = np.array(sample_faces[0][3])
    c = base.mean(0)
    shapes = [f[3] for f in sample_faces]
    for deg, s in ((30, 1.0), (-75, 0.4), (170, 2.5)):                     # turned, shrunk, upside down
        a = math.radians(deg)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        shapes.append(np.round((base - c) @ rot.T * s + c + (500, 500)))
    for pts in shapes:
        for size, padding in ((150, 0.25), (200, 0.2)):
            want = dlib_ref.dlib.get_face_chip_details(_dlib_shape(dlib_ref, pts), size, padding)
            got = chip_details(pts, size, padding)
            r = want.rect
            assert got.rect == pytest.approx((r.left(), r.top(), r.right(), r.bottom()), abs=1e-6)
            assert got.angle == pytest.approx(want.angle, abs=1e-9)
            assert (got.rows, got.cols) == (want.rows, want.cols) == (size, size)


def test_chip_transform_maps_the_chip_square():
    pts = np.array([[160.0, 90], [140, 92], [90, 90], [110, 92], [125, 130]])
    d = chip_details(pts)
    m = chip_transform(pts)
    l, t, r, b = d.rect
    cx, cy = (l + r) / 2, (t + b) / 2
    ca, sa = math.cos(d.angle), math.sin(d.angle)
    tl = (ca * (l - cx) - sa * (t - cy) + cx, sa * (l - cx) + ca * (t - cy) + cy)
    br = (ca * (r - cx) - sa * (b - cy) + cx, sa * (r - cx) + ca * (b - cy) + cy)
    assert m @ (*tl, 1) == pytest.approx((0, 0), abs=1e-9)
    assert m @ (*br, 1) == pytest.approx((149, 149), abs=1e-9)


def test_pyramid_down_is_dlibs(dlib_ref):
    rng = np.random.default_rng(0)
    pyr = dlib_ref.dlib.pyramid_down(2)
    for shape in ((37, 41, 3), (100, 77, 3), (64, 64), (9, 9, 3), (8, 20, 3)):
        img = rng.integers(0, 256, shape).astype(np.uint8)
        assert (pyramid_down(img) == np.asarray(pyr(img))).all()


def test_face_chip_matches_dlibs_and_embeds_the_same(sample_faces, dlib_ref, port_model):
    from edge.vision.embedder import Embedder

    emb = Embedder(str(port_model), num_threads=2).load()
    assert emb.input_size == 150
    for name, rgb, box, pts in sample_faces:
        shape = dlib_ref.sp(rgb, dlib_ref.dlib.rectangle(*box))
        want = np.asarray(dlib_ref.dlib.get_face_chip(rgb, shape, size=150, padding=0.25))
        got = face_chip(rgb, pts)
        assert got.shape == want.shape == (150, 150, 3) and got.dtype == np.uint8
        assert (got == want).mean() > 0.999, name                            # dlib's to the bit, bar float ties
        cos = float(emb.embed_crop(got) @ emb.embed_crop(want))
        assert cos >= 0.999, (name, cos)
        quick = face_chip(rgb, pts, exact=False)                             # cv2.warpAffine's 1/32-pixel grid
        assert np.abs(quick.astype(np.int16) - want.astype(np.int16)).mean() < 0.2, name


def test_a_chip_off_the_image_edge_is_black_like_dlibs(sample_faces, dlib_ref):
    name, rgb, box, pts = sample_faces[1]
    cut = np.ascontiguousarray(rgb[:, int(pts[:, 0].min()) - 10:])        # the face's left side is off the image
    pts2 = pts - (int(pts[:, 0].min()) - 10, 0)
    want = np.asarray(dlib_ref.dlib.get_face_chip(cut, _dlib_shape(dlib_ref, pts2), size=150, padding=0.25))
    got = face_chip(cut, pts2)
    assert (want == 0).all(2).sum() > 500
    assert (got == want).mean() > 0.999


# -- the model file -------------------------------------------------------------------------------------------------

def test_a_tampered_model_is_refused_in_one_line(tmp_path, landmarks_model):
    m = copy_with_sidecar(landmarks_model, tmp_path / "lm")
    assert ShapePredictor.load(m).stages == 15
    m.write_bytes(m.read_bytes() + b"x")
    with pytest.raises(ModelError, match="does not match its sidecar") as e:
        ShapePredictor.load(m)
    assert len(str(e.value).splitlines()) == 1


def test_an_edited_or_missing_sidecar_is_refused(tmp_path, landmarks_model):
    m = copy_with_sidecar(landmarks_model, tmp_path / "lm")
    side = m.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["box_map"]["dx"] += 0.1
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="edited after conversion"):
        ShapePredictor.load(m)
    side.unlink()
    with pytest.raises(ModelError, match="sidecar missing"):
        ShapePredictor.load(m)
    with pytest.raises(ModelError, match="not found"):
        ShapePredictor.load(tmp_path / "nothing.npz")


def test_arrays_of_the_wrong_shape_are_refused(landmarks_model):
    with np.load(landmarks_model) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["leaves"] = arrays["leaves"][:, :, :8]
    with pytest.raises(ModelError, match="inconsistent array shapes"):
        ShapePredictor(arrays)


# -- the converter --------------------------------------------------------------------------------------------------

def test_the_shipped_arrays_are_the_dat_file(landmarks_model, dlib_ref):
    from convert.dlib import dlib_model_paths
    from convert.landmarks import DAT_SHA256, read_dat
    from edge.vision.assets import sha256_file

    dat = dlib_model_paths()["shape5"]
    meta = json.loads(landmarks_model.with_suffix(".json").read_text())
    assert meta["source"]["sha256"] == sha256_file(dat) == DAT_SHA256
    arrays = read_dat(dat)
    with np.load(landmarks_model) as z:
        assert sorted(z.files) == sorted(arrays)
        for k in arrays:
            assert z[k].dtype == arrays[k].dtype and (z[k] == arrays[k]).all(), k


def test_the_reader_refuses_other_files(tmp_path, dlib_ref):
    from convert.dlib import DlibFormatError, dlib_model_paths
    from convert.landmarks import read_dat

    paths = dlib_model_paths()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(Path(paths["shape5"]).read_bytes()[:20000])
    with pytest.raises(DlibFormatError, match="truncated"):
        read_dat(cut)
    with pytest.raises(DlibFormatError):
        read_dat(paths["resnet"])                                         # a network, not a shape predictor


def test_the_converter_writes_nothing_when_parity_fails(tmp_path, monkeypatch, capsys, landmarks_model,
                                                        sample_faces):
    import convert.landmarks as C

    with np.load(landmarks_model) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["leaves"] = arrays["leaves"] * np.float32(1.05)                    # a wrong port
    monkeypatch.setattr(C, "check_source", lambda dat, allow: "0" * 64)
    monkeypatch.setattr(C, "read_dat", lambda dat: arrays)
    monkeypatch.setattr(C, "sample_images", lambda: [(n, rgb) for n, rgb, _, _ in sample_faces])
    monkeypatch.setattr(C, "lfw_pass", lambda *a, **k: {"parity": [], "fit": [], "eval": [], "parity_images": 0})
    monkeypatch.setattr(C, "MIN_PARITY_FACES", 4)                             # the four sample faces suffice here
    out = tmp_path / "out"
    lfw = tmp_path / "lfw.tgz"
    lfw.write_bytes(b"")
    rc = C.main(["--out", str(out), "--lfw", str(lfw), "--detector", str(tmp_path / "none.tflite")])
    assert rc == 1
    assert "PARITY GATE FAILED" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
