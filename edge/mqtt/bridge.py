"""``doorface mqtt``: the bridge between the door's events socket and an MQTT broker.

Threads: one reads the door's records from the socket (reconnecting while the door is away), one judges commands
(:mod:`edge.mqtt.commands`) and sends them to the door on a connection of their own, paho's network thread, and
:meth:`Bridge.run`'s own, which connects to the broker (again and again, with a back-off, while it is away) and
publishes.

**Nothing lost.** Decisions go out on ``<base>/event`` strictly in ``seq`` order, QoS 1, at most :data:`WINDOW`
unacknowledged. ``last_seq`` (kept in the bridge's state file) is the highest seq up to which the broker
acknowledged everything. When the broker goes away the unacknowledged ones are sent again on the next connection
(a consumer that sees one twice sees the same ``seq``), and whatever the socket did not bring (the bridge was down,
the socket dropped records for a slow reader, the live buffer overflowed) is read back from the access log after
``last_seq``, a batch at a time. Memory is bounded whatever the outage: :data:`LIVE_MAX` live records, the
window, one batch of rows.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Optional

from edge.door.seam import SeamClient
from edge.errors import DoorfaceError
from edge.mqtt import payloads as pl
from edge.mqtt.code import CodeStore
from edge.mqtt.commands import CommandGate, Incoming, RateLimit, Verdict
from edge.mqtt.history import BATCH, AccessLogReader, BridgeState
from edge.mqtt.link import WINDOW, Link, require_paho
from edge.mqtt.settings import MqttError, Settings

log = logging.getLogger("doorface")

#: Live decision records kept while they wait for the broker (beyond: read back from the access log).
LIVE_MAX = 1000
#: A seq missing from both the socket and the access log is waited for this long, then skipped (seconds).
GAP_WAIT = 3.0
#: The broker is retried after 1 s, doubling up to this (seconds).
RETRY_MAX = 10.0
#: Largest snapshot published (bytes).
SNAPSHOT_MAX = 1 << 20
RETAINED = ("discovery", "availability", "lock", "camera", "last_access")


class Bridge:
    """Build from :class:`~edge.mqtt.settings.Settings` and the door's socket path; :meth:`run` until :meth:`stop`.
    The constructor does no I/O."""

    def __init__(self, settings: Settings, socket_path):
        self.s = settings
        self.socket_path = Path(socket_path)
        self.reader = AccessLogReader(settings.door_state_dir)
        self.state = BridgeState(settings.state_dir, keep=2 * settings.command_max_age + 10)
        self.gate = CommandGate(settings, CodeStore(settings.code_file), self.state)
        self.limit = RateLimit()
        self.link: Optional[Link] = None
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._commands: "queue.Queue[Incoming]" = queue.Queue(maxsize=8)
        self._door: Optional[SeamClient] = None
        self.door_up = False
        self.relay: Optional[str] = None
        self.camera: Optional[str] = None
        self.live: "OrderedDict[int, dict]" = OrderedDict()
        self.sent: Optional[int] = None
        self.unacked: "OrderedDict[int, int]" = OrderedDict()    # seq -> mid, in the order sent
        self._mids: dict = {}                                     # mid -> seq (None: not a decision)
        self._early: set = set()                                  # acks that came before their mid was noted
        self._dirty: set = set()
        self._catchup = True
        self._gap_since: Optional[float] = None
        self._last_event: Optional[dict] = None
        self._born = time.time()
        self._said: dict = {}
        self.stats = {"published": 0, "from_log": 0, "resent": 0, "skipped": 0, "commands": 0, "refused_acks": 0,
                      "connections": 0}

    # -- running ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        door = self._door
        if door is not None:
            door.close()

    def run(self) -> int:
        require_paho()                # missing: one line, before anything starts
        self.state.load()
        self._start_from()
        for target, name in ((self._door_loop, "mqtt-door"), (self._command_loop, "mqtt-commands")):
            threading.Thread(target=target, name=name, daemon=True).start()
        try:
            while not self._stop.is_set():
                link = self._connect()
                if link is None:
                    break
                self._serve(link)
        finally:
            self._shutdown()
        return 0

    def _start_from(self) -> None:
        """Where publishing starts: the saved ``last_seq``; on a first start the access log's end (the history
        before the bridge existed is not replayed)."""
        if self.state.last_seq is None:
            self._born = time.time()
            self.state.last_seq = self.reader.last_before(self._born)
            log.info("mqtt: first start: publishing the decisions taken from now on (after seq %s)",
                     "?" if self.state.last_seq is None else self.state.last_seq)
        else:
            log.info("mqtt: publishing decisions after seq %d (saved in %s)", self.state.last_seq, self.state.path)

    def _say(self, key: str, line: str, level=logging.ERROR) -> None:
        """Log ``line`` once until it changes for ``key``."""
        if self._said.get(key) != line:
            log.log(level, line)
        self._said[key] = line

    def _connect(self) -> Optional[Link]:
        delay = 1.0
        while not self._stop.is_set():
            gen = self.stats["connections"] + 1
            link = Link(self.s, self._on_message, lambda mid, failed, g=gen: self._on_ack(g, mid, failed))
            try:
                link.open(timeout=max(10.0, self.s.keepalive))
            except MqttError as exc:
                self._say("broker", f"mqtt: {exc}; retrying (the door is not affected)")
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            self._said.pop("broker", None)
            with self._cv:
                self.stats["connections"] = gen
                self.link = link
                self.sent = self.state.last_seq
                self._catchup = True
                self._dirty = set(RETAINED)
            link.subscribe(self.s.topic("lock/set"), qos=1)
            link.subscribe(f"{self.s.discovery_prefix}/status", qos=1)
            log.info("mqtt: connected to %s as %s", self.s.where, self.s.username or "anonymous")
            return link
        return None

    def _serve(self, link: Link) -> None:
        """Publish while the connection lasts; then forget what was in flight (sent again next time)."""
        while not self._stop.is_set() and link.up:
            with self._cv:
                self._cv.wait(0.25)
            self._flush_retained(link)
            self._pump(link)
            self.state.save_seq_soon()
        if self._stop.is_set() and link.up:
            self._goodbye(link)
        with self._cv:
            resent = len(self.unacked)
            self.stats["resent"] += resent
            self.sent = self.state.last_seq
            self.unacked.clear()
            self._mids.clear()
            self._early.clear()
            self._catchup = True
            self.link = None
        if not self._stop.is_set():
            log.warning("mqtt: lost the broker (%s); %d decision(s) not acknowledged will be sent again",
                        link.drop_reason or "connection closed", resent)
        link.close(clean=False)

    def _goodbye(self, link: Link) -> None:
        """Stopping: say ``offline`` (retained; a clean disconnect sends no last will), wait for its ack briefly."""
        mid = link.publish(self.s.topic("availability"), "offline", qos=1, retain=True)
        end = time.monotonic() + 1.0
        while mid is not None and mid not in self._early and time.monotonic() < end:   # its ack
            time.sleep(0.02)
        link.close(clean=True)

    def _shutdown(self) -> None:
        self.state.save()
        door = self._door
        if door is not None:
            door.close()

    # -- the door's side -------------------------------------------------------------------------------
    def _door_loop(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                client = SeamClient(self.socket_path, timeout=None).connect()
            except (DoorfaceError, OSError, EOFError, ValueError) as exc:
                self._say("door", f"mqtt: {exc}; retrying", logging.WARNING)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._door, delay = client, 0.5
            self._said.pop("door", None)
            self._door_state(True, client.hello or {})
            try:
                for rec in client.records():
                    if self._stop.is_set():
                        break
                    self._on_record(rec)
            except (OSError, EOFError, ValueError):
                pass
            finally:
                client.close()
                self._door = None
            self._door_state(False, {})
            if not self._stop.is_set():
                log.warning("mqtt: lost the door's events socket %s; reconnecting", self.socket_path)

    def _door_state(self, up: bool, hello: dict) -> None:
        with self._cv:
            self.door_up = up
            self._dirty.add("availability")
            self._catchup = True          # the last records may not have come through: the access log has them
            if up:
                if hello.get("relay"):
                    self.relay = hello["relay"]
                    self._dirty.add("lock")
                if hello.get("camera"):
                    self.camera = hello["camera"]
                    self._dirty.add("camera")
            self._cv.notify_all()

    def _on_record(self, rec: dict) -> None:
        kind = rec.get("type")
        with self._cv:
            if rec.get("dropped"):
                self._catchup = True      # the socket dropped records for us: the access log has them
            if kind == "decision" and rec.get("seq") is not None:
                self._live(int(rec["seq"]), rec)
            elif kind == "relay" and pl.lock_state(rec.get("state")):
                self.relay = rec["state"]
                self._dirty.add("lock")
            elif kind == "camera" and rec.get("state"):
                self.camera = rec["state"]
                self._dirty.add("camera")
            self._cv.notify_all()

    def _live(self, seq: int, rec: dict) -> None:
        """A decision from the socket (under the lock). The socket brings each record once, so a seq at or below
        ``last_seq`` means the door numbers from lower again (its access log was replaced): follow it."""
        last = self.state.last_seq
        if last is None:              # a first start without the access log: from the bridge's start if it reads now
            last = self.state.last_seq = self.sent = self.reader.last_before(self._born)
        if last is None or seq <= last:
            if last is not None:
                log.warning("mqtt: the door numbers decisions from %d again, below the last published (%d): its "
                            "access log was replaced? Publishing from there", seq, last)
            self.state.last_seq = self.sent = seq - 1
            self.unacked.clear()
            self.live.clear()
        self.live[seq] = rec
        if len(self.live) > LIVE_MAX:
            self.live.popitem(last=False)
            self._catchup = True

    # -- the broker's side -----------------------------------------------------------------------------
    def _retained_payload(self, key: str):
        if key == "discovery":
            return pl.encode(pl.discovery(self.s)[1])
        if key == "availability":
            return "online" if self.door_up else "offline"
        if key == "lock":
            return pl.lock_state(self.relay)
        if key == "camera":
            return pl.camera_state(self.camera)
        return pl.encode(self._last_event) if self._last_event is not None else None

    def _flush_retained(self, link: Link) -> None:
        with self._cv:
            dirty, self._dirty = self._dirty, set()
        for key in RETAINED:
            if key not in dirty:
                continue
            payload = self._retained_payload(key)
            if payload is None:
                continue
            topic = pl.discovery(self.s)[0] if key == "discovery" else \
                self.s.topic("lock/state" if key == "lock" else key)
            if not self._publish(link, topic, payload, retain=True):
                with self._cv:
                    self._dirty.add(key)

    def _publish(self, link: Link, topic: str, payload, qos: int = 1, retain: bool = False,
                 seq: Optional[int] = None) -> bool:
        """Hand one message to paho and note its mid (never holding the lock while paho works: paho calls back
        into :meth:`_on_ack` holding its own). False when the connection is gone."""
        mid = link.publish(topic, payload, qos=qos, retain=retain)
        if mid is None:
            return False
        if qos == 0:
            return True
        with self._cv:
            if seq is not None:
                self.unacked[seq] = mid
            if mid in self._early:
                self._early.discard(mid)
                self._acked(mid, seq)
            else:
                self._mids[mid] = seq
        return True

    def _on_ack(self, gen: int, mid: int, failed: Optional[str]) -> None:
        """paho's thread: the broker acknowledged ``mid``."""
        with self._cv:
            if gen != self.stats["connections"]:
                return
            if failed:
                self.stats["refused_acks"] += 1
                self._say("ack", f"mqtt: the broker refused a message: {failed} (check its ACL for {self.s.base}/#)")
            if mid not in self._mids:
                self._early.add(mid)
                return
            self._acked(mid, self._mids.pop(mid))
            self._cv.notify_all()

    def _acked(self, mid: int, seq: Optional[int]) -> None:
        """(Under the lock.) Move ``last_seq`` up to just below the oldest decision still unacknowledged."""
        if seq is None:
            return
        self.unacked.pop(seq, None)
        self._advance()

    def _advance(self) -> None:
        """(Under the lock.) ``last_seq``: every decision up to it was acknowledged (or is not an event)."""
        mark = next(iter(self.unacked)) - 1 if self.unacked else self.sent
        if mark is not None and (self.state.last_seq is None or mark > self.state.last_seq):
            self.state.last_seq = mark
            while self.live and next(iter(self.live)) <= mark:
                self.live.popitem(last=False)

    def _pump(self, link: Link) -> None:
        """Send the next decisions in seq order while the window has room; then the retained last access."""
        sent_any = False
        while not self._stop.is_set() and link.up:
            with self._cv:
                room = WINDOW - len(self.unacked)
            if room <= 0:
                break
            batch = self._next_batch(room)
            if not batch:
                break
            for rec, from_log in batch:
                if not self._send_decision(link, rec, from_log):
                    return
                sent_any = True
        if sent_any and self._last_event is not None:
            self._publish(link, self.s.topic("last_access"), pl.encode(self._last_event), retain=True)

    def _next_batch(self, room: int) -> list:
        """``[(record, from_log)]``: the next decisions after ``sent``: from the live buffer when it holds the
        next one, else from the access log; a gap neither fills is skipped after :data:`GAP_WAIT` s."""
        with self._cv:
            if self.sent is None:
                return []
            nxt = self.sent + 1
            out = []
            while nxt in self.live and len(out) < room:
                out.append((self.live[nxt], False))
                nxt += 1
            if out:
                self._gap_since = None
                return out
            first_live = next(iter(self.live)) if self.live else None
            if first_live is None and not self._catchup:
                return []
            sent = self.sent
        rows = self.reader.after(sent, min(room, BATCH)) or []
        if rows and rows[0]["seq"] == sent + 1:
            self._gap_since = None
            with self._cv:
                return [(self.live[r["seq"]], False) if r["seq"] in self.live else (r, True) for r in rows]
        firsts = [x for x in (rows[0]["seq"] if rows else None, first_live) if x is not None]
        if not firsts:
            with self._cv:
                self._catchup = False
            return []
        return self._gap(sent, min(firsts))

    def _gap(self, sent: int, first: int) -> list:
        now = time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
        if now - self._gap_since < GAP_WAIT:
            return []
        self._gap_since = None
        log.warning("mqtt: decisions %d-%d are neither in the access log nor from the socket: skipped (the door "
                    "did not keep them, or numbers from %d after a fallback)", sent + 1, first - 1, first)
        with self._cv:
            if self.sent == sent:
                self.stats["skipped"] += first - sent - 1
                self.sent = first - 1
                self._advance()
        return []

    def _send_decision(self, link: Link, rec: dict, from_log: bool) -> bool:
        seq = int(rec["seq"])
        ev = pl.event_payload(rec, self.s.door_id, catchup=from_log)
        if ev is not None:
            if not self._publish(link, self.s.topic("event"), pl.encode(ev), seq=seq):
                return False
            self._last_event = ev
            self.stats["published"] += 1
            self.stats["from_log"] += from_log
            if self.s.snapshots and not from_log and ev["snapshot"]:
                self._snapshot(link, pl.snapshot_name(rec))
        with self._cv:
            if self.sent is not None and seq > self.sent:
                self.sent = seq
            self._advance()           # (its ack may have come already; a decision that is no event is done)
        return True

    def _snapshot(self, link: Link, name: str) -> None:
        path = self.s.door_state_dir / "snapshots" / name
        try:
            if path.stat().st_size > SNAPSHOT_MAX:
                raise OSError(f"larger than {SNAPSHOT_MAX} bytes")
            data = path.read_bytes()
        except OSError as exc:
            self._say("snapshot", f"mqtt: snapshot {path} not published: {getattr(exc, 'strerror', None) or exc}",
                      logging.WARNING)
            return
        link.publish(self.s.topic("snapshot"), data, qos=0, retain=False)

    # -- commands --------------------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, retained: bool, expiry) -> None:
        """paho's thread: Home Assistant's birth message, or a command (queued for the command thread)."""
        if topic == f"{self.s.discovery_prefix}/status":
            if payload.strip() == b"online":
                with self._cv:
                    self._dirty.update(RETAINED)
                    self._cv.notify_all()
            return
        if topic != self.s.topic("lock/set") or (retained and not payload):
            return
        if not self.limit.take():
            return
        try:
            self._commands.put_nowait(Incoming(payload, retained, expiry, time.monotonic()))
        except queue.Full:
            self.limit.dropped += 1

    def _command_loop(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._commands.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.handle_command(msg)
            except Exception as exc:   # one bad command never ends the thread
                log.error("mqtt: command not handled: %s: %s", exc.__class__.__name__, exc)

    def handle_command(self, msg: Incoming) -> Verdict:
        """Judge one command and hand it to the door: ``open`` (the door still applies its lockout and its "one
        pulse at most") or ``reject`` (logged by the door; a bad code counted towards its lockout)."""
        v = self.gate.judge(msg)
        self.stats["commands"] += 1
        dropped = self.limit.dropped_since()
        fields = {"id": f"mqtt-{v.digest[:16]}", "user": f"mqtt:{self.s.command_user}"}
        if v.open:
            cmd = "open"
            fields["face"] = self.s.require_face
        else:
            cmd = "reject"
            fields.update(reason=v.reason + (f"; {dropped} more command(s) dropped by the rate limit" if dropped
                                             else ""), count=v.count)
        log.info("mqtt: command on %s: %s -> %s", self.s.topic("lock/set"), v.reason, cmd)
        try:
            with SeamClient(self.socket_path, timeout=5.0) as door:
                reply = door.command(cmd, **fields)
            if not reply.get("ok"):
                log.error("mqtt: the door refused the %s command: %s", cmd, reply.get("error"))
        except (DoorfaceError, OSError, EOFError, ValueError) as exc:
            log.error("mqtt: %s command not delivered to the door (%s): nothing is done", cmd, exc)
        link = self.link
        if msg.retained and link is not None:
            link.publish(self.s.topic("lock/set"), b"", qos=0, retain=True)   # clear it at the broker
        return v
