"""`make bench-fair`: a stranger's chance of opening the door, per demographic group (UTKFace chips).

Protocol (per group, NIST FRVT Part 3 style, within-group impostors): ``--enrolled`` people of the group are
enrolled from one photo each (doorface: stored as the door stores it, a jittered template, :mod:`edge.vision.jitter`);
every other photo of the same group is presented as a stranger (UTKFace has no identity labels, so any two photos
count as strangers: a few may be one person, and the rates are upper bounds).
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

from bench.accuracy import door_similarity, similarity
from bench.common import DEFAULT_MODELS, have_dlib, parse_model
from edge.vision.embedder import l2_normalise

GROUPS = ("white", "black", "asian", "indian")
#: Pairs the default model scores at or above this are counted apart as probably one person: UTKFace has no identity
#: labels and repeats people (celebrities, several photos each); samples of the pairs above it, looked at by eye in
#: every group, were the same person twice, while most pairs at 0.955-0.965 were two people.
NEAR_SAME = 0.975


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
    """``(embeddings, found, templates)``: each photo as the face at the door and as the template an enrollment
    from it stores (:func:`edge.vision.jitter.template_embedding`)."""
    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder
    from edge.vision.faces import largest
    from edge.vision.jitter import template_embedding

    det, emb = BlazeFaceDetector(detector, min_score=0.5), Embedder(model).load()
    out, ok = np.zeros((len(images), emb.dim), np.float32), np.zeros(len(images), bool)
    tmpl = np.zeros_like(out)
    for i, img in enumerate(images):
        f = largest(det.detect(img))
        if f is not None:
            crop = emb.crop(img, f)
            out[i], ok[i], tmpl[i] = emb.embed_crop(crop), True, template_embedding(emb.embed_crop, crop)
    return out, ok, tmpl


def embed_face_recognition(images):
    import face_recognition

    out, ok = np.zeros((len(images), 128), np.float32), np.zeros(len(images), bool)
    for i, img in enumerate(images):
        enc = face_recognition.face_encodings(img)
        if enc:
            out[i], ok[i] = enc[0], True
    return out, ok


def splits_of(sizes: dict, cohort_per: int, enrolled: int, strangers: int, splits: int, seed: int = 0) -> list:
    """Per split, per group: (cohort, enrolled, stranger) photo indices, disjoint. The cohort half is only used by
    the balanced-cohort rule; every rule is measured on the same enrolled people and strangers."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        sp = {}
        for g, n in sizes.items():
            perm = rng.permutation(n)
            rest = perm[cohort_per:]
            sp[g] = (perm[:cohort_per], rest[:enrolled], rest[enrolled:enrolled + strangers])
        out.append(sp)
    return out


def group_rates(s: np.ndarray, threshold: float, margin: float, own=None, near_same=None, crowd=None) -> dict:
    """False accepts of one enrolment: ``s`` is (strangers, enrolled) similarity (higher = more alike); ``own`` the
    enrolled people's own thresholds (the stricter of it and ``threshold`` applies, as in edge.door.decision.passes);
    ``crowd`` each stranger's closeness to their closest cohort strangers (edge.people.cohort.crowding): a comparison
    then also needs to beat it by ``margin``, as the door's margin rule asks of every face.
    ``near_same`` (same shape, bool) marks pairs that are probably one person photographed twice (UTKFace repeats
    people); the false accepts among them are counted apart."""
    fa, thr, crowd = _false_accepts(s, threshold, margin, own, crowd)
    near_same = np.zeros_like(fa) if near_same is None else near_same
    top = np.argsort(-s, axis=1)
    rows = np.arange(len(s))
    best, second = s[rows, top[:, 0]], (s[rows, top[:, 1]] if s.shape[1] > 1 else np.full(len(s), -np.inf))
    second = np.maximum(second, crowd)
    return {"comparisons": int(s.size), "false_accepts": int(fa.sum()), "near_same": int((fa & near_same).sum()),
            "stranger_probes": len(s),
            # edge.door.decision.passes, vectorised over every stranger (the best enrolled person is known).
            "strangers_let_in": int(((best >= thr[top[:, 0]]) & (best - second >= margin)).sum())}


