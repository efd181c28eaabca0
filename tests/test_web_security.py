"""The web page's attack surface, over HTTP (Starlette's test client): every route refused without a session
(enumerated from the app, none missed), CSRF, the login rate limit (100 wrong passwords), session expiry and reset,
oversize and decompression-bomb uploads, path traversal, and no face image ever served to a viewer."""
from __future__ import annotations

import struct

import pytest

from bench.websafety import app_routes, png_bomb
from webkit import (ADMIN_PW, cleanup, client, csrf_of, logged_in, login, make_web, short_socket_dir,
                    web_config)


@pytest.fixture
def page(tmp_path):
    d = short_socket_dir()
    cfg = web_config(tmp_path / "state", d / "events.sock")
    app, web = make_web(cfg, d / "events.sock")
    yield app, web
    web.door.stop()
    cleanup(d)


def test_every_route_without_a_session_is_refused(page):
    app, _ = page
    from edge.web.core import PUBLIC

    routes = app_routes(app)
    assert len(routes) >= 15, routes        # the enumeration found the app's routes
    c = client(app)
    served = []
    for method, path in routes:
        for accept in ("text/html", "*/*"):
            r = c.request(method, path, headers={"accept": accept}, follow_redirects=False,
                          **({"data": {"csrf": "x"}} if method == "POST" else {}))
            if (method, path) in PUBLIC or path.startswith("/static/"):
                served.append((method, path))
                continue
            assert r.status_code in (303, 401), (method, path, r.status_code)
            assert r.status_code == 401 or r.headers["location"] == "/login"
    assert {p for _, p in served} == {"/login", "/static/app.css"}


def test_static_files_hold_no_data(page):
    app, _ = page
    c = client(app)
    for name, kind in (("app.css", "text/css"), ("app.js", "javascript")):
        r = c.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    from edge.web.core import HERE

    assert sorted(p.name for p in (HERE / "static").iterdir()) == ["app.css", "app.js"]   # nothing else is public
    assert c.get("/static/../accounts.json").status_code in (401, 404)
    assert c.get("/static/%2e%2e/app.py").status_code == 404


def test_login_and_roles(page):
    app, _ = page
    admin, _ = logged_in(app, "admin")
    viewer, _ = logged_in(app, "viewer")
    assert admin.get("/people").status_code == 200 and admin.get("/settings").status_code == 200
    assert viewer.get("/").status_code == 200 and viewer.get("/log").status_code == 200
    assert viewer.get("/people").status_code == 403 and viewer.get("/settings").status_code == 403
    assert "Open the door" in admin.get("/").text and "Open the door" not in viewer.get("/").text
    cookie = login(client(app), "admin", ADMIN_PW).headers["set-cookie"].lower()
    for part in ("httponly", "secure", "samesite=strict", "max-age=3600"):
        assert part in cookie


