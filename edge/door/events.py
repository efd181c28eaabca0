"""The events seam: every record the door tells goes out through one :class:`EventBus`; every command it is told
comes in through one :class:`CommandQueue` that the frame loop drains.

Records are plain dicts with a protocol version ``v``, a ``type`` and a wall-clock ``ts``:

- ``decision``: every final decision (``grant``, ``deny`` (reason ``spoof`` for an attack), ``lockout``,
  ``remote_open``, ``remote_rejected``), with ``seq``, the access log's row id, so a consumer can de-duplicate and
  catch up from the log;
- ``relay``: every change of the strike (``state`` ``unlocked`` or ``locked``);
- ``camera``: every change of the camera (``state`` ``connected``, ``disconnected``, ...).

Each sink (the access log, ``--events-out`` JSONL, the local socket, later MQTT and the web page through that socket)
gets its own bounded queue and its own thread. :meth:`EventBus.publish` only appends to those queues, so the frame
loop never waits on a sink: a sink that raises is logged and that record is dropped for it; a sink that blocks
only fills its own queue, whose oldest records are then dropped and counted.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from typing import Callable, Deque, Dict, List, Optional

log = logging.getLogger("doorface")

#: The version of the record and command format (``v`` in every line of the socket protocol).
PROTOCOL = 1
#: Records buffered per sink before the oldest is dropped.
SINK_QUEUE = 1000
#: A sink call longer than this is logged as blocked (seconds).
SINK_TIMEOUT = 2.0
#: Decision kinds that are final (logged, counted, published).
DECISIONS = ("grant", "deny", "lockout", "remote_open", "remote_rejected")


def decision_record(kind: str, identity, score: float, reason: str, frame: int = -1,
                    ts: Optional[float] = None, **extra) -> dict:
    """A final decision as a record (``seq`` is given by the bus)."""
    rec = {"type": "decision", "ts": round(time.time() if ts is None else ts, 3), "frame": frame,
           "identity": identity, "score": round(float(score), 4), "decision": kind, "reason": reason}
    rec.update(extra)
    return rec


def state_record(kind: str, state: str, **extra) -> dict:
    """A ``relay`` or ``camera`` state change as a record."""
    return {"type": kind, "ts": round(time.time(), 3), "state": state, **extra}


class Sink:
    """Interface: :meth:`send` one record (may block or raise: the bus isolates it); :meth:`close` at the end."""

    name = "sink"
    #: When set, the sink's lane calls :meth:`tick` after this many idle seconds (a sink that retries on its own).
    tick_seconds: Optional[float] = None

    def send(self, record: dict) -> None:
        raise NotImplementedError

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


class CallableSink(Sink):
    """A sink from a function (tests, small adapters)."""

    def __init__(self, fn: Callable[[dict], None], name: str = "callable"):
        self.fn, self.name = fn, name

    def send(self, record: dict) -> None:
        self.fn(record)


class _Lane:
    """One sink's queue and thread. ``dropped`` counts records dropped because the queue was full; ``failed``
    those the sink raised on."""

    def __init__(self, sink: Sink, size: int, timeout: float):
        self.sink, self.size, self.timeout = sink, size, timeout
        self.queue: Deque[dict] = deque()
        self.cond = threading.Condition()
        self.dropped = self.failed = 0
        self.busy_since: Optional[float] = None
        self.closing = False
        self.thread = threading.Thread(target=self._run, name=f"sink-{sink.name}", daemon=True)

    def offer(self, record: dict) -> None:
        with self.cond:
            if len(self.queue) >= self.size:
                self.queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("events sink %s is behind: %d records dropped so far", self.sink.name, self.dropped)
            self.queue.append(record)
            self.cond.notify()
        busy = self.busy_since
        if busy is not None and time.monotonic() - busy > self.timeout and not getattr(self, "_said", False):
            self._said = True
            log.error("events sink %s blocked for more than %.1f s; its records queue up and the oldest are "
                      "dropped (the door goes on)", self.sink.name, self.timeout)

    def _next(self):
        """The next record; None when the sink's ``tick_seconds`` passed idle; False when closing and drained."""
        every = getattr(self.sink, "tick_seconds", None)
        with self.cond:
            while not self.queue and not self.closing:
                if not self.cond.wait(every) and every is not None:
                    return None
            return self.queue.popleft() if self.queue else False

    def _run(self) -> None:
        while True:
            record = self._next()
            if record is False:
                return
            self.busy_since = time.monotonic()
            try:
                if record is None:
                    self.sink.tick()
                else:
                    self.sink.send(record)
            except Exception as exc:   # a sink's failure never reaches the frame loop
                self.failed += record is not None
                log.error("events sink %s failed on a %s record (dropped for it): %s: %s", self.sink.name,
                          record.get("type") if record else "tick", exc.__class__.__name__, exc)
            finally:
                self.busy_since = None
                self._said = False

    def idle(self) -> bool:
        with self.cond:
            return not self.queue and self.busy_since is None


