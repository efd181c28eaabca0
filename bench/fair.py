"""`make bench-fair`: a stranger's chance of opening the door, per demographic group (UTKFace chips).

Protocol (per group, NIST FRVT Part 3 style, within-group impostors): ``--enrolled`` people of the group are
enrolled from one photo each; every other photo of the same group is presented as a stranger (UTKFace has no
identity labels, so any two photos count as strangers: a few may be one person, and the rates are upper bounds).
Repeated over ``--splits`` random enrolments; counts are summed. Reported per group and engine:

- false accepts per comparison: (stranger, enrolled person) pairs scoring at or past the engine's threshold;
- strangers let in at the default rule: stranger photos the door would accept (threshold and margin);
- the worst/best group ratio of the per-comparison rate, with the counts behind every rate.

Each engine runs its own detector on the 200x200 chips; a photo where it finds no face is left out (and counted).
UTKFace is licensed for non-commercial research: it is read from ``../shared/data/utkface-dev.tgz`` by path, used
only to measure, and nothing derived from it is written into the repository except these figures.

    python -m bench.fair [--data ../shared/data/utkface-dev.tgz] [--model LABEL=PATH ...] [--out benchmarks]
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

import numpy as np

from edge.embedder import l2_normalise

GROUPS = ("white", "black", "asian", "indian")


def load_chips(path, groups=GROUPS, per_group: int = 0):
    """``{group: [(name, rgb), ...]}`` from the utkface-dev archive (or an extracted folder)."""
    import cv2

    out = {g: [] for g in groups}
    path = Path(path)

    def add(group, name, data):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None and group in out and (not per_group or len(out[group]) < per_group):
            out[group].append((name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))

    if path.is_dir():
        for g in groups:
            for f in sorted((path / g).glob("*.jpg")):
                add(g, f.name, f.read_bytes())
    else:
        with tarfile.open(path) as tar:
            for m in sorted(tar.getmembers(), key=lambda m: m.name):
                parts = Path(m.name).parts
                if m.isfile() and m.name.endswith(".jpg") and len(parts) >= 2:
                    add(parts[-2], parts[-1], tar.extractfile(m).read())
    return out


def embed_doorface(images, model, detector):
    from edge.detector import BlazeFaceDetector
    from edge.embedder import Embedder
    from edge.faces import largest

    det, emb = BlazeFaceDetector(detector, min_score=0.5), Embedder(model).load()
    out, ok = np.zeros((len(images), emb.dim), np.float32), np.zeros(len(images), bool)
    for i, img in enumerate(images):
        f = largest(det.detect(img))
        if f is not None:
            out[i], ok[i] = emb.embed_crop(emb.crop(img, f.landmarks)), True
    return out, ok


def embed_face_recognition(images):
    import face_recognition

    out, ok = np.zeros((len(images), 128), np.float32), np.zeros(len(images), bool)
    for i, img in enumerate(images):
        enc = face_recognition.face_encodings(img)
        if enc:
            out[i], ok[i] = enc[0], True
    return out, ok


def group_rates(sim: np.ndarray, threshold: float, margin: float, enrolled: int, splits: int, seed: int = 0) -> dict:
    """False accepts of one group: ``sim`` is the (n, n) similarity of its faces (higher = more alike)."""
    rng = np.random.default_rng(seed)
    n = len(sim)
    comparisons = fa_comp = strangers = fa_rule = 0
    for _ in range(splits):
        perm = rng.permutation(n)
        gal, probe = perm[:enrolled], perm[enrolled:]
        s = sim[np.ix_(probe, gal)]                       # each stranger against each enrolled person
        comparisons += s.size
        fa_comp += int((s >= threshold).sum())
        top2 = -np.sort(-s, axis=1)[:, :2]
        second = top2[:, 1] if s.shape[1] > 1 else np.full(len(s), -np.inf)
        # edge.decision.passes, vectorised over every stranger of the split (the best enrolled person is known).
        fa_rule += int(((top2[:, 0] >= threshold) & (top2[:, 0] - second >= margin)).sum())
        strangers += len(probe)
    return {"comparisons": comparisons, "false_accepts": fa_comp, "far": fa_comp / max(comparisons, 1),
            "stranger_probes": strangers, "strangers_let_in": fa_rule, "let_in_rate": fa_rule / max(strangers, 1)}


def measure(chips: dict, engines: dict, enrolled: int, splits: int, progress=None) -> dict:
    """``engines``: name -> (embed(images) -> (emb, ok), metric, threshold, margin, rule text)."""
    out = {}
    for name, (embed, metric, thr, margin, rule) in engines.items():
        per = {}
        for g, items in (progress(list(chips.items()), name) if progress else chips.items()):
            emb, ok = embed([img for _, img in items])
            e = emb[ok]
            if metric == "cosine":
                e = l2_normalise(e)
                sim = e @ e.T
            else:
                sq = (e ** 2).sum(1)
                sim = -np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * e @ e.T, 0))
            per[g] = {**group_rates(sim, thr, margin, enrolled, splits), "faces": int(ok.sum()),
                      "images": len(items)}
        rates = [v["far"] for v in per.values()]
        worst, best = max(rates), min(rates)
        out[name] = {"rule": rule, "threshold": thr, "margin": margin, "groups": per,
                     "worst_best_ratio": (worst / best) if best > 0 else (float("inf") if worst > 0 else 1.0)}
    return out


def md_section(res: dict) -> str:
    groups = list(next(iter(res["engines"].values()))["groups"])
    L = ["<!-- bench-fair -->", "## False accepts per demographic group (`make bench-fair`)", "",
         f"Measured {res['date']} on `{res['data']}` (UTKFace chips of adults, evaluation only): per group, "
         f"{res['enrolled']} people enrolled from one photo each, every other photo of the same group presented as a "
         f"stranger, {res['splits']} random enrolments summed. Per comparison: (stranger, enrolled) pairs at or past "
         "the threshold / all such pairs (the count behind each rate in brackets). Let in: stranger photos the "
         "door's single-image rule (threshold and margin) accepts. No identity labels: a few pairs may be one "
         "person, so these are upper bounds.", "",
         "| engine | rule | " + " | ".join(f"{g} per comparison" for g in groups) + " | worst/best | "
         + " | ".join(f"{g} let in" for g in groups) + " |",
         "|---|---|" + "---|" * (2 * len(groups) + 1)]
    for name, e in res["engines"].items():
        cells = [f"{1e4 * v['far']:.1f}e-4 ({v['false_accepts']}/{v['comparisons']})" for v in e["groups"].values()]
        lets = [f"{100 * v['let_in_rate']:.2f}% ({v['strangers_let_in']})" for v in e["groups"].values()]
        ratio = e["worst_best_ratio"]
        L.append(f"| {name} | {e['rule']} | " + " | ".join(cells) + f" | "
                 f"{'inf' if ratio == float('inf') else f'{ratio:.1f}'} | " + " | ".join(lets) + " |")
    faces = "; ".join(f"{name}: " + ", ".join(f"{g} {v['faces']}/{v['images']}" for g, v in e["groups"].items())
                      for name, e in res["engines"].items())
    L += ["", f"Faces found: {faces}.", "", f"![per-group false accepts]({res['plot']})", "", "<!-- /bench-fair -->"]
    return "\n".join(L)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["engines"])
    groups = list(res["engines"][names[0]]["groups"])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    w = 0.8 / len(names)
    floor = 0.5 / max(v["comparisons"] for e in res["engines"].values() for v in e["groups"].values())
    for i, name in enumerate(names):
        vals = [max(res["engines"][name]["groups"][g]["far"], floor) for g in groups]
        ax.bar(np.arange(len(groups)) + i * w - 0.4 + w / 2, vals, w, label=name)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_yscale("log"), ax.set_ylabel("false accepts per comparison (log; 0 drawn at the floor)")
    ax.axhline(1e-4, color="k", lw=0.8, ls="--", label="1e-4")
    ax.set_title("Stranger vs enrolled person, same group (UTKFace)"), ax.legend(fontsize=7), ax.grid(alpha=0.3)
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fair", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/utkface-dev.tgz")
    ap.add_argument("--model", action="append", help="LABEL=PATH, repeatable (default: the two shipped models)")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--enrolled", type=int, default=20)
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--per-group", type=int, default=0, help="use only this many photos per group (0: all)")
    ap.add_argument("--no-dlib", action="store_true")
    ap.add_argument("--out", default="benchmarks")
    ap.add_argument("--md", help="also write the table into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    import datetime as dt

    from bench.__main__ import DEFAULT_MODELS, have_dlib, parse_model
    from bench.model import update_md
    from edge.config import defaults
    from edge.sidecar import operating_point, read_sidecar

    if not Path(args.data).exists():
        print(f"bench.fair: {args.data} not found (../shared/data/utkface-dev.tgz beside the repo)", file=sys.stderr)
        return 2
    chips = load_chips(args.data, per_group=args.per_group)
    engines = {}
    for label, path in (parse_model(m) for m in (args.model or DEFAULT_MODELS)):
        thr, margin, far = operating_point(read_sidecar(path), defaults()["match"])
        engines[label] = (lambda ims, p=path: embed_doorface(ims, p, args.detector), "cosine", thr, margin,
                          f"cosine >= {thr:.3f} (FAR {far}), margin {margin:g}")
    if have_dlib() and not args.no_dlib:
        for tol in (0.6, 0.45):
            engines[f"face_recognition {tol}"] = (embed_face_recognition, "euclidean", -tol, 0.0,
                                                  f"distance <= {tol}")
    cache = {}

    def cached(name, fn):   # face_recognition's embeddings are the same for both tolerances
        key = "face_recognition" if name.startswith("face_recognition") else name

        def embed(ims):
            k = (key, id(ims[0]), len(ims))
            if k not in cache:
                cache[k] = fn(ims)
            return cache[k]
        return embed

    engines = {n: (cached(n, e[0]),) + e[1:] for n, e in engines.items()}

    def progress(items, name):
        from tqdm import tqdm

        return tqdm(items, desc=name, file=sys.stderr)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"date": dt.date.today().isoformat(), "data": args.data, "enrolled": args.enrolled, "splits": args.splits,
           "engines": measure(chips, engines, args.enrolled, args.splits, progress), "plot": "fair.png"}
    plot(res, out / "fair.png")
    if args.md:
        res["plot"] = str(Path(args.out) / "fair.png")
        update_md(Path(args.md), md_section(res), "<!-- bench-fair -->", "<!-- /bench-fair -->")
    (out / "fair.json").write_text(json.dumps(res, indent=1, default=float))
    print(md_section(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