def test_csrf_is_required_on_every_post(page):
    app, _ = page
    c, token = logged_in(app, "admin")
    for path in ("/open", "/people/remove", "/people/rename", "/people/reembed", "/logout"):
        assert c.post(path, data={"confirm": "yes", "name": "x", "old": "x", "new": "y"}).status_code == 403
        assert c.post(path, data={"csrf": "wrong", "confirm": "yes", "name": "x"}).status_code == 403
    r = c.post("/open", data={"csrf": token, "confirm": "yes"}, headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    # The login form itself: without the pre-login cookie's token, refused before any password is checked.
    assert client(app).post("/login", data={"csrf": "x", "role": "admin", "password": ADMIN_PW}).status_code == 403


def test_a_hundred_wrong_passwords_then_blocked(page):
    app, web = page
    c = client(app)
    tok = csrf_of(c.get("/login").text)
    codes = [c.post("/login", data={"csrf": tok, "role": "admin", "password": f"guess{i}"}).status_code
             for i in range(100)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    r = c.post("/login", data={"csrf": tok, "role": "admin", "password": ADMIN_PW}, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0      # even the right one, while blocked
    assert len(web.sessions) == 0


def test_the_total_limit_stops_a_crowd():
    from edge.web.auth import LoginLimiter

    now = [0.0]
    lim = LoginLimiter(per_client=5, total=50, clock=lambda: now[0])
    for i in range(50):
        assert lim.retry_after(f"10.0.{i}.1") == 0
        lim.failed(f"10.0.{i}.1")
        now[0] += 1
    assert lim.retry_after("192.168.1.20") > 0         # a new address too
    now[0] += 16 * 60
    assert lim.retry_after("192.168.1.20") == 0        # the window passed


def test_per_client_back_off_doubles():
    from edge.web.auth import LoginLimiter

    now = [0.0]
    lim = LoginLimiter(per_client=3, total=1000, clock=lambda: now[0])
    for _ in range(3):
        lim.failed("a")
    assert 59 <= lim.retry_after("a") <= 60 and lim.retry_after("b") == 0
    now[0] += 61
    lim.failed("a")
    assert 119 <= lim.retry_after("a") <= 120


def test_sessions_expire_and_a_reset_ends_them(page, tmp_path):
    app0, web0 = page
    now = [1000.0]
    d = short_socket_dir()
    try:
        app, web = make_web(web0.cfg, d / "events.sock", clock=lambda: now[0])
        c, _ = logged_in(app, "admin")
        assert c.get("/people").status_code == 200
        now[0] += 59 * 60
        assert c.get("/people").status_code == 200          # used within the idle time: still on
        now[0] += 61 * 60
        assert c.get("/people", follow_redirects=False).status_code in (303, 401)
        c, _ = logged_in(app, "admin")
        web.accounts.set_password("admin", "a-new-one-for-tests")
        assert c.get("/people", follow_redirects=False).status_code in (303, 401)
        web.door.stop()
    finally:
        cleanup(d)


def test_passwords_are_pbkdf2_sha256_600k(page):
    import json

    _, web = page
    stored = json.loads(web.s.accounts_file.read_text())
    algo, iterations, _, _ = stored["admin"]["hash"].split("$")
    assert algo == "pbkdf2_sha256" and int(iterations) >= 600_000
    assert ADMIN_PW not in web.s.accounts_file.read_text()
    assert oct(web.s.accounts_file.stat().st_mode)[-3:] == "600"
    from edge.web.auth import verify_password, hash_password

    assert not verify_password("x", hash_password("x", iterations=1000))     # a weakened hash is refused


def test_upload_bombs_and_oversize_are_refused_before_decoding():
    from edge.web.uploads import PhotoError, decode, image_size

    bomb = png_bomb(9000, 9000)
    assert len(bomb) < 200_000 and image_size(bomb) == ("png", 9000, 9000)
    with pytest.raises(PhotoError, match="too large"):
        decode(bomb)
    jpeg = b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", 60000, 60000) + b"\x03" + bytes(9)
    with pytest.raises(PhotoError, match="too large"):
        decode(jpeg + bytes(64))
    with pytest.raises(PhotoError, match="not a JPEG or PNG"):
        decode(b"GIF89a" + bytes(100))
    with pytest.raises(PhotoError, match="damaged"):
        decode(png_bomb(64, 64)[:60])


def test_oversize_requests_get_413_and_bodies_without_length_411(page):
    app, web = page
    c, token = logged_in(app, "admin")
    big = b"x" * (web.s.max_upload_bytes + 1)
    r = c.post("/people/enroll", files={"photos": ("a.jpg", big, "image/jpeg")}, data={"csrf": token, "name": "x"})
    assert r.status_code == 413

    def chunks():
        yield b"csrf=" + token.encode()
    r = c.post("/open", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 411


def test_path_traversal_is_refused(page, tmp_path):
    app, web = page
    c, _ = logged_in(app, "admin")
    state = web.s.door_state_dir
    (state / "snapshots").mkdir(parents=True, exist_ok=True)
    (state / "secret.jpg").write_bytes(b"\xff\xd8 not for you")
    for name in ("..%2fsecret.jpg", "%2e%2e%2fsecret.jpg", "denied-1.000.jpg%2f..%2f..%2fsecret.jpg",
                 "..%5csecret.jpg", "secret.jpg"):
        r = c.get(f"/log/snapshot/{name}")
        assert r.status_code == 404, (name, r.status_code)
        assert b"not for you" not in r.content
    assert c.get("/people/photo/..%2f..%2fetc%2fpasswd").status_code in (404, 422)
    from edge.web.logview import snapshot_file

    assert snapshot_file(state, "../secret.jpg") is None and snapshot_file(state, "denied-1.000.jpg") is None


def test_forms_that_cannot_be_read_are_400_not_a_traceback(page):
    app, _ = page
    c, token = logged_in(app, "admin")
    many = "&".join(f"f{i}=x" for i in range(5000)) + f"&csrf={token}&confirm=yes"
    r = c.post("/open", content=many, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "could not be read" in r.text
    files = [("photos", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(1500)]
    assert c.post("/people/enroll", data={"csrf": token, "name": "x"}, files=files).status_code == 400
    r = c.post("/people/enroll", content=b"--b\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + token.encode(),
               headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code in (400, 403)
    for kind in ("application/json", "text/plain"):          # no form, no token: refused
        assert c.post("/open", content=f"csrf={token}", headers={"content-type": kind}).status_code == 403
    anon = client(app)
    r = anon.post("/login", content="&".join(f"f{i}=x" for i in range(5000)),
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400


def test_fixes_from_the_outside_attack(page):
    """What an attacker from outside found (issue 29's closing note): each now refused."""
    import threading

    from edge.web.auth import LoginLimiter
    from edge.web.uploads import PhotoError, decode, image_size

    app, web = page
    # A JPEG whose fill byte (0xFF 0xFF) hid its real size from the header check.
    fake = b"\xff\xd8\xff\xff\xc0\x00\x11\x08" + struct.pack(">HH", 20000, 20000) + b"\x03" + bytes(9) + bytes(64)
    assert image_size(fake) == ("jpeg", 20000, 20000)
    with pytest.raises(PhotoError, match="too large"):
        decode(fake)
    # Guesses sent all at once: no more than the limit is ever checked.
    lim = LoginLimiter(per_client=5, total=1000)
    got = []
    ts = [threading.Thread(target=lambda: got.append(lim.attempt("a"))) for _ in range(40)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert got.count(0) == 5
    # A live stream ends with its session; peek never extends one.
    c, token = logged_in(app, "viewer")
    from edge.web.core import COOKIE

    cookie = c.cookies.get(COOKIE)
    assert web.sessions.peek(cookie) is not None
    web.accounts.set_password("viewer", "another-one-for-tests")
    assert web.sessions.peek(cookie) is None
    # Dates the clock cannot hold: 400, not 500.
    a, atoken = logged_in(app, "admin")
    assert a.get("/log?until=9999-12-31").status_code == 400
    assert a.get("/log.csv?until=9999-12-31").status_code == 400
    r = a.post("/people/access", data={"csrf": atoken, "name": "x", "hours": "", "until": "9999-12-31"})
    assert r.status_code == 200 and "the door can use" in r.text
    # The Origin's scheme must be this page's.
    assert a.post("/open", data={"csrf": atoken, "confirm": "yes"},
                  headers={"origin": "http://testserver"}).status_code == 403
    # Without a session a body is never read: refused at once, whatever it claims to be.
    anon = client(app)
    assert anon.post("/people/enroll", content=b"x" * 1000, headers={"content-type": "text/plain"}).status_code == 401
    assert anon.post("/login", content=b"x" * (65 << 10),
                     headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413
