"""The door relay behind one small interface, failing closed.

- :class:`GpioZeroRelay`: gpiozero ``DigitalOutputDevice`` (Raspberry Pi; ``GPIOZERO_PIN_FACTORY=lgpio`` on a Pi 5).
  ``backend = "mock"`` uses gpiozero's own ``MockFactory``, whose pin records every state with its time; with
  ``DOORFACE_MOCK_RELAY_FILE`` set, the mock also writes its level (``1`` energised, ``0`` locked) to that file on
  every change, so another process (a fault-injection test, the re-lock helper) sees the strike as hardware would.
- :class:`JetsonRelay`: ``Jetson.GPIO`` (gpiozero does not support Jetson boards).

"Locked" always means de-energised. Wire a fail-secure strike so that de-energised is locked (see systemd/README.md):
then a crash, a power loss or a stopped service leaves the door locked. Relays start locked, ``close()`` locks
and may be called twice, and both are context managers.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Callable, List, Optional, Tuple

from edge.errors import RelayError


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
                raise RelayError(f"cannot open relay on GPIO {self.pin}: {exc}") from None
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


def wait_locked(relay: Relay, timeout: float) -> bool:
    """Poll until the relay is locked (for tests and shutdown). Returns whether it is."""
    end = time.monotonic() + timeout
    while relay.is_unlocked and time.monotonic() < end:
        time.sleep(0.01)
    return not relay.is_unlocked
