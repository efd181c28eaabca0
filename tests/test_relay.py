import time

import pytest

from edge.door.relay import GpioZeroRelay, make_relay, wait_locked
from edge.errors import RelayError


def test_mock_relay_starts_locked_and_pulses():
    r = make_relay("mock", "17", True)
    r.lock()
    assert not r.is_unlocked
    time.sleep(0.3)
    r.pulse(0.15)
    assert r.is_unlocked
    assert wait_locked(r, 1.0)
    r.close()
    r.close()  # twice is fine
    states = [on for _, on in r.timeline()]
    assert states == [False, True, False]
    t = r.timeline()
    assert t[1][0] == pytest.approx(0.3, abs=0.1)            # seconds since the first state, not deltas
    assert t[2][0] - t[1][0] == pytest.approx(0.15, abs=0.08)


def test_active_low_drives_the_opposite_level():
    r = GpioZeroRelay("17", active_high=False, backend="mock")
    r.lock()
    assert r._pin.state == 1       # high = de-energised for an active-low board
    r.unlock()
    assert r._pin.state == 0
    r.close()
    assert [on for _, on in r.timeline()] == [False, True, False]


def test_close_locks_during_a_pulse_and_cancels_the_timer():
    r = make_relay("mock", "17", True)
    r.pulse(5.0)
    assert r.is_unlocked
    r.close()
    assert r.timeline()[-1][1] is False


def test_second_pulse_extends_instead_of_stacking():
    r = make_relay("mock", "17", True)
    r.pulse(0.2)
    time.sleep(0.1)
    r.pulse(0.2)
    time.sleep(0.15)
    assert r.is_unlocked            # the first timer was cancelled
    assert wait_locked(r, 1.0)
    r.close()


def test_context_manager_locks_on_exception():
    r = make_relay("mock", "17", True)
    with pytest.raises(RuntimeError):
        with r:
            r.unlock()
            raise RuntimeError("boom")
    assert r.timeline()[-1][1] is False


def test_bad_pin_is_a_clear_error():
    from edge.errors import RelayError

    with pytest.raises(RelayError, match=r"^cannot open relay on pin 'NOT-A-PIN' \(mock\): NOT-A-PIN is not a valid"):
        make_relay("mock", "NOT-A-PIN", True).lock()


def test_relock_inside_a_pulse_cannot_deadlock():
    """The tester's SIGTERM-in-a-pulse deadlock: a re-lock from the thread that holds the relay's lock (as a signal
    handler running inside pulse() would) returns at once."""
    import threading

    from edge.door.relay import make_relay

    relay = make_relay("mock", "17", True)
    relay.pulse(5.0)
    done = threading.Event()

    def inside_pulse():
        with relay._lock:          # where pulse() is when a signal arrives
            relay.lock()
        done.set()
    t = threading.Thread(target=inside_pulse, daemon=True)
    t.start()
    assert done.wait(2.0), "re-lock deadlocked on the relay's own lock"
    assert not relay.is_unlocked
    relay.close()


def test_signal_handler_only_sets_the_stop_flag(tmp_path):
    import signal

    from edge import config
    from edge.build import daemon as Daemon
    from edge.door.relay import make_relay

    empty = tmp_path / "e.toml"
    empty.write_text("")
    relay = make_relay("mock", "17", True)
    d = Daemon(config.load(str(empty)), tmp_path, relay=relay, install_signals=False)
    relay.pulse(5.0)
    with relay._lock:               # even while the relay's lock is held, the handler returns and raises nothing
        d._on_term(signal.SIGTERM, None)
        d._on_term(signal.SIGTERM, None)   # a second signal during shutdown: the same flag again
    assert d._stop.is_set() and d.stopped_by == "SIGTERM"
    relay.close()
    assert not relay.is_unlocked


# --- the re-lock helper's last good relay and its fallback chain (issue 25, item 1) ---------------------------------

