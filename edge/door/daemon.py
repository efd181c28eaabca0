"""The door daemon: frames -> faces -> decision -> relay, failing closed.

The relay is locked before anything else is loaded, after every pulse (on its own timer), on SIGTERM/SIGINT,
on any exception and, by ``finally``, on every exit. A fail-secure strike wired to the normally-open contact is
also locked when the process dies or the power fails (de-energised = locked). SIGHUP reloads the config's
gallery without dropping the camera.

What the door tells (decisions, relay and camera changes) goes out as records through one
:class:`~edge.door.events.EventBus`; what it is told (a remote ``open``) comes in through one
:class:`~edge.door.events.CommandQueue` that this loop drains, so this one thread drives the relay.
The pieces come from the composition root (:func:`edge.build.daemon`), which this module never imports.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import List, Optional

from edge.door import accesslog as alog
from edge.door.camera import FrameSource, LatestFrameGrabber, open_source, redact_uri
from edge.door.decision import Decision, DecisionPolicy, Observation
from edge.door.events import CommandQueue, EventBus, Sink, decision_record, state_record
from edge.door.frametap import FrameTap
from edge.door.notify import Systemd
from edge.door.relay import Relay, make_relay, remember_relay
from edge.door.seam import SeamServer, socket_path
from edge.errors import GalleryError
from edge.people.names import shown

log = logging.getLogger("doorface")

#: Longest wait for a camera frame before the loop looks at its stop and reload flags and its commands again (s).
LOOP_POLL = 0.25
#: A remote open that asks for a face needs an enrolled, live one to have passed this recently (s).
FACE_RECENT = 2.0


def local_now():
    """The door's local time, for schedules (the wall clock: a schedule is about the time of day, not durations)."""
    import datetime as dt

    return dt.datetime.now()


