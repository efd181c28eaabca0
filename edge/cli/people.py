"""Commands about who is known: ``enroll`` (from photos or the camera) and ``users`` (list, remove, rename,
re-embed after a model change)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from edge.cli.common import analyzer_and_gallery, load_config, progress, setup_logging
from edge.people.names import shown


def add_parsers(sub, common) -> None:
    p = sub.add_parser("enroll", parents=[common], help="enroll a person from images or the camera")
    p.add_argument("name")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--images", nargs="+", metavar="PATH", help="image files or folders")
    g.add_argument("--camera", action="store_true", help="guided capture from the configured camera")
    p.add_argument("--source", help="camera URI for --camera (overrides camera.source)")
    p.add_argument("--count", type=int, default=5, help="templates to capture with --camera (default 5)")
    p.add_argument("--force", action="store_true",
                   help="enroll even if the face matches another person or lies within the door's margin of one")

    p = sub.add_parser("users", parents=[common], help="list, remove, rename people; re-embed after a model change")
    usub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    usub.add_parser("list", parents=[common])
    r = usub.add_parser("remove", parents=[common])
    r.add_argument("name")
    r = usub.add_parser("rename", parents=[common])
    r.add_argument("old")
    r.add_argument("new")
    usub.add_parser("reembed", parents=[common])
    r = usub.add_parser("access", parents=[common], help="when a person may open the door: weekly hours, valid until")
    r.add_argument("name")
    r.add_argument("--hours", help='"always", or windows such as "mon-fri 08:00-18:00; sat 09:00-12:00"')
    r.add_argument("--until", help='the last day they may open (YYYY-MM-DD, the door\'s local time), or "never"')


def cmd_enroll(args) -> int:
    from edge.build import load_cohort
    from edge.people import enroll
    from edge.people.names import check_name
    from edge.vision.sidecar import operating_point, stranger_neighbours

    name = check_name(args.name)     # before anything is loaded: a bad name costs nothing
    cfg = load_config(args, {"camera.source": getattr(args, "source", None)})
    setup_logging(cfg["log"]["level"], args.verbose)
    analyzer, g = analyzer_and_gallery(cfg, create=True)
    cohort = load_cohort(cfg, Path(cfg["state"]["dir"]), analyzer.embedder)
    live = [] if analyzer.liveness is not None and cfg["liveness"]["calibration"] == "door" else None
    with g:
        thr, margin, _ = operating_point(analyzer.embedder.meta, cfg["match"])
        if args.images:
            n = enroll.enroll_images(name, args.images, analyzer, g, thr, args.force, progress("enroll"),
                                     min_margin=margin, cohort=cohort)
        else:
            from edge.door.camera import open_source

            cam = cfg["camera"]
            src = open_source(cam["source"], cam["width"], cam["height"], cam["fps"])
            n = enroll.enroll_camera(name, src, analyzer, g, thr, args.count, args.force, min_margin=margin,
                                     cohort=cohort, live_scores=live)
        person = next(p for p in g.people() if p.name == name)
        near = enroll.strangers_level(g.index(analyzer.embedder.sha256), person.name, cohort,
                                      stranger_neighbours(analyzer.embedder.meta, cfg["match"]))
    print(f"enrolled {shown(name)}: {n} template(s)")
    for line in enroll.threshold_lines(person, thr, cohort, near, margin):
        print(line)
    if live:
        print(add_live_frames(cfg, analyzer.liveness, live, f"enroll --camera {name}"))
    return 0


def add_live_frames(cfg, liveness, scores, source: str) -> str:
    """This door's live frames into its liveness calibration (:mod:`edge.vision.livecal`); the line to print."""
    from edge.build import calibrate_liveness
    from edge.vision import livecal

    state = Path(cfg["state"]["dir"])
    cal = livecal.load(state, liveness.sha256) or livecal.Calibration(liveness.sha256)
    n = cal.add(scores, source)
    livecal.save(state, cal)
    return f"liveness: {n} live frame(s) of this door added; {calibrate_liveness(cfg, state, liveness)}"


