"""The ``[mqtt]`` section, checked beyond its types (those are :mod:`edge.config`'s): topics, TLS files, the broker
password file, and what remote open needs. Every refusal is one :class:`MqttError` line naming the key."""
from __future__ import annotations

import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edge.errors import DoorfaceError

#: A door id: what Home Assistant ids and topics are made of.
DOOR_ID = re.compile(r"[a-z0-9_-]{1,32}")
#: A topic level: no wildcards, no empty level, nothing Home Assistant or the broker reserve.
TOPIC = re.compile(r"[^/#+$\x00-\x1f][^/#+\x00-\x1f]{0,63}(/[^/#+\x00-\x1f]{1,64}){0,7}")
#: The code's hash file in the bridge's state dir unless ``code_file`` says where.
CODE_FILE = "remote-code.json"
#: Prefixes the bridge never publishes under (Frigate's own topics).
FORBIDDEN = ("frigate",)


class MqttError(DoorfaceError):
    """The MQTT bridge cannot do what it was asked (bad ``[mqtt]`` settings, the broker refused, no code set)."""


@dataclass(frozen=True)
class Settings:
    enabled: bool
    host: str
    port: int
    tls: bool
    ca: str
    cert: str
    key: str
    username: str
    password_file: str
    client_id: str
    door_id: str
    base: str
    discovery_prefix: str
    keepalive: int
    snapshots: bool
    remote_open: bool
    command_user: str
    command_max_age: float
    require_face: bool
    state_dir: Path
    door_state_dir: Path
    code_file: Path

    def topic(self, leaf: str) -> str:
        return f"{self.base}/{leaf}"

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def remote_open_refusal(self) -> Optional[str]:
        """Why remote open cannot be on with these settings (None: it can)."""
        if not self.remote_open:
            return "remote open is off (mqtt.remote_open = false)"
        if not self.tls:
            return "remote open needs TLS (mqtt.tls = true)"
        if not self.username or not self.password_file:
            return "remote open needs broker authentication (mqtt.username and mqtt.password_file)"
        return None


def default_door_id() -> str:
    """The host name as a door id (lower case, anything else than ``[a-z0-9_-]`` as ``_``)."""
    name = re.sub(r"[^a-z0-9_-]", "_", socket.gethostname().split(".")[0].lower())[:32]
    return name or "door"


def bridge_state_dir(value: str, door_state_dir) -> Path:
    """The bridge's own files: the config's path, systemd's ``STATE_DIRECTORY``, or ``<door state>/mqtt``."""
    if value:
        return Path(value)
    env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(env) if env else Path(door_state_dir) / "mqtt"


def _check_topic(name: str, value: str) -> str:
    if not TOPIC.fullmatch(value):
        raise MqttError(f"config: mqtt.{name} = {value!r} is not a topic prefix (levels of 1-64 characters, no "
                        "wildcards + #, no empty level, not starting with / or $)")
    if value.split("/")[0].lower() in FORBIDDEN:
        raise MqttError(f"config: mqtt.{name} = {value!r}: the bridge never publishes under frigate/")
    return value


def _check_files(m: dict) -> None:
    for key in ("ca", "cert", "key", "password_file"):
        if m[key] and not Path(m[key]).is_file():
            raise MqttError(f"config: mqtt.{key} = {m[key]!r}: no such file")
    if bool(m["cert"]) != bool(m["key"]):
        raise MqttError("config: mqtt.cert and mqtt.key go together (a client certificate and its key)")
    if (m["cert"] or m["ca"]) and not m["tls"]:
        raise MqttError("config: mqtt.ca/cert/key are set but mqtt.tls = false")


def from_config(cfg: dict, check_files: bool = True) -> Settings:
    """The bridge's settings from a validated config; raises :class:`MqttError` naming what is wrong."""
    m = cfg["mqtt"]
    door = m["door_id"] or default_door_id()
    if not DOOR_ID.fullmatch(door):
        raise MqttError(f"config: mqtt.door_id = {door!r} must be 1-32 of a-z 0-9 _ -")
    base = _check_topic("base_topic", m["base_topic"] or f"doorface/{door}")
    prefix = _check_topic("discovery_prefix", m["discovery_prefix"])
    if not m["host"].strip():
        raise MqttError("config: mqtt.host must not be empty")
    if m["password_file"] and not m["username"]:
        raise MqttError("config: mqtt.password_file needs mqtt.username")
    if check_files:
        _check_files(m)
    state = cfg["state"]["dir"]
    bridge_state = bridge_state_dir(m["state_dir"], state)
    return Settings(enabled=m["enabled"], host=m["host"].strip(), port=m["port"], tls=m["tls"], ca=m["ca"],
                    cert=m["cert"], key=m["key"], username=m["username"], password_file=m["password_file"],
                    client_id=m["client_id"] or f"doorface-{door}", door_id=door, base=base,
                    discovery_prefix=prefix, keepalive=m["keepalive"], snapshots=m["snapshots"],
                    remote_open=m["remote_open"], command_user=m["command_user"][:64] or "mqtt",
                    command_max_age=float(m["command_max_age"]), require_face=m["require_face"],
                    state_dir=bridge_state, door_state_dir=Path(state),
                    code_file=Path(m["code_file"]) if m["code_file"] else bridge_state / CODE_FILE)


def read_password(path: str) -> str:
    """The broker password: the file's first line. Refused when others than its owner and group can read it."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        if mode & stat.S_IROTH:
            raise MqttError(f"{p} is readable by everyone (chmod 0640 or 0600): the broker password stays private")
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise MqttError(f"cannot read the broker password file {p}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise MqttError(f"the broker password file {p} is empty")
    return lines[0]
