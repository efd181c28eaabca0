"""What goes on the broker: the topics under ``<base>/``, the event payload of a decision, the lock's state, and the
one Home Assistant device discovery message. Pure functions: no I/O.

Event payloads carry the access log's ``seq`` (a consumer de-duplicates by it) and never an embedding. Where
Frigate and Double Take have a key for the same thing it is kept: ``name`` (the person, as Double Take's ``name``),
``score`` and ``camera`` (this door's id)."""
from __future__ import annotations

import json
import re
from typing import Optional, Tuple

from edge import __version__
from edge.mqtt.settings import Settings

#: Home Assistant event types, in the order of the discovery message.
EVENT_TYPES = ("granted", "denied", "spoof", "locked_out", "remote_open", "remote_rejected")
#: The lock's states on ``lock/state`` (Home Assistant's defaults for state_locked, state_open, state_jammed).
LOCKED, OPEN, JAMMED = "LOCKED", "OPEN", "JAMMED"
#: Snapshot files the door writes (edge.door.accesslog.save_snapshot); nothing else is ever read.
SNAPSHOT_NAME = re.compile(r"denied-[0-9]{1,12}\.[0-9]{1,6}\.jpg")
#: The lock's command template in Home Assistant: the action, the code, and when it was sent (its freshness).
COMMAND_TEMPLATE = '{"action": {{ value | tojson }}, "code": {{ code | tojson }}, "ts": {{ now().timestamp() }}}'
#: Fields of a published event (docs and tests).
EVENT_KEYS = ("event_type", "person", "name", "user", "score", "margin", "liveness", "reason", "ts", "seq", "camera",
              "snapshot", "catchup")


def event_type(decision: str, reason: Optional[str]) -> Optional[str]:
    """A decision kind -> Home Assistant event type (None: not an event)."""
    if decision == "grant":
        return "granted"
    if decision == "deny":
        return "spoof" if reason == "spoof" else "denied"
    if decision == "lockout":
        return "locked_out"
    if decision in ("remote_open", "remote_rejected"):
        return decision
    return None


def _num(value, digits: int = 4):
    try:
        return None if value is None else round(float(value), digits)
    except (TypeError, ValueError):
        return None


def event_payload(rec: dict, door: str, catchup: bool = False) -> Optional[dict]:
    """The ``event`` payload of a decision record (live from the socket, or a row of the access log: ``catchup``,
    without margin and liveness, which the log does not keep). None for a record that is not an event."""
    kind = event_type(rec.get("decision", ""), rec.get("reason"))
    if kind is None or rec.get("seq") is None:
        return None
    remote = kind.startswith("remote_")
    who = rec.get("identity")
    person = None if remote else who
    return {"event_type": kind, "person": person, "name": person, "user": who if remote else None,
            "score": _num(rec.get("score")), "margin": _num(rec.get("margin")),
            "liveness": _num(rec.get("liveness")), "reason": rec.get("reason") or "", "ts": _num(rec.get("ts"), 3),
            "seq": int(rec["seq"]), "camera": door, "snapshot": bool(snapshot_name(rec)), "catchup": catchup}


def snapshot_name(rec: dict) -> Optional[str]:
    """The door's snapshot file of a denial or spoof record (its name only, checked), else None."""
    name = rec.get("snapshot")
    if not isinstance(name, str) or not SNAPSHOT_NAME.fullmatch(name):
        return None
    return name if event_type(rec.get("decision", ""), rec.get("reason")) in ("denied", "spoof") else None


def lock_state(relay_state: Optional[str]) -> Optional[str]:
    """A ``relay`` record's state -> ``lock/state``: the strike energised is OPEN (one pulse), a fault JAMMED."""
    return {"locked": LOCKED, "unlocked": OPEN, "fault": JAMMED}.get(relay_state or "")


def camera_state(state: Optional[str]) -> Optional[str]:
    """A ``camera`` record's state -> the camera health binary sensor (ON: frames arrive)."""
    if not state:
        return None
    return "ON" if state == "connected" else "OFF"


def encode(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def discovery(s: Settings, code_format: str = r"^.{6,64}$") -> Tuple[str, dict]:
    """``(topic, payload)`` of the one retained device discovery message: a lock, an event, a sensor for the last
    person, an image for snapshots and a binary sensor for the camera's health."""
    uid = f"doorface_{s.door_id}"
    t = s.topic
    cmps = {
        "lock": {"p": "lock", "unique_id": f"{uid}_lock", "name": "Door", "command_topic": t("lock/set"),
                 "state_topic": t("lock/state"), "command_template": COMMAND_TEMPLATE, "code_format": code_format,
                 "payload_open": "OPEN", "payload_lock": "LOCK", "payload_unlock": "UNLOCK",
                 "state_locked": LOCKED, "state_open": OPEN, "state_jammed": JAMMED, "retain": False,
                 "optimistic": False},
        "event": {"p": "event", "unique_id": f"{uid}_event", "name": "Access", "state_topic": t("event"),
                  "event_types": list(EVENT_TYPES), "icon": "mdi:door"},
        "person": {"p": "sensor", "unique_id": f"{uid}_last_person", "name": "Last person",
                   "state_topic": t("last_access"), "json_attributes_topic": t("last_access"),
                   "value_template": "{{ value_json.person or value_json.user or 'unknown' }}",
                   "icon": "mdi:account"},
        "snapshot": {"p": "image", "unique_id": f"{uid}_snapshot", "name": "Snapshot", "image_topic": t("snapshot"),
                     "content_type": "image/jpeg"},
        "camera": {"p": "binary_sensor", "unique_id": f"{uid}_camera", "name": "Camera",
                   "state_topic": t("camera"), "device_class": "connectivity", "payload_on": "ON",
                   "payload_off": "OFF", "entity_category": "diagnostic"},
    }
    payload = {"dev": {"ids": [uid], "name": f"doorface {s.door_id}", "mf": "doorface",
                       "mdl": "face-recognition door lock", "sw": __version__},
               "o": {"name": "doorface", "sw": __version__},
               "avty": [{"topic": t("availability")}], "qos": 1, "cmps": cmps}
    return f"{s.discovery_prefix}/device/{uid}/config", payload
