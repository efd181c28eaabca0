"""`make bench`: doorface vs face_recognition (dlib) on the same images in one run -> BENCHMARKS.md + plots.

    python -m bench [--out benchmarks] [--md BENCHMARKS.md] [--lfw ARCHIVE --pairs PAIRS --folds 1,2] [--quick]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import DEFAULT_MODELS, have_dlib, parse_model, progress


def run_speed(engine, threads, frames_path, model, repeat):
    # dlib and NumPy use OpenMP/BLAS threads; doorface's interpreter threads are set by --threads, and its
    # 128-D matching is faster on one BLAS thread (as the service unit sets).
    blas = str(threads) if engine == "dlib" else "1"
    env = dict(os.environ, OMP_NUM_THREADS=blas, OPENBLAS_NUM_THREADS=blas, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "bench.speed", engine, "--threads", str(threads), "--frames",
                        str(frames_path), "--model", model, "--repeat", str(repeat)],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(f"bench.speed {engine} failed: {r.stderr[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def scaling(sizes=(10, 100, 1000, 10000), dim=128, queries=200):
    from edge.people.matcher import TemplateIndex

    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        g = rng.normal(size=(n, dim)).astype(np.float32)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        idx = TemplateIndex(g, [f"p{i // 5}" for i in range(n)])
        q = rng.normal(size=(queries, dim)).astype(np.float32)
        ts = []
        for v in q:
            t = time.perf_counter()
            idx.match(v)
            ts.append(time.perf_counter() - t)
        out.append({"templates": n, "match_ms": float(np.median(ts) * 1000),
                    "memory_kb": (idx.embeddings.nbytes + idx.row_person.nbytes) / 1024})
    return out


def versions() -> dict:
    import cv2

    v = {"python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__}
    for mod in ("ai_edge_litert", "dlib", "face_recognition"):
        try:
            from importlib.metadata import version

            v[mod] = version({"ai_edge_litert": "ai-edge-litert", "dlib": "dlib-bin"}.get(mod, mod))
        except Exception:
            pass
    return v


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plots(res, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if res.get("accuracy"):
        fig, ax = plt.subplots(figsize=(6.5, 5))
        for name, rep in res["accuracy"]["_reports"].items():
            far, tar = rep["_roc"]
            ok = far > 0
            ax.plot(far[ok], tar[ok], label=f"{name}: acc {100 * rep['accuracy']:.1f}%, "
                                             f"TAR@1e-3 {100 * rep['at_far']['0.001']['tar']:.1f}%")
        ax.set_xscale("log"), ax.set_xlim(1e-5, 1), ax.set_ylim(0, 1.01)
        ax.set_xlabel("false accept rate"), ax.set_ylabel("true accept rate"), ax.grid(alpha=0.3)
        ax.set_title("ROC, held-out LFW identities (all pairs), same images")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout(), fig.savefig(out / "roc.png", dpi=110), plt.close(fig)
    sp = res["speed"]
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{s['engine']}\n{s['threads']} thr" for s in sp]
    bottom = np.zeros(len(sp))
    for stage in ("detect", "align", "embed", "match"):
        vals = np.array([s["ms"][stage] for s in sp])
        ax.bar(labels, vals, bottom=bottom, label=stage)
        bottom += vals
    ax.set_yscale("log"), ax.set_ylabel("ms per 640x480 frame (log)"), ax.legend(), ax.grid(alpha=0.3, axis="y")
    ax.set_title("Per-stage latency, one face per frame")
    fig.tight_layout(), fig.savefig(out / "speed.png", dpi=110), plt.close(fig)
    sc = res["scaling"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s["templates"] for s in sc], [s["match_ms"] for s in sc], marker="o", label="match ms")
    ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("gallery templates"), ax.set_ylabel("ms per match")
    ax2 = ax.twinx()
    ax2.plot([s["templates"] for s in sc], [s["memory_kb"] for s in sc], marker="s", color="C1", label="memory KB")
    ax2.set_yscale("log"), ax2.set_ylabel("gallery memory (KB)")
    ax.set_title("Matching vs gallery size"), ax.grid(alpha=0.3)
    fig.tight_layout(), fig.savefig(out / "scaling.png", dpi=110), plt.close(fig)


def write_md(res, md: Path, out: Path):
    rel = os.path.relpath(out, md.parent)
    sp = {(x["engine"], x["threads"]): x for x in res["speed"]}
    base = "face_recognition (dlib)"
    labels = list(res["models"])
    acc = res.get("accuracy")
    L = ["# doorface benchmarks", "",
         f"Measured {res['date']} on {res['machine']} ({os.cpu_count()} cores), one run of `make bench` "
         f"(`python -m bench`). Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".", "",
         "## Summary", "", "Ratios are against face_recognition measured in the same run.", "",
         "| | " + " | ".join(labels) + f" | {base} |", "|---|" + "---|" * (len(labels) + 1)]

    def row(name, cell, base_cell=""):
        L.append(f"| {name} | " + " | ".join(cell(lab) for lab in labels) + f" | {base_cell} |")

    b1 = {th: sp.get((base, th)) for th in (1, 2)}
    for th in (1, 2):
        b = b1[th]
        if not b or not all((lab, th) in sp for lab in labels):
            continue
        enc = lambda lab: sp[(lab, th)]["ms"]["embed"] + sp[(lab, th)]["ms"]["align"]  # noqa: E731
        row(f"per-face encoding, {th} thread(s)",
            lambda lab: f"{enc(lab):.1f} ms ({b['ms']['embed'] / enc(lab):.0f}x faster)", f"{b['ms']['embed']:.1f} ms")
        row(f"whole loop, {th} thread(s)",
            lambda lab: f"{sp[(lab, th)]['fps']:.1f} FPS ({sp[(lab, th)]['fps'] / b['fps']:.0f}x)", f"{b['fps']:.2f} FPS")
    if all((lab, 1) in sp for lab in labels):
        b = b1[1] or {}
        row("startup to ready", lambda lab: f"{sp[(lab, 1)]['startup_s']:.2f} s",
            f"{b['startup_s']:.2f} s" if b else "")
        row("peak RSS", lambda lab: f"{sp[(lab, 1)]['peak_rss_mb']:.0f} MB", f"{b['peak_rss_mb']:.0f} MB" if b else "")
    if acc:
        r, o = acc["models"], acc["open_set"]
        if all(lab in r for lab in labels):
            bl = r.get(base)
            row("LFW held-out pairs accuracy", lambda lab: f"{100 * r[lab]['accuracy']:.2f}%",
                f"{100 * bl['accuracy']:.2f}%" if bl else "")
            row("TAR at FAR 1e-3 (all pairs)", lambda lab: f"{100 * r[lab]['at_far']['0.001']['tar']:.2f}%",
                f"{100 * bl['at_far']['0.001']['tar']:.2f}%" if bl else "")
            row("TAR at FAR 1e-4 (all pairs)", lambda lab: f"{100 * r[lab]['at_far']['0.0001']['tar']:.2f}%",
                f"{100 * bl['at_far']['0.0001']['tar']:.2f}%" if bl else "")
            bo = o.get(base)
            door = {lab: o.get(f"{lab} + cohort", o[lab]) for lab in labels}   # the door's default rule
            row("open set, default rule: strangers let in", lambda lab: f"{100 * door[lab]['false_accept_rate']:.2f}%",
                f"{100 * bo['false_accept_rate']:.2f}%" if bo else "")
            row("open set, default rule: enrolled rejected",
                lambda lab: f"{100 * door[lab]['false_reject_rate']:.2f}%",
                f"{100 * bo['false_reject_rate']:.2f}%" if bo else "")
    row("model size", lambda lab: f"{res['sizes'].get(lab, 0) / 1024:.0f} KB",
        f"{res['sizes'][base] / 1024:.0f} KB (ResNet + 5-point predictor)" if base in res["sizes"] else "")
    L += ["", "## Speed (640x480 frames, one face)", "",
          "Median ms per stage; whole loop includes everything per frame. dlib's 'embed' includes its landmark "
          "detection and chip extraction (its alignment).", "",
          "| engine | threads | detect | align | embed | match | loop FPS | startup s | peak RSS MB |",
          "|---|---|---|---|---|---|---|---|---|"]
    for s in res["speed"]:
        m = s["ms"]
        L.append(f"| {s['engine']} | {s['threads']} | {m['detect']:.2f} | {m['align']:.2f} | {m['embed']:.2f} | "
                 f"{m['match']:.3f} | {s['fps']:.1f} | {s['startup_s']:.2f} | {s['peak_rss_mb']:.0f} |")
    L += ["", f"![per-stage latency]({rel}/speed.png)", ""]
    if acc:
        L += ["## Accuracy (LFW pairs protocol, identities held out from training)", "",
              f"Folds {acc['folds']} of `{acc['pairs_file']}`: {acc['images']} images of {acc['identities']} people "
              "never seen in training, each engine running its own detector on the same raw images. Accuracy: "
              "LFW protocol rule (each fold's threshold chosen on the other folds) on the folds' pairs; TAR at FAR on every pair of "
              "those images.", "",
              "| engine | faces found | accuracy | AUC | EER | TAR@1e-3 | TAR@1e-4 |", "|---|---|---|---|---|---|---|"]
        for name, rep in acc["models"].items():
            a = rep["at_far"]
            L.append(f"| {name} | {rep['faces_found']}/{acc['images']} | {100 * rep['accuracy']:.2f}% ± "
                     f"{100 * rep['accuracy_std']:.2f} | {rep['auc']:.4f} | {100 * rep['eer']:.2f}% | "
                     f"{100 * a['0.001']['tar']:.2f}% | {100 * a['0.0001']['tar']:.2f}% |")
        L += ["", f"![ROC]({rel}/roc.png)", "", "## Open-set door scenario", "",
              "Half of the held-out people with 2+ images are enrolled from 1-3 images each; probes are their other "
              "images and every image of the people never enrolled. Single-image decisions (the daemon further "
              "requires 3 agreeing frames of 5). Three random enrolments, counts summed (probes below are the sums). "
              "doorface's enrolled photos are stored as the door stores them: the mean embedding of the photo and "
              "6 slightly moved copies (`edge.vision.jitter`); face_recognition's as its default (`num_jitters=1`).",
              "",
              "| engine | rule | enrolled | genuine probes | stranger probes | false accept (stranger let in) | "
              "false reject | misidentified |", "|---|---|---|---|---|---|---|---|"]
        for name, o in acc["open_set"].items():
            L.append(f"| {name} | {o['rule']} | {o['enrolled_people']} | {o['genuine_probes']} | {o['stranger_probes']} "
                     f"| {100 * o['false_accept_rate']:.2f}% ({o['strangers_accepted']}) | "
                     f"{100 * o['false_reject_rate']:.2f}% | {100 * o['misidentified_rate']:.2f}% |")
        L.append("")
    L += ["## Gallery scaling", "", "| templates | match ms | memory KB |", "|---|---|---|"]
    for s in res["scaling"]:
        L.append(f"| {s['templates']} | {s['match_ms']:.3f} | {s['memory_kb']:.0f} |")
    L += ["", f"![scaling]({rel}/scaling.png)", "", "Raw numbers: " + f"`{rel}/results.json`.", ""]
    model_json = out / "model.json"
    if model_json.exists():   # keep the last `make bench-model` table (its own run and date)
        from bench.model import md_section

        mj = json.loads(model_json.read_text())
        if isinstance(mj, dict):
            L += [md_section(mj["rows"], mj["date"]), ""]
    fair_json = out / "fair.json"
    if fair_json.exists():   # keep the last `make bench-fair` table (its own run and date)
        from bench.fair import md_section as fair_section

        fj = json.loads(fair_json.read_text())
        fj["plot"] = f"{rel}/fair.png"
        L += [fair_section(fj), ""]
    live_json = out / "liveness.json"
    if live_json.exists():   # and the last `make bench-liveness` section
        from bench.liveness import md_section as liveness_section

        L += [liveness_section(json.loads(live_json.read_text())), ""]
    # Keep what other benches and hands wrote after these sections (livecal, safety figures, mqtt, ...).
    end = "<!-- /bench-liveness -->"
    old = md.read_text() if md.exists() else ""
    tail = old.split(end, 1)[1].strip("\n") if end in old else ""
    md.write_text("\n".join(L) + ("\n" + tail + "\n" if tail else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks")
    ap.add_argument("--md", default="BENCHMARKS.md")
    ap.add_argument("--model", action="append",
                    help="LABEL=PATH or PATH of a doorface model, repeatable (default: the two shipped int8 models)")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--lfw", default="../shared/data/lfw/lfw-deepfunneled-train.tgz")
    ap.add_argument("--pairs", default="../shared/data/lfw/pairs-dev.txt")
    ap.add_argument("--folds", default="1,2")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny run: few frames, no LFW (for the tests)")
    ap.add_argument("--no-dlib", action="store_true")
    args = ap.parse_args(argv)
    from bench.frames import door_frames
    from edge.vision.assets import fetch_samples
    from edge.vision.detector import BlazeFaceDetector

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dlib = have_dlib() and not args.no_dlib
    if args.quick:
        args.frames, args.repeat = 3, 1
    frames = door_frames(fetch_samples(), BlazeFaceDetector(args.detector), args.frames)
    fpath = out / "frames.npz"
    np.savez(fpath, frames=np.stack(frames))
    res = {"date": dt.date.today().isoformat(), "machine": f"{cpu_name()}, {platform.machine()}",
           "versions": versions(), "speed": []}
    models = dict(parse_model(m) for m in (args.model or DEFAULT_MODELS))
    missing = [p for p in models.values() if not Path(p).is_file()]
    if missing:
        print(f"bench: model not found: {missing[0]}", file=sys.stderr)
        return 2
    engines = [(label, th) for label in models for th in (1, 2)] + ([("dlib", 1), ("dlib", 2)] if dlib else [])
    for engine, th in progress("speed")(engines):
        r = run_speed("dlib" if engine == "dlib" else "doorface", th, fpath, models.get(engine, ""), args.repeat)
        res["speed"].append({**r, "engine": "face_recognition (dlib)" if engine == "dlib" else engine})
    res["scaling"] = scaling((10, 100) if args.quick else (10, 100, 1000, 10000))
    sizes = {label: Path(p).stat().st_size for label, p in models.items()}
    res["models"] = models
    if dlib:
        from convert.dlib import dlib_model_paths

        p = dlib_model_paths()
        sizes["face_recognition (dlib)"] = os.path.getsize(p["resnet"]) + os.path.getsize(p["shape5"])
    res["sizes"] = sizes
    if not args.quick and Path(args.lfw).exists() and Path(args.pairs).exists():
        res["accuracy"] = accuracy(args, models, dlib)
    (out / "results.json").write_text(json.dumps({k: v for k, v in res.items() if k != "accuracy"} | (
        {"accuracy": {k: v for k, v in res["accuracy"].items() if not k.startswith("_")}} if res.get("accuracy")
        else {}), indent=1, default=float))
    plots(res, out)
    write_md(res, Path(args.md), out)
    print(f"wrote {args.md} and plots in {out}/")
    return 0


def accuracy(args, models: dict, dlib) -> dict:
    from bench import accuracy as A
    from edge.people import cohort
    from edge.config import defaults
    from edge.vision.sidecar import operating_point, read_sidecar, stranger_neighbours
    from train.data import fold_pairs, parse_folds

    pairs, people = fold_pairs(args.pairs, args.folds)
    folds0 = parse_folds(args.folds)
    keys, persons, images = A.load_images(args.lfw, people)
    reports, opens = {}, {}
    for name, model in models.items():
        emb, ok, tmpl = A.embed_doorface(images, model, args.detector, progress=progress(name), templates=True)
        sim = A.similarity(emb, ok, "cosine")
        rep = A.pairs_report(sim, keys, persons, pairs)
        rep["faces_found"] = int(ok.sum())
        reports[name] = rep
        meta, match = read_sidecar(model), defaults()["match"]
        thr, margin, far = operating_point(meta, match)
        door = A.door_similarity(emb, tmpl, ok)      # enrolled photos as the door stores them (edge.vision.jitter)
        o = A.open_set_runs(door, persons, thr, margin=margin)
        o["rule"] = (f"cosine >= {thr:.3f} (FAR {far}), margin {margin:g} over the second person: the global "
                     "threshold alone (calibration off)")
        opens[name] = o
        shipped = cohort.shipped_path(model)
        if shipped.exists():    # the door's default: each person's own threshold too (edge.people.cohort)
            c = cohort.load(shipped)
            e, t = A.l2_normalise(emb), A.l2_normalise(tmpl)
            k = stranger_neighbours(meta, match)
            crowd = cohort.crowding(e, c.embeddings, k) if k else None
            o = A.open_set_runs(door, persons, thr, margin=margin, own=lambda idx, c=c, t=t: c.threshold(t[idx]),
                                crowd=crowd)
            o["rule"] = (f"the door's default: as above, and each person's own threshold against the shipped cohort "
                         f"({c.meta.get('name') or c.meta['count']}, none of them in these folds; normal tail "
                         f"z {c.z}, FAR {c.far:g})"
                         + (f", the margin also over the face's {k} closest strangers in it" if k else ""))
            opens[f"{name} + cohort"] = o
    if dlib:
        emb, ok = A.embed_dlib(images, progress=progress("face_recognition"))
        sim = A.similarity(emb, ok, "euclidean")
        rep = A.pairs_report(sim, keys, persons, pairs)
        rep["faces_found"] = int(ok.sum())
        reports["face_recognition (dlib)"] = rep
        o = A.open_set_runs(sim, persons, -0.6)
        o["rule"] = "distance <= 0.6 (default tolerance)"
        opens["face_recognition (dlib)"] = o
    from train.evaluate import public

    return {"folds": sorted(f + 1 for f in folds0), "pairs_file": args.pairs, "images": len(keys),
            "identities": len(people), "models": {k: public(v) for k, v in reports.items()},
            "open_set": opens, "_reports": reports}


if __name__ == "__main__":
    sys.exit(main())