def summed(parts: list) -> dict:
    t = {k: sum(p[k] for p in parts) for k in parts[0]}
    t["far"] = t["false_accepts"] / max(t["comparisons"], 1)
    t["far_without_near_same"] = (t["false_accepts"] - t["near_same"]) / max(t["comparisons"], 1)
    t["let_in_rate"] = t["strangers_let_in"] / max(t["stranger_probes"], 1)
    return t


def _false_accepts(s: np.ndarray, threshold: float, margin: float, own=None, crowd=None):
    """``(false-accept mask, each enrolled person's threshold, each stranger's crowding)`` of one enrolment."""
    thr = np.maximum(threshold, own if own is not None else -np.inf) * np.ones(s.shape[1])
    crowd = np.full(len(s), -np.inf) if crowd is None else np.asarray(crowd)
    return (s >= thr[None]) & (s - crowd[:, None] >= margin), thr, crowd


def false_accept_pairs(s: np.ndarray, threshold: float, margin: float, own=None, crowd=None) -> list:
    """``(stranger row, enrolled column, score)`` of every comparison :func:`group_rates` counts as a false accept."""
    fa = _false_accepts(s, threshold, margin, own, crowd)[0]
    return [(int(a), int(b), float(s[a, b])) for a, b in zip(*np.nonzero(fa))]


def measure(embs: dict, rules: dict, splits: list, near_same=None, keep_pairs=()) -> dict:
    """``embs``: engine -> group -> (embeddings, found); ``rules``: name -> dict(engine, metric, threshold, margin,
    rule text, own: None or fn(split index, group, enrolled embeddings) -> own thresholds); ``near_same``: group ->
    (n, n) bool, pairs of photos that are probably one person (counted apart, the same pairs for every rule).
    For the rules named in ``keep_pairs``, ``pairs`` lists every false accept as (group, split, stranger photo,
    enrolled photo, score), photo indices into the group's chips (to look at, :func:`pairs_sheet`)."""
    out = {}
    for name, r in rules.items():
        per = {}
        for g in splits[0]:
            e, ok, *tmpl = embs[r["engine"]][g]
            # photos without a face are never indexed below; enrolled photos as the engine stores them
            sim = door_similarity(e, tmpl[0], ok) if tmpl else similarity(e, ok, r["metric"])
            t = tmpl[0] if tmpl else e
            parts = []
            pairs = out.setdefault("_pairs", {}).setdefault(name, []) if name in keep_pairs else None
            for k, sp in enumerate(splits):
                _, gal, probe = (idx[ok[idx]] for idx in sp[g])      # photos without a face are left out
                own = r["own"](k, g, l2_normalise(t[gal])) if r.get("own") else None
                crowd = r["crowd"](k, l2_normalise(e[probe])) if r.get("crowd") else None
                ns = near_same[g][np.ix_(probe, gal)] if near_same else None
                parts.append(group_rates(sim[np.ix_(probe, gal)], r["threshold"], r["margin"], own, ns, crowd))
                if pairs is not None:
                    pairs += [(g, k, int(probe[a]), int(gal[b]), sc) for a, b, sc in
                              false_accept_pairs(sim[np.ix_(probe, gal)], r["threshold"], r["margin"], own, crowd)]
            per[g] = {**summed(parts), "faces": int(ok.sum()), "images": len(ok)}
        rates = [v["far"] for v in per.values()]
        worst, best = max(rates), min(rates)
        clean = [v["far_without_near_same"] for v in per.values()]
        out[name] = {"worst_best_without_near_same": max(clean) / min(clean) if min(clean) > 0 else
                     (float("inf") if max(clean) > 0 else 1.0),
                     "rule": r["rule"], "threshold": r["threshold"], "margin": r["margin"], "groups": per,
                     "lfw_open_set": r.get("lfw"),
                     "worst_best_ratio": (worst / best) if best > 0 else (float("inf") if worst > 0 else 1.0)}
    return out


