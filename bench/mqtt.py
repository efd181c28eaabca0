"""`python -m bench.mqtt` (`make bench-mqtt`): the Home Assistant bridge under load and outages, and the door's
speed whatever the bridge and the broker do. Needs Debian's mosquitto and openssl (a broker with TLS and passwords is
started on a free port, as in the tests).

1. **Load**: a door making ``--rate`` decisions a minute through the real events seam (the access log and the
   socket: :class:`bench.mqttkit.LoadDoor`) for ``--minutes``; the bridge as its own process (``doorface mqtt``);
   a subscriber with a persistent session. The broker is killed (SIGKILL) and restarted twice, stalled (SIGSTOP)
   once, and the bridge is killed (SIGKILL) and restarted once. Then: every ``seq`` of the access log at the
   subscriber? in order? duplicates (all with the same seq)? the bridge's RSS over the run, the door's publish lag.
2. **Door speed**: ``doorface run --source CLIP --relay mock`` on the demo clip (the default model, liveness on),
   ``--reps`` times each: without a bridge, with a bridge whose broker is stopped, with a bridge whose broker stalls
   (SIGSTOP once the bridge is connected), and with a healthy broker; frames per second after the door's ``ready``
   line, and whether the decisions were the same.

    python -m bench.mqtt [--minutes 5] [--rate 1000] [--reps 3] [--skip-load] [--skip-fps] [--json F] [--md F]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from bench import broker as brk
from bench.mqttkit import LoadDoor, Watcher, bridge_config, write_config

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench-mqtt -->", "<!-- /bench-mqtt -->"


def rss_mb(pid: int) -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class BridgeProc:
    """``doorface mqtt`` as its own process; its RSS sampled twice a second while it runs."""

    def __init__(self, conf: Path, log: Path):
        self.conf, self.log = conf, log
        self.proc: Optional[subprocess.Popen] = None
        self.rss: list = []          # (seconds since the bench began, MB, pid)
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def start(self) -> "BridgeProc":
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "mqtt", "--config", str(self.conf)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            p = self.proc
            if p is not None and p.poll() is None:
                mb = rss_mb(p.pid)
                if mb is not None:
                    self.rss.append((time.monotonic() - self.t0, mb, p.pid))

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the running bridge process used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError, IndexError, ValueError):
            return 0.0

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)

    def close(self) -> None:
        self.kill(signal.SIGTERM)
        self._stop.set()


def _schedule(duration: float, broker, bridge: BridgeProc) -> list:
    """(at seconds, what, action): two broker kills with restarts, a stall, a bridge kill with restart."""
    return [(0.20 * duration, "broker SIGKILL", broker.kill), (0.25 * duration, "broker restarted", broker.start),
            (0.45 * duration, "broker SIGKILL", broker.kill), (0.55 * duration, "broker restarted", broker.start),
            (0.65 * duration, "broker SIGSTOP", broker.pause), (0.70 * duration, "broker SIGCONT", broker.resume),
            (0.80 * duration, "bridge SIGKILL", bridge.kill), (0.83 * duration, "bridge restarted", bridge.start)]


def _delivery(w: Watcher, state: Path) -> dict:
    from edge.mqtt.history import AccessLogReader

    logged = [r["seq"] for r in AccessLogReader(state).after(0, 10 ** 7)]
    got = w.seqs()
    firsts, seen = [], set()
    for s in got:
        if s not in seen:
            seen.add(s)
            firsts.append(s)
    with w.cond:
        lat = sorted(rx - e["ts"] for e, rx in zip(w.events, w.rx) if not e["catchup"])
    return {"logged": len(logged), "received": len(got), "distinct": len(seen),
            "missing": len(set(logged) - seen), "duplicates": len(got) - len(seen),
            "in_order": firsts == sorted(firsts),
            "from_log": sum(1 for e in w.events if e["catchup"]),
            "latency_p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "latency_p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None}


def load(minutes: float, rate: float, work: Path) -> dict:
    """Part 1 (see the module docstring)."""
    broker = brk.Mosquitto(work / "broker").start()
    state, sock = work / "state", work / "e.sock"
    conf = write_config(bridge_config(broker, state, sock, door_id="bench"), work / "bridge.toml")
    w = Watcher(broker, "bench-watcher").start()
    bridge = BridgeProc(conf, work / "bridge.log").start()
    time.sleep(2.0)
    door = LoadDoor(state, sock, rate).start()
    duration, t0, timeline = minutes * 60.0, time.monotonic(), []
    for at, what, action in _schedule(duration, broker, bridge):
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        action()
        timeline.append((round(time.monotonic() - t0, 1), what))
        print(f"  {timeline[-1][0]:7.1f} s  {what}", flush=True)
    time.sleep(max(0.0, t0 + duration - time.monotonic()))
    door.stop()
    total = len(door.published)
    w.wait(lambda w: len(set(w.seqs())) >= total, 120)
    settled = time.monotonic() - t0 - duration
    res = _delivery(w, state)
    bridge.close()
    w.stop()
    broker.stop()
    rss = [mb for _, mb, _ in bridge.rss]
    warm = [mb for t, mb, _ in bridge.rss if t > 20] or rss
    res.update({"minutes": minutes, "rate_per_min": rate, "decisions": total, "timeline": timeline,
                "settled_s": round(settled, 1), "rss_mb_first": round(warm[0], 1), "rss_mb_max": round(max(rss), 1),
                "rss_mb_last": round(warm[-1], 1), "door_lag_max_ms": round(1000 * max(door.lags), 2),
                "bridge_log_errors": (work / "bridge.log").read_text().count("Traceback")})
    return res


# -- part 2: the door's speed ---------------------------------------------------------------------------------
def _loop_clip(clip: Path, out: Path, loops: int) -> int:
    """``clip`` played ``loops`` times over as one file (MJPG, as the demo writes); its frame count."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for _ in range(loops):
        for img in frames:
            vw.write(img)
    vw.release()
    return len(frames) * loops


