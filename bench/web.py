"""`python -m bench.web` (`make bench-web`): the door's speed with the web page open and streaming, against without,
in the same run; and the page's memory.

- **Door speed**: ``doorface run --source CLIP --relay mock`` on the demo clip played over (the default model,
  liveness on), ``--reps`` times each, alternating: with no page, and with ``doorface web`` running (TLS) with two
  browsers' worth of clients logged in (admin and viewer), each holding the live stream (SSE) open and fetching the
  status page every 2 s and /api/status every second. Frames per second after the door's ready line, the door's CPU
  per frame, the page's CPU meanwhile, and whether the decisions were the same.
- **Page RSS** (the page's process, from /proc): after start, after serving every page, and after an enrollment by
  upload (which loads the models into the page's process).

    python -m bench.web [--reps 3] [--loops 6] [--json F] [--md F]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.mqtt import _door_run, _prepare_door, rss_mb

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench-web -->", "<!-- /bench-web -->"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(state: Path, port: int) -> str:
    return (f'[relay]\nbackend = "mock"\n[events]\nsocket = "{state / "events.sock"}"\n'
            f'[web]\nenabled = true\nhost = "127.0.0.1"\nport = {port}\n')


class Page:
    """``doorface web`` as its own process, its admin password read from its first start, a viewer made."""

    def __init__(self, conf: Path, state: Path, port: int):
        self.conf, self.state, self.url = conf, state, f"https://127.0.0.1:{port}"
        self.proc = None
        self.admin = self.viewer = None

    def start(self) -> "Page":
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "web", "--config", str(self.conf), "--state-dir",
                                      str(self.state)], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            m = re.search(r"the admin password is (\S+) ", line)
            self.admin = m.group(1) if m else self.admin
            if "serving https://" in line:
                break
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()
        out = subprocess.run([sys.executable, "-m", "edge", "web", "reset-password", "--role", "viewer", "--config",
                              str(self.conf), "--state-dir", str(self.state)], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
        self.viewer = re.search(r"\(shown once\): (\S+)", out.stdout).group(1)
        return self

    def cpu_s(self) -> float:
        try:
            f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return 0.0

    def rss(self) -> float:
        return rss_mb(self.proc.pid) or 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def _client(page: Page, role: str):
    import httpx

    c = httpx.Client(base_url=page.url, verify=False, timeout=30)
    tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
    r = c.post("/login", data={"csrf": tok, "role": role, "password": getattr(page, role)},
               headers={"origin": page.url})
    assert r.status_code == 303, r.text
    return c


def _browse(page: Page, role: str, stop: threading.Event, counts: dict) -> None:
    """One browser: the live stream held open on a thread, the status page every 2 s, /api/status every second."""
    c = _client(page, role)

    def stream():
        with c.stream("GET", "/events", timeout=None) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    counts["sse"] = counts.get("sse", 0) + 1
                if stop.is_set():
                    return
    threading.Thread(target=stream, daemon=True).start()
    i = 0
    while not stop.wait(1.0):
        c.get("/api/status")
        if i % 2 == 0:
            c.get("/")
        counts["requests"] = counts.get("requests", 0) + 1 + (i % 2 == 0)
        i += 1


def _condition(name: str, work: Path, clip: Path, base: Path, frames: int, rep: int) -> dict:
    state = work / f"{name.replace(' ', '-')}-{rep}"
    shutil.copytree(base, state)
    conf = work / f"{name.replace(' ', '-')}-{rep}.toml"
    conf.write_text(_config(state, _free_port()))
    page, stop, counts = None, threading.Event(), {}
    if name != "no page":
        page = Page(conf, state, int(re.search(r"port = (\d+)", conf.read_text()).group(1))).start()
        for role in ("admin", "viewer"):
            threading.Thread(target=_browse, args=(page, role, stop, counts), daemon=True).start()
        time.sleep(2.0)
    try:
        cpu0 = page.cpu_s() if page else 0.0
        res = _door_run(clip, state, conf, frames)
        res["page_cpu_s"] = page.cpu_s() - cpu0 if page else 0.0
        res.update(counts)
        return res
    finally:
        stop.set()
        if page:
            page.stop()


def door_fps(reps: int, work: Path, loops: int) -> dict:
    clip, base, frames = _prepare_door(work, loops)
    names = ("no page", "page streaming")
    runs = {n: [] for n in names}
    for rep in range(reps):
        for n in (names if rep % 2 == 0 else names[::-1]):
            r = _condition(n, work, clip, base, frames, rep)
            runs[n].append(r)
            print(f"  {n:<15} rep {rep}: {r['fps']:.2f} fps, {len(r['decisions'])} decisions, page CPU "
                  f"{r['page_cpu_s']:.1f} s, SSE records {r.get('sse', 0)}, requests {r.get('requests', 0)}",
                  flush=True)
    base_fps = statistics.median(r["fps"] for r in runs["no page"])
    ref = runs["no page"][0]["decisions"]
    return {"frames": frames, "reps": reps, "conditions": {
        n: {"fps_median": round(statistics.median(r["fps"] for r in rs), 2),
            "fps_range": [round(min(r["fps"] for r in rs), 1), round(max(r["fps"] for r in rs), 1)],
            "ratio": round(statistics.median(r["fps"] for r in rs) / base_fps, 3),
            "door_cpu_ms_per_frame": round(statistics.median(r["door_cpu_ms_per_frame"] for r in rs), 2),
            "page_cpu_s": round(statistics.median(r["page_cpu_s"] for r in rs), 2),
            "door_s": round(statistics.median(r["wall_s"] for r in rs), 1),
            "same_decisions": all(r["decisions"] == ref for r in rs)} for n, rs in runs.items()}}


def page_rss(work: Path) -> dict:
    """The page's RSS after start, after every page, after an enrollment by upload."""
    from edge.vision.assets import fetch_samples

    state = work / "rss-state"
    state.mkdir(parents=True)
    conf = work / "rss.toml"
    port = _free_port()
    conf.write_text(_config(state, port))
    page = Page(conf, state, port).start()
    try:
        time.sleep(1.0)
        out = {"start_mb": round(page.rss(), 1)}
        c = _client(page, "admin")
        for path in ("/", "/people", "/log", "/log.csv", "/api/status"):
            c.get(path)
        out["pages_mb"] = round(page.rss(), 1)
        tok = re.search(r'name="csrf" value="([^"]+)"', c.get("/people").text).group(1)
        photo = (fetch_samples() / "obama.jpg").read_bytes()
        r = c.post("/people/enroll", data={"csrf": tok, "name": "obama"}, files={"photos": ("o.jpg", photo)},
                   headers={"origin": page.url})
        out["enrolled"] = "Stored 1 photo" in r.text
        out["after_enroll_mb"] = round(page.rss(), 1)
        return out
    finally:
        page.stop()


