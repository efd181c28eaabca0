"""`make bench-liveness` (also part of `make bench`): does a photo open the door? Presentation-attack detection on
the dev sets, per ISO/IEC 30107-3.

- Liveness alone, on ``nuaa-dev`` (8 subjects, 25 live webcam frames and 25 frames of a printed photo each) and
  ``celeba-spoof-dev`` (150 live, 150 print/screen/cut-out attacks): the device's detector (BlazeFace, largest face),
  the box map and crops of the sidecar, the shipped model. APCER (attacks accepted as live) and BPCER (live faces
  rejected) at the threshold, ROC AUC, APCER at BPCER 5% and 10%, faces the detector missed, ms per face at one
  thread (and the embedder's, measured in the same run, as the baseline). The same for a few other box maps
  (how BlazeFace's box is mapped to the box the models were trained on).
- The door, on NUAA, through ``doorface enroll`` and ``doorface identify --json``: each subject enrolled from one
  live frame (the household is all 8), then the grant rate of their other live frames and of the printed photos,
  with liveness on (the default) and off.

Both data sets are evaluation-only (research licences): read by path, used to measure and to choose the threshold,
never trained on and nothing but these figures written into the repository.

    python -m bench.liveness [--nuaa ../shared/data/nuaa-dev.tgz] [--celeba ../shared/data/celeba-spoof-dev.tgz]
                             [--model models/doorface-liveness.tflite] [--out benchmarks] [--md BENCHMARKS.md]
    python -m bench.liveness --variants                 # other readings of the same models (crop scales, mirror)
    python -m bench.liveness --attack-sheet FILE.png    # every CelebA-Spoof attack by score, to look at by eye
"""
from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

DEFAULT_MODEL = "models/doorface-liveness.tflite"
BOX_MAPS = {
    "fitted (shipped)": None,    # the sidecar's
    "identity": {"dx": 0.0, "dy": 0.0, "sw": 1.0, "sh": 1.0},
    "fitted x0.85": "scale:0.85",
    "fitted x1.2": "scale:1.2",
}


def load_set(path):
    """``[(member, label, subject, bgr)]``: label 1 live, 0 attack (folders ``live`` vs ``print``/``spoof``)."""
    out = []
    with tarfile.open(path) as tar:
        for m in tar:
            if not (m.isfile() and m.name.lower().endswith((".jpg", ".png"))):
                continue
            parts = m.name.split("/")
            label = 1 if "live" in parts else 0
            subject = parts[-2] if len(parts) >= 4 else ""
            bgr = cv2.imdecode(np.frombuffer(tar.extractfile(m).read(), np.uint8), cv2.IMREAD_COLOR)
            if bgr is not None:
                out.append((m.name, label, subject, bgr))
    return sorted(out, key=lambda r: r[0])


def roc_auc(labels, scores) -> float:
    """Probability that a live face scores above an attack (ties count half)."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allv):                      # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def pad_metrics(labels, scores, threshold: float) -> dict:
    """APCER/BPCER at ``threshold`` (live when score >= threshold), AUC, APCER at BPCER 5% and 10%."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    live, att = scores[labels == 1], scores[labels == 0]
    out = {"live": int(len(live)), "attacks": int(len(att)),
           "apcer": float(np.mean(att >= threshold)) if len(att) else float("nan"),
           "bpcer": float(np.mean(live < threshold)) if len(live) else float("nan"),
           "auc": roc_auc(labels, scores)}
    for b in (0.05, 0.10):
        # the highest threshold that rejects at most b of the live faces
        t = float(np.sort(live)[int(np.floor(b * len(live)))]) if len(live) else float("nan")
        out[f"apcer_at_bpcer_{int(b * 100)}"] = float(np.mean(att >= t)) if len(att) else float("nan")
        out[f"threshold_at_bpcer_{int(b * 100)}"] = t
    return out


def score_set(rows, det, model, box_map) -> dict:
    """Liveness scores of the largest face of every image (None where BlazeFace found no face)."""
    from edge.vision.liveness import model_crops

    scales = [c["scale"] for c in model.meta["crops"]]
    scores, missed = [], 0
    for name, label, subject, bgr in rows:
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        faces = det.detect(rgb)
        if not faces:
            scores.append(None)
            missed += 1
            continue
        f = max(faces, key=lambda f: f.area)
        scores.append(model.score_crops(model_crops(rgb, f.box, box_map, scales, model.size)))
    return {"scores": scores, "missed": missed}


