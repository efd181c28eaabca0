"""The ``[web]`` section of the config, resolved: where the page keeps its files, its certificate, its limits."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge.errors import DoorfaceError


class WebError(DoorfaceError):
    """The web page cannot run as configured (one line, non-zero exit)."""


@dataclass(frozen=True)
class WebSettings:
    enabled: bool
    host: str
    port: int
    tls: bool
    cert: Path
    key: Path
    session_minutes: int
    login_attempts: int
    login_attempts_total: int
    max_upload_bytes: int
    preview: bool            # the admin's live preview of the door camera (opt-in)
    state_dir: Path          # the page's own files (accounts, certificate)
    door_state_dir: Path     # the door's (gallery, access log, snapshots)

    @property
    def accounts_file(self) -> Path:
        return self.state_dir / "accounts.json"

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::", "127.0.0.1") else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def refusal(s: "WebSettings") -> str:
    """Why the page must not start as configured ("" when it may): off, or plain HTTP on a network address."""
    if not s.enabled:
        return "web.enabled is false: turn the page on in the config first ([web] enabled = true)"
    if not s.tls and s.host not in LOOPBACK:
        return (f"web.tls = false on {s.host}: passwords and sessions would cross the network in clear; keep tls = "
                "true, or listen on 127.0.0.1 behind your own TLS proxy")
    return ""


def web_state_dir(value: str, door_state_dir) -> Path:
    """The config's path, or systemd's ``STATE_DIRECTORY`` (``/var/lib/doorface-web``), or ``<state.dir>/web``."""
    if value:
        return Path(value)
    env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(env) if env else Path(door_state_dir) / "web"


def from_config(cfg: dict) -> WebSettings:
    w = cfg["web"]
    door = Path(cfg["state"]["dir"])
    state = web_state_dir(w["state_dir"], door)
    return WebSettings(
        enabled=w["enabled"], host=w["host"], port=w["port"], tls=w["tls"],
        cert=Path(w["cert"]) if w["cert"] else state / "cert.pem",
        key=Path(w["key"]) if w["key"] else state / "key.pem",
        session_minutes=w["session_minutes"], login_attempts=w["login_attempts"],
        login_attempts_total=w["login_attempts_total"], max_upload_bytes=int(w["max_upload_mb"]) << 20, preview=w["preview"],
        state_dir=state, door_state_dir=door)
