"""``doorface``: the command line of the door (run, enroll, users, events, identify, embed, check, config).

Every command takes ``--config FILE`` and ``--state-dir DIR``. Errors are one line on stderr with a non-zero
exit code (a traceback only with ``DEBUG=1``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path

from edge import __version__
from edge.errors import ConfigError, DoorfaceError

log = logging.getLogger("doorface")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config (default: /etc/doorface/doorface.toml if present)")
    common.add_argument("--state-dir", metavar="DIR", help="where the gallery and access log live (overrides state.dir)")
    common.add_argument("--model", metavar="TFLITE", help="embedding model (overrides model.embedder)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging (rejected faces and why)")

    ap = argparse.ArgumentParser(prog="doorface", description="Face-recognition door lock (edge runtime).")
    ap.add_argument("--version", action="version", version=f"doorface {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="run the door daemon")
    p.add_argument("--source", help="camera URI, video file or image folder (overrides camera.source)")
    p.add_argument("--relay", help="relay backend (overrides relay.backend), e.g. mock")
    p.add_argument("--events-out", metavar="FILE", help="also write one JSON line per decision to FILE")
    p.add_argument("--timeline", action="store_true", help="with the mock relay: print the relay's timeline at exit")
    p.add_argument("--realtime", action="store_true", help="play video files and folders at their frame rate")

    p = sub.add_parser("relay", parents=[common],
                       help="drive the strike to its locked level and exit (the service's ExecStartPre/ExecStopPost)")
    p.add_argument("--lock", action="store_true", required=True, help="lock (the only action)")
    p.add_argument("--relay", help="relay backend (overrides relay.backend)")
    p.add_argument("--pin", help="fallback pin when the config cannot be read (baked in by the installer)")
    p.add_argument("--active-low", action="store_true", help="with --pin: the relay energises on a low level")
    p.add_argument("--fallback-backend", default="gpiozero", help="with --pin: backend when the config is unreadable")

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

    p = sub.add_parser("cohort", parents=[common],
                       help="the stranger cohort per-person thresholds are set against: build, show, reset")
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = csub.add_parser("build", parents=[common],
                        help="embed every face under a folder (one per image) and make it this door's cohort")
    r.add_argument("--images", required=True, metavar="DIR", help="folder of face images (searched recursively)")
    r.add_argument("--source", help="provenance to record (default: the folder's path), e.g. where the images "
                                    "came from and under which licence")
    csub.add_parser("show", parents=[common])
    csub.add_parser("reset", parents=[common], help="go back to the cohort shipped beside the model")

    p = sub.add_parser("events", parents=[common], help="show the access log")
    p.add_argument("--since", help="ISO date/time, or a duration like 30m, 12h, 7d")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("identify", parents=[common], help="who is in these images (one JSON line per image)")
    p.add_argument("images", nargs="+")
    p.add_argument("--json", action="store_true", help="(default) JSON lines")

    p = sub.add_parser("embed", parents=[common], help="embedding of the largest face per image, for evaluation")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", required=True, metavar="FILE.npz")

    sub.add_parser("check", parents=[common], help="check model, detector, camera, relay, gallery and config")

    p = sub.add_parser("config", parents=[common], help="validate or print the configuration")
    p.add_argument("--validate", action="store_true", help="validate and report (default)")
    p.add_argument("--print-default", action="store_true", help="print the packaged, commented default")
    return ap


def load_config(args, extra=None) -> dict:
    from edge import config

    overrides = {"state.dir": getattr(args, "state_dir", None), "model.embedder": getattr(args, "model", None)}
    overrides.update(extra or {})
    return config.load(args.config, overrides)


def _setup_logging(cfg_level: str, verbose: bool):
    level = logging.DEBUG if verbose else getattr(logging, cfg_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)


def _progress(desc):
    def wrap(items):
        try:
            from tqdm import tqdm
        except ImportError:
            return items
        return tqdm(items, desc=desc, disable=not sys.stderr.isatty() and not os.environ.get("DOORFACE_PROGRESS"))
    return wrap


def relay_settings(args) -> tuple:
    """``(backend, pin, active_high, where)`` for the re-lock helper: only [relay] of the config, read leniently
    (a config broken elsewhere must not stop the door from being locked), else the installer's baked-in values."""
    try:
        from edge.config import SYSTEM_CONFIG, tomllib

        path = args.config or (str(SYSTEM_CONFIG) if SYSTEM_CONFIG.is_file() else None)
        layer = tomllib.loads(Path(path).read_text()).get("relay", {}) if path else {}
        from edge.config import defaults

        r = {**defaults()["relay"], **layer}
        if not isinstance(r["active_high"], bool):
            raise ValueError("relay.active_high is not true/false")
        return args.relay or r["backend"], str(r["pin"]), r["active_high"], path or "defaults"
    except Exception as exc:  # unreadable file, bad TOML, wrong type: use what the installer baked in
        if not args.pin:
            raise ConfigError(f"cannot read the relay settings ({exc}) and no --pin fallback was given") from None
        return args.relay or args.fallback_backend, args.pin, not args.active_low, f"fallback ({exc})"


