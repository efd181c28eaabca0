"""Minivision's MiniFASNet anti-spoofing classifiers, rebuilt in Keras from their PyTorch state dicts.

The two pretrained files of Silent-Face-Anti-Spoofing (Apache-2.0, commit b6d5f04, ``resources/anti_spoof_models``)
are state dicts of ``src/model_lib/MiniFASNet.py``: ``MiniFASNetV2`` (``2.7_80x80_...``) and ``MiniFASNetV1SE``
(``4_0_0_80x80_...``). The architecture below follows that file: a MobileFaceNet-style stack of conv + batch norm +
PReLU blocks, depthwise-separable residual stages (the SE variant puts squeeze-and-excitation on the last block of
each stage), a 5x5 depthwise "global" convolution, a 512->128 linear layer, batch norm and a 3-way classifier.
Input: an 80x80 BGR crop, float 0-255, no normalisation; output: 3 logits, class 1 = live.

Why Keras from the state dict and not ONNX: TensorFlow is already the converter's dependency (the embedder goes the
same way), so the port adds only PyTorch, and only to *read* the weights and to run the reference for the parity
gate. ONNX would add onnx, onnxruntime and an ONNX->TF converter (onnx2tf pulls in a dozen more packages) for a
network this small.

Batch norms are folded into the convolutions before them (eval mode: ``running_mean``/``running_var``, eps 1e-5);
PyTorch's symmetric padding of strided convolutions is written as explicit zero padding (Keras "same" pads the
other side). ``torch_reference`` is the same network in PyTorch, used only by the parity gate.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

INPUT_SIZE = 80
BN_EPS = 1e-5

#: Channel widths of the pruned networks (``keep_dict`` of MiniFASNet.py): V1/V1SE use "1.8M", V2 "1.8M_".
KEEP = {
    "1.8M": [32, 32, 103, 103, 64, 13, 13, 64, 26, 26, 64, 13, 13, 64, 52, 52, 64, 231, 231, 128, 154, 154, 128, 52,
             52, 128, 26, 26, 128, 52, 52, 128, 26, 26, 128, 26, 26, 128, 308, 308, 128, 26, 26, 128, 26, 26, 128,
             512, 512],
    "1.8M_": [32, 32, 103, 103, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 13, 13, 64, 231, 231, 128, 231, 231, 128,
              52, 52, 128, 26, 26, 128, 77, 77, 128, 26, 26, 128, 26, 26, 128, 308, 308, 128, 26, 26, 128, 26, 26,
              128, 512, 512],
}


@dataclass(frozen=True)
class Variant:
    name: str          # MiniFASNetV2 | MiniFASNetV1SE
    keep: str          # key of KEEP
    se: bool           # squeeze-and-excitation on the last block of each residual stage
    scale: float       # the face box is scaled by this about its centre before the 80x80 crop
    file: str          # the upstream file name
    sha256: str        # of the upstream file (../shared/models/README.md)


VARIANTS = (
    Variant("MiniFASNetV2", "1.8M_", False, 2.7, "2.7_80x80_MiniFASNetV2.pth",
            "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0"),
    Variant("MiniFASNetV1SE", "1.8M", True, 4.0, "4_0_0_80x80_MiniFASNetV1SE.pth",
            "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990"),
)

UPSTREAM = {
    "project": "Silent-Face-Anti-Spoofing (Minivision)",
    "url": "https://github.com/minivision-ai/Silent-Face-Anti-Spoofing",
    "commit": "b6d5f04ad78778917853b25c778acef6d5626d15",
    "path": "resources/anti_spoof_models/",
    "licence": "Apache-2.0",
}


class WeightsError(ValueError):
    """The state dict is not the MiniFASNet this port knows."""


# --------------------------------------------------------------------------------------------------------------
# The layer plan, shared by the Keras builder and the PyTorch reference.

@dataclass(frozen=True)
class Block:
    """One depthwise-separable block (``Depth_Wise`` / ``Depth_Wise_SE``) at state-dict prefix ``prefix``."""
    prefix: str
    c_in: int
    c_mid: int
    c_out: int
    stride: int
    residual: bool
    se: bool


def plan(keep: List[int], se: bool) -> List[Block]:
    """The blocks between ``conv2_dw`` and ``conv_6_sep``, in order (``MiniFASNet.__init__``)."""
    k = keep
    blocks = [Block("conv_23", k[1], k[2], k[4], 2, False, False)]

    def stage(name, first, n):
        out = []
        for i in range(n):
            j = first + 3 * i
            out.append(Block(f"{name}.model.{i}", k[j], k[j + 1], k[j + 3], 1, True, se and i == n - 1))
        return out
    blocks += stage("conv_3", 4, 4)
    blocks.append(Block("conv_34", k[16], k[17], k[19], 2, False, False))
    blocks += stage("conv_4", 19, 6)
    blocks.append(Block("conv_45", k[37], k[38], k[40], 2, False, False))
    blocks += stage("conv_5", 40, 2)
    return blocks


def load_state_dict(path) -> "OrderedDict[str, np.ndarray]":
    """The upstream ``.pth`` (legacy serialisation, ``module.`` prefixes from DataParallel) as NumPy arrays."""
    import torch

    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # not a state dict torch can read safely
        raise WeightsError(f"{path}: not a PyTorch state dict ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(sd).__name__}")
    out = OrderedDict()
    for key, value in sd.items():
        key = key[7:] if key.startswith("module.") else key
        if key.endswith("num_batches_tracked"):
            continue
        out[key] = value.detach().cpu().numpy().astype(np.float32)
    return out


def expected_keys(variant: Variant) -> set:
    """Every weight name of the network (without ``num_batches_tracked``): a file must have exactly these."""
    keys = set()

    def cbr(p, prelu=True):
        keys.update(f"{p}.{n}" for n in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"))
        if prelu:
            keys.add(f"{p}.prelu.weight")
    cbr("conv1")
    cbr("conv2_dw")
    for b in plan(KEEP[variant.keep], variant.se):
        cbr(f"{b.prefix}.conv")
        cbr(f"{b.prefix}.conv_dw")
        cbr(f"{b.prefix}.project", prelu=False)
        if b.se:
            for i in (1, 2):
                keys.add(f"{b.prefix}.se_module.fc{i}.weight")
                keys.update(f"{b.prefix}.se_module.bn{i}.{n}" for n in ("weight", "bias", "running_mean",
                                                                          "running_var"))
    cbr("conv_6_sep")
    cbr("conv_6_dw", prelu=False)
    keys.update({"linear.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "prob.weight"})
    return keys


def check_keys(sd: Dict[str, np.ndarray], variant: Variant, path="") -> None:
    want, got = expected_keys(variant), set(sd)
    # Training-only parts (the Fourier-transform auxiliary branch of MultiFTNet) are allowed and ignored.
    extra = {k for k in got - want if not k.startswith("FTGenerator.")}
    missing = want - got
    if missing or extra:
        what = []
        if missing:
            what.append(f"missing {len(missing)} (e.g. {sorted(missing)[0]})")
        if extra:
            what.append(f"unexpected {len(extra)} (e.g. {sorted(extra)[0]})")
        raise WeightsError(f"{path}: not a {variant.name} state dict: {', '.join(what)}")


def fold_bn(sd, bn: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(scale, shift)`` of an eval-mode batch norm: ``y = x * scale + shift``."""
    scale = sd[f"{bn}.weight"] / np.sqrt(sd[f"{bn}.running_var"] + BN_EPS)
    return scale, sd[f"{bn}.bias"] - sd[f"{bn}.running_mean"] * scale