#: Other ways to read the same two models (``--variants``): crop scales of (first, second) model, mirror averaging,
#: how the two live probabilities are combined.
VARIANTS = {
    "shipped (2.7x, 4.0x, mean)": ((2.7, 4.0), False, "mean"),
    "mirror averaged": ((2.7, 4.0), True, "mean"),
    "mean of log-odds": ((2.7, 4.0), False, "logodds"),
    "MiniFASNetV2 (2.7x) alone": ((2.7, 4.0), False, "first"),
    "MiniFASNetV1SE (4.0x) alone": ((2.7, 4.0), False, "second"),
    "crops 1.8x, 2.7x": ((1.8, 2.7), False, "mean"),
    "crops 1.4x, 2.0x": ((1.4, 2.0), False, "mean"),
    "crops 1.0x, 1.5x": ((1.0, 1.5), False, "mean"),
}


def combine(p: np.ndarray, how: str) -> float:
    """One face's liveness from its models' live probabilities ``p`` (one per model, or per model and copy)."""
    p = np.asarray(p, np.float64).reshape(-1, 2)
    if how == "first":
        return float(p[:, 0].mean())
    if how == "second":
        return float(p[:, 1].mean())
    if how == "logodds":
        q = np.clip(p, 1e-6, 1 - 1e-6)
        return float(1 / (1 + np.exp(-np.log(q / (1 - q)).mean())))
    return float(p.mean())


def variant_scores(rows, det, model, box_map, variants=VARIANTS) -> dict:
    """``{variant: [score or None per image]}`` for the largest face of every image."""
    from edge.vision.liveness import model_crops

    out = {v: [] for v in variants}
    live = int(model.meta["live_class"])
    for _, _, _, bgr in rows:
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        faces = det.detect(rgb)
        f = max(faces, key=lambda f: f.area) if faces else None
        for v, (scales, mirror, how) in variants.items():
            if f is None:
                out[v].append(None)
                continue
            crops = model_crops(rgb, f.box, box_map, list(scales), model.size)
            p = [model.probabilities(crops)[:, live]]
            if mirror:
                p.append(model.probabilities([np.ascontiguousarray(c[:, ::-1]) for c in crops])[:, live])
            out[v].append(combine(np.stack(p), how))
    return out


def resolve_map(spec, shipped: dict) -> dict:
    if spec is None:
        return dict(shipped)
    if isinstance(spec, str) and spec.startswith("scale:"):
        k = float(spec.split(":")[1])
        return {**shipped, "sw": shipped["sw"] * k, "sh": shipped["sh"] * k}
    return dict(spec)


def timing(model, embedder, det, rows, n: int = 60) -> dict:
    """ms per face at one thread: liveness vs the embedder (the baseline, same run, same faces)."""
    faces = []
    for _, _, _, bgr in rows:
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        fs = det.detect(rgb)
        if fs:
            faces.append((rgb, max(fs, key=lambda f: f.area)))
        if len(faces) >= n:
            break
    crops = [model.crops(rgb, f) for rgb, f in faces]
    chips = [embedder.crop(rgb, f) for rgb, f in faces]
    for c, e in zip(crops[:5], chips[:5]):
        model.score_crops(c)
        embedder.embed_crop(e)
    out = {}
    for name, fn, items in (("liveness_ms", model.score_crops, crops), ("embedder_ms", embedder.embed_crop, chips),
                            ("liveness_crop_ms", None, faces)):
        t0 = time.perf_counter()
        for _ in range(3):
            for it in items:
                if fn is None:
                    model.crops(*it)
                else:
                    fn(it)
        out[name] = (time.perf_counter() - t0) / (3 * max(len(items), 1)) * 1000
    out["faces"] = len(faces)
    out["ratio_to_embedder"] = out["liveness_ms"] / out["embedder_ms"]
    return out


def _cli(argv) -> str:
    from bench.common import doorface

    code, out, err = doorface(argv)
    if code not in (0, 1):
        raise RuntimeError(f"doorface {' '.join(argv[:2])}: exit {code}: {err.strip()}")
    return out


def session(name: str) -> str:
    """NUAA's file names are ``ID_glasses_position_session_frame.jpg``: the session of a frame."""
    parts = Path(name).stem.split("_")
    return parts[3] if len(parts) >= 5 else ""


