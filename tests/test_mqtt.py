"""The MQTT bridge without a broker: its settings, payloads, Home Assistant discovery against the documented keys,
the code's hash, what makes a command acceptable, and the access log read back. (Against a real broker:
test_mqtt_broker.py.)"""
from __future__ import annotations

import json
import os
import time

import pytest

from edge import config
from edge.door.accesslog import AccessLog
from edge.door.events import decision_record
from edge.mqtt import payloads as pl
from edge.mqtt.code import CodeStore, set_code
from edge.mqtt.commands import CommandGate, Incoming, RateLimit
from edge.mqtt.history import AccessLogReader, BridgeState
from edge.mqtt.settings import MqttError, from_config, read_password

CODE = "482915"


def cfg(tmp_path, **over):
    base = {"state.dir": str(tmp_path / "state"), "mqtt.enabled": True, "mqtt.door_id": "front",
            "mqtt.tls": False, "mqtt.port": 1883}
    base.update(over)
    return config.load(None, base)


def settings(tmp_path, **over):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    os.chmod(pw, 0o600)
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    base = {"mqtt.tls": True, "mqtt.port": 8883, "mqtt.ca": str(ca), "mqtt.username": "door",
            "mqtt.password_file": str(pw), "mqtt.remote_open": True}
    base.update(over)
    return from_config(cfg(tmp_path, **base))


# -- settings ------------------------------------------------------------------------------------------
def test_the_default_config_has_the_bridge_off_with_tls_on():
    m = config.defaults()["mqtt"]
    assert m["enabled"] is False and m["tls"] is True and m["remote_open"] is False
    assert m["discovery_prefix"] == "homeassistant" and m["port"] == 8883
    assert "password" not in m            # only a password file, never a password inline


def test_topics_and_ids(tmp_path):
    s = from_config(cfg(tmp_path))
    assert s.base == "doorface/front" and s.topic("lock/set") == "doorface/front/lock/set"
    assert s.client_id == "doorface-front" and s.state_dir == tmp_path / "state" / "mqtt"


@pytest.mark.parametrize("key, value, says", [
    ("mqtt.base_topic", "frigate/door", "never publishes under frigate/"),
    ("mqtt.base_topic", "Frigate", "never publishes under frigate/"),
    ("mqtt.base_topic", "doorface/#", "not a topic prefix"),
    ("mqtt.base_topic", "/doorface", "not a topic prefix"),
    ("mqtt.base_topic", "a//b", "not a topic prefix"),
    ("mqtt.discovery_prefix", "frigate", "never publishes under frigate/"),
    ("mqtt.door_id", "Front Door", "must be 1-32 of a-z 0-9 _ -"),
    ("mqtt.password_file", "/nonexistent", "needs mqtt.username"),
    ("mqtt.ca", "/nonexistent/ca.pem", "no such file"),
])
def test_bad_settings_are_one_line(tmp_path, key, value, says):
    with pytest.raises(MqttError, match=says) as err:
        from_config(cfg(tmp_path, **{key: value}))
    assert "\n" not in str(err.value)


def test_config_types_and_ranges_are_checked():
    with pytest.raises(config.ConfigError, match="mqtt.port"):
        config.load(None, {"mqtt.port": 70000})
    with pytest.raises(config.ConfigError, match="mqtt.command_max_age"):
        config.load(None, {"mqtt.command_max_age": 600})
    with pytest.raises(config.ConfigError, match="unknown key mqtt.password"):
        config.merge(config.defaults(), {"mqtt": {"password": "x"}}, "test")


def test_the_password_file_must_be_private(tmp_path):
    p = tmp_path / "pw"
    p.write_text("s3cret\n")
    os.chmod(p, 0o644)
    with pytest.raises(MqttError, match="readable by everyone"):
        read_password(str(p))
    os.chmod(p, 0o640)
    assert read_password(str(p)) == "s3cret"


def test_remote_open_needs_tls_and_authentication(tmp_path):
    assert settings(tmp_path).remote_open_refusal() is None
    assert "needs TLS" in settings(tmp_path, **{"mqtt.tls": False, "mqtt.ca": ""}).remote_open_refusal()
    assert "authentication" in settings(tmp_path, **{"mqtt.username": "", "mqtt.password_file": ""}) \
        .remote_open_refusal()
    assert "off" in settings(tmp_path, **{"mqtt.remote_open": False}).remote_open_refusal()


