"""`make bench-model`: ms per embedding for each converted variant with 1, 2 and 4 threads in ai-edge-litert,
model sizes and peak memory (each measurement in its own process). Writes ``model.json`` and prints a table.

    python -m bench.model [--models models/doorface-float32.tflite models/doorface-int8.tflite] [--out benchmarks]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, numpy as np
from bench.speed import peak_rss_mb
from edge.vision.embedder import Embedder
e = Embedder(sys.argv[1], int(sys.argv[2]), [sys.argv[3]]).load()
crop = np.random.default_rng(0).integers(0, 255, (e.input_size, e.input_size, 3), dtype=np.uint8)
for _ in range(20):
    e.embed_crop(crop)
ts = []
for _ in range(int(sys.argv[4])):
    t = time.perf_counter(); e.embed_crop(crop); ts.append(time.perf_counter() - t)
print(json.dumps({"ms": float(np.median(ts) * 1000), "p90_ms": float(np.percentile(ts, 90) * 1000),
                  "peak_rss_mb": peak_rss_mb(), "backend": e.backend}))
"""


def measure(model, threads, runtime="ai_edge_litert", iters=300) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD, str(model), str(threads), runtime, str(iters)],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(r.stderr[-400:])
    return json.loads(r.stdout.strip().splitlines()[-1])


BEGIN, END = "<!-- bench-model -->", "<!-- /bench-model -->"


def md_section(rows: list, when: str) -> str:
    """The ``make bench-model`` table as a BENCHMARKS.md section (between markers, so it can be replaced)."""
    L = [BEGIN, "## Model variants (`make bench-model`)", "",
         f"Measured {when}: ms per embedding (one aligned face, median and 90th percentile over the run) in "
         "ai-edge-litert, each in its own process; peak RSS of that process. `mirror` = the exported model embeds "
         "the face and its mirror image (two passes). Variants other than the two in `models/` come from "
         "`python -m convert MODEL --out DIR --quant float16|dynamic|int8 [--no-flip-average] --name NAME` and "
         "`python -m bench.model --models ...`. 4 threads on a 2-core machine is oversubscribed.", "",
         "| model | quantisation | mirror | threads | ms | p90 ms | size KB | peak RSS MB |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['model']} | {r['quantization']} | {'yes' if r.get('flip_average') else 'no'} | "
                 f"{r['threads']} | {r['ms']:.2f} | {r['p90_ms']:.2f} | {r['size_kb']:.0f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(L + ["", END])


def update_md(md: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the section between ``begin`` and ``end`` in ``md`` (or append it)."""
    text = md.read_text() if md.exists() else "# doorface benchmarks\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    md.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.model", description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+",
                    default=sorted(str(p) for p in Path("models").glob("doorface-*.tflite")
                                   if "liveness" not in p.name))
    ap.add_argument("--threads", default="1,2,4")
    ap.add_argument("--runtime", default="ai_edge_litert")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--out", default="benchmarks")
    ap.add_argument("--md", help="also write the table into this markdown file (BENCHMARKS.md)")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    rows = []
    jobs = [(m, int(t)) for m in args.models for t in args.threads.split(",")]
    for model, th in tqdm(jobs, desc="bench-model", file=sys.stderr):
        r = measure(model, th, args.runtime, args.iters)
        meta = json.loads(Path(model).with_suffix(".json").read_text())
        rows.append({"model": Path(model).name, "quantization": meta.get("quantization"),
                     "flip_average": bool(meta.get("flip_average")), "threads": th,
                     "size_kb": Path(model).stat().st_size / 1024, **r})
    Path(args.out).mkdir(parents=True, exist_ok=True)
    when = dt.date.today().isoformat()
    (Path(args.out) / "model.json").write_text(json.dumps({"date": when, "rows": rows}, indent=1))
    if args.md:
        update_md(Path(args.md), md_section(rows, when))
    print(f"{'model':<26} {'threads':>7} {'ms':>7} {'p90 ms':>7} {'size KB':>8} {'peak RSS MB':>11}")
    for r in rows:
        print(f"{r['model']:<26} {r['threads']:>7} {r['ms']:>7.2f} {r['p90_ms']:>7.2f} {r['size_kb']:>8.0f} "
              f"{r['peak_rss_mb']:>11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
