"""``doorface check`` (every part of the door, one line each) and ``doorface config`` (validate, or print the
packaged default)."""
from __future__ import annotations

from pathlib import Path

from edge.cli.common import load_config
from edge.errors import DoorfaceError


def add_parsers(sub, common) -> None:
    sub.add_parser("check", parents=[common], help="check model, detector, camera, relay, gallery and config")
    p = sub.add_parser("config", parents=[common], help="validate or print the configuration")
    p.add_argument("--validate", action="store_true", help="validate and report (default)")
    p.add_argument("--print-default", action="store_true", help="print the packaged, commented default")


class _Context:
    """What the checks share: the config, the analyzer built from it, and the cohort once it was loaded."""

    def __init__(self, args, cfg):
        from edge.build import build_analyzer

        self.args, self.cfg = args, cfg
        self.analyzer = build_analyzer(cfg)
        self.cohort = None
        self.cohort_loaded = False


def _model(c: _Context) -> str:
    from edge.vision.sidecar import operating_point

    e = c.analyzer.embedder.load()
    src = e.meta.get("source")
    what = f"port of {src['file']} from {src['package']} {src['version']}, " if src else ""
    thr, margin, far = operating_point(e.meta, c.cfg["match"])
    sp = getattr(e, "shape_predictor", None)
    marks = "" if sp is None else f" (landmarks: {sp.backend})"
    return f"OK {Path(e.model_path).name} ({what}{e.meta.get('quantization', '?')}, {e.dim}-D, " \
           f"{e.input_size}px {e.template}{marks}, sha256 {e.sha256[:12]}, runtime {e.backend}; threshold {thr:.3f}" \
           f"{f' (FAR {far})' if far else ''}, margin {margin:g})"


def _liveness(c: _Context) -> str:
    from edge.build import LIVENESS_OFF, calibrate_liveness

    lv = c.analyzer.liveness
    if lv is None:
        return f"OFF (warning: {LIVENESS_OFF})"
    lv.load()
    cal = calibrate_liveness(c.cfg, Path(c.cfg["state"]["dir"]), lv)
    src = lv.meta.get("source", {})
    return f"OK {Path(lv.model_path).name} ({src.get('licence', '?')}, {lv.meta.get('quantization', '?')}, " \
           f"sha256 {lv.sha256[:12]}, runtime {lv.backend}; live when score >= {lv.threshold:.4f}: {cal})"


def _detector(c: _Context) -> str:
    c.analyzer.detector.load()
    return f"OK {Path(c.analyzer.detector.model_path).name} (runtime {c.analyzer.detector.backend})"


def _cohort(c: _Context) -> str:
    from edge.build import calibration_line, load_cohort

    c.cohort = load_cohort(c.cfg, Path(c.cfg["state"]["dir"]), c.analyzer.embedder)
    c.cohort_loaded = True
    line = calibration_line(c.cfg, c.cohort, c.analyzer.embedder.meta or None)
    return ("OK " if c.cohort is not None else "WARNING ") + line


def _gallery(c: _Context) -> str:
    from edge.people import gallery as gal

    path = Path(c.cfg["state"]["dir"]) / gal.FILENAME
    if not path.exists():
        return f"OK (empty: no gallery at {path} yet)"
    with gal.Gallery(path) as g:
        sha = c.analyzer.embedder.sha256 if c.analyzer.embedder.meta else None
        people = g.people()
        if sha:
            g.index(sha, c.cohort.sha256 if c.cohort is not None else None)
        return f"OK {len(people)} people, {sum(p.templates for p in people)} templates"


def _camera(c: _Context) -> str:
    from edge.door.camera import open_source, redact_uri

    cam = c.cfg["camera"]
    try:
        src = open_source(cam["source"], cam["width"], cam["height"], cam["fps"])
        with src:
            frame = src.read()
    except Exception as exc:  # whatever the backend says, never the camera's password
        raise DoorfaceError(redact_uri(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)) from None
    if frame is None:
        raise DoorfaceError(f"{src.name} gave no frame")
    return f"OK {src.name} {frame.image.shape[1]}x{frame.image.shape[0]}"


