"""``doorface web``: the local web page (its own process: ``doorface-web.service``), and its helpers:
``reset-password`` (a new password for the admin or the viewer, printed once) and ``cert`` (the self-signed
certificate the installer makes)."""
from __future__ import annotations

import sys

from edge.cli.common import load_config, setup_logging

ACTIONS = ("run", "reset-password", "cert")


def add_parsers(sub, common) -> None:
    p = sub.add_parser("web", parents=[common], help="the local web page (run, reset-password, cert)")
    p.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                   help="run the page (default); reset-password: a new password, printed once (ends that "
                        "account's sessions); cert: make the self-signed certificate (--force replaces it)")
    p.add_argument("--role", default="admin", choices=("admin", "viewer"), help="reset-password: whose (default admin)")
    p.add_argument("--force", action="store_true", help="cert: replace an existing certificate")
    p.add_argument("--socket", metavar="PATH", help="the door's events socket (default: as the door computes it; the "
                                                    "unit gives /run/doorface/events.sock)")


def _socket(args, cfg):
    from edge.door.seam import socket_path
    from edge.errors import ConfigError

    if args.socket:
        return args.socket
    if cfg["events"]["socket"] == "off":
        raise ConfigError("events.socket is off: the web page has no socket to talk to the door through")
    return socket_path(cfg["events"]["socket"], cfg["state"]["dir"])


def _run(args, cfg) -> int:
    from edge.web.server import serve
    from edge.web.settings import WebError, from_config, refusal

    s = from_config(cfg)
    if refusal(s):
        raise WebError(refusal(s))
    return serve(cfg, s, _socket(args, cfg), say=lambda line: print(f"doorface web: {line}", file=sys.stderr,
                                                                    flush=True))


def cmd_web(args) -> int:
    from edge.web.auth import Accounts, new_password
    from edge.web.settings import from_config
    from edge.web.tls import make_certificate

    cfg = load_config(args)
    setup_logging(cfg["log"]["level"], args.verbose)
    if args.action == "run":
        return _run(args, cfg)
    s = from_config(cfg)
    if args.action == "cert":
        print(make_certificate(s.cert, s.key, force=args.force))
        return 0
    password = new_password()
    Accounts(s.accounts_file).set_password(args.role, password)
    print(f"new {args.role} password (shown once): {password}")
    print(f"every {args.role} session ended; stored as a PBKDF2-SHA256 hash in {s.accounts_file}")
    return 0


COMMANDS = {"web": cmd_web}