def cmd_relay(args) -> int:
    from edge.relay import relock

    backend, pin, active_high, where = relay_settings(args)
    relock(backend, pin, active_high)
    print(f"relay locked: {backend} pin {pin} active-{'high' if active_high else 'low'} (from {where})")
    return 0


def cmd_run(args) -> int:
    from edge.daemon import Daemon

    cfg = load_config(args, {"camera.source": args.source, "relay.backend": args.relay})
    _setup_logging(cfg["log"]["level"], args.verbose)
    d = Daemon(cfg, cfg["state"]["dir"], events_out=args.events_out, realtime=args.realtime)
    code = d.run()
    if args.timeline and hasattr(d.relay, "timeline"):
        print("relay timeline (s since start, state):")
        for t, on in d.relay.timeline():
            print(f"  {t:8.3f}  {'UNLOCKED (energised)' if on else 'locked'}")
    return code


def _analyzer_and_gallery(cfg, create=False):
    from edge import gallery as gal
    from edge.build import build_analyzer

    analyzer = build_analyzer(cfg)
    analyzer.embedder.load()
    g = gal.Gallery(Path(cfg["state"]["dir"]) / gal.FILENAME).open(create=create)
    return analyzer, g


def cmd_enroll(args) -> int:
    from edge import enroll

    cfg = load_config(args, {"camera.source": getattr(args, "source", None)})
    _setup_logging(cfg["log"]["level"], args.verbose)
    analyzer, g = _analyzer_and_gallery(cfg, create=True)
    from edge.build import load_cohort

    cohort = load_cohort(cfg, Path(cfg["state"]["dir"]), analyzer.embedder)
    with g:
        from edge.sidecar import operating_point

        thr, margin, _ = operating_point(analyzer.embedder.meta, cfg["match"])
        if args.images:
            n = enroll.enroll_images(args.name, args.images, analyzer, g, thr, args.force, _progress("enroll"),
                                     min_margin=margin, cohort=cohort)
        else:
            from edge.camera import open_source

            cam = cfg["camera"]
            src = open_source(cam["source"], cam["width"], cam["height"], cam["fps"])
            n = enroll.enroll_camera(args.name, src, analyzer, g, thr, args.count, args.force, min_margin=margin,
                                     cohort=cohort)
        person = next(p for p in g.people() if p.name == args.name.strip())
        from edge.sidecar import stranger_neighbours

        near = enroll.strangers_level(g.index(analyzer.embedder.sha256), person.name, cohort,
                                      stranger_neighbours(analyzer.embedder.meta, cfg["match"]))
    print(f"enrolled {args.name}: {n} template(s)")
    for line in enroll.threshold_lines(person, thr, cohort, near, margin):
        print(line)
    return 0


