"""What the page's gate and routes share: :class:`Web` (settings, door link, people, accounts, sessions, login limit,
templates), the cookies' names, the public routes, the security headers, and the live stream of the door's records."""
from __future__ import annotations

import asyncio
import threading
import datetime as dt
import json
import logging
import secrets
from pathlib import Path
from typing import Optional

from edge.web.auth import Accounts, LoginLimiter, Sessions

log = logging.getLogger("doorface")

HERE = Path(__file__).parent
COOKIE = "doorface_session"
PRELOGIN = "doorface_login"
#: (method, path) served without a session; plus everything under /static/ (the page's CSS and JS, no data).
PUBLIC = {("GET", "/login"), ("POST", "/login")}
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                                      "base-uri 'none'; object-src 'none'",
           "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
           "Cache-Control": "no-store", "Permissions-Policy": "camera=(), microphone=(), geolocation=()"}
#: Fields of the door's records a page may be sent (never images or embeddings; records hold none, this keeps it so).
RECORD_FIELDS = ("v", "type", "seq", "ts", "identity", "score", "decision", "reason", "state", "error", "text")


class Web:
    """What the routes share. The constructor does no I/O."""

    def __init__(self, cfg: dict, settings, door, people, accounts: Optional[Accounts] = None, clock=None):
        import time

        from jinja2 import Environment, FileSystemLoader, select_autoescape

        self.cfg, self.s, self.door, self.people = cfg, settings, door, people
        self.accounts = accounts or Accounts(settings.accounts_file)
        self.sessions = Sessions(self.accounts, settings.session_minutes * 60, clock or time.time)
        self.limiter = LoginLimiter(settings.login_attempts, settings.login_attempts_total)
        self.flashes: dict = {}
        self.exports = threading.Semaphore(1)     # one CSV export at a time
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                               autoescape=select_autoescape(["html"]))
        self.env.filters["when"] = lambda ts: dt.datetime.fromtimestamp(ts or 0).strftime("%Y-%m-%d %H:%M:%S")

    def render(self, request, name: str, status: int = 200, **ctx):
        from starlette.responses import HTMLResponse

        session = getattr(request.state, "session", None)
        token = request.cookies.get(COOKIE)
        flashes = self.flashes.pop(token, []) if token else []
        html = self.env.get_template(name).render(session=session, flashes=flashes, **ctx)
        return HTMLResponse(html, status_code=status)

    def flash(self, request, kind: str, text: str) -> None:
        token = request.cookies.get(COOKIE)
        if token:
            self.flashes.setdefault(token, []).append((kind, text))
            if len(self.flashes) > 1000:
                self.flashes.pop(next(iter(self.flashes)))


def public_record(rec: dict) -> dict:
    return {k: rec[k] for k in RECORD_FIELDS if k in rec}


def client_of(request) -> str:
    return request.client.host if request.client else "?"


def new_prelogin() -> str:
    return secrets.token_urlsafe(24)


def sse_line(rec: dict) -> str:
    return f"data: {json.dumps(public_record(rec), separators=(',', ':'))}\n\n"


async def stream(request, web: Web, token: str):
    """The door's records for one page, as Server-Sent Events, until the page goes or its session ends."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=200)

    def push(rec):
        loop.call_soon_threadsafe(lambda: queue.full() or queue.put_nowait(rec))

    unsubscribe = web.door.listen(push)
    try:
        snap = web.door.snapshot()
        yield "retry: 3000\n\n" + sse_line({"type": "door", "state": snap["door"], "relay": snap["relay"],
                                            "camera": snap["camera"], "error": snap["error"]})
        for rec in snap["guidance"]:      # an enrollment at the door camera that began before this page joined
            yield sse_line(rec)
        while not await request.is_disconnected():
            try:
                rec = await asyncio.wait_for(queue.get(), 10)
            except asyncio.TimeoutError:
                rec = None
            if web.sessions.peek(token) is None:    # logged out, reset, expired: the stream ends with the session
                return
            yield ": keep-alive\n\n" if rec is None else sse_line(rec)
    finally:
        unsubscribe()
