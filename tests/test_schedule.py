"""Schedules and guests: the written form and its errors, the windows' edges, the gallery's schema 3 (upgraded in
place from 2), the decision rule (a face outside its hours never opens, is denied as ``schedule`` under its name, and
never counts towards the lockout), the CLI, `doorface identify` and the web page."""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from edge.door.decision import DecisionPolicy, Observation, PolicyConfig
from edge.people.gallery import SCHEMA_VERSION, Gallery
from edge.people.schedule import (ALWAYS, Access, ScheduleError, from_row, parse_hours, parse_until)

MON_9 = dt.datetime(2026, 12, 7, 9, 0)      # a Monday


@pytest.mark.parametrize("text, why", [
    ("mon-fri 25:00-18:00", "does not exist"), ("mon-fri 18:00-08:00", "not after the start"),
    ("funday 08:00-09:00", "not a day"), ("mon-fri 8-18", "not DAYS HH:MM-HH:MM"), ("mon 08:00-24:30", "not exist"),
    ("mon 08:00-08:00", "not after"), ("mon,xyz 08:00-09:00", "not a day")])
def test_bad_hours_are_one_line_errors(text, why):
    with pytest.raises(ScheduleError, match=why):
        parse_hours(text)


def test_the_written_form_round_trips():
    a = Access(parse_hours("mon-fri 08:00-18:00; sat,sun 10:00-12:00; fri-mon 22:00-24:00"), parse_until("2026-12-31"))
    assert a.describe() == "mon-fri 08:00-18:00; sat-sun 10:00-12:00; mon,fri-sun 22:00-24:00, until 2026-12-31"
    assert from_row(a.to_json(), a.valid_until) == a
    assert parse_hours("always") == () and parse_hours("") == () and parse_until("never") is None
    assert Access().always and ALWAYS.describe() == "always"
    with pytest.raises(ScheduleError, match="not a date"):
        parse_until("31/12/2026")
    with pytest.raises(ScheduleError, match="corrupt"):
        from_row("[{\"days\": [9]}]", None)


def test_windows_start_inclusive_end_exclusive_and_the_last_day_counts():
    a = Access(parse_hours("mon-fri 08:00-18:00"), parse_until("2026-12-08"))
    assert a.allows(MON_9.replace(hour=8)) is None
    assert a.allows(MON_9.replace(hour=7, minute=59)) == "outside mon-fri 08:00-18:00"
    assert a.allows(MON_9.replace(hour=18)) == "outside mon-fri 08:00-18:00"
    assert a.allows(MON_9 - dt.timedelta(days=1)) == "outside mon-fri 08:00-18:00"      # Sunday
    assert a.allows(MON_9 + dt.timedelta(days=1)) is None                               # Tuesday, the last day
    assert a.allows(MON_9 + dt.timedelta(days=2)) == "access ended 2026-12-08"
    night = Access(parse_hours("sun 22:00-24:00; mon 00:00-06:00"))
    assert night.allows(MON_9.replace(hour=5, minute=59)) is None and night.allows(MON_9.replace(hour=6))