def _recalibrated(cfg, g, cohort) -> None:
    """Print every person's threshold after a recalibration (with the strict-threshold warnings)."""
    from edge.enroll import strangers_level, threshold_lines
    from edge.sidecar import operating_point, read_sidecar, stranger_neighbours

    meta = read_sidecar(cfg["model"]["embedder"])
    thr, margin, _ = operating_point(meta, cfg["match"])
    k = stranger_neighbours(meta, cfg["match"])
    index = g.index(meta["sha256"]) if k and cohort is not None else None
    for person in g.people():
        near = strangers_level(index, person.name, cohort, k) if index is not None else None
        for line in threshold_lines(person, thr, cohort, near, margin):
            print(line)


def cmd_users(args) -> int:
    from edge import gallery as gal

    cfg = load_config(args)
    path = Path(cfg["state"]["dir"]) / gal.FILENAME
    if args.action == "reembed":
        from functools import partial

        from edge.build import calibration_line, load_cohort
        from edge.jitter import template_embedding

        analyzer, g = _analyzer_and_gallery(cfg)
        cohort = load_cohort(cfg, Path(cfg["state"]["dir"]), analyzer.embedder)
        with g:
            n = g.reembed(partial(template_embedding, analyzer.embedder.embed_crop), analyzer.embedder.sha256,
                          _progress("reembed"),
                          input_size=analyzer.embedder.input_size, cohort=cohort)
            print(f"re-embedded {n} template(s) with model {analyzer.embedder.sha256[:12]}; "
                  f"{calibration_line(cfg, cohort)}")
            _recalibrated(cfg, g, cohort)
        return 0
    with gal.Gallery(path) as g:
        if args.action == "list":
            from edge.sidecar import operating_point, read_sidecar

            thr = operating_point(read_sidecar(cfg["model"]["embedder"]), cfg["match"])[0]
            off = cfg["match"]["calibration"] == "off"
            people = g.people()
            for p in people:
                created = dt.datetime.fromtimestamp(p.created).strftime("%Y-%m-%d %H:%M")
                own = "not calibrated" if p.threshold is None else f"own {p.threshold:.3f}"
                used = thr if off or p.threshold is None else max(thr, p.threshold)
                print(f"{p.name}\t{p.templates} template(s)\tenrolled {created}\tthreshold {used:.3f} "
                      f"({own}{', not used: calibration off' if off and p.threshold is not None else ''})")
            if not people:
                print("nobody enrolled")
        elif args.action == "remove":
            g.remove(args.name)
            print(f"removed {args.name}")
        elif args.action == "rename":
            g.rename(args.old, args.new)
            print(f"renamed {args.old} -> {args.new}")
    return 0


