"""The unit (systemd-analyze verify and security), and the installer's staged and dry-run modes."""
import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import ROOT

UNIT = ROOT / "systemd" / "doorface.service"
INSTALL = ROOT / "systemd" / "install.sh"


def analyzable_unit(tmp_path):
    """The unit with ExecStart pointing at this checkout's venv (verify checks that the binary exists)."""
    exe = shutil.which("doorface") or str(ROOT / ".venv" / "bin" / "doorface")
    if not os.path.exists(exe):
        pytest.skip("doorface console script not installed (make install)")
    text = UNIT.read_text().replace("/opt/doorface/venv/bin/doorface", exe)
    path = tmp_path / "doorface.service"
    path.write_text(text)
    return path


def test_unit_has_the_required_settings():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "ExecReload=/bin/kill -HUP $MAINPID",
                 "SupplementaryGroups=video gpio", "StateDirectory=doorface", "ConfigurationDirectory=doorface",
                 "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_UNIX\n",
                 "SystemCallFilter=@system-service", "DevicePolicy=closed", "DeviceAllow=char-gpiochip",
                 "ExecStartPre=/opt/doorface/venv/bin/doorface relay --lock --config /etc/doorface/doorface.toml "
                 "--state-dir /var/lib/doorface --pin 17\n",
                 "ExecStopPost=/opt/doorface/venv/bin/doorface relay --lock --config /etc/doorface/doorface.toml "
                 "--state-dir /var/lib/doorface --pin 17\n",
                 "--state-dir /var/lib/doorface\n"):
        assert line in text, line
    # Every relaxation is commented.
    assert text.count("Relaxation") >= 3


def test_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    r = subprocess.run(["systemd-analyze", "verify", str(analyzable_unit(tmp_path))], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_systemd_analyze_security_is_ok(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(analyzable_unit(tmp_path))],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    score = float(m.group(1))
    print(f"systemd-analyze security exposure: {score} {m.group(2)}")
    assert score <= 2.0 and m.group(2) in ("OK", "SAFE", "OK🙂")


def test_staged_install_is_idempotent_and_keeps_config(tmp_path, shipped_model, detector_path):
    env = dict(os.environ, DESTDIR=str(tmp_path / "root"))
    r = subprocess.run(["sh", str(INSTALL)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "root"
    for f in ("opt/doorface/models/doorface-dlib-int8.tflite", "opt/doorface/models/doorface-dlib-int8.json",
              "opt/doorface/models/doorface-int8.tflite", "opt/doorface/models/doorface-int8.json",
              "opt/doorface/models/doorface-liveness.tflite", "opt/doorface/models/doorface-liveness.json",
              "opt/doorface/models/face_detection_short_range.tflite", "etc/doorface/doorface.toml",
              "etc/systemd/system/doorface.service"):
        assert (root / f).is_file(), f
    # The service user can read its config, nobody else can (finding: root:root 0640 was unreadable by it).
    assert stat.S_IMODE((root / "etc/doorface").stat().st_mode) == 0o750
    assert stat.S_IMODE((root / "etc/doorface/doorface.toml").stat().st_mode) == 0o640
    assert "skipped (DESTDIR): chown root:doorface /etc/doorface /etc/doorface/doorface.toml" in r.stdout
    cfg = (root / "etc/doorface/doorface.toml").read_text()
    assert 'embedder = "/opt/doorface/models/doorface-dlib-int8.tflite"' in cfg
    assert 'model = "/opt/doorface/models/doorface-liveness.tflite"' in cfg
    assert "skipped (DESTDIR): systemctl enable --now doorface.service" in r.stdout
    # The staged config is valid.
    from edge import config

    assert config.load(str(root / "etc/doorface/doorface.toml"))["model"]["embedder"].startswith("/opt/doorface")
    # Second run: the (locally edited) config is kept.
    (root / "etc/doorface/doorface.toml").write_text(cfg + "\n# edited\n")
    r = subprocess.run(["sh", str(INSTALL)], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "keeping existing" in r.stdout
    assert (root / "etc/doorface/doorface.toml").read_text().endswith("# edited\n")
    r = subprocess.run(["sh", str(INSTALL), "--uninstall"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and not (root / "opt/doorface").exists()
    assert (root / "etc/doorface/doorface.toml").exists()   # config and state are kept


def test_dry_run_changes_nothing(tmp_path, shipped_model, detector_path):
    env = dict(os.environ, DESTDIR=str(tmp_path / "root"))
    r = subprocess.run(["sh", str(INSTALL), "--dry-run"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "would run: cp" in r.stdout and "would write /etc/doorface/doorface.toml" in r.stdout
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("relay, baked, warned", [
    ('pin = "27"\nactive_high = false\n', "--pin 27 --active-low", False),
    ('backend = "lgpio"\npin = "GPIO22"  # the strike\n', "--pin GPIO22 --fallback-backend lgpio", False),
    ("pin = 5\n", "--pin 5", False),
    ('backend = "jetson"\npin = "12"\n', "--pin 12 --fallback-backend jetson", False),
    ('pin = "GPIO 27"\n', "--pin 17", True),        # used to bake "--pin GPIO"
    ('pin = "nonsense"\n', "--pin 17", True),
    ('pin = ""\n', "--pin 17", False),
    ('backend = "mock"\n', "--pin 17", False),       # a test backend is never baked in
])
def test_installer_bakes_a_valid_last_resort_pin(tmp_path, shipped_model, detector_path, relay, baked, warned):
    root = tmp_path / "root"
    (root / "etc/doorface").mkdir(parents=True)
    (root / "etc/doorface/doorface.toml").write_text(f"[relay]\n{relay}")   # an edited config is kept, and read
    r = subprocess.run(["sh", str(INSTALL)], env=dict(os.environ, DESTDIR=str(root)), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    unit = (root / "etc/systemd/system/doorface.service").read_text()
    for line in ("ExecStartPre=", "ExecStopPost="):
        helper = next(ln for ln in unit.splitlines() if ln.startswith(line))
        assert helper.endswith(f"--state-dir /var/lib/doorface {baked}"), helper
    assert ("is not a pin name" in r.stderr) == warned, r.stderr
