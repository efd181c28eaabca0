"""`python -m bench.lockout` (`make bench-lockout`): does the lockout slow an attacker without keeping the owner out?

The door's real :class:`~edge.door.decision.DecisionPolicy` is fed a timeline of frames at 10 fps (the daemon's own
order: nothing while a lockout stops every face, else ``tick`` on every frame and ``observe`` on every face), under
three rules set by the config alone:

- **before**: ``lockout_decay_seconds = 0``, ``lockout_unknown_faces = "all"`` (the rule before issue 25: every
  lockout stops every face, and only a grant resets the back-off);
- **decay only**: ``lockout_decay_seconds = 900``, every lockout still stops every face;
- **after**: the defaults (decay 900 s; a lockout of unknown faces alone still lets in an enrolled, live face that
  passes ``lockout_wider_margin`` above its threshold: the model's, and half and twice it in the first scenario).

Scenarios:

1. **A stranger keeps the owner out** (issue 25): a stranger makes short visits (0.4 s of their face, 2 s away) each
   time no lockout runs, for ``--hours`` hours; the owner arrives at random (``--owner-rate`` an hour, Poisson) and
   stays until let in or for ``--patience`` seconds. Owner arrivals let in, over ``--seeds`` timelines. Also with the
   stranger holding up a printed photo of the owner instead of their face (a spoof: strict lockouts by design), and
   with no stranger at all (what the owner's own frames get).
2. **50 printed photos or screens of the owner**, one after another as soon as faces are looked at again (each held
   up to 4 s, 2 s between): tries in the first hour, tries an hour over all 50, the time to use them, photos let
   in; and the same attacker mixing 5 visits of their own face before each photo, to get lockouts that do not stop
   faces.
3. **A week after three lockouts**: how long the next one lasts.

Frames come from ``--frames``:

- ``nuaa`` (default when ``--nuaa`` exists): real frames through the door's own vision: the default model, its
  cohort and the shipped liveness model at its own threshold, on ``nuaa-dev`` (evaluation only; nothing derived is
  written but these figures). Each subject with two sessions or more (5 of the 8) in turn is the owner of a
  one-person door, enrolled from their first live frame; the owner's arrivals show their live frames of other
  sessions (one session per arrival), the photos are their NUAA print frames, the stranger's face is the other
  subjects' live frames. The frames' figures are kept in ``--cache`` (.cache/, not committed).
- ``synthetic``: made-up score distributions (owner 0.03 above the threshold, sd 0.015 per arrival and 0.01 per
  frame, live 90% of frames; prints judged live 10% of frames): quick, for the tests; not the README's figures.

    python -m bench.lockout [--frames nuaa|synthetic] [--nuaa ../shared/data/nuaa-dev.tgz] [--seeds 10] [--json F]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

FPS = 10.0
#: (identity, score, margin, live, person_threshold) of one face.
Face = Tuple[Optional[str], float, float, bool, float]


@dataclass
class Pools:
    """Frames to draw from, per owner: the owner's live frames by session, prints of them, a stranger's face."""

    threshold: float
    min_margin: float
    stranger_margin: Optional[float]            # the rule "after": from the model, as the door computes it
    owner: Dict[str, Dict[str, List[Face]]]     # owner -> session -> faces
    prints: Dict[str, List[Face]]
    stranger: Dict[str, List[Face]]
    source: str


RULES = {
    "before": {"lockout_decay_seconds": 0.0, "lockout_unknown_faces": "all"},
    "decay only": {"lockout_decay_seconds": 900.0, "lockout_unknown_faces": "all"},
    "after": {},
}


#: The wider margin swept around the model's ("after" at these multiples of it), for the first scenario.
SWEEP = (0.5, 2.0)


def policy_config(pools: Pools, rule: str):
    """The door's PolicyConfig for ``rule``: the packaged [decision] defaults with the rule's keys, the threshold,
    margin and wider margin of the frames' model; ``"after x2"``: the wider margin times 2."""
    from edge import config
    from edge.door.decision import PolicyConfig

    rule, _, times = rule.partition(" x")
    d = {**config.defaults()["decision"], **RULES[rule]}
    config.validate({**config.defaults(), "decision": d})
    return PolicyConfig(threshold=pools.threshold, min_margin=pools.min_margin, n=d["frames_needed"],
                        m=d["frames_window"], window=d["window_seconds"], attempt_gap=d["attempt_gap_seconds"],
                        cooldown=d["cooldown_seconds"], lockout_attempts=d["lockout_attempts"],
                        lockout_window=d["lockout_window_seconds"], lockout_base=d["lockout_base_seconds"],
                        lockout_max=d["lockout_max_seconds"], lockout_decay=d["lockout_decay_seconds"],
                        stranger_margin=None if d["lockout_unknown_faces"] == "all" else
                        pools.stranger_margin * float(times or 1))


