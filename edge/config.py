"""Configuration: one TOML file, validated against the packaged, fully commented default (``edge/default.toml``).

Layers: the packaged default, then ``/etc/doorface/doorface.toml`` (or ``--config FILE``), then overrides from
the command line. Unknown sections or keys, wrong types and out-of-range values raise :class:`ConfigError`
naming the key.
"""
from __future__ import annotations

import copy
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Dict, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (JetPack 6)
    import tomli as tomllib

from edge.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/doorface/doorface.toml")

#: (section, key) -> (min, max) for numbers, or a tuple of allowed strings.
RULES: Dict[tuple, Any] = {
    ("model", "threads"): (1, 8),   # or "auto" (AUTO_OR_NUMBER): the board's cores, at most 8
    ("model", "runtime"): ("auto", "ai_edge_litert", "tflite_runtime", "tensorflow"),
    ("camera", "width"): (64, 4096), ("camera", "height"): (64, 4096), ("camera", "fps"): (1, 120),
    ("camera", "reopen_initial_seconds"): (0.05, 60), ("camera", "reopen_max_seconds"): (0.1, 3600),
    ("detection", "min_score"): (0.3, 0.99),
    ("quality", "min_eye_distance"): (0, 1000), ("quality", "min_sharpness"): (0, 10000),
    ("quality", "max_yaw"): (0, 2), ("quality", "max_roll"): (0, 90),
    ("quality", "min_brightness"): (0, 255), ("quality", "max_brightness"): (0, 255),
    ("match", "far_target"): ("model", "1e-2", "1e-3", "1e-4", "1e-5"),
    ("match", "threshold"): (-1, 1), ("match", "min_margin"): (0, 2),   # or "model" (MODEL_OR_NUMBER)
    ("match", "calibration"): ("cohort", "off"),
    ("match", "stranger_neighbours"): (0, 100),   # or "model" (MODEL_OR_NUMBER); a whole number
    ("liveness", "threshold"): (0.01, 0.99),   # or "model" (MODEL_OR_NUMBER)
    ("liveness", "calibration"): ("door", "off"), ("liveness", "live_reject_target"): (0.01, 0.5),
    ("decision", "frames_needed"): (1, 100), ("decision", "frames_window"): (1, 100),
    ("decision", "window_seconds"): (0.1, 60), ("decision", "attempt_gap_seconds"): (0.1, 60), ("decision", "cooldown_seconds"): (0, 600),
    ("decision", "lockout_attempts"): (1, 1000), ("decision", "lockout_window_seconds"): (1, 86400),
    ("decision", "lockout_base_seconds"): (0, 86400), ("decision", "lockout_max_seconds"): (0, 86400),
    ("decision", "lockout_decay_seconds"): (0, 604800),
    ("decision", "lockout_unknown_faces"): ("wider_margin", "all"),
    ("decision", "lockout_wider_margin"): (0.001, 0.5),   # or "model" (MODEL_OR_NUMBER)
    ("relay", "backend"): ("gpiozero", "lgpio", "rpigpio", "native", "pigpio", "jetson", "mock"),
    ("relay", "unlock_seconds"): (0.2, 30),
    ("state", "snapshot_limit"): (0, 100000),
    ("events", "peer_queue"): (1, 100000),
    ("mqtt", "port"): (1, 65535), ("mqtt", "keepalive"): (5, 3600), ("mqtt", "command_max_age"): (1, 60),
    ("web", "port"): (1, 65535), ("web", "session_minutes"): (5, 1440), ("web", "login_attempts"): (1, 100),
    ("web", "login_attempts_total"): (5, 10000), ("web", "max_upload_mb"): (1, 100),
    ("log", "level"): ("debug", "info", "warning", "error"),
}


#: Keys whose value is either the string "model" (take the model sidecar's value) or a number within RULES.
MODEL_OR_NUMBER = {("match", "threshold"), ("match", "min_margin"), ("match", "stranger_neighbours"),
                   ("liveness", "threshold"), ("decision", "lockout_wider_margin")}
#: ... of them, the ones that count something (a whole number).
WHOLE = {("match", "stranger_neighbours"), ("model", "threads")}
#: Keys whose value is either the string "auto" (decided on the board, see :func:`threads`) or a whole number.
AUTO_OR_NUMBER = {("model", "threads")}


def cpu_cores() -> int:
    """The cores this process may run on (a cgroup or ``taskset`` limit counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def threads(value) -> int:
    """The interpreter threads for ``model.threads``: a number as given, ``"auto"`` the board's cores (1-8)."""
    if value == "auto":
        lo, hi = RULES[("model", "threads")]
        return int(min(hi, max(lo, cpu_cores())))
    return int(value)


def default_text() -> str:
    return resources.files("edge").joinpath("default.toml").read_text()


def defaults() -> dict:
    return tomllib.loads(default_text())


