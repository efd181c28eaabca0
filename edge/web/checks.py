"""The Settings page: the config as the door resolves it (read-only) and the checks of ``doorface check`` that a
process without the camera and the relay can run. The camera and the relay belong to the door: their state comes
from its socket, never from opening them here."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Tuple

from edge.errors import DoorfaceError


def _model(cfg, people) -> str:
    e = people.analyzer().embedder
    thr, margin = people.operating_point()
    return (f"OK {Path(e.model_path).name} ({e.meta.get('quantization', '?')}, {e.dim}-D, {e.input_size}px, "
            f"sha256 {e.sha256[:12]}, runtime {e.backend}; threshold {thr:.3f}, margin {margin:g})")


def _liveness(cfg, people) -> str:
    from edge.build import LIVENESS_OFF, calibrate_liveness

    lv = people.analyzer().liveness
    if lv is None:
        return f"OFF (warning: {LIVENESS_OFF})"
    return f"OK live when score >= {lv.threshold:.4f}: {calibrate_liveness(cfg, Path(cfg['state']['dir']), lv)}"


def _cohort(cfg, people) -> str:
    from edge.build import calibration_line, load_cohort

    e = people.analyzer().embedder
    cohort = load_cohort(cfg, Path(cfg["state"]["dir"]), e)
    return ("OK " if cohort is not None else "WARNING ") + calibration_line(cfg, cohort, e.meta)


def _gallery(cfg, people) -> str:
    from edge.people import gallery as gal

    if not people.path.exists():
        return f"OK (empty: no gallery at {people.path} yet)"
    with gal.Gallery(people.path) as g:
        found = g.people()
        g.index(people.analyzer().embedder.sha256)
    return f"OK {len(found)} people, {sum(p.templates for p in found)} templates"


def _access_log(cfg, people) -> str:
    from edge.door import accesslog

    path = Path(cfg["state"]["dir"]) / accesslog.FILENAME
    return f"OK {path} exists" if path.exists() else f"OK (no access log yet at {path})"


CHECKS: Tuple[Tuple[str, Callable], ...] = (("model", _model), ("liveness", _liveness), ("cohort", _cohort),
                                             ("gallery", _gallery), ("access log", _access_log))


def run_checks(cfg, people, door) -> List[Tuple[str, bool, str]]:
    """``(name, ok, line)`` for every check; a failing check is its one-line reason, never an exception."""
    out = []
    for name, fn in CHECKS:
        try:
            line = fn(cfg, people)
            out.append((name, not line.startswith("WARNING"), line))
        except (DoorfaceError, OSError, ValueError) as exc:
            out.append((name, False, f"FAIL {str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}"))
    snap = door.snapshot()
    out.append(("door", snap["door"] == "up",
                f"OK connected to {door.socket_path}: strike {snap['relay']}, camera {snap['camera']}"
                if snap["door"] == "up" else f"FAIL not connected to {door.socket_path}: {snap['error']}"))
    return out


#: Keys whose values the Settings page does not show (none hold secrets today: passwords live in files; listed so
#: a future inline secret is caught by the test that reads this).
HIDDEN = frozenset()


def resolved(cfg) -> str:
    """The config as TOML-like text, section by section."""
    lines = []
    for section, values in cfg.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            shown = "(hidden)" if (section, k) in HIDDEN else repr(v) if not isinstance(v, bool) else str(v).lower()
            lines.append(f"{k} = {shown}")
        lines.append("")
    return "\n".join(lines)


def liveness_state(cfg) -> str:
    """Liveness as the status page shows it, cheaply (the sidecar and this door's calibration file; no model is
    loaded): off, or the threshold in use and where it comes from."""
    import json

    from edge.vision import livecal

    lv = cfg["liveness"]
    if not lv["enabled"]:
        return "OFF: a photo of an enrolled person can open the door"
    try:
        meta = json.loads(Path(lv["model"]).with_suffix(".json").read_text())
        floor = float(meta["threshold"])
        if lv["threshold"] != "model":
            return f"on, threshold {float(lv['threshold']):.4f} from the config"
        cal = livecal.load(cfg["state"]["dir"], meta["sha256"]) if lv["calibration"] == "door" else None
    except (OSError, ValueError, KeyError, DoorfaceError) as exc:
        return f"unknown ({str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__})"
    if cal is None:
        return f"on, the model's threshold {floor:.4f} (not calibrated at this door)"
    return "on, " + cal.describe(lv["live_reject_target"], floor)