def test_last_good_relay_is_recorded_atomically_and_read_back(tmp_path):
    import json
    import stat

    from edge.door.relay import LAST_GOOD, RelaySpec, recorded, remember_good, remember_relay

    assert recorded(tmp_path) == {}
    line = remember_good(tmp_path, "mock", "27", False, by="validate")
    assert "recorded for the re-lock helper" in line
    rec = recorded(tmp_path)
    assert set(rec) == {"validated"} and rec["validated"] == RelaySpec("mock", "27", False, rec["validated"].origin)
    assert "doorface config --validate" in rec["validated"].origin
    assert stat.S_IMODE((tmp_path / LAST_GOOD).stat().st_mode) == 0o644   # root writes it, the service user reads it
    # A daemon start records the relay it drives as both: driven and validated.
    relay = make_relay("mock", "GPIO17", True)
    relay.lock()
    remember_relay(tmp_path, relay)
    relay.close()
    rec = recorded(tmp_path)
    assert (rec["driven"].pin, rec["validated"].pin, rec["driven"].active_high) == ("GPIO17", "GPIO17", True)
    assert "doorface run" in rec["driven"].origin
    # A later validation replaces "validated" only: the pin the running daemon drives is kept.
    remember_good(tmp_path, "mock", "22", True, by="validate")
    rec = recorded(tmp_path)
    assert rec["driven"].pin == "GPIO17" and rec["validated"].pin == "22"
    assert [p.name for p in tmp_path.iterdir()] == [LAST_GOOD]               # no temporary file left behind
    # Never creates a state directory, never raises.
    missing = tmp_path / "nope"
    assert "not recorded" in remember_good(missing, "mock", "17", True) and not missing.exists()
    # A malformed record is one clear error (the helper says it and goes on to the baked-in pin).
    (tmp_path / LAST_GOOD).write_text(json.dumps({"driven": {"backend": "mock", "pin": 17, "active_high": True}}))
    with pytest.raises(RelayError, match="malformed"):
        recorded(tmp_path)
    (tmp_path / LAST_GOOD).write_text("{not json")
    with pytest.raises(RelayError, match="cannot read the last good relay settings"):
        recorded(tmp_path)


def test_same_pin_knows_the_aliases():
    from edge.door.relay import RelaySpec

    a = RelaySpec("gpiozero", "17", True)
    assert a.same_pin(RelaySpec("lgpio", "GPIO17", False)) and a.same_pin(RelaySpec("mock", "BCM17", True))
    assert not a.same_pin(RelaySpec("gpiozero", "27", True))
    assert not a.same_pin(RelaySpec("jetson", "17", True))      # Jetson BOARD numbers are another numbering


def _chain(configured, records, baked):
    from edge.door.relay import relock_chain

    lines = []
    locked = relock_chain(configured, records, baked, lambda line, ok: lines.append((ok, line)))
    return [str(s) for s in locked], lines


def test_relock_chain_tries_configured_then_last_good_then_baked_in():
    from edge.door.relay import RelaySpec

    good = RelaySpec("mock", "17", True, "config")
    driven = RelaySpec("mock", "27", True, "last good: doorface run")
    validated = RelaySpec("mock", "22", True, "last good: doorface config --validate")
    baked = RelaySpec("mock", "5", True, "baked")
    bad = RelaySpec("mock", "GPIO 27", True, "config")
    # The config works: the pin the last daemon drove (the config now names another) first, then the configured one.
    assert _chain(good, {"driven": driven, "validated": validated}, baked)[0] == [
        "mock pin 27 active-high", "mock pin 17 active-high"]
    assert _chain(good, {"driven": RelaySpec("mock", "GPIO17", False)}, baked)[0] == ["mock pin 17 active-high"]
    # The configured pin fails: every recorded relay, not the baked-in one; each failure is one line.
    locked, lines = _chain(bad, {"driven": driven, "validated": validated}, baked)
    assert locked == ["mock pin 27 active-high", "mock pin 22 active-high"]
    assert [ok for ok, _ in lines] == [True, False, True]
    assert lines[1][1].startswith("could not lock mock pin GPIO 27 active-high (config): cannot open relay")
    # An unusable config (a string: why) and no record: the baked-in pin.
    locked, lines = _chain("config: relay.backend must be one of ...", {}, baked)
    assert locked == ["mock pin 5 active-high"] and lines[0] == (False, "cannot use the configured relay: config: "
                                                                         "relay.backend must be one of ...")
    # Nothing works: nothing locked, every failure said.
    locked, lines = _chain(bad, {"validated": RelaySpec("mock", "nonsense", True, "v")},
                           RelaySpec("mock", "BOARD1", True, "baked"))
    assert locked == [] and len(lines) == 3 and not any(ok for ok, _ in lines)
    assert all("\n" not in line for _, line in lines)