def _prepare_door(work: Path, loops: int) -> tuple:
    """The demo clip played ``loops`` times over and a state dir with obama enrolled (as `make demo` does)."""
    from edge.door.democlip import make_clip
    from edge.vision.assets import fetch_samples
    from edge.vision.detector import BlazeFaceDetector

    samples = fetch_samples()
    work.mkdir(parents=True, exist_ok=True)
    clip = work / "door.avi"
    make_clip(samples, clip, BlazeFaceDetector(str(ROOT / "models/face_detection_short_range.tflite")))
    long_clip = work / "door-long.avi"
    frames = _loop_clip(clip, long_clip, loops)
    base = work / "base-state"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "edge", "enroll", "obama", "--images", str(samples / "obama.jpg"),
                    str(samples / "obama2.jpg"), "--state-dir", str(base)], check=True, cwd=ROOT, env=env,
                   capture_output=True)
    return long_clip, base, frames


def _door_run(clip: Path, state: Path, conf: Path, frames: int) -> dict:
    """One `doorface run` over the clip: frames per second from its ready line to its exit; its decisions."""
    import resource

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    events = state / "events.jsonl"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(conf), "--state-dir", str(state),
                          "--source", str(clip), "--relay", "mock", "--events-out", str(events)], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = None
    for line in p.stderr:
        if ready is None and " ready: " in line:
            ready = time.monotonic()
    p.wait()
    end = time.monotonic()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)      # the door only: the bridge is reaped later
    cpu = (ru.ru_utime - ru0.ru_utime) + (ru.ru_stime - ru0.ru_stime)
    decisions = [(e["frame"], e["decision"]) for e in map(json.loads, events.read_text().splitlines())]
    return {"rc": p.returncode, "wall_s": end - t0, "fps": frames / (end - (ready or t0)), "decisions": decisions,
            "door_cpu_ms_per_frame": 1000 * cpu / frames}


def _condition(name: str, work: Path, clip: Path, base: Path, frames: int, rep: int) -> dict:
    state = work / f"{name}-{rep}"
    shutil.copytree(base, state)
    broker = bridge = None
    mqtt_on = name != "no bridge"
    if mqtt_on:
        broker = brk.Mosquitto(work / f"broker-{name}-{rep}")
        if name != "broker stopped":
            broker.start()
        else:
            broker._configure()
    cfg = bridge_config(broker, state, state / "events.sock", door_id="fps") if mqtt_on else None
    conf = work / f"{name}-{rep}.toml"
    if mqtt_on:
        write_config(cfg, conf)
        bridge = BridgeProc(conf, work / f"{name}-{rep}-bridge.log").start()
        time.sleep(2.0)                      # connected (or retrying) before the door starts
        if name == "broker stalls":
            broker.pause()
    else:
        conf.write_text('[relay]\nbackend = "mock"\n')
    try:
        cpu0 = bridge.cpu_s() if bridge is not None else 0.0
        res = _door_run(clip, state, conf, frames)
        res["bridge_cpu_s"] = bridge.cpu_s() - cpu0 if bridge is not None else 0.0
        return res
    finally:
        if bridge is not None:
            bridge.close()
        if broker is not None:
            broker.stop()


