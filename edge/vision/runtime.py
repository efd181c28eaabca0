"""One-file TFLite runtime shim: ai_edge_litert, else tflite_runtime, else tensorflow.lite.

The interpreter is created lazily by :func:`load_interpreter`; importing this module imports no runtime.
"""
from __future__ import annotations

import importlib
from typing import Optional, Sequence

from edge.errors import ModelError, RuntimeNotFound

#: Backends in order of preference, as (name, module, attribute holding Interpreter).
BACKENDS = (
    ("ai_edge_litert", "ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow", "tensorflow", "lite.Interpreter"),
)


def interpreter_class(preferred: Optional[Sequence[str]] = None):
    """Return ``(backend_name, Interpreter class)`` for the first importable backend.

    ``preferred`` restricts and orders the backends by name (e.g. ``["tflite_runtime"]``).
    """
    order = BACKENDS
    if preferred:
        by_name = {b[0]: b for b in BACKENDS}
        unknown = [p for p in preferred if p not in by_name]
        if unknown:
            raise RuntimeNotFound(f"unknown TFLite runtime {unknown[0]!r}; choose from {', '.join(by_name)}")
        order = tuple(by_name[p] for p in preferred)
    errors = []
    for name, module, attr in order:
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return name, obj
        except Exception as exc:  # ImportError, or a broken install raising something else
            errors.append(f"{name}: {exc.__class__.__name__}")
    raise RuntimeNotFound(
        "no TFLite runtime found (tried " + ", ".join(errors) + "); install ai-edge-litert or tflite-runtime"
    )


def load_interpreter(model_path: str, num_threads: int = 2, preferred: Optional[Sequence[str]] = None):
    """Load a ``.tflite`` file and allocate its tensors. Returns ``(backend_name, interpreter)``."""
    name, cls = interpreter_class(preferred)
    try:
        interp = cls(model_path=str(model_path), num_threads=int(num_threads))
        interp.allocate_tensors()
    except ValueError as exc:
        raise ModelError(f"cannot load model {model_path}: {exc}") from exc
    return name, interp
