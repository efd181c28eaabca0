"""Issue 25 item 3: a storage fault must never put the door in a restart loop.

Each case below ended the daemon with rc 1 before (systemd restarted it into the same failure and the door never
opened). Now the door keeps deciding when the access log cannot be written: it logs the reason once, keeps the
decisions in memory and retries with a back-off, and `doorface check` says what is wrong. Closing never waits on
the database. Root ignores file modes, so an unreadable file or a read-only directory is simulated where sqlite or
the OS would refuse; a full disk is sqlite's own ``max_page_count``; a lock is another connection's ``BEGIN
EXCLUSIVE`` (another process to sqlite).
"""
from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import fakedoor
from conftest import ROOT
from edge.door import accesslog as alog
from edge.door.camera import FakeSource
from edge.door.events import decision_record

REAL_CONNECT = sqlite3.connect
REAL_OPEN = os.open
CLIP = [fakedoor.STRANGER] * 8 + [fakedoor.EMPTY] * 20 + [fakedoor.ANN] * 6     # a stranger, nobody, then ann


def full_disk(monkeypatch, when=lambda: True):
    """sqlite finds the disk full (``PRAGMA max_page_count``: no page beyond those the file has) while ``when()``."""
    def connect(path, *a, **k):
        db = REAL_CONNECT(path, *a, **k)
        if str(path).endswith(alog.FILENAME) and when():
            db.execute("PRAGMA max_page_count = 1")     # never below the file's size: nothing may grow
        return db
    monkeypatch.setattr(alog.sqlite3, "connect", connect)


def file_door(tmp_path, frames=CLIP, **over):
    events = tmp_path / "ev.jsonl"
    d, relay = fakedoor.fake_door(tmp_path, lambda holder: FakeSource(frames, fps=10), events_out=str(events),
                                  **over)
    return d, relay, events


def assert_decided(d, relay, events, caplog, reason):
    assert fakedoor.kinds(d) == ["deny", "grant"]
    assert any(on for _, on in relay.timeline()) and not relay.is_unlocked
    assert [x["decision"] for x in map(__import__("json").loads, events.read_text().splitlines())] == ["deny", "grant"]
    said = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(said) == 1 and reason in said[0], said               # the reason, once
    assert "Traceback" not in caplog.text


def test_a_full_disk_before_the_log_exists(tmp_path, monkeypatch, caplog):
    """Before: `OperationalError: database or disk is full` at start, rc 1."""
    full_disk(monkeypatch)
    d, relay, events = file_door(tmp_path)
    with caplog.at_level("INFO"):
        assert d.run() == 0
    assert_decided(d, relay, events, caplog, "database or disk is full")
    assert d.decisions[0]["seq"] >= alog.FALLBACK_FLOOR                # the log could not be read: time-based seqs


def test_an_unreadable_log(tmp_path, monkeypatch, caplog):
    """access.sqlite at mode 000 (sqlite: "unable to open database file"). Before: rc 1."""
    state = tmp_path / "state"
    state.mkdir()
    log = alog.AccessLog(state / alog.FILENAME)
    log.record("deny", None, 0.1)
    log.close()
    os.chmod(log.path, 0)

    def connect(path, *a, **k):
        if str(path) == str(log.path) and os.geteuid() == 0:       # root reads it anyway: refuse as for a user
            raise sqlite3.OperationalError("unable to open database file")
        return REAL_CONNECT(path, *a, **k)
    monkeypatch.setattr(alog.sqlite3, "connect", connect)
    d, relay, events = file_door(tmp_path)
    with caplog.at_level("INFO"):
        assert d.run() == 0
    assert_decided(d, relay, events, caplog, "unable to open database file")


