"""``doorface check``'s line for the MQTT bridge: the settings, the broker (a connection of its own, under another
client id, without a last will: it never disturbs the running bridge), the bridge's retained availability, and
whether remote open can work."""
from __future__ import annotations

import threading

from edge.mqtt.code import CodeStore
from edge.mqtt.link import Link
from edge.mqtt.settings import Settings, from_config


def _availability(link: Link, topic: str, wait: float) -> str:
    """The retained ``availability`` the broker holds for this door (what Home Assistant sees)."""
    got, seen = [], threading.Event()

    def on_message(t, payload, retained, expiry):
        if t == topic:
            got.append(payload.decode("utf-8", "replace"))
            seen.set()

    link.on_message = on_message
    link.subscribe(topic, qos=1)
    seen.wait(wait)
    return f"bridge {got[0]}" if got else "bridge never seen on this broker"


def _remote(s: Settings) -> str:
    refusal = s.remote_open_refusal()
    if refusal:
        return refusal
    return "remote open on, code set" if CodeStore(s.code_file).is_set() else \
        "remote open on but NO code set (doorface mqtt set-code): every command is refused"


def check(cfg: dict, timeout: float = 5.0) -> str:
    """``OK ...`` / ``OFF ...``, or raises :class:`~edge.mqtt.settings.MqttError` with the reason (a wrong password,
    a CA that did not sign the broker's certificate, an unreachable broker)."""
    if not cfg["mqtt"]["enabled"]:
        return "OFF (mqtt.enabled = false)"
    s = from_config(cfg)
    probe = Settings(**{**s.__dict__, "client_id": f"{s.client_id}-check"})
    link = Link(probe, lambda *a: None, lambda mid, failed: None, will=False).open(timeout)
    try:
        seen = _availability(link, s.topic("availability"), min(1.0, timeout))
    finally:
        link.close()
    auth = f"as {s.username}" if s.username else "anonymously"
    tls = f"TLS verified against {s.ca or 'the system CAs'}" if s.tls else "NO TLS"
    return f"OK {s.where} {auth} ({tls}); {seen}; {_remote(s)}"
