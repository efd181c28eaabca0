"""Shared fixtures. Real data only: sample photos fetched from the face_recognition sdist on PyPI into the cache,
the BlazeFace model fetched by `make models`, the shipped model in models/. Tests that need what is absent skip
and say why."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DETECTOR = ROOT / "models" / "face_detection_short_range.tflite"
SHIPPED = Path(os.environ.get("DOORFACE_TEST_MODEL", ROOT / "models" / "doorface-int8.tflite"))
PORT = ROOT / "models" / "doorface-dlib-int8.tflite"
SHARED = ROOT.parent / "shared" / "data" / "lfw"


@pytest.fixture(scope="session")
def samples():
    from edge.vision.assets import fetch_samples

    try:
        return fetch_samples()
    except Exception as exc:  # offline without a cache
        pytest.skip(f"sample photos unavailable (face_recognition==1.3.0 sdist not fetchable): {exc}")


@pytest.fixture(scope="session")
def detector_path():
    if not DETECTOR.is_file():
        pytest.skip(f"{DETECTOR} missing: run `make models`")
    return DETECTOR


@pytest.fixture(scope="session")
def shipped_model():
    if not SHIPPED.is_file():
        pytest.skip(f"shipped model {SHIPPED} missing")
    return SHIPPED


@pytest.fixture(scope="session")
def port_model():
    if not PORT.is_file():
        pytest.skip(f"shipped dlib port {PORT} missing")
    return PORT


@pytest.fixture(scope="session", params=["small", "port"])
def each_model(request):
    """Each shipped embedder: the small model and the dlib ResNet port (the default)."""
    path = SHIPPED if request.param == "small" else PORT
    if not path.is_file():
        pytest.skip(f"shipped model {path} missing")
    return path


@pytest.fixture(scope="session")
def lfw():
    if not (SHARED / "lfw-deepfunneled-train.tgz").is_file():
        pytest.skip(f"LFW subset not found at {SHARED} (../shared/data/lfw beside the repo)")
    return SHARED


def rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture
def config_for(tmp_path, shipped_model, detector_path):
    """A validated config using the shipped model, the mock relay and a fresh state dir."""
    from edge import config

    empty = tmp_path / "empty.toml"
    empty.write_text("")

    def make(**over):
        o = {"model.embedder": str(shipped_model), "model.detector": str(detector_path),
             "state.dir": str(tmp_path / "state"), "relay.backend": "mock"}
        o.update({k.replace("__", "."): v for k, v in over.items()})
        return config.load(str(empty), o)   # never /etc/doorface on a test machine
    return make


@pytest.fixture
def model_copy(tmp_path, shipped_model):
    """The shipped model and its sidecar copied to tmp (safe to tamper with)."""
    return copy_with_sidecar(shipped_model, tmp_path / "m")


def copy_with_sidecar(model: Path, dst: Path) -> Path:
    """``model`` and its ``.json`` sidecar copied into the folder ``dst`` (made); the copy's path."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in (model, model.with_suffix(".json")):
        shutil.copy(f, dst / f.name)
    return dst / model.name


@pytest.fixture(scope="session")
def capture(samples, detector_path):
    """``capture(name, seed=0)``: a door-camera frame (RGB) of a sample photo, re-rendered with a new rotation,
    scale, exposure, noise and JPEG compression (edge.door.democlip.door_capture): the enrolled person seen again."""
    from edge.door.democlip import door_capture
    from edge.vision.detector import BlazeFaceDetector

    det = BlazeFaceDetector(detector_path)
    return lambda name, seed=0: door_capture(samples, name, det, seed)


def write_rgb(path, img) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return str(path)


def door_config(tmp_path, model, detector, extra: str = "") -> list:
    """``["--config", path]`` of a door config in ``tmp_path``: ``model`` and ``detector``, a mock relay, the state in
    ``tmp_path/state``, then ``extra`` TOML."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\nembedder = "{model}"\ndetector = "{detector}"\n'
                   f'[relay]\nbackend = "mock"\n[state]\ndir = "{tmp_path / "state"}"\n{extra}')
    return ["--config", str(cfg)]
