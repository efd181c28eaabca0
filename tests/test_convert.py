"""The converter end to end on a small untrained model: float32 + int8 with sidecars, and the parity gate."""
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A tiny embedder trained for a few steps on the toy faces below, so its embeddings differ between
    identities (an untrained network maps every input to nearly the same direction, which would make the
    cosine parity check meaningless)."""
    import train.model as tm
    from edge.vision.align import resize_crop
    from train.bnrecal import recalibrate_bn
    from train.losses import batch_hard_triplet as batch_hard

    d = tmp_path_factory.mktemp("model")
    tf.keras.utils.set_random_seed(0)
    m = tm.build_embedder(32, width=0.25, stages=((32, 2, 1, 2), (48, 2, 1, 2)), head_ch=64, input_size=64)
    data = np.load(face_cache(d / "train.npz"))
    x = tf.constant(np.stack([resize_crop(c, 64) for c in data["crops"]]).astype(np.float32))
    y = tf.constant(np.unique(data["persons"], return_inverse=True)[1])
    opt = tf.keras.optimizers.Adam(3e-3)
    for _ in range(40):
        with tf.GradientTape() as tape:
            loss = batch_hard(m(x, training=True), y, 0.2)
        opt.apply_gradients(zip(tape.gradient(loss, m.trainable_variables), m.trainable_variables))
    recalibrate_bn(m, x.numpy(), batches=4, batch_size=48)   # inference statistics, as train/ does
    path = d / "model.keras"
    m.save(path)
    return path


def face_cache(path, n_id=12, per=4, seed=0, constant=None):
    """An alignment cache of textured 112x112 'faces' (identity = base pattern + noise)."""
    rng = np.random.default_rng(seed)
    crops, persons, keys = [], [], []
    for i in range(n_id):
        base = rng.integers(0, 255, (8, 8, 3)).astype(np.float32)
        for j in range(per):
            img = np.kron(base, np.ones((14, 14, 1))) + rng.normal(0, 12, (112, 112, 3))
            if constant is not None:
                img = np.full((112, 112, 3), constant, np.float32)
            crops.append(np.clip(img, 0, 255).astype(np.uint8))
            persons.append(f"P{i:02d}")
            keys.append(f"P{i:02d}/P{i:02d}_{j + 1:04d}.jpg")
    np.savez(path, crops=np.array(crops), persons=np.array(persons), keys=np.array(keys))
    return path


def test_converts_int8_with_parity_and_sidecars(small_model, tmp_path):
    from convert.cli import main
    from edge.vision.embedder import Embedder
    from edge.vision.sidecar import read_sidecar

    cache = face_cache(tmp_path / "cache.npz")
    out = tmp_path / "out"
    # With 12 toy identities one genuine pair is 8 points of TAR, so the TAR gate is loosened here; the
    # embedding-cosine gate (the substantive parity check) stays on, and the next test shows the gate failing.
    assert main([str(small_model), "--out", str(out), "--quant", "int8", "--eval-cache", str(cache),
                 "--calib-count", "12", "--parity-faces", "20", "--min-cos", "0.95",
                 "--max-tar-drop", "50"]) == 0
    for q in ("float32", "int8"):
        meta = read_sidecar(out / f"doorface-{q}.tflite")
        assert meta["quantization"] == q and meta["embedding_dim"] == 32 and meta["metric"] == "cosine"
        assert set(meta["thresholds"]) == {"far_1e-2", "far_1e-3", "far_1e-4", "far_1e-5"}
        assert meta["input"]["shape"] == [1, 64, 64, 3] and meta["input"]["color_order"] == "RGB"
    meta = read_sidecar(out / "doorface-int8.tflite")
    assert meta["input"]["dtype"] == "uint8" and meta["output"]["dtype"] == "int8"
    assert meta["output"]["quantization"]["scale"] > 0
    parity = json.loads((out / "doorface-parity.json").read_text())
    assert parity["gate"]["passed"] and parity["variants"]["int8"]["cosine_to_keras_mean"] >= 0.95
    # Full integer: no float ops left between the quantize/dequantize ends.
    ops = parity["variants"]["int8"]["ops"]
    assert "CONV_2D" in ops and "DEPTHWISE_CONV_2D" in ops
    assert "SHAPE" not in ops                               # the mirror split is static (train.model.flip_averaged)
    # The edge loads it and agrees with Keras (the exported function: the face plus its mirror image).
    from train.model import flip_averaged

    assert meta["flip_average"] is True
    keras = flip_averaged(tf.keras.models.load_model(small_model, compile=False))
    crop = np.ascontiguousarray(np.load(cache)["crops"][0][24:88, 24:88])
    e_int8 = Embedder(out / "doorface-int8.tflite").embed_crop(crop)
    e_keras = keras(crop[None].astype(np.float32)).numpy()[0]
    assert float(e_int8 @ e_keras) > 0.9


def test_parity_gate_fails_on_a_broken_calibration(small_model, tmp_path, capsys):
    from convert.cli import main

    cache = face_cache(tmp_path / "cache.npz")
    broken = face_cache(tmp_path / "black.npz", constant=0)   # calibrated on black frames only
    out = tmp_path / "out"
    code = main([str(small_model), "--out", str(out), "--quant", "int8", "--eval-cache", str(cache),
                 "--calib", str(broken), "--calib-count", "12", "--parity-faces", "20",
                 "--max-tar-drop", "100"])                  # fail on the embedding cosine alone
    assert code == 1
    err = capsys.readouterr().err
    assert "parity gate failed" in err and "mean cosine to Keras" in err
    assert not list(out.glob("*.tflite"))                  # nothing half-written is left behind
    parity = json.loads((out / "doorface-parity.json").read_text())
    assert not parity["gate"]["passed"]


def test_unknown_quantisation_is_refused(small_model):
    from convert.tflite import convert

    with pytest.raises(ValueError):
        convert(tf.keras.models.load_model(small_model, compile=False), "int4")
