"""doorface-mqtt.service: hardened like the door's unit (systemd-analyze verify and security), no device and no GPIO
group, the door's state read-only, installed (not enabled) by the installer and removed by its --uninstall; and the
bridge's code never loads a GPIO library."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

UNIT = ROOT / "systemd" / "doorface-mqtt.service"
INSTALL = ROOT / "systemd" / "install.sh"


def analyzable(tmp_path):
    exe = shutil.which("doorface") or str(ROOT / ".venv" / "bin" / "doorface")
    if not os.path.exists(exe):
        pytest.skip("doorface console script not installed (make install)")
    path = tmp_path / "doorface-mqtt.service"
    path.write_text(UNIT.read_text().replace("/opt/doorface/venv/bin/doorface", exe))
    return path


def test_the_bridge_unit_is_hardened_and_has_no_gpio():
    text = UNIT.read_text()
    for line in ("User=doorface\n", "StateDirectory=doorface-mqtt\n", "ProtectSystem=strict\n",
                 "ReadOnlyPaths=/var/lib/doorface\n", "PrivateDevices=yes\n", "DevicePolicy=closed\n",
                 "NoNewPrivileges=yes\n", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service\n",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n", "MemoryMax=",
                 "--socket /run/doorface/events.sock\n", "ExecStart=/opt/doorface/venv/bin/doorface mqtt "):
        assert line in text, line
    settings = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    for never in ("DeviceAllow", "SupplementaryGroups", "RuntimeDirectory"):    # (the door's /run/doorface is its own)
        assert not any(ln.startswith(never) for ln in settings), never
    assert not any("gpio" in ln.lower() or "relay" in ln for ln in settings)
    assert "Relaxation" in text


def test_systemd_analyze_verify_and_security(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    path = analyzable(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(path)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    print(f"doorface-mqtt.service exposure: {m.group(1)} {m.group(2)}")
    assert float(m.group(1)) <= 2.0


def test_the_installer_installs_the_unit_without_enabling_it(tmp_path, shipped_model, detector_path):
    env = dict(os.environ, DESTDIR=str(tmp_path / "root"))
    r = subprocess.run(["sh", str(INSTALL)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "root/etc/systemd/system/doorface-mqtt.service"
    assert unit.read_text() == UNIT.read_text()
    assert "doorface-mqtt" not in r.stdout.split("enable --now")[-1]        # only the door is enabled
    r = subprocess.run(["sh", str(INSTALL), "--uninstall"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and not unit.exists()
    assert "skipped (DESTDIR): systemctl disable --now doorface-mqtt.service" in r.stdout


def test_the_bridge_never_loads_a_gpio_library():
    code = ("import sys, edge.cli, edge.mqtt.bridge, edge.mqtt.check\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('gpiozero', 'lgpio', 'RPi', 'Jetson') or "
            "m in ('edge.door.relay', 'edge.door.daemon')]\n"
            "print(bad)")
    r = subprocess.run([sys.executable, "-c", code.replace("edge.cli, ", "")], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
