import json

import numpy as np
import pytest

from edge.vision.embedder import Embedder
from edge.errors import ModelError, RuntimeNotFound
from edge.vision.runtime import interpreter_class
from edge.vision.sidecar import read_sidecar, threshold_for, write_sidecar


def test_sidecar_round_trip(tmp_path):
    m = tmp_path / "x.tflite"
    m.write_bytes(b"not really a model")
    write_sidecar(m, {"input": {"shape": [1, 96, 96, 3]}, "output": {}, "metric": "cosine",
                      "thresholds": {"far_1e-3": 0.4}})
    meta = read_sidecar(m)
    assert meta["model_file"] == "x.tflite" and len(meta["sha256"]) == 64
    assert threshold_for(meta, "1e-3") == 0.4
    with pytest.raises(ModelError, match="1e-4"):
        threshold_for(meta, "1e-4")


def test_sha256_mismatch_is_refused(model_copy):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match"):
        Embedder(model_copy).load()


def test_missing_sidecar_is_refused(model_copy):
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="sidecar missing"):
        Embedder(model_copy).load()


def test_unknown_format_is_refused(model_copy):
    side = model_copy.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["format_version"] = 99
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="unsupported format"):
        Embedder(model_copy).load()


def test_embeddings_are_unit_length_and_separate_people(each_model, samples, capture, detector_path):
    """At the model's own operating points: a new door capture of an enrolled photo passes the threshold the model
    recommends for the door, and the stranger stays below the FAR 1e-3 threshold against every photo of obama."""
    from conftest import rgb
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.sidecar import model_decision

    det = BlazeFaceDetector(detector_path)
    emb = Embedder(each_model).load()
    vecs = {}
    images = {n: rgb(samples / n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")}
    images["again"] = capture("obama.jpg", 1)
    for name, img in images.items():
        vecs[name] = emb.embed_crop(emb.crop(img, det.detect(img)[0]))
        assert np.linalg.norm(vecs[name]) == pytest.approx(1.0, abs=1e-4)
    assert vecs["again"] @ vecs["obama.jpg"] > threshold_for(emb.meta, model_decision(emb.meta)["far_target"])
    stranger = max(vecs[o] @ vecs["biden.jpg"] for o in ("obama.jpg", "obama2.jpg", "obama3.jpg", "again"))
    assert stranger < threshold_for(emb.meta, "1e-3")


def test_runtime_preference_and_unknown_name():
    name, cls = interpreter_class()
    assert name in ("ai_edge_litert", "tflite_runtime", "tensorflow")
    with pytest.raises(RuntimeNotFound):
        interpreter_class(["tvm"])


@pytest.mark.parametrize("backend", ["ai_edge_litert", "tflite_runtime"])
def test_shipped_model_gives_the_same_embeddings_in_each_runtime(each_model, backend):
    """Runtime compatibility: the converted model loads in ai-edge-litert and tflite-runtime 2.14 (Pi OS
    Bookworm) and agrees with tf.lite (cosine >= 0.99: the int8 output has a 1/128 step, and kernels of different
    runtime versions may round an element one step apart, which costs up to about 0.005 of cosine)."""
    try:
        interpreter_class([backend])
    except RuntimeNotFound:
        pytest.skip(f"{backend} not installed here")
    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    ref = Embedder(each_model, 1, ["tensorflow"]).load()
    other = Embedder(each_model, 1, [backend]).load()
    assert other.backend == backend
    crops = rng.integers(0, 255, (8, ref.input_size, ref.input_size, 3), dtype=np.uint8)
    a, b = ref.embed_crops(crops), other.embed_crops(crops)
    assert np.min(np.sum(a * b, axis=1)) >= 0.99


def test_port_sidecar_names_its_source_alignment_and_operating_point(port_model):
    from edge.vision.landmarks import ShapePredictor

    meta = read_sidecar(port_model)
    src = meta["source"]
    assert src["file"] == "dlib_face_recognition_resnet_model_v1.dat" and src["package"] == "face_recognition_models"
    assert src["version"] == "0.3.0" and "public domain" in src["licence"] and len(src["sha256"]) == 64
    assert meta["input"]["template"] == "dlib-chip" and meta["input"]["shape"] == [1, 150, 150, 3]
    lm = meta["input"]["landmarks"]
    assert lm["file"] == "doorface-landmarks5.npz" and lm["sha256"] == ShapePredictor.load(port_model.parent / lm["file"]).meta["sha256"]
    assert meta["quantization"] == "int8" and port_model.stat().st_size <= 6 * 1024 * 1024
    d = meta["decision"]
    assert d["far_target"] in ("1e-3", "1e-4", "1e-5") and 0 < d["min_margin"] < 0.1
    assert f"far_{d['far_target']}" in meta["thresholds"]


def test_port_recognises_a_photo_years_apart(port_model, samples, detector_path):
    """What the small model cannot (models/README.md): obama3.jpg, taken years apart, matches obama.jpg at the
    port's default operating point, and biden.jpg matches neither."""
    from conftest import rgb
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.sidecar import operating_point

    det = BlazeFaceDetector(detector_path)
    emb = Embedder(port_model).load()
    v = {}
    for n in ("obama.jpg", "obama3.jpg", "biden.jpg"):
        img = rgb(samples / n)
        v[n] = emb.embed_crop(emb.crop(img, det.detect(img)[0]))
    thr, _, _ = operating_point(emb.meta, {"threshold": "model", "far_target": "model", "min_margin": "model"})
    assert v["obama.jpg"] @ v["obama3.jpg"] >= thr
    assert max(v["biden.jpg"] @ v[n] for n in ("obama.jpg", "obama3.jpg")) < thr


def test_operating_point_from_sidecar_and_config():
    from edge.errors import ConfigError
    from edge.vision.sidecar import operating_point

    meta = {"thresholds": {"far_1e-2": 0.5, "far_1e-3": 0.6, "far_1e-4": 0.7, "far_1e-5": 0.8},
            "decision": {"far_target": "1e-5", "min_margin": 0.03}}
    model = {"threshold": "model", "far_target": "model", "min_margin": "model"}
    assert operating_point(meta, model) == (0.8, 0.03, "1e-5")
    assert operating_point(meta, {**model, "far_target": "1e-3"}) == (0.6, 0.03, "1e-3")
    assert operating_point(meta, {**model, "threshold": 0.65, "min_margin": 0.0}) == (0.65, 0.0, None)
    # A sidecar without a decision (the small model before it had one) keeps its measured defaults.
    legacy = {"thresholds": meta["thresholds"]}
    assert operating_point(legacy, model) == (0.7, 0.05, "1e-4")
    # Looser than the model's own FAR 1e-2 threshold: refused, naming the floor.
    with pytest.raises(ConfigError, match="looser than this model's FAR 1e-2 threshold"):
        operating_point(meta, {**model, "threshold": 0.1})
    with pytest.raises(ModelError, match="no threshold at FAR 1e-5"):
        operating_point({"thresholds": {"far_1e-2": 0.5}}, {**model, "far_target": "1e-5"})


def test_device_path_imports_neither_tensorflow_nor_dlib(port_model):
    """Every edge module, and an embedding with the default port, without TensorFlow or dlib (a Pi has neither)."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (
        "import importlib, pkgutil, sys, numpy as np\n"
        "import edge\n"
        "for m in (m for m in pkgutil.iter_modules(edge.__path__) if m.name != '__main__'):\n"
        "    importlib.import_module('edge.' + m.name)\n"
        "from edge.vision.embedder import Embedder\n"
        f"e = Embedder({str(port_model)!r}, 1, ['ai_edge_litert', 'tflite_runtime']).load()\n"
        "e.embed_crop(np.zeros((150, 150, 3), np.uint8))\n"
        "print(sorted(m for m in ('tensorflow', 'dlib', 'face_recognition', 'torch') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_edited_sidecar_thresholds_are_refused(model_copy):
    """The tester's attack: only the sidecar's thresholds set to -1 (the model file untouched)."""
    side = model_copy.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["thresholds"] = {k: -1.0 for k in meta["thresholds"]}
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="edited after conversion"):
        Embedder(model_copy).load()
    # Even with the content digest recomputed, a threshold outside (0, 1) or out of order is refused.
    from edge.vision.sidecar import content_digest

    meta["content_sha256"] = content_digest(meta)
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not a cosine in"):
        Embedder(model_copy).load()
    meta["thresholds"] = {"far_1e-2": 0.8, "far_1e-3": 0.7}
    meta["content_sha256"] = content_digest(meta)
    side.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="stricter"):
        Embedder(model_copy).load()


def test_tampered_detector_is_refused(tmp_path, detector_path):
    from edge.vision.detector import BlazeFaceDetector

    bad = tmp_path / "det.tflite"
    data = bytearray(detector_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="is not the expected"):
        BlazeFaceDetector(bad).load()
    assert BlazeFaceDetector(detector_path).load() is not None