# -- the frames -------------------------------------------------------------------------------------------------

def synthetic_pools(seed: int = 0, owners: int = 8) -> Pools:
    """Made-up frames around the default model's operating point (see the module doc)."""
    rng = np.random.default_rng(seed)
    th, mm = 0.9506, 0.015
    owner, prints, stranger = {}, {}, {}
    for o in range(owners):
        name = f"s{o}"
        owner[name] = {}
        for s in range(3):
            base = th + 0.03 + rng.normal(0, 0.015)
            sc = base + rng.normal(0, 0.01, 40)
            owner[name][str(s)] = [(name, float(x), 0.06, bool(rng.random() < 0.9), th) for x in sc]
        sc = th + 0.03 + rng.normal(0, 0.02, 40)
        prints[name] = [(name, float(x), 0.06, bool(rng.random() < 0.1), th) for x in sc]
        sc = th - 0.25 + rng.normal(0, 0.05, 40)
        stranger[name] = [(name, float(x), -0.01, True, th) for x in sc]
    return Pools(th, mm, round(0.950601 - 0.940648, 4), owner, prints, stranger, "synthetic")


def nuaa_pools(nuaa: str, model: str, detector: str, liveness: str) -> Pools:
    """Real frames (see the module doc): every NUAA frame through the door's analyzer once, then matched against a
    one-person door per subject (jittered template, own threshold against the model's cohort, margin over the
    closest cohort strangers), as :func:`edge.build.load_index` builds it."""
    import tempfile

    import cv2

    from bench.common import progress
    from bench.liveness import load_set, session
    from edge import config
    from edge.build import build_analyzer, calibrate_liveness, load_cohort, wider_margin
    from edge.people.matcher import TemplateIndex
    from edge.vision.jitter import template_embedding
    from edge.vision.sidecar import operating_point, stranger_neighbours

    cfg = config.load(None, {"model.embedder": model, "model.detector": detector, "liveness.model": liveness})
    an = build_analyzer(cfg)
    an.detector.load()
    meta = an.embedder.load().meta
    an.liveness.load()
    with tempfile.TemporaryDirectory() as state:
        calibrate_liveness(cfg, state, an.liveness)           # no calibration here: the model's own threshold
        cohort = load_cohort(cfg, Path(state), an.embedder)
    threshold, min_margin, _ = operating_point(meta, cfg["match"])
    k = stranger_neighbours(meta, cfg["match"])
    rows = []
    for name, label, subject, bgr in progress("nuaa frames")(load_set(nuaa)):
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        res = an.analyze(rgb)
        if res is None or res.rejected:
            continue
        rows.append((name, label, subject, res))
    subjects = sorted({s for _, label, s, _ in rows if label == 1})
    owner, prints, stranger = {}, {}, {}
    for s in subjects:
        if len({session(name) for name, label, subj, _ in rows if subj == s and label == 1}) < 2:
            continue     # one session only: no frames of another day to arrive with
        first = next(r for r in rows if r[1] == 1 and r[2] == s)
        tpl = template_embedding(an.embedder.embed_crop, first[3].crop)[None]
        idx = TemplateIndex(tpl, [s], {s: cohort.threshold(tpl)}, cohort.embeddings, k)

        def face(res) -> Face:
            mt = idx.match(res.embedding)
            return (mt.identity, mt.score, mt.margin, bool(res.live), mt.threshold)

        owner[s] = {}
        for name, label, subj, res in rows:
            if subj == s and label == 1 and session(name) != session(first[0]):
                owner[s].setdefault(session(name), []).append(face(res))
            elif subj == s and label == 0:
                prints.setdefault(s, []).append(face(res))
            elif subj != s and label == 1:
                stranger.setdefault(s, []).append(face(res))
    return Pools(threshold, min_margin, wider_margin(cfg, meta), owner, prints, stranger,
                 f"nuaa-dev, {Path(model).name}, liveness at its model threshold {an.liveness.threshold:.2f}")


