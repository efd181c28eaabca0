"""The web page's work, over HTTP against the real pieces: enrollment by upload with the shipped models (the CLI's
checks, in words), the gallery changes through edge.people, the door's socket (open pulses the mock relay once,
the records reach the page, reload), the access log's filters and CSV, and a viewer who never gets a face image."""
from __future__ import annotations

import csv
import html
import io
import time

import cv2
import numpy as np
import pytest

import fakedoor
from webkit import cleanup, logged_in, make_web, pulses, short_socket_dir, start_fake_door, web_config


def _jpeg(rgb) -> bytes:
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture
def real_page(tmp_path, samples, detector_path, port_model):
    d = short_socket_dir()
    cfg = web_config(tmp_path / "state", d / "events.sock", **{"model.embedder": str(port_model),
                                                               "model.detector": str(detector_path)})
    app, web = make_web(cfg, d / "events.sock")
    yield app, web, samples
    web.door.stop()
    cleanup(d)


def _photos(samples):
    read = lambda n: cv2.cvtColor(cv2.imread(str(samples / n)), cv2.COLOR_BGR2RGB)   # noqa: E731
    obama, biden = read("obama.jpg"), read("biden.jpg")
    h = min(obama.shape[0], biden.shape[0])
    pair = np.hstack([cv2.resize(obama, (obama.shape[1] * h // obama.shape[0], h)),
                      cv2.resize(biden, (biden.shape[1] * h // biden.shape[0], h))])
    return {"obama": _jpeg(obama), "dark": _jpeg((obama * 0.08).astype(np.uint8)), "pair": _jpeg(pair),
            "wall": _jpeg(np.full((300, 400, 3), 120, np.uint8)), "tiny": _jpeg(cv2.resize(obama, (60, 60))),
            "obama2": (samples / "obama2.jpg").read_bytes(), "biden": _jpeg(biden)}


def _enroll(c, token, name, files):
    return c.post("/people/enroll", data={"csrf": token, "name": name},
                  files=[("photos", (fn, data, "image/jpeg")) for fn, data in files])


def test_enroll_by_upload_explains_every_refusal_in_words(real_page):
    app, web, samples = real_page
    p = _photos(samples)
    c, token = logged_in(app, "admin")
    r = _enroll(c, token, "Barack", [("good.jpg", p["obama"]), ("dark.jpg", p["dark"]), ("two.jpg", p["pair"]),
                                     ("wall.jpg", p["wall"]), ("../../etc/passwd", b"not an image")])
    assert r.status_code == 200
    text = r.text
    assert "Stored 1 photo(s) of Barack" in text
    assert "too dark" in text and "better light" in text
    assert "2 faces in the photo" in text
    assert "No face found" in text
    assert "<strong>passwd</strong>: Not a JPEG or PNG photo" in text
    people = web.people.people()
    assert [(x["name"], x["templates"]) for x in people] == [("Barack", 1)]
    with __import__("sqlite3").connect(web.people.path) as db:
        sources = [s for (s,) in db.execute("SELECT source FROM templates")]
    assert sources == ["web upload by web:admin@testclient: good.jpg"]
    # The same face under another name: refused in words, nothing stored.
    r = _enroll(c, token, "Someone", [("again.jpg", p["obama2"])])
    assert "matches 'Barack' already" in html.unescape(r.text) and "Nothing stored" in r.text
    assert [x["name"] for x in web.people.people()] == ["Barack"]
    # A stranger is fine, and rename and remove go through the gallery's transactions.
    assert "Stored 1 photo(s) of Joe" in _enroll(c, token, "Joe", [("j.jpg", p["biden"])]).text
    r = c.post("/people/rename", data={"csrf": token, "old": "Joe", "new": "Joseph"})
    assert "Renamed Joe to Joseph" in r.text
    r = c.post("/people/remove", data={"csrf": token, "name": "Joseph"})
    assert "Removed Joseph" in r.text and [x["name"] for x in web.people.people()] == ["Barack"]
    r = c.post("/people/remove", data={"csrf": token, "name": "Nobody"})
    assert "no person named 'Nobody'" in html.unescape(r.text)


def test_a_viewer_is_never_served_a_face(real_page):
    app, web, samples = real_page
    p = _photos(samples)
    admin, token = logged_in(app, "admin")
    _enroll(admin, token, "Barack", [("good.jpg", p["obama"])])
    tid = web.people.people()[0]["template_ids"][0]
    snaps = web.s.door_state_dir / "snapshots"
    snaps.mkdir()
    (snaps / "denied-1700000000.000.jpg").write_bytes(p["biden"])
    assert admin.get(f"/people/photo/{tid}").headers["content-type"] == "image/jpeg"
    assert admin.get("/log/snapshot/denied-1700000000.000.jpg").headers["content-type"] == "image/jpeg"
    viewer, _ = logged_in(app, "viewer")
    for path in ("/", "/log", "/log.csv", "/api/status", f"/people/photo/{tid}", "/people",
                 "/log/snapshot/denied-1700000000.000.jpg", "/settings"):
        r = viewer.get(path)
        assert not r.headers.get("content-type", "").startswith("image/"), path
        assert b"\xff\xd8\xff" not in r.content and b"\x89PNG" not in r.content, path
        assert "/people/photo/" not in r.text, path
    assert viewer.get(f"/people/photo/{tid}").status_code == 403


def test_open_goes_through_the_door_and_pulses_the_relay_once(tmp_path):
    d = short_socket_dir()
    sock = d / "events.sock"
    try:
        door, relay, th = start_fake_door(tmp_path, sock, {"img": fakedoor.EMPTY})
        app, web = make_web(web_config(tmp_path / "web", sock), sock)
        end = time.monotonic() + 5
        while not web.door.up and time.monotonic() < end:
            time.sleep(0.05)
        assert web.door.up
        c, token = logged_in(app, "admin")
        r = c.post("/open", data={"csrf": token, "confirm": "yes"})
        assert "The door was opened (one pulse)" in r.text
        r = c.post("/open", data={"csrf": token})                     # not confirmed: nothing
        assert "confirm first" in r.text
        viewer, vtoken = logged_in(app, "viewer")
        assert viewer.post("/open", data={"csrf": vtoken, "confirm": "yes"}).status_code == 403
        time.sleep(0.6)
        opens = [e for e in door.decisions if e["decision"] == "remote_open"]
        assert len(opens) == 1 and opens[0]["identity"] == "web:admin@testclient"
        assert web.door.snapshot()["recent"][0]["decision"] == "remote_open"     # the record reached the page
        web.door.stop()
        door.stop()
        th.join(10)
        assert pulses(relay) == 1
    finally:
        cleanup(d)


def test_a_gallery_change_reloads_the_door(tmp_path):
    d = short_socket_dir()
    sock = d / "events.sock"
    try:
        door, relay, th = start_fake_door(tmp_path, sock, {"img": fakedoor.EMPTY})
        state = tmp_path / "state"
        app, web = make_web(web_config(state, sock), sock)
        end = time.monotonic() + 5
        while not web.door.up and time.monotonic() < end:
            time.sleep(0.05)
        assert len(door.index) == 1
        c, token = logged_in(app, "admin")
        r = c.post("/people/remove", data={"csrf": token, "name": "ann"})
        assert "Removed ann" in r.text and "not reachable" not in r.text
        end = time.monotonic() + 5
        while len(door.index) and time.monotonic() < end:
            time.sleep(0.05)
        assert len(door.index) == 0          # the door reloaded: ann no longer opens it
        web.door.stop()
        door.stop()
        th.join(10)
    finally:
        cleanup(d)


def test_access_log_filters_and_csv(tmp_path):
    from edge.door.accesslog import AccessLog

    d = short_socket_dir()
    state = tmp_path / "state"
    log = AccessLog(state / "access.sqlite")
    t0 = time.mktime((2026, 12, 1, 12, 0, 0, 0, 0, -1))
    log.record("grant", "ann", 0.97, "3 of 5", ts=t0)
    log.record("deny", None, 0.41, "spoof", ts=t0 + 86400)
    log.record("deny", None, 0.2, "attempt ended without a grant", ts=t0 + 2 * 86400)
    log.record("remote_open", "=HYPERLINK(\"x\")", 0.0, "remote open", ts=t0 + 2 * 86400)
    log.close()
    try:
        app, web = make_web(web_config(state, d / "events.sock"), d / "events.sock")
        c, _ = logged_in(app, "viewer")
        assert c.get("/log?decision=deny").text.count('"bad">deny<') == 2
        assert c.get("/log?reason=spoof").text.count('"bad">deny<') == 1
        assert c.get("/log?person=ann").text.count('"ok">grant<') == 1
        r = c.get("/log?since=2026-12-02&until=2026-12-02")
        assert r.text.count('"bad">deny<') == 1 and "spoof" in r.text
        assert c.get("/log?since=yesterday").status_code == 400
        assert c.get("/log?decision=drop%20table").status_code == 400
        rows = list(csv.reader(io.StringIO(c.get("/log.csv?decision=remote_open").text)))
        assert rows[0][:4] == ["id", "time", "ts", "identity"] and len(rows) == 2
        assert rows[1][3].startswith("'=")               # no formula runs when the CSV is opened in a spreadsheet
        assert c.get("/log.csv").headers["content-disposition"].startswith("attachment")
        web.door.stop()
    finally:
        cleanup(d)


def test_settings_show_the_resolved_config_and_checks(real_page):
    app, web, _ = real_page
    c, _ = logged_in(app, "admin")
    r = c.get("/settings")
    assert r.status_code == 200
    assert "[web]" in r.text and "session_minutes = 60" in r.text
    assert "OK doorface-dlib-int8.tflite" in r.text and "not connected to" in r.text


def test_the_web_process_never_loads_the_relay(tmp_path):
    """The page is a network-facing process: building it and serving every page loads no relay, daemon or GPIO
    code (a separate interpreter, so the other tests' imports do not count)."""
    import subprocess
    import sys

    from conftest import ROOT

    code = f"""
import sys, tempfile
sys.path.insert(0, {str(ROOT / 'tests')!r})
from pathlib import Path
from webkit import web_config, make_web, logged_in
d = Path(tempfile.mkdtemp(dir="/tmp"))
app, web = make_web(web_config(d / "state", d / "s.sock"), d / "s.sock")
c, _ = logged_in(app, "admin")
for p in ("/", "/people", "/log", "/log.csv", "/settings", "/api/status"):
    assert c.get(p).status_code == 200, p
bad = sorted(m for m in sys.modules if m.startswith(("edge.door.relay", "edge.door.daemon", "gpiozero", "lgpio",
                                                     "RPi", "Jetson")))
print("LOADED", bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr


def test_the_door_sends_frames_to_the_peer_that_asked_only(tmp_path):
    from edge.door.seam import SeamClient
    from edge.web.capture import SocketFrames, mjpeg

    d = short_socket_dir()
    sock = d / "events.sock"
    try:
        door, relay, th = start_fake_door(tmp_path, sock, {"img": fakedoor.ANN})
        with SeamClient(sock) as other:                      # another peer: hears decisions, never a frame
            src = SocketFrames(sock, count=5, width=160, fps=10).open()
            frames = [src.read() for _ in range(6)]
            src.close()
            assert [f is None for f in frames] == [False] * 5 + [True]
            assert frames[0].image.shape == (120, 160, 3)
            kinds = set()
            other._sock.settimeout(1.0)
            try:
                for rec in other.records():
                    kinds.add(rec.get("type"))
            except OSError:
                pass
            assert "frame" not in kinds
        with SeamClient(sock) as c:
            for bad in ({"count": 0, "width": 160, "fps": 5}, {"count": 5, "width": 5000, "fps": 5},
                        {"count": 5, "width": 160, "fps": 100}, {"count": "5", "width": 160, "fps": 5}):
                assert c.command("frames", **bad)["ok"] is False
        parts = list(mjpeg(sock, seconds=1, width=120, fps=4))
        assert len(parts) == 4 and all(p.startswith(b"--frame\r\nContent-Type: image/jpeg") for p in parts)
        assert not door.tap.requests                          # finished requests are dropped
        assert not any(e.get("type") == "frame" for e in door.decisions)
        door.stop()
        th.join(10)
        assert pulses(relay) >= 1                             # the door went on deciding (ann was let in)
    finally:
        cleanup(d)


def test_the_preview_is_opt_in_and_for_admins(tmp_path):
    d = short_socket_dir()
    try:
        app, web = make_web(web_config(tmp_path / "state", d / "events.sock"), d / "events.sock")
        c, _ = logged_in(app, "admin")
        assert c.get("/preview.mjpg").status_code == 404 and "show-preview" not in c.get("/").text
        web.door.stop()
        app, web = make_web(web_config(tmp_path / "state", d / "events.sock", **{"web.preview": True}),
                            d / "events.sock")
        c, _ = logged_in(app, "admin")
        assert "show-preview" in c.get("/").text
        v, _ = logged_in(app, "viewer")
        assert v.get("/preview.mjpg").status_code == 403 and "show-preview" not in v.get("/").text
        web.door.stop()
    finally:
        cleanup(d)
