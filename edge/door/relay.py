"""The door relay behind one small interface, failing closed.

- :class:`GpioZeroRelay`: gpiozero ``DigitalOutputDevice`` (Raspberry Pi; ``GPIOZERO_PIN_FACTORY=lgpio`` on a Pi 5).
  ``backend = "mock"`` uses gpiozero's own ``MockFactory``, whose pin records every state with its time; with
  ``DOORFACE_MOCK_RELAY_FILE`` set, the mock also writes its level (``1`` energised, ``0`` locked) to that file on
  every change, so another process (a fault-injection test, the re-lock helper) sees the strike as hardware would.
- :class:`JetsonRelay`: ``Jetson.GPIO`` (gpiozero does not support Jetson boards).

"Locked" always means de-energised. Wire a fail-secure strike so that de-energised is locked (see systemd/README.md):
then a crash, a power loss or a stopped service leaves the door locked. Relays start locked, ``close()`` locks
and may be called twice, and both are context managers.

The re-lock helper (``doorface relay --lock``, the service's ExecStartPre/ExecStopPost) must lock the strike however
the config looks: :func:`relock_chain` tries the configured relay, the last good settings (:func:`remember_good`:
recorded in ``<state.dir>/relay-last-good.json`` by ``doorface config --validate`` and by every daemon start once
its relay locked) and last the pin the installer baked into the unit, and says what failed and what it locked.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from edge.errors import RelayError

log = logging.getLogger("doorface")


class Relay:
    """Interface: ``lock()``, ``unlock()``, ``is_unlocked``, ``close()``; plus :meth:`pulse`."""

    def __init__(self):
        self._timer: Optional[threading.Timer] = None
        # Re-entrant: a re-lock from the same thread (a callback, a handler) can never wait on its own pulse.
        self._lock = threading.RLock()
        #: Called with True (energised) or False (locked) after each change of the strike, on the thread that made
        #: it (the frame loop or the pulse timer). It must not block; what it raises is swallowed.
        self.on_change: Optional[Callable[[bool], None]] = None
        self._state: Optional[bool] = None

    def _changed(self, on: bool) -> None:
        if on == self._state:
            return
        self._state = on
        if self.on_change is not None:
            try:
                self.on_change(on)
            except Exception:   # telling about the strike must never stop it from locking
                pass

    # Backends implement these two.
    def _energise(self) -> None:
        raise NotImplementedError

    def _deenergise(self) -> None:
        raise NotImplementedError

    @property
    def is_unlocked(self) -> bool:
        raise NotImplementedError

    def lock(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._deenergise()
            self._changed(False)

    def unlock(self) -> None:
        with self._lock:
            self._energise()
            self._changed(True)

    def pulse(self, seconds: float) -> None:
        """Unlock now and lock again after ``seconds`` on a timer thread (independent of the frame loop)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._energise()
            self._changed(True)
            self._timer = threading.Timer(seconds, self.lock)
            self._timer.daemon = True
            self._timer.start()

    def close(self) -> None:
        """Lock and release the pin; safe to call twice (a closed relay is not reopened)."""
        if getattr(self, "_closed", False):
            return
        try:
            self.lock()
        finally:
            self._closed = True
            self._close()

    def _close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class GpioZeroRelay(Relay):
    """A relay on a GPIO pin via gpiozero. ``backend``: None (gpiozero's default), ``"mock"``, or a pin factory
    name such as ``"lgpio"``."""

    def __init__(self, pin, active_high: bool = True, backend: Optional[str] = None):
        super().__init__()
        self.pin, self.active_high, self.backend = pin, active_high, backend
        self._dev = None

    def open(self) -> "GpioZeroRelay":
        if self._dev is None:
            try:
                from gpiozero import DigitalOutputDevice

                factory = None
                if self.backend == "mock":
                    from gpiozero.pins.mock import MockFactory

                    factory = MockFactory()
                elif self.backend:
                    factory = _named_factory(self.backend)
                self._dev = DigitalOutputDevice(self.pin, active_high=self.active_high, initial_value=False,
                                                pin_factory=factory)
                self._pin = self._dev.pin  # kept for timeline() after close
                self._span = [len(getattr(self._pin, "states", [])) - 1, None]  # states while we drive the pin
            except Exception as exc:  # gpiozero raises many kinds (BadPinFactory, PinInvalidPin, ...)
                raise RelayError(f"cannot open relay on pin {self.pin!r} ({self.backend or 'gpiozero'}): "
                                 f"{_one_line(exc)}") from None
        return self

    def _energise(self):
        self.open()._dev.on()
        self._mirror(True)

    def _deenergise(self):
        self.open()._dev.off()  # opening drives the pin to its locked level (initial_value=False)
        self._mirror(False)

    def _mirror(self, on: bool) -> None:
        """Mock backend: the level into ``DOORFACE_MOCK_RELAY_FILE`` (written in place: one byte, no rename)."""
        path = os.environ.get("DOORFACE_MOCK_RELAY_FILE") if self.backend == "mock" else None
        if path:
            with open(path, "w") as f:
                f.write("1" if on else "0")

    @property
    def is_unlocked(self) -> bool:
        return bool(self._dev is not None and self._dev.value)

    def _close(self):
        if self._dev is not None:
            self._span[1] = len(getattr(self._pin, "states", []))
            self._dev.close()
            self._dev = None   # closed: reads as locked; a later lock() would reopen the pin at its locked level

    def timeline(self) -> List[Tuple[float, bool]]:
        """Mock backend only: ``[(seconds since first state, energised)]`` of the physical pin level."""
        pin = getattr(self, "_pin", None)
        if self.backend != "mock" or pin is None:
            return []
        states = pin.states[self._span[0]:self._span[1]]
        level_on = self.active_high
        out, t = [], 0.0
        for i, s in enumerate(states):   # MockPin timestamps are seconds since the previous state change
            t += s.timestamp if i else 0.0
            out.append((t, bool(s.state) == level_on))
        return out