def md_section(res: dict) -> str:
    L = [BEGIN, "## Web page: the door's speed with the page open, and the page's memory (`make bench-web`)", ""]
    fp = res.get("fps")
    if fp:
        L += [f"The door on the demo clip played over ({fp['frames']} frames, default model, liveness on, mock relay, "
              f"{res.get('cpus')} cores), median of {fp['reps']} runs each, alternating; \"page streaming\": "
              "`doorface web` (TLS) with an admin and a viewer each holding the live stream open, fetching the status "
              "page every 2 s and /api/status every second.", "",
              "| condition | fps median (range) | vs no page | door CPU per frame | the page's CPU meanwhile | "
              "same decisions |", "|---|---|---|---|---|---|"]
        for n, c in fp["conditions"].items():
            L.append(f"| {n} | {c['fps_median']} ({c['fps_range'][0]}-{c['fps_range'][1]}) | {c['ratio']:.3f} | "
                     f"{c['door_cpu_ms_per_frame']:.2f} ms | {c['page_cpu_s']:.2f} s of {c['door_s']:.0f} s | "
                     f"{'yes' if c['same_decisions'] else 'NO'} |")
        L.append("")
    rs = res.get("rss")
    if rs:
        L += [f"The page's RSS: {rs['start_mb']} MB after start, {rs['pages_mb']} MB after serving every page, "
              f"{rs['after_enroll_mb']} MB after an enrollment by upload (the models loaded into its process; "
              "the unit's MemoryMax is 384 MB).", ""]
    return "\n".join(L + [END])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--loops", type=int, default=6, help="the demo clip played this many times over per run")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--md", help="also write the section into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dfweb", dir="/tmp"))
    res = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    try:
        print("page RSS:", flush=True)
        res["rss"] = page_rss(work)
        print(json.dumps(res["rss"]), flush=True)
        print("door speed:", flush=True)
        res["fps"] = door_fps(args.reps, work / "fps", args.loops)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if args.md:
        from bench.model import update_md

        update_md(Path(args.md), md_section(res), BEGIN, END)
    print(md_section(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
