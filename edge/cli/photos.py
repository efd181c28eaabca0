"""Commands that look at photos without touching the door: ``identify`` (who is in them, by the door's rule) and
``embed`` (embeddings for evaluation)."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from edge.cli.common import load_config, progress
from edge.errors import DoorfaceError


def add_parsers(sub, common) -> None:
    p = sub.add_parser("identify", parents=[common], help="who is in these images (one JSON line per image)")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true", help="(default) JSON lines")

    p = sub.add_parser("embed", parents=[common], help="embedding of the largest face per image, for evaluation")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", required=True, metavar="FILE.npz")


def _face_line(res, m, thr: float, margin: float, outside=None) -> dict:
    """One face of ``identify``: the door's single-frame rule (:func:`edge.door.decision.passes`) and its parts;
    ``outside``: why the matched person may not open now (their schedule), or None."""
    from edge.door.decision import passes

    recognised = passes(m.identity, m.score, m.margin, thr, margin, res.live, m.threshold)
    ok = recognised and outside is None
    reason = "" if ok else f"schedule: {outside}" if recognised else ("spoof" if not res.live else "unknown face")
    return {"box": [round(v, 1) for v in res.face.box], "identity": m.identity if ok else None,
            "best": m.identity, "score": round(m.score, 4), "margin": round(m.margin, 4),
            "person_threshold": round(max(thr, m.threshold), 4),
            "strangers": round(m.crowd, 4) if m.crowd > -1 else None,
            "liveness": None if res.liveness is None else round(res.liveness, 4), "live": res.live,
            "decision": "grant" if ok else "deny", "reason": reason}


def cmd_identify(args) -> int:
    from edge.build import LIVENESS_OFF, build_analyzer, calibrate_liveness, load_cohort, load_index
    from edge.vision.images import read_rgb
    from edge.vision.sidecar import operating_point, stranger_neighbours

    cfg = load_config(args)
    analyzer = build_analyzer(cfg)
    meta = analyzer.embedder.load().meta
    state = Path(cfg["state"]["dir"])
    index = load_index(state, meta["sha256"], load_cohort(cfg, state, analyzer.embedder),
                       calibrated=cfg["match"]["calibration"] != "off",
                       stranger_k=stranger_neighbours(meta, cfg["match"]))
    thr, margin, _ = operating_point(meta, cfg["match"])
    if analyzer.liveness is None:
        print(f"doorface: warning: {LIVENESS_OFF}", file=sys.stderr)
    else:
        analyzer.liveness.load()
        calibrate_liveness(cfg, state, analyzer.liveness)   # this door's threshold, as the daemon uses it
    bad = 0
    now = dt.datetime.now()       # the door's local time, for people's schedules
    for path in args.images:
        try:
            rgb = read_rgb(path)
        except DoorfaceError as exc:   # a line for this path, then the next one: one bad file stops nothing
            print(json.dumps({"image": path, "error": str(exc)}))
            bad += 1
            continue
        faces = []
        for f in analyzer.faces(rgb):
            res = analyzer.describe(rgb, f, gate=False)
            m = index.match(res.embedding)
            faces.append(_face_line(res, m, thr, margin, index.outside_hours(m.identity, now)))
        out = {"image": path, "faces": faces, "threshold": round(thr, 4),
               "liveness_threshold": None if analyzer.liveness is None else round(analyzer.liveness.threshold, 4)}
        print(json.dumps(out))
    return _unreadable(bad, len(args.images))


def _unreadable(bad: int, total: int) -> int:
    """The exit code of a command over images: 1 when any could not be read, said in one line on stderr."""
    if bad:
        print(f"doorface: {bad} of {total} image(s) could not be read", file=sys.stderr)
    return 1 if bad else 0


def cmd_embed(args) -> int:
    import numpy as np

    from edge.build import build_analyzer
    from edge.vision.images import read_rgb

    cfg = load_config(args)
    analyzer = build_analyzer(cfg)
    analyzer.embedder.load()
    dim = analyzer.embedder.dim
    embs, detected, bad = [], [], 0
    for path in progress("embed")(args.images):
        try:
            rgb = read_rgb(path)
        except DoorfaceError as exc:
            print(f"doorface: {exc}", file=sys.stderr)
            bad += 1
            rgb = None
        faces = analyzer.faces(rgb) if rgb is not None else []
        if faces:
            embs.append(analyzer.describe(rgb, faces[0], gate=False).embedding)
        else:
            embs.append(np.zeros(dim, np.float32))
        detected.append(bool(faces))
    np.savez(args.out, paths=np.array(args.images), embeddings=np.stack(embs).astype(np.float32),
             detected=np.array(detected))
    print(f"{sum(detected)}/{len(detected)} faces embedded -> {args.out}")
    return _unreadable(bad, len(args.images))


COMMANDS = {"identify": cmd_identify, "embed": cmd_embed}