class Daemon:
    """Build it with :func:`edge.build.daemon`; run with :meth:`run`, which returns the exit code. ``parts`` (see :class:`edge.build.DoorParts`) builds the
    analyzer, the gallery index and the decision policy from the config. ``relay``/``source``/``notifier`` may be
    injected (tests), and ``sinks`` are extra receivers of every record."""

    def __init__(self, cfg: dict, state_dir, parts, source: Optional[FrameSource] = None,
                 relay: Optional[Relay] = None, events_out: Optional[str] = None,
                 notifier: Optional[Systemd] = None, install_signals=True, realtime: bool = False,
                 sinks: List[Sink] = ()):
        self.cfg, self.parts = cfg, parts
        self.state_dir = Path(state_dir)
        self.source, self.relay = source, relay
        self.events_out = events_out
        self.notifier = notifier or Systemd()
        self.install_signals = install_signals
        self.realtime = realtime  # pace file sources to their frame times (the demo)
        self.sinks = list(sinks)
        self.commands = CommandQueue()
        self._reload = threading.Event()
        self._stop = threading.Event()
        self.decisions = []
        self.frames = 0
        self.stopped_by = None
        self.bus: Optional[EventBus] = None
        self.socket: Optional[SeamServer] = None
        self.index = None
        self._cohort = None
        self._snapshot_error: Optional[str] = None
        self._face_seen: Optional[float] = None   # when an enrolled, live face last passed the rule
        self.tap = FrameTap()                     # frames asked for through the socket (edge.door.frametap)

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

    def _install_signals(self) -> dict:
        old = {}
        if self.install_signals and threading.current_thread() is threading.main_thread():
            for sig, fn in ((signal.SIGTERM, self._on_term), (signal.SIGINT, self._on_term),
                            (signal.SIGHUP, self._on_hup)):
                old[sig] = signal.signal(sig, fn)
        return old

    def _handle_reload(self, analyzer):
        """SIGHUP: the gallery, the cohort and the liveness calibration again. Whatever fails (a corrupt gallery or
        cohort, an unreadable file) is one line, and the door goes on with what it had."""
        self._reload.clear()
        self.notifier.reloading()
        try:
            self.index = self._load_index(analyzer)
            log.info("reloaded gallery: %d templates", len(self.index))
            if analyzer.liveness is not None:
                log.info(self.parts.calibrate_liveness(self.state_dir, analyzer.liveness))
        except Exception as exc:   # never a traceback, never an exit: the door keeps the gallery it had
            msg = str(exc).splitlines()[0] if str(exc) else ""
            what = msg if isinstance(exc, GalleryError) else f"{exc.__class__.__name__}{': ' + msg if msg else ''}"
            log.error("reload failed, keeping the previous gallery and cohort: %s", what)
        self.notifier.ready(f"{len(self.index)} templates")

    def _load_index(self, analyzer):
        """The gallery with everyone's own threshold, checked against the active cohort (re-read at each reload:
        `doorface cohort build` then SIGHUP takes effect without a restart)."""
        index, self._cohort = self.parts.load_index(self.state_dir, analyzer)
        return index

    # -- the seam --------------------------------------------------------------------------------------
    def _open_bus(self) -> alog.AccessLog:
        """The bus and its sinks. The access log need not open: the door decides all the same (issue 25), numbering
        decisions from :func:`~edge.door.accesslog.fallback_seq` until the log can be read, which its own lane
        retries with a back-off."""
        access = alog.AccessLog(self.state_dir / alog.FILENAME)
        first = access.first_seq()
        if first is None:
            first = alog.fallback_seq()
            log.warning("access log unreadable at start: decisions are numbered from %d (time-based, above any row "
                        "the log holds) unless it opens before the first one", first)
            access.on_open = self._renumber
        sinks: List[Sink] = [access] + ([alog.JsonLinesSink(self.events_out)] if self.events_out else [])
        ev = self.cfg["events"]
        if ev["socket"] != "off":
            path = socket_path(ev["socket"], self.state_dir)
            try:
                self.socket = SeamServer(path, self.commands, ev["group"], queue=ev["peer_queue"],
                                         status=self._seam_status).start()
                sinks.append(self.socket)
                log.info("events socket: %s", path)
            except (OSError, KeyError) as exc:   # the door never depends on its integrations
                log.error("events socket %s: cannot listen (%s); the door goes on without it", path, exc)
        self.bus = EventBus(sinks + self.sinks, first_seq=first)
        self.bus.start()      # (after self.bus is set: the access log's lane may renumber it)
        return access

    def _renumber(self, next_seq: int) -> None:
        """The access log opened after the start (on its lane): number from its next row if nothing was numbered."""
        if self.bus is not None and self.bus.renumber(next_seq):
            log.info("access log readable: decisions are numbered from %d", next_seq)

    def _record(self, d, frame_index: int, **extra) -> dict:
        """One final decision: a record on the bus (access log, events file, socket), one log line, systemd's
        status."""
        event = self.bus.publish(decision_record(d.kind, d.identity, d.score, d.reason, frame_index, **extra))
        self.decisions.append(event)
        log.info("%s identity=%s score=%.3f frame=%d (%s)", d.kind, shown(d.identity), d.score, frame_index,
                 d.reason)
        self.notifier.status(f"last: {d.kind} {'' if d.identity is None else shown(d.identity)}".strip())
        return event

    def _on_camera(self, state: str) -> None:
        if state == "disconnected":
            self.relay.lock()
        if self.bus is not None:
            self.bus.publish(state_record("camera", state))

    def _on_relay(self, on: bool) -> None:
        if self.bus is not None:
            self.bus.publish(state_record("relay", "unlocked" if on else "locked"))

    def _handle_commands(self, policy: DecisionPolicy, t: float, frame_index: int) -> None:
        """Commands from the socket, on this thread. ``open``: one pulse, refused while the door is locked out
        (the same lockout faces meet) or while the strike is already open (a command never extends a pulse)."""
        for cmd in self.commands.drain():
            who = cmd.get("user") or "-"
            if cmd.get("cmd") == "frames":
                if not self.tap.add(cmd) and self.socket is not None:
                    self.socket.send_to(cmd["peer"], {"v": 1, "type": "frame", "id": cmd.get("id"), "last": True,
                                                      "error": "the door serves frames to enough peers already"})
                continue
            if cmd.get("cmd") == "reload":     # as SIGHUP: handled by the loop before the next frame
                log.info("reload asked by %s", who)
                self._reload.set()
                continue
            if cmd.get("cmd") == "reject":
                self._reject(policy, t, frame_index, cmd, who)
                continue
            if policy.locked_out(t):
                d = Decision("remote_rejected", who, 0.0, "locked out")
            elif self.relay.is_unlocked:
                d = Decision("remote_rejected", who, 0.0, "already open")
            elif cmd.get("face") and not (self._face_seen is not None and 0 <= t - self._face_seen <= FACE_RECENT):
                d = Decision("remote_rejected", who, 0.0, "no enrolled face in view")
            else:
                self._pulse()
                d = Decision("remote_open", who, 0.0, f"remote open by {who}")
            self._record(d, frame_index, command_id=cmd.get("id"))

    def _reject(self, policy: DecisionPolicy, t: float, frame_index: int, cmd: dict, who: str) -> None:
        """A command its peer refused itself (a bad remote-open code at the MQTT bridge): logged as
        ``remote_rejected`` with the peer's reason and, when it says ``count``, a denied attempt towards the lockout."""
        self._record(Decision("remote_rejected", who, 0.0, cmd.get("reason") or "rejected"), frame_index,
                     command_id=cmd.get("id"))
        lockout = policy.count_denial(t) if cmd.get("count") else None
        if lockout is not None:
            self._record(lockout, frame_index)

    def _pulse(self) -> None:
        """One pulse of the strike. A relay that fails is told first (a ``relay`` record ``fault``: Home Assistant
        shows the lock JAMMED); the error then ends the run, and the unit's re-lock helper locks the strike."""
        try:
            self.relay.pulse(self.cfg["relay"]["unlock_seconds"])
        except Exception as exc:
            if self.bus is not None:
                self.bus.publish(state_record("relay", "fault", error=(str(exc) or exc.__class__.__name__)[:200]))
            raise

    def _seam_status(self) -> dict:
        """The door's state for the socket's hello line (any thread): the strike and the camera."""
        g = getattr(self, "_grabber", None)
        return {"relay": "unlocked" if self.relay is not None and self.relay.is_unlocked else "locked",
                "camera": "connected" if g is None or g.connected else "disconnected"}

    # -- main loop -------------------------------------------------------------------------------------
    def run(self) -> int:
        r = self.cfg["relay"]
        if self.relay is None:
            self.relay = make_relay(r["backend"], r["pin"], r["active_high"])
        self._grabber = None
        access = None
        old_handlers = {}
        try:
            self.relay.lock()  # fail closed before anything else can go wrong
            remember_relay(self.state_dir, self.relay)   # the re-lock helper's fallback follows the config
            self.relay.on_change = self._on_relay
            old_handlers = self._install_signals()
            analyzer, policy = self._load()
            access = self._open_bus()
            self._open_source()
            self._ready_line(analyzer, policy)
            self._loop(analyzer, policy)
            if self.stopped_by:
                log.info("stopping on %s", self.stopped_by)
            return 0
        finally:
            self._shutdown(access, old_handlers)

    def _load(self):
        """The models, the gallery and the policy; a missing or tampered model raises, the door stays locked."""
        analyzer = self.parts.analyzer()
        analyzer.detector.load()
        meta = analyzer.embedder.load().meta
        if analyzer.liveness is not None:
            analyzer.liveness.load()   # missing or tampered: ModelError, the door stays locked
            log.info(self.parts.calibrate_liveness(self.state_dir, analyzer.liveness))
        else:
            log.warning(self.parts.liveness_off)
        self.index = self._load_index(analyzer)
        log.info(self.parts.calibration_line(self._cohort, meta))
        return analyzer, self.parts.policy(meta)

    def _open_source(self) -> None:
        cam = self.cfg["camera"]
        if self.source is None:
            self.source = open_source(cam["source"], cam["width"], cam["height"], cam["fps"])
        if self.source.live:
            self._grabber = LatestFrameGrabber(self.source, cam["reopen_initial_seconds"], cam["reopen_max_seconds"],
                                               on_state=self._on_camera).start()
        else:
            self.source.open()

    def _ready_line(self, analyzer, policy) -> None:
        r = self.cfg["relay"]
        far = self.parts.far(analyzer.embedder.meta)
        lv = analyzer.liveness
        log.info("ready: %d templates, model %s, threshold %.3f (%s), margin %.3f, liveness %s, relay %s, "
                 "camera %s", len(self.index), Path(analyzer.embedder.model_path).name,
                 policy.cfg.threshold, f"FAR {far}" if far else "from config", policy.cfg.min_margin,
                 f"{Path(lv.model_path).name} >= {lv.threshold:.2f}" if lv is not None else "OFF",
                 r["backend"], redact_uri(self.source.name))
        log.info(policy.cfg.describe_lockout())

    def _next_frame(self):
        """The next frame; None to look again (a live camera gave none in time); False at the end of a file."""
        if self._grabber is None:
            frame = self.source.read()
            return False if frame is None else frame
        frame = self._grabber.latest(timeout=LOOP_POLL)
        if frame is None and not self._grabber.connected:
            self.relay.lock()
            # The process is alive and retrying with the door locked: keep the watchdog fed (a hung process stops
            # pinging; a lost camera is handled, not hung).
            self.notifier.watchdog_ping()
        return frame

    def _loop(self, analyzer, policy: DecisionPolicy) -> None:
        self._ready = False   # READY=1 once the first frame went through the whole pipeline
        self._started = time.monotonic()
        t, index = None, -1
        while not self._stop.is_set():
            if self._reload.is_set():
                self._handle_reload(analyzer)
            now = time.monotonic() if self.source.live or t is None else t
            self._handle_commands(policy, now, index)
            frame = self._next_frame()
            if frame is False:
                break  # end of a file or folder
            if frame is None:
                continue
            t, index = self._clock(frame), frame.index
            if self.tap and self.socket is not None:
                self._tap(frame)
            self._frame(analyzer, policy, frame, t)

    def _tap(self, frame) -> None:
        """Frames for the socket's peers that asked (a preview, an enrollment); a failure drops the requests, never
        the door."""
        try:
            self.tap.offer(frame.image, time.monotonic(), self.socket.send_to)
        except Exception as exc:
            log.error("frames for the socket's peers: %s: %s; requests dropped", exc.__class__.__name__, exc)
            self.tap.requests.clear()

    def _clock(self, frame) -> float:
        """The decision's time for a frame: a camera's frames are stamped with the wall clock, which NTP may step
        (an hour back at boot on a Pi without a clock), so the policy runs on the monotonic clock taken as the frame
        is handled; a file or folder keeps its own timeline (deterministic, and paced by ``realtime``)."""
        return time.monotonic() if self.source.live else frame.t

    def _frame(self, analyzer, policy: DecisionPolicy, frame, t: float) -> None:
        """One frame at time ``t`` (:meth:`_clock`) through the whole rule: lockout, analysis, attempt bookkeeping,
        decision, relay."""
        self.frames += 1
        if self.realtime and not self.source.live:
            time.sleep(max(0.0, t - (time.monotonic() - self._started)))
        if policy.blocks_faces(t):    # a lockout that stops every face (one of unknown faces only does not)
            self.notifier.watchdog_ping()
            return
        res = analyzer.analyze(frame.image, frame.detect_image)
        self.notifier.watchdog_ping()  # capture and inference both worked
        if not self._ready:
            self.notifier.ready(f"{len(self.index)} templates")
            self._ready = True
        ended = policy.tick(t)        # a visit that ended without a grant is a deny, however short
        if ended is not None:
            self._record(ended, frame.index)
        if res is None or res.rejected:
            return
        mt = self.index.match(res.embedding)
        lv = analyzer.liveness
        o = Observation(t, mt.identity, mt.score, mt.margin, res.live, mt.threshold, res.liveness,
                        None if lv is None else lv.threshold, self.index.outside_hours(mt.identity, local_now()))
        if policy.passes(o):
            self._face_seen = t       # an enrolled, live face in view (a remote open may ask for one)
        d = policy.observe(o)
        if not d.final:
            return
        if d.kind == "grant":
            self._pulse()
        snap = self._snapshot(res.crop) if d.kind != "grant" and self.cfg["state"]["snapshots"] else None
        self._record(d, frame.index, margin=round(float(mt.margin), 4),
                     liveness=None if res.liveness is None else round(float(res.liveness), 4),
                     **({"snapshot": snap} if snap else {}))

    def _snapshot(self, crop) -> Optional[str]:
        """A denied face's snapshot (its file name, for the decision record); one that cannot be written (a full disk,
        a read-only dir) is skipped, the reason logged once (again when it changes), and the door goes on."""
        st = self.cfg["state"]
        try:
            path = alog.save_snapshot(self.state_dir / "snapshots", crop, st["snapshot_limit"])
        except Exception as exc:   # OSError, cv2.error: a snapshot is never worth the door
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
                f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if reason != self._snapshot_error:
                log.error("snapshot not written in %s (%s); the door keeps deciding, later snapshots are tried again",
                          self.state_dir / "snapshots", reason)
            self._snapshot_error = reason
        else:
            if self._snapshot_error is not None:
                log.info("snapshots are written again")
            self._snapshot_error = None
            return path.name if path is not None else None

    def _shutdown(self, access, old_handlers: dict) -> None:
        try:
            self.relay.close()  # locks, then releases the pin
        finally:
            self.notifier.stopping()
            if self._grabber:
                self._grabber.stop()
            elif self.source is not None:
                self.source.close()
            if self.bus is not None:
                self.bus.close()    # bounded: a blocked sink is left behind, never waited on for long
            elif access:
                access.close()
            for sig, old in old_handlers.items():
                signal.signal(sig, old)
