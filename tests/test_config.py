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
    assert cli.main(["config", "--validate", "--config", write(tmp_path, "")]) == 0


def test_missing_config_file(tmp_path, capsys):
    assert cli.main(["config", "--config", str(tmp_path / "nope.toml")]) == 1
    assert "not found" in capsys.readouterr().err


def test_config_validate_names_the_model_and_refuses_a_loose_threshold(tmp_path, capsys, port_model):
    from edge import cli

    assert cli.main(["config", "--validate", "--config", write(tmp_path, ""), "--model", str(port_model)]) == 0
    out = capsys.readouterr().out
    assert "port of dlib_face_recognition_resnet_model_v1.dat" in out and "(FAR 1e-5), margin 0.015" in out and "3 closest strangers" in out
    # The tester's `threshold = 0.1` (an unenrolled face was granted at 0.217): below the model's FAR 1e-2 value.
    assert cli.main(["config", "--validate", "--config", write(tmp_path, "[match]\nthreshold = 0.1\n"),
                     "--model", str(port_model)]) == 1
    err = capsys.readouterr().err
    assert "looser than this model's FAR 1e-2 threshold" in err and len(err.strip().splitlines()) == 1
