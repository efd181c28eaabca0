"""Face embeddings with the TFLite model named in config, fed as its sidecar says."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from edge.vision.align import DEFAULT_TEMPLATE, get_template, model_input
from edge.vision.chip import CHIP_PADDING, face_chip
from edge.vision.faces import Face
from edge.errors import ModelError
from edge.vision.runtime import load_interpreter
from edge.vision.sidecar import read_sidecar


#: dlib's own alignment: the 5-point landmark model + dlib's face chip (see :class:`Embedder`).
CHIP_TEMPLATE = "dlib-chip"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


#: The load-time self-test: the embeddings of a fixed noise crop and a fixed grey ramp must differ at least this much
#: (cosine below it). The shipped models give 0.911 (the port) and 0.192 (the small model) on every runtime that
#: computes them correctly; a runtime that computes them wrongly on a CPU (ai-edge-litert 2.3.0 under qemu's default
#: "max" aarch64 CPU: every input, every face, gets one embedding, 0.99994; `make pi-check`) would let anyone in as
#: anyone enrolled. Such a model is refused, so the door stays locked.
SELF_TEST_MAX_COSINE = 0.99


def self_test_crops(size: int):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    ramp = np.tile(np.linspace(0, 255, size, dtype=np.float32)[None, :, None], (size, 1, 3)).astype(np.uint8)
    return noise, ramp


class Embedder:
    """Raw aligned RGB crops in, L2-normalised float32 embeddings out. Loads the model on first use.

    The sidecar is verified (sha256) before the interpreter is created; it names the alignment template the model
    was made for (``input.template``; models from before templates were named are ``arcface112``). The template
    ``dlib-chip`` is dlib's own alignment: the 5-point landmark model the sidecar names (``input.landmarks``: its
    file beside the model and its sha256, both checked) places dlib's 5 points, and the crop is dlib's face chip
    (:mod:`edge.vision.chip`, sampled with OpenCV). Other templates align BlazeFace's 4 keypoints.
    """

    def __init__(self, model_path: str, num_threads: int = 2, runtime: Optional[list] = None, verify: bool = True,
                 template: Optional[str] = None):
        self.model_path = str(model_path)
        self.verify = verify  # False only for the converter, which runs models before their sidecar exists
        self.num_threads = int(num_threads)
        self.runtime = runtime
        self.template = template
        self.shape_predictor = None
        self.meta = None
        self.backend = None
        self._interp = None

    def load(self) -> "Embedder":
        if self._interp is None:
            if self.verify:
                self.meta = read_sidecar(self.model_path)
            else:
                from edge.vision.assets import sha256_file

                self.meta = {"sha256": sha256_file(self.model_path)}
            self.backend, self._interp = load_interpreter(self.model_path, self.num_threads, self.runtime)
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
            shape = tuple(int(v) for v in self._in["shape"])
            if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2]:
                raise ModelError(f"{self.model_path}: unexpected input shape {shape}")
            self.input_size = shape[1]
            self.dim = int(self._out["shape"][-1])
            if self.template is None:
                self.template = self.meta.get("input", {}).get("template", DEFAULT_TEMPLATE)
            self._load_alignment()
            if self.verify:        # the converter (verify False) runs models before its own parity gate judges them
                self._self_test()
        return self

    def _load_alignment(self) -> None:
        """Check the template; for ``dlib-chip``, load the landmark model the sidecar names and check its sha256."""
        if self.template != CHIP_TEMPLATE:
            try:
                get_template(self.template)
            except ValueError as exc:
                raise ModelError(f"{self.model_path}: {exc}") from None
            return
        from edge.vision.landmarks import ShapePredictor

        ref = self.meta.get("input", {}).get("landmarks") or {}
        if not ref.get("file") or not ref.get("sha256"):
            raise ModelError(f"{self.model_path}: template {CHIP_TEMPLATE} needs input.landmarks (file, sha256) in "
                             "its sidecar")
        path = Path(self.model_path).parent / Path(ref["file"]).name
        predictor = ShapePredictor.load(path, verify=self.verify)
        if self.verify and predictor.meta.get("sha256") != ref["sha256"]:
            raise ModelError(f"{path}: another landmark model than the one {Path(self.model_path).name} was "
                             f"measured with (sha256 {str(predictor.meta.get('sha256'))[:12]}..., expected "
                             f"{ref['sha256'][:12]}...)")
        self.shape_predictor = predictor

    def _self_test(self) -> None:
        """Refuse a runtime that gives two very different inputs the same embedding (:data:`SELF_TEST_MAX_COSINE`)."""
        try:
            a, b = (self.embed_crop(c) for c in self_test_crops(self.input_size))
        except BaseException:
            self._interp = None
            raise
        cos = float(np.dot(a, b))
        if not cos < SELF_TEST_MAX_COSINE:      # also NaN
            self._interp = None
            raise ModelError(f"{self.model_path}: self-test failed on this CPU and runtime ({self.backend}): a noise "
                             f"image and a grey ramp get the same embedding (cosine {cos:.5f}), so every face would; "
                             "refusing the model (the door stays locked)")

    @property
    def sha256(self) -> str:
        return self.load().meta["sha256"]

    def _quantise_input(self, crop: np.ndarray) -> np.ndarray:
        dtype = self._in["dtype"]
        if dtype == np.float32:
            return crop.astype(np.float32)[None]
        scale, zero = self._in["quantization"]
        if scale == 0:
            raise ModelError(f"{self.model_path}: quantised input without scale")
        q = np.round(crop.astype(np.float32) / scale + zero)
        info = np.iinfo(dtype)
        return np.clip(q, info.min, info.max).astype(dtype)[None]

    def _dequantise_output(self, y: np.ndarray) -> np.ndarray:
        if self._out["dtype"] == np.float32:
            return y.astype(np.float32)
        scale, zero = self._out["quantization"]
        return (y.astype(np.float32) - zero) * scale

    def embed_crop(self, crop: np.ndarray) -> np.ndarray:
        """Embedding of one aligned RGB uint8 crop already at the model's input size."""
        if self._interp is None:
            self.load()
        if crop.shape[:2] != (self.input_size, self.input_size):
            raise ValueError(f"crop is {crop.shape[:2]}, model wants {self.input_size}x{self.input_size}")
        self._interp.set_tensor(self._in["index"], self._quantise_input(crop))
        self._interp.invoke()
        return l2_normalise(self._dequantise_output(self._interp.get_tensor(self._out["index"])[0]))

    def embed_crops(self, crops) -> np.ndarray:
        self.load()
        out = [self.embed_crop(c) for c in crops]
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)

    def crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The model-input crop of a detected face: dlib's chip from the 5 landmarks of the face in its box
        (template ``dlib-chip``), else BlazeFace's keypoints aligned to the model's template and resized."""
        self.load()
        if self.shape_predictor is not None:
            points = self.shape_predictor.predict_face(rgb, face)
            return face_chip(rgb, points, self.input_size, CHIP_PADDING, exact=False)
        return model_input(rgb, face.landmarks, self.input_size, self.template)


class FakeEmbedder:
    """A stand-in embedder for tests and dry runs: a fixed random projection of the (downsampled, grey) crop,
    L2-normalised. The same picture gives the same embedding and different pictures different ones; its "sidecar"
    has thresholds like a real model's. No model file, no runtime."""

    def __init__(self, input_size: int = 64, dim: int = 32, template: str = DEFAULT_TEMPLATE, seed: int = 0,
                 thresholds: Optional[dict] = None):
        self.input_size, self.dim, self.template = int(input_size), int(dim), template
        rng = np.random.default_rng(seed)
        self._proj = rng.normal(size=(16 * 16, self.dim)).astype(np.float32)
        self.model_path = "fake"
        self.backend = "fake"
        self.meta = {"sha256": f"fake-{seed}-{dim}", "quantization": "none", "metric": "cosine",
                     "input": {"template": template}, "embedding_dim": self.dim,
                     "thresholds": thresholds or {"far_1e-2": 0.6, "far_1e-3": 0.7, "far_1e-4": 0.8, "far_1e-5": 0.9},
                     "decision": {"far_target": "1e-4", "min_margin": 0.05}}

    def load(self) -> "FakeEmbedder":
        return self

    @property
    def sha256(self) -> str:
        return self.meta["sha256"]

    def embed_crop(self, crop: np.ndarray) -> np.ndarray:
        import cv2

        g = cv2.resize(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY), (16, 16),
                       interpolation=cv2.INTER_AREA).astype(np.float32).reshape(-1)
        return l2_normalise((g - g.mean()) @ self._proj)

    def embed_crops(self, crops) -> np.ndarray:
        out = [self.embed_crop(c) for c in crops]
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)

    def crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        return model_input(rgb, face.landmarks, self.input_size, self.template)
