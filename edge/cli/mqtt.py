"""``doorface mqtt``: the Home Assistant bridge (its own process: ``doorface-mqtt.service``), and its helpers:
``set-code`` (the remote-open code's hash), ``discovery`` (print the discovery message), ``check`` (the broker)."""
from __future__ import annotations

import json
import signal
import sys

from edge.cli.common import load_config, setup_logging

ACTIONS = ("run", "set-code", "discovery", "check")


def add_parsers(sub, common) -> None:
    p = sub.add_parser("mqtt", parents=[common], help="the Home Assistant bridge over MQTT (run, set-code, discovery, "
                                                      "check)")
    p.add_argument("action", nargs="?", default="run", choices=ACTIONS,
                   help="run the bridge (default); set-code: store the remote-open code's hash (read from stdin); "
                        "discovery: print Home Assistant's discovery message; check: connect to the broker once")
    p.add_argument("--socket", metavar="PATH", help="the door's events socket (default: as the door computes it; the "
                                                    "unit gives /run/doorface/events.sock)")


def _settings(cfg):
    from edge.mqtt.settings import from_config

    return from_config(cfg)


def _socket(args, cfg):
    from edge.door.seam import socket_path
    from edge.errors import ConfigError

    if args.socket:
        return args.socket
    if cfg["events"]["socket"] == "off":
        raise ConfigError("events.socket is off: the bridge has no socket to talk to the door through")
    return socket_path(cfg["events"]["socket"], cfg["state"]["dir"])


def _run(args, cfg) -> int:
    from edge.mqtt.bridge import Bridge
    from edge.mqtt.settings import MqttError

    s = _settings(cfg)
    if not s.enabled:
        raise MqttError("mqtt.enabled is false: turn the bridge on in the config first")
    bridge = Bridge(s, _socket(args, cfg))

    def on_signal(signum, frame):
        bridge.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    refusal = s.remote_open_refusal()
    print(f"doorface mqtt: {s.where} topics {s.base}/#, door socket {bridge.socket_path}; "
          f"{refusal or 'remote open on'}", file=sys.stderr, flush=True)
    return bridge.run()


def _read_code() -> str:
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("remote-open code: ")
        if getpass.getpass("again: ") != first:
            from edge.mqtt.settings import MqttError

            raise MqttError("the two codes differ; nothing stored")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _set_code(cfg) -> int:
    from edge.mqtt.code import set_code

    s = _settings(cfg)
    path = set_code(s.code_file, _read_code())
    print(f"code stored as a PBKDF2 hash in {path} (the bridge reads it at the next command)")
    refusal = s.remote_open_refusal()
    if refusal:
        print(f"note: {refusal}")
    return 0


def cmd_mqtt(args) -> int:
    cfg = load_config(args)
    if args.action == "run":
        setup_logging(cfg["log"]["level"], args.verbose)
        return _run(args, cfg)
    if args.action == "set-code":
        return _set_code(cfg)
    if args.action == "discovery":
        from edge.mqtt.payloads import discovery

        topic, payload = discovery(_settings(cfg))
        print(topic)
        print(json.dumps(payload, indent=2))
        return 0
    from edge.mqtt.check import check

    print(f"mqtt {check(cfg)}")
    return 0


COMMANDS = {"mqtt": cmd_mqtt}
