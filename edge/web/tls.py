"""The page's certificate: self-signed, made by ``doorface web cert`` (the installer runs it), replaceable by the
owner's own (``[web] cert``/``key``). Made with the ``openssl`` command (on every Pi OS), RSA 2048, 10 years, the
host's name and addresses as subject alternative names."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import List

from edge.web.settings import WebError


def alt_names(hostname: str) -> List[str]:
    names = {f"DNS:{hostname}", f"DNS:{hostname}.local", "DNS:localhost", "IP:127.0.0.1"}
    try:
        for info in socket.getaddrinfo(hostname, None):
            addr = info[4][0]
            if ":" not in addr:
                names.add(f"IP:{addr}")
    except OSError:
        pass
    return sorted(names)


def make_certificate(cert: Path, key: Path, hostname: str = "", force: bool = False) -> str:
    """Write a self-signed certificate and key (mode 0600) unless both exist (``force``: replace them). Returns
    what was done, in one line."""
    if cert.exists() and key.exists() and not force:
        return f"certificate kept: {cert}"
    if shutil.which("openssl") is None:
        raise WebError("openssl not found: install it (apt install openssl) or set [web] cert and key to your own")
    hostname = hostname or socket.gethostname()
    cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    old = os.umask(0o077)
    try:
        run = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
             "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={hostname}",
             "-addext", "subjectAltName=" + ",".join(alt_names(hostname))],
            capture_output=True, text=True, timeout=120)
    finally:
        os.umask(old)
    if run.returncode != 0:
        raise WebError(f"openssl could not make the certificate: {run.stderr.strip().splitlines()[-1:]}")
    os.chmod(key, 0o600)
    return f"self-signed certificate for {hostname} made: {cert} (key {key}); your browser will ask you to accept it once"


def fingerprint(cert: Path) -> str:
    """The certificate's SHA-256 fingerprint (to compare with what the phone's browser shows)."""
    import hashlib
    import ssl

    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
