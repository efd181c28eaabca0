"""The compiled shape-predictor loop (edge/vision/_ert.c via edge.vision.ertnative) against the numpy port: the same
landmarks to the bit, on the sample photos, on boxes partly or wholly outside the image, tiny and huge ones, RGB and
grey; the fallback to numpy; the door's crop the same either way. The numpy port itself is checked against dlib in
tests/test_landmarks.py, so equality here carries that parity over."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from edge.vision import ertnative
from edge.vision.landmarks import ShapePredictor, fitted_box

LANDMARKS = ROOT / "models" / "doorface-landmarks5.npz"


@pytest.fixture(scope="module")
def arrays():
    if not LANDMARKS.is_file():
        pytest.skip(f"{LANDMARKS} missing: run `make convert-landmarks`")
    with np.load(LANDMARKS) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def lib():
    lib = ertnative.library()
    if lib is None:
        pytest.skip("the compiled landmark loop is not built here (no C compiler at install): numpy runs")
    return lib


@pytest.fixture(scope="module")
def photos(samples):
    from edge.vision.images import read_rgb

    return [read_rgb(samples / n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")]


def test_the_install_builds_the_loop_where_there_is_a_compiler():
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine: the install leaves the numpy loop, which is allowed")
    assert ertnative.library() is not None, \
        "a C compiler is here but edge/vision/_ert*.so is not built: re-run the install (pip install -e .)"


def test_compiled_and_numpy_give_the_same_landmarks(arrays, lib, photos, detector_path):
    from edge.vision.detector import BlazeFaceDetector

    fast, slow = ShapePredictor(arrays, {}, lib), ShapePredictor(arrays, {})
    assert (fast.backend, slow.backend) == ("compiled", "numpy")
    det = BlazeFaceDetector(detector_path).load()
    fit = ShapePredictor.load(LANDMARKS, native=False).meta["box_fit"]
    rng = np.random.default_rng(7)
    cases = []
    for rgb in photos:
        h, w = rgb.shape[:2]
        cases += [(rgb, fitted_box(f.box, f.landmarks, fit)) for f in det.detect(rgb)]
        for _ in range(40):          # anywhere: partly and wholly outside, tiny, larger than the image
            x, y, s = rng.uniform(-0.5 * w, w), rng.uniform(-0.5 * h, h), rng.uniform(3, 1.5 * max(h, w))
            cases.append((rgb, (x, y, x + s, y + s * rng.uniform(0.7, 1.3))))
    assert len(cases) >= 164
    for rgb, box in cases:
        grey = (rgb.astype(np.uint32).sum(2) // 3).astype(np.uint8)
        for img in (rgb, grey):
            a, b = fast.predict(img, box), slow.predict(img, box)
            assert np.array_equal(a, b), (box, a, b)


def test_the_crop_is_the_same_with_either_loop(lib, photos, port_model, detector_path, monkeypatch):
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder

    det = BlazeFaceDetector(detector_path).load()
    fast = Embedder(port_model).load()
    monkeypatch.setenv("DOORFACE_LANDMARKS", "numpy")
    monkeypatch.setattr(ertnative, "_cache", {})
    slow = Embedder(port_model).load()
    assert fast.shape_predictor.backend == "compiled" and slow.shape_predictor.backend == "numpy"
    for rgb in photos:
        face = det.detect(rgb)[0]
        assert np.array_equal(fast.crop(rgb, face), slow.crop(rgb, face))


def test_the_environment_can_keep_numpy(monkeypatch, arrays):
    monkeypatch.setenv("DOORFACE_LANDMARKS", "numpy")
    monkeypatch.setattr(ertnative, "_cache", {})
    assert ertnative.library() is None
    assert ShapePredictor.load(LANDMARKS).backend == "numpy"


def test_a_library_of_another_abi_or_none_is_not_used(tmp_path, monkeypatch, lib):
    # another ABI: a library whose ert_abi() answers something else
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build a stand-in library")
    src = tmp_path / "other.c"
    src.write_text("int ert_abi(void) { return 999; }\n")
    so = tmp_path / "_ert.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    assert ertnative._bind(so) is None
    # nothing built in a folder: no candidate exists, and the loader says None rather than failing
    assert not any(p.exists() for p in ertnative.candidates(tmp_path / "empty"))
    monkeypatch.setattr(ertnative, "candidates", lambda folder=None: [tmp_path / "missing.so", so])
    monkeypatch.setattr(ertnative, "_cache", {})
    assert ertnative.library() is None


def test_importing_loads_nothing():
    """Nothing happens at import: the library is looked for on first use, not when edge.vision.landmarks loads."""
    code = ("import sys, edge.vision.landmarks as m, edge.vision.ertnative as n; "
            "print('lib' in n._cache)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_a_model_too_large_for_the_compiled_loop_runs_in_numpy(arrays, lib):
    assert ertnative.supports(800, 5) and not ertnative.supports(40000, 5) and not ertnative.supports(800, 33)
    big = dict(arrays)
    reps = 41                                   # 41 x 800 features > 32767: int16 indices would overflow
    big["anchors"] = np.tile(arrays["anchors"], (1, reps))
    big["deltas"] = np.tile(arrays["deltas"], (1, reps, 1))
    sp = ShapePredictor(big, {}, lib)
    assert sp.backend == "numpy"
    with pytest.raises(ValueError):
        ertnative.NativeTrees(lib, arrays["initial_shape"], np.zeros(5), np.zeros(5), big["anchors"], big["deltas"],
                              arrays["split_idx"], np.zeros(arrays["split_thresh"].shape, np.int16), arrays["leaves"])
