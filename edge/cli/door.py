"""Commands of the door itself: ``run`` (the daemon), ``relay --lock`` (the service's re-lock helper), ``events``
(the access log, or the live records with ``--follow``) and ``open`` (a remote open through the events socket)."""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

from edge.cli.common import load_config, setup_logging
from edge.errors import ConfigError
from edge.people.names import shown


def add_parsers(sub, common) -> None:
    p = sub.add_parser("run", parents=[common], help="run the door daemon")
    p.add_argument("--source", help="camera URI, video file or image folder (overrides camera.source)")
    p.add_argument("--relay", help="relay backend (overrides relay.backend), e.g. mock")
    p.add_argument("--events-out", metavar="FILE", help="also write one JSON line per decision to FILE")
    p.add_argument("--timeline", action="store_true", help="with the mock relay: print the relay's timeline at exit")
    p.add_argument("--realtime", action="store_true", help="play video files and folders at their frame rate")

    p = sub.add_parser("relay", parents=[common],
                       help="drive the strike to its locked level and exit (the service's ExecStartPre/ExecStopPost)")
    p.add_argument("--lock", action="store_true", required=True, help="lock (the only action)")
    p.add_argument("--relay", help="relay backend (overrides relay.backend)")
    p.add_argument("--pin", help="last-resort pin (baked in by the installer): locked when neither the configured "
                                 "relay nor the last good one (<state dir>/relay-last-good.json) could be")
    p.add_argument("--active-low", action="store_true", help="with --pin: the relay energises on a low level")
    p.add_argument("--fallback-backend", default="gpiozero", help="with --pin: its backend")

    p = sub.add_parser("events", parents=[common], help="show the access log, or follow the door's live records")
    p.add_argument("--since", help="ISO date/time, or a duration like 30m, 12h, 7d")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.add_argument("--follow", action="store_true",
                   help="print the running door's records as they happen (JSON lines, from the events socket)")

    p = sub.add_parser("open", parents=[common],
                       help="open the door once through the running daemon (under its lockout; logged)")
    p.add_argument("--user", default="", help="who asks (logged with the decision; default: your uid)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the door's decision")


def _relay_layer(args) -> tuple:
    """``(path, toml)`` of the config the helper reads (only [relay] and [state] of it are used)."""
    from edge.config import SYSTEM_CONFIG, tomllib

    path = args.config or (str(SYSTEM_CONFIG) if SYSTEM_CONFIG.is_file() else None)
    return path, (tomllib.loads(Path(path).read_text()) if path else {})


def relay_settings(args):
    """``(configured, state_dir)`` for the re-lock helper. ``configured`` is the config's [relay] (a
    :class:`~edge.door.relay.RelaySpec`, checked by the same rules as the daemon's config, ``--relay`` applied) or,
    when it cannot be used, why (a string): only [relay] is read, so a config broken elsewhere never stops the door
    from being locked. ``state_dir`` (where the last good relay is recorded): ``--state-dir``, else the config's
    [state] dir, else the default."""
    from edge.config import defaults, merge, validate_relay
    from edge.door.relay import RelaySpec

    state_dir = args.state_dir or defaults()["state"]["dir"]
    try:
        path, layer = _relay_layer(args)
        where = path or "packaged defaults"
        if not args.state_dir and isinstance(layer.get("state"), dict) and isinstance(layer["state"].get("dir"), str):
            state_dir = layer["state"]["dir"]
        if not isinstance(layer.get("relay", {}), dict):
            raise ConfigError(f"{where}: [relay] must be a table")
        # What locking uses, checked by the daemon's rules; a typo in unlock_seconds does not move the strike.
        relay = {k: v for k, v in layer.get("relay", {}).items() if k in ("backend", "pin", "active_high")}
        relay.update({"backend": args.relay} if args.relay else {})
        r = validate_relay(merge({"relay": defaults()["relay"]}, {"relay": relay}, where)["relay"])
        return RelaySpec(r["backend"], str(r["pin"]), r["active_high"], f"the config, {where}"), state_dir
    except Exception as exc:  # unreadable file, bad TOML, a bad [relay] value: fall back, and say why
        return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__, state_dir