# -- payloads ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, reason, expected", [
    ("grant", "3 of last 5 frames", "granted"), ("deny", "unknown face", "denied"), ("deny", "spoof", "spoof"),
    ("lockout", "5 denied attempts: 30s", "locked_out"), ("remote_open", "remote open by x", "remote_open"),
    ("remote_rejected", "bad code", "remote_rejected")])
def test_every_decision_kind_is_an_event_type(kind, reason, expected):
    rec = {**decision_record(kind, "ann" if kind == "grant" else None, 0.93, reason, 7, margin=0.12,
                             liveness=0.97), "seq": 41, "v": 1}
    ev = pl.event_payload(rec, "front")
    assert ev["event_type"] == expected and expected in pl.EVENT_TYPES
    assert ev["seq"] == 41 and ev["camera"] == "front" and set(ev) == set(pl.EVENT_KEYS)
    assert json.loads(pl.encode(ev)) == ev


def test_event_payloads_keep_frigate_and_double_take_names_and_never_carry_an_embedding():
    rec = {**decision_record("grant", "ann", 0.95, "3 of last 5 frames", 3, margin=0.2, liveness=0.99,
                             embedding=[0.1] * 128, snapshot="x"), "seq": 5}
    ev = pl.event_payload(rec, "front")
    assert ev["name"] == ev["person"] == "ann" and ev["score"] == 0.95 and ev["camera"] == "front"
    assert "embedding" not in json.dumps(ev) and len(pl.encode(ev)) < 400
    remote = pl.event_payload({**decision_record("remote_open", "mqtt:homeassistant", 0, "r"), "seq": 6}, "front")
    assert remote["person"] is None and remote["user"] == "mqtt:homeassistant"
    catchup = pl.event_payload({"seq": 7, "ts": 1.0, "decision": "deny", "reason": "spoof", "identity": None,
                                "score": 0.3}, "front", catchup=True)
    assert catchup["event_type"] == "spoof" and catchup["margin"] is None and catchup["catchup"] is True


def test_snapshots_only_for_denials_and_spoofs_and_only_the_doors_own_file_names():
    deny = {"decision": "deny", "reason": "unknown face", "snapshot": "denied-1712345678.123.jpg"}
    assert pl.snapshot_name(deny) == "denied-1712345678.123.jpg"
    assert pl.snapshot_name({**deny, "decision": "grant"}) is None
    for bad in ("../../etc/shadow", "denied-1.jpg/../x", "gallery.sqlite", 5):
        assert pl.snapshot_name({**deny, "snapshot": bad}) is None


def test_lock_and_camera_states():
    assert [pl.lock_state(s) for s in ("locked", "unlocked", "fault", "?")] == ["LOCKED", "OPEN", "JAMMED", None]
    assert [pl.camera_state(s) for s in ("connected", "disconnected", None)] == ["ON", "OFF", None]


#: Home Assistant's documented required keys (home-assistant.io, source/_integrations/mqtt.markdown "Device
#: discovery payload", and each platform's page): the device message needs dev and o (o needs name) and cmps,
#: each component its platform (p) and a unique_id; per platform: lock command_topic; event state_topic and
#: event_types; sensor and binary_sensor state_topic; image exactly one of image_topic / url_topic.
REQUIRED = {"lock": ("command_topic",), "event": ("state_topic", "event_types"), "sensor": ("state_topic",),
            "binary_sensor": ("state_topic",), "image": ()}
#: Options documented for each platform that the bridge uses (a typo would be silently ignored by Home Assistant).
DOCUMENTED = {
    "lock": {"p", "unique_id", "name", "command_topic", "state_topic", "command_template", "code_format",
             "payload_open", "payload_lock", "payload_unlock", "state_locked", "state_open", "state_jammed", "retain",
             "optimistic"},
    "event": {"p", "unique_id", "name", "state_topic", "event_types", "icon"},
    "sensor": {"p", "unique_id", "name", "state_topic", "json_attributes_topic", "value_template", "icon"},
    "image": {"p", "unique_id", "name", "image_topic", "content_type"},
    "binary_sensor": {"p", "unique_id", "name", "state_topic", "device_class", "payload_on", "payload_off",
                      "entity_category"},
}


