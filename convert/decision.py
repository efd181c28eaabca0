"""Record a door's operating point in an existing model sidecar, without converting the model again.

    python -m convert.decision models/doorface-dlib-int8.tflite --far-target 1e-5 --min-margin 0.015 \\
        --stranger-neighbours 5 --note "python -m bench.operating ...: ..."

The operating point is chosen from open-set figures (``python -m bench.operating``); the model file is untouched
(its sha256 is checked), the sidecar is rewritten with its ``decision`` replaced and sealed again
(``content_sha256``), so the door reads the new rule and galleries and cohorts of the model stay valid.
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from convert.cli import with_decision
    from edge.errors import ModelError
    from edge.vision.sidecar import read_sidecar, write_sidecar

    ap = argparse.ArgumentParser(prog="python -m convert.decision", description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the .tflite file whose sidecar gets the operating point")
    ap.add_argument("--far-target", required=True, choices=["1e-2", "1e-3", "1e-4", "1e-5"])
    ap.add_argument("--min-margin", required=True, type=float)
    ap.add_argument("--stranger-neighbours", type=int, default=0)
    ap.add_argument("--note", required=True, help="how the operating point was chosen (recorded)")
    args = ap.parse_args(argv)
    if not 0 <= args.min_margin <= 2 or not 0 <= args.stranger_neighbours <= 100:
        print("convert.decision: --min-margin must be in [0, 2] and --stranger-neighbours in [0, 100]",
              file=sys.stderr)
        return 2
    try:
        meta = read_sidecar(args.model)        # verifies the model's sha256 and the sidecar's seal
    except ModelError as exc:
        print(f"convert.decision: {exc}", file=sys.stderr)
        return 1
    keep = {k: v for k, v in meta.items() if k not in ("content_sha256",)}
    path = write_sidecar(args.model, with_decision(keep, args.far_target, args.min_margin, args.stranger_neighbours,
                                                   args.note))
    print(f"{path}: decision = FAR {args.far_target}, margin {args.min_margin:g}, "
          f"{args.stranger_neighbours} closest strangers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
