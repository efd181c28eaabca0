"""``doorface``: the command line of the door (run, relay, events, open, enroll, users, cohort, liveness, identify, embed,
check, config, bench, mqtt, web). One module per command group; this one only assembles them.

Every command takes ``--config FILE`` and ``--state-dir DIR``. Errors are one line on stderr with a non-zero
exit code (a traceback only with ``DEBUG=1``).
"""
from __future__ import annotations

import argparse
import os
import sys

from edge import __version__
from edge.cli import bench, check, cohort, door, liveness, mqtt, people, photos, web
from edge.cli.common import common_parser
from edge.errors import DoorfaceError

GROUPS = (door, people, cohort, liveness, photos, check, bench, mqtt, web)
COMMANDS = {name: fn for group in GROUPS for name, fn in group.COMMANDS.items()}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="doorface", description="Face-recognition door lock (edge runtime).")
    ap.add_argument("--version", action="version", version=f"doorface {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = common_parser()
    for group in GROUPS:
        group.add_parsers(sub, common)
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except DoorfaceError as exc:
        if os.environ.get("DEBUG") == "1":
            raise
        print(f"doorface: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback at the door, unless DEBUG=1
        if os.environ.get("DEBUG") == "1":
            raise
        print(f"doorface: unexpected error: {exc.__class__.__name__}: {exc} (DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1
