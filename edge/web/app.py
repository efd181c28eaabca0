"""The page itself: a FastAPI (Starlette) app, server-rendered with Jinja2, a few lines of plain JavaScript.

Every route needs a session but the login page and the static files (:data:`edge.web.core.PUBLIC`): the gate is
one middleware, so a route added later cannot be forgotten (``tests/test_web_security.py`` enumerates them all).
Every POST but the login carries the session's CSRF token; the login carries a pre-login token (double-submit
cookie). Admin-only routes say so with :func:`edge.web.routes.admin`. Requests are bounded in size (``[web]
max_upload_mb``), pages are never cached, and a Content-Security-Policy allows only this origin's own scripts and
styles."""
from __future__ import annotations

import hmac
from typing import Optional

from edge.web.core import COOKIE, HEADERS, HERE, PRELOGIN, PUBLIC, Web  # noqa: F401


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
        limit = _body_limit(request, self.web)
        refusal = _size_refusal(request, limit)
        body = b""
        if refusal is None and request.method not in ("GET", "HEAD") and (request.method, request.url.path) not in PUBLIC \
                and self.web.sessions.peek(request.cookies.get(COOKIE)) is None:
            refusal = "401:log in first"          # refused before a byte of its body is read
        if refusal is None and request.method not in ("GET", "HEAD"):
            body = await _read_body(receive, limit)
            if body is None:
                refusal = f"413:request larger than {limit >> 10} KB, or sent too slowly"
        if refusal is None:
            request = Request(scope, _replay(body, receive))
            refusal = await _session_refusal(request, self.web)
        send = _with_headers(send, scope["path"])
        if refusal is not None:
            return await _refuse(refusal)(scope, receive, send)
        return await self.app(scope, _replay(body, receive), send)


#: Largest body of a request that is not a photo upload by a logged-in admin, and of the login form (bytes).
SMALL_BODY = 64 << 10
#: The whole body must arrive within this many seconds.
BODY_SECONDS = 60.0


def _body_limit(request, web: Web) -> int:
    """How much body this request may send, decided before any of it is read: the upload limit only for a session's
    enrollment; a small form otherwise (the login, other forms); nothing without a session (refused anyway)."""
    if request.url.path == "/people/enroll" and web.sessions.peek(request.cookies.get(COOKIE)) is not None:
        return web.s.max_upload_bytes
    return SMALL_BODY


async def _read_body(receive, limit: int):
    """The whole request body, or None once it passes ``limit`` bytes (whatever Content-Length said) or takes over
    :data:`BODY_SECONDS` to arrive."""
    import asyncio

    try:
        return await asyncio.wait_for(_collect(receive, limit), BODY_SECONDS)
    except asyncio.TimeoutError:
        return None


async def _collect(receive, limit: int):
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
        return f"413:request larger than {limit >> 10} KB"
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
        form = await _form(request)
        if form is None:
            return "400:the form could not be read (malformed, or too many fields or files)"
        sent = request.headers.get("x-csrf-token") or form.get("csrf") or ""
        if not isinstance(sent, str) or not hmac.compare_digest(sent, s.csrf):
            return "403:missing or wrong CSRF token: reload the page"
    return None


async def _login_csrf(request) -> Optional[str]:
    if not _same_origin(request):
        return "403:cross-site request refused"
    form = await _form(request)
    if form is None:
        return "400:the form could not be read (malformed, or too many fields or files)"
    sent, want = form.get("csrf") or "", request.cookies.get(PRELOGIN) or ""
    if not want or not isinstance(sent, str) or not hmac.compare_digest(sent, want):
        return "403:the login form expired: reload the page"
    return None


async def _form(request):
    """The request's form, or None when it cannot be parsed (malformed multipart, over Starlette's 1,000 fields or
    files): a 400, never a traceback from the gate."""
    try:
        return await request.form()
    except Exception:
        return None


def _same_origin(request) -> bool:
    """An Origin header, when the browser sends one, must be this page's own (scheme included)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


