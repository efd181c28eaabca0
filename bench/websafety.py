"""`python -m bench.websafety` (part of `make bench-web`): the web page's route and login attacks, tried over real
HTTPS against `doorface web` running as its own process, counted. The same attacks are asserted in
tests/test_web_security.py; this writes the figures.

    python -m bench.websafety [--md BENCHMARKS.md]
"""
from __future__ import annotations

import argparse
import re
import shutil
import struct
import tempfile
import time
import zlib
from pathlib import Path

from bench.web import Page, _client, _config, _free_port

BEGIN, END = "<!-- bench-websafety -->", "<!-- /bench-websafety -->"


def app_routes(app) -> list:
    """Every (method, path) ``app`` serves, path parameters filled in; the static mount as one file (also used by
    tests/test_web_security.py)."""
    from starlette.routing import Mount

    out = []
    for r in app.routes:
        if isinstance(r, Mount):
            out.append(("GET", r.path + "/app.css"))
            continue
        path = r.path.replace("{template_id}", "1").replace("{name}", "denied-1.000.jpg")
        out += [(m, path) for m in sorted(r.methods - {"HEAD"})]
    return out


def _routes() -> list:
    """Every (method, path) the app serves (enumerated from the app), path parameters filled in."""
    from edge import config
    from edge.web.app import create_app
    from edge.web.core import Web
    from edge.web.settings import from_config

    tmp = Path(tempfile.mkdtemp(dir="/tmp"))
    cfg = config.load(None, {"state.dir": str(tmp), "web.enabled": True})

    class NoDoor:
        socket_path = tmp / "none.sock"

    out = app_routes(create_app(Web(cfg, from_config(cfg), NoDoor(), None)))
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def png_bomb(w: int, h: int) -> bytes:
    """A real PNG of w x h black pixels: tiny on the wire, w*h bytes once decoded (also used by the tests)."""
    raw = zlib.compress(b"".join(b"\x00" + bytes(w) for _ in range(h)), 9)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def unauthenticated(page: Page) -> dict:
    import httpx

    from edge.web.core import PUBLIC

    routes = _routes()
    c = httpx.Client(base_url=page.url, verify=False, timeout=30)
    refused, served = 0, []
    for method, path in routes:
        r = c.request(method, path, headers={"accept": "text/html"}, follow_redirects=False,
                      **({"data": {"csrf": "x"}} if method == "POST" else {}))
        if (method, path) in PUBLIC or path.startswith("/static/"):
            served.append(f"{method} {path}")
        elif r.status_code in (303, 401):
            refused += 1
    return {"routes": len(routes), "refused": refused, "public": served}


def login_guessing(page: Page) -> dict:
    import httpx

    c = httpx.Client(base_url=page.url, verify=False, timeout=30)
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
    codes = []
    t0 = time.monotonic()
    for i in range(100):
        codes.append(c.post("/login", data={"csrf": tok, "role": "admin", "password": f"guess{i}"},
                            headers={"origin": page.url}).status_code)
    right = c.post("/login", data={"csrf": tok, "role": "admin", "password": page.admin},
                   headers={"origin": page.url}).status_code
    return {"401": codes.count(401), "429": codes.count(429), "right_after": right,
            "seconds": round(time.monotonic() - t0, 1)}