def cached(path: str, make, key: list) -> Pools:
    """``make()``, kept in ``path`` (JSON) for the same ``key`` (the data and models, with their sizes and times)."""
    stamp = [[k, Path(k).stat().st_size, Path(k).stat().st_mtime] if Path(k).exists() else [k] for k in key]
    p = Path(path)
    if p.is_file():
        d = json.loads(p.read_text())
        if d.get("key") == stamp:
            pools = Pools(**d["pools"])
            tup = lambda faces: [tuple(f) for f in faces]            # noqa: E731
            return Pools(pools.threshold, pools.min_margin, pools.stranger_margin,
                         {o: {s: tup(f) for s, f in v.items()} for o, v in pools.owner.items()},
                         {o: tup(f) for o, f in pools.prints.items()}, {o: tup(f) for o, f in pools.stranger.items()},
                         pools.source)
    pools = make()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"key": stamp, "pools": pools.__dict__}))
    return pools


# -- the timelines ---------------------------------------------------------------------------------------------

class Door:
    """The policy stepped as the daemon steps it, with the time of every grant and lockout."""

    def __init__(self, cfg):
        from edge.door.decision import DecisionPolicy

        self.policy = DecisionPolicy(cfg)
        self.grants: List[Tuple[float, str]] = []
        self.lockouts = 0
        self.finals: List[str] = []

    def frame(self, t: float, face: Optional[Face]) -> Optional[str]:
        """One frame; the kind of a final decision it made, if any."""
        from edge.door.decision import Observation

        p = self.policy
        if p.blocks_faces(t):
            return None
        out = []
        ended = p.tick(t)
        if ended is not None:
            out.append(ended)
        if face is not None:
            ident, score, margin, live, own = face
            out.append(p.observe(Observation(t, ident, score, margin, live, own)))
        kind = None
        for d in out:
            if d.final:
                self.finals.append(d.kind)
                kind = d.kind
                if d.kind == "grant":
                    self.grants.append((t, d.identity))
                elif d.kind == "lockout":
                    self.lockouts += 1
        return kind


def _arrivals(rng, hours: float, rate: float) -> List[float]:
    out, t = [], 0.0
    while True:
        t += rng.exponential(3600.0 / rate)
        if t >= hours * 3600:
            return out
        out.append(t)


def stranger_vs_owner(pools: Pools, rule: str, owner: str, seed: int, hours: float = 2.0, rate: float = 11.5,
                      patience: float = 30.0, visitor: str = "face") -> dict:
    """Scenario 1 for one owner and one timeline: ``visitor`` ``face`` (the stranger's own face), ``print`` (a
    printed photo of the owner: a spoof) or ``none`` (no stranger: the owner's arrivals alone)."""
    rng = np.random.default_rng(seed)
    door = Door(policy_config(pools, rule))
    arrivals = _arrivals(rng, hours, rate)
    sessions = list(pools.owner[owner])
    vis_pool = pools.stranger[owner] if visitor in ("face", "none") else pools.prints[owner]
    let_in, waits = 0, []
    here: Optional[Tuple[float, List[Face]]] = None     # the owner: since when, their session's frames
    visit_end, away_until = -1.0, 0.0                     # the stranger's visit, and their time away
    nxt, blocked = 0, 0
    steps = int(hours * 3600 * FPS)
    for i in range(steps):
        t = i / FPS
        if here is None and nxt < len(arrivals) and t >= arrivals[nxt] and t >= visit_end + 2.0:
            # (the owner walks up to an empty doorway: not within the stranger's attempt, a swap in front of the
            # camera that the rule treats as one attempt)
            here = (t, pools.owner[owner][sessions[int(rng.integers(len(sessions)))]])
            nxt += 1
        face = None
        if here is not None:
            face = here[1][int(rng.integers(len(here[1])))]
        elif t < visit_end:
            face = vis_pool[int(rng.integers(len(vis_pool)))]
        elif t >= away_until and not door.policy.locked_out(t) and visitor != "none":
            visit_end, away_until = t + 0.4, t + 2.4          # a short visit, then 2 s away
            face = vis_pool[int(rng.integers(len(vis_pool)))]
        blocked += door.policy.blocks_faces(t)
        kind = door.frame(t, face)
        if here is not None and kind == "grant" and door.grants[-1][1] == owner:
            let_in += 1
            waits.append(t - here[0])
            here, away_until = None, t + 5.0                 # the owner goes in; the stranger steps back
        elif here is not None and t - here[0] >= patience:
            here, away_until = None, t + 2.0                 # the owner gives up
    return {"arrivals": len(arrivals), "let_in": let_in, "waits": waits, "lockouts": door.lockouts,
            "faces_blocked": blocked / steps}


