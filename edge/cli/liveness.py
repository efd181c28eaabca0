"""``doorface liveness``: this door's liveness calibration (:mod:`edge.vision.livecal`): calibrate from the camera
or from photos taken with it, show it, reset it."""
from __future__ import annotations

import time
from pathlib import Path

from edge.cli.common import load_config, progress, setup_logging
from edge.errors import DoorfaceError


def add_parsers(sub, common) -> None:
    p = sub.add_parser("liveness", parents=[common],
                       help="this door's liveness threshold, set from live faces at its camera: calibrate, show, reset")
    lsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = lsub.add_parser("calibrate", parents=[common],
                        help="add live faces (people who live here, in front of the door camera) and recalibrate")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--camera", action="store_true", help="from the configured camera (stop the door first)")
    g.add_argument("--images", nargs="+", metavar="PATH", help="photos taken with the door camera (files or folders)")
    r.add_argument("--seconds", type=float, default=20.0, help="with --camera: how long to watch (default 20)")
    r.add_argument("--source", help="camera URI for --camera (overrides camera.source)")
    lsub.add_parser("show", parents=[common])
    lsub.add_parser("reset", parents=[common], help="forget this door's calibration: the model's threshold again")


def _liveness(cfg):
    from edge.build import build_analyzer

    analyzer = build_analyzer(cfg)
    if analyzer.liveness is None:
        raise DoorfaceError("liveness is off (liveness.enabled = false): nothing to calibrate")
    analyzer.liveness.load()
    return analyzer


def face_scores(analyzer, rgbs) -> list:
    """The liveness score of the largest face of each frame that passes the quality gates (others are skipped)."""
    out = []
    for rgb in rgbs:
        faces = analyzer.faces(rgb)
        if faces:
            res = analyzer.describe(rgb, faces[0])
            if not res.rejected and res.liveness is not None:
                out.append(res.liveness)
    return out


def _camera_frames(cfg, seconds: float):
    from edge.door.camera import open_source

    cam = cfg["camera"]
    src = open_source(cam["source"], cam["width"], cam["height"], cam["fps"])
    print(f"look at the door camera for {seconds:g} s (move a little, as you would at the door)")
    end = time.monotonic() + seconds
    with src:
        while time.monotonic() < end:
            frame = src.read()
            if frame is None:
                return
            yield frame.image


def _image_frames(paths):
    from edge.vision.images import expand_paths, read_rgb

    for f in progress("calibrate")(expand_paths(paths)):
        try:
            yield read_rgb(f)
        except DoorfaceError as exc:
            print(f"skipped: {exc}")


def _calibrate(args, cfg) -> int:
    from edge.cli.people import add_live_frames

    analyzer = _liveness(cfg)
    frames = _camera_frames(cfg, args.seconds) if args.camera else _image_frames(args.images)
    scores = face_scores(analyzer, frames)
    if not scores:
        raise DoorfaceError("no usable face seen: nothing calibrated (good light, one face, looking at the camera)")
    print(add_live_frames(cfg, analyzer.liveness, scores, "camera" if args.camera else f"{len(args.images)} photo path(s)"))
    print("a running door takes it at `systemctl reload doorface` (SIGHUP)")
    return 0


def cmd_liveness(args) -> int:
    from edge.build import calibrate_liveness
    from edge.vision import livecal

    cfg = load_config(args, {"camera.source": getattr(args, "source", None)})
    setup_logging(cfg["log"]["level"], args.verbose)
    if args.action == "calibrate":
        return _calibrate(args, cfg)
    state = Path(cfg["state"]["dir"])
    if args.action == "reset":
        print(f"removed {livecal.path(state)}" if livecal.reset(state) else "no calibration to remove")
    lv = _liveness(cfg).liveness
    print(calibrate_liveness(cfg, state, lv))
    return 0


COMMANDS = {"liveness": cmd_liveness}
