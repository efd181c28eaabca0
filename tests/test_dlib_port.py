"""The dlib ResNet port: the .dat reader on good and bad files, and the parity gate against dlib itself."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from convert.dlib import DlibFormatError, Reader, network_spec, read_dat


def _dat_paths():
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models is not installed (the .dat ships in it)")
    base = Path(list(spec.submodule_search_locations)[0]) / "models"
    return base / "dlib_face_recognition_resnet_model_v1.dat", base / "shape_predictor_5_face_landmarks.dat"


@pytest.fixture(scope="module")
def dat():
    return _dat_paths()[0]


@pytest.fixture(scope="module")
def net(dat):
    return read_dat(dat)


def test_reader_primitives():
    # 300 = 0x012c: control byte 2 (bytes), little-endian; -5: 0x81 0x05; float 0.75 = 3 * 2^-2; "ab"; '1'.
    data = bytes([0x02, 0x2C, 0x01, 0x81, 0x05, 0x01, 0x03, 0x81, 0x02, 0x01, 0x02]) + b"ab" + b"1"
    r = Reader(data)
    assert r.int() == 300 and r.int() == -5 and r.float() == 0.75 and r.string() == "ab" and r.bool() is True
    with pytest.raises(DlibFormatError, match="truncated"):
        r.int()


def test_spec_is_dlibs_network():
    kinds = [n.kind for n in network_spec()]
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert counts == {"con": 29, "affine": 29, "relu": 29, "add_prev": 14, "max_pool": 1, "avg_pool": 5, "fc": 1,
                      "tag": 18, "skip": 4}
    assert len(kinds) == 130


def test_reads_the_real_file(net):
    assert net.parameters == 5_614_592
    assert net.counts()["con"] == 29 and net.counts()["fc"] == 1
    np.testing.assert_allclose(net.means, (122.782, 117.001, 104.298), atol=1e-3)
    convs = [l for l in net.layers if l.kind == "con"]
    assert convs[0].weights.shape == (7, 7, 3, 32) and all(np.abs(c.bias).max() > 0 for c in convs)
    assert net.layers[-1].weights.shape == (256, 128)


def test_truncated_file_is_a_clear_error(dat, tmp_path):
    bad = tmp_path / "cut.dat"
    bad.write_bytes(dat.read_bytes()[:len(dat.read_bytes()) // 2])
    with pytest.raises(DlibFormatError, match="truncated"):
        read_dat(bad)


def test_another_network_is_a_clear_error():
    _, shape5 = _dat_paths()
    with pytest.raises(DlibFormatError, match="expected"):
        read_dat(shape5)


def test_another_version_is_a_clear_error(dat, tmp_path):
    data = bytearray(dat.read_bytes())
    assert data[:2] == b"\x01\x01"           # add_loss_layer, version 1
    data[1] = 7
    bad = tmp_path / "v7.dat"
    bad.write_bytes(bytes(data))
    with pytest.raises(DlibFormatError, match="version 1.*found version 7"):
        read_dat(bad)
    data = bytearray(dat.read_bytes())
    i = data.index(b"con_4")
    data[i:i + 5] = b"con_9"
    bad.write_bytes(bytes(data))
    with pytest.raises(DlibFormatError, match="'con_9'"):
        read_dat(bad)


def test_trailing_bytes_are_refused(dat, tmp_path):
    bad = tmp_path / "long.dat"
    bad.write_bytes(dat.read_bytes() + b"\x00")
    with pytest.raises(DlibFormatError, match="unexpected bytes"):
        read_dat(bad)


def test_cli_bad_file_is_one_line_and_writes_nothing(tmp_path, capsys):
    from convert.dlib import main

    bad = tmp_path / "x.dat"
    bad.write_bytes(b"\x01\x01\x05hello")
    out = tmp_path / "m.keras"
    assert main(["--dat", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("convert.dlib: x.dat: expected") and "\n" not in err
    assert not out.exists()


def test_parity_gate_against_dlib(net, lfw):
    """The Keras port and dlib's own compute_face_descriptor on the same 200+ chips: cosine >= 0.99999."""
    pytest.importorskip("dlib", reason="dlib (dlib-bin) is not installed: the parity gate needs it")
    import cv2

    from convert.dlib import build_keras, dlib_chips, parity
    from train.data import iter_images

    images = []
    for _, data in iter_images(lfw / "lfw-deepfunneled-train.tgz"):
        images.append(cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
        if len(images) == 230:
            break
    chips, descs = dlib_chips(images)
    assert len(chips) >= 200
    p = parity(build_keras(net), chips, descs)
    print(f"parity on {p['chips']} chips: cosine min {p['cosine_min']:.8f}, max |diff| {p['max_abs_diff']:.2e}")
    assert p["cosine_min"] >= 0.99999
    assert p["max_abs_diff"] < 1e-4
