"""What the door gives the MQTT bridge through its events seam (no broker here): a ``reject`` command logged as
``remote_rejected`` and, for a bad code, counted towards the lockout; ``open`` that asks for an enrolled face in
view; the strike's and camera's state in the hello line; a relay fault told before the door stops; decision records
with margin, liveness and the snapshot's file name."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

import fakedoor
from edge.door.camera import FakeSource
from edge.door.decision import DecisionPolicy, PolicyConfig
from edge.door.events import CallableSink
from edge.door.seam import SeamClient


@pytest.fixture
def sock():
    d = Path(tempfile.mkdtemp(prefix="dfd", dir="/tmp"))
    yield d / "events.sock"
    shutil.rmtree(d, ignore_errors=True)


def running(tmp_path, sock, scene, relay=None, sinks=(), **over):
    from edge.build import daemon
    from edge.door.relay import make_relay

    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    cfg = fakedoor.fake_config(state, **{"events.socket": str(sock), **over})
    an = fakedoor.analyzer()
    fakedoor.enroll_ann(tmp_path, state, an)
    relay = relay or make_relay("mock", "17", True)
    d = daemon(cfg, analyzer=an, source=FakeSource(fn=lambda i: scene["img"], live=True, fps=20), relay=relay,
               install_signals=False, sinks=list(sinks))
    out = {}

    def target():
        try:
            out["rc"] = d.run()
        except Exception as exc:
            out["error"] = exc

    th = threading.Thread(target=target, daemon=True)
    th.start()
    end = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < end:
        time.sleep(0.02)
    return d, relay, th, out


def outcome(d, rid, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for e in list(d.decisions):
            if e.get("command_id") == rid:
                return e
        time.sleep(0.02)
    raise AssertionError(f"no decision for {rid}")


def test_count_denial_counts_towards_the_lockout_without_stopping_faces():
    p = DecisionPolicy(PolicyConfig(threshold=0.5, min_margin=0.1, stranger_margin=0.1))
    got = [p.count_denial(float(i)) for i in range(5)]
    assert got[:4] == [None] * 4 and got[4].kind == "lockout"
    assert p.locked_out(4.5) and not p.blocks_faces(4.5)          # a bad code says nothing about the faces
    assert not p.locked_out(4 + 31)


def test_rejects_are_logged_and_five_bad_codes_lock_remote_opens_out(tmp_path, sock):
    scene = {"img": fakedoor.EMPTY}
    d, relay, th, _ = running(tmp_path, sock, scene)
    try:
        with SeamClient(sock) as c:
            assert c.hello["relay"] == "locked" and c.hello["camera"] == "connected"
            assert "reject" in c.hello["commands"]
            assert c.command("reject", id="r0", user="mqtt:ha", reason="retained command ignored")["ok"]
            for i in range(5):
                assert c.command("reject", id=f"b{i}", user="mqtt:ha", reason="bad code", count=True)["ok"]
        first = outcome(d, "r0")
        assert first["decision"] == "remote_rejected" and first["reason"] == "retained command ignored"
        outcome(d, "b4")
        end = time.monotonic() + 3
        while not any(e["decision"] == "lockout" for e in d.decisions) and time.monotonic() < end:
            time.sleep(0.02)
        with SeamClient(sock) as c:
            c.command("open", id="good", user="mqtt:ha")
        late = outcome(d, "good")
    finally:
        d.stop()
        th.join(10)
    kinds = [e["decision"] for e in d.decisions]
    assert kinds.count("remote_rejected") == 7 and kinds.count("lockout") == 1
    assert late["reason"] == "locked out" and not any(on for _, on in relay.timeline())


def test_an_open_that_asks_for_a_face_needs_an_enrolled_live_one_in_view(tmp_path, sock):
    scene = {"img": fakedoor.EMPTY}
    d, relay, th, _ = running(tmp_path, sock, scene, **{"decision.cooldown_seconds": 5.0})
    try:
        with SeamClient(sock) as c:
            c.command("open", id="nobody", user="u", face=True)
        assert outcome(d, "nobody")["reason"] == "no enrolled face in view"
        scene["img"] = fakedoor.STRANGER
        time.sleep(0.5)
        with SeamClient(sock) as c:
            c.command("open", id="stranger", user="u", face=True)
        assert outcome(d, "stranger")["reason"] == "no enrolled face in view"
        scene["img"] = fakedoor.ANN
        end = time.monotonic() + 5
        while not any(e["decision"] == "grant" for e in d.decisions) and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.5)                                   # the grant's pulse (0.3 s) is over; ann is still there
        with SeamClient(sock) as c:
            c.command("open", id="ann", user="u", face=True)
        assert outcome(d, "ann")["decision"] == "remote_open"
    finally:
        d.stop()
        th.join(10)
    assert sum(1 for _, on in relay.timeline() if on) == 2


def test_decision_records_carry_margin_liveness_and_the_snapshot_name(tmp_path, sock):
    scene = {"img": fakedoor.STRANGER}
    d, relay, th, _ = running(tmp_path, sock, scene, **{"state.snapshots": True})
    try:
        end = time.monotonic() + 5
        while not d.decisions and time.monotonic() < end:
            time.sleep(0.02)
    finally:
        d.stop()
        th.join(10)
    deny = d.decisions[0]
    assert deny["decision"] == "deny" and isinstance(deny["margin"], float) and "liveness" in deny
    assert (tmp_path / "state" / "snapshots" / deny["snapshot"]).is_file()


class BrokenRelay:
    """A mock relay whose strike cannot be driven any more (the GPIO line went away)."""

    def __new__(cls):
        from edge.door.relay import make_relay

        relay = make_relay("mock", "17", True)

        def pulse(seconds):
            raise OSError("GPIO line 17 is gone")

        relay.pulse = pulse
        return relay


def test_a_relay_fault_is_told_before_the_door_stops(tmp_path, sock):
    got = []
    scene = {"img": fakedoor.ANN}
    d, relay, th, out = running(tmp_path, sock, scene, relay=BrokenRelay(), sinks=[CallableSink(got.append)])
    th.join(10)
    assert isinstance(out.get("error"), OSError)                    # the door stops (the unit re-locks)
    faults = [r for r in got if r.get("type") == "relay" and r["state"] == "fault"]
    assert faults and "GPIO line 17 is gone" in faults[0]["error"]