def cmd_relay(args) -> int:
    """Lock the strike: the configured relay, else the last good one, else the pin baked into the unit; exit 0 when
    any was locked. Every failure is one line on stderr, every relay locked one line on stdout."""
    import sys

    from edge.door.relay import RelaySpec, recorded, relock_chain
    from edge.errors import RelayError

    configured, state_dir = relay_settings(args)
    try:
        records = recorded(state_dir)
    except RelayError as exc:
        print(f"doorface relay: {exc}", file=sys.stderr)
        records = {}
    baked = RelaySpec(args.relay or args.fallback_backend, args.pin, not args.active_low,
                      "baked into the unit by the installer: --pin") if args.pin else None

    def say(line: str, ok: bool) -> None:
        print(line if ok else f"doorface relay: {line}", file=sys.stdout if ok else sys.stderr, flush=True)

    locked = relock_chain(configured, records, baked, say)
    if not locked:
        raise RelayError("no relay could be locked (the configured one, the last good ones in "
                         f"{Path(state_dir) / 'relay-last-good.json'}, {'--pin ' + args.pin if args.pin else 'no --pin'})"
                         ": the strike may still be energised")
    if not isinstance(configured, RelaySpec) or configured not in locked:
        print(f"relay locked by fallback: the configured relay could not be used; locked {', '.join(map(str, locked))}")
    return 0


def cmd_run(args) -> int:
    from edge.build import daemon

    cfg = load_config(args, {"camera.source": args.source, "relay.backend": args.relay})
    setup_logging(cfg["log"]["level"], args.verbose)
    d = daemon(cfg, events_out=args.events_out, realtime=args.realtime)
    code = d.run()
    if args.timeline and hasattr(d.relay, "timeline"):
        print("relay timeline (s since start, state):")
        for t, on in d.relay.timeline():
            print(f"  {t:8.3f}  {'UNLOCKED (energised)' if on else 'locked'}")
    return code


def parse_since(text):
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(f"--since: expected an ISO date/time or a duration like 12h, not {text!r}") from None


def _socket(cfg) -> Path:
    from edge.door.seam import socket_path

    if cfg["events"]["socket"] == "off":
        raise ConfigError("events.socket is off: the running door has no socket to talk to")
    return socket_path(cfg["events"]["socket"], cfg["state"]["dir"])


def cmd_events(args) -> int:
    from edge.door.accesslog import FILENAME, AccessLog

    cfg = load_config(args)
    if args.follow:
        from edge.door.seam import SeamClient

        with SeamClient(_socket(cfg), timeout=None) as client:
            for rec in client.records():
                print(json.dumps(rec), flush=True)
        return 0
    path = Path(cfg["state"]["dir"]) / FILENAME
    if not path.exists():
        print("no access log yet")
        return 0
    log_ = AccessLog(path)
    for e in log_.events(parse_since(args.since), args.limit):
        if args.json:
            print(json.dumps(e))
        else:
            when = dt.datetime.fromtimestamp(e["ts"]).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{when}  {e['decision']:<7} {shown(e['identity']):<20} score={e['score']:.3f}  {e['reason'] or ''}")
    log_.close()
    return 0


def cmd_open(args) -> int:
    """Ask the running door to open once; prints its decision (``remote_open`` or ``remote_rejected``)."""
    import os
    import socket as so

    from edge.door.seam import SeamClient
    from edge.errors import DoorfaceError

    cfg = load_config(args)
    rid = f"cli-{os.getpid()}-{time.time():.3f}"
    with SeamClient(_socket(cfg), timeout=args.timeout) as client:
        reply = client.command("open", id=rid, user=args.user)
        if not reply.get("ok"):
            raise DoorfaceError(f"the door refused the command: {reply.get('error')}")
        try:
            for rec in client.records(until=lambda r: r.get("command_id") == rid):
                if rec.get("command_id") == rid:
                    print(f"{rec['decision']}: {rec['reason']}")
                    return 0 if rec["decision"] == "remote_open" else 1
        except (so.timeout, EOFError) as exc:
            raise DoorfaceError(f"no decision from the door within {args.timeout:g} s ({exc})") from None
    return 1


COMMANDS = {"run": cmd_run, "relay": cmd_relay, "events": cmd_events, "open": cmd_open}