def _relay(c: _Context) -> str:
    from edge.door.relay import make_relay

    r = c.cfg["relay"]
    relay = make_relay(r["backend"], r["pin"], r["active_high"])
    try:
        relay.lock()
    finally:
        relay.close()
    return f"OK {r['backend']} pin {r['pin']} (locked)"


def _access_log(c: _Context) -> str:
    """The access log can be written (a write rolled back): a full disk, a read-only file or a lock shows here."""
    from edge.door import accesslog

    return accesslog.check(Path(c.cfg["state"]["dir"]) / accesslog.FILENAME)


def _mqtt(c: _Context) -> str:
    """The Home Assistant bridge's broker: reached, logged in, TLS verified; the bridge's availability; remote open."""
    from edge.mqtt.check import check

    return check(c.cfg)


CHECKS = (("model", _model), ("liveness", _liveness), ("detector", _detector), ("cohort", _cohort),
          ("gallery", _gallery), ("camera", _camera), ("relay", _relay), ("access log", _access_log),
          ("mqtt", _mqtt))


def _one(fn, *a) -> tuple:
    """``(ok, message)``: every failure is one line."""
    try:
        return True, fn(*a) or "OK"
    except Exception as exc:  # report every failure as one line
        return False, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def cmd_check(args) -> int:
    ok, cfg = _one(load_config, args)
    if not ok:
        print(f"config: FAIL {cfg}")
        return 1
    results = [("config", True, f"OK ({args.config or 'defaults + /etc/doorface/doorface.toml if present'})")]
    c = _Context(args, cfg)
    for name, fn in CHECKS:
        results.append((name, *_one(fn, c)))
    for name, ok, msg in results:
        print(f"{name:<9} {msg if ok else 'FAIL ' + msg}")
    return 0 if all(ok for _, ok, _ in results) else 1


def _config_lines(cfg) -> list:
    """What ``config --validate`` reports after "config OK": the model and its rule, the calibration, liveness. Each
    is checked first (the model's sidecar and hash, the threshold against the model, the cohort's seal, the liveness
    model), so a config that fails any of them is refused before anything is said to be OK."""
    from edge.build import LIVENESS_OFF, build_liveness, calibration_line
    from edge.people import cohort as co
    from edge.vision.sidecar import operating_point, read_sidecar

    meta = read_sidecar(cfg["model"]["embedder"])
    thr, margin, far = operating_point(meta, cfg["match"])   # the one check of the config against its model
    src = meta.get("source")
    lines = [f"model: {cfg['model']['embedder']} ({'port of ' + src['file'] if src else 'doorface small model'}, "
             f"{meta.get('quantization')}); threshold {thr:.3f}{f' (FAR {far})' if far else ''}, margin {margin:g}"]
    if cfg["match"]["calibration"] == "off":
        lines.append(calibration_line(cfg, None))
    else:
        lines.append(calibration_line(cfg, co.active(Path(cfg["state"]["dir"]), cfg["model"]["embedder"],
                                                     meta["sha256"]), meta))
    lv = build_liveness(cfg)    # the same object the door builds: the same threshold ("model" or the config's)
    if lv is not None:
        lv.load()
        lines.append(f"liveness: {lv.model_path} ({lv.meta.get('quantization')}); live when score >= "
                     f"{lv.threshold:.2f}")
    else:
        lines.append(f"liveness: OFF. Warning: {LIVENESS_OFF}")
    return lines


def cmd_config(args) -> int:
    from edge import config
    from edge.door.relay import remember_good

    if args.print_default:
        print(config.default_text(), end="")
        return 0
    cfg = load_config(args)
    lines = _config_lines(cfg)
    system = " + " + str(config.SYSTEM_CONFIG) if config.SYSTEM_CONFIG.is_file() else ""
    print(f"config OK: {args.config or 'packaged defaults' + system}")
    for line in lines:
        print(line)
    # A valid [relay] is what the service's re-lock helper falls back on when the config is later broken.
    r = cfg["relay"]
    print(remember_good(cfg["state"]["dir"], r["backend"], r["pin"], r["active_high"], by="validate"))
    return 0


COMMANDS = {"check": cmd_check, "config": cmd_config}