def photo_attack(pools: Pools, rule: str, owner: str, seed: int, photos: int = 50, mix_faces: int = 0,
                 limit_hours: float = 48.0) -> dict:
    """Scenario 2: ``photos`` prints/screens of ``owner``, each shown as soon as faces are looked at again, up to 4 s
    or until its attempt is decided; with ``mix_faces``, that many short visits of the stranger's own face before
    each photo (to turn the lockouts into ones of unknown faces). A try is a photo the door looked at."""
    rng = np.random.default_rng(seed)
    door = Door(policy_config(pools, rule))
    tries, granted, first_hour = [], 0, 0
    showing_until, away_until, visits_left, visit_end, shown = -1.0, 0.0, mix_faces, -1.0, 0.0
    t, i = 0.0, 0
    while len(tries) < photos and t < limit_hours * 3600:
        t = i / FPS
        i += 1
        face = None
        if t < showing_until:
            face = pools.prints[owner][int(rng.integers(len(pools.prints[owner])))]
        elif t < visit_end:
            face = pools.stranger[owner][int(rng.integers(len(pools.stranger[owner])))]
        elif t >= away_until and not door.policy.blocks_faces(t):
            if visits_left > 0:
                visits_left -= 1
                visit_end, away_until = t + 0.4, t + 2.4
                face = pools.stranger[owner][int(rng.integers(len(pools.stranger[owner])))]
            else:
                showing_until, away_until, visits_left, shown = t + 4.0, t + 6.0, mix_faces, t
                tries.append(t)
                face = pools.prints[owner][int(rng.integers(len(pools.prints[owner])))]
        kind = door.frame(t, face)
        if t < showing_until and kind is not None and t - shown > 0.05:   # (not the deny of the visit before)
            if kind == "grant":
                granted += 1
            showing_until, away_until = t, t + 2.0               # decided: the next photo after 2 s
    first_hour = sum(1 for x in tries if x < 3600)
    span = tries[-1] if tries else 0.0
    return {"tries": len(tries), "first_hour": first_hour, "hours_for_all": span / 3600, "granted": granted,
            "lockouts": door.lockouts}


def week_after(pools: Pools, rule: str, lockouts: int = 3) -> float:
    """Scenario 3: ``lockouts`` lockouts back to back, a week of quiet, then denials again: the next lockout (s)."""
    from edge.door.decision import DecisionPolicy, Observation

    cfg = policy_config(pools, rule)
    p = DecisionPolicy(cfg)
    t, span = 0.0, 0.0
    unknown = (None, -1.0, 0.0, True, float("-inf"))

    def deny_burst(t0: float) -> Tuple[float, float]:
        t = t0
        while True:
            for _ in range(cfg.m):
                d = p.observe(Observation(t, *unknown))
                t += 0.1
                if d.kind == "lockout":
                    return t, float(d.reason.rsplit(" ", 1)[-1].rstrip("s"))
            t += cfg.attempt_gap + 0.5

    for _ in range(lockouts):
        t, span = deny_burst(t)
        t += span + 1.0
    _, span = deny_burst(t + 7 * 86400)
    return span


# -- the report --------------------------------------------------------------------------------------------------

