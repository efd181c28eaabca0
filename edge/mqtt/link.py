"""One connection to the broker: paho-mqtt 2 (``CallbackAPIVersion.VERSION2``), MQTT 5, clean start, TLS verified,
the last will ``offline`` on ``<base>/availability``.

A :class:`Link` is used for one connection only: when it drops, the bridge throws it away with whatever paho still
held for it and makes a new one (so nothing piles up inside paho across an outage); what was not acknowledged is
sent again from the bridge's own bookkeeping. paho's own queue is bounded as well (:data:`WINDOW`)."""
from __future__ import annotations

import logging
import ssl
import threading
from typing import Callable, Optional

from edge.mqtt.settings import MqttError, Settings, read_password

log = logging.getLogger("doorface")

#: QoS 1 messages in flight (sent, not yet acknowledged) at most.
WINDOW = 50


def require_paho():
    try:
        from paho.mqtt import client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
    except ImportError:
        raise MqttError("paho-mqtt is not installed (pip install 'paho-mqtt>=2,<3', part of the edge extra)") from None
    return mqtt, Properties, PacketTypes


def tls_error(exc: BaseException) -> str:
    """One line for a TLS failure (the broker's certificate not signed by the configured CA, a wrong host name)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate failed verification ({exc.verify_message}; is mqtt.ca the CA that " \
               "signed it, and mqtt.host a name in it?)"
    return f"TLS: {getattr(exc, 'reason', None) or exc}"


class Link:
    """``on_message(topic, payload, retained, expiry)`` runs on paho's thread; ``on_ack(mid, failed_reason)``
    too. ``will``: the last will ``offline`` (the bridge's own connection; not a probe's). Construction does no
    I/O; :meth:`open` connects and waits for the broker's answer."""

    def __init__(self, settings: Settings, on_message: Callable, on_ack: Callable[[int, Optional[str]], None],
                 will: bool = True):
        self.s, self.will = settings, will
        self.on_message, self.on_ack = on_message, on_ack
        self.client = None
        self._answered = threading.Event()
        self.dropped = threading.Event()
        self.refused: Optional[str] = None
        self.drop_reason: Optional[str] = None

    def _client(self):
        mqtt, _, _ = require_paho()
        s = self.s
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
        if s.tls:
            c.tls_set(ca_certs=s.ca or None, certfile=s.cert or None, keyfile=s.key or None,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if s.username:
            c.username_pw_set(s.username, read_password(s.password_file) if s.password_file else None)
        if self.will:
            c.will_set(s.topic("availability"), "offline", qos=1, retain=True)
        c.max_inflight_messages_set(WINDOW)
        c.max_queued_messages_set(WINDOW * 2)
        c.connect_timeout = 5.0
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_publish, c.on_message = self._on_publish, self._on_message
        return c

    def open(self, timeout: float = 10.0) -> "Link":
        """Connect and wait for CONNACK; raises :class:`MqttError` with the reason (refused, unreachable, TLS)."""
        self.client = c = self._client()
        try:
            c.connect(self.s.host, self.s.port, keepalive=self.s.keepalive, clean_start=True)
        except ssl.SSLError as exc:
            raise MqttError(f"{self.s.where}: {tls_error(exc)}") from None
        except (OSError, ValueError) as exc:
            raise MqttError(f"{self.s.where}: {getattr(exc, 'strerror', None) or exc}") from None
        c.loop_start()
        if not self._answered.wait(timeout):
            self.close(clean=False)
            raise MqttError(f"{self.s.where}: no answer from the broker within {timeout:g} s")
        if self.refused:
            self.close(clean=False)
            raise MqttError(f"{self.s.where}: the broker refused the connection: {self.refused}")
        if self.dropped.is_set():
            self.close(clean=False)
            raise MqttError(f"{self.s.where}: the broker closed the connection before answering ({self.drop_reason}"
                            f"{'; does it expect TLS (mqtt.tls)?' if not self.s.tls else ''})")
        return self

    # -- paho callbacks (paho's thread) ---------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = str(reason_code)
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.drop_reason = str(reason_code)
        self.dropped.set()
        self._answered.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        failed = str(reason_code) if getattr(reason_code, "is_failure", False) else None
        self.on_ack(mid, failed)

    def _on_message(self, client, userdata, msg):
        props = getattr(msg, "properties", None)
        expiry = getattr(props, "MessageExpiryInterval", None) if props is not None else None
        try:
            self.on_message(msg.topic, bytes(msg.payload), bool(msg.retain), expiry)
        except Exception as exc:    # never let one message end paho's loop
            log.error("mqtt: message on %s not handled: %s: %s", msg.topic, exc.__class__.__name__, exc)

    # -- the bridge's side -----------------------------------------------------------------------------
    @property
    def up(self) -> bool:
        return self.client is not None and not self.dropped.is_set() and self.client.is_connected()

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> Optional[int]:
        """Hand one message to paho; its mid (acknowledged later through ``on_ack`` for QoS 1), or None when the
        connection is gone."""
        if not self.up:
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid if info.rc == 0 else None

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """MQTT 5 options: retain-as-published (a command published with the retain flag is seen as retained even
        when it arrives live, and refused) and no-local (the bridge never hears its own messages)."""
        if self.up:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            self.client.subscribe(topic, options=SubscribeOptions(qos=qos, noLocal=True, retainAsPublished=True))

    def close(self, clean: bool = True) -> None:
        """End the connection and paho's thread. ``clean``: a DISCONNECT first (the broker then sends no last
        will); otherwise, or when the broker does not take it within a second, the socket is just closed (a stalled
        broker never holds the bridge)."""
        c, self.client = self.client, None
        if c is None:
            return
        if clean and not self.dropped.is_set():
            c.disconnect()
            self.dropped.wait(1.0)
        sock = c.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        c.loop_stop()
