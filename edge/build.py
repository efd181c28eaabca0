"""The door's composition root: the pieces every command builds from one validated config, in one place.

Imports run one way: ``edge.cli -> edge.build -> edge.door -> edge.people -> edge.vision`` (see ARCHITECTURE.md).

``doorface run`` (the daemon), ``enroll``, ``identify``, ``embed``, ``users reembed`` and ``check`` all build the
detector, embedder, quality gates, gallery index and decision policy here, so what the door does and what the
commands report cannot drift apart.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from edge.config import threads as config_threads
from edge.people import cohort as cohort_mod
from edge.people import gallery as gal
from edge.people.cohort import Cohort
from edge.door.decision import DecisionPolicy, PolicyConfig
from edge.vision.detector import BlazeFaceDetector
from edge.vision.embedder import Embedder
from edge.vision import livecal
from edge.vision.liveness import LivenessModel
from edge.people.matcher import TemplateIndex
from edge.vision.analyzer import FaceAnalyzer
from edge.vision.quality import QualityConfig
from edge.vision.sidecar import operating_point, stranger_neighbours

log = logging.getLogger("doorface")


def runtime_pref(cfg) -> Optional[list]:
    r = cfg["model"]["runtime"]
    return None if r == "auto" else [r]


LIVENESS_OFF = ("liveness is OFF (liveness.enabled = false): a printed photo or a phone screen showing an enrolled "
                "person can open this door")


def build_liveness(cfg) -> Optional[LivenessModel]:
    """The liveness model of the config, or None when it is explicitly turned off (the daemon and ``identify`` warn
    with :data:`LIVENESS_OFF` at every start)."""
    lv = cfg["liveness"]
    if not lv["enabled"]:
        return None
    th = None if lv["threshold"] == "model" else float(lv["threshold"])
    return LivenessModel(lv["model"], th, config_threads(cfg["model"]["threads"]), runtime_pref(cfg))


def calibrate_liveness(cfg, state_dir, lv) -> Optional[str]:
    """Set a loaded liveness model's threshold for this door: the config's number, else this door's calibration
    (:mod:`edge.vision.livecal`, bounded by the model's threshold and the ceiling), else the model's. Returns the
    line that says which (None when liveness is off)."""
    if lv is None:
        return None
    c = cfg["liveness"]
    if c["threshold"] != "model":
        return f"liveness threshold {lv.threshold:.4f} from the config (liveness.threshold)"
    floor = lv.model_threshold
    try:
        cal = livecal.load(state_dir, lv.sha256) if c["calibration"] == "door" else None
    except livecal.CalibrationError as exc:   # the door goes on at the model's threshold; check says why
        lv.set_threshold(None, "model")
        return f"liveness threshold {floor:.4f}, the model's: {exc}"
    if cal is None or len(cal.scores) < livecal.MIN_FRAMES:
        lv.set_threshold(None, "model")
        why = "liveness.calibration = off" if c["calibration"] == "off" else \
            cal.describe(c["live_reject_target"], floor) if cal is not None else \
            "not calibrated at this door (`doorface liveness calibrate`, or enroll at the camera)"
        return f"liveness threshold {floor:.4f}, the model's ({why})"
    lv.set_threshold(cal.threshold(c["live_reject_target"], floor), "door calibration")
    return cal.describe(c["live_reject_target"], floor)


def build_analyzer(cfg) -> FaceAnalyzer:
    m = cfg["model"]
    det = BlazeFaceDetector(m["detector"], cfg["detection"]["min_score"],
                            num_threads=config_threads(m["threads"]),
                            runtime=runtime_pref(cfg))
    emb = Embedder(m["embedder"], config_threads(m["threads"]), runtime_pref(cfg))
    return FaceAnalyzer(det, emb, QualityConfig(**cfg["quality"]), liveness=build_liveness(cfg))


def wider_margin(cfg, meta) -> Optional[float]:
    """How much above their threshold an enrolled face must score to open during a lockout caused by unknown faces
    (``[decision] lockout_unknown_faces``); None when such a lockout stops every face. ``"model"``: one decade of
    false accepts stricter than the door's threshold, at the slope of the model's strictest measured decade (its
    sidecar's FAR 1e-4 -> 1e-5 thresholds; the impostor tail is about exponential), at least 0.005: a face that is
    no one enrolled, tried again and again during such a lockout, is let in about 10 times less often per try
    (README, "Lockout", has what that buys and costs)."""
    d = cfg["decision"]
    if d["lockout_unknown_faces"] == "all":
        return None
    if d["lockout_wider_margin"] != "model":
        return float(d["lockout_wider_margin"])
    fars = sorted((float(k[4:]), float(v)) for k, v in meta.get("thresholds", {}).items() if k.startswith("far_"))
    if len(fars) < 2:
        return None      # no decade to extrapolate from: every lockout stops every face
    (_, strictest), (_, next_) = fars[0], fars[1]
    return round(max(strictest - next_, 0.005), 4)


def policy_config(cfg, meta) -> PolicyConfig:
    mt, d = cfg["match"], cfg["decision"]
    threshold, margin, _ = operating_point(meta, mt)
    return PolicyConfig(threshold=threshold, min_margin=margin, n=d["frames_needed"],
                        m=d["frames_window"], window=d["window_seconds"], attempt_gap=d["attempt_gap_seconds"], cooldown=d["cooldown_seconds"],
                        lockout_attempts=d["lockout_attempts"], lockout_window=d["lockout_window_seconds"],
                        lockout_base=d["lockout_base_seconds"], lockout_max=d["lockout_max_seconds"],
                        lockout_decay=d["lockout_decay_seconds"], stranger_margin=wider_margin(cfg, meta))


def load_cohort(cfg, state_dir, embedder) -> Optional[Cohort]:
    """The cohort people are calibrated against (:func:`edge.people.cohort.active`), or None when calibration is off or
    the model has no cohort. A corrupt cohort, or one made with another model, is a :class:`CohortError`."""
    if cfg["match"]["calibration"] == "off":
        return None
    return cohort_mod.active(state_dir, embedder.model_path, embedder.sha256)


def calibration_line(cfg, cohort: Optional[Cohort], meta: Optional[dict] = None) -> str:
    """One line on how the door calibrates: per-person thresholds, and (given the model's sidecar ``meta``) whether
    every face's margin is also taken over its closest strangers in the cohort."""
    if cfg["match"]["calibration"] == "off":
        return ("per-person thresholds OFF (match.calibration = off): the global threshold alone decides, and "
                "strangers match some faces more easily than others")
    if cohort is None:
        return "per-person thresholds: none (no cohort for this model): the global threshold alone decides"
    line = (f"per-person thresholds at FAR {cohort.far:g} against {cohort.describe()}, never looser than the "
            "global threshold")
    k = stranger_neighbours(meta, cfg["match"]) if meta is not None else 0
    if k:
        line += f"; each face's margin is also taken over its {k} closest strangers in that cohort"
    return line


def load_index(state_dir: Path, model_sha: str, cohort: Optional[Cohort] = None,
               calibrated: bool = True, stranger_k: int = 0) -> TemplateIndex:
    """The gallery as a :class:`TemplateIndex`. With a ``cohort``, everyone must be calibrated against it (else a
    :class:`GalleryError` naming `doorface users reembed`), and with ``stranger_k`` > 0 every face's margin is also
    taken over its closest cohort strangers; ``calibrated`` False drops the per-person thresholds."""
    path = state_dir / gal.FILENAME
    if not path.exists():
        log.warning("no gallery at %s: nobody is enrolled, the door will not open", path)
        return TemplateIndex([], [])
    with gal.Gallery(path) as g:
        idx = g.index(model_sha, cohort.sha256 if cohort is not None else None)
    if not calibrated:
        idx.thresholds = {}
    if cohort is not None and stranger_k:
        idx = idx.with_strangers(cohort.embeddings, stranger_k)
    return idx


class DoorParts:
    """What the daemon is built from, for one config: it calls these and never reads the config's model, match or
    liveness sections itself (:class:`edge.door.daemon.Daemon` takes an instance)."""

    liveness_off = LIVENESS_OFF

    def __init__(self, cfg, analyzer: Optional[FaceAnalyzer] = None):
        self.cfg, self._analyzer = cfg, analyzer

    def analyzer(self) -> FaceAnalyzer:
        return self._analyzer or build_analyzer(self.cfg)

    def load_index(self, state_dir: Path, analyzer: FaceAnalyzer):
        """``(index, cohort)``: the gallery checked against the active cohort."""
        cohort = load_cohort(self.cfg, state_dir, analyzer.embedder)
        index = load_index(state_dir, analyzer.embedder.sha256, cohort,
                           calibrated=self.cfg["match"]["calibration"] != "off",
                           stranger_k=stranger_neighbours(analyzer.embedder.meta, self.cfg["match"]))
        return index, cohort

    def policy(self, meta) -> DecisionPolicy:
        return DecisionPolicy(policy_config(self.cfg, meta))

    def far(self, meta):
        return operating_point(meta, self.cfg["match"])[2]

    def calibration_line(self, cohort: Optional[Cohort], meta) -> str:
        return calibration_line(self.cfg, cohort, meta)

    def calibrate_liveness(self, state_dir: Path, liveness) -> Optional[str]:
        return calibrate_liveness(self.cfg, state_dir, liveness)


def daemon(cfg, state_dir=None, analyzer: Optional[FaceAnalyzer] = None, **kw):
    """The door daemon for ``cfg`` (``state_dir`` defaults to the config's; ``analyzer`` may be injected, e.g.
    built from ``edge.vision.detector.FakeDetector`` and ``edge.vision.embedder.FakeEmbedder``). The daemon (and with
    it the relay) is imported here, not at the top: the web page builds its analyzer from this module and must never
    load the relay's code."""
    from edge.door.daemon import Daemon

    return Daemon(cfg, state_dir if state_dir is not None else cfg["state"]["dir"], DoorParts(cfg, analyzer), **kw)
