"""The model sidecar: a JSON file next to each ``.tflite`` describing how to feed it and what it returns.

``model.tflite`` -> ``model.json``. Written by ``convert/``, read and verified by the device: a missing sidecar, a
format it does not know, or a ``sha256`` different from the model file's is a :class:`ModelError` (the door stays
locked; nothing runs on a model nobody vouched for).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from edge.vision.assets import sha256_file
from edge.errors import ModelError

FORMAT = "doorface-embedder"
FORMAT_VERSION = 1
REQUIRED = ("format", "format_version", "sha256", "input", "output", "metric", "thresholds")
FARS = ("1e-2", "1e-3", "1e-4", "1e-5")


def content_digest(meta: dict) -> str:
    """sha256 of the sidecar's own content (canonical JSON, without the ``content_sha256`` field): an edited
    threshold, operating point or input description is caught like an edited model."""
    import hashlib

    body = {k: v for k, v in meta.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sidecar_path(model_path) -> Path:
    return Path(model_path).with_suffix(".json")


def write_sidecar(model_path, meta: dict) -> Path:
    """Write ``meta`` (plus format, version and the model's sha256) next to the model, atomically."""
    meta = dict(meta)
    meta.setdefault("format", FORMAT)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta["model_file"] = Path(model_path).name
    meta["sha256"] = sha256_file(model_path)
    meta["content_sha256"] = content_digest(meta)
    path = sidecar_path(model_path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def read_verified(model_path, fmt: str, version: int, required, verify: bool = True, what: str = "model",
                  hint: str = "convert the model with `python -m convert`") -> dict:
    """The sidecar of ``model_path`` in format ``fmt``/``version`` with the ``required`` keys; with ``verify``, the
    model's sha256 and the sidecar's own content digest are checked too (any mismatch: refuse)."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"{what} not found: {model_path}")
    path = sidecar_path(model_path)
    if not path.is_file():
        raise ModelError(f"{what} sidecar missing: {path} ({hint})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{what} sidecar unreadable: {path}: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{what} sidecar {path} is not a JSON object")
    missing = [k for k in ("format", "format_version", *required) if k not in meta]
    if missing:
        raise ModelError(f"{what} sidecar {path} lacks {', '.join(missing)}")
    if meta["format"] != fmt or meta["format_version"] != version:
        raise ModelError(f"{what} sidecar {path}: unsupported format {meta['format']} v{meta['format_version']} "
                         f"(expected {fmt} v{version})")
    if verify:
        digest = sha256_file(model_path)
        if digest != meta["sha256"]:
            raise ModelError(f"{what} {model_path} sha256 {digest[:12]}... does not match its sidecar "
                             f"({str(meta['sha256'])[:12]}...): refusing to use it")
        if meta.get("content_sha256") != content_digest(meta):
            raise ModelError(f"{what} sidecar {path} was edited after conversion (content_sha256 does not match): "
                             "refusing to use it")
    return meta


def read_sidecar(model_path, verify: bool = True) -> dict:
    """Read and validate the sidecar of the embedding model ``model_path``; with ``verify``, check the model's
    sha256 too."""
    meta = read_verified(model_path, FORMAT, FORMAT_VERSION, REQUIRED[2:], verify)
    path = sidecar_path(model_path)
    if meta["metric"] != "cosine":
        raise ModelError(f"model sidecar {path}: unsupported metric {meta['metric']!r}")
    check_thresholds(meta, path)
    return meta


def check_thresholds(meta: dict, path) -> None:
    """Thresholds are cosine similarities in (0, 1) that get stricter as the FAR target falls."""
    th = meta["thresholds"]
    vals = []
    for far in FARS:
        v = th.get(f"far_{far}")
        if v is None:
            continue
        if not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ModelError(f"model sidecar {path}: threshold at FAR {far} = {v!r} is not a cosine in (0, 1)")
        vals.append(v)
    if not vals:
        raise ModelError(f"model sidecar {path}: no thresholds")
    if any(b < a for a, b in zip(vals, vals[1:])):
        raise ModelError(f"model sidecar {path}: thresholds do not get stricter as the FAR target falls")


#: The operating point of models whose sidecar predates ``decision`` (the small model's measured defaults).
LEGACY_DECISION = {"far_target": "1e-4", "min_margin": 0.05, "stranger_neighbours": 0}


def model_decision(meta: dict) -> dict:
    """The operating point the model was measured with: ``far_target``, ``min_margin`` and
    ``stranger_neighbours`` (sidecar ``decision``)."""
    return {**LEGACY_DECISION, **{k: v for k, v in meta.get("decision", {}).items() if k in LEGACY_DECISION}}


def threshold_floor(meta: dict) -> tuple:
    """``(floor, bound)``: the loosest threshold a config may set (the model's own FAR 1e-2 threshold), and that
    floor rounded *up* to 4 decimals, the bound an error message prints (a value written as printed is accepted)."""
    floor = threshold_for(meta, "1e-2")
    bound = round(floor, 4)
    if bound < floor:
        bound = round(bound + 1e-4, 4)
    return floor, bound


def operating_point(meta: dict, match: dict) -> tuple:
    """``(threshold, min_margin, far_target)`` of the door from the config's ``[match]`` and the model's sidecar
    (``far_target`` is None when the threshold is a number from the config). The one place a config is checked
    against its model: every command and the daemon call it (``doorface config --validate`` before it says OK).

    ``"model"`` takes the sidecar's value (its ``decision.far_target``, the threshold at the FAR target, the margin
    the model was measured with).
    A number overrides it, but a threshold looser than the model's own FAR 1e-2 threshold is refused: that door
    would let in more than one stranger comparison in a hundred.
    """
    from edge.errors import ConfigError

    rec = model_decision(meta)
    far = rec["far_target"] if match["far_target"] == "model" else match["far_target"]
    if match["threshold"] == "model":
        threshold = threshold_for(meta, far)
    else:
        far = None
        threshold = float(match["threshold"])
        floor, bound = threshold_floor(meta)
        if threshold < floor:
            raise ConfigError(f"config: match.threshold = {threshold} is looser than this model's FAR 1e-2 threshold "
                              f"({floor:.6f}); use \"model\" or a value >= {bound:.4f}")
    if match["min_margin"] == "model":
        margin = float(rec["min_margin"])
    else:
        margin = float(match["min_margin"])
    return threshold, margin, far


def stranger_neighbours(meta: dict, match: dict) -> int:
    """How many of a face's closest cohort strangers its margin is also taken over (:func:`edge.people.cohort.crowding`);
    0: the margin is to the second enrolled person only. ``"model"`` takes the sidecar's ``decision`` (0 for models
    measured without it); nothing is compared with strangers when calibration is off (there is no cohort)."""
    if match.get("calibration") == "off":
        return 0
    v = match.get("stranger_neighbours", "model")
    return int(model_decision(meta)["stranger_neighbours"] if v == "model" else v)


def threshold_for(meta: dict, far: str) -> float:
    """The similarity threshold at a FAR target such as ``"1e-3"``."""
    try:
        return float(meta["thresholds"][f"far_{far}"])
    except KeyError:
        raise ModelError(f"model sidecar has no threshold at FAR {far} "
                         f"(has {', '.join(meta['thresholds'])})") from None