def recalibrated(cfg, g, cohort) -> None:
    """Print every person's threshold after a recalibration (with the strict-threshold warnings)."""
    from edge.people.enroll import strangers_level, threshold_lines
    from edge.vision.sidecar import operating_point, read_sidecar, stranger_neighbours

    meta = read_sidecar(cfg["model"]["embedder"])
    thr, margin, _ = operating_point(meta, cfg["match"])
    k = stranger_neighbours(meta, cfg["match"])
    index = g.index(meta["sha256"]) if k and cohort is not None else None
    for person in g.people():
        near = strangers_level(index, person.name, cohort, k) if index is not None else None
        for line in threshold_lines(person, thr, cohort, near, margin):
            print(line)


def _reembed(cfg) -> int:
    from functools import partial

    from edge.build import calibration_line, load_cohort
    from edge.vision.jitter import template_embedding

    analyzer, g = analyzer_and_gallery(cfg)
    cohort = load_cohort(cfg, Path(cfg["state"]["dir"]), analyzer.embedder)
    with g:
        n = g.reembed(partial(template_embedding, analyzer.embedder.embed_crop), analyzer.embedder.sha256,
                      progress("reembed"), input_size=analyzer.embedder.input_size, cohort=cohort)
        print(f"re-embedded {n} template(s) with model {analyzer.embedder.sha256[:12]}; "
              f"{calibration_line(cfg, cohort)}")
        recalibrated(cfg, g, cohort)
    return 0


def _list(cfg, g) -> None:
    from edge.vision.sidecar import operating_point, read_sidecar

    thr = operating_point(read_sidecar(cfg["model"]["embedder"]), cfg["match"])[0]
    off = cfg["match"]["calibration"] == "off"
    people = g.people()
    for p in people:
        created = dt.datetime.fromtimestamp(p.created).strftime("%Y-%m-%d %H:%M")
        own = "not calibrated" if p.threshold is None else f"own {p.threshold:.3f}"
        used = thr if off or p.threshold is None else max(thr, p.threshold)
        print(f"{shown(p.name)}\t{p.templates} template(s)\tenrolled {created}\tthreshold {used:.3f} "
              f"({own}{', not used: calibration off' if off and p.threshold is not None else ''})\t"
              f"access {p.access.describe()}")
    if not people:
        print("nobody enrolled")
    print(_liveness_line(cfg))


def _liveness_line(cfg) -> str:
    """How this door tells a live face from a photo (model, threshold and its source), under the people list."""
    from edge.build import LIVENESS_OFF, build_liveness, calibrate_liveness

    lv = build_liveness(cfg)
    if lv is None:
        return f"liveness: OFF ({LIVENESS_OFF})"
    lv.load()
    return f"liveness: {calibrate_liveness(cfg, Path(cfg['state']['dir']), lv)}"


def cmd_users(args) -> int:
    from edge.people import gallery as gal

    cfg = load_config(args)
    if args.action == "reembed":
        return _reembed(cfg)
    with gal.Gallery(Path(cfg["state"]["dir"]) / gal.FILENAME) as g:
        if args.action == "list":
            _list(cfg, g)
        elif args.action == "remove":
            print(f"removed {shown(g.remove(args.name))}")
        elif args.action == "rename":
            new = g.rename(args.old, args.new)
            print(f"renamed {shown(args.old)} -> {shown(new)}")
        elif args.action == "access":
            _access(g, args)
    return 0


def _access(g, args) -> None:
    """``users access``: both options parsed before anything changes; one given keeps the other as it was. The
    running door uses it after ``systemctl reload doorface`` (SIGHUP)."""
    from edge.people.schedule import Access, parse_hours, parse_until

    if args.hours is None and args.until is None:
        person = next((p for p in g.people() if p.name == g.stored_name(args.name)), None)
        print(f"{shown(person.name)}: access {person.access.describe()}")
        return
    hours = parse_hours(args.hours) if args.hours is not None else None
    until = parse_until(args.until) if args.until is not None else None
    name = g.stored_name(args.name)
    old = next(p for p in g.people() if p.name == name).access
    new = Access(old.windows if hours is None else hours, old.valid_until if args.until is None else until)
    g.set_access(name, new)
    print(f"{shown(name)}: access {new.describe()} (reload the door to use it: systemctl reload doorface)")


COMMANDS = {"enroll": cmd_enroll, "users": cmd_users}