def test_a_read_only_state_dir_without_a_log(tmp_path, monkeypatch, caplog):
    """The state dir at 0500 and no access.sqlite yet (os.open: permission denied). Before: rc 1."""
    state = tmp_path / "state"
    state.mkdir()
    fakedoor.enroll_ann(tmp_path, state, fakedoor.analyzer())
    os.chmod(state, 0o500)
    target = str(state / alog.FILENAME)

    def opener(path, flags, *a, **k):
        if str(path) == target and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", target)
        return REAL_OPEN(path, flags, *a, **k)
    monkeypatch.setattr(alog.os, "open", opener)
    try:
        d, relay, events = file_door(tmp_path)
        with caplog.at_level("INFO"):
            assert d.run() == 0
    finally:
        os.chmod(state, 0o700)
    assert_decided(d, relay, events, caplog, "Permission denied")
    assert not (state / alog.FILENAME).exists()


def test_a_log_locked_by_another_process_at_start(tmp_path, caplog):
    """Before: `database is locked` after sqlite's 10 s busy timeout, rc 1."""
    state = tmp_path / "state"
    state.mkdir()
    alog.AccessLog(state / alog.FILENAME).open().close()
    other = REAL_CONNECT(str(state / alog.FILENAME), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        d, relay, events = file_door(tmp_path)
        t0 = time.monotonic()
        with caplog.at_level("INFO"):
            assert d.run() == 0
        took = time.monotonic() - t0
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert_decided(d, relay, events, caplog, "database is locked")
    assert took < 3.0, f"{took:.1f} s: waited on the lock"
    assert "2 decision(s) could not be written (database is locked)" in caplog.text    # said at exit, once


def test_a_lock_released_before_the_first_decision_keeps_the_log_numbering(tmp_path, caplog):
    """The log is locked at start and released 0.3 s later, before anything was decided: the log's own retry opens
    it, and decisions are numbered from its next row (not from the time-based fallback)."""
    state = tmp_path / "state"
    state.mkdir()
    log = alog.AccessLog(state / alog.FILENAME)
    for _ in range(3):
        log.record("deny", None, 0.1)
    log.close()
    other = REAL_CONNECT(str(state / alog.FILENAME), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    t0 = time.monotonic()

    def source(holder):
        def fn(i):
            if other.in_transaction and time.monotonic() - t0 > 0.3:
                other.execute("ROLLBACK")
            return fakedoor.EMPTY if time.monotonic() - t0 < 2.5 else fakedoor.STRANGER
        return FakeSource(fn=fn, live=True, fps=20)

    d, relay = fakedoor.fake_door(tmp_path, source)
    with caplog.at_level("INFO"):
        out = fakedoor.run_until(d, lambda: bool(d.decisions), 8.0)
    other.close()
    assert out["error"] is None and out["rc"] == 0
    assert d.decisions and d.decisions[0]["seq"] == 4, d.decisions
    assert "access log readable: decisions are numbered from 4" in caplog.text
    rows = REAL_CONNECT(str(state / alog.FILENAME)).execute("SELECT id, decision FROM events").fetchall()
    assert rows[:4] == [(1, "deny"), (2, "deny"), (3, "deny"), (4, "deny")]


def test_decisions_kept_while_the_disk_is_full_are_written_when_it_has_room(tmp_path, monkeypatch, caplog):
    full = {"now": True}
    full_disk(monkeypatch, lambda: full["now"])
    log = alog.AccessLog(tmp_path / alog.FILENAME)
    assert log.first_seq() is None
    first = alog.fallback_seq()
    with caplog.at_level("INFO"):
        for i in range(5):
            log.store({**decision_record("deny", None, 0.1, "unknown face", frame=i), "seq": first + i})
        assert log.error == "database or disk is full" and log.failures <= 2       # backing off, not hammering
        full["now"] = False
        log._retry_at = 0.0                                # (the back-off's next try, without waiting for it)
        log.tick()
    assert log.error is None
    assert caplog.text.count("cannot write") == 1 and "writing again (5 decisions kept" in caplog.text
    rows = log._db.execute("SELECT id, frame FROM events ORDER BY id").fetchall()
    assert rows == [(first + i, i) for i in range(5)]       # under their own seqs
    log.close()


def test_the_fallback_numbering_never_collides(tmp_path, caplog):
    assert alog.fallback_seq(now=5.0) == alog.FALLBACK_FLOOR           # a Pi at 1970 before NTP
    assert alog.fallback_seq(now=1.8e9) == 1_800_000_000_000 > alog.FALLBACK_FLOOR
    log = alog.AccessLog(tmp_path / alog.FILENAME)
    log.store({**decision_record("deny", None, 0.1, "a"), "seq": alog.FALLBACK_FLOOR})
    with caplog.at_level("WARNING"):     # a second fallback run whose clock was stepped back: the seq is taken
        log.store({**decision_record("grant", "ann", 0.9, "b"), "seq": alog.FALLBACK_FLOOR})
    rows = log._db.execute("SELECT id, decision FROM events ORDER BY id").fetchall()
    assert rows == [(alog.FALLBACK_FLOOR, "deny"), (alog.FALLBACK_FLOOR + 1, "grant")]     # kept, a new id
    assert "is already a row; stored under a new id" in caplog.text
    assert log.next_seq() == alog.FALLBACK_FLOOR + 2
    log.close()


def test_a_locked_log_is_never_waited_on(tmp_path):
    """Before: every statement waited sqlite's busy timeout (10 s) for another process's lock, and the bus lane
    with it; now at most AccessLog.BUSY_TIMEOUT, and close() gives up at once on what it cannot write."""
    log = alog.AccessLog(tmp_path / alog.FILENAME).open()
    other = REAL_CONNECT(str(log.path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        log.record("grant", "ann", 0.9)
        log.record("deny", None, 0.1)       # within the back-off: kept, not tried
        log.close()
        assert time.monotonic() - t0 < 1.0
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_snapshots_on_a_full_disk_are_skipped(tmp_path, monkeypatch, caplog):
    """`snapshots = true` on a full disk: before, the first deny raised `OSError: [Errno 28]` out of the loop."""
    def opener(path, flags, *a, **k):
        if Path(path).parent.name == "snapshots" and flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return REAL_OPEN(path, flags, *a, **k)
    monkeypatch.setattr(alog.os, "open", opener)
    frames = [fakedoor.STRANGER] * 8 + [fakedoor.EMPTY] * 20 + [fakedoor.STRANGER] * 8 + [fakedoor.EMPTY] * 20 + \
        [fakedoor.ANN] * 6
    d, relay, events = file_door(tmp_path, frames, **{"state.snapshots": True})
    with caplog.at_level("INFO"):
        assert d.run() == 0
    assert fakedoor.kinds(d) == ["deny", "deny", "grant"]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("snapshot not written")]
    assert len(said) == 1 and "No space left on device" in said[0]


def test_snapshots_are_still_written_when_there_is_room(tmp_path):
    d, relay, events = file_door(tmp_path, **{"state.snapshots": True})
    assert d.run() == 0
    assert len(list((tmp_path / "state" / "snapshots").glob("denied-*.jpg"))) == 1


@pytest.mark.parametrize("how", ["garbage file", "an error the cohort module does not convert"])
def test_a_reload_with_a_corrupt_cohort_keeps_the_door_running(tmp_path, monkeypatch, caplog, how):
    """SIGHUP with a corrupt cohort file (`BadZipFile`): before, anything but a GalleryError escaped the reload and
    ended the daemon (rc 1, then the same failure at every restart). Now one line, and the door goes on with the
    gallery and cohort it had."""
    from edge.people import cohort

    state = tmp_path / "state"
    t0 = time.monotonic()
    seen = {"reloaded": None}

    def source(holder):
        def fn(i):
            d = holder.get("d")
            if d is not None and seen["reloaded"] is None and "grant" in fakedoor.kinds(d):
                if how == "garbage file":
                    (state / cohort.FILENAME).write_bytes(b"PK\x03\x04 not a zip at all" * 10)
                else:
                    def broken(*a, **k):
                        raise zipfile.BadZipFile("File is not a zip file")
                    monkeypatch.setattr(cohort, "active", broken)
                seen["reloaded"] = len(d.decisions)
                d._reload.set()                    # what SIGHUP's handler does
            return fakedoor.ANN if (i // 20) % 2 == 0 else fakedoor.EMPTY   # ann comes and goes
        return FakeSource(fn=fn, live=True, fps=20)

    d, relay = fakedoor.fake_door(tmp_path, source, **{"decision.cooldown_seconds": 0.5})
    with caplog.at_level("INFO"):
        out = fakedoor.run_until(
            d, lambda: seen["reloaded"] is not None and fakedoor.kinds(d)[seen["reloaded"]:].count("grant") >= 1,
            10.0)
    assert out["error"] is None, repr(out["error"])
    assert out["alive"] and out["rc"] == 0
    assert fakedoor.kinds(d)[seen["reloaded"]:].count("grant") >= 1           # still opening for ann after it
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload failed")]
    assert len(said) == 1 and "keeping the previous gallery" in said[0]
    if how != "garbage file":
        assert said[0].endswith("BadZipFile: File is not a zip file")
    assert time.monotonic() - t0 < 15


def test_check_reports_the_access_log(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from edge.cli import check
    from edge.errors import DoorfaceError

    path = tmp_path / "state" / alog.FILENAME
    assert "no access log yet" in alog.check(path)
    log = alog.AccessLog(path)
    log.record("grant", "ann", 0.9)
    log.close()
    assert alog.check(path).startswith("OK access.sqlite: 1 decisions, last ")
    ctx = SimpleNamespace(cfg=fakedoor.fake_config(tmp_path / "state"))
    assert ("access log", check._access_log) in check.CHECKS and check._access_log(ctx).startswith("OK")
    other = REAL_CONNECT(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DoorfaceError, match="cannot be written: database is locked .the door keeps deciding"):
            alog.check(path)
    finally:
        other.execute("ROLLBACK")
        other.close()

    class Full:      # a connection on a full disk: the check's write fails as sqlite says
        def __init__(self, db):
            self.db = db

        def execute(self, sql, *a):
            if sql.startswith("INSERT"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, *a)

        def close(self):
            self.db.close()
    monkeypatch.setattr(alog.sqlite3, "connect", lambda *a, **k: Full(REAL_CONNECT(*a, **k)))
    with pytest.raises(DoorfaceError, match="database or disk is full"):
        alog.check(path)
    assert REAL_CONNECT(str(path)).execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1   # nothing written


def _level(path) -> str:
    try:
        return path.read_text()[:1]
    except OSError:
        return "?"


def _wait(path, level, timeout) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _level(path) == level:
            return True
        time.sleep(0.005)
    return False


def test_sigterm_mid_pulse_with_the_log_held_by_another_process(tmp_path):
    """Another process holds access.sqlite; SIGTERM 0.3 s into a pulse. Before: the exit waited on the database
    (9.7 s in the issue, the bus's 2 s bound here); now the strike locks at once and the process is gone in well under
    a second."""
    script = tmp_path / "door.py"
    script.write_text(fakedoor.DOOR_SCRIPT)
    state, relay = tmp_path / "state", tmp_path / "relay"
    relay.write_text("?")
    env = dict(os.environ, DOORFACE_MOCK_RELAY_FILE=str(relay), PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, str(script), str(state), str(Path(__file__).parent)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    other = None
    try:
        assert _wait(relay, "1", 30), p.stderr.read() if p.poll() is not None else "never granted"
        assert _wait(relay, "0", 5)                                      # the first pulse ended
        other = REAL_CONNECT(str(state / alog.FILENAME), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")                                 # another process takes the log
        assert _wait(relay, "1", 10)                                     # the next grant, its row not writable
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert _wait(relay, "0", 0.5), "the strike was not locked within 0.5 s"
        locked = time.monotonic() - t0
        rc = p.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        if other is not None:
            other.execute("ROLLBACK")
            other.close()
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read()
    assert rc == 0, err[-2000:]
    assert took < 1.5, f"exit {took:.1f} s after SIGTERM (strike locked after {locked:.2f} s)\n{err[-1500:]}"
    assert "Traceback" not in err and "could not be written (database is locked)" in err
