"""Pieces the MQTT tests and ``bench.mqtt`` share: a door that makes decisions at a set rate through the real events
seam, a subscriber that records what reaches the broker, a Home Assistant-like publisher of lock commands, and the
bridge's config for a test broker."""
from __future__ import annotations

import json
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from edge import config

KINDS = (("grant", "ann", "3 of last 5 frames"), ("deny", None, "unknown face"), ("deny", None, "spoof"),
         ("deny", None, "not enough agreeing frames"))


def bridge_config(broker, state_dir, socket_path, door_id: str = "test", **over) -> dict:
    """The door's config with ``[mqtt]`` pointing at ``broker`` (a :class:`bench.broker.Mosquitto`) as user door."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    pw = state.parent / f"{door_id}-broker-password"
    pw.write_text(broker.users["door"] + "\n")
    os.chmod(pw, 0o600)
    base = {"state.dir": str(state), "events.socket": str(socket_path), "mqtt.enabled": True,
            "mqtt.host": "localhost", "mqtt.port": broker.port, "mqtt.tls": broker.tls,
            "mqtt.ca": str(broker.pki["ca"]) if broker.tls else "", "mqtt.username": "door",
            "mqtt.password_file": str(pw), "mqtt.door_id": door_id, "mqtt.keepalive": 5,
            "relay.backend": "mock"}
    base.update(over)
    return config.load(None, base)


def write_config(cfg: dict, path) -> Path:
    """``cfg`` as a TOML file (the keys a test or bench sets; for ``doorface mqtt --config``)."""
    lines = []
    for section in ("state", "events", "mqtt", "relay"):
        lines.append(f"[{section}]")
        for k, v in cfg[section].items():
            lines.append(f"{k} = {json.dumps(v)}")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


class LoadDoor:
    """The door's events seam without a camera: the real :class:`EventBus` with the real access log and socket as
    sinks (what the daemon builds), fed ``rate`` synthetic decisions per minute. The bridge cannot tell it from the
    daemon; decisions go on whatever the bridge or the broker do."""

    def __init__(self, state_dir, socket_path, rate_per_min: float = 1000.0):
        self.state_dir, self.socket_path = Path(state_dir), Path(socket_path)
        self.every = 60.0 / rate_per_min
        self.published: List[int] = []
        self.lags: List[float] = []           # how late each publish was against its schedule (s)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "LoadDoor":
        from edge.door.accesslog import AccessLog
        from edge.door.events import CommandQueue, EventBus
        from edge.door.seam import SeamServer

        access = AccessLog(self.state_dir / "access.sqlite")
        self.server = SeamServer(self.socket_path, CommandQueue(), status=lambda: {"relay": "locked",
                                                                                   "camera": "connected"}).start()
        self.bus = EventBus([access, self.server], first_seq=access.first_seq()).start()
        self._thread = threading.Thread(target=self._run, name="load-door", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from edge.door.events import decision_record

        i, t0 = 0, time.monotonic()
        while not self._stop.is_set():
            due = t0 + i * self.every
            wait = due - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            self.lags.append(max(0.0, -wait))
            kind, who, reason = KINDS[i % len(KINDS)]
            rec = self.bus.publish(decision_record(kind, who, 0.9 if who else 0.3, reason, i, margin=0.1,
                                                   liveness=0.05 if reason == "spoof" else 0.98))
            self.published.append(rec["seq"])
            i += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.bus.close(timeout=5.0)


class Watcher:
    """A subscriber to ``doorface/#`` and ``homeassistant/#`` as user watcher: a persistent session (QoS 1 messages
    published while it reconnects after a broker restart are kept for it), reconnecting on its own. Records every
    event's seq, the retained state of each topic, snapshots."""

    def __init__(self, broker, client_id: str = "watcher", persistent: bool = True):
        from paho.mqtt import client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.broker = broker
        self.events: List[dict] = []
        self.rx: List[float] = []             # wall time each event arrived
        self.messages: Dict[str, list] = {}
        self.retained: Dict[str, bytes] = {}
        self.cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if broker.tls:
            c.tls_set(ca_certs=str(broker.pki["ca"]), cert_reqs=ssl.CERT_REQUIRED,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.username_pw_set("watcher", broker.users["watcher"])
        c.reconnect_delay_set(0.2, 1)
        c.on_connect, c.on_message = self._on_connect, self._on_message
        self.props = None
        if persistent:
            self.props = Properties(PacketTypes.CONNECT)
            self.props.SessionExpiryInterval = 3600
        self.persistent = persistent
        self.client = c

    def start(self) -> "Watcher":
        self.client.connect("localhost", self.broker.port, keepalive=5, clean_start=not self.persistent,
                            properties=self.props)
        self.client.loop_start()
        return self

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([("doorface/#", 1), ("homeassistant/#", 1)])

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.setdefault(msg.topic, []).append(bytes(msg.payload))
            if msg.retain or msg.topic.endswith(("availability", "lock/state", "camera", "last_access", "config")):
                self.retained[msg.topic] = bytes(msg.payload)
            if msg.topic.endswith("/event"):
                self.events.append(json.loads(msg.payload))
                self.rx.append(time.time())
            self.cond.notify_all()

    def wait(self, predicate: Callable[["Watcher"], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def seqs(self) -> List[int]:
        with self.cond:
            return [e["seq"] for e in self.events]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class HomeAssistant:
    """Publishes lock commands as Home Assistant's MQTT lock does (its command template: action, code, ts), as the
    broker user homeassistant."""

    def __init__(self, broker, base: str):
        from paho.mqtt import client as mqtt

        self.base = base
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-test", protocol=mqtt.MQTTv5)
        if broker.tls:
            c.tls_set(ca_certs=str(broker.pki["ca"]), cert_reqs=ssl.CERT_REQUIRED,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.username_pw_set("homeassistant", broker.users["homeassistant"])
        c.connect("localhost", broker.port, keepalive=5)
        c.loop_start()
        self.client = c

    def send(self, action: str = "OPEN", code: Optional[str] = None, ts="now", retain: bool = False,
             expiry: Optional[int] = None, raw: Optional[bytes] = None) -> bytes:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        body = {"action": action, "code": code}
        if ts == "now":
            body["ts"] = time.time()
        elif ts is not None:
            body["ts"] = ts
        payload = raw if raw is not None else json.dumps(body).encode()
        props = None
        if expiry is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry
        self.client.publish(f"{self.base}/lock/set", payload, qos=1, retain=retain, properties=props) \
            .wait_for_publish(5)
        return payload

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