def cmd_cohort(args) -> int:
    import numpy as np

    from edge import cohort as co
    from edge import gallery as gal
    from edge.build import calibration_line, load_cohort

    cfg = load_config(args)
    state = Path(cfg["state"]["dir"])
    if args.action == "build":
        analyzer, g = _analyzer_and_gallery(cfg, create=True)
        emb = analyzer.embedder
        shipped = co.shipped_path(emb.model_path)
        base = co.load(shipped, emb.sha256).meta if shipped.exists() else {}
        root = Path(args.images)
        if not root.is_dir():
            raise DoorfaceError(f"no such folder: {root}")
        embs, files, skipped = co.embed_folder(root, analyzer, _progress("cohort"))
        if len(embs) < co.MIN_COHORT:
            raise DoorfaceError(f"{len(embs)} faces found in {files} images under {root}: a cohort needs at "
                                f"least {co.MIN_COHORT} (a few hundred of people like those at this door is better)")
        meta = {"source": args.source or str(root.resolve()), "images": files, "skipped": skipped,
                "model_sha256": emb.sha256, "model_file": Path(emb.model_path).name,
                "built_by": "doorface cohort build"}
        if base.get("genuine_quantiles"):
            meta["genuine_quantiles"] = base["genuine_quantiles"]
            meta["genuine_source"] = base.get("genuine_source", "")
        from edge.sidecar import operating_point

        thr = operating_point(emb.meta, cfg["match"])[0]
        with g:
            index = g.index(emb.sha256)
            enrolled = [m.identity for m in map(index.match, embs) if m.identity is not None and m.score >= thr]
            cohort = co.make(np.stack(embs), meta)
            target = state / co.FILENAME
            if cfg["match"]["calibration"] == "off":
                co.write(cohort, target)
                n = 0
            else:   # the file is written last inside the gallery's transaction: if it fails, nothing changed
                n = g.recalibrate(cohort, emb.sha256, then=lambda: co.write(cohort, target))
            cohort = co.load(target, emb.sha256)
            print(f"cohort: {len(embs)} faces from {files} images under {root} ({skipped} without a face) "
                  f"-> {cohort.path}; recalibrated {n} people")
            if enrolled:
                print(f"warning: {len(enrolled)} cohort faces match enrolled people "
                      f"({', '.join(sorted(set(enrolled))[:3])}): take them out of the folder and build again "
                      "(a person's own photos in the cohort make their threshold needlessly strict)")
            _recalibrated(cfg, g, cohort)
        return 0
    from edge.embedder import Embedder

    emb = Embedder(cfg["model"]["embedder"], cfg["model"]["threads"]).load()
    if args.action == "reset":
        own = state / co.FILENAME
        if own.exists():
            own.unlink()
            print(f"removed {own}")
        cohort = load_cohort(cfg, state, emb)
        path = state / gal.FILENAME
        if path.exists():
            with gal.Gallery(path) as g:
                n = g.recalibrate(cohort, emb.sha256) if cfg["match"]["calibration"] != "off" else 0
                print(f"recalibrated {n} people; {calibration_line(cfg, cohort)}")
                _recalibrated(cfg, g, cohort)
        else:
            print(calibration_line(cfg, cohort))
        return 0
    cohort = co.active(state, emb.model_path, emb.sha256)
    if cohort is None:
        print(f"no cohort: none built in {state} and none shipped beside {emb.model_path}")
        return 0
    m = cohort.meta
    print(f"cohort: {cohort.path} ({'this door' if cohort.path.parent == state else 'shipped with the model'})")
    for key in ("name", "source", "licence", "count", "identities", "images", "skipped", "model_file", "model_sha256",
                "created", "built_by", "k", "far", "embeddings_sha256"):
        if key in m:
            print(f"  {key}: {m[key]}")
    print(calibration_line(cfg, cohort))
    return 0


def parse_since(text):
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(f"--since: expected an ISO date/time or a duration like 12h, not {text!r}") from None


def cmd_events(args) -> int:
    from edge.accesslog import FILENAME, AccessLog

    cfg = load_config(args)
    path = Path(cfg["state"]["dir"]) / FILENAME
    if not path.exists():
        print("no access log yet")
        return 0
    log_ = AccessLog(path)
    for e in log_.events(parse_since(args.since), args.limit):
        if args.json:
            print(json.dumps(e))
        else:
            when = dt.datetime.fromtimestamp(e["ts"]).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{when}  {e['decision']:<7} {e['identity'] or '-':<20} score={e['score']:.3f}  {e['reason'] or ''}")
    log_.close()
    return 0


def cmd_identify(args) -> int:
    from edge.build import build_analyzer, load_index
    from edge.enroll import read_rgb

    cfg = load_config(args)
    analyzer = build_analyzer(cfg)
    meta = analyzer.embedder.load().meta
    from edge.build import load_cohort

    state = Path(cfg["state"]["dir"])
    from edge.decision import passes
    from edge.sidecar import operating_point, stranger_neighbours

    analyzer.index = load_index(state, meta["sha256"], load_cohort(cfg, state, analyzer.embedder),
                                calibrated=cfg["match"]["calibration"] != "off",
                                stranger_k=stranger_neighbours(meta, cfg["match"]))
    thr, margin, _ = operating_point(meta, cfg["match"])
    if analyzer.liveness is None:
        from edge.build import LIVENESS_OFF

        print(f"doorface: warning: {LIVENESS_OFF}", file=sys.stderr)
    else:
        analyzer.liveness.load()
    code = 0
    for path in args.images:
        try:
            rgb = read_rgb(path)
        except DoorfaceError as exc:
            print(json.dumps({"image": path, "error": str(exc)}))
            code = 1
            continue
        faces = []
        for f in analyzer.faces(rgb):
            res = analyzer.describe(rgb, f, gate=False)
            m = res.match
            ok = passes(m.identity, m.score, m.margin, thr, margin, res.live, m.threshold)
            reason = "" if ok else ("spoof" if not res.live else "unknown face")
            faces.append({"box": [round(v, 1) for v in f.box], "identity": m.identity if ok else None,
                          "best": m.identity, "score": round(m.score, 4), "margin": round(m.margin, 4),
                          "person_threshold": round(max(thr, m.threshold), 4),
                          "strangers": round(m.crowd, 4) if m.crowd > -1 else None,
                          "liveness": None if res.liveness is None else round(res.liveness, 4), "live": res.live,
                          "decision": "grant" if ok else "deny", "reason": reason})
        out = {"image": path, "faces": faces, "threshold": round(thr, 4),
               "liveness_threshold": None if analyzer.liveness is None else round(analyzer.liveness.threshold, 4)}
        print(json.dumps(out))
    return code


