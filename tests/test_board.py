"""Boards (issue 30): `model.threads = "auto"`, the 32-bit ARM refusal, and `doorface bench`'s paste-able block."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from edge import config
from edge.errors import ConfigError
from edge.vision import board


def test_threads_auto_is_the_default_and_means_the_cores(monkeypatch):
    assert config.defaults()["model"]["threads"] == "auto"
    assert config.load(None, {"model.threads": "auto"})["model"]["threads"] == "auto"
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert config.threads("auto") == 4
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert config.threads("auto") == 8          # the range's top
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: {0})
    assert config.threads("auto") == 1
    assert config.threads(3) == 3


@pytest.mark.parametrize("value", [1, 8, 4.0])
def test_threads_numbers_stay_numbers(value):
    cfg = config.load(None, {"model.threads": value})
    assert cfg["model"]["threads"] == int(value) and isinstance(cfg["model"]["threads"], int)


@pytest.mark.parametrize("value, message", [
    (0, r"model.threads = 0 is out of range \[1, 8\]"),
    (9, r"model.threads = 9 is out of range \[1, 8\]"),
    (2.5, r'model.threads must be "auto" or a whole number, not 2.5'),
    ("fast", r"model.threads must be \"auto\" or a whole number, not 'fast'"),
    ("4", r"model.threads must be \"auto\" or a whole number, not '4'"),
    (True, r'model.threads must be "auto" or a whole number, not True'),
])
def test_threads_bad_values_are_one_line(value, message):
    with pytest.raises(ConfigError, match=message):
        config.load(None, {"model.threads": value})


def test_threads_auto_from_a_file(tmp_path):
    f = tmp_path / "d.toml"
    f.write_text('[model]\nthreads = "auto"\n')
    assert config.load(str(f))["model"]["threads"] == "auto"
    f.write_text('[model]\nthreads = "all"\n')
    with pytest.raises(ConfigError, match="model.threads"):
        config.load(str(f))


@pytest.mark.parametrize("machine, bits", [("armv7l", 32), ("armv6l", 32), ("aarch64", 32), ("armv8l", 32)])
def test_32bit_arm_is_refused_with_one_line(machine, bits):
    line = board.unsupported(machine, bits)
    assert line is not None and "\n" not in line
    assert line.startswith("doorface: 32-bit ARM") and "64-bit Raspberry Pi OS" in line and machine in line


@pytest.mark.parametrize("machine", ["aarch64", "x86_64", "arm64"])
def test_64bit_boards_are_supported(machine):
    assert board.unsupported(machine, 64) is None


def test_the_install_check_runs_with_the_system_python_and_passes_here():
    r = subprocess.run([sys.executable, "-m", "edge.vision.board", "supported"], capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    r = subprocess.run([sys.executable, "-m", "edge.vision.board"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_board_model_name_from_device_tree_then_cpuinfo(tmp_path):
    dt = tmp_path / "model"
    dt.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert board.model_name(str(dt), "/nonexistent") == "Raspberry Pi 5 Model B Rev 1.0"
    ci = tmp_path / "cpuinfo"
    ci.write_text("processor\t: 0\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
    assert board.model_name(str(tmp_path / "none"), str(ci)) == "Raspberry Pi 4 Model B Rev 1.4"
    ci.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n")
    assert board.model_name(str(tmp_path / "none"), str(ci)) == "AMD EPYC 7B13"


def test_doorface_bench_prints_a_pasteable_block(tmp_path, capsys, samples, detector_path, port_model):
    from edge.cli import main
    from edge.config import threads

    root = detector_path.parent
    cfg = tmp_path / "door.toml"
    cfg.write_text(f'[model]\nembedder = "{port_model}"\ndetector = "{detector_path}"\n'
                   f'[liveness]\nmodel = "{root / "doorface-liveness.tflite"}"\n')
    rc = main(["bench", "--iterations", "2", "--image", str(samples / "obama.jpg"), "--config", str(cfg),
               "--state-dir", str(tmp_path / "state")])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0] == "### doorface bench"
    assert re.match(r"- board: .+ \(\w+, \d+ cores\), .+", lines[2])
    assert re.match(r"- python 3\.\d+\.\d+, numpy \d+\.\d+\.\d+, opencv [\d.]+, (ai_edge_litert|tflite_runtime|"
                    r"tensorflow) [\d.]+", lines[3])
    assert "doorface-dlib-int8.tflite" in lines[4] and "median of 2 runs" in lines[4]
    auto = threads("auto")
    cols = ["1 thread"] + ([f"{auto} threads (auto)"] if auto > 1 else [])
    if auto == 1:
        cols = ["1 thread (auto)"]
    assert lines[6] == "| stage | " + " | ".join(cols) + " |"
    assert lines[7] == "|---" * (len(cols) + 1) + "|"
    rows = lines[8:]
    assert [r.split(" | ")[0].lstrip("| ").split(" (")[0] for r in rows] == ["detector", "alignment", "embedding", "liveness",
                                                                               "whole frame, one face"]
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")][1:]
        assert len(cells) == len(cols)
        for c in cells:
            assert float(c.split()[0]) > 0
    assert re.search(r"\(\d+\.\d fps\)", rows[-1])


def test_doorface_bench_refuses_a_photo_without_a_face(tmp_path, capsys, detector_path, port_model):
    import cv2
    import numpy as np

    from edge.cli import main

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 128, np.uint8))
    cfg = tmp_path / "door.toml"
    cfg.write_text(f'[model]\nembedder = "{port_model}"\ndetector = "{detector_path}"\n'
                   f'[liveness]\nmodel = "{detector_path.parent / "doorface-liveness.tflite"}"\n')
    rc = main(["bench", "--iterations", "1", "--image", str(blank), "--config", str(cfg)])
    assert rc == 1
    assert capsys.readouterr().err.strip() == "doorface: bench: no face found in the bench frame"


def test_an_embedder_whose_runtime_gives_every_input_one_embedding_is_refused(monkeypatch, port_model):
    """ai-edge-litert 2.3.0 under qemu's "max" aarch64 CPU gave every face the same embedding (`make pi-check`):
    the load-time self-test refuses such a runtime, so the door cannot let anyone in as anyone."""
    import numpy as np

    from edge.errors import ModelError
    from edge.vision import embedder as E

    real = E.load_interpreter

    class Collapsed:     # a real interpreter whose output is the same whatever the input
        def __init__(self, it):
            self.it = it

        def __getattr__(self, name):
            return getattr(self.it, name)

        def get_tensor(self, index):
            return np.full_like(self.it.get_tensor(index), 7)

    def load(*a, **k):
        backend, it = real(*a, **k)
        return backend, Collapsed(it)

    monkeypatch.setattr(E, "load_interpreter", load)
    emb = E.Embedder(str(port_model), 1)
    with pytest.raises(ModelError, match=r"self-test failed on this CPU and runtime .*cosine 1\.00000.*door stays "
                                         r"locked"):
        emb.load()
    assert emb._interp is None
    with pytest.raises(ModelError, match="self-test failed"):     # and again: never half-loaded
        emb.embed_crop(np.zeros((150, 150, 3), np.uint8))
    monkeypatch.setattr(E, "load_interpreter", real)
    assert E.Embedder(str(port_model), 1).load().dim == 128        # the real runtime passes


def test_the_self_test_inputs_separate_the_shipped_models(each_model):
    import numpy as np

    from edge.vision.embedder import SELF_TEST_MAX_COSINE, Embedder, self_test_crops

    emb = Embedder(str(each_model), 1).load()
    a, b = (emb.embed_crop(c) for c in self_test_crops(emb.input_size))
    assert float(np.dot(a, b)) < SELF_TEST_MAX_COSINE - 0.05       # room left for runtime-to-runtime differences
