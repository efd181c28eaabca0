"""Synthetic identities for distillation: face morphs of two training people, labelled by the teacher.

The command that builds the morph bank a training config asks for (aligning and embedding the real images first if
needed). The morphs, the bank and its held-out guard are in :mod:`train.morphbank`.

    python -m train.morph --config train/configs/stage5.toml     # builds the bank that config asks for
"""
from __future__ import annotations

import argparse
import os
import sys

from train.morphbank import bank_path, build_bank, load_bank, morph_pair, plan  # noqa: F401 (callers import them here)
from train.prepare import prepare_data


def main(argv=None) -> int:
    from train import config as cfgmod

    ap = argparse.ArgumentParser(prog="python -m train.morph", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="training config whose [data] morphs/morph_seed to build")
    args = ap.parse_args(argv)
    try:
        cfg = cfgmod.load(args.config)
    except (ValueError, OSError) as exc:
        print(f"train.morph: {exc}", file=sys.stderr)
        return 2
    if not os.path.exists(cfg["data"]["dataset"]):
        print(f"train.morph: dataset not found: {cfg['data']['dataset']!r}", file=sys.stderr)
        return 2
    if cfg["data"]["morphs"] <= 0:
        print(f"train.morph: {args.config} asks for no morphs (data.morphs = 0)", file=sys.stderr)
        return 2
    out = bank_path(cfg)
    try:
        prepare_data(cfg)   # aligns and embeds the real images if needed, then builds (or checks) the bank
    except ValueError as exc:
        print(f"train.morph: {exc}", file=sys.stderr)
        return 2
    print(f"{cfg['data']['morphs']} morphs -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