# --------------------------------------------------------------------------------------------------------------
# Keras

def keras_model(sd: Dict[str, np.ndarray], variant: Variant, softmax: bool = True):
    """The network in Keras with the weights of ``sd`` (BN folded): (80, 80, 3) BGR float 0-255 -> 3 probabilities
    (or logits with ``softmax=False``)."""
    import tensorflow as tf
    from tensorflow.keras import layers

    check_keys(sd, variant)

    def conv(x, prefix, k, stride, pad, depthwise, prelu, name):
        w = sd[f"{prefix}.conv.weight"]                 # torch (out, in/groups, kh, kw)
        scale, shift = fold_bn(sd, f"{prefix}.bn")
        if pad:
            x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        if depthwise:
            kern = (w[:, 0] * scale[:, None, None]).transpose(1, 2, 0)[:, :, :, None]   # (kh, kw, C, 1)
            x = layers.DepthwiseConv2D(k, stride, "valid", name=name,
                                       depthwise_initializer=tf.constant_initializer(kern),
                                       bias_initializer=tf.constant_initializer(shift))(x)
        else:
            kern = (w * scale[:, None, None, None]).transpose(2, 3, 1, 0)                # (kh, kw, in, out)
            x = layers.Conv2D(w.shape[0], k, stride, "valid", name=name,
                              kernel_initializer=tf.constant_initializer(kern),
                              bias_initializer=tf.constant_initializer(shift))(x)
        if prelu:
            a = sd[f"{prefix}.prelu.weight"].reshape(1, 1, -1)
            x = layers.PReLU(shared_axes=[1, 2], alpha_initializer=tf.constant_initializer(a),
                             name=f"{name}_prelu")(x)
        return x

    def se_module(x, prefix, name):
        c = x.shape[-1]
        s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
        for i, act in ((1, "relu"), (2, "sigmoid")):
            w = sd[f"{prefix}.fc{i}.weight"][:, :, 0, 0]    # (out, in)
            scale, shift = fold_bn(sd, f"{prefix}.bn{i}")
            s = layers.Conv2D(w.shape[0], 1, name=f"{name}_fc{i}", activation=act,
                              kernel_initializer=tf.constant_initializer((w * scale[:, None]).T[None, None]),
                              bias_initializer=tf.constant_initializer(shift))(s)
        assert s.shape[-1] == c
        return layers.Multiply(name=f"{name}_scale")([x, s])

    inp = layers.Input((INPUT_SIZE, INPUT_SIZE, 3), name="bgr")
    x = conv(inp, "conv1", 3, 2, 1, False, True, "conv1")
    x = conv(x, "conv2_dw", 3, 1, 1, True, True, "conv2_dw")
    for b in plan(KEEP[variant.keep], variant.se):
        n = b.prefix.replace(".model.", "_")
        y = conv(x, f"{b.prefix}.conv", 1, 1, 0, False, True, f"{n}_conv")
        y = conv(y, f"{b.prefix}.conv_dw", 3, b.stride, 1, True, True, f"{n}_dw")
        y = conv(y, f"{b.prefix}.project", 1, 1, 0, False, False, f"{n}_project")
        if b.se:
            y = se_module(y, f"{b.prefix}.se_module", f"{n}_se")
        x = layers.Add(name=f"{n}_add")([x, y]) if b.residual else y
    x = conv(x, "conv_6_sep", 1, 1, 0, False, True, "conv_6_sep")
    k6 = (INPUT_SIZE + 15) // 16                        # get_kernel(80, 80) = 5
    x = conv(x, "conv_6_dw", k6, 1, 0, True, False, "conv_6_dw")
    x = layers.Flatten(name="flatten")(x)
    scale, shift = fold_bn(sd, "bn")
    x = layers.Dense(128, name="linear", kernel_initializer=tf.constant_initializer(
        (sd["linear.weight"] * scale[:, None]).T), bias_initializer=tf.constant_initializer(shift))(x)
    x = layers.Dense(3, use_bias=False, name="prob",
                     kernel_initializer=tf.constant_initializer(sd["prob.weight"].T))(x)
    if softmax:
        x = layers.Softmax(name="softmax")(x)
    return tf.keras.Model(inp, x, name=variant.name)


