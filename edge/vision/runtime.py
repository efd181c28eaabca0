"""One-file TFLite runtime shim: ai_edge_litert, else tflite_runtime, else tensorflow.lite.

The interpreter is created lazily by :func:`load_interpreter`; importing this module imports no runtime.
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
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


#: What the TFLite C++ runtime prints on stderr while an interpreter is created (``INFO: Created TensorFlow Lite
#: XNNPACK delegate for CPU.``, ``INFO: Initialized TensorFlow Lite runtime.``): chatter, not a message for the user.
#: ai-edge-litert ignores TF_CPP_MIN_LOG_LEVEL, and turning XNNPACK off to silence it would slow every frame.
RUNTIME_CHATTER = (b"INFO: ",)
_STDERR_LOCK = threading.Lock()


@contextmanager
def runtime_chatter_dropped():
    """Run the block with file descriptor 2 sent to a temporary file, then write back to the real stderr everything
    printed meanwhile except the runtime's ``INFO:`` lines (an error the runtime prints, or a log line from another
    thread, still comes out, only a moment later). Without a usable fd 2 the block just runs."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                kept = [ln for ln in tmp.read().splitlines(keepends=True) if not ln.startswith(RUNTIME_CHATTER)]
                if kept:
                    os.write(2, b"".join(kept))


def load_interpreter(model_path: str, num_threads: int = 2, preferred: Optional[Sequence[str]] = None):
    """Load a ``.tflite`` file and allocate its tensors (the runtime's ``INFO:`` chatter dropped, so one error stays
    one line). Returns ``(backend_name, interpreter)``."""
    name, cls = interpreter_class(preferred)
    try:
        with runtime_chatter_dropped():
            interp = cls(model_path=str(model_path), num_threads=int(num_threads))
            interp.allocate_tensors()
    except ValueError as exc:
        raise ModelError(f"cannot load model {model_path}: {exc}") from exc
    return name, interp
