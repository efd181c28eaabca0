"""``doorface bench``: the door's speed on this board, per stage, as a markdown block an owner pastes into an issue.

Runs only what the device has (the edge install: a TFLite runtime, numpy, OpenCV; no TensorFlow, no ``bench/``).
Each stage is timed on one frame holding one face (the sample photo, or ``--image``, letterboxed to the camera's
size), with its own interpreters per thread count: detector (BlazeFace), embedding (the configured model; the shipped
ones embed the face and its mirror image in one call), liveness (the MiniFASNet pair), and the whole frame as the
door analyses it (detect, gate, align, embed, liveness). Medians over ``iterations`` after one warm-up call.
"""
from __future__ import annotations

import importlib.metadata as md
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from edge.vision import board

#: The stages, in the order printed.
STAGES = ("detector", "alignment", "embedding", "liveness", "frame")
LABELS = {"detector": "detector (BlazeFace)", "alignment": "alignment (the default: dlib 5-point landmarks, compiled or numpy, + chip)", "embedding": "embedding (one call; the shipped models: face + mirror)",
          "liveness": "liveness (MiniFASNet pair)", "frame": "whole frame, one face (detect, gate, align, embed, live)"}
RUNTIME_DISTS = {"ai_edge_litert": ("ai-edge-litert",), "tflite_runtime": ("tflite-runtime",),
                 "tensorflow": ("tensorflow", "tensorflow-cpu")}


def letterbox(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` scaled to fit ``width`` x ``height`` and centred on black: a camera-sized frame."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def median_ms(fn: Callable[[], object], iterations: int) -> float:
    fn()   # warm-up (first-call allocations, XNNPACK packing)
    ts = []
    for _ in range(max(1, int(iterations))):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000.0


def time_stages(analyzer, frame: np.ndarray, iterations: int) -> Dict[str, float]:
    """ms per stage (median) for one analyzer (its own interpreters) on one frame with a face."""
    faces = analyzer.faces(frame)
    if not faces:
        raise ValueError("no face found in the bench frame")
    face = faces[0]
    emb = analyzer.embedder
    crop = emb.crop(frame, face)
    out = {"detector": median_ms(lambda: analyzer.detector.detect(frame), iterations),
           "alignment": median_ms(lambda: emb.crop(frame, face), iterations),
           "embedding": median_ms(lambda: emb.embed_crop(crop), iterations)}
    if analyzer.liveness is not None:
        out["liveness"] = median_ms(lambda: analyzer.liveness.check(frame, face), iterations)
    out["frame"] = median_ms(lambda: analyzer.analyze(frame), iterations)
    return out


def versions(backend: Optional[str]) -> Dict[str, str]:
    def dist(*names):
        for n in names:
            try:
                return md.version(n)
            except md.PackageNotFoundError:
                continue
        return "not installed"

    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import cv2

        out["opencv"] = cv2.__version__
    except ImportError:
        out["opencv"] = "not installed"
    if backend:
        out[backend] = dist(*RUNTIME_DISTS.get(backend, (backend,)))
    return out


def os_name(os_release: str = "/etc/os-release") -> str:
    for line in board._read(os_release).splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def report(results: Dict[int, Dict[str, float]], auto: int, meta: dict) -> str:
    """The markdown block: who/what/which versions, then one row per stage, one column per thread count."""
    cols = sorted(results)
    head = [f"{t} thread{'s' if t > 1 else ''}{' (auto)' if t == auto else ''}" for t in cols]
    lines = ["### doorface bench", "",
             f"- board: {meta['board']} ({meta['machine']}, {meta['cores']} cores), {meta['os']}",
             "- " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
             f"- embedder {meta['embedder']}, frame {meta['frame']}, median of {meta['iterations']} runs, ms",
             "", "| stage | " + " | ".join(head) + " |", "|---" * (len(cols) + 1) + "|"]
    for stage in STAGES:
        if all(stage in results[t] for t in cols):
            cells = [f"{results[t][stage]:.1f}" for t in cols]
            if stage == "frame":
                cells = [f"{results[t][stage]:.1f} ({1000.0 / results[t][stage]:.1f} fps)" for t in cols]
            lines.append(f"| {LABELS[stage]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(make_analyzer: Callable[[int], object], frame: np.ndarray, thread_counts: Sequence[int], iterations: int,
        frame_note: str) -> str:
    """Time every stage for each thread count (``make_analyzer(n)`` builds the door's analyzer with ``n`` threads)
    and return :func:`report`'s block. The last thread count is the one ``"auto"`` gives on this board."""
    results: Dict[int, Dict[str, float]] = {}
    backend, embedder = None, ""
    for n in dict.fromkeys(int(t) for t in thread_counts):
        an = make_analyzer(n)
        results[n] = time_stages(an, frame, iterations)
        backend, embedder = an.embedder.backend, Path(an.embedder.model_path).name
        sp = getattr(an.embedder, "shape_predictor", None)
        if sp is not None:
            embedder += f" (landmarks: {sp.backend})"
    meta = {"board": board.model_name(), "machine": platform.machine(), "cores": board.cpu_count(),
            "os": os_name(), "versions": versions(backend), "embedder": embedder, "frame": frame_note,
            "iterations": iterations}
    return report(results, int(list(thread_counts)[-1]), meta)