def _named_factory(name: str):
    import importlib

    mods = {"lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"), "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
            "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"), "native": ("gpiozero.pins.native", "NativeFactory")}
    if name not in mods:
        raise RelayError(f"unknown gpiozero pin factory {name!r}")
    mod, cls = mods[name]
    return getattr(importlib.import_module(mod), cls)()


class JetsonRelay(Relay):
    """A relay on a Jetson header pin (BOARD numbering) via Jetson.GPIO."""

    def __init__(self, pin: int, active_high: bool = True):
        super().__init__()
        self.pin, self.active_high = int(pin), active_high
        self._gpio = None
        self._on = False

    def open(self) -> "JetsonRelay":
        if self._gpio is None:
            try:
                import Jetson.GPIO as GPIO
            except ImportError as exc:
                raise RelayError(f"Jetson.GPIO is not installed: {exc}") from None
            GPIO.setmode(GPIO.BOARD)
            off = GPIO.LOW if self.active_high else GPIO.HIGH
            GPIO.setup(self.pin, GPIO.OUT, initial=off)
            self._gpio = GPIO
        return self

    def _level(self, on: bool):
        g = self._gpio
        return (g.HIGH if on else g.LOW) if self.active_high else (g.LOW if on else g.HIGH)

    def _energise(self):
        self.open()._gpio.output(self.pin, self._level(True))
        self._on = True

    def _deenergise(self):
        self.open()._gpio.output(self.pin, self._level(False))
        self._on = False

    @property
    def is_unlocked(self) -> bool:
        return self._on

    def _close(self):
        if self._gpio is not None:
            self._gpio.cleanup(self.pin)
            self._gpio = None


def make_relay(backend: str, pin, active_high: bool) -> Relay:
    """``backend``: ``gpiozero`` (default pin factory), ``lgpio``/``rpigpio``/``native``, ``jetson`` or ``mock``."""
    if backend == "jetson":
        return JetsonRelay(int(pin), active_high)
    if backend == "gpiozero":
        return GpioZeroRelay(pin, active_high, None)
    return GpioZeroRelay(pin, active_high, backend)


def relock(backend: str, pin, active_high: bool) -> None:
    """Drive the strike to its locked level and release the pin: what the service runs before it starts and after
    it stops, whatever became of the daemon (``doorface relay --lock``)."""
    relay = make_relay(backend, pin, active_high)
    try:
        relay.lock()
    finally:
        relay.close()


#: The re-lock helper's record of relay settings known to work, in the state directory.
LAST_GOOD = "relay-last-good.json"
#: Who wrote a record: ``driven`` (a daemon started and locked this relay: the pin it may leave energised) and
#: ``validated`` (the last config that passed ``doorface config --validate``, or started a daemon).
ROLES = ("driven", "validated")


@dataclass(frozen=True)
class RelaySpec:
    """One relay to lock: backend, pin, polarity, and where the helper got it from (for its report)."""

    backend: str
    pin: str
    active_high: bool
    origin: str = ""

    def __str__(self) -> str:
        return f"{self.backend} pin {self.pin} active-{'high' if self.active_high else 'low'}"

    def same_pin(self, other: "RelaySpec") -> bool:
        """Whether both name the same line ("17", "GPIO17" and "BCM17" do; Jetson BOARD numbers are their own)."""
        return (self.backend == "jetson") == (other.backend == "jetson") and _pin_key(self.pin) == _pin_key(other.pin)


def _pin_key(pin) -> str:
    m = re.fullmatch(r"(?:GPIO|BCM)?(\d+)", str(pin).strip())
    return str(int(m.group(1))) if m else str(pin).strip()


def spec_of(relay: Relay) -> Optional[RelaySpec]:
    """The settings of a GPIO relay (None for anything else, e.g. a test double)."""
    if isinstance(relay, JetsonRelay):
        return RelaySpec("jetson", str(relay.pin), relay.active_high)
    if isinstance(relay, GpioZeroRelay):
        return RelaySpec(relay.backend or "gpiozero", str(relay.pin), relay.active_high)
    return None