def door_level(rows, model_path: str, liveness: bool, work: Path, enroll_frames: int = 1) -> dict:
    """NUAA through the CLI: enroll each subject from their first ``enroll_frames`` live frames (in file order: the
    first session's), identify everything else. Also counted apart: live frames of a session the subject was not
    enrolled in (another day, another light: what a door sees)."""
    work.mkdir(parents=True, exist_ok=True)
    state = work / "state"
    cfg = work / "doorface.toml"
    cfg.write_text(f'[liveness]\nenabled = {"true" if liveness else "false"}\nmodel = "{model_path}"\n')
    imgs = work / "images"
    imgs.mkdir(exist_ok=True)
    paths = {}
    for name, label, subject, bgr in rows:
        p = imgs / name.replace("/", "_")
        if not p.exists():
            cv2.imwrite(str(p), bgr)
        paths[name] = (p, label, subject)
    firsts = {}
    for name, (p, label, subject) in sorted(paths.items()):
        if label == 1 and len(firsts.setdefault(subject, [])) < enroll_frames:
            firsts[subject].append(name)
    enrolled, enrolled_from, sessions = {}, set(), {}
    for subject, names in sorted(firsts.items()):
        # --force: every subject is enrolled (the household check would refuse some of these webcam galleries as
        # too close to another subject's; this measures the door's decisions, not enrollment).
        out = _cli(["enroll", f"s{subject}", "--images", *[str(paths[n][0]) for n in names], "--force",
                    "--config", str(cfg), "--state-dir", str(state)])
        if "enrolled" in out:
            enrolled[subject] = names
            enrolled_from.update(names)
            sessions[subject] = {session(n) for n in names}
    res = {"live": [0, 0], "attack": [0, 0], "live_spoof_denied": 0, "attack_matched": 0, "live_misses": {},
           "live_other_session": [0, 0], "enroll_frames": enroll_frames}
    todo = [(n, v) for n, v in sorted(paths.items()) if n not in enrolled_from and v[2] in enrolled]
    lines = _cli(["identify", *[str(v[0]) for _, v in todo], "--json", "--config", str(cfg),
                  "--state-dir", str(state)]).splitlines()
    for (name, (p, label, subject)), line in zip(todo, lines):
        r = json.loads(line)
        faces = r.get("faces", [])
        granted = bool(faces) and faces[0]["decision"] == "grant" and faces[0]["identity"] == f"s{subject}"
        key = "live" if label == 1 else "attack"
        res[key][0] += int(granted)
        res[key][1] += 1
        if label == 1 and session(name) not in sessions[subject]:
            res["live_other_session"][0] += int(granted)
            res["live_other_session"][1] += 1
        if label == 1 and not granted:          # why a live frame of an enrolled subject was not let in
            f = faces[0] if faces else None
            why = ("no face" if f is None else "spoof" if f["reason"] == "spoof"
                   else "another subject best" if f["best"] != f"s{subject}"
                   else "below threshold" if f["score"] < r["threshold"]
                   else "below own threshold" if f["score"] < f.get("person_threshold", r["threshold"])
                   else "margin to strangers" if f.get("strangers") is not None
                   and abs(f["score"] - f["strangers"] - f["margin"]) < 2e-4
                   else "margin to another subject")
            res["live_misses"][why] = res["live_misses"].get(why, 0) + 1
        if faces and label == 1 and faces[0]["reason"] == "spoof":
            res["live_spoof_denied"] += 1
        if faces and label == 0 and faces[0]["best"] == f"s{subject}" and faces[0]["reason"] == "spoof":
            res["attack_matched"] += 1
    res["enrolled"] = len(enrolled)
    res["live_granted_rate"] = res["live"][0] / max(res["live"][1], 1)
    res["attack_granted_rate"] = res["attack"][0] / max(res["attack"][1], 1)
    return res


def attack_sheet(rows, scores, threshold: float, path: Path, size: int = 128, per_row: int = 10) -> int:
    """A contact sheet of every attack image with a face, highest liveness score first (rank and score on each
    tile, green when it would pass ``threshold``), to see by eye which kinds of attack pass. Written where asked,
    never into the repo (the dev sets are evaluation only). Returns the number of attacks drawn."""
    import cv2

    att = sorted(((s, bgr) for (_, label, _, bgr), s in zip(rows, scores) if label == 0 and s is not None),
                 key=lambda t: -t[0])
    tiles = []
    for i, (s, bgr) in enumerate(att):
        im = cv2.resize(bgr, (size, size))
        cv2.putText(im, f"{i} {s:.2f}", (3, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 255, 0) if s >= threshold else (0, 0, 255), 2)
        tiles.append(im)
    if not tiles:
        return 0
    tiles += [np.zeros_like(tiles[0])] * ((-len(tiles)) % per_row)
    cv2.imwrite(str(path), np.vstack([np.hstack(tiles[i:i + per_row]) for i in range(0, len(tiles), per_row)]))
    return len(att)


