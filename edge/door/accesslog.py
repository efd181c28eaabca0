"""The access log: one row per decision in ``access.sqlite`` (state dir); ``--events-out``: one JSON line per record.

Never stores embeddings or images; denied-face snapshots are separate files, opt-in, with a retention limit.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Optional

from edge.door.events import Sink, decision_record
from edge.people.gallery import make_private_dir

FILENAME = "access.sqlite"
log = logging.getLogger("doorface")


class AccessLog(Sink):
    """The access log, and the events bus's sink for it: every ``decision`` record becomes one row, whose id is
    the record's ``seq``."""

    name = "access-log"

    def __init__(self, path):
        self.path = Path(path)
        self._db = None
        self.failures = 0

    def open(self) -> "AccessLog":
        if self._db is None:
            make_private_dir(self.path.parent)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, "
                             "frame INTEGER, identity TEXT, score REAL, decision TEXT NOT NULL, reason TEXT)")
        return self

    def next_seq(self) -> int:
        """The id the next row will get (the bus numbers decisions from here)."""
        self.open()
        return self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events").fetchone()[0]

    def send(self, record: dict) -> None:
        if record.get("type") == "decision":
            self.store(record)

    def store(self, event: dict) -> dict:
        """Store one decision record (``seq`` as the row id when it has one). A storage failure (disk full, file
        gone read-only) is logged, not raised: the door keeps deciding (and stays locked between grants)."""
        try:
            self.open()
            self._db.execute("INSERT INTO events (id, ts, frame, identity, score, decision, reason) "
                             "VALUES (?,?,?,?,?,?,?)",
                             (event.get("seq"), event["ts"], event.get("frame", -1), event.get("identity"),
                              float(event.get("score", 0.0)), event["decision"], event.get("reason", "")))
        except (sqlite3.Error, OSError) as exc:
            self.failures += 1
            log.error("access log %s: cannot store a %s: %s (the door keeps working)", self.path, event["decision"],
                      exc)
        return event

    def record(self, decision: str, identity, score: float, reason: str = "", frame: int = -1,
               ts: Optional[float] = None) -> dict:
        """Store one decision given by its fields (outside the daemon: tools and tests)."""
        return self.store(decision_record(decision, identity, score, reason, frame, ts))

    def events(self, since: Optional[float] = None, limit: int = 1000):
        self.open()
        rows = self._db.execute(
            "SELECT ts, frame, identity, score, decision, reason FROM events WHERE ts >= ? ORDER BY id DESC LIMIT ?",
            (since or 0.0, limit)).fetchall()
        return [dict(zip(("ts", "frame", "identity", "score", "decision", "reason"), r)) for r in reversed(rows)]

    def close(self):
        if self._db is not None:
            self._db.close()
            self._db = None


class JsonLinesSink(Sink):
    """``--events-out FILE``: one JSON line per decision record, appended (ts, frame, identity, score, decision,
    reason, and the record's v, type and seq); ``types`` widens it to relay and camera records."""

    name = "events-out"

    def __init__(self, path, types=("decision",)):
        self.path, self.types = path, tuple(types)
        self._f = None

    def send(self, record: dict) -> None:
        if record.get("type") not in self.types:
            return
        if self._f is None:
            self._f = open(self.path, "a", buffering=1)
        self._f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def save_snapshot(folder, crop_rgb, limit: int, ts: Optional[float] = None) -> Optional[Path]:
    """Write a denied face's crop as JPEG (mode 0600) and delete the oldest beyond ``limit``."""
    import cv2

    if limit <= 0:
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ts = time.time() if ts is None else ts
    path = folder / f"denied-{ts:.3f}.jpg"
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    if ok:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
    old = sorted(folder.glob("denied-*.jpg"))
    for p in old[:max(0, len(old) - limit)]:
        p.unlink(missing_ok=True)
    return path
