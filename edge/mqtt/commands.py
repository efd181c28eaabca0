"""What makes a command on ``<base>/lock/set`` acceptable, in the order it is checked:

1. not retained (a retained command would act again at every restart: it is never acted on, and cleared);
2. a JSON object ``{"action": "OPEN" | "UNLOCK" | "LOCK", "code": "...", "ts": ...}`` of at most 1 KiB;
3. fresh: MQTT 5 message expiry of at most ``command_max_age`` seconds (the broker drops it when it runs out), or a
   ``ts`` (Unix time, what Home Assistant's command template adds) at most that old; and not kept waiting at the
   bridge that long;
4. not a replay: the same payload seen within twice that window (remembered across restarts) is refused;
5. ``LOCK`` is refused (the door locks itself after every pulse); ``OPEN`` and ``UNLOCK`` both mean one pulse;
6. remote open on, over TLS, with broker authentication, and a code set;
7. the code matches the stored PBKDF2 hash. A bad code is the only refusal that counts towards the door's lockout.

Arrivals are rate-limited (a token bucket): a flood is dropped before any of this and counted in the next command's
log line. Every command that gets through the limit becomes one row of the access log (``remote_open`` or
``remote_rejected`` with the reason), written by the door.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Optional

from edge.mqtt.code import CodeStore
from edge.mqtt.history import BridgeState
from edge.mqtt.settings import Settings

MAX_PAYLOAD = 1024
#: How far in the future a command's ``ts`` may be (clock skew between Home Assistant and the door), seconds.
SKEW = 2.0
ACTIONS = ("OPEN", "UNLOCK", "LOCK")


@dataclass(frozen=True)
class Incoming:
    payload: bytes
    retained: bool
    expiry: Optional[int]          # MQTT 5 message expiry interval as delivered (None: the sender set none)
    received: float                # time.monotonic() at arrival


@dataclass(frozen=True)
class Verdict:
    open: bool
    reason: str
    count: bool = False            # counts towards the door's lockout (a bad code)
    digest: str = ""


class RateLimit:
    """A token bucket: ``burst`` commands at once, then one per ``every`` seconds; :meth:`take` says whether this
    one may pass, :meth:`dropped_since` how many were dropped since it was last asked."""

    def __init__(self, burst: int = 5, every: float = 1.0):
        self.burst, self.every = burst, every
        self.tokens = float(burst)
        self.at = time.monotonic()
        self.dropped = 0

    def take(self, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) / self.every)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.dropped += 1
        return False

    def dropped_since(self) -> int:
        n, self.dropped = self.dropped, 0
        return n


def _parse(payload: bytes):
    """``(action, code, ts)`` or a reason string."""
    if len(payload) > MAX_PAYLOAD:
        return f"malformed command: longer than {MAX_PAYLOAD} bytes"
    try:
        cmd = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "malformed command: not JSON"
    if not isinstance(cmd, dict):
        return "malformed command: not a JSON object"
    action = cmd.get("action")
    if action not in ACTIONS:
        return f"malformed command: action must be one of {', '.join(ACTIONS)}"
    ts = cmd.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts)):
        return "malformed command: ts must be a Unix time"
    return action, cmd.get("code"), ts


class CommandGate:
    """Judges one command (:meth:`judge`); see the module docstring for the order."""

    def __init__(self, settings: Settings, codes: CodeStore, state: BridgeState):
        self.s, self.codes, self.state = settings, codes, state

    def _fresh(self, msg: Incoming, ts, now_mono: float, now_wall: float) -> Optional[str]:
        """None when fresh, else why not."""
        age_max = self.s.command_max_age
        if now_mono - msg.received > age_max:
            return f"expired: waited {now_mono - msg.received:.1f} s at the bridge (max {age_max:g} s)"
        if msg.expiry is not None and msg.expiry > age_max:
            return f"message expiry {msg.expiry} s is longer than {age_max:g} s (mqtt.command_max_age)"
        if ts is not None:
            age = now_wall - ts
            if age > age_max or age < -SKEW:
                return (f"expired: sent {age:.1f} s ago (max {age_max:g} s; are the clocks of Home Assistant and "
                        "the door in step?)")
        elif msg.expiry is None:
            return "no freshness: neither MQTT 5 message expiry nor ts (a command could be replayed any time later)"
        return None

    def judge(self, msg: Incoming, now_mono: Optional[float] = None, now_wall: Optional[float] = None) -> Verdict:
        now_mono = time.monotonic() if now_mono is None else now_mono
        now_wall = time.time() if now_wall is None else now_wall
        digest = hashlib.sha256(msg.payload).hexdigest()
        if msg.retained:
            return Verdict(False, "retained command ignored (and cleared)", digest=digest)
        parsed = _parse(msg.payload)
        if isinstance(parsed, str):
            return Verdict(False, parsed, digest=digest)
        action, code, ts = parsed
        stale = self._fresh(msg, ts, now_mono, now_wall)
        if stale:
            return Verdict(False, stale, digest=digest)
        if not self.state.remember(digest):
            return Verdict(False, "replayed command (the same command was seen moments ago)", digest=digest)
        if action == "LOCK":
            return Verdict(False, "lock: the door locks itself after every pulse", digest=digest)
        refusal = self.s.remote_open_refusal()
        if refusal:
            return Verdict(False, refusal, digest=digest)
        if not self.codes.is_set():
            return Verdict(False, "no code set (doorface mqtt set-code)", digest=digest)
        if not self.codes.verify(code):
            return Verdict(False, "bad code", count=True, digest=digest)
        return Verdict(True, f"{action.lower()} with a good code", digest=digest)
