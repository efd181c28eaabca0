"""Per-door liveness calibration: the liveness threshold set from live faces seen by *this* door's camera.

Why: a liveness threshold does not carry over between cameras. On one phone camera (msu-dev) live faces score
above 0.99 while half of the printed photos and screen replays score above 0.9, so the model's own threshold (0.5)
lets most attacks through there, while on a webcam (nuaa-dev) it is right. Set from the live faces of the door's
own camera, the threshold lands where that camera's live faces are (``python -m bench.livecal``).

How: the threshold is the ``target`` quantile (the share of live faces the door may turn away, config
``liveness.live_reject_target``) of the live scores collected at this door (``doorface enroll --camera`` adds the
frames it keeps; ``doorface liveness calibrate`` adds frames from the camera or from photos taken with it), in
log-odds, where scores near 1 are still told apart. It is bounded:

- **floor: the model's own threshold.** Threat: a calibration on frames an attacker showed (a print held up during
  ``enroll --camera``), or on a few unlucky frames, would put the threshold low and let attacks in. With the floor
  the worst such a calibration does is leave the door as it was uncalibrated: calibration can make the door stricter,
  never looser.
- **ceiling: :data:`CEILING`.** Threat: a calibration on frames that score unusually high (one bright session)
  would turn away the owners at every other hour. At 0.9995 the phone-camera dev set (msu-dev), whose live faces
  score highest of the three dev sets, already turns away 11% of its live faces; at 0.9999 it would turn away 22%.
- at least :data:`MIN_FRAMES` frames, or the door keeps the model's threshold.

The file (``liveness-calibration.json`` in the state dir) holds only scores (numbers between 0 and 1), their
sources and times, never images or embeddings; it is bound to the liveness model's sha256, and whatever it holds,
the threshold used is recomputed from its scores and clamped to the bounds when it is read.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from edge.errors import DoorfaceError

FILENAME = "liveness-calibration.json"
#: The strictest threshold a calibration may set (a live probability).
CEILING = 0.9995
#: Fewest live frames a calibration is made from.
MIN_FRAMES = 5
#: Most scores kept (the newest); old ones age out as the door's light and its people change.
MAX_SCORES = 500
_EPS = 1e-7


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def sigmoid(x) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def threshold_from(scores: Sequence[float], target: float, floor: float, ceiling: float = CEILING) -> float:
    """The ``target`` quantile of live ``scores`` in log-odds, clamped to ``[floor, ceiling]``; ``floor`` when
    there are fewer than :data:`MIN_FRAMES` scores."""
    s = np.asarray([v for v in scores if v is not None and np.isfinite(v)], np.float64)
    if len(s) < MIN_FRAMES:
        return float(floor)
    q = float(sigmoid(np.quantile(logit(s), target)))
    return float(min(max(q, floor), max(ceiling, floor)))


class CalibrationError(DoorfaceError, ValueError):
    """A calibration file that cannot be read or belongs to another model."""


@dataclass
class Calibration:
    model_sha256: str
    scores: List[float] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)
    updated: float = 0.0

    def add(self, scores: Sequence[float], source: str) -> int:
        new = [round(float(s), 7) for s in scores if s is not None and np.isfinite(s) and 0 <= s <= 1]
        self.scores = (self.scores + new)[-MAX_SCORES:]
        self.sources = (self.sources + [f"{source} ({len(new)} frames, {time.strftime('%Y-%m-%d %H:%M')})"])[-20:]
        self.updated = time.time()
        return len(new)

    def threshold(self, target: float, floor: float) -> float:
        return threshold_from(self.scores, target, floor)

    def describe(self, target: float, floor: float) -> str:
        th = self.threshold(target, floor)
        if len(self.scores) < MIN_FRAMES:
            return (f"not calibrated: {len(self.scores)} live frame(s) from this door, {MIN_FRAMES} needed; the "
                    f"model's threshold {floor:.3f}")
        where = "the floor (the model's threshold)" if th <= floor else \
            "the ceiling" if th >= CEILING else f"{target:.0%} of this door's live frames below it"
        return (f"calibrated at this door: live when score >= {th:.4f} ({where}; {len(self.scores)} live frames, "
                f"last from {self.sources[-1] if self.sources else '?'})")


def path(state_dir) -> Path:
    return Path(state_dir) / FILENAME


def load(state_dir, model_sha256: str) -> Optional[Calibration]:
    """This door's calibration for the model, or None (none yet, or made for another model: then it is ignored,
    and ``doorface check`` says so)."""
    p = path(state_dir)
    if not p.exists():
        return None
    try:
        d = json.loads(p.read_text())
        cal = Calibration(str(d["model_sha256"]), [float(s) for s in d["scores"]], [str(s) for s in d["sources"]],
                          float(d.get("updated", 0.0)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CalibrationError(f"liveness calibration {p} is unreadable ({exc.__class__.__name__}): remove it with "
                               "`doorface liveness reset` and calibrate again") from None
    if not all(0 <= s <= 1 for s in cal.scores):
        raise CalibrationError(f"liveness calibration {p} holds scores outside [0, 1]: `doorface liveness reset`")
    return cal if cal.model_sha256 == model_sha256 else None


def save(state_dir, cal: Calibration) -> Path:
    """Written atomically, mode 0600."""
    p = path(state_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"model_sha256": cal.model_sha256, "scores": cal.scores, "sources": cal.sources,
                   "updated": cal.updated}, f)
    os.replace(tmp, p)
    return p


def reset(state_dir) -> bool:
    p = path(state_dir)
    if p.exists():
        p.unlink()
        return True
    return False