def plot(sets: dict, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 3.6))
    for ax, (name, (labels, scores)) in zip(np.atleast_1d(axes), sets.items()):
        labels, scores = np.asarray(labels), np.asarray(scores)
        bins = np.linspace(0, 1, 41)
        ax.hist(scores[labels == 1], bins, alpha=0.6, label="live", color="tab:green")
        ax.hist(scores[labels == 0], bins, alpha=0.6, label="attack", color="tab:red")
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.2f}")
        ax.set_title(name)
        ax.set_xlabel("liveness score (mean live probability)")
        ax.set_ylabel("faces")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def md_section(r: dict) -> str:
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    lines = ["<!-- bench-liveness -->", f"## Liveness (presentation attacks, `make bench-liveness`), {r['date']}", "",
             f"`python -m bench.liveness`: model `{r['model']}` ({r['quantization']}), threshold "
             f"{r['threshold']:.2f}, box map {r['box_map']}. Dev sets: evaluation only.", "",
             "| set | box map | live / attacks with a face | missed | APCER | BPCER | AUC | APCER@BPCER5% | "
             "APCER@BPCER10% |", "|---|---|---|---|---|---|---|---|---|"]
    for s in r["sets"]:
        for mapname, m in r["sets"][s].items():
            lines.append(f"| {s} | {mapname} | {m['live']} / {m['attacks']} | {m['missed']} | {pct(m['apcer'])} | "
                         f"{pct(m['bpcer'])} | {m['auc']:.3f} | {pct(m['apcer_at_bpcer_5'])} | "
                         f"{pct(m['apcer_at_bpcer_10'])} |")
    t = r["timing"]
    lines += ["", f"Speed, 1 thread, {t['faces']} faces: liveness {t['liveness_ms']:.2f} ms/face (+ crops "
              f"{t['liveness_crop_ms']:.2f} ms), embedder {t['embedder_ms']:.2f} ms/face (ratio "
              f"{t['ratio_to_embedder']:.2f}). Model file {r['size_kb']:.0f} KB.", ""]
    if r.get("door"):
        lines += ["Door level on nuaa-dev (`doorface enroll` from each subject's first live frames in file order, all "
                  "of the first session; `doorface identify --json` on every other frame, single-frame decisions at "
                  "the default rule):", "", "| enrolled from | liveness | live frames granted | of them, from "
                  "another session | printed photos granted | live frames not granted, why |",
                  "|---|---|---|---|---|---|"]
        for k, d in r["door"].items():
            why = ", ".join(f"{n} {w}" for w, n in sorted(d["live_misses"].items(), key=lambda kv: -kv[1])) or "-"
            o = d.get("live_other_session", [0, 0])
            lines.append(f"| {d.get('enroll_frames', 1)} frame(s) | {k.split()[0]} | {d['live'][0]}/{d['live'][1]} "
                         f"({pct(d['live_granted_rate'])}) | {o[0]}/{o[1]} ({pct(o[0] / max(o[1], 1))}) | "
                         f"{d['attack'][0]}/{d['attack'][1]} ({pct(d['attack_granted_rate'])}) | {why} |")
    lines += ["", "![liveness scores](benchmarks/liveness-scores.png)", "", "<!-- /bench-liveness -->"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.liveness", description=__doc__.splitlines()[0])
    ap.add_argument("--nuaa", default="../shared/data/nuaa-dev.tgz")
    ap.add_argument("--celeba", default="../shared/data/celeba-spoof-dev.tgz")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threshold", type=float, help="default: the sidecar's")
    ap.add_argument("--detector", default="models/face_detection_short_range.tflite")
    ap.add_argument("--embedder", default="models/doorface-dlib-int8.tflite", help="the speed baseline")
    ap.add_argument("--no-door", action="store_true", help="skip the door-level NUAA run")
    ap.add_argument("--variants", action="store_true",
                    help="print how other readings of the two models do (crop scales, mirror, log-odds), and stop")
    ap.add_argument("--attack-sheet", metavar="FILE.png",
                    help="draw celeba-spoof-dev's attacks, highest score first, here (outside the repo), and stop")
    ap.add_argument("--out", default="benchmarks")
    ap.add_argument("--md", help="also write the section into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    import datetime as dt

    from edge.vision.detector import BlazeFaceDetector
    from edge.vision.embedder import Embedder
    from edge.vision.liveness import LivenessModel

    sets = {n: p for n, p in (("nuaa-dev", args.nuaa), ("celeba-spoof-dev", args.celeba)) if Path(p).exists()}
    if not sets:
        print(f"bench.liveness: neither {args.nuaa} nor {args.celeba} found (../shared/data beside the repo)",
              file=sys.stderr)
        return 2
    model = LivenessModel(args.model, args.threshold, num_threads=1).load()
    det = BlazeFaceDetector(args.detector, num_threads=1)
    shipped = model.meta["box_map"]
    rows = {n: load_set(p) for n, p in sets.items()}
    res = {"date": dt.date.today().isoformat(), "model": args.model, "quantization": model.meta.get("quantization"),
           "threshold": model.threshold, "box_map": shipped, "size_kb": Path(args.model).stat().st_size / 1024,
           "sets": {}, "door": {}}
    if args.variants:
        print("| set | reading | APCER | BPCER | AUC | APCER@BPCER10% |\n|---|---|---|---|---|---|")
        for n, rs in rows.items():
            for v, sc in variant_scores(rs, det, model, shipped).items():
                keep = [i for i, x in enumerate(sc) if x is not None]
                m = pad_metrics([rs[i][1] for i in keep], [sc[i] for i in keep], model.threshold)
                print(f"| {n} | {v} | {100 * m['apcer']:.1f}% | {100 * m['bpcer']:.1f}% | {m['auc']:.3f} | "
                      f"{100 * m['apcer_at_bpcer_10']:.1f}% |", flush=True)
        return 0
    if args.attack_sheet:
        rs = rows.get("celeba-spoof-dev") or next(iter(rows.values()))
        n = attack_sheet(rs, score_set(rs, det, model, shipped)["scores"], model.threshold, Path(args.attack_sheet))
        print(f"wrote {n} attacks to {args.attack_sheet}")
        return 0
    dist = {}
    for n, rs in rows.items():
        res["sets"][n] = {}
        for mapname, spec in BOX_MAPS.items():
            sc = score_set(rs, det, model, resolve_map(spec, shipped))
            keep = [i for i, s in enumerate(sc["scores"]) if s is not None]
            labels = [rs[i][1] for i in keep]
            scores = [sc["scores"][i] for i in keep]
            m = pad_metrics(labels, scores, model.threshold)
            m["missed"] = sc["missed"]
            res["sets"][n][mapname] = m
            if spec is None:
                dist[n] = (labels, scores)
            print(f"{n:<17} {mapname:<17} APCER {100 * m['apcer']:5.1f}%  BPCER {100 * m['bpcer']:5.1f}%  "
                  f"AUC {m['auc']:.3f}  APCER@BPCER10 {100 * m['apcer_at_bpcer_10']:5.1f}%  missed {m['missed']}",
                  file=sys.stderr)
    res["timing"] = timing(model, Embedder(args.embedder, 1).load(), det, next(iter(rows.values())))
    if "nuaa-dev" in rows and not args.no_door:
        with tempfile.TemporaryDirectory() as tmp:
            # One frame (the harshest gallery) and five (what `doorface enroll --camera` keeps by default).
            for frames in (1, 5):
                for on in (True, False):
                    d = door_level(rows["nuaa-dev"], str(Path(args.model).resolve()), on,
                                   Path(tmp) / f"{on}-{frames}", enroll_frames=frames)
                    res["door"][f"{'on' if on else 'off'} {frames}"] = d
                    print(f"door, {frames} frame(s), liveness {'on ' if on else 'off'}: live granted "
                          f"{d['live'][0]}/{d['live'][1]}, printed photos granted {d['attack'][0]}/{d['attack'][1]}",
                          file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "liveness.json").write_text(json.dumps(res, indent=1) + "\n")
    plot(dist, model.threshold, out / "liveness-scores.png")
    if args.md:
        from bench.model import update_md

        update_md(Path(args.md), md_section(res), "<!-- bench-liveness -->", "<!-- /bench-liveness -->")
    print(md_section(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
