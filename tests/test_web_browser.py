"""The web page in a real browser: Debian's chromium driven by Playwright, desktop and a 390x844 phone, against
`doorface web` run as its own process (TLS, its first-start password read from its output) and the real door daemon
(the shipped models, the demo's door-camera frames, the mock relay) on the events socket. The flows: log in; enroll
by upload and read the feedback on a bad photo; a face at the door and its grant appearing live; open the door and
the relay pulsing once; a viewer who cannot see photos of people or open. Screenshots of each page are kept in
.cache/web-screenshots/ (test artefacts)."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT
from webkit import cleanup, pulses, short_socket_dir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / ".cache" / "web-screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make install installs it as root: apt-get install chromium)")
    with pw.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slant(patch, k: float = 0.3):
    """The face seen at a slant: its left edge shortened by ``k`` of the height (a perspective warp)."""
    h, w = patch.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[0, h * k], [w, 0], [w, h], [0, h * (1 - k)]])
    return cv2.warpPerspective(patch, cv2.getPerspectiveTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT)


def _narrower(patch, f: float = 0.6):
    """The face squeezed horizontally to ``f`` of its width, on the patch's own edges."""
    h, w = patch.shape[:2]
    out = cv2.resize(patch, (w, h))
    s = cv2.resize(patch, (int(w * f), h), interpolation=cv2.INTER_AREA)
    x0 = (w - s.shape[1]) // 2
    out[:, x0:x0 + s.shape[1]] = s
    return out


