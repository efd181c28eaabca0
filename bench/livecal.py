"""`python -m bench.livecal`: per-door liveness calibration (``edge.vision.livecal``) measured on the dev sets.

- msu-dev (18 clients, one phone camera): the door is calibrated on the live frames of half the clients (as if they
  were the owners who enrolled at the camera) and measured on the other half's live frames and on every print and
  replay attack of those clients; 200 random splits, averaged. Against the model's own threshold.
- nuaa-dev (8 subjects, one webcam): the same with 4 subjects calibrating.
- Poisoning: a calibration made only from attack frames (a print held up at ``enroll --camera``) and one from a
  handful of frames: the bounds keep the door at least as strict as uncalibrated.

Evaluation only (research licences): the sets are read by path; nothing but these figures is written.

    python -m bench.livecal [--msu ../shared/data/msu-dev.tgz] [--nuaa ../shared/data/nuaa-dev.tgz] [--splits 200]
                            [--md BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from bench.common import progress

TARGETS = (0.05, 0.10)


def scores_of(path, det, model) -> list:
    """``[(name, label, group, score)]`` for every image with a face (label 1 live)."""
    from bench.liveness import load_set, score_set

    rows = load_set(path)
    got = score_set(rows, det, model, model.meta["box_map"])["scores"]
    out = []
    for (name, label, subject, _), s in zip(rows, got):
        if s is None:
            continue
        m = re.search(r"client(\d+)", name)
        out.append((name, label, m.group(1) if m else subject, s))
    return out


def split_run(rows, target: float, floor: float, splits: int, seed: int = 0, bounded: bool = True) -> dict:
    """Mean BPCER/APCER over random halves of the groups (calibrate on one half's live frames)."""
    from edge.vision.livecal import threshold_from

    groups = sorted({g for _, _, g, _ in rows})
    rng = np.random.default_rng(seed)
    res = []
    for _ in range(splits):
        cal = set(rng.choice(groups, len(groups) // 2, replace=False))
        live_cal = [s for _, label, g, s in rows if label == 1 and g in cal]
        th = threshold_from(live_cal, target, floor) if bounded else \
            threshold_from(live_cal, target, 0.0, 1.0)
        live = np.array([s for _, label, g, s in rows if label == 1 and g not in cal])
        att = [(n, s) for n, label, g, s in rows if label == 0 and g not in cal]
        kinds = {"print": [s for n, s in att if "print" in n], "replay": [s for n, s in att if "video" in n]}
        res.append([np.mean(live < th), np.mean([s >= th for _, s in att]), th] +
                   [np.mean(np.array(v) >= th) if v else np.nan for v in kinds.values()])
    r = np.nanmean(np.array(res, np.float64), axis=0)
    return {"bpcer": r[0], "apcer": r[1], "threshold": r[2], "print": r[3], "replay": r[4]}


def fixed(rows, th: float) -> dict:
    live = np.array([s for _, label, _, s in rows if label == 1])
    att = [(n, s) for n, label, _, s in rows if label == 0]
    pr = [s for n, s in att if "print" in n]
    rp = [s for n, s in att if "video" in n]
    return {"bpcer": float(np.mean(live < th)), "apcer": float(np.mean([s >= th for _, s in att])),
            "threshold": th, "print": float(np.mean(np.array(pr) >= th)) if pr else np.nan,
            "replay": float(np.mean(np.array(rp) >= th)) if rp else np.nan}


def poisoning(rows, target: float, floor: float) -> dict:
    from edge.vision.livecal import threshold_from

    attacks = [s for _, label, _, s in rows if label == 0]
    live = [s for _, label, _, s in rows if label == 1]
    return {"on attack frames only": threshold_from(attacks, target, floor),
            "unbounded, on attack frames only": threshold_from(attacks, target, 0.0, 1.0),
            "on 3 live frames": threshold_from(live[:3], target, floor)}


def _pct(v) -> str:
    return "-" if v != v else f"{100 * v:.1f}%"


def md_section(results: dict, floor: float, splits: int) -> str:
    lines = ["## Per-door liveness calibration", "",
             f"`python -m bench.livecal`: the door's liveness threshold set from live frames of its own camera "
             f"(`edge/vision/livecal.py`), calibrated on half the clients' (subjects') live frames and measured on the "
             f"other half's live frames and attacks, {splits} random splits averaged; against the model's own "
             f"threshold ({floor:.2f}). Bounds: never below the model's threshold, never above the ceiling.", "",
             "| set | rule | mean threshold | BPCER (live rejected) | APCER (attacks accepted) | print | replay |",
             "|---|---|---|---|---|---|---|"]
    for name, rs in results.items():
        for rule, r in rs.items():
            if rule == "poisoning":
                continue
            lines.append(f"| {name} | {rule} | {r['threshold']:.4f} | {_pct(r['bpcer'])} | {_pct(r['apcer'])} | "
                         f"{_pct(r['print'])} | {_pct(r['replay'])} |")
    lines += ["", "Poisoning (msu-dev, target 10%): the threshold a calibration sets"]
    for k, v in results["msu-dev"]["poisoning"].items():
        lines.append(f"- {k}: {v:.4f}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.livecal", description=__doc__.splitlines()[0])
    ap.add_argument("--msu", default="../shared/data/msu-dev.tgz")
    ap.add_argument("--nuaa", default="../shared/data/nuaa-dev.tgz")
    ap.add_argument("--model", default="models/doorface-liveness.tflite")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--md", help="replace this section of a markdown file (e.g. BENCHMARKS.md)")
    args = ap.parse_args(argv)
    missing = [p for p in (args.msu, args.nuaa) if not Path(p).is_file()]
    if missing:
        print(f"bench.livecal: {missing[0]} missing (../shared/data): nothing measured", file=sys.stderr)
        return 1
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.liveness import LivenessModel

    det = BlazeFaceDetector(args.detector, num_threads=1).load()
    model = LivenessModel(args.model, None, 1).load()
    floor = float(model.meta["threshold"])
    results = {}
    for name, path in progress("sets")([("msu-dev", args.msu), ("nuaa-dev", args.nuaa)]):
        rows = scores_of(path, det, model)
        rs = {f"model's threshold": fixed(rows, floor)}
        for t in TARGETS:
            rs[f"calibrated, target {t:.0%}"] = split_run(rows, t, floor, args.splits)
        rs["calibrated, target 10%, unbounded"] = split_run(rows, 0.10, floor, args.splits, bounded=False)
        rs["poisoning"] = poisoning(rows, 0.10, floor)
        results[name] = rs
    text = md_section(results, floor, args.splits)
    print(text)
    if args.md:
        from bench.model import update_md

        update_md(Path(args.md), "<!-- bench-livecal -->\n" + text + "<!-- /bench-livecal -->",
                  "<!-- bench-livecal -->", "<!-- /bench-livecal -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