def _check_type(section: str, key: str, value, default):
    name = f"{section}.{key}"
    if (section, key) in AUTO_OR_NUMBER:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not float(value).is_integer():
                raise ConfigError(f"config: {name} must be \"auto\" or a whole number, not {value!r}")
            return int(value)
        if value != "auto":
            raise ConfigError(f"config: {name} must be \"auto\" or a whole number, not {value!r}")
        return value
    if (section, key) in MODEL_OR_NUMBER:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (section, key) in WHOLE:
                if not float(value).is_integer():
                    raise ConfigError(f"config: {name} must be \"model\" or a whole number, not {value!r}")
                return int(value)
            return float(value)
        if value != "model":
            raise ConfigError(f"config: {name} must be \"model\" or a number, not {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config: {name} must be true or false, not {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config: {name} must be a number, not {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) \
                and not value.is_integer():
            raise ConfigError(f"config: {name} must be a whole number, not {value!r}")
        return type(default)(value)
    if isinstance(default, str):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ConfigError(f"config: {name} must be a string, not {value!r}")
        return value
    return value


def merge(base: dict, layer: dict, origin: str) -> dict:
    out = copy.deepcopy(base)
    for section, values in layer.items():
        if section not in out:
            raise ConfigError(f"{origin}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        for key, value in values.items():
            if key not in out[section]:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            out[section][key] = _check_type(section, key, value, base[section][key])
    return out


#: A gpiozero pin name: a BCM number ("17"), GPIO17, BCM17, BOARD11, WPI0 or header:pin (J8:11). Jetson: a number.
GPIO_PIN = re.compile(r"(?:GPIO|BCM|BOARD|WPI)?(?:0|[1-9][0-9]*)|[A-Z][A-Z0-9]*:(?:0|[1-9][0-9]*)")
JETSON_PIN = re.compile(r"[1-9][0-9]*")


def _check_rules(cfg: dict, sections=None) -> None:
    for (section, key), rule in RULES.items():
        if sections is not None and section not in sections:
            continue
        value = cfg[section][key]
        if (section, key) in MODEL_OR_NUMBER and value == "model" or (section, key) in AUTO_OR_NUMBER and value == "auto":
            continue
        if isinstance(rule[0], str):
            if value not in rule:
                raise ConfigError(f"config: {section}.{key} must be one of {', '.join(rule)}, not {value!r}")
        elif not rule[0] <= value <= rule[1]:
            raise ConfigError(f"config: {section}.{key} = {value} is out of range [{rule[0]}, {rule[1]}]")


def validate_relay(relay: dict) -> dict:
    """The checks of [relay] alone (the re-lock helper reads nothing else): the backend, the pulse length and a pin
    name its backend can take."""
    _check_rules({"relay": relay}, ("relay",))
    pin = str(relay["pin"])
    if not pin.strip():
        raise ConfigError("config: relay.pin must not be empty")
    if relay["backend"] == "jetson" and not JETSON_PIN.fullmatch(pin):
        raise ConfigError(f"config: relay.pin = {pin!r} is not a Jetson BOARD pin number (e.g. \"12\")")
    if relay["backend"] != "jetson" and not GPIO_PIN.fullmatch(pin):
        raise ConfigError(f"config: relay.pin = {pin!r} is not a GPIO pin name: a BCM number (\"17\"), or GPIO17, "
                          "BCM17, BOARD11, WPI0, J8:11")
    return relay


def validate(cfg: dict) -> dict:
    _check_rules(cfg)
    validate_relay(cfg["relay"])
    mt = cfg["match"]
    if mt["calibration"] == "off" and mt["stranger_neighbours"] not in ("model", 0):
        raise ConfigError("config: match.stranger_neighbours needs match.calibration = \"cohort\" (the strangers are "
                          "the cohort's)")
    d = cfg["decision"]
    if d["frames_needed"] > d["frames_window"]:
        raise ConfigError("config: decision.frames_needed must not exceed decision.frames_window")
    if 0 < d["lockout_decay_seconds"] < d["lockout_max_seconds"]:
        raise ConfigError("config: decision.lockout_decay_seconds must be 0 (never) or at least "
                          "decision.lockout_max_seconds (a shorter decay lets an attacker wait the back-off down)")
    q = cfg["quality"]
    if q["min_brightness"] >= q["max_brightness"]:
        raise ConfigError("config: quality.min_brightness must be below quality.max_brightness")
    if cfg["camera"]["reopen_initial_seconds"] > cfg["camera"]["reopen_max_seconds"]:
        raise ConfigError("config: camera.reopen_initial_seconds must not exceed camera.reopen_max_seconds")
    return cfg


def load(path: Optional[str] = None, overrides: Optional[dict] = None) -> dict:
    """The validated configuration. ``path`` None means ``/etc/doorface/doorface.toml`` if it exists.

    ``overrides`` maps ``"section.key"`` to a value (from command-line flags).
    """
    cfg = defaults()
    if path is None and SYSTEM_CONFIG.is_file():
        path = str(SYSTEM_CONFIG)
    if path is not None:
        p = Path(path)
        try:
            layer = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {p}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from None
        cfg = merge(cfg, layer, str(p))
    layer: dict = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, key = dotted.split(".", 1)
        layer.setdefault(section, {})[key] = value
    cfg = merge(cfg, layer, "command line")
    return validate(cfg)