def remember_good(state_dir, backend: str, pin, active_high: bool, by: str = "daemon") -> str:
    """Record relay settings known to be good as the re-lock helper's fallback, atomically (a temporary file, then
    a rename; mode 0644: whoever wrote it, root or the service user, the other reads it). ``by``: ``"daemon"`` (a
    daemon started and locked this relay; recorded as both ``driven`` and ``validated``) or ``"validate"``
    (``doorface config --validate``). Never raises: returns one line saying what was recorded, or why not. The
    state directory is never created here (a development machine gets no ``/var/lib/doorface``)."""
    state = Path(state_dir)
    path = state / LAST_GOOD
    rec = {"backend": str(backend), "pin": str(pin), "active_high": bool(active_high),
           "by": "doorface run" if by == "daemon" else "doorface config --validate",
           "at": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    try:
        if not state.is_dir():
            raise FileNotFoundError(f"no state directory {state}")
        try:
            data = json.loads(path.read_text())
            data = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            data = {}
        data.update({"format": "doorface-relay-last-good", "version": 1})
        for role in (ROLES if by == "daemon" else ("validated",)):
            data[role] = rec
        tmp = path.with_name(f".{LAST_GOOD}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        return f"relay settings not recorded for the re-lock helper ({exc})"
    return f"relay {RelaySpec(rec['backend'], rec['pin'], rec['active_high'])} recorded for the re-lock helper in {path}"


def remember_relay(state_dir, relay: Relay) -> None:
    """:func:`remember_good` for the relay a daemon has just locked (logged; a relay that is no GPIO relay, such as a
    test double, is not recorded). For :meth:`edge.door.daemon.Daemon.run`, right after its first ``relay.lock()``."""
    spec = spec_of(relay)
    if spec is not None:
        line = remember_good(state_dir, spec.backend, spec.pin, spec.active_high, by="daemon")
        (log.info if " recorded " in line else log.warning)(line)


def recorded(state_dir) -> Dict[str, RelaySpec]:
    """The helper's records (``{"driven": spec, "validated": spec}``, either may be absent; {} without a file). An
    unreadable file, or a record of the wrong shape, is a :class:`RelayError`."""
    path = Path(state_dir) / LAST_GOOD
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RelayError(f"cannot read the last good relay settings {path}: {exc}") from None
    out = {}
    for role in ROLES:
        rec = data.get(role) if isinstance(data, dict) else None
        if rec is None:
            continue
        if not (isinstance(rec, dict) and isinstance(rec.get("backend"), str) and isinstance(rec.get("pin"), str)
                and rec["pin"].strip() and isinstance(rec.get("active_high"), bool)):
            raise RelayError(f"the last good relay settings {path} are malformed ({role}: {rec!r})")
        out[role] = RelaySpec(rec["backend"], rec["pin"], rec["active_high"],
                              f"last good: {rec.get('by', '?')} at {rec.get('at', '?')}, {path}")
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def relock_chain(configured, records: Dict[str, RelaySpec], baked: Optional[RelaySpec],
                 say: Callable[[str, bool], None]) -> List[RelaySpec]:
    """Lock the strike whatever the config says; returns the relays locked (empty: none could be).

    ``configured`` is the config's relay (a :class:`RelaySpec`) or why it cannot be used (a string). With a usable
    config, the pin the last daemon drove is locked first when the config now names another (edited while the door
    ran), then the configured one (last, so its polarity wins). When the configured relay fails, every recorded
    relay is tried (the last daemon's, the last validated), and the installer's ``baked`` one only if none of
    those locked. ``say(line, ok)`` gets one line per relay locked (ok) and per failure."""
    locked: List[RelaySpec] = []

    def attempt(spec: RelaySpec) -> bool:
        if any(spec.same_pin(done) for done in locked):
            return True
        try:
            relock(spec.backend, spec.pin, spec.active_high)
        except Exception as exc:  # any failure (bad pin, missing library, busy line): say it, try the next
            say(f"could not lock {spec} ({spec.origin}): {_one_line(exc)}", False)
            return False
        locked.append(spec)
        say(f"relay locked: {spec} ({spec.origin})", True)
        return True

    driven = records.get("driven")
    if isinstance(configured, RelaySpec):
        if driven is not None and not driven.same_pin(configured):
            attempt(driven)
        if attempt(configured):
            return locked
    else:
        say(f"cannot use the configured relay: {configured}", False)
    for spec in (driven, records.get("validated")):
        if spec is not None:
            attempt(spec)
    if not locked and baked is not None:
        attempt(baked)
    return locked


def wait_locked(relay: Relay, timeout: float) -> bool:
    """Poll until the relay is locked (for tests and shutdown). Returns whether it is."""
    end = time.monotonic() + timeout
    while relay.is_unlocked and time.monotonic() < end:
        time.sleep(0.01)
    return not relay.is_unlocked