def test_discovery_has_home_assistants_documented_required_keys(tmp_path):
    s = from_config(cfg(tmp_path))
    topic, msg = pl.discovery(s)
    assert topic == "homeassistant/device/doorface_front/config"
    assert msg["dev"]["ids"] and msg["dev"]["name"] and msg["o"]["name"] == "doorface"
    assert msg["avty"] == [{"topic": "doorface/front/availability"}]
    platforms = {c["p"] for c in msg["cmps"].values()}
    assert platforms == set(REQUIRED)
    uids = [c["unique_id"] for c in msg["cmps"].values()]
    assert len(set(uids)) == len(uids) and all(u.startswith("doorface_front_") for u in uids)
    for key, c in msg["cmps"].items():
        assert all(c.get(k) for k in REQUIRED[c["p"]]), key
        assert set(c) <= DOCUMENTED[c["p"]], set(c) - DOCUMENTED[c["p"]]
        assert all(v.startswith("doorface/front/") for k, v in c.items() if k.endswith("_topic"))
    assert ("image_topic" in msg["cmps"]["snapshot"]) != ("url_topic" in msg["cmps"]["snapshot"])
    lock = msg["cmps"]["lock"]
    assert lock["payload_open"] == "OPEN" and lock["code_format"]
    assert "{{ value" in lock["command_template"] and "{{ code" in lock["command_template"]
    assert msg["cmps"]["event"]["event_types"] == list(pl.EVENT_TYPES)
    assert "frigate" not in json.dumps(msg).lower()


def test_the_command_template_renders_to_what_the_bridge_accepts():
    """Home Assistant renders it with jinja2 (its `tojson` filter and `now()`); rendered the same way here."""
    jinja2 = pytest.importorskip("jinja2")
    import datetime as dt

    env = jinja2.Environment()
    env.globals["now"] = dt.datetime.now
    for value, code in (("OPEN", "48 2\"915"), ("LOCK", None)):
        out = json.loads(env.from_string(pl.COMMAND_TEMPLATE).render(value=value, code=code))
        assert out["action"] == value and out["code"] == code and abs(out["ts"] - time.time()) < 5


# -- the code ------------------------------------------------------------------------------------------
def test_the_code_is_stored_as_a_pbkdf2_hash_only(tmp_path):
    path = set_code(tmp_path / "code.json", CODE, iterations=100_000)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    text = path.read_text()
    assert CODE not in text and json.loads(text)["kdf"] == "pbkdf2-sha256"
    store = CodeStore(tmp_path / "code.json")
    assert store.verify(CODE) and not store.verify("482916") and not store.verify(None)
    assert not store.verify("") and not store.verify(CODE * 20)
    for weak in ("12345", "111111", "123456", "abcdef"):
        with pytest.raises(MqttError):
            set_code(tmp_path / "code.json", weak)


def test_root_writes_the_code_readable_by_the_doors_group_only(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (as `sudo doorface mqtt set-code` runs)")
    etc = tmp_path / "etc-doorface"
    etc.mkdir(mode=0o750)
    os.chown(etc, 0, 4242)                                   # root:doorface
    path = set_code(etc / "mqtt-code.json", CODE, iterations=100_000)
    st = path.stat()
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o777)) == (0, 4242, "0o640")


def test_a_missing_or_tampered_code_file_refuses_every_code(tmp_path):
    store = CodeStore(tmp_path / "code.json")
    assert not store.is_set() and not store.verify(CODE)
    path = set_code(tmp_path / "code.json", CODE, iterations=100_000)
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "iterations": 1}))    # a weakened file is not accepted
    assert not store.verify(CODE)


# -- commands ------------------------------------------------------------------------------------------
def gate(tmp_path, **over):
    s = settings(tmp_path, **over)
    set_code(s.code_file, CODE, iterations=100_000)
    state = BridgeState(s.state_dir, keep=2 * s.command_max_age + 10)
    return CommandGate(s, CodeStore(s.code_file), state), state