def with_session(page: Page) -> dict:
    admin = _client(page, "admin")
    token = re.search(r'name="csrf" value="([^"]+)"', admin.get("/people").text).group(1)
    o = {"origin": page.url}
    csrf = [admin.post(p, data={"confirm": "yes", "name": "x"}, headers=o).status_code
            for p in ("/open", "/people/remove", "/people/reembed", "/people/access")]
    csrf.append(admin.post("/open", data={"csrf": "wrong", "confirm": "yes"}, headers=o).status_code)
    csrf.append(admin.post("/open", data={"csrf": token, "confirm": "yes"},
                           headers={"origin": "https://evil.example"}).status_code)
    big = admin.post("/people/enroll", data={"csrf": token, "name": "x"}, headers=o,
                     files={"photos": ("a.png", b"\0" * (11 << 20), "image/png")}).status_code
    bomb = admin.post("/people/enroll", data={"csrf": token, "name": "x"}, headers=o,
                      files={"photos": ("bomb.png", png_bomb(9000, 9000), "image/png")})
    fields = admin.post("/open", content="&".join(f"f{i}=x" for i in range(5000)) + f"&csrf={token}",
                        headers={**o, "content-type": "application/x-www-form-urlencoded"}).status_code
    files = admin.post("/people/enroll", data={"csrf": token, "name": "x"}, headers=o,
                       files=[("photos", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(1500)]).status_code
    trav = [admin.get(f"/log/snapshot/{n}").status_code for n in
            ("..%2faccess.sqlite", "%2e%2e%2fgallery.sqlite", "denied-1.000.jpg%2f..%2f..%2fgallery.sqlite")]
    viewer = _client(page, "viewer")
    vcodes = [viewer.get(p).status_code for p in ("/people", "/people/photo/1", "/settings",
                                                  "/log/snapshot/denied-1.000.jpg", "/preview.mjpg")]
    vtoken = re.search(r'name="csrf" value="([^"]+)"', viewer.get("/log").text).group(1)
    vcodes.append(viewer.post("/open", data={"csrf": vtoken, "confirm": "yes"}, headers=o).status_code)
    return {"csrf": csrf, "oversize": big, "fields": fields, "files": files, "bomb_refused": "too large" in bomb.text, "bomb_status": bomb.status_code,
            "traversal": trav, "viewer": vcodes}


def md_section(res: dict) -> str:
    u, g, s = res["routes"], res["login"], res["session"]
    return "\n".join([
        BEGIN, "## Web page: route and login attacks tried (`python -m bench.websafety`)", "",
        f"Against `doorface web` over real HTTPS, as its own process ({res['date']}).", "",
        "| attack | tried | outcome |", "|---|---|---|",
        f"| every route without a session (enumerated from the app) | {u['routes']} routes | {u['refused']} refused "
        f"(303 to the login, or 401); served: {', '.join(u['public'])} only |",
        f"| 100 wrong admin passwords from one address, then the right one | 101 logins in {g['seconds']} s | "
        f"{g['401']} x 401, then {g['429']} x 429; the right password: {g['right_after']} |",
        f"| POSTs without or with a wrong CSRF token, or from another origin | {len(s['csrf'])} | "
        f"{', '.join(map(str, s['csrf']))} |",
        f"| an 11 MB upload | 1 | {s['oversize']} |",
        f"| a form of 5,000 fields; an upload of 1,500 files | 2 | {s['fields']}, {s['files']} |",
        f"| a 9000 x 9000 PNG bomb (100 KB) | 1 | {'refused before decoding' if s['bomb_refused'] else 'NOT refused'} |",
        f"| path traversal to the gallery and the access log | {len(s['traversal'])} | "
        f"{', '.join(map(str, s['traversal']))} |",
        f"| a viewer fetching People, a photo, Settings, a snapshot, the preview; opening | {len(s['viewer'])} | "
        f"{', '.join(map(str, s['viewer']))} |",
        "", END])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.websafety", description=__doc__.splitlines()[0])
    ap.add_argument("--md", help="also write the section into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dfwsafe", dir="/tmp"))
    state = work / "state"
    state.mkdir()
    port = _free_port()
    conf = work / "web.toml"
    conf.write_text(_config(state, port))
    page = Page(conf, state, port).start()
    try:
        res = {"date": time.strftime("%Y-%m-%d"), "routes": unauthenticated(page), "session": with_session(page),
               "login": login_guessing(page)}
    finally:
        page.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.md:
        from bench.model import update_md

        update_md(Path(args.md), md_section(res), BEGIN, END)
    print(md_section(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