class EventBus:
    """Fans every record out to its sinks, each on its own bounded lane. ``first_seq`` is the ``seq`` the next
    decision gets (the access log's next row id, so records and log rows share one numbering)."""

    def __init__(self, sinks: List[Sink] = (), first_seq: int = 1, queue: int = SINK_QUEUE,
                 timeout: float = SINK_TIMEOUT):
        self._lanes = [_Lane(s, queue, timeout) for s in sinks]
        self._seq = itertools.count(first_seq)
        self._lock = threading.Lock()
        self._started = False
        self._numbered = 0

    def add(self, sink: Sink) -> None:
        lane = _Lane(sink, self._lanes[0].size if self._lanes else SINK_QUEUE,
                     self._lanes[0].timeout if self._lanes else SINK_TIMEOUT)
        self._lanes.append(lane)
        if self._started:
            lane.thread.start()

    def start(self) -> "EventBus":
        if not self._started:
            self._started = True
            for lane in self._lanes:
                lane.thread.start()
        return self

    def publish(self, record: dict) -> dict:
        """Stamp the record (``v``; ``seq`` on decisions) and queue it for every sink. Never blocks on a sink."""
        with self._lock:
            record = {"v": PROTOCOL, **record}
            if record.get("type") == "decision":
                record["seq"] = next(self._seq)
                self._numbered += 1
            for lane in self._lanes:
                lane.offer(record)
        return record

    def renumber(self, first_seq: int) -> bool:
        """Number decisions from ``first_seq`` instead, unless one was already numbered (the access log could not
        be read at start and now can: its next row id). True when renumbered."""
        with self._lock:
            if self._numbered:
                return False
            self._seq = itertools.count(first_seq)
            return True

    def stats(self) -> Dict[str, dict]:
        return {lane.sink.name: {"queued": len(lane.queue), "dropped": lane.dropped, "failed": lane.failed}
                for lane in self._lanes}

    def close(self, timeout: float = 2.0) -> None:
        """Let the sinks drain for at most ``timeout`` seconds in all, then close them; a sink still blocked is
        left behind (its thread is a daemon), so closing the door never waits on a sink for long."""
        end = time.monotonic() + timeout
        for lane in self._lanes:
            with lane.cond:
                lane.closing = True
                lane.cond.notify()
        for lane in self._lanes:
            if self._started:
                lane.thread.join(max(0.0, end - time.monotonic()))
            if lane.thread.is_alive() or not lane.idle():
                log.warning("events sink %s did not finish within %.1f s: %d records not delivered",
                            lane.sink.name, timeout, len(lane.queue))
                continue
            try:
                lane.sink.close()
            except Exception as exc:
                log.error("events sink %s: close failed: %s", lane.sink.name, exc)


class CommandQueue:
    """Commands for the frame loop (from the socket's peers): any thread may :meth:`put`; only the loop
    :meth:`drain`s, so one thread drives the relay. Bounded: a flood of commands drops the newest."""

    def __init__(self, size: int = 64):
        self._q: Deque[dict] = deque()
        self._size = size
        self._lock = threading.Lock()
        self.refused = 0

    def put(self, command: dict) -> bool:
        with self._lock:
            if len(self._q) >= self._size:
                self.refused += 1
                return False
            self._q.append(command)
            return True

    def drain(self) -> List[dict]:
        with self._lock:
            out = list(self._q)
            self._q.clear()
        return out