def msg(action="OPEN", code=CODE, ts="now", retained=False, expiry=None, age=0.0, **extra):
    body = {"action": action, "code": code, **extra}
    if ts == "now":
        body["ts"] = time.time() - age
    elif ts is not None:
        body["ts"] = ts
    return Incoming(json.dumps(body).encode(), retained, expiry, time.monotonic())


def test_a_fresh_command_with_the_good_code_opens(tmp_path):
    g, _ = gate(tmp_path)
    v = g.judge(msg())
    assert v.open and not v.count
    assert g.judge(msg(action="UNLOCK")).open          # unlock is one pulse too, never held
    assert g.judge(msg(ts=None, expiry=3)).open       # MQTT 5 message expiry instead of ts


@pytest.mark.parametrize("make, says, counts", [
    (lambda: msg(code="000000"), "bad code", True),
    (lambda: msg(code=None), "bad code", True),
    (lambda: msg(retained=True), "retained command ignored", False),
    (lambda: msg(age=30), "expired: sent 30", False),
    (lambda: msg(age=-60), "expired", False),
    (lambda: msg(ts=None), "no freshness", False),
    (lambda: msg(ts=None, expiry=3600), "message expiry 3600 s is longer", False),
    (lambda: Incoming(msg().payload, False, None, time.monotonic() - 30), "waited 30", False),
    (lambda: msg(action="LOCK"), "locks itself", False),
    (lambda: msg(action="open"), "malformed", False),
    (lambda: Incoming(b"OPEN", False, 3, time.monotonic()), "not JSON", False),
    (lambda: Incoming(b"x" * 2000, False, 3, time.monotonic()), "longer than 1024", False),
    (lambda: msg(ts="yesterday"), "ts must be a Unix time", False),
])
def test_what_is_refused(tmp_path, make, says, counts):
    g, _ = gate(tmp_path)
    v = g.judge(make())
    assert not v.open and says in v.reason and v.count == counts, v


def test_remote_open_off_or_without_tls_refuses_even_the_good_code(tmp_path):
    for over, says in (({"mqtt.remote_open": False}, "remote open is off"),
                       ({"mqtt.tls": False, "mqtt.ca": ""}, "needs TLS"),
                       ({"mqtt.username": "", "mqtt.password_file": ""}, "authentication")):
        g, _ = gate(tmp_path, **over)
        v = g.judge(msg())
        assert not v.open and says in v.reason


def test_a_replay_is_refused_also_after_a_restart(tmp_path):
    g, state = gate(tmp_path)
    first = msg()
    assert g.judge(first).open
    again = Incoming(first.payload, False, None, time.monotonic())
    assert "replayed" in g.judge(again).reason
    # the bridge restarts: a new gate and state read from the same file
    s = g.s
    g2 = CommandGate(s, CodeStore(s.code_file), BridgeState(s.state_dir, keep=state.keep).load())
    assert "replayed" in g2.judge(Incoming(first.payload, False, None, time.monotonic())).reason
    assert g2.judge(msg()).open                        # a new command (a new ts) still opens


def test_the_rate_limit_drops_a_flood_and_counts_it():
    r = RateLimit(burst=5, every=1.0)
    t = time.monotonic()
    passed = sum(r.take(t + i * 0.001) for i in range(100))
    assert passed == 5 and r.dropped_since() == 95 and r.dropped_since() == 0
    assert r.take(t + 1.2)


# -- the access log, read back ---------------------------------------------------------------------------
def test_the_access_log_is_read_back_in_order_a_batch_at_a_time(tmp_path):
    state = tmp_path / "state"
    log_ = AccessLog(state / "access.sqlite")
    for i in range(1, 8):
        log_.store({**decision_record("deny", None, 0.1, "unknown face", i), "seq": i})
    log_.close()
    r = AccessLogReader(state)
    assert r.last_seq() == 7
    rows = r.after(2, limit=3)
    assert [x["seq"] for x in rows] == [3, 4, 5] and rows[0]["decision"] == "deny"
    assert r.after(7) == []
    assert AccessLogReader(tmp_path / "nowhere").last_seq() is None