def _v2_gallery(path):
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE persons (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, created REAL NOT NULL,
            threshold REAL, cohort_sha256 TEXT);
        CREATE TABLE templates (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES persons(id)
            ON DELETE CASCADE, crop BLOB NOT NULL, embedding BLOB NOT NULL, dim INTEGER NOT NULL,
            model_sha256 TEXT NOT NULL, source TEXT NOT NULL, created REAL NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2'), ('kind', 'doorface-gallery');
        INSERT INTO persons VALUES (1, 'ann', 0, 0.5, 'c');""")
    emb = np.zeros(4, "<f4")
    emb[0] = 1
    db.execute("INSERT INTO templates VALUES (1, 1, x'00', ?, 4, 'm', 'test', 0)", (emb.tobytes(),))
    db.commit()
    db.close()


def test_a_version_2_gallery_is_upgraded_and_keeps_everyone(tmp_path):
    path = tmp_path / "g.sqlite"
    _v2_gallery(path)
    with Gallery(path) as g:
        assert SCHEMA_VERSION == 3
        assert g.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "3"
        p = g.people()[0]
        assert (p.name, p.threshold, p.access) == ("ann", 0.5, ALWAYS)
        g.set_access("ann", Access(parse_hours("mon 08:00-09:00")))
        idx = g.index("m")
    assert idx.outside_hours("ann", MON_9) == "outside mon 08:00-09:00"
    assert idx.outside_hours("ann", MON_9.replace(hour=8)) is None
    assert idx.outside_hours(None, MON_9) is None and idx.outside_hours("bob", MON_9) is None


def _obs(t, outside=None, who="ann", score=0.9):
    return Observation(t, who, score, 0.5, True, outside=outside)


def test_outside_hours_never_opens_is_denied_as_schedule_and_never_locks_out():
    p = DecisionPolicy(PolicyConfig(threshold=0.5, min_margin=0.1, lockout_attempts=3, stranger_margin=0.05))
    finals = []
    t = 0.0
    for attempt in range(10):                       # ten visits outside her hours
        for _ in range(5):
            d = p.observe(_obs(t, "outside mon 08:00-09:00"))
            finals += [d] if d.final else []
            t += 0.2
        t += 3.0
    assert [d.kind for d in finals] == ["deny"] * 10
    assert all(d.identity == "ann" and d.reason == "schedule: outside mon 08:00-09:00" for d in finals)
    assert not p.locked_out(t) and p.level(t) == 0
    got = [p.observe(_obs(t + i * 0.2)) for i in range(3)]      # within her hours: the door opens
    assert got[-1].kind == "grant" and got[-1].identity == "ann"


def test_fewer_than_n_frames_outside_hours_count_like_any_deny():
    """A stranger whose odd frame matches an out-of-hours guest gains no attempts from it."""
    p = DecisionPolicy(PolicyConfig(threshold=0.5, min_margin=0.1, lockout_attempts=2))
    p.observe(_obs(0.0, "access ended 2026-12-01"))
    d = p.tick(5.0)
    assert d.kind == "deny" and d.reason == "attempt ended without a grant"
    p.observe(_obs(10.0, "access ended 2026-12-01"))
    assert p.tick(15.0).kind == "lockout"


def test_the_cli_sets_and_shows_access_and_identify_honours_it(tmp_path, samples, detector_path, port_model):
    state = str(tmp_path / "state")
    run = lambda *a: subprocess.run([sys.executable, "-m", "edge", *a, "--state-dir", state],   # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    assert run("enroll", "obama", "--images", str(samples / "obama.jpg")).returncode == 0
    today = dt.datetime.now()
    other_day = (today.weekday() + 3) % 7
    hours = f"{('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')[other_day]} 00:00-24:00"
    r = run("users", "access", "obama", "--hours", hours, "--until", "2099-01-01")
    assert r.returncode == 0 and f"access {hours}, until 2099-01-01" in r.stdout
    r = run("users", "access", "obama", "--hours", "mon 09:00-08:00")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "not after the start" in r.stderr
    assert f"access {hours}, until 2099-01-01" in run("users", "list").stdout     # nothing changed
    face = json.loads(run("identify", str(samples / "obama2.jpg")).stdout.splitlines()[0])["faces"][0]
    assert face["decision"] == "deny" and face["reason"] == f"schedule: outside {hours}" and face["best"] == "obama"
    assert run("users", "access", "obama", "--hours", "always", "--until", "never").returncode == 0
    face = json.loads(run("identify", str(samples / "obama2.jpg")).stdout.splitlines()[0])["faces"][0]
    assert face["decision"] == "grant"


def test_the_web_page_sets_access(tmp_path):
    pytest.importorskip("fastapi")
    import fakedoor
    from webkit import cleanup, logged_in, make_web, short_socket_dir, web_config

    d = short_socket_dir()
    state = tmp_path / "state"
    state.mkdir()
    fakedoor.enroll_ann(tmp_path, state, fakedoor.analyzer())
    try:
        app, web = make_web(web_config(state, d / "events.sock"), d / "events.sock")
        c, token = logged_in(app, "admin")
        r = c.post("/people/access", data={"csrf": token, "name": "ann", "hours": "sat,sun 10:00-12:00",
                                           "until": "2027-01-31"})
        assert "ann may open: sat-sun 10:00-12:00, until 2027-01-31." in r.text
        assert 'value="sat-sun 10:00-12:00"' in r.text and 'value="2027-01-31"' in r.text
        r = c.post("/people/access", data={"csrf": token, "name": "ann", "hours": "sat 12:00-10:00", "until": ""})
        assert "not after the start" in r.text
        with Gallery(state / "gallery.sqlite") as g:
            assert g.people()[0].access.describe() == "sat-sun 10:00-12:00, until 2027-01-31"
        web.door.stop()
    finally:
        cleanup(d)
