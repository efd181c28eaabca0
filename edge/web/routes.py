"""The page's routes, one small function each (FastAPI is imported at the top: it reads the handlers' annotations;
this module is imported only when the app is made). The session, CSRF and size checks are the gate's
(:class:`edge.web.app.Gate`); admin-only routes check the role with :func:`admin`."""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from fastapi import Form, HTTPException, Request

from edge.errors import DoorfaceError
from edge.web import logview
from edge.web.core import COOKIE, PRELOGIN, Web, client_of, new_prelogin, stream
from edge.web.checks import liveness_state, resolved, run_checks

log = logging.getLogger("doorface")


def admin(request) -> None:
    """Refuse (HTTP 403) a session that is not the admin's."""
    if request.state.session is None or request.state.session.role != "admin":
        raise HTTPException(403, "admins only")


def _who(request) -> str:
    return f"web:{request.state.session.role}@{client_of(request)}"


def _back(to: str):
    from starlette.responses import RedirectResponse

    return RedirectResponse(to, status_code=303)


def add(app, web: Web) -> None:
    for fn in (_login_routes, _status_routes, _people_routes, _log_routes, _settings_routes):
        fn(app, web)


def _login_routes(app, web: Web) -> None:

    @app.get("/login")
    def login_page(request: Request):
        token = new_prelogin()
        resp = web.render(request, "login.html", title="Log in", csrf=token)
        resp.set_cookie(PRELOGIN, token, max_age=3600, httponly=True, secure=True, samesite="strict")
        return resp

    @app.post("/login")
    def login(request: Request, role: str = Form(...), password: str = Form(...)):
        client = client_of(request)
        wait = web.limiter.attempt(client)          # counted now, as a failure until the password proves right
        if wait:
            log.warning("web: login from %s refused for %d s (too many wrong passwords)", client, wait)
            r = web.render(request, "login.html", 429, title="Log in", csrf=request.cookies.get(PRELOGIN, ""),
                           error=f"Too many wrong passwords: try again in {wait} seconds.")
            r.headers["Retry-After"] = str(wait)
            return r
        if role not in ("admin", "viewer") or not web.accounts.check(role, password[:256]):
            log.warning("web: wrong password for %s from %s", role if role in ("admin", "viewer") else "?", client)
            return web.render(request, "login.html", 401, title="Log in", csrf=request.cookies.get(PRELOGIN, ""),
                              error="Wrong account or password.")
        web.limiter.succeeded(client)
        web.sessions.end(request.cookies.get(COOKIE))
        token, _ = web.sessions.create(role)
        log.info("web: %s logged in from %s", role, client)
        resp = _back("/")
        resp.set_cookie(COOKIE, token, max_age=web.s.session_minutes * 60, httponly=True, secure=True,
                        samesite="strict")
        resp.delete_cookie(PRELOGIN)
        return resp

    @app.post("/logout")
    def logout(request: Request):
        web.sessions.end(request.cookies.get(COOKIE))
        resp = _back("/login")
        resp.delete_cookie(COOKIE)
        return resp