def test_the_bridge_state_survives_a_restart(tmp_path):
    st = BridgeState(tmp_path)
    st.last_seq = 42
    assert st.remember("abc") and not st.remember("abc")
    st.save()
    again = BridgeState(tmp_path).load()
    assert again.last_seq == 42 and "abc" in again.seen
    assert oct((tmp_path / "bridge-state.json").stat().st_mode & 0o777) == "0o600"


# -- the README's Home Assistant examples (docs/home-assistant/), as written -------------------------------------
def docs_dir():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "docs" / "home-assistant"


def entity_ids(msg: dict) -> set:
    """The entity ids Home Assistant makes from a device discovery message: ``<platform>.<slug of device name and
    entity name>`` (an MQTT entity with a name, on a device with a name)."""
    import re

    def slug(text):
        return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")

    return {f"{c['p']}.{slug(msg['dev']['name'] + ' ' + c['name'])}" for c in msg["cmps"].values()}


def example_settings():
    from edge.config import tomllib

    layer = tomllib.loads((docs_dir() / "doorface.toml").read_text())
    cfg = config.validate(config.merge(config.defaults(), layer, "docs/home-assistant/doorface.toml"))
    return from_config(cfg, check_files=False)


def test_the_example_config_is_valid_with_remote_open_possible():
    s = example_settings()
    assert s.enabled and s.tls and s.remote_open and s.remote_open_refusal() is None
    assert s.base == "doorface/front" and s.snapshots


def test_the_dashboard_card_uses_only_entities_the_discovery_creates():
    yaml = pytest.importorskip("yaml")
    card = yaml.safe_load((docs_dir() / "dashboard-card.yaml").read_text())
    ids = entity_ids(pl.discovery(example_settings())[1])
    assert ids == {"lock.doorface_front_door", "event.doorface_front_access", "sensor.doorface_front_last_person",
                   "image.doorface_front_snapshot", "binary_sensor.doorface_front_camera"}
    used = set()

    def walk(node):
        if isinstance(node, dict):
            if "entity" in node:
                used.add(node["entity"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(card)
    assert used == ids


def test_the_spoof_automation_notifies_with_the_snapshot_on_spoof_and_lockout_only():
    yaml = pytest.importorskip("yaml")
    jinja2 = pytest.importorskip("jinja2")
    auto = yaml.safe_load((docs_dir() / "automation-spoof.yaml").read_text())
    s = example_settings()
    ids = entity_ids(pl.discovery(s)[1])
    assert auto["triggers"][0]["entity_id"] in ids and auto["triggers"][0]["entity_id"].startswith("event.")
    notify = auto["actions"][-1]
    image = notify["data"]["data"]["image"]
    assert image.startswith("/api/image_proxy/") and image.split("/")[-1] in ids
    env = jinja2.Environment()

    def render(text, payload):
        trigger = {"to_state": {"attributes": payload}}     # an MQTT event entity's attributes: its payload
        return env.from_string(text).render(trigger=trigger)

    cond = auto["conditions"][0]["value_template"]
    for kind, reason, fires in (("deny", "spoof", True), ("lockout", "5 denied attempts: 30s", True),
                                ("deny", "unknown face", False), ("grant", "3 of last 5 frames", False),
                                ("remote_rejected", "bad code", False)):
        payload = pl.event_payload({**decision_record(kind, None, 0.4, reason, 3), "seq": 12}, s.door_id)
        assert render(cond, payload) == str(fires), (kind, reason)
        if fires:
            title = render(notify["data"]["title"], payload)
            assert title in ("Front door: spoof", "Front door: locked out")
            assert reason in render(notify["data"]["message"], payload) and "seq 12" in \
                render(notify["data"]["message"], payload)


def test_readme_home_assistant_section_shows_the_tested_examples():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    if "## Home Assistant" not in readme:
        pytest.skip("README has no Home Assistant section yet")
    section = readme.split("## Home Assistant", 1)[1].split("\n## ", 1)[0]
    for name in ("doorface.toml", "dashboard-card.yaml", "automation-spoof.yaml", "mosquitto.acl"):
        assert (docs_dir() / name).read_text().strip() in section, f"README shows another {name} than the tested one"
