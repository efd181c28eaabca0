"""Training-run configuration: one TOML file per run, validated, saved next to the model."""
from __future__ import annotations

import copy
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

DEFAULTS = {
    "data": {"dataset": "", "pairs": "", "holdout_folds": [1, 2], "cache_dir": ".cache",
             "detector": "models/face_detection_short_range.tflite", "morphs": 0, "morph_seed": 0},
    "model": {"arch": "small", "input_size": 96, "embedding_dim": 128, "width": 1.0, "head_channels": 384},
    "loss": {"metric": "batch_hard", "margin": 0.2, "metric_weight": 1.0, "teacher": "dlib",
             "distill_weight": 1.0, "relational_weight": 2.0},
    "batch": {"p": 32, "k": 4, "singletons": 32, "morphs": 0},
    "optim": {"epochs": 10, "steps_per_epoch": 100, "lr": 0.003, "weight_decay": 1e-4, "warmup_epochs": 1,
              "init": ""},
    "augment": {"flip": 0.5, "affine": 0.7, "photometric": 0.8, "low_light": 0.15, "blur": 0.2, "jpeg": 0.25,
                "grayscale": 0.15, "occlusion": 0.1, "low_res": 0.0, "side_light": 0.0},
    "run": {"seed": 0, "threads": 2},
}
CHOICES = {("loss", "metric"): ("batch_hard", "semi_hard", "contrastive"), ("loss", "teacher"): ("dlib", "port", "none"),
           ("model", "arch"): ("small", "dlib_port")}
#: Each architecture's alignment template (edge.vision.align.TEMPLATES): the crops it trains on.
TEMPLATE = {"small": "arcface112", "dlib_port": "dlib150"}


def load(path, overrides: dict = None) -> dict:
    """Defaults, then the file, then ``overrides`` ({"section.key": value}); unknown keys are errors."""
    cfg = copy.deepcopy(DEFAULTS)
    data = tomllib.loads(Path(path).read_text()) if path else {}
    for sec, values in data.items():
        if sec not in cfg or not isinstance(values, dict):
            raise ValueError(f"{path}: unknown section [{sec}]")
        for key, val in values.items():
            if key not in cfg[sec]:
                raise ValueError(f"{path}: unknown key {sec}.{key}")
            cfg[sec][key] = val
    for dotted, val in (overrides or {}).items():
        sec, key = dotted.split(".", 1)
        if sec not in cfg or key not in cfg[sec]:
            raise ValueError(f"unknown key {dotted}")
        cfg[sec][key] = type(cfg[sec][key])(val) if not isinstance(cfg[sec][key], list) else val
    for (sec, key), allowed in CHOICES.items():
        if cfg[sec][key] not in allowed:
            raise ValueError(f"{sec}.{key} must be one of {', '.join(allowed)}, not {cfg[sec][key]!r}")
    if cfg["model"]["arch"] == "dlib_port":
        if (cfg["model"]["input_size"], cfg["model"]["embedding_dim"]) != (150, 128):
            raise ValueError("model.arch = dlib_port takes model.input_size = 150 and model.embedding_dim = 128")
    elif cfg["model"]["input_size"] not in (64, 80, 96, 112):
        raise ValueError("model.input_size must be 64, 80, 96 or 112")
    if cfg["batch"]["morphs"] and not cfg["data"]["morphs"]:
        raise ValueError("batch.morphs needs a morph bank: set data.morphs")
    if cfg["data"]["morphs"] and cfg["loss"]["teacher"] == "none":
        raise ValueError("data.morphs needs a teacher: it labels the morphs, which feed the distillation losses only")
    if cfg["batch"]["morphs"] < 0 or cfg["data"]["morphs"] < 0:
        raise ValueError("data.morphs and batch.morphs must be >= 0")
    if cfg["batch"]["k"] < 2 or cfg["batch"]["p"] < 2:
        raise ValueError("batch.p and batch.k must be at least 2")
    return cfg


def dumps(cfg: dict) -> str:
    """TOML text of a config (flat sections of scalars and lists)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v)
    lines = []
    for sec, values in cfg.items():
        lines.append(f"[{sec}]")
        lines.extend(f"{k} = {val(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)
