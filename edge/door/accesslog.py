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
from collections import deque
from typing import Callable, Deque, Optional

from edge.door.events import Sink, decision_record
from edge.people.gallery import make_private_dir

FILENAME = "access.sqlite"
SCHEMA = ("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, frame INTEGER, identity TEXT, "
          "score REAL, decision TEXT NOT NULL, reason TEXT)")
#: The smallest fallback seq (:func:`fallback_seq`): 2**40, about 1.1e12 (the wall clock in ms late in 2004).
FALLBACK_FLOOR = 1 << 40
log = logging.getLogger("doorface")


def fallback_seq(now: Optional[float] = None) -> int:
    """The first decision ``seq`` when the access log cannot be read at start: the wall clock in milliseconds, at
    least :data:`FALLBACK_FLOOR`. A log numbers its rows from 1, one per decision, so it never reaches these: when it
    can be written again the kept decisions go in under their own seq and collide with no row; the next start that
    reads it continues above them (seqs only grow, so a consumer that remembers the last one it saw keeps working);
    and a later fallback start numbers above an earlier one's decisions unless the clock went back in between (a
    Pi without a clock before NTP): then a decision whose seq is taken is stored under a new id, logged once.
    Renumbered to the log's own next id if the log opens before the first decision (:meth:`EventBus.renumber`)."""
    return max(int((time.time() if now is None else now) * 1000), FALLBACK_FLOOR)