class Scene:
    """The door camera's view: an empty doorway, or the demo's frames of a person (a new pose every frame)."""

    def __init__(self, detector, photos):
        from edge.door import democlip

        read = lambda p: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)   # noqa: E731
        self.patches = {p.stem: democlip.face_patch(read(p), detector) for p in photos}
        # A person who moves in front of the door camera: obama in his three photos, also narrower and seen at a
        # slant (a head turning); a re-rendered photo alone gives near-identical embeddings, which the capture
        # refuses as adding nothing.
        o = self.patches
        self.moves = [o["obama"], _narrower(o["obama"]), _slant(o["obama2"]), o["obama3"], _narrower(o["obama3"]),
                      o["obama2"], _slant(o["obama"]), _slant(o["obama3"])]
        self.rng = np.random.default_rng(0)
        self.bg = democlip.background(self.rng)
        self.person = None            # a photo's stem, "obama moving", or None: the doorway is empty
        self.compose = democlip.compose

    def frame(self, i):
        if self.person == "obama moving":
            return self.compose(self.moves[(i // 4) % len(self.moves)], self.rng, self.bg)
        return self.compose(self.patches[self.person], self.rng, self.bg) if self.person else self.bg.copy()


@pytest.fixture(scope="module")
def door_and_page(tmp_path_factory, samples, detector_path, port_model):
    from edge import config
    from edge.build import build_analyzer, daemon
    from edge.door.camera import FakeSource
    from edge.door.relay import make_relay

    tmp = tmp_path_factory.mktemp("web")
    sockdir = short_socket_dir()
    sock, port = sockdir / "events.sock", _free_port()
    cfg_file = tmp / "doorface.toml"
    cfg_file.write_text(f"""
[model]
embedder = "{port_model}"
detector = "{detector_path}"
[state]
dir = "{tmp / 'state'}"
[events]
socket = "{sock}"
[relay]
backend = "mock"
unlock_seconds = 0.5
[decision]
cooldown_seconds = 1.0
[web]
enabled = true
preview = true
host = "127.0.0.1"
port = {port}
""")
    cfg = config.load(str(cfg_file))
    analyzer = build_analyzer(cfg)
    scene = Scene(analyzer.detector.load(), [samples / n for n in ("obama.jpg", "obama2.jpg", "obama3.jpg")])
    relay = make_relay("mock", "17", True)
    d = daemon(cfg, analyzer=analyzer, source=FakeSource(fn=scene.frame, live=True, fps=8), relay=relay,
               install_signals=False)
    th = threading.Thread(target=d.run, daemon=True)
    th.start()
    web = subprocess.Popen([sys.executable, "-m", "edge", "web", "--config", str(cfg_file)], cwd=ROOT,
                           stderr=subprocess.PIPE, text=True)
    password, lines = _first_password(web)
    viewer = subprocess.run([sys.executable, "-m", "edge", "web", "reset-password", "--role", "viewer", "--config",
                             str(cfg_file)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    viewer_pw = re.search(r"\(shown once\): (\S+)", viewer.stdout).group(1)
    yield {"url": f"https://127.0.0.1:{port}", "admin": password, "viewer": viewer_pw, "daemon": d, "relay": relay,
           "scene": scene, "samples": samples, "lines": lines}
    web.terminate()
    web.wait(20)
    d.stop()
    th.join(20)
    cleanup(sockdir)


def _first_password(proc):
    """The admin password `doorface web` prints once at its first start, and its lines up to "serving"."""
    lines, password = [], None
    end = time.monotonic() + 120
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError("doorface web stopped: " + "".join(lines))
        lines.append(line)
        m = re.search(r"the admin password is (\S+) \(shown this once", line)
        password = m.group(1) if m else password
        if "serving https://" in line:
            break
    assert password, "".join(lines)
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    return password, lines


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _login(browser, url, role, password, phone=False):
    ctx = browser.new_context(ignore_https_errors=True, **({"viewport": {"width": 390, "height": 844},
                                                           "is_mobile": True, "has_touch": True} if phone else {}))
    page = ctx.new_page()
    page.goto(url + "/")
    assert page.url.endswith("/login")
    page.select_option("#role", role)
    page.fill("#password", password)
    page.click("button[type=submit]")
    try:
        page.wait_for_url(url + "/", timeout=15_000)
    except Exception:
        raise AssertionError(f"login as {role} did not reach the status page: {page.url} {page.content()[:800]}")
    return ctx, page


def _bad_photo(samples, tmp: Path) -> Path:
    dark = (cv2.imread(str(samples / "obama.jpg")) * 0.08).astype(np.uint8)
    path = tmp / "dark-kitchen.jpg"
    cv2.imwrite(str(path), dark)
    return path


def test_admin_enrolls_sees_a_grant_live_and_opens(browser, door_and_page, tmp_path):
    env, d, relay = door_and_page, door_and_page["daemon"], door_and_page["relay"]
    for phone in (False, True):
        ctx, page = _login(browser, env["url"], "admin", env["admin"], phone)
        _shot(page, f"status-{'phone' if phone else 'desktop'}")
        ctx.close()
    ctx, page = _login(browser, env["url"], "admin", env["admin"])
    page.click("text=People")
    page.fill("#enroll-name", "Barack")
    page.set_input_files("#enroll-photos", [str(env["samples"] / "obama.jpg"), str(_bad_photo(env["samples"],
                                                                                               tmp_path))])
    page.click("#enroll-submit")
    result = page.locator("#enroll-result")
    result.wait_for()
    assert "Stored 1 photo(s) of Barack" in result.inner_text()
    assert "too dark" in result.inner_text() and "better light" in result.inner_text()
    _shot(page, "people-enroll-feedback")
    end = time.monotonic() + 10
    while "Barack" not in getattr(d.index, "people", []) and time.monotonic() < end:
        time.sleep(0.1)
    assert "Barack" in d.index.people                 # the door reloaded its gallery through the socket

    page.click("text=Status")
    env["scene"].person = "obama"
    try:
        row = page.locator("#decisions tr.live", has_text="grant").first
        row.wait_for(timeout=60_000)                  # pushed over SSE: the page was not reloaded
        assert "Barack" in row.inner_text()
    finally:
        env["scene"].person = None
    _shot(page, "status-live-grant")
    time.sleep(2.5)                                   # the pulse and the cooldown are over; the doorway is empty
    before = pulses(relay)
    page.once("dialog", lambda dlg: dlg.accept())
    page.click("#open-door")
    page.wait_for_selector(".flash")
    assert "The door was opened (one pulse)" in page.inner_text(".flash")
    time.sleep(1.0)
    assert pulses(relay) == before + 1
    assert [e["identity"] for e in d.decisions if e["decision"] == "remote_open"][-1].startswith("web:admin@")
    page.click("text=Access log")
    page.select_option("select[name=decision]", "grant")
    page.click("text=Filter")
    assert "Barack" in page.inner_text("#log")
    _shot(page, "log")
    page.click("text=Settings")
    assert "OK doorface-dlib-int8.tflite" in page.inner_text("#checks")
    _shot(page, "settings")
    ctx.close()


def test_a_viewer_sees_status_and_log_but_no_photos_and_cannot_open(browser, door_and_page):
    env = door_and_page
    ctx, page = _login(browser, env["url"], "viewer", env["viewer"], phone=True)
    assert page.locator("#open-door").count() == 0
    assert page.locator("text=People").count() == 0
    _shot(page, "viewer-status-phone")
    for path in ("/people", "/people/photo/1", "/settings"):
        r = page.request.get(env["url"] + path)
        assert r.status == 403, path
        assert not r.headers.get("content-type", "").startswith("image/")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    r = page.request.post(env["url"] + "/open", form={"csrf": csrf, "confirm": "yes"})
    assert r.status == 403
    page.goto(env["url"] + "/log")
    assert page.locator("img").count() == 0
    ctx.close()


def test_admin_enrolls_someone_at_the_door_camera_and_watches_the_preview(browser, door_and_page):
    """Barack is removed (with the confirmation), then enrolled again at the door camera, guided, while the door runs;
    the preview shows the door camera at low resolution."""
    env, d = door_and_page, door_and_page["daemon"]
    ctx, page = _login(browser, env["url"], "admin", env["admin"], phone=True)
    page.goto(env["url"] + "/people")
    page.once("dialog", lambda dlg: dlg.accept())
    page.locator("tr[data-person=Barack] button.danger").click()
    page.wait_for_selector(".flash.ok")
    assert "Removed Barack" in page.inner_text(".flash.ok")
    env["scene"].person = "obama moving"
    try:
        page.goto(env["url"] + "/?preview=1")
        img = page.locator("#preview")
        img.wait_for()
        page.wait_for_function("document.getElementById('preview').naturalWidth > 0", timeout=20_000)
        assert img.evaluate("e => e.naturalWidth") == 320            # the low-resolution view, through the socket
        _shot(page, "status-preview-phone")
        page.goto(env["url"] + "/people")
        page.fill("#capture-name", "Barack")
        page.click("#capture-submit")
        page.locator("#capture-steps li").first.wait_for(timeout=20_000)   # the guidance arrives while it runs
        first_step = page.inner_text("#capture-steps")
        result = page.locator("#enroll-result")
        result.wait_for(timeout=90_000)
        assert "look straight at the camera" in first_step
        assert "Stored 5 photo(s) of Barack" in result.inner_text(), result.inner_text()
        _shot(page, "people-capture-phone")
    finally:
        env["scene"].person = None
    end = time.monotonic() + 10
    while "Barack" not in getattr(d.index, "people", []) and time.monotonic() < end:
        time.sleep(0.1)
    assert "Barack" in d.index.people
    ctx.close()