def pairs_sheet(chips: dict, pairs: list, path: Path, size: int = 96, per_row: int = 4) -> None:
    """A contact sheet of false-accept pairs (stranger photo beside the enrolled photo, score and group written
    under them), to check by eye which are two photos of one person. Written where asked, never into the repo
    (UTKFace: evaluation only)."""
    import cv2

    tiles = []
    for g, k, i, j, sc in pairs:
        pair = np.concatenate([cv2.resize(chips[g][i][1], (size, size)), cv2.resize(chips[g][j][1], (size, size))], 1)
        label = np.full((18, 2 * size, 3), 255, np.uint8)
        cv2.putText(label, f"{g} split {k + 1}: {sc:.3f}", (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        tiles.append(np.concatenate([pair, label], 0))
    if not tiles:
        return
    tiles += [np.full_like(tiles[0], 255)] * ((-len(tiles)) % per_row)
    grid = np.concatenate([np.concatenate(tiles[r:r + per_row], 1) for r in range(0, len(tiles), per_row)], 0)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def md_section(res: dict) -> str:
    groups = list(next(iter(res["engines"].values()))["groups"])
    near = res.get("near_same")
    L = ["<!-- bench-fair -->", "## False accepts per demographic group (`make bench-fair`)", "",
         f"Measured {res['date']} on `{res['data']}` (UTKFace chips of adults, evaluation only), {res['splits']} random "
         f"splits summed. Each split takes, per group, {res['cohort_per']} photos for the balanced cohort (built with "
         f"`doorface cohort build`, used only by the rows that say so), enrolls {res['enrolled']} people from one "
         f"photo each and presents {res['strangers']} other photos of the same group as strangers; every row is "
         "measured on the same people. Per comparison: (stranger, enrolled) pairs at or past the person's threshold "
         "(for the rules that take the margin over the cohort's strangers too, also beating the stranger's closest "
         "cohort faces by the margin, as a gallery of one person would) / all pairs (the count behind each rate in "
         "brackets). Let in: stranger photos the door's single-image rule "
         "(threshold and margin) accepts. UTKFace has no identity labels and repeats people (celebrities, several "
         "photos each, most of all among its Asian photos), so these rates are upper bounds"
         + (f"; the false accepts on pairs the default model scores at or above {near} are also counted apart as "
            "\"one person\" (samples of such pairs, looked at by eye in every group, showed the same person twice; "
            "most pairs at 0.955-0.965 were two people), and the last ratio leaves them out" if near else "")
         + f". LFW open set: the same rule on {res.get('lfw_note', 'LFW')} (strangers let in / enrolled photos "
         "rejected).", "",
         "| rule | " + " | ".join(f"{g} per comparison" for g in groups) + " | worst/best | "
         + " | ".join(f"{g} let in" for g in groups) + " | LFW open set: strangers / enrolled rejected | "
         "worst/best without \"one person\" |",
         "|---|" + "---|" * (2 * len(groups) + 3)]

    def ratio(x):
        return "inf" if x == float("inf") else f"{x:.1f}"

    for name, e in res["engines"].items():
        cells = [f"{1e4 * v['far']:.2f}e-4 ({v['false_accepts']}/{v['comparisons']}"
                 + (f"; {v['near_same']} one person)" if near else ")") for v in e["groups"].values()]
        lets = [f"{100 * v['let_in_rate']:.2f}% ({v['strangers_let_in']})" for v in e["groups"].values()]
        o = e.get("lfw_open_set")
        lfw = (f"{100 * o['false_accept_rate']:.2f}% / {100 * o['false_reject_rate']:.1f}%") if o else "-"
        L.append(f"| **{name}**: {e['rule']} | " + " | ".join(cells) + f" | {ratio(e['worst_best_ratio'])} | "
                 + " | ".join(lets) + f" | {lfw} | {ratio(e['worst_best_without_near_same']) if near else '-'} |")
    faces = "; ".join(f"{name}: " + ", ".join(f"{g} {v['faces']}/{v['images']}" for g, v in e["groups"].items())
                      for name, e in res["engines"].items() if "cohort" not in name and "same reject" not in name)
    L += ["", f"Faces found: {faces}.", "", f"![per-group false accepts]({res['plot']})", "", "<!-- /bench-fair -->"]
    return "\n".join(L)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["engines"])
    groups = list(res["engines"][names[0]]["groups"])
    fig, ax = plt.subplots(figsize=(11, 4.4))
    w = 0.8 / len(names)
    floor = 0.5 / max(v["comparisons"] for e in res["engines"].values() for v in e["groups"].values())
    for i, name in enumerate(names):
        vals = [max(res["engines"][name]["groups"][g]["far"], floor) for g in groups]
        ax.bar(np.arange(len(groups)) + i * w - 0.4 + w / 2, vals, w, label=name)
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_yscale("log"), ax.set_ylabel("false accepts per comparison (log; 0 drawn at the floor)")
    ax.axhline(1e-4, color="k", lw=0.8, ls="--", label="1e-4")
    ax.set_title("Stranger vs enrolled person, same group (UTKFace)"), ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)


