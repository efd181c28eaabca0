"""doorface-web.service: hardened like the bridge's unit (systemd-analyze verify and security), no device and no
GPIO group, installed (not enabled) by the installer and removed by its --uninstall; `doorface web` refuses to run
while [web] is off and makes its certificate and the admin's password at first start."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

UNIT = ROOT / "systemd" / "doorface-web.service"
INSTALL = ROOT / "systemd" / "install.sh"


def test_the_web_unit_is_hardened_and_has_no_gpio():
    text = UNIT.read_text()
    for line in ("User=doorface\n", "StateDirectory=doorface-web\n", "ProtectSystem=strict\n",
                 "ReadWritePaths=/var/lib/doorface\n", "PrivateDevices=yes\n", "DevicePolicy=closed\n",
                 "NoNewPrivileges=yes\n", "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service\n",
                 "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n", "MemoryMax=",
                 "--socket /run/doorface/events.sock\n", "ExecStart=/opt/doorface/venv/bin/doorface web "):
        assert line in text, line
    settings = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    for never in ("DeviceAllow", "SupplementaryGroups", "RuntimeDirectory", "AmbientCapabilities=CAP"):
        assert not any(ln.startswith(never) for ln in settings), never
    assert not any("gpio" in ln.lower() or "relay" in ln for ln in settings)


def test_systemd_analyze_verify_and_security(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (Debian package systemd)")
    exe = shutil.which("doorface") or str(ROOT / ".venv" / "bin" / "doorface")
    if not os.path.exists(exe):
        pytest.skip("doorface console script not installed (make install)")
    path = tmp_path / "doorface-web.service"
    path.write_text(UNIT.read_text().replace("/opt/doorface/venv/bin/doorface", exe))
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(path)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    print(f"doorface-web.service exposure: {m.group(1)} {m.group(2)}")
    assert float(m.group(1)) <= 2.5


def test_the_installer_installs_the_unit_without_enabling_it(tmp_path, shipped_model, detector_path):
    env = dict(os.environ, DESTDIR=str(tmp_path / "root"))
    r = subprocess.run(["sh", str(INSTALL)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    unit = tmp_path / "root/etc/systemd/system/doorface-web.service"
    assert unit.read_text() == UNIT.read_text()
    assert "doorface-web" not in r.stdout.split("enable --now")[-1]
    assert "web cert" in r.stdout
    r = subprocess.run(["sh", str(INSTALL), "--uninstall"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and not unit.exists()
    assert "skipped (DESTDIR): systemctl disable --now doorface-web.service" in r.stdout


def _doorface(tmp_path, *args, **env):
    return subprocess.run([sys.executable, "-m", "edge", *args, "--state-dir", str(tmp_path / "state")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, **env))


def test_the_page_is_off_by_default_and_says_so(tmp_path):
    r = _doorface(tmp_path, "web")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert "web.enabled is false" in r.stderr


def test_plain_http_is_refused_off_the_loopback(tmp_path):
    conf = tmp_path / "web.toml"
    conf.write_text('[web]\nenabled = true\ntls = false\nhost = "0.0.0.0"\n')
    r = _doorface(tmp_path, "web", "--config", str(conf))
    assert r.returncode == 1 and "in clear" in r.stderr and r.stderr.count("\n") == 1


def test_cert_and_reset_password(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    r = _doorface(tmp_path, "web", "cert")
    assert r.returncode == 0 and "self-signed certificate" in r.stdout, r.stderr
    key = tmp_path / "state" / "web" / "key.pem"
    assert oct(key.stat().st_mode)[-3:] == "600"
    assert "certificate kept" in _doorface(tmp_path, "web", "cert").stdout
    r = _doorface(tmp_path, "web", "reset-password")
    pw = re.search(r"\(shown once\): (\S+)", r.stdout).group(1)
    from edge.web.auth import Accounts

    acc = Accounts(tmp_path / "state" / "web" / "accounts.json")
    assert acc.check("admin", pw) and not acc.check("viewer", pw) and len(pw) >= 20


def test_slow_and_many_connections_cannot_hold_the_page(tmp_path):
    """A request that never finishes its headers is closed after HEADER_SECONDS; one address gets at most
    PER_ADDRESS connections; the page keeps answering others meanwhile (a real `doorface web`, plain HTTP on the
    loopback)."""
    import socket
    import time

    from edge.web.protocol import HEADER_SECONDS, PER_ADDRESS

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "web.toml"
    conf.write_text(f'[web]\nenabled = true\ntls = false\nhost = "127.0.0.1"\nport = {port}\n')
    proc = subprocess.Popen([sys.executable, "-m", "edge", "web", "--config", str(conf), "--state-dir",
                             str(tmp_path / "state")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.2)
        slow = []
        for _ in range(PER_ADDRESS + 4):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")          # never finished
            slow.append(c)
        time.sleep(0.5)
        closed_at_once = 0
        for c in slow:
            c.settimeout(0.2)
            try:
                closed_at_once += c.recv(100) == b""
            except ConnectionResetError:
                closed_at_once += 1
            except socket.timeout:
                pass
        assert closed_at_once >= 4                                      # beyond PER_ADDRESS: closed at once
        time.sleep(HEADER_SECONDS + 1.5)
        for c in slow:
            c.settimeout(2)
            try:
                assert c.recv(100) == b""                               # the slow ones were closed
            except (ConnectionResetError, BrokenPipeError):
                pass
            c.close()
        with socket.create_connection(("127.0.0.1", port)) as c:      # and the page still answers
            c.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        proc.terminate()
        proc.wait(20)