def combined_model(models):
    """One model for the device: one 80x80 crop per variant in (``crop_<i>``), both softmax outputs stacked out,
    shape ``(2, 3)`` per face. One file, one sidecar, one interpreter call."""
    import tensorflow as tf
    from tensorflow.keras import layers

    ins = [layers.Input((INPUT_SIZE, INPUT_SIZE, 3), name=f"crop_{i}") for i in range(len(models))]
    outs = [layers.Reshape((1, 3), name=f"probs_{i}")(m(x)) for i, (m, x) in enumerate(zip(models, ins))]
    out = layers.Concatenate(axis=1, name="probs")(outs) if len(outs) > 1 else outs[0]
    return tf.keras.Model(ins, out, name="doorface_liveness")


# --------------------------------------------------------------------------------------------------------------
# The PyTorch reference (for the parity gate only)

def torch_reference(sd: Dict[str, np.ndarray], variant: Variant):
    """The same network in PyTorch, unfolded (conv, batch norm and PReLU as upstream), in eval mode; input NCHW
    BGR float 0-255, output 3 logits. Built from the layer plan, loaded with ``strict=True``."""
    import torch
    from torch import nn

    class CBR(nn.Module):
        def __init__(self, cin, cout, k, stride, pad, groups, prelu=True):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.prelu = nn.PReLU(cout) if prelu else None

        def forward(self, x):
            x = self.bn(self.conv(x))
            return self.prelu(x) if self.prelu is not None else x

    class SE(nn.Module):
        def __init__(self, c, r=4):
            super().__init__()
            self.fc1, self.bn1 = nn.Conv2d(c, c // r, 1, bias=False), nn.BatchNorm2d(c // r)
            self.fc2, self.bn2 = nn.Conv2d(c // r, c, 1, bias=False), nn.BatchNorm2d(c)

        def forward(self, x):
            s = x.mean((2, 3), keepdim=True)
            s = torch.relu(self.bn1(self.fc1(s)))
            return x * torch.sigmoid(self.bn2(self.fc2(s)))

    class DW(nn.Module):
        def __init__(self, b: Block):
            super().__init__()
            self.conv = CBR(b.c_in, b.c_mid, 1, 1, 0, 1)
            self.conv_dw = CBR(b.c_mid, b.c_mid, 3, b.stride, 1, b.c_mid)
            self.project = CBR(b.c_mid, b.c_out, 1, 1, 0, 1, prelu=False)
            self.residual = b.residual
            if b.se:
                self.se_module = SE(b.c_out)
            self.se = b.se

        def forward(self, x):
            y = self.project(self.conv_dw(self.conv(x)))
            if self.se:
                y = self.se_module(y)
            return x + y if self.residual else y

    keep = KEEP[variant.keep]
    blocks = plan(keep, variant.se)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = CBR(3, keep[0], 3, 2, 1, 1)
            self.conv2_dw = CBR(keep[0], keep[1], 3, 1, 1, keep[1])
            self.order = []
            for b in blocks:
                if ".model." in b.prefix:
                    stage, _, i = b.prefix.split(".")
                    if not hasattr(self, stage):
                        setattr(self, stage, nn.Module())
                        getattr(self, stage).model = nn.ModuleList()
                    getattr(self, stage).model.append(DW(b))
                else:
                    setattr(self, b.prefix, DW(b))
                self.order.append(b.prefix)
            self.conv_6_sep = CBR(keep[46], keep[47], 1, 1, 0, 1)
            k6 = (INPUT_SIZE + 15) // 16
            self.conv_6_dw = CBR(keep[47], keep[48], k6, 1, 0, keep[48], prelu=False)
            self.linear = nn.Linear(512, 128, bias=False)
            self.bn = nn.BatchNorm1d(128)
            self.prob = nn.Linear(128, 3, bias=False)

        def forward(self, x):
            x = self.conv2_dw(self.conv1(x))
            for p in self.order:
                if ".model." in p:
                    stage, _, i = p.split(".")
                    x = getattr(self, stage).model[int(i)](x)
                else:
                    x = getattr(self, p)(x)
            x = self.conv_6_dw(self.conv_6_sep(x)).flatten(1)
            return self.prob(self.bn(self.linear(x)))

    check_keys(sd, variant)
    net = Net()
    state = {k: torch.from_numpy(v) for k, v in sd.items() if not k.startswith("FTGenerator.")}
    net.load_state_dict(state, strict=False)
    missing = set(net.state_dict()) - set(state) - {k for k in net.state_dict() if k.endswith("num_batches_tracked")}
    if missing:
        raise WeightsError(f"reference network has weights the file lacks: {sorted(missing)[:3]}")
    return net.eval()


def torch_probs(net, crops_bgr: np.ndarray) -> np.ndarray:
    """Softmax probabilities of the reference for (N, 80, 80, 3) BGR crops."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(crops_bgr.astype(np.float32).transpose(0, 3, 1, 2)))
        return torch.softmax(net(x), dim=1).numpy()
