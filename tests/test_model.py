import json

import numpy as np
import pytest

from edge.embedder import Embedder
from edge.errors import ModelError, RuntimeNotFound
from edge.runtime import interpreter_class
from edge.sidecar import read_sidecar, threshold_for, write_sidecar


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


def test_embeddings_are_unit_length_and_separate_people(shipped_model, samples, capture, detector_path):
    """At the model's own operating points: a new door capture of an enrolled photo passes the FAR 1e-4
    threshold, and the stranger stays below the FAR 1e-3 threshold against every photo of obama."""
    from conftest import rgb
    from edge.detector import BlazeFaceDetector

    det = BlazeFaceDetector(detector_path)
    emb = Embedder(shipped_model).load()
    vecs = {}
    images = {n: rgb(samples / n) for n in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")}
    images["again"] = capture("obama.jpg", 1)
    for name, img in images.items():
        vecs[name] = emb.embed_crop(emb.crop(img, det.detect(img)[0].landmarks))
        assert np.linalg.norm(vecs[name]) == pytest.approx(1.0, abs=1e-4)
    assert vecs["again"] @ vecs["obama.jpg"] > threshold_for(emb.meta, "1e-4")
    stranger = max(vecs[o] @ vecs["biden.jpg"] for o in ("obama.jpg", "obama2.jpg", "obama3.jpg", "again"))
    assert stranger < threshold_for(emb.meta, "1e-3")


def test_runtime_preference_and_unknown_name():
    name, cls = interpreter_class()
    assert name in ("ai_edge_litert", "tflite_runtime", "tensorflow")
    with pytest.raises(RuntimeNotFound):
        interpreter_class(["tvm"])


@pytest.mark.parametrize("backend", ["ai_edge_litert", "tflite_runtime"])
def test_shipped_model_gives_the_same_embeddings_in_each_runtime(shipped_model, backend):
    """Runtime compatibility: the converted model loads in ai-edge-litert and tflite-runtime 2.14 (Pi OS
    Bookworm) and agrees with tf.lite (cosine >= 0.99: the int8 output has a 1/128 step, and kernels of different
    runtime versions may round an element one step apart, which costs up to about 0.005 of cosine)."""
    try:
        interpreter_class([backend])
    except RuntimeNotFound:
        pytest.skip(f"{backend} not installed here")
    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    ref = Embedder(shipped_model, 1, ["tensorflow"]).load()
    other = Embedder(shipped_model, 1, [backend]).load()
    assert other.backend == backend
    crops = rng.integers(0, 255, (8, ref.input_size, ref.input_size, 3), dtype=np.uint8)
    a, b = ref.embed_crops(crops), other.embed_crops(crops)
    assert np.min(np.sum(a * b, axis=1)) >= 0.99
