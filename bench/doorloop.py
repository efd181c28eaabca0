"""The door loop's cost per frame with each alignment, in one run: the 4-keypoint warp (before dlib's landmarks), dlib's
5-point landmarks with the numpy loop, and with the compiled loop (edge/vision/_ert.c).

    python -m bench.doorloop [--rounds 7] [--frames 20] [--model models/doorface-dlib-int8.tflite]
                             [--json benchmarks/doorloop.json] [--md BENCHMARKS.md]

Each variant is the door's own ``FaceAnalyzer`` (BlazeFace, the quality gates, the alignment, the embedder, the
liveness pair; 1 thread each) on the same camera-sized frames of the sample photos (``bench.frames.door_frames``).
The variants run in alternating rounds, so the machine's load falls on all of them alike; the figure is the median
over rounds of CPU time per frame (``time.process_time``), and each ratio is taken against the 4-keypoint warp of
the same run. "Loop speed" is the inverse: 1.0 = as fast as before the landmarks. The frames' decisions are not
compared here: the alignment changes the embeddings (that is its purpose; ``make bench`` measures what it buys).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BEGIN = "<!-- bench.doorloop:begin -->"
END = "<!-- bench.doorloop:end -->"
VARIANTS = ("4 keypoints (before)", "5-point landmarks, numpy loop", "5-point landmarks, compiled loop")


def analyzers(model: str, detector: str, liveness: str) -> dict:
    """The three analyzers, each with its own interpreters (1 thread), keyed by :data:`VARIANTS`; the compiled one
    only when the install built it."""
    from edge.vision import ertnative
    from edge.vision.analyzer import FaceAnalyzer
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder
    from edge.vision.landmarks import ShapePredictor
    from edge.vision.liveness import LivenessModel
    from edge.vision.quality import QualityConfig

    def make(template=None):
        return FaceAnalyzer(BlazeFaceDetector(detector, num_threads=1).load(),
                            Embedder(model, 1, template=template).load(), QualityConfig(),
                            liveness=LivenessModel(liveness, num_threads=1).load())

    out = {VARIANTS[0]: make("dlib150")}
    slow = make()
    if slow.embedder.shape_predictor is None:
        raise SystemExit(f"bench.doorloop: {model} does not align with dlib's landmarks (template dlib-chip)")
    sp = slow.embedder.shape_predictor
    with np.load(sp_path(model, slow.embedder.meta)) as z:
        arrays = {k: z[k] for k in z.files}
    slow.embedder.shape_predictor = ShapePredictor(arrays, sp.meta)
    out[VARIANTS[1]] = slow
    lib = ertnative.library()
    if lib is not None:
        fast = make()
        fast.embedder.shape_predictor = ShapePredictor(arrays, sp.meta, lib)
        out[VARIANTS[2]] = fast
    return out


def sp_path(model: str, meta: dict) -> Path:
    return Path(model).parent / Path(meta["input"]["landmarks"]["file"]).name


def measure(ans: dict, frames: list, rounds: int, per_round: int = 3, progress=None) -> dict:
    """CPU ms per frame of each analyzer, one value per round, the analyzers alternating within every round."""
    for a in ans.values():
        for f in frames[:3]:
            a.analyze(f)
    res = {k: [] for k in ans}
    it = range(rounds) if progress is None else progress(range(rounds))
    for _ in it:
        for k, a in ans.items():
            t = time.process_time()
            for _ in range(per_round):
                for f in frames:
                    a.analyze(f)
            res[k].append((time.process_time() - t) / (per_round * len(frames)) * 1000)
    return res


def summary(res: dict) -> dict:
    base = statistics.median(res[VARIANTS[0]])
    out = {}
    for k, v in res.items():
        med = statistics.median(v)
        out[k] = {"cpu_ms_per_frame": round(med, 3), "rounds": [round(x, 3) for x in v],
                  "cost_vs_before": round(med / base, 3), "loop_speed": round(base / med, 3)}
    return out


def md_section(s: dict, meta: dict) -> str:
    lines = [BEGIN, "## The door loop with each alignment (`python -m bench.doorloop`)", "",
             f"{meta['date']}, {meta['machine']}; {meta['frames']} door frames, {meta['rounds']} alternating rounds, "
             "1 thread, CPU time per frame (`time.process_time`: detection, gates, alignment, embedding, liveness), "
             "median over rounds; ratios against the 4-keypoint warp of the same run.", "",
             "| alignment | CPU ms per frame | cost vs before | loop speed | rounds |", "|---|---|---|---|---|"]
    for k, v in s.items():
        lines.append(f"| {k} | {v['cpu_ms_per_frame']:.2f} | {v['cost_vs_before']:.3f}x | **{v['loop_speed']:.3f}x** | "
                     + " ".join(f"{x:.2f}" for x in v["rounds"]) + " |")
    lines.append(END)
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.doorloop", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/doorface-dlib-int8.tflite")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--liveness", default="models/doorface-liveness.tflite")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--json", help="write the figures here (benchmarks/doorloop.json)")
    ap.add_argument("--md", help="also write the table into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    import datetime as dt
    import platform

    from bench.__main__ import cpu_name
    from bench.common import progress
    from bench.frames import door_frames
    from bench.model import update_md
    from edge.vision.assets import fetch_samples
    from edge.vision.detector import BlazeFaceDetector

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    frames = door_frames(fetch_samples(), BlazeFaceDetector(args.detector), args.frames)
    ans = analyzers(args.model, args.detector, args.liveness)
    res = summary(measure(ans, frames, args.rounds, progress=progress("rounds")))
    meta = {"date": dt.date.today().isoformat(), "machine": f"{cpu_name()}, {platform.machine()}",
            "frames": len(frames), "rounds": args.rounds}
    for k, v in res.items():
        print(f"{k:34s} {v['cpu_ms_per_frame']:6.2f} ms/frame  cost {v['cost_vs_before']:.3f}x  "
              f"loop speed {v['loop_speed']:.3f}x")
    if VARIANTS[2] not in res:
        print("the compiled loop is not built here (no C compiler at install): numpy only", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**meta, "variants": res}, indent=1))
    if args.md:
        update_md(Path(args.md), md_section(res, meta), BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