def build_balanced(chips: dict, split: dict, model: str, detector: str, workdir: Path):
    """The balanced cohort of one split, built the way an installer would: the split's cohort photos written to a
    folder (deleted afterwards) and `doorface cohort build --images` on it, in a scratch state dir."""
    import shutil

    import cv2

    from bench.common import doorface
    from edge.people import cohort as co

    src, state = workdir / "faces", workdir / "state"
    shutil.rmtree(workdir, ignore_errors=True)
    for g, (cohort_idx, _, _) in split.items():
        (src / g).mkdir(parents=True)
        for i in cohort_idx:
            cv2.imwrite(str(src / g / chips[g][i][0]), cv2.cvtColor(chips[g][i][1], cv2.COLOR_RGB2BGR))
    empty = workdir / "empty.toml"
    empty.write_text("")
    code, _, err = doorface(["cohort", "build", "--images", src, "--source", "utkface-dev, one half (bench only)",
                             "--config", empty, "--state-dir", state, "--model", model])
    if code != 0:
        raise RuntimeError(f"doorface cohort build failed ({code}): {err.strip()}")
    cohort = co.load(state / co.FILENAME)
    shutil.rmtree(workdir, ignore_errors=True)      # nothing derived from UTKFace outlives the run
    return cohort


class PotCohort:
    """The per-person calibration as it was before the FairFace cohort (k = 20 peaks over threshold against LFW),
    to measure before and after in one run."""

    def __init__(self, embeddings):
        self.embeddings = embeddings

    def threshold(self, templates) -> float:
        from edge.people.cohort import calibrate_pot

        return calibrate_pot(templates, self.embeddings)


def lfw_pot_cohort(args, model: str):
    """Every LFW photo of people outside ``args.folds`` through ``model`` (the former shipped cohort), or None."""
    from convert.cohort import embed_lfw
    from train.data import fold_pairs

    if "dlib" not in Path(model).name:      # only the default model's cohort changed
        return None
    emb, _, _, _ = embed_lfw(args.lfw, model, args.detector, set(fold_pairs(args.pairs, args.folds)[1]))
    return PotCohort(l2_normalise(emb))


