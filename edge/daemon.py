"""The door daemon: frames -> faces -> decision -> relay, failing closed.

The relay is locked before anything else is loaded, after every pulse (on its own timer), on SIGTERM/SIGINT,
on any exception and, by ``finally``, on every exit. A fail-secure strike wired to the normally-open contact is
also locked when the process dies or the power fails (de-energised = locked). SIGHUP reloads the config's
gallery (and the access log path) without dropping the camera.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Optional

from edge import accesslog as alog
from edge.build import LIVENESS_OFF, build_analyzer, calibration_line, load_cohort, load_index, policy_config
from edge.camera import FrameSource, LatestFrameGrabber, open_source
from edge.decision import DecisionPolicy, Observation
from edge.errors import GalleryError
from edge.notify import Systemd
from edge.pipeline import FaceAnalyzer
from edge.relay import Relay, make_relay
from edge.sidecar import operating_point, stranger_neighbours

log = logging.getLogger("doorface")

#: Longest wait for a camera frame before the loop looks at its stop and reload flags again (seconds).
LOOP_POLL = 0.25


class Daemon:
    """Run with :meth:`run`; returns the exit code. ``relay``/``source``/``notifier``/``analyzer`` may be injected
    (tests; ``edge.detector.FakeDetector`` and ``edge.embedder.FakeEmbedder`` need no model files)."""

    def __init__(self, cfg: dict, state_dir, source: Optional[FrameSource] = None, relay: Optional[Relay] = None,
                 events_out: Optional[str] = None, notifier: Optional[Systemd] = None, install_signals=True,
                 realtime: bool = False, analyzer: Optional[FaceAnalyzer] = None):
        self.cfg = cfg
        self.analyzer = analyzer
        self.state_dir = Path(state_dir)
        self.source = source
        self.relay = relay
        self.events_out = events_out
        self.notifier = notifier or Systemd()
        self.install_signals = install_signals
        self.realtime = realtime  # pace file sources to their frame times (the demo)
        self._reload = threading.Event()
        self._stop = threading.Event()
        self.decisions = []
        self.frames = 0
        self.stopped_by = None
        self._cohort = None

    def stop(self):
        """Ask the loop to end (from another thread); the relay is locked on the way out."""
        self._stop.set()

    # -- signals ---------------------------------------------------------------------------------------
    def _on_term(self, signum, frame):
        # Only a flag: the handler runs between two bytecodes of whatever the main thread was doing (perhaps inside
        # the relay's own lock), so it takes no lock and raises nothing. The loop sees the flag within a frame or
        # LOOP_POLL seconds, and its `finally` locks the relay; a second signal just sets the flag again.
        self.stopped_by = signal.Signals(signum).name
        self._stop.set()

    def _on_hup(self, signum, frame):
        self._reload.set()

    def _handle_reload(self, analyzer: FaceAnalyzer):
        self._reload.clear()
        self.notifier.reloading()
        try:
            analyzer.index = self._load_index(analyzer)
            log.info("reloaded gallery: %d templates", len(analyzer.index))
        except GalleryError as exc:
            log.error("reload failed, keeping the previous gallery: %s", exc)
        self.notifier.ready(f"{len(analyzer.index)} templates")

    def _load_index(self, analyzer: FaceAnalyzer):
        """The gallery with everyone's own threshold, checked against the active cohort (re-read at each reload:
        `doorface cohort build` then SIGHUP takes effect without a restart)."""
        cohort = load_cohort(self.cfg, self.state_dir, analyzer.embedder)
        index = load_index(self.state_dir, analyzer.embedder.sha256, cohort,
                           calibrated=self.cfg["match"]["calibration"] != "off",
                           stranger_k=stranger_neighbours(analyzer.embedder.meta, self.cfg["match"]))
        self._cohort = cohort
        return index

    def _record(self, access, d, frame_index: int) -> None:
        """One final decision: the access log, the events list, one log line, systemd's status."""
        event = access.record(d.kind, d.identity, d.score, d.reason, frame_index)
        self.decisions.append(event)
        log.info("%s identity=%s score=%.3f frame=%d (%s)", d.kind, d.identity or "-", d.score, frame_index,
                 d.reason)
        self.notifier.status(f"last: {d.kind} {d.identity or ''}".strip())

    # -- main loop -------------------------------------------------------------------------------------
    def run(self) -> int:
        cfg = self.cfg
        r = cfg["relay"]
        if self.relay is None:
            self.relay = make_relay(r["backend"], r["pin"], r["active_high"])
        relay = self.relay
        old_handlers = {}
        grabber = None
        access = None
        source = None
        try:
            relay.lock()  # fail closed before anything else can go wrong
            if self.install_signals and threading.current_thread() is threading.main_thread():
                for sig, fn in ((signal.SIGTERM, self._on_term), (signal.SIGINT, self._on_term),
                                (signal.SIGHUP, self._on_hup)):
                    old_handlers[sig] = signal.signal(sig, fn)
            analyzer = self.analyzer or build_analyzer(cfg)
            analyzer.detector.load()
            meta = analyzer.embedder.load().meta
            if analyzer.liveness is not None:
                analyzer.liveness.load()   # missing or tampered: ModelError, the door stays locked
            else:
                log.warning(LIVENESS_OFF)
            analyzer.index = self._load_index(analyzer)
            log.info(calibration_line(cfg, self._cohort, meta))
            policy = DecisionPolicy(policy_config(cfg, meta))
            access = alog.AccessLog(self.state_dir / alog.FILENAME, self.events_out).open()
            cam = cfg["camera"]
            source = self.source or open_source(cam["source"], cam["width"], cam["height"], cam["fps"])
            if source.live:
                grabber = LatestFrameGrabber(source, cam["reopen_initial_seconds"], cam["reopen_max_seconds"],
                                             on_state=lambda s: s == "disconnected" and relay.lock()).start()
            else:
                source.open()
            far = operating_point(analyzer.embedder.meta, cfg["match"])[2]
            lv = analyzer.liveness
            log.info("ready: %d templates, model %s, threshold %.3f (%s), margin %.3f, liveness %s, relay %s, "
                     "camera %s", len(analyzer.index), Path(analyzer.embedder.model_path).name,
                     policy.cfg.threshold, f"FAR {far}" if far else "from config", policy.cfg.min_margin,
                     f"{Path(lv.model_path).name} >= {lv.threshold:.2f}" if lv is not None else "OFF",
                     r["backend"], source.name)
            ready = False   # READY=1 once the first frame went through the whole pipeline
            unlock_s = r["unlock_seconds"]
            started = time.monotonic()
            snapshots = self.state_dir / "snapshots" if cfg["state"]["snapshots"] else None
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._handle_reload(analyzer)
                frame = grabber.latest(timeout=LOOP_POLL) if grabber else source.read()
                if frame is None:
                    if grabber:
                        if not grabber.connected:
                            relay.lock()
                            # The process is alive and retrying with the door locked: keep the watchdog fed
                            # (a hung process stops pinging; a lost camera is handled, not hung).
                            self.notifier.watchdog_ping()
                        continue
                    break  # end of a file or folder
                self.frames += 1
                t = frame.t  # wall clock for cameras; a file's own timeline for files (deterministic)
                if self.realtime and not source.live:
                    time.sleep(max(0.0, t - (time.monotonic() - started)))
                if policy.locked_out(t):
                    self.notifier.watchdog_ping()
                    continue
                res = analyzer.analyze(frame.image, frame.detect_image)
                self.notifier.watchdog_ping()  # capture and inference both worked
                if not ready:
                    self.notifier.ready(f"{len(analyzer.index)} templates")
                    ready = True
                ended = policy.tick(t)        # a visit that ended without a grant is a deny, however short
                if ended is not None:
                    self._record(access, ended, frame.index)
                if res is None or res.rejected:
                    continue
                mt = res.match
                d = policy.observe(Observation(t, mt.identity, mt.score, mt.margin, res.live, mt.threshold))
                if not d.final:
                    continue
                if d.kind == "grant":
                    relay.pulse(unlock_s)
                self._record(access, d, frame.index)
                if d.kind != "grant" and snapshots is not None:
                    alog.save_snapshot(snapshots, res.crop, cfg["state"]["snapshot_limit"])
            if self.stopped_by:
                log.info("stopping on %s", self.stopped_by)
            return 0
        finally:
            try:
                relay.close()  # locks, then releases the pin
            finally:
                self.notifier.stopping()
                if grabber:
                    grabber.stop()
                elif source is not None:
                    source.close()
                if access:
                    access.close()
                for sig, old in old_handlers.items():
                    signal.signal(sig, old)
