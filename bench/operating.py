"""Choose a door's operating point from open-set figures: stranger accepts and enrolled rejects for each of the
model's FAR thresholds x a range of margins x how many cohort strangers the margin is also taken over, on LFW folds
the thresholds were not fitted on.

    python -m bench.operating --model models/doorface-dlib-int8.tflite --folds 3,4,5 [--seeds 3]

The protocol is ``bench.accuracy.open_set`` (half the people with 2+ images enrolled from 1-3 images, single-image
decisions), repeated over ``--seeds`` random enrolments; counts are summed over them. Every rule is the door's
default (``[match] calibration = "cohort"``): each enrolled person's own threshold (:mod:`edge.people.cohort`) and, for
``neighbours`` > 0, the margin taken over the face's closest strangers too (:func:`edge.people.cohort.crowding`). The
cohort is the one shipped beside the model (``--cohort shipped``, the default: FairFace for the default model, no
LFW person in it) or every LFW photo of people outside ``--folds`` (``--cohort lfw``), labels unused. Enrolled photos are scored as the door stores them (the jittered template of
:mod:`edge.vision.jitter`), the faces at the door as they come. The chosen rule is the loosest (fewest enrolled rejects)
letting in at most ``--max-far`` of strangers' photos. Record it in the sidecar with ``python -m convert.decision
MODEL --far-target F --min-margin M --stranger-neighbours K --note ...``.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

MARGINS = (0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04)
NEIGHBOURS = (0, 3, 5, 10)
FARS = ("1e-3", "1e-4", "1e-5")     # those the model's sidecar has


def sweep(sim, persons, thresholds: dict, own=None, crowds=None, margins=MARGINS, seeds: int = 3,
          progress=None) -> list:
    """One row per (FAR, neighbours, margin). ``crowds``: neighbours -> per-image crowding (None for 0)."""
    from bench.accuracy import open_set_runs

    crowds = crowds or {0: None}
    grid = [(far, k, m) for far in thresholds for k in crowds for m in margins]
    rows = []
    for far, k, margin in (progress(grid) if progress else grid):
        o = open_set_runs(sim, persons, thresholds[far], margin, seeds, own=own, crowd=crowds[k])
        rows.append({"far_target": far, "threshold": float(thresholds[far]), "neighbours": k, "margin": margin,
                     **{key: o[key] for key in ("strangers_accepted", "stranger_probes", "false_accept_rate",
                                                "false_reject_rate", "genuine_probes")}})
    return rows


def household(sim, persons, rules: dict, sizes=(1, 2, 4), draws: int = 300, seed: int = 0) -> list:
    """A household instead of hundreds enrolled: ``size`` people, each from one photo, ``draws`` times; every photo
    of everyone else is a stranger, the enrolled people's other photos are genuine. ``rules``: name ->
    (threshold, margin, own(image indices) -> threshold or None, per-image crowding or None). With few people there
    is hardly a second person for the margin, which is where the strangers count. Counts summed over the draws."""
    rng = np.random.default_rng(seed)
    multi = [p for p in sorted(set(persons)) if (persons == p).sum() >= 2]
    rows = np.arange(len(persons))
    out = []
    for size in sizes:
        cnt = {name: [0, 0, 0, 0] for name in rules}
        for _ in range(draws):
            hh = rng.choice(multi, size, replace=False)
            gal = [int(rng.choice(np.flatnonzero(persons == p))) for p in hh]
            G = sim[:, gal]
            order = np.argsort(-G, axis=1)
            best = G[rows, order[:, 0]]
            second = G[rows, order[:, 1]] if size > 1 else np.full(len(rows), -np.inf)
            who = np.asarray(hh)[order[:, 0]]
            stranger = ~np.isin(persons, hh)
            genuine = ~stranger & ~np.isin(rows, gal)
            for name, (thr, margin, own, crowd) in rules.items():
                person_thr = np.array([own([g]) for g in gal])[order[:, 0]] if own else -np.inf
                closest = np.maximum(second, crowd) if crowd is not None else second
                accept = (best >= np.maximum(thr, person_thr)) & (best - closest >= margin) & np.isfinite(best)
                c = cnt[name]
                c[0] += int((accept & stranger).sum())
                c[1] += int(stranger.sum())
                c[2] += int((accept & genuine & (who == persons)).sum())
                c[3] += int(genuine.sum())
        out += [{"household": size, "rule": name, "strangers_accepted": c[0], "stranger_photos": c[1],
                 "genuine_accepted": c[2], "genuine_photos": c[3]} for name, c in cnt.items()]
    return out


def choose(rows: list, max_far: float):
    """The loosest rule (fewest enrolled rejects) with at most ``max_far`` of strangers accepted, or None."""
    ok = [r for r in rows if r["false_accept_rate"] <= max_far]
    return min(ok, key=lambda r: (r["false_reject_rate"], r["false_accept_rate"])) if ok else None


def main(argv=None) -> int:
    from bench import accuracy as A

    ap = A.lfw_arguments(argparse.ArgumentParser(prog="python -m bench.operating",
                                                 description=__doc__.splitlines()[0]))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-far", type=float, default=1e-3, help="strangers' photos the chosen rule may let in")
    ap.add_argument("--baseline", help="FAR,MARGIN,STRANGERS of a rule to compare the chosen one with in "
                                       "households, e.g. 1e-5,0.03,0 (the default model's rule before strangers)")
    ap.add_argument("--no-jitter", action="store_true",
                    help="score enrolled photos by their plain embedding, as the door did before edge.vision.jitter")
    ap.add_argument("--cohort", default="shipped", choices=("shipped", "lfw"),
                    help="the cohort of the per-person thresholds and the margin's strangers: the one shipped beside "
                         "the model (as the door uses it), or every LFW photo of people outside --folds")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    from bench.common import progress
    from edge.people import cohort as co
    from edge.vision.sidecar import model_decision, read_sidecar

    emb, ok, persons, cohort, tmpl = A.folds_and_cohort(args, progress("embed"), templates=not args.no_jitter)
    tmpl = emb if args.no_jitter else tmpl
    if args.cohort == "shipped":
        cohort = co.load(co.shipped_path(args.model)).embeddings
    e, t = A.l2_normalise(emb), A.l2_normalise(tmpl)
    sim = A.door_similarity(emb, tmpl, ok)     # enrolled photos as the door stores them (edge.vision.jitter)
    meta = read_sidecar(args.model)
    thresholds = {far: meta["thresholds"][f"far_{far}"] for far in FARS if f"far_{far}" in meta["thresholds"]}
    crowds = {k: (co.crowding(e, cohort, k) if k else None) for k in NEIGHBOURS}
    own = lambda idx: co.calibrate(t[idx], cohort)   # noqa: E731 (the door's estimator: edge.people.cohort)
    rows = sweep(sim, persons, thresholds, own, crowds, seeds=args.seeds, progress=progress("rules"))
    print(f"{len(persons)} images of {len(set(persons))} people (folds {args.folds}), {int(ok.sum())} faces found; "
          f"cohort: {len(cohort)} faces ({args.cohort}); {args.seeds} enrolments; every rule with "
          f"per-person thresholds")
    print(f"{'FAR':>5} {'threshold':>9} {'strangers':>9} {'margin':>6} {'stranger accept':>22} "
          f"{'enrolled reject':>15}")
    for r in rows:
        print(f"{r['far_target']:>5} {r['threshold']:>9.4f} {r['neighbours']:>9} {r['margin']:>6.3f} "
              f"{100 * r['false_accept_rate']:>8.3f}% ({r['strangers_accepted']:>4}/{r['stranger_probes']}) "
              f"{100 * r['false_reject_rate']:>14.2f}%")
    best = choose(rows, args.max_far)
    if best:
        print(f"chosen (the loosest rule letting in at most {100 * args.max_far:g}% of strangers' photos): FAR "
              f"{best['far_target']}, margin {best['margin']:g} over the second person and the {best['neighbours']} "
              f"closest strangers: {100 * best['false_accept_rate']:.3f}% ({best['strangers_accepted']}/"
              f"{best['stranger_probes']}) let in, {100 * best['false_reject_rate']:.1f}% rejected")
    cur = model_decision(meta)
    thr, k = meta["thresholds"][f"far_{cur['far_target']}"], int(cur["stranger_neighbours"])
    now = f"sidecar's rule (FAR {cur['far_target']}, margin {cur['min_margin']:g}, {k} strangers)"
    rules = {now: (thr, cur["min_margin"], own, co.crowding(e, cohort, k) if k else None)}
    if k:
        rules["the same, second person only"] = (thr, cur["min_margin"], own, None)
    if args.baseline:
        far, margin, kb = args.baseline.split(",")
        rules[f"FAR {far}, margin {margin}, {kb} strangers"] = (
            meta["thresholds"][f"far_{far}"], float(margin), own, co.crowding(e, cohort, int(kb)) if int(kb) else None)
    homes = household(sim, persons, rules)
    print("households (1 photo each, 300 draws; every other photo a stranger):")
    for h in homes:
        print(f"  {h['household']} enrolled, {h['rule']:<62} strangers let in {h['strangers_accepted']:>3}/"
              f"{h['stranger_photos']} ({1e4 * h['strangers_accepted'] / h['stranger_photos']:.2f}e-4), "
              f"enrolled photos accepted {100 * h['genuine_accepted'] / max(h['genuine_photos'], 1):.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "folds": args.folds, "rows": rows, "chosen": best, "households": homes},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
