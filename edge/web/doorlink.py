"""The page's line to the door: one thread reads the door's records from the events socket (reconnecting, with a
back-off, while the door is away), keeps the door's state and the latest decisions, and hands every record to the
live pages (SSE). Commands (``open``, ``reload``) go on a connection of their own, so a slow page never delays them."""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Deque, List, Optional

from edge.door.seam import SeamClient
from edge.errors import DoorfaceError

log = logging.getLogger("doorface")

#: Decisions kept for the status page.
RECENT = 20
#: The door is retried after 1 s, doubling up to this (seconds).
RETRY_MAX = 10.0
#: How long :meth:`DoorLink.open` waits for the door's outcome (seconds).
OUTCOME_WAIT = 5.0


class DoorLink:
    """The constructor does no I/O; :meth:`start` starts the reading thread, :meth:`stop` ends it."""

    def __init__(self, socket_path):
        self.socket_path = Path(socket_path)
        self.up = False
        self.state = {"relay": None, "camera": None}
        self.recent: Deque[dict] = deque(maxlen=RECENT)
        self.error: Optional[str] = None
        self._listeners: List[Callable[[dict], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._client: Optional[SeamClient] = None
        self._waiters: dict = {}
        self.guidance: Deque[dict] = deque(maxlen=20)   # the running enrollment's lines, for pages that join late

    # -- listeners (the SSE streams) -------------------------------------------------------------------
    def listen(self, fn: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``fn(record)`` (on the reading thread: it must not block) for every record; returns the
        unsubscribe function."""
        with self._lock:
            self._listeners.append(fn)

        def unsubscribe():
            with self._lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)
        return unsubscribe

    def snapshot(self) -> dict:
        """The door's state now, for a page being drawn."""
        with self._lock:
            return {"door": "up" if self.up else "away", "error": self.error, **self.state,
                    "recent": list(self.recent), "guidance": list(self.guidance)}

    def announce(self, record: dict) -> None:
        """Tell the live pages something of the page's own (an enrollment's guidance: ``{"type": "enroll", "text":
        ...}``; ``"start": True`` begins a new one). The running enrollment's lines are kept for pages that connect
        after they were said (:meth:`snapshot`)."""
        with self._lock:
            if record.get("start"):
                self.guidance.clear()
            self.guidance.append(record)
        self._tell(record)

    def _tell(self, record: dict) -> None:
        with self._lock:
            listeners = list(self._listeners)
            if record.get("type") == "decision":
                self.recent.appendleft(record)
                waiter = self._waiters.get(record.get("command_id"))
                if waiter is not None:
                    waiter.append(record)
            elif record.get("type") in ("relay", "camera"):
                self.state[record["type"]] = record.get("state")
        for fn in listeners:
            try:
                fn(record)
            except Exception:   # a page that went away: never the reader's problem
                pass

    # -- the reading thread ----------------------------------------------------------------------------
    def start(self) -> "DoorLink":
        threading.Thread(target=self._run, name="door-link", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        c = self._client
        if c is not None:
            c.close()

    def _run(self) -> None:
        wait = 1.0
        while not self._stop.is_set():
            try:
                with SeamClient(self.socket_path, timeout=None) as client:
                    self._client = client
                    self._connected(client.hello or {})
                    wait = 1.0
                    for rec in client.records():
                        self._tell(rec)
            except (DoorfaceError, OSError, EOFError, ValueError) as exc:
                self._away(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
            self._client = None
            self._stop.wait(wait)
            wait = min(wait * 2, RETRY_MAX)

    def _connected(self, hello: dict) -> None:
        with self._lock:
            self.up, self.error = True, None
            for k in ("relay", "camera"):
                if hello.get(k):
                    self.state[k] = hello[k]
        self._tell({"type": "door", "state": "up", **{k: hello.get(k) for k in ("relay", "camera")}})
        log.info("door socket %s: connected", self.socket_path)

    def _away(self, why: str) -> None:
        was = self.up
        with self._lock:
            self.up, self.error = False, why
            self.state = {"relay": None, "camera": None}
        if was or self.error != why:
            log.warning("door socket %s: %s; retrying", self.socket_path, why)
        self._tell({"type": "door", "state": "away", "error": why})

    # -- commands --------------------------------------------------------------------------------------
    def command(self, name: str, **fields) -> dict:
        """Send one command on a connection of its own; the door's reply (``ok``, ``error``)."""
        try:
            with SeamClient(self.socket_path, timeout=OUTCOME_WAIT) as c:
                return c.command(name, **fields)
        except (OSError, EOFError, ValueError) as exc:
            raise DoorfaceError(f"the door did not answer: {exc}") from None

    def open(self, user: str) -> dict:
        """Ask the door for one pulse (under its lockout); the decision it logged (``remote_open`` or
        ``remote_rejected``), or ``{"decision": "unknown"}`` when none came within :data:`OUTCOME_WAIT` s."""
        cid = "web-" + secrets.token_hex(6)
        got: list = []
        with self._lock:
            self._waiters[cid] = got
        try:
            reply = self.command("open", id=cid, user=user)
            if not reply.get("ok"):
                return {"decision": "remote_rejected", "reason": reply.get("error", "refused")}
            deadline = time.monotonic() + OUTCOME_WAIT
            while not got and time.monotonic() < deadline:
                time.sleep(0.05)
            return got[0] if got else {"decision": "unknown", "reason": "the door did not report the outcome"}
        finally:
            with self._lock:
                self._waiters.pop(cid, None)
