import time

import pytest

from edge.door.relay import GpioZeroRelay, make_relay, wait_locked


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

    with pytest.raises(RelayError, match="GPIO"):
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