def _status_routes(app, web: Web) -> None:
    from starlette.responses import JSONResponse, StreamingResponse

    @app.get("/")
    def status(request: Request):
        snap = web.door.snapshot()
        recent = snap["recent"] or list(logview.rows(web.s.door_state_dir, logview.Filter(), limit=10))
        return web.render(request, "status.html", title="Status", page="status", door=snap, recent=recent,
                          liveness=liveness_state(web.cfg), preview=web.s.preview,
                          show_preview=request.query_params.get("preview") == "1")

    @app.get("/preview.mjpg")
    def preview(request: Request):
        admin(request)
        if not web.s.preview:
            raise HTTPException(404, "the live preview is off ([web] preview = false)")
        from edge.web.capture import mjpeg

        log.info("web: %s watches the live preview", _who(request))
        return StreamingResponse(mjpeg(web.door.socket_path, user=_who(request)),
                                 media_type="multipart/x-mixed-replace; boundary=frame")

    @app.get("/api/status")
    def api_status(request: Request):
        snap = web.door.snapshot()
        return JSONResponse({k: snap[k] for k in ("door", "relay", "camera", "error")})

    @app.get("/events")
    async def events(request: Request):
        return StreamingResponse(stream(request, web, request.cookies.get(COOKIE)), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    @app.post("/open")
    def open_door(request: Request, confirm: str = Form("")):
        admin(request)
        if confirm != "yes":
            web.flash(request, "bad", "Not opened: confirm first.")
            return _back("/")
        try:
            out = web.door.open(_who(request))
        except DoorfaceError as exc:
            web.flash(request, "bad", f"Not opened: {exc}")
            return _back("/")
        ok = out.get("decision") == "remote_open"
        web.flash(request, "ok" if ok else "bad",
                  "The door was opened (one pulse)." if ok else f"Not opened: {out.get('reason', 'refused')}.")
        return _back("/")


def _reload_door(web: Web, request) -> str:
    """Ask the door to read the gallery again; what to tell the admin."""
    try:
        reply = web.door.command("reload", user=_who(request))
        return "" if reply.get("ok") else f" The door refused to reload: {reply.get('error')}."
    except DoorfaceError:
        return " The door is not reachable: it uses the change at its next start."


def _people_routes(app, web: Web) -> None:
    from starlette.responses import Response

    @app.get("/people")
    def people(request: Request):
        admin(request)
        return web.render(request, "people.html", title="People", page="people", people=web.people.people())

    @app.post("/people/enroll")
    async def enroll(request: Request):
        admin(request)
        form = await request.form()
        photos = [(f.filename or "photo", await f.read()) for f in form.getlist("photos") if hasattr(f, "read")]
        return await _enroll(request, web, str(form.get("name") or ""), photos)

    @app.post("/people/capture")
    async def capture(request: Request):
        admin(request)
        form = await request.form()
        return await _capture(request, web, str(form.get("name") or ""))

    @app.post("/people/rename")
    def rename(request: Request, old: str = Form(...), new: str = Form(...)):
        admin(request)
        return _change(request, web, lambda: f"Renamed {old} to {web.people.rename(old, new)}.")

    @app.post("/people/access")
    def access(request: Request, name: str = Form(...), hours: str = Form(""), until: str = Form("")):
        admin(request)
        return _change(request, web, lambda: web.people.set_access(name, hours[:300], until[:20]))

    @app.post("/people/remove")
    def remove(request: Request, name: str = Form(...)):
        admin(request)
        return _change(request, web, lambda: f"Removed {web.people.remove(name)}.")

    @app.post("/people/reembed")
    def reembed(request: Request):
        admin(request)
        return _change(request, web, lambda: web.people.reembed().capitalize() + ".")

    @app.get("/people/photo/{template_id}")
    def photo(request: Request, template_id: int):
        admin(request)
        data = web.people.photo(template_id)
        if data is None:
            return Response("no such photo", status_code=404, media_type="text/plain")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def _enroll(request, web: Web, name: str, photos):
    return await _enrolled(request, web, "photo(s)", web.people.enroll, name, photos, _who(request))


async def _capture(request, web: Web, name: str):
    first = [True]

    def say(line: str) -> None:
        web.door.announce({"type": "enroll", "text": line, "start": first[0]})
        first[0] = False

    return await _enrolled(request, web, "frame(s) at the door camera", web.people.capture, name,
                           web.door.socket_path, _who(request), say)


async def _enrolled(request, web: Web, what: str, fn, *args):
    """Run one enrollment (``fn(*args)``, off the event loop); on success ask the door to reload; the People page
    with the outcome, or its one-line error flashed."""
    from starlette.concurrency import run_in_threadpool

    try:
        result = await run_in_threadpool(fn, *args)
    except DoorfaceError as exc:
        web.flash(request, "bad", f"Not enrolled: {exc}")
        return _back("/people")
    if result.stored:
        log.info("web: %s enrolled %d %s of a person", _who(request), result.stored, what)
        result.lines.append(_reload_door(web, request).strip())
    return web.render(request, "people.html", title="People", page="people", people=web.people.people(),
                      result=result)


def _change(request, web: Web, fn):
    """Run one gallery change; flash its outcome (or its one-line error), ask the door to reload, back to People."""
    try:
        msg = fn()
    except DoorfaceError as exc:
        web.flash(request, "bad", str(exc))
        return _back("/people")
    log.info("web: %s: %s", _who(request), msg.split(":")[0])
    web.flash(request, "ok", msg + _reload_door(web, request))
    return _back("/people")


def _filter(request) -> logview.Filter:
    q = request.query_params
    f = logview.Filter(*(str(q.get(k, ""))[:64] for k in ("person", "decision", "reason", "since", "until")))
    f.where()     # a bad date or decision is a ValueError here (HTTP 400), not in the middle of a page
    return f


def _released(chunks, lock):
    """``chunks``, then ``lock`` released (also when the client goes away mid-way)."""
    try:
        yield from chunks
    finally:
        lock.release()


def _log_routes(app, web: Web) -> None:
    from starlette.responses import FileResponse, StreamingResponse

    @app.get("/log")
    def access_log(request: Request):
        try:
            f = _filter(request)
        except ValueError as exc:
            raise HTTPException(400, str(exc))
        rows = list(logview.rows(web.s.door_state_dir, f, limit=200))
        is_admin = request.state.session.role == "admin"
        if is_admin:
            logview.attach_snapshots(web.s.door_state_dir, rows)
        query = urlencode({k: v for k, v in vars(f).items() if v})
        return web.render(request, "log.html", title="Access log", page="log", rows=rows, f=f, query=query,
                          people=logview.people_seen(web.s.door_state_dir), decisions=logview.DECISIONS,
                          limit=200, snapshots=is_admin and any(r.get("snapshot") for r in rows))

    @app.get("/log.csv")
    def access_log_csv(request: Request):
        try:
            f = _filter(request)
        except ValueError as exc:
            raise HTTPException(400, str(exc))
        if not web.exports.acquire(blocking=False):
            raise HTTPException(429, "a CSV export is already running: try again when it is done")
        items = logview.rows(web.s.door_state_dir, f, limit=1_000_000)
        return StreamingResponse(_released(logview.as_csv(items), web.exports), media_type="text/csv",
                                 headers={"Content-Disposition": 'attachment; filename="doorface-access.csv"'})

    @app.get("/log/snapshot/{name}")
    def snapshot(request: Request, name: str):
        admin(request)
        path = logview.snapshot_file(web.s.door_state_dir, name)
        if path is None:
            raise HTTPException(404, "no such snapshot")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def _settings_routes(app, web: Web) -> None:
    from starlette.concurrency import run_in_threadpool

    @app.get("/settings")
    async def settings(request: Request):
        admin(request)
        checks = await run_in_threadpool(run_checks, web.cfg, web.people, web.door)
        return web.render(request, "settings.html", title="Settings", page="settings", checks=checks,
                          config=resolved(web.cfg))
