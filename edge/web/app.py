"""The page itself: a FastAPI (Starlette) app, server-rendered with Jinja2, a few lines of plain JavaScript.

Every route needs a session but the login page and the static files (:data:`PUBLIC`): the gate is one middleware,
so a route added later cannot be forgotten (``tests/test_web_security.py`` enumerates them all). Every POST but the
login carries the session's CSRF token; the login carries a pre-login token (double-submit cookie). Admin-only routes
say so with :func:`admin`. Requests are bounded in size (``[web] max_upload_mb``), pages are never cached, and a
Content-Security-Policy allows only this origin's own scripts and styles."""
from __future__ import annotations

import asyncio
import datetime as dt
import hmac
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
RECORD_FIELDS = ("v", "type", "seq", "ts", "identity", "score", "decision", "reason", "state", "error")


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


def create_app(web: Web):
    """The app for ``web``; its routes are in :mod:`edge.web.routes`."""
    from fastapi import FastAPI
    from starlette.staticfiles import StaticFiles

    from edge.web import routes

    app = FastAPI(title="doorface", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = web
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    routes.add(app, web)
    app.add_middleware(Gate, web=web)
    return app


class Gate:
    """The one middleware (plain ASGI, so the body it reads for the CSRF check is handed on to the route): size
    limit, session, CSRF, security headers."""

    def __init__(self, app, web: Web):
        self.app, self.web = app, web

    async def __call__(self, scope, receive, send):
        from starlette.requests import Request

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        refusal = _size_refusal(request, self.web.s.max_upload_bytes)
        body = b""
        if refusal is None and request.method not in ("GET", "HEAD"):
            body = await _read_body(receive, self.web.s.max_upload_bytes)
            if body is None:
                refusal = f"413:request larger than {self.web.s.max_upload_bytes >> 20} MB"
        if refusal is None:
            request = Request(scope, _replay(body, receive))
            refusal = await _session_refusal(request, self.web)
        send = _with_headers(send, scope["path"])
        if refusal is not None:
            return await _refuse(refusal)(scope, receive, send)
        return await self.app(scope, _replay(body, receive), send)


async def _read_body(receive, limit: int):
    """The whole request body, or None once it passes ``limit`` bytes (whatever Content-Length said)."""
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return b"".join(chunks)
        size += len(msg.get("body", b""))
        if size > limit:
            return None
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return again


def _with_headers(send, path: str):
    async def wrapped(msg):
        if msg["type"] == "http.response.start":
            headers = [(k, v) for k, v in msg.get("headers", []) if not (path.startswith("/static/") and
                                                                         k.lower() == b"cache-control")]
            have = {k.lower() for k, _ in headers}
            for k, v in HEADERS.items():
                if k.lower().encode() not in have:
                    if k == "Cache-Control" and path.startswith("/static/"):
                        v = "max-age=3600"
                    headers.append((k.lower().encode(), v.encode()))
            msg = {**msg, "headers": headers}
        await send(msg)
    return wrapped


def _refuse(refusal: str):
    from starlette.responses import PlainTextResponse, RedirectResponse

    if refusal == "login":
        return RedirectResponse("/login", status_code=303)
    code, text = refusal.split(":", 1)
    return PlainTextResponse(text, status_code=int(code))


def _size_refusal(request, limit: int) -> Optional[str]:
    if request.method in ("GET", "HEAD"):
        return None
    length = request.headers.get("content-length")
    if length is None:
        return "411:a request body needs a Content-Length"
    if not length.isdigit() or int(length) > limit:
        return f"413:request larger than {limit >> 20} MB"
    return None


async def _session_refusal(request, web: Web) -> Optional[str]:
    """None when the request may go on (``request.state.session`` set), else what to answer."""
    path, method = request.url.path, request.method
    request.state.session = web.sessions.get(request.cookies.get(COOKIE))
    if path.startswith("/static/") and method in ("GET", "HEAD"):
        return None
    if (method, path) in PUBLIC:
        return await _login_csrf(request) if method == "POST" else None
    s = request.state.session
    if s is None:
        return "login" if method == "GET" and "text/html" in request.headers.get("accept", "") else \
            "401:log in first"
    if method not in ("GET", "HEAD"):
        if not _same_origin(request):
            return "403:cross-site request refused"
        form = await request.form()
        sent = request.headers.get("x-csrf-token") or form.get("csrf") or ""
        if not isinstance(sent, str) or not hmac.compare_digest(sent, s.csrf):
            return "403:missing or wrong CSRF token: reload the page"
    return None


async def _login_csrf(request) -> Optional[str]:
    if not _same_origin(request):
        return "403:cross-site request refused"
    form = await request.form()
    sent, want = form.get("csrf") or "", request.cookies.get(PRELOGIN) or ""
    if not want or not isinstance(sent, str) or not hmac.compare_digest(sent, want):
        return "403:the login form expired: reload the page"
    return None


def _same_origin(request) -> bool:
    """An Origin header, when the browser sends one, must be this page's own."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


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
        while not await request.is_disconnected():
            try:
                rec = await asyncio.wait_for(queue.get(), 10)
            except asyncio.TimeoutError:
                if web.sessions.get(token) is None:
                    return
                yield ": keep-alive\n\n"
                continue
            yield sse_line(rec)
    finally:
        unsubscribe()
