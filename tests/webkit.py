"""Shared by the web page's tests: a page built on a state dir, logged-in clients, a running fake door (the real
daemon with the shipped fakes and the mock relay) on a socket, and the pulses the mock relay gave."""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import warnings

import pytest

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("httpx", reason="httpx is not installed (the web tests' client)")

import fakedoor  # noqa: E402
from edge import config  # noqa: E402

ADMIN_PW, VIEWER_PW = "admin-password-for-tests", "viewer-password-for-tests"


def web_config(state: Path, sock: Path, **over) -> dict:
    return config.load(None, {"state.dir": str(state), "web.enabled": True, "events.socket": str(sock),
                              "relay.backend": "mock", **over})


def make_web(cfg, sock, clock=None, door=None):
    """``(app, web)`` with both accounts set (the door link started, on ``sock``)."""
    from edge.web.app import create_app
    from edge.web.core import Web
    from edge.web.auth import Accounts
    from edge.web.doorlink import DoorLink
    from edge.web.people import PeopleService
    from edge.web.settings import from_config

    s = from_config(cfg)
    acc = Accounts(s.accounts_file)
    acc.set_password("admin", ADMIN_PW)
    acc.set_password("viewer", VIEWER_PW)
    door = door or DoorLink(sock).start()
    web = Web(cfg, s, door, PeopleService(cfg), acc, clock=clock)
    return create_app(web), web


def client(app):
    from starlette.testclient import TestClient

    return TestClient(app, base_url="https://testserver")


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(c, role: str, password: str):
    tok = csrf_of(c.get("/login").text)
    return c.post("/login", data={"csrf": tok, "role": role, "password": password}, follow_redirects=False)


def logged_in(app, role="admin"):
    c = client(app)
    r = login(c, role, ADMIN_PW if role == "admin" else VIEWER_PW)
    assert r.status_code == 303, r.text
    return c, csrf_of(c.get("/log").text)


def short_socket_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="dfw", dir="/tmp"))


def start_fake_door(tmp_path, sock, scene):
    """The real daemon on fakes (ann enrolled), its frames ``scene["img"]``, the mock relay; ``(daemon, relay,
    thread)`` once its socket is up."""
    from edge.build import daemon
    from edge.door.camera import FakeSource
    from edge.door.relay import make_relay

    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    cfg = fakedoor.fake_config(state, **{"events.socket": str(sock)})
    an = fakedoor.analyzer()
    fakedoor.enroll_ann(tmp_path, state, an)
    relay = make_relay("mock", "17", True)
    d = daemon(cfg, analyzer=an, source=FakeSource(fn=lambda i: scene["img"], live=True, fps=20), relay=relay,
               install_signals=False)
    th = threading.Thread(target=d.run, daemon=True)
    th.start()
    end = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < end:
        time.sleep(0.02)
    return d, relay, th


def pulses(relay) -> int:
    """How many times the mock relay's pin went from locked to energised."""
    tl = relay.timeline()
    return sum(1 for (_, a), (_, b) in zip(tl, tl[1:]) if b and not a)


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
