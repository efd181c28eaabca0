"""A real MQTT broker for the tests and benches: Debian's ``mosquitto`` on a free local port, with a password file,
no anonymous access, TLS from a CA made here (``openssl``), and persistence (sessions and queued QoS 1 messages
survive a restart). :func:`missing` says why one cannot be had (the tests then skip, saying so)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional

USERS = {"door": "door-secret-1", "homeassistant": "ha-secret-2", "watcher": "watch-secret-3"}


def missing() -> Optional[str]:
    """None when mosquitto, mosquitto_passwd and openssl are all here, else what is missing."""
    for tool, pkg in (("mosquitto", "mosquitto"), ("mosquitto_passwd", "mosquitto"), ("openssl", "openssl")):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            return f"{tool} not installed (Debian package {pkg}; `make install` installs it when run as root)"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder) -> Dict[str, Path]:
    """A CA, the broker's certificate for localhost/127.0.0.1 signed by it, and a second CA that signed nothing
    (the "wrong CA"). EC P-256 keys (fast)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "wrong-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                 "-subj", f"/CN=doorface test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days",
             "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)
    for f in d.iterdir():
        os.chmod(f, 0o644 if f.suffix == ".pem" else 0o600)
    return {"ca": d / "ca.pem", "wrong_ca": d / "wrong-ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


class Mosquitto:
    """One broker process in ``folder``: :meth:`start`, :meth:`stop` (SIGTERM: it saves its persistence),
    :meth:`kill` (SIGKILL), :meth:`pause` / :meth:`resume` (SIGSTOP / SIGCONT: a broker that stalls)."""

    def __init__(self, folder, port: Optional[int] = None, users: Dict[str, str] = None, tls: bool = True,
                 pki: Optional[Dict[str, Path]] = None, conf_text: Optional[str] = None, acl_text: Optional[str] = None):
        """``conf_text``: a mosquitto.conf as an admin would write it (docs/home-assistant/mosquitto.conf): used as
        written, its listener moved to this port on 127.0.0.1 and its certificate, password and ACL files to the
        ones made here (``acl_text`` the ACL's content)."""
        self.conf_text, self.acl_text = conf_text, acl_text
        self.dir = Path(folder)
        self.port = port or free_port()
        self.users = dict(USERS if users is None else users)
        self.tls = tls
        self.pki = pki
        self.proc: Optional[subprocess.Popen] = None

    def _configure(self) -> Path:
        d = self.dir
        (d / "data").mkdir(parents=True, exist_ok=True)
        passwd = d / "passwd"
        if not passwd.exists():
            passwd.touch(mode=0o600)
            for user, pw in self.users.items():
                subprocess.run([_tool("mosquitto_passwd"), "-b", str(passwd), user, pw], check=True,
                               capture_output=True)
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous false", f"password_file {passwd}",
                 "persistence true", f"persistence_location {d / 'data'}/", "autosave_interval 1",
                 f"log_dest file {d / 'mosquitto.log'}", "log_type error", "log_type warning", "log_type notice",
                 "max_queued_messages 100000"]
        if os.geteuid() == 0:
            lines.append("user root")
        if self.tls:
            if self.pki is None:
                self.pki = make_pki(d / "pki")
            lines += [f"cafile {self.pki['ca']}", f"certfile {self.pki['cert']}", f"keyfile {self.pki['key']}"]
        if self.conf_text is not None:
            lines = [ln for ln in lines if not ln.startswith(
                ("listener", "allow_anonymous", "password_file", "cafile", "certfile", "keyfile"))]
            lines += self._as_written(passwd)
        conf = d / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _as_written(self, passwd: Path) -> list:
        """``conf_text``'s lines with this broker's port and files in place of the admin's paths."""
        acl = self.dir / "acl"
        acl.write_text(self.acl_text or "")
        acl.chmod(0o600)
        files = {"cafile": self.pki["ca"], "certfile": self.pki["cert"], "keyfile": self.pki["key"],
                 "password_file": passwd, "acl_file": acl}
        out = []
        for ln in self.conf_text.splitlines():
            key = ln.split(" ", 1)[0]
            if not ln.strip() or ln.startswith("#"):
                continue
            out.append(f"listener {self.port} 127.0.0.1" if key == "listener" else
                       f"{key} {files[key]}" if key in files else ln)
        return out

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        conf = self._configure()
        self.proc = subprocess.Popen([_tool("mosquitto"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def _signal(self, sig) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        self.resume()
        self._signal(signal.SIGTERM)
        self._wait()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self._wait()

    def _wait(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