def same_reject_threshold(sim, persons, margin: float, target: float, lo: float, hi: float = 1.0) -> float:
    """The global threshold whose LFW open-set enrolled-reject rate equals ``target`` (bisection)."""
    from bench.accuracy import open_set_runs

    for _ in range(14):
        mid = (lo + hi) / 2
        if open_set_runs(sim, persons, mid, margin)["false_reject_rate"] < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fair", description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/utkface-dev.tgz")
    ap.add_argument("--model", action="append", help="LABEL=PATH, repeatable (default: the two shipped models)")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--cohort-per", type=int, default=200, help="photos per group for the balanced cohort")
    ap.add_argument("--enrolled", type=int, default=20)
    ap.add_argument("--strangers", type=int, default=380)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--folds", default="1,2", help="LFW folds of the open-set column (outside the shipped cohort)")
    ap.add_argument("--no-dlib", action="store_true")
    ap.add_argument("--tail-z", default="",
                    help="comma-separated z values: also measure the shipped cohort's rule with these instead of the "
                         "code's (what a stricter or looser own target would cost; never fitted on UTKFace)")
    ap.add_argument("--pairs-sheet", help="write the false-accept pairs of the default model's balanced-cohort rule "
                                          "to this image, to look at by eye (outside the repo: UTKFace is for "
                                          "evaluation only)")
    ap.add_argument("--out", default="benchmarks")
    ap.add_argument("--md", help="also write the table into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    import datetime as dt
    import tempfile

    from tqdm import tqdm

    from bench import accuracy as A
    from bench.model import update_md
    from edge.people import cohort as co
    from edge.config import defaults
    from edge.vision.sidecar import operating_point, read_sidecar, stranger_neighbours
    from train.data import fold_pairs

    if not Path(args.data).exists():
        print(f"bench.fair: {args.data} not found (../shared/data/utkface-dev.tgz beside the repo)", file=sys.stderr)
        return 2
    chips = load_chips(args.data)
    splits = splits_of({g: len(v) for g, v in chips.items()}, args.cohort_per, args.enrolled, args.strangers,
                       args.splits)
    lfw = None
    if Path(args.lfw).exists() and Path(args.pairs).exists():
        _, people = fold_pairs(args.pairs, args.folds)
        _, persons, lfw_images = A.load_images(args.lfw, people)
        lfw = (persons, lfw_images)
    embs, rules = {}, {}
    for label, path in (parse_model(m) for m in (args.model or DEFAULT_MODELS)):
        meta = read_sidecar(path)
        thr, margin, far = operating_point(meta, defaults()["match"])
        nk = stranger_neighbours(meta, defaults()["match"])
        embs[label] = {g: embed_doorface([im for _, im in items], path, args.detector)
                       for g, items in tqdm(chips.items(), desc=f"{label} utkface", file=sys.stderr)}
        shipped = co.load(co.shipped_path(path)) if co.shipped_path(path).exists() else None
        balanced = [build_balanced(chips, sp, path, args.detector, Path(tempfile.mkdtemp(prefix="doorface-fair-")))
                    for sp in tqdm(splits, desc=f"{label} cohort build", file=sys.stderr)]
        sim = persons = emb_l = tmpl_l = None
        if lfw is not None:
            emb_l, ok_l, tmpl_l = A.embed_doorface(lfw[1], path, args.detector, progress=None, templates=True)
            persons, sim = lfw[0], A.door_similarity(emb_l, tmpl_l, ok_l)
            emb_l, tmpl_l = A.l2_normalise(emb_l), A.l2_normalise(tmpl_l)

        def person_threshold(cohort, T, z=None):
            """The cohort's threshold for templates ``T``; with ``z``, a what-if z instead of the code's."""
            return cohort.threshold(T) if z is None else co.calibrate(T, cohort.embeddings, z)

        def own_fn(cohort, z=None):
            return lambda k, g, E: np.array([person_threshold(cohort, E[i:i + 1], z) for i in range(len(E))])

        def crowd_fn(cohort):
            return (lambda k, E, n=nk: co.crowding(E, cohort.embeddings, n)) if nk else None

        def lfw_open(threshold, cohort=None, z=None):
            if sim is None:
                return None
            own = (lambda idx: person_threshold(cohort, tmpl_l[idx], z)) if cohort is not None else None
            crowd = co.crowding(emb_l, cohort.embeddings, nk) if cohort is not None and nk else None
            return A.open_set_runs(sim, persons, threshold, margin, own=own, crowd=crowd)

        base = f"cosine >= {thr:.3f} (FAR {far}), margin {margin:g}"
        over = f", the margin also over the face's {nk} closest strangers in that cohort" if nk else ""
        rules[label] = {"engine": label, "metric": "cosine", "threshold": thr, "margin": margin,
                        "rule": f"global {base}", "lfw": lfw_open(thr)}
        if shipped is not None:
            o = lfw_open(thr, shipped)
            rules[f"{label} + shipped cohort"] = {
                "engine": label, "metric": "cosine", "threshold": thr, "margin": margin, "own": own_fn(shipped),
                "crowd": crowd_fn(shipped),
                "rule": f"own threshold against the shipped cohort ({shipped.meta.get('name')}, "
                        f"{shipped.meta['count']} faces; FAR {shipped.far:g}, normal tail z {shipped.z}), never below {base}"
                        f"{over}",
                "lfw": o}
            if o is not None:
                same = same_reject_threshold(sim, persons, margin, o["false_reject_rate"], thr)
                rules[f"{label}, same reject"] = {
                    "engine": label, "metric": "cosine", "threshold": same, "margin": margin,
                    "rule": f"global cosine >= {same:.4f}, margin {margin:g}: the global threshold that rejects as "
                            "many enrolled LFW photos as the shipped-cohort rule", "lfw": lfw_open(same)}
        for z in (float(v) for v in args.tail_z.split(",") if v.strip()) if shipped is not None else ():
            rules[f"{label} + shipped cohort, z={z:g}"] = {
                "engine": label, "metric": "cosine", "threshold": thr, "margin": margin, "own": own_fn(shipped, z),
                "crowd": crowd_fn(shipped),
                "rule": f"as the shipped-cohort row, with z {z:g} instead of {co.TAIL_Z} (`--tail-z`: a what-if, "
                        "not the door's rule; z is fitted on LFW only)", "lfw": lfw_open(thr, shipped, z)}
        before = lfw_pot_cohort(args, path) if lfw is not None else None
        if before is not None:
            rules[f"{label} + LFW cohort, k=20 tail (before)"] = {
                "engine": label, "metric": "cosine", "threshold": thr, "margin": margin, "own": own_fn(before),
                "crowd": crowd_fn(before),
                "rule": f"own threshold as the door set it before FairFace: against {len(before.embeddings)} LFW "
                        f"photos of people outside folds {args.folds}, the 20 highest scores extrapolated to FAR "
                        f"1e-4 (peaks over threshold), never below {base}{over}", "lfw": lfw_open(thr, before)}
        rules[f"{label} + balanced cohort"] = {
            "engine": label, "metric": "cosine", "threshold": thr, "margin": margin,
            "own": lambda k, g, E, b=balanced: own_fn(b[k])(k, g, E),
            "crowd": (lambda k, E, b=balanced, n=nk: co.crowding(E, b[k].embeddings, n)) if nk else None,
            "rule": f"own threshold against a balanced cohort: `doorface cohort build` on {args.cohort_per} other "
                    f"photos per group of the split ({balanced[0].meta['count']} faces in split 1), never below "
                    f"{base}{over}", "lfw": lfw_open(thr, balanced[0])}
    if have_dlib() and not args.no_dlib:
        embs["face_recognition"] = {g: embed_face_recognition([im for _, im in items])
                                    for g, items in tqdm(chips.items(), desc="face_recognition", file=sys.stderr)}
        for tol in (0.6, 0.45):
            rules[f"face_recognition {tol}"] = {"engine": "face_recognition", "metric": "euclidean",
                                                "threshold": -tol, "margin": 0.0, "rule": f"distance <= {tol}"}
    first = next(iter(embs))        # the default model marks the pairs that are probably one person
    near_same = {}
    for g, (e, ok, *_) in embs[first].items():
        e = A.l2_normalise(e)
        near_same[g] = (e @ e.T >= NEAR_SAME) & ok[:, None] & ok[None]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"date": dt.date.today().isoformat(), "data": args.data, "cohort_per": args.cohort_per,
           "near_same": NEAR_SAME, "near_same_model": first,
           "enrolled": args.enrolled, "strangers": args.strangers, "splits": args.splits,
           "lfw_note": f"LFW folds {args.folds} (`bench.accuracy.open_set`, 3 enrolments)",
           "engines": measure(embs, rules, splits, near_same, keep_pairs=(f"{first} + balanced cohort",)),
           "plot": "fair.png"}
    pairs = res["engines"].pop("_pairs", {}).get(f"{first} + balanced cohort", [])
    if args.pairs_sheet:
        pairs_sheet(chips, sorted(pairs, key=lambda p: (p[0], -p[4])), Path(args.pairs_sheet))
        print(f"{len(pairs)} false-accept pairs of {first} + balanced cohort in {args.pairs_sheet}")
    plot(res, out / "fair.png")
    if args.md:
        res["plot"] = str(Path(args.out) / "fair.png")
        update_md(Path(args.md), md_section(res), "<!-- bench-fair -->", "<!-- /bench-fair -->")
    (out / "fair.json").write_text(json.dumps(res, indent=1, default=float))
    print(md_section(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
