"""`python -m bench.liveattempt`: the door's liveness decision over an attempt's frames, on consecutive frames.

Consecutive frames of one attack are correlated: a per-frame error rate says little about a door that needs 3
agreeing frames of 5. This bench takes NUAA's raw frame sequences (about 0.2 s apart; the nuaa-dev subjects only,
0001-0008; the ``db/ClientRaw`` and ``db/ImposterRaw`` folders of the public imironica/liveness repository, read by
path and never committed), scores every frame with the shipped liveness model, cuts each sequence into attempts of
``--frames`` consecutive frames (5: the door's window), and asks of each attempt whether 3 of its frames count as
live under three rules:

- **per frame**: the frame's own score reaches the threshold (the door before this change);
- **evidence**: the mean log-odds of the attempt's frames so far reaches the threshold's log-odds;
- **both**: the frame's own score and the evidence so far (the door's rule now).

Thresholds are set where the per-frame APCER on these frames is 5%, 10% and 20% (the shipped model's own threshold
lets no NUAA print through, so the rules are compared where it errs), and where the per-frame BPCER is 5% and 10%. APCER: attack attempts with 3 live frames;
BPCER: live attempts without. Evaluation only (research licence).

    python -m bench.liveattempt --nuaa-raw DIR [--frames 5] [--md BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.common import progress

SUBJECTS = tuple(f"{i:04d}" for i in range(1, 9))
RULES = ("per frame", "evidence", "both")


def sequences(root: Path) -> dict:
    """``{(kind, subject, glasses, position, session): [paths in frame order]}``; kind ``live`` or ``print``."""
    seqs = defaultdict(list)
    for kind, folder in (("live", "ClientRaw"), ("print", "ImposterRaw")):
        for subj in SUBJECTS:
            for f in sorted((root / folder / subj).glob("*.jpg")):
                parts = f.stem.split("_")
                if len(parts) == 5:
                    seqs[(kind, *parts[:4])].append((int(parts[4]), f))
    return {k: [f for _, f in sorted(v)] for k, v in seqs.items()}


def score_all(seqs: dict, det, model) -> dict:
    """``{key: [score or None]}``: the largest face's liveness score in each frame."""
    import cv2

    from edge.vision.liveness import model_crops

    scales = [c["scale"] for c in model.meta["crops"]]
    out = {}
    for key, files in progress("sequences")(list(seqs.items())):
        s = []
        for f in files:
            rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
            faces = det.detect(rgb)
            if not faces:
                s.append(None)
                continue
            face = max(faces, key=lambda x: x.area)
            s.append(model.score_crops(model_crops(rgb, face.box, model.meta["box_map"], scales, model.size)))
        out[key] = s
    return out


def live_frames(scores, threshold: float, rule: str) -> int:
    """How many frames of one attempt count as live under ``rule`` (frames without a face do not count)."""
    from edge.vision.livecal import logit

    t = float(logit(threshold))
    n, total, seen = 0, 0.0, 0
    for s in scores:
        if s is None:
            continue
        seen += 1
        total += float(logit(s))
        own, evidence = float(logit(s)) >= t, total / seen >= t
        n += {"per frame": own, "evidence": evidence, "both": own and evidence}[rule]
    return n


def attempts(scored: dict, frames: int) -> list:
    """``[(kind, [scores])]``: consecutive, non-overlapping attempts of ``frames`` frames."""
    out = []
    for key, s in scored.items():
        for i in range(0, len(s) - frames + 1, frames):
            out.append((key[0], s[i:i + frames]))
    return out


def evaluate(scored: dict, frames: int, need: int = 3) -> list:
    frames_of = {kind: np.array([s for k, v in scored.items() if k[0] == kind for s in v if s is not None])
                 for kind in ("print", "live")}
    points = [(f"per-frame APCER {a:.0%}", float(np.quantile(frames_of["print"], 1 - a))) for a in (0.05, 0.10, 0.20)]
    points += [(f"per-frame BPCER {b:.0%}", float(np.quantile(frames_of["live"], b))) for b in (0.05, 0.10)]
    rows = []
    for label, th in points:
        row = {"point": label, "threshold": th}
        for rule in RULES:
            acc = {"live": [], "print": []}
            for kind, s in attempts(scored, frames):
                acc[kind].append(live_frames(s, th, rule) >= need)
            row[rule] = (float(np.mean(acc["print"])), 1 - float(np.mean(acc["live"])))
        rows.append(row)
    return rows


def md_section(rows: list, n_att: dict, frames: int) -> str:
    L = ["<!-- bench-liveattempt -->", "## Liveness over an attempt (`python -m bench.liveattempt`)", "",
         f"NUAA raw sequences of the nuaa-dev subjects (consecutive frames about 0.2 s apart), cut into attempts of "
         f"{frames} frames ({n_att['print']} print attempts, {n_att['live']} live); an attempt passes when 3 of its "
         "frames count as live. Per frame: the frame's own score; evidence: the mean log-odds of the attempt's frames "
         "so far; both: the door's rule. Thresholds where the per-frame APCER on these frames is 5/10/20% (the "
         "shipped model errs on no NUAA print at its own threshold), and where the per-frame BPCER is 5/10% (what "
         "the stricter rule costs live faces).", "",
         "| threshold set at | threshold | " + " | ".join(f"{r}: APCER / BPCER" for r in RULES) + " |",
         "|---|---|" + "---|" * len(RULES)]
    for r in rows:
        L.append(f"| {r['point']} | {r['threshold']:.4g} | "
                 + " | ".join(f"{100 * r[x][0]:.1f}% / {100 * r[x][1]:.1f}%" for x in RULES) + " |")
    return "\n".join(L + ["", "<!-- /bench-liveattempt -->"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.liveattempt", description=__doc__.splitlines()[0])
    ap.add_argument("--nuaa-raw", required=True, metavar="DIR", help="folder holding ClientRaw/ and ImposterRaw/")
    ap.add_argument("--frames", type=int, default=5)
    ap.add_argument("--model", default="models/doorface-liveness.tflite")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--md", help="also write the section into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    root = Path(args.nuaa_raw)
    if not (root / "ClientRaw").is_dir():
        print(f"bench.liveattempt: no ClientRaw/ under {root}", file=sys.stderr)
        return 1
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.liveness import LivenessModel

    det = BlazeFaceDetector(args.detector, num_threads=1).load()
    model = LivenessModel(args.model, None, 1).load()
    scored = score_all(sequences(root), det, model)
    rows = evaluate(scored, args.frames)
    att = attempts(scored, args.frames)
    n_att = {k: sum(1 for a, _ in att if a == k) for k in ("live", "print")}
    text = md_section(rows, n_att, args.frames)
    print(text)
    if args.md:
        from bench.model import update_md

        update_md(Path(args.md), text, "<!-- bench-liveattempt -->", "<!-- /bench-liveattempt -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
