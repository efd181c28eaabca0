import pytest

from edge import cli, config
from edge.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


def test_packaged_default_is_valid_and_documents_every_key():
    cfg = config.load(write_empty())
    text = config.default_text()
    for section, values in cfg.items():
        for key in values:
            line = next(ln for ln in text.splitlines() if ln.startswith(f"{key} ="))
            assert "#" in line, f"{section}.{key} has no comment in default.toml"


def write_empty():
    import tempfile

    f = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    f.close()
    return f.name


@pytest.mark.parametrize("text, needle", [
    ("[relay]\nunlock_secs = 3\n", "relay.unlock_secs"),
    ("[door]\nx = 1\n", "[door]"),
    ("[relay]\nunlock_seconds = 300\n", "relay.unlock_seconds"),
    ("[relay]\nunlock_seconds = 'long'\n", "relay.unlock_seconds"),
    ("[decision]\nframes_needed = 6\nframes_window = 5\n", "frames_needed"),
    ("[match]\nfar_target = '1e-6'\n", "match.far_target"),
    ("[match]\nthreshold = 'auto'\n", "match.threshold"),
    ("[match]\nmin_margin = -0.1\n", "match.min_margin"),
    ("[relay]\nactive_high = 1\n", "relay.active_high"),
    ("[decision]\nframes_needed = 2.5\n", "decision.frames_needed"),
    ("[relay\n", "invalid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text))
    assert needle in str(e.value)


def test_overrides_apply_and_are_validated(tmp_path):
    path = write(tmp_path, "[relay]\npin = 27\n")
    cfg = config.load(path, {"relay.backend": "mock", "state.dir": "/tmp/x"})
    assert cfg["relay"]["pin"] == "27" and cfg["relay"]["backend"] == "mock" and cfg["state"]["dir"] == "/tmp/x"
    with pytest.raises(ConfigError, match="relay.backend"):
        config.load(path, {"relay.backend": "solenoid"})


def test_cli_validate_gives_one_line_and_nonzero(tmp_path, capsys):
    code = cli.main(["config", "--validate", "--config", write(tmp_path, "[quality]\nmax_roll = 400\n")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "quality.max_roll" in err and "Traceback" not in err
    assert cli.main(["config", "--validate", "--config", write(tmp_path, ""), "--state-dir", str(tmp_path / "s")]) == 0


def test_missing_config_file(tmp_path, capsys):
    assert cli.main(["config", "--config", str(tmp_path / "nope.toml")]) == 1
    assert "not found" in capsys.readouterr().err


def test_config_validate_names_the_model_and_refuses_a_loose_threshold(tmp_path, capsys, port_model):
    from edge import cli

    assert cli.main(["config", "--validate", "--config", write(tmp_path, ""), "--model", str(port_model),
                     "--state-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "port of dlib_face_recognition_resnet_model_v1.dat" in out and "(FAR 1e-5), margin 0.02" in out and "3 closest strangers" in out
    # The tester's `threshold = 0.1` (an unenrolled face was granted at 0.217): below the model's FAR 1e-2 value.
    assert cli.main(["config", "--validate", "--config", write(tmp_path, "[match]\nthreshold = 0.1\n"),
                     "--model", str(port_model)]) == 1
    err = capsys.readouterr().err
    assert "looser than this model's FAR 1e-2 threshold" in err and len(err.strip().splitlines()) == 1


def test_the_printed_threshold_bound_is_accepted_and_nothing_is_ok_before_it(tmp_path, capsys, each_model):
    """One validator, one message: `config --validate` refuses a loose threshold before saying "config OK", and the
    bound it prints is accepted (the tester's 0.9106 was printed for a floor of 0.91064, and refused)."""
    import re

    from edge.vision.sidecar import read_sidecar, threshold_floor

    floor, bound = threshold_floor(read_sidecar(each_model))
    assert bound >= floor and bound - floor < 1e-4
    just_below = f"{bound - 1e-4:.4f}"
    assert cli.main(["config", "--validate", "--config", write(tmp_path, f"[match]\nthreshold = {just_below}\n"),
                     "--model", str(each_model)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    printed = re.search(r"use \"model\" or a value >= ([0-9.]+)$", err.strip()).group(1)
    assert float(printed) == bound
    assert cli.main(["config", "--validate", "--config", write(tmp_path, f"[match]\nthreshold = {printed}\n"),
                     "--model", str(each_model), "--state-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config OK") and f"threshold {float(printed):.3f}" in out


@pytest.mark.parametrize("pin, backend, ok", [
    ("17", "gpiozero", True), ("GPIO17", "lgpio", True), ("BCM17", "mock", True), ("BOARD11", "gpiozero", True),
    ("WPI0", "gpiozero", True), ("J8:11", "gpiozero", True), ("0", "gpiozero", True), ("12", "jetson", True),
    ("GPIO 27", "gpiozero", False), ("nonsense", "gpiozero", False), ("017", "gpiozero", False),
    (" 17", "gpiozero", False), ("gpio17", "gpiozero", False), ("GPIO17", "jetson", False), ("0", "jetson", False),
])
def test_relay_pin_names_are_checked_with_the_config(tmp_path, pin, backend, ok):
    path = write(tmp_path, f'[relay]\nbackend = "{backend}"\npin = "{pin}"\n')
    if ok:
        assert config.load(path)["relay"]["pin"] == pin
    else:
        with pytest.raises(ConfigError, match="relay.pin"):
            config.load(path)
    with pytest.raises(ConfigError, match="relay.pin must not be empty"):
        config.load(write(tmp_path, '[relay]\npin = ""\n'))
    with pytest.raises(ConfigError, match="relay.pin must be a string"):
        config.load(write(tmp_path, "[relay]\npin = 17.5\n"))


def test_validate_records_the_last_good_relay_for_the_relock_helper(tmp_path, capsys, port_model):
    from edge.door.relay import LAST_GOOD, recorded

    state = tmp_path / "state"
    text = f'[relay]\nbackend = "mock"\npin = "27"\nactive_high = false\n[state]\ndir = "{state}"\n'
    assert cli.main(["config", "--validate", "--config", write(tmp_path, text), "--model", str(port_model)]) == 0
    assert "relay settings not recorded for the re-lock helper (no state directory" in capsys.readouterr().out
    assert not state.exists()                         # never created by a validation
    state.mkdir()
    assert cli.main(["config", "--validate", "--config", write(tmp_path, text), "--model", str(port_model)]) == 0
    out = capsys.readouterr().out
    assert f"relay mock pin 27 active-low recorded for the re-lock helper in {state / LAST_GOOD}" in out
    rec = recorded(state)["validated"]
    assert (rec.backend, rec.pin, rec.active_high) == ("mock", "27", False) and "driven" not in recorded(state)
    # A refused config records nothing.
    bad = text.replace('pin = "27"', 'pin = "22"') + "[match]\nthreshold = 0.1\n"
    assert cli.main(["config", "--validate", "--config", write(tmp_path, bad), "--model", str(port_model)]) == 1
    assert recorded(state)["validated"].pin == "27"
