"""Augmentation for door conditions, as TensorFlow ops on one float32 RGB image with values in [0, 255].

Flips, small rotation/scale/shift, brightness/contrast/gamma, strong side light, low light with sensor noise,
motion and defocus blur, low resolution (a face far from the camera), JPEG artefacts, grayscale / IR-like, and
partial occlusion. Each is applied with its own probability.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    affine: float = 0.7
    max_rotate_deg: float = 10.0
    max_scale: float = 0.08
    max_shift: float = 0.05
    photometric: float = 0.8
    low_light: float = 0.15
    blur: float = 0.2
    jpeg: float = 0.25
    grayscale: float = 0.15
    occlusion: float = 0.1
    low_res: float = 0.0
    side_light: float = 0.0


def _blur_bank(size: int = 7) -> np.ndarray:
    """Kernels: horizontal/vertical/diagonal motion of length 3-7 and disc defocus of radius 1-3."""
    kernels = []
    for length in (3, 5, 7):
        for angle in (0, 45, 90, 135):
            k = np.zeros((size, size), np.float32)
            c = size // 2
            for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, length * 2):
                x = int(round(c + t * math.cos(math.radians(angle))))
                y = int(round(c + t * math.sin(math.radians(angle))))
                k[y, x] = 1
            kernels.append(k / k.sum())
    yy, xx = np.mgrid[:size, :size] - size // 2
    for r in (1, 2, 3):
        k = ((xx ** 2 + yy ** 2) <= r * r + 0.5).astype(np.float32)
        kernels.append(k / k.sum())
    return np.stack(kernels)


BLUR_BANK = _blur_bank()


def _chance(p):
    return tf.random.uniform([]) < p


def _affine(img, cfg: AugmentConfig):
    h = tf.cast(tf.shape(img)[0], tf.float32)
    w = tf.cast(tf.shape(img)[1], tf.float32)
    ang = tf.random.uniform([], -1, 1) * cfg.max_rotate_deg * math.pi / 180
    s = 1.0 + tf.random.uniform([], -1, 1) * cfg.max_scale
    tx = tf.random.uniform([], -1, 1) * cfg.max_shift * w
    ty = tf.random.uniform([], -1, 1) * cfg.max_shift * h
    cx, cy = w / 2, h / 2
    # Inverse map (output -> input) for ImageProjectiveTransformV3.
    a = tf.cos(ang) / s
    b = tf.sin(ang) / s
    x0 = cx - a * (cx + tx) - b * (cy + ty)
    y0 = cy + b * (cx + tx) - a * (cy + ty)
    transform = tf.stack([a, b, x0, -b, a, y0, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=img[None], transforms=transform, output_shape=tf.shape(img)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
    return out[0]


def _photometric(img):
    img = img * tf.random.uniform([], 0.7, 1.3) + tf.random.uniform([], -25, 25)         # contrast-ish, brightness
    mean = tf.reduce_mean(img)
    img = (img - mean) * tf.random.uniform([], 0.75, 1.25) + mean                        # contrast
    img = tf.clip_by_value(img, 0, 255)
    gamma = tf.exp(tf.random.uniform([], -0.4, 0.4))
    return 255.0 * tf.pow(img / 255.0, gamma)


def _low_light(img):
    img = img * tf.random.uniform([], 0.15, 0.5)
    noise = tf.random.normal(tf.shape(img), stddev=tf.random.uniform([], 2.0, 8.0))
    return img + noise


def _blur(img):
    k = tf.gather(tf.constant(BLUR_BANK), tf.random.uniform([], 0, BLUR_BANK.shape[0], dtype=tf.int32))
    k = tf.tile(k[:, :, None, None], [1, 1, 3, 1])
    return tf.nn.depthwise_conv2d(img[None], k, [1, 1, 1, 1], "SAME")[0]


def _low_res(img):
    """Down to 1/2-1/4 of the side and back up: the detail of a face a few metres from the camera."""
    size = tf.shape(img)[:2]
    f = tf.random.uniform([], 0.25, 0.5)
    small = tf.image.resize(img, tf.cast(tf.cast(size, tf.float32) * f, tf.int32), method="area")
    return tf.image.resize(small, size, method="bilinear")


def _side_light(img):
    """A light from one side: a brightness ramp across the face (either direction), 0.25-0.6 to 1.1-1.4."""
    w = tf.shape(img)[1]
    ramp = tf.linspace(tf.random.uniform([], 0.25, 0.6), tf.random.uniform([], 1.1, 1.4), w)
    ramp = tf.cond(_chance(0.5), lambda: ramp, lambda: tf.reverse(ramp, [0]))
    return img * ramp[None, :, None]


def _grayscale(img):
    g = tf.image.rgb_to_grayscale(img)
    g = tf.clip_by_value((g - 128.0) * tf.random.uniform([], 1.0, 1.4) + 128.0, 0, 255)   # IR: flat, contrasty
    return tf.tile(g, [1, 1, 3])


def _occlude(img):
    h = tf.shape(img)[0]
    w = tf.shape(img)[1]
    oh = tf.cast(tf.cast(h, tf.float32) * tf.random.uniform([], 0.15, 0.35), tf.int32)
    ow = tf.cast(tf.cast(w, tf.float32) * tf.random.uniform([], 0.15, 0.35), tf.int32)
    y = tf.random.uniform([], 0, h - oh, dtype=tf.int32)
    x = tf.random.uniform([], 0, w - ow, dtype=tf.int32)
    mask = tf.pad(tf.ones([oh, ow, 1]), [[y, h - oh - y], [x, w - ow - x], [0, 0]])
    return img * (1 - mask) + mask * tf.random.uniform([], 0, 255)


def augment(img, cfg: AugmentConfig = AugmentConfig()):
    """One augmented copy of ``img`` (H, W, 3) float32 in [0, 255]."""
    img = tf.cond(_chance(cfg.flip), lambda: tf.image.flip_left_right(img), lambda: img)
    img = tf.cond(_chance(cfg.affine), lambda: _affine(img, cfg), lambda: img)
    img = tf.cond(_chance(cfg.photometric), lambda: _photometric(img), lambda: img)
    img = tf.cond(_chance(cfg.side_light), lambda: _side_light(img), lambda: img)
    img = tf.cond(_chance(cfg.low_light), lambda: _low_light(img), lambda: img)
    img = tf.cond(_chance(cfg.blur), lambda: _blur(img), lambda: img)
    img = tf.cond(_chance(cfg.low_res), lambda: _low_res(img), lambda: img)
    img = tf.clip_by_value(img, 0, 255)
    img = tf.cond(_chance(cfg.jpeg),
                  lambda: tf.cast(tf.image.adjust_jpeg_quality(tf.cast(img, tf.uint8),
                                                               tf.random.uniform([], 30, 90, tf.int32)), tf.float32),
                  lambda: img)
    img = tf.cond(_chance(cfg.grayscale), lambda: _grayscale(img), lambda: img)
    img = tf.cond(_chance(cfg.occlusion), lambda: _occlude(img), lambda: img)
    img = tf.clip_by_value(img, 0, 255)
    img.set_shape([None, None, 3])
    return img