def run(pools: Pools, seeds: int = 10, hours: float = 2.0, rate: float = 11.5, patience: float = 30.0) -> dict:
    owners = sorted(pools.owner)
    out = {"frames": pools.source, "threshold": pools.threshold, "wider_margin": pools.stranger_margin,
           "hours": hours, "owner_rate": rate, "patience": patience, "seeds": seeds, "owners": len(owners),
           "scenarios": {}}
    sc = out["scenarios"]
    for visitor in ("none", "face", "print"):
        rules = ["after"] if visitor == "none" else list(RULES) + ([f"after x{x:g}" for x in SWEEP]
                                                                    if visitor == "face" else [])
        for rule in rules:
            rs = [stranger_vs_owner(pools, rule, o, seed * 100 + j, hours, rate, patience, visitor)
                  for seed in range(seeds) for j, o in enumerate(owners)]
            waits = [w for r in rs for w in r["waits"]]
            sc[f"stranger {visitor}, {rule}"] = {
                "arrivals": sum(r["arrivals"] for r in rs), "let_in": sum(r["let_in"] for r in rs),
                "median_wait": float(np.median(waits)) if waits else None,
                "faces_blocked": float(np.mean([r["faces_blocked"] for r in rs])),
                "lockouts_per_hour": float(np.mean([r["lockouts"] for r in rs])) / hours}
    for mix in (0, 5):
        for rule in RULES:
            rs = [photo_attack(pools, rule, o, seed * 100 + j, mix_faces=mix)
                  for seed in range(max(1, seeds // 5)) for j, o in enumerate(owners)]
            sc[f"50 photos{' + 5 own-face visits each' if mix else ''}, {rule}"] = {
                "first_hour": float(np.mean([r["first_hour"] for r in rs])),
                "per_hour": sum(r["tries"] for r in rs) / sum(r["hours_for_all"] for r in rs),
                "hours_for_all": float(np.mean([r["hours_for_all"] for r in rs])),
                "granted": int(sum(r["granted"] for r in rs)), "runs": len(rs)}
    out["week_after_three_lockouts"] = {rule: week_after(pools, rule) for rule in RULES}
    return out


def table(r: dict) -> str:
    sc = r["scenarios"]
    lines = [f"Frames: {r['frames']}; threshold {r['threshold']:.4f}, wider margin "
             f"{r['wider_margin'] if r['wider_margin'] is not None else 'none'}; {r['owners']} owners x {r['seeds']} "
             f"timelines of {r['hours']:g} h, owner arriving {r['owner_rate']:g}/h, staying up to "
             f"{r['patience']:g} s.", "",
             "| stranger's visits each time no lockout runs | rule | owner arrivals let in | median wait | faces "
             "stopped | lockouts/h |", "|---|---|---|---|---|---|"]
    for key, v in sc.items():
        if not key.startswith("stranger"):
            continue
        who, rule = key.split(", ")
        what = {"face": "their own face (0.4 s)", "print": "a printed photo of the owner (spoof)",
                "none": "no stranger (the owner alone)"}[who.split()[-1]]
        if " x" in rule:
            rule = f"after, wider margin {r['wider_margin'] * float(rule.split(' x')[1]):.4f}"
        mw = f"{v['median_wait']:.1f} s" if v["median_wait"] is not None else "-"
        lines.append(f"| {what} | {rule} | {v['let_in']} of {v['arrivals']} ({v['let_in'] / max(v['arrivals'], 1):.0%}) "
                     f"| {mw} | {v['faces_blocked']:.0%} of the time | {v['lockouts_per_hour']:.1f} |")
    lines += ["", "| attacker | rule | tries in the first hour | tries an hour (all 50) | hours for all 50 | "
              "photos let in |", "|---|---|---|---|---|---|"]
    for key, v in sc.items():
        if not key.startswith("50 photos"):
            continue
        who, rule = key.rsplit(", ", 1)
        lines.append(f"| {who} | {rule} | {v['first_hour']:.1f} | {v['per_hour']:.1f} | {v['hours_for_all']:.1f} | "
                     f"{v['granted']} of {50 * v['runs']} |")
    w = r["week_after_three_lockouts"]
    lines += ["", "A week after three lockouts, the next one lasts: " +
              ", ".join(f"{rule} {s:.0f} s" for rule, s in w.items()) + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lockout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", choices=("nuaa", "synthetic"), help="default: nuaa when --nuaa exists")
    ap.add_argument("--nuaa", default="../shared/data/nuaa-dev.tgz")
    ap.add_argument("--model", default="models/doorface-dlib-int8.tflite")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--liveness", default="models/doorface-liveness.tflite")
    ap.add_argument("--seeds", type=int, default=10, help="timelines per owner")
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--owner-rate", type=float, default=11.5, help="owner arrivals an hour (23 in 2 h)")
    ap.add_argument("--patience", type=float, default=30.0, help="seconds the owner waits at the door")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--cache", default=".cache/bench-lockout-nuaa.json", help="the NUAA frames' figures")
    args = ap.parse_args(argv)
    frames = args.frames or ("nuaa" if Path(args.nuaa).exists() else "synthetic")
    if frames == "nuaa" and not Path(args.nuaa).exists():
        print(f"bench.lockout: {args.nuaa} not found (../shared/data beside the repo); --frames synthetic runs "
              "without it", file=sys.stderr)
        return 1
    if frames == "nuaa":
        from edge import config
        from edge.build import wider_margin
        from edge.vision.sidecar import read_sidecar

        pools = cached(args.cache, lambda: nuaa_pools(args.nuaa, args.model, args.detector, args.liveness),
                       [args.nuaa, args.model, args.liveness])
        pools.stranger_margin = wider_margin(config.load(None, {"model.embedder": args.model}),
                                             read_sidecar(args.model))      # as the door computes it today
    else:
        pools = synthetic_pools()
    r = run(pools, args.seeds, args.hours, args.owner_rate, args.patience)
    print(table(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