def door_fps(reps: int, work: Path, loops: int = 20) -> dict:
    """Part 2 (see the module docstring). Conditions alternate within each repetition (drifts hit all alike)."""
    clip, base, frames = _prepare_door(work, loops)
    names = ("no bridge", "broker stopped", "broker stalls", "broker up")
    runs = {n: [] for n in names}
    for rep in range(reps):
        for n in names[rep % len(names):] + names[:rep % len(names)]:   # each condition first once in a while
            r = _condition(n, work, clip, base, frames, rep)
            runs[n].append(r)
            print(f"  {n:<15} rep {rep}: {r['fps']:.2f} fps, {len(r['decisions'])} decisions, rc {r['rc']}",
                  flush=True)
    ref = runs["no bridge"][0]["decisions"]
    base_fps = statistics.median(r["fps"] for r in runs["no bridge"])
    return {"frames": frames, "reps": reps, "conditions": {
        n: {"fps_median": round(statistics.median(r["fps"] for r in rs), 2),
            "fps_range": [round(min(r["fps"] for r in rs), 1), round(max(r["fps"] for r in rs), 1)],
            "bridge_cpu_s": round(statistics.median(r["bridge_cpu_s"] for r in rs), 3),
            "door_cpu_ms_per_frame": round(statistics.median(r["door_cpu_ms_per_frame"] for r in rs), 2),
            "door_s": round(statistics.median(r["wall_s"] for r in rs), 1),
            "ratio": round(statistics.median(r["fps"] for r in rs) / base_fps, 3),
            "same_decisions": all(r["decisions"] == ref for r in rs), "rc": [r["rc"] for r in rs]}
        for n, rs in runs.items()}}


def md_section(res: dict) -> str:
    L = [BEGIN, "## Home Assistant bridge: load, outages, the door's speed (`make bench-mqtt`)", ""]
    ld = res.get("load")
    if ld:
        L += [f"{ld['rate_per_min']:.0f} decisions a minute for {ld['minutes']:g} min through the real events seam; "
              "the bridge as its own process; a subscriber with a persistent session; mosquitto with TLS and "
              "passwords. Outages: " + ", ".join(f"{w} at {t:.0f} s" for t, w in ld["timeline"]) + ".", "",
              "| decisions logged | received (distinct) | missing | duplicates (same seq) | in order | republished "
              "from the access log | latency p50 / p99 (outages included) | bridge RSS first / max / last | door publish lag max |",
              "|---|---|---|---|---|---|---|---|---|",
              f"| {ld['logged']} | {ld['received']} ({ld['distinct']}) | {ld['missing']} | {ld['duplicates']} | "
              f"{'yes' if ld['in_order'] else 'NO'} | {ld['from_log']} | {ld['latency_p50_ms']:.0f} / "
              f"{ld['latency_p99_ms']:.0f} ms | {ld['rss_mb_first']} / {ld['rss_mb_max']} / {ld['rss_mb_last']} MB | "
              f"{ld['door_lag_max_ms']} ms |", ""]
    fp = res.get("fps")
    if fp:
        L += [f"The door on the demo clip played over ({fp['frames']} frames, default model, liveness on, mock relay, "
              f"{res.get('cpus')} cores), median of "
              f"{fp['reps']} runs each, frames per second after its ready line:", "",
              "| condition | fps median (range) | vs no bridge | door CPU per frame | the bridge's CPU meanwhile | "
              "same decisions |", "|---|---|---|---|---|---|"]
        for n, c in fp["conditions"].items():
            L.append(f"| {n} | {c['fps_median']} ({c['fps_range'][0]}-{c['fps_range'][1]}) | {c['ratio']:.3f} | "
                     f"{c['door_cpu_ms_per_frame']:.2f} ms | {c['bridge_cpu_s']:.2f} s of {c['door_s']:.0f} s | "
                     f"{'yes' if c['same_decisions'] else 'NO'} |")
        L.append("")
    return "\n".join(L + [END])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mqtt", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=1000.0, help="decisions a minute")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--loops", type=int, default=20, help="the demo clip played this many times over per run")
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--skip-fps", action="store_true")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--md", help="also write the section into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    if brk.missing():
        print(f"bench.mqtt: {brk.missing()}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="dfbench", dir="/tmp"))
    res = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    try:
        if not args.skip_load:
            print(f"load: {args.rate:.0f} decisions a minute for {args.minutes:g} min", flush=True)
            res["load"] = load(args.minutes, args.rate, work / "load")
            print(json.dumps({k: v for k, v in res["load"].items() if k != "timeline"}), flush=True)
        if not args.skip_fps:
            print("door speed:", flush=True)
            res["fps"] = door_fps(args.reps, work / "fps", args.loops)
            print(json.dumps(res["fps"]), flush=True)
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
    sys.exit(main())