def cmd_embed(args) -> int:
    import numpy as np

    from edge.build import build_analyzer
    from edge.enroll import read_rgb

    cfg = load_config(args)
    analyzer = build_analyzer(cfg)
    analyzer.embedder.load()
    dim = analyzer.embedder.dim
    embs, detected = [], []
    for path in _progress("embed")(args.images):
        try:
            rgb = read_rgb(path)
            faces = analyzer.faces(rgb)
        except DoorfaceError:
            faces = []
        if faces:
            embs.append(analyzer.describe(rgb, faces[0], gate=False).embedding)
        else:
            embs.append(np.zeros(dim, np.float32))
        detected.append(bool(faces))
    np.savez(args.out, paths=np.array(args.images), embeddings=np.stack(embs).astype(np.float32),
             detected=np.array(detected))
    print(f"{sum(detected)}/{len(detected)} faces embedded -> {args.out}")
    return 0


def cmd_check(args) -> int:
    from edge import gallery as gal
    from edge.camera import open_source
    from edge.build import build_analyzer
    from edge.relay import make_relay

    results = []

    def item(name, fn):
        try:
            results.append((name, True, fn() or "OK"))
        except Exception as exc:  # report every failure as one line
            results.append((name, False, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__))

    cfg = {}

    def config_ok():
        cfg.update(load_config(args))
        return f"OK ({args.config or 'defaults + /etc/doorface/doorface.toml if present'})"
    item("config", config_ok)
    if not cfg:
        print(f"config: FAIL {results[-1][2]}")
        return 1
    analyzer = build_analyzer(cfg)

    def model_ok():
        from edge.sidecar import operating_point

        e = analyzer.embedder.load()
        src = e.meta.get("source")
        what = f"port of {src['file']} from {src['package']} {src['version']}, " if src else ""
        thr, margin, far = operating_point(e.meta, cfg["match"])
        return f"OK {Path(e.model_path).name} ({what}{e.meta.get('quantization', '?')}, {e.dim}-D, " \
               f"{e.input_size}px {e.template}, sha256 {e.sha256[:12]}, runtime {e.backend}; threshold {thr:.3f}" \
               f"{f' (FAR {far})' if far else ''}, margin {margin:g})"
    item("model", model_ok)

    def liveness_ok():
        lv = analyzer.liveness
        if lv is None:
            from edge.build import LIVENESS_OFF

            return f"OFF (warning: {LIVENESS_OFF})"
        lv.load()
        src = lv.meta.get("source", {})
        return f"OK {Path(lv.model_path).name} ({src.get('licence', '?')}, {lv.meta.get('quantization', '?')}, " \
               f"sha256 {lv.sha256[:12]}, runtime {lv.backend}; live when score >= {lv.threshold:.2f})"
    item("liveness", liveness_ok)

    def detector_ok():
        analyzer.detector.load()
        return f"OK {Path(analyzer.detector.model_path).name} (runtime {analyzer.detector.backend})"
    item("detector", detector_ok)

    def gallery_ok():
        path = Path(cfg["state"]["dir"]) / gal.FILENAME
        if not path.exists():
            return f"OK (empty: no gallery at {path} yet)"
        with gal.Gallery(path) as g:
            sha = analyzer.embedder.sha256 if analyzer.embedder.meta else None
            people = g.people()
            if sha:
                g.index(sha, cohort[0].sha256 if cohort and cohort[0] is not None else None)
            return f"OK {len(people)} people, {sum(p.templates for p in people)} templates"

    cohort = []

    def cohort_ok():
        from edge.build import calibration_line, load_cohort

        cohort.append(load_cohort(cfg, Path(cfg["state"]["dir"]), analyzer.embedder))
        line = calibration_line(cfg, cohort[0], analyzer.embedder.meta or None)
        return ("OK " if cohort[0] is not None else "WARNING ") + line
    item("cohort", cohort_ok)
    item("gallery", gallery_ok)

    def camera_ok():
        cam = cfg["camera"]
        src = open_source(cam["source"], cam["width"], cam["height"], cam["fps"])
        with src:
            frame = src.read()
        if frame is None:
            raise DoorfaceError(f"{src.name} gave no frame")
        return f"OK {src.name} {frame.image.shape[1]}x{frame.image.shape[0]}"
    item("camera", camera_ok)

    def relay_ok():
        r = cfg["relay"]
        relay = make_relay(r["backend"], r["pin"], r["active_high"])
        try:
            relay.lock()
        finally:
            relay.close()
        return f"OK {r['backend']} pin {r['pin']} (locked)"
    item("relay", relay_ok)
    for name, ok, msg in results:
        print(f"{name:<9} {msg if ok else 'FAIL ' + msg}")
    return 0 if all(ok for _, ok, _ in results) else 1


