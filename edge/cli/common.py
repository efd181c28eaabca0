"""What every command shares: the common flags, the validated config, logging, progress bars, the analyzer and
the gallery."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="TOML config (default: /etc/doorface/doorface.toml if present)")
    common.add_argument("--state-dir", metavar="DIR", help="where the gallery and access log live (overrides state.dir)")
    common.add_argument("--model", metavar="TFLITE", help="embedding model (overrides model.embedder)")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging (rejected faces and why)")
    return common


def load_config(args, extra=None) -> dict:
    from edge import config

    overrides = {"state.dir": getattr(args, "state_dir", None), "model.embedder": getattr(args, "model", None)}
    overrides.update(extra or {})
    return config.load(args.config, overrides)


def setup_logging(cfg_level: str, verbose: bool):
    level = logging.DEBUG if verbose else getattr(logging, cfg_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)


def progress(desc):
    def wrap(items):
        try:
            from tqdm import tqdm
        except ImportError:
            return items
        return tqdm(items, desc=desc, disable=not sys.stderr.isatty() and not os.environ.get("DOORFACE_PROGRESS"))
    return wrap


def analyzer_and_gallery(cfg, create=False):
    from edge.build import build_analyzer
    from edge.people import gallery as gal

    analyzer = build_analyzer(cfg)
    analyzer.embedder.load()
    g = gal.Gallery(Path(cfg["state"]["dir"]) / gal.FILENAME).open(create=create)
    return analyzer, g
