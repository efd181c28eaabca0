"""The access log: one row per decision in ``access.sqlite`` (state dir), optionally one JSON line per decision.

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

FILENAME = "access.sqlite"
log = logging.getLogger("doorface")


class AccessLog:
    def __init__(self, path, events_out: Optional[str] = None):
        self.path = Path(path)
        self.events_out = events_out
        self._db = None
        self._jsonl = None
        self.failures = 0

    def open(self) -> "AccessLog":
        if self._db is None:
            from edge.gallery import make_private_dir

            make_private_dir(self.path.parent)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
            self._db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, "
                             "frame INTEGER, identity TEXT, score REAL, decision TEXT NOT NULL, reason TEXT)")
            if self.events_out:
                self._jsonl = open(self.events_out, "a", buffering=1)
        return self

    def record(self, decision: str, identity, score: float, reason: str = "", frame: int = -1,
               ts: Optional[float] = None) -> dict:
        """Store one decision. A storage failure (disk full, file gone read-only) is logged, not raised: the door
        keeps deciding (and stays locked between grants); the decision is still returned and logged by the caller."""
        ts = time.time() if ts is None else ts
        event = {"ts": round(ts, 3), "frame": frame, "identity": identity, "score": round(float(score), 4),
                 "decision": decision, "reason": reason}
        try:
            self.open()
            self._db.execute("INSERT INTO events (ts, frame, identity, score, decision, reason) VALUES (?,?,?,?,?,?)",
                             (ts, frame, identity, float(score), decision, reason))
        except (sqlite3.Error, OSError) as exc:
            self.failures += 1
            log.error("access log %s: cannot store a %s: %s (the door keeps working)", self.path, decision, exc)
        if self._jsonl:
            try:
                self._jsonl.write(json.dumps(event) + "\n")
            except OSError as exc:
                log.error("events file %s: %s", self.events_out, exc)
        return event

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
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


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