def cmd_config(args) -> int:
    from edge import config

    if args.print_default:
        print(config.default_text(), end="")
        return 0
    cfg = load_config(args)
    print(f"config OK: {args.config or 'packaged defaults' + (' + ' + str(config.SYSTEM_CONFIG) if config.SYSTEM_CONFIG.is_file() else '')}")
    # Which model the door runs, and the rule it decides by (the model's sidecar is read, so a missing or
    # tampered model is reported here as well).
    from edge.sidecar import operating_point, read_sidecar

    meta = read_sidecar(cfg["model"]["embedder"])
    thr, margin, far = operating_point(meta, cfg["match"])
    src = meta.get("source")
    print(f"model: {cfg['model']['embedder']} ({'port of ' + src['file'] if src else 'doorface small model'}, "
          f"{meta.get('quantization')}); threshold {thr:.3f}{f' (FAR {far})' if far else ''}, margin {margin:g}")
    from edge.build import LIVENESS_OFF, build_liveness, calibration_line

    if cfg["match"]["calibration"] == "off":
        print(calibration_line(cfg, None))
    else:
        from edge import cohort as co

        print(calibration_line(cfg, co.active(Path(cfg["state"]["dir"]), cfg["model"]["embedder"], meta["sha256"]),
                               meta))
    lv = build_liveness(cfg)    # the same object the door builds: the same threshold ("model" or the config's)
    if lv is not None:
        lv.load()
        print(f"liveness: {lv.model_path} ({lv.meta.get('quantization')}); live when score >= {lv.threshold:.2f}")
    else:
        print(f"liveness: OFF. Warning: {LIVENESS_OFF}")
    return 0


COMMANDS = {"relay": cmd_relay, "run": cmd_run, "enroll": cmd_enroll, "users": cmd_users, "cohort": cmd_cohort,
            "events": cmd_events,
            "identify": cmd_identify, "embed": cmd_embed, "check": cmd_check, "config": cmd_config}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except DoorfaceError as exc:
        if os.environ.get("DEBUG") == "1":
            raise
        print(f"doorface: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback at the door, unless DEBUG=1
        if os.environ.get("DEBUG") == "1":
            raise
        print(f"doorface: unexpected error: {exc.__class__.__name__}: {exc} (DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
