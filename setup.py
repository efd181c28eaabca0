"""The one compiled part: dlib's shape predictor loop (edge/vision/_ert.c), an optional extension.

Everything else is in pyproject.toml. ``optional=True``: where it cannot be compiled (no C compiler on the board),
the install goes on without it and the door runs the numpy port, which gives the same landmarks
(edge/vision/ertnative.py). The library uses no Python API; it is loaded with ctypes.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("edge.vision._ert", sources=["edge/vision/_ert.c"], optional=True,
                             extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"])])
