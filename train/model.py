"""The embedding network: a small MobileFaceNet-class backbone built for int8 on ARM.

Design choices (see convert/ and the training issue):
- uint8-valued RGB 112x112 in, normalisation inside the model (``x / 127.5 - 1``), so the device feeds raw aligned
  pixels and training cannot drift from deployment;
- depthwise-separable inverted residual blocks with plain ReLU and BatchNorm (BN folds into the convolutions at
  conversion; ReLU keeps every op on XNNPACK's quantised kernels, where PReLU does not);
- a global depthwise convolution (GDC) head rather than average pooling, keeping the face's spatial layout;
- a 128-D embedding, L2-normalised inside the model; cosine similarity everywhere.
"""
from __future__ import annotations

from tensorflow import keras
from tensorflow.keras import layers

INPUT_SIZE = 112


def _conv_bn(x, filters, kernel, stride, name, act=True):
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if act else x


def _dw_bn(x, stride, name, kernel=3, act=True):
    x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_dwbn")(x)
    return layers.ReLU(name=f"{name}_dwrelu")(x) if act else x


def _inverted_residual(x, out_ch, stride, expansion, name):
    in_ch = x.shape[-1]
    y = _conv_bn(x, in_ch * expansion, 1, 1, f"{name}_expand")
    y = _dw_bn(y, stride, name)
    y = _conv_bn(y, out_ch, 1, 1, f"{name}_project", act=False)
    if stride == 1 and in_ch == out_ch:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


#: (output channels, first stride, repeats, expansion) per stage, after a 56x56x64 stem.
STAGES_DEFAULT = ((64, 2, 3, 2), (96, 2, 4, 2), (128, 2, 2, 2))


def build_embedder(embedding_dim: int = 128, width: float = 1.0, stages=STAGES_DEFAULT, head_ch: int = 384,
                   dropout: float = 0.0, name: str = "doorface_embedder", input_size: int = INPUT_SIZE) -> keras.Model:
    """uint8-valued (N, input_size, input_size, 3) RGB -> (N, embedding_dim) L2-normalised embedding."""
    w = lambda c: max(8, int(round(c * width / 8)) * 8)  # noqa: E731
    inp = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(inp)
    x = _conv_bn(x, w(32), 3, 2, "stem")                  # 56x56
    x = _dw_bn(x, 1, "stem2")
    x = _conv_bn(x, w(64), 1, 1, "stem2_pw")
    for s, (ch, stride, reps, exp) in enumerate(stages):
        for r in range(reps):
            x = _inverted_residual(x, w(ch), stride if r == 0 else 1, exp, f"s{s}b{r}")
    x = _conv_bn(x, head_ch, 1, 1, "head")                # 7x7
    x = layers.DepthwiseConv2D(x.shape[1], 1, padding="valid", use_bias=False, name="gdc")(x)
    x = layers.BatchNormalization(name="gdc_bn")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Conv2D(embedding_dim, 1, use_bias=False, name="embed_conv")(x)
    x = layers.BatchNormalization(name="embed_bn")(x)
    x = layers.Flatten(name="flatten")(x)
    out = layers.UnitNormalization(axis=-1, name="l2norm")(x)
    return keras.Model(inp, out, name=name)


def count_flops(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass of convolutions (rough, for reporting)."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            h, w_, c = layer.output.shape[1:]
            macs += h * w_ * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, layers.Conv2D):
            h, w_, c = layer.output.shape[1:]
            macs += h * w_ * c * layer.kernel_size[0] * layer.kernel_size[1] * layer.input.shape[-1]
    return int(macs)


def flip_averaged(model: keras.Model) -> keras.Model:
    """``l2norm(f(x) + f(mirror(x)))``: the embedding of a face and of its mirror image, summed, as one model.

    Mirror averaging (test-time flip) removes the left/right bias a small net picks up from one-sided light and
    slight head turns; measured on held-out LFW identities it adds accuracy at twice the embedding cost. Both
    halves run as one batch of two through the same weights, so the exported file stays the same size and the
    device keeps feeding one aligned crop. Used at conversion; the trained model itself is left unchanged.
    """
    import tensorflow as tf

    inp = keras.Input(model.input_shape[1:], name="image")
    both = layers.Lambda(lambda t: tf.concat([t, tf.reverse(t, axis=[2])], axis=0), name="with_mirror")(inp)
    emb = model(both)
    # SPLIT into two halves and ADD: a static split, so the exported graph has no SHAPE/FLOOR_DIV/STRIDED_SLICE ops
    # computing the halves at run time.
    summed = layers.Lambda(lambda e: tf.add(*tf.split(e, 2, axis=0)), name="sum_mirror")(emb)
    out = layers.UnitNormalization(axis=-1, name="l2norm_mirror")(summed)
    return keras.Model(inp, out, name=f"{model.name}_flipavg")
