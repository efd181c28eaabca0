"""Helpers shared by the benches that compare doorface models with face_recognition (``python -m bench``,
``python -m bench.fair``): the default models, parsing ``--model``, whether face_recognition is usable, and progress
bars."""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: The models `make bench` compares with face_recognition by default.
DEFAULT_MODELS = ("doorface dlib-port int8=models/doorface-dlib-int8.tflite",
                  "doorface small int8=models/doorface-int8.tflite")


def have_dlib() -> bool:
    try:
        import face_recognition  # noqa: F401  (importable = usable)
        return True
    except Exception:
        return False


def parse_model(arg: str):
    """``LABEL=PATH`` or ``PATH`` (labelled by its file name)."""
    label, path = arg.split("=", 1) if "=" in arg else (Path(arg).stem, arg)
    return label, path


def progress(desc):
    def wrap(items):
        from tqdm import tqdm

        return tqdm(items, desc=desc, file=sys.stderr)
    return wrap


def doorface(argv) -> tuple:
    """Run the ``doorface`` command as a user runs it (a separate process, so no bench imports the CLI):
    ``(exit code, stdout, stderr)``."""
    import subprocess

    r = subprocess.run([sys.executable, "-m", "edge", *map(str, argv)], capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return r.returncode, r.stdout, r.stderr
