"""Keras -> TFLite: float32 (the baseline), float16, dynamic-range, and full-integer int8.

int8 is full-integer (``TFLITE_BUILTINS_INT8`` only, so an op that cannot be quantised fails the conversion
loudly), per-channel weights, uint8 input of raw aligned RGB pixels (the model normalises inside) and int8
output, calibrated on a representative set of aligned faces made by the edge preprocessing.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

QUANTS = ("float32", "float16", "dynamic", "int8")


def convert(model, quant: str = "float32", representative: Optional[Iterable[np.ndarray]] = None,
            float_io: bool = False) -> bytes:
    """``representative``: one array per sample, or a tuple of arrays (one per input) for a multi-input model.
    ``float_io``: int8 models keep float32 inputs and outputs (the quantisation happens inside)."""
    import tensorflow as tf

    if quant not in QUANTS:
        raise ValueError(f"unknown quantisation {quant!r}; choose from {', '.join(QUANTS)}")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "int8":
        if representative is None:
            raise ValueError("int8 needs a representative set of aligned faces (--calib)")
        reps = [tuple(np.asarray(x, np.float32) for x in r) if isinstance(r, (tuple, list))
                else (np.asarray(r, np.float32),) for r in representative]
        if not reps:
            raise ValueError("int8 representative set is empty")

        def gen():
            for r in reps:
                yield [x[None] for x in r]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not float_io:
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.int8
    return conv.convert()


def op_summary(tflite_path) -> dict:
    """Operator names and counts in a .tflite (to see what reaches XNNPACK and what falls back)."""
    from edge.vision.runtime import load_interpreter

    _, interp = load_interpreter(tflite_path, 1)
    counts = {}
    try:
        ops = interp._get_ops_details()
    except AttributeError:
        return counts
    for op in ops:
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return dict(sorted(counts.items()))


def io_details(tflite_path) -> dict:
    from edge.vision.runtime import load_interpreter

    _, interp = load_interpreter(tflite_path, 1)
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]

    def q(d):
        s, z = d["quantization"]
        return {"scale": float(s), "zero_point": int(z)} if s else None
    return {"input": {"shape": [int(v) for v in i["shape"]], "dtype": np.dtype(i["dtype"]).name,
                      "quantization": q(i)},
            "output": {"shape": [int(v) for v in o["shape"]], "dtype": np.dtype(o["dtype"]).name,
                       "quantization": q(o)}}
