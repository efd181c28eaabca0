"""What the bridge remembers and where it catches up from.

- :class:`AccessLogReader`: the door's ``access.sqlite``, opened read-only (the bridge never writes it): the
  decisions after a ``seq``, in order, a bounded batch at a time.
- :class:`BridgeState`: the bridge's own small file (``bridge-state.json`` in its state dir): the last ``seq`` the
  broker acknowledged, and the digests of the commands seen lately (a command replayed after a restart is refused).
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import List, Optional

log = logging.getLogger("doorface")

ACCESS_LOG = "access.sqlite"
STATE_FILE = "bridge-state.json"
#: Rows read from the access log at a time (the bridge's memory stays bounded whatever the outage).
BATCH = 200
FIELDS = ("seq", "ts", "frame", "identity", "score", "decision", "reason")


class AccessLogReader:
    """The door's access log, read-only. Every call opens and closes the file (the door may replace it); a log that
    cannot be read gives None / [] and one line saying why (again only when the reason changes)."""

    def __init__(self, door_state_dir, busy_timeout: float = 1.0):
        self.path = Path(door_state_dir) / ACCESS_LOG
        self.busy_timeout = busy_timeout
        self.error: Optional[str] = None

    def _query(self, sql: str, args=()):
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=self.busy_timeout)
            try:
                rows = db.execute(sql, args).fetchall()
            finally:
                db.close()
        except sqlite3.Error as exc:
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            if reason != self.error:
                log.warning("mqtt: cannot read the access log %s (%s): decisions the broker missed cannot be "
                            "republished until it can", self.path, reason)
            self.error = reason
            return None
        if self.error is not None:
            log.info("mqtt: the access log %s is readable again", self.path)
        self.error = None
        return rows

    def last_seq(self) -> Optional[int]:
        """The newest decision's seq (0: none yet); None when the log cannot be read."""
        rows = self._query("SELECT COALESCE(MAX(id), 0) FROM events")
        return None if rows is None else int(rows[0][0])

    def last_before(self, ts: float) -> Optional[int]:
        """The seq of the newest decision taken before the wall-clock time ``ts`` (0: none); None: unreadable."""
        rows = self._query("SELECT COALESCE(MAX(id), 0) FROM events WHERE ts < ?", (float(ts),))
        return None if rows is None else int(rows[0][0])

    def after(self, seq: int, limit: int = BATCH) -> Optional[List[dict]]:
        """Decisions with ``seq`` above ``seq``, oldest first, at most ``limit`` (as records: ``type`` decision)."""
        rows = self._query("SELECT id, ts, frame, identity, score, decision, reason FROM events WHERE id > ? "
                           "ORDER BY id LIMIT ?", (int(seq), int(limit)))
        if rows is None:
            return None
        return [{"type": "decision", **dict(zip(FIELDS, r))} for r in rows]


class BridgeState:
    """``last_seq``: every decision up to it reached the broker (PUBACK). ``seen``: digest -> wall time of the
    commands received in the last ``keep`` seconds. :meth:`save` writes a temporary file and renames it."""

    def __init__(self, state_dir, keep: float = 120.0):
        self.path = Path(state_dir) / STATE_FILE
        self.keep = keep
        self.last_seq: Optional[int] = None
        self.seen: dict = {}
        self._saved_seq: Optional[int] = None
        self._saved_at = 0.0
        self.error: Optional[str] = None

    def load(self) -> "BridgeState":
        try:
            rec = json.loads(self.path.read_text())
            self.last_seq = int(rec["last_seq"]) if rec.get("last_seq") is not None else None
            now = time.time()
            self.seen = {str(d): float(t) for d, t in rec.get("seen", {}).items() if now - float(t) < self.keep}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("mqtt: %s unreadable (%s): starting from the access log's end", self.path, exc)
        self._saved_seq = self.last_seq
        return self

    def save(self) -> bool:
        now = time.time()
        self.seen = {d: t for d, t in self.seen.items() if now - t < self.keep}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}")
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"last_seq": self.last_seq, "seen": self.seen}, f)
            os.replace(tmp, self.path)
        except OSError as exc:
            if self.error != str(exc):
                log.error("mqtt: cannot write %s (%s): after a restart the bridge may republish decisions the "
                          "broker already has (same seq)", self.path, exc.strerror or exc)
            self.error = str(exc)
            return False
        self.error = None
        self._saved_seq, self._saved_at = self.last_seq, time.monotonic()
        return True

    def save_seq_soon(self, every: float = 1.0) -> None:
        """Save when ``last_seq`` changed and the last save is ``every`` seconds old (bounded writes under load)."""
        if self.last_seq != self._saved_seq and time.monotonic() - self._saved_at >= every:
            self.save()

    def remember(self, digest: str) -> bool:
        """Note a command; False when it was seen within ``keep`` seconds (a replay). Saved at once."""
        now = time.time()
        if digest in self.seen and now - self.seen[digest] < self.keep:
            return False
        self.seen[digest] = now
        if len(self.seen) > 1000:    # a flood: keep the newest
            self.seen = dict(sorted(self.seen.items(), key=lambda kv: kv[1])[-500:])
        self.save()
        return True