class AccessLog(Sink):
    """The access log, and the events bus's sink for it: every ``decision`` record becomes one row, whose id is
    the record's ``seq``.

    A storage fault never stops the door (issue 25): the file is opened lazily, a decision that cannot be written (a
    full disk, a read-only or unreadable file, another process holding the database) is kept in memory (the newest
    :data:`PENDING` of them) and written later, with a back-off from :data:`RETRY_FIRST` to :data:`RETRY_MAX`
    seconds between tries; the reason is logged once (and again only when it changes), and once more when the log is
    written again. :attr:`error` is the current reason (None: writing). No statement waits on another process's
    lock for more than ``busy_timeout`` seconds, so neither the lane nor the door's shutdown waits on the database."""

    name = "access-log"
    #: Decisions kept in memory while the log cannot be written; beyond it the oldest are dropped (and counted).
    PENDING = 10000
    #: Seconds between tries while the log cannot be written: the first, doubling up to the last.
    RETRY_FIRST, RETRY_MAX = 1.0, 60.0
    #: How long one statement waits for another process's lock (s); sqlite's own default is 5 s.
    BUSY_TIMEOUT = 0.25
    #: The events bus calls :meth:`tick` this often when the lane is idle (s): retries without new records.
    tick_seconds = 1.0

    def __init__(self, path, busy_timeout: float = BUSY_TIMEOUT):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._db = None
        self.failures = 0        # write or open attempts that failed
        self.dropped = 0         # decisions dropped because too many were kept in memory
        self.error: Optional[str] = None
        self.on_open: Optional[Callable[[int], None]] = None   # called with next_seq() the first time it opens
        self._pending: Deque[dict] = deque()
        self._retry_at = 0.0
        self._backoff = self.RETRY_FIRST
        self._collided = False

    def open(self) -> "AccessLog":
        """Open (creating the file and its table): raises :class:`sqlite3.Error` or :class:`OSError`."""
        if self._db is None:
            make_private_dir(self.path.parent)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute(SCHEMA)
            except BaseException:
                db.close()
                raise
            self._db = db
            if self.on_open is not None:
                callback, self.on_open = self.on_open, None
                callback(self.next_seq())
        return self

    def next_seq(self) -> int:
        """The id the next row will get (the bus numbers decisions from here)."""
        self.open()
        return self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events").fetchone()[0]

    def first_seq(self) -> Optional[int]:
        """:meth:`next_seq` when the log can be read now; else None, the reason logged once and the log retried
        later (see :func:`fallback_seq`)."""
        try:
            return self.next_seq()
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return None

    def send(self, record: dict) -> None:
        if record.get("type") == "decision":
            self.store(record)

    def tick(self) -> None:
        """Called by the bus when the lane is idle: write what is kept, or open the log, once the back-off allows."""
        if self._pending or self._db is None:
            self._flush()

    def store(self, event: dict) -> dict:
        """Store one decision record (``seq`` as the row id when it has one). A storage failure (disk full, file
        gone read-only, locked by another process) is logged, not raised: the record is kept and written later, and
        the door keeps working (and stays locked between grants)."""
        if len(self._pending) >= self.PENDING:
            self._pending.popleft()
            self.dropped += 1
            if self.dropped == 1:
                log.error("access log %s: more than %d decisions waiting to be written; dropping the oldest",
                          self.path, self.PENDING)
        self._pending.append(event)
        self._flush()
        return event

    def _flush(self, force: bool = False) -> bool:
        """Write the kept decisions in one transaction; False when the log cannot be written (yet)."""
        if not force and time.monotonic() < self._retry_at:
            return False
        try:
            self.open()
            if self._pending:
                self._write(list(self._pending))
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return False
        n = len(self._pending)
        self._pending.clear()
        if self.error is not None:
            log.warning("access log %s: writing again (%d decisions kept while it could not be written%s)", self.path,
                        n, f", {self.dropped} dropped" if self.dropped else "")
            self.error, self._backoff, self._retry_at = None, self.RETRY_FIRST, 0.0
        return True

    def _write(self, events) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for e in events:
                row = (e["ts"], e.get("frame", -1), e.get("identity"), float(e.get("score", 0.0)), e["decision"],
                       e.get("reason", ""))
                try:
                    db.execute("INSERT INTO events (id, ts, frame, identity, score, decision, reason) "
                               "VALUES (?,?,?,?,?,?,?)", (e.get("seq"), *row))
                except sqlite3.IntegrityError:   # its seq is taken (a fallback numbering met an older one): a new id
                    if not self._collided:
                        self._collided = True
                        log.warning("access log %s: decision seq %s is already a row; stored under a new id",
                                    self.path, e.get("seq"))
                    db.execute("INSERT INTO events (ts, frame, identity, score, decision, reason) "
                               "VALUES (?,?,?,?,?,?)", row)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        self._retry_at = time.monotonic() + self._backoff
        if reason != self.error:
            log.error("access log %s: cannot write (%s); the door keeps working and deciding, %d decision(s) kept "
                      "in memory, retrying every %.0f-%.0f s", self.path, reason, len(self._pending),
                      self.RETRY_FIRST, self.RETRY_MAX)
        self.error = reason
        self._backoff = min(self._backoff * 2, self.RETRY_MAX)
        self.close_db()

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

    def close_db(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def close(self):
        """One last try to write what is kept (bounded by ``busy_timeout``), then close; what could not be written
        is said in one line."""
        if self._pending and not self._flush(force=True):
            log.error("access log %s: %d decision(s) could not be written (%s)", self.path, len(self._pending),
                      self.error)
            self._pending.clear()
        self.close_db()


def check(path) -> str:
    """``doorface check``'s line for the access log: ``OK ...`` or a :class:`DoorfaceError` with the reason. It
    opens the log and makes a write it rolls back (a full disk, a read-only file or another process's lock shows),
    waiting on a lock no longer than :attr:`AccessLog.BUSY_TIMEOUT`."""
    import shutil

    from edge.errors import DoorfaceError

    path = Path(path)
    free = ""
    try:
        free = f", {shutil.disk_usage(path.parent if path.parent.exists() else '/').free / 1e6:,.0f} MB free"
    except OSError:
        pass
    what = "the door keeps deciding and keeps decisions in memory until it can write them"
    if not path.exists():
        if not path.parent.exists():
            return f"OK (no access log yet: {path.parent} will be made{free})"
        if not os.access(path.parent, os.W_OK):
            raise DoorfaceError(f"cannot create {path}: {path.parent} is not writable ({what})")
        return f"OK (no access log yet at {path}{free})"
    try:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=AccessLog.BUSY_TIMEOUT, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")     # everything below is rolled back: the check changes nothing
            db.execute(SCHEMA)
            rows, last = db.execute("SELECT COUNT(*), MAX(ts) FROM events").fetchone()
            db.execute("INSERT INTO events (ts, decision, reason) VALUES (0, 'check', 'doorface check')")
            db.execute("ROLLBACK")
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DoorfaceError(f"{path} cannot be written: {reason} ({what}){free}") from None
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(last)) if last else "none"
    return f"OK {path.name}: {rows} decisions, last {when}{free}"


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
