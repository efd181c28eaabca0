"""The remote-open code, kept only as a salted PBKDF2-HMAC-SHA256 hash (``[mqtt] code_file``; by default
``remote-code.json`` in the bridge's state dir) and checked on the door's side for every command: Home Assistant's
``code_format`` only shapes its keypad, it never decides. Written by root into ``/etc/doorface`` (root:doorface), the
file is 0640 and the bridge, running as the door's user, can read it but never change it."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Optional

from edge.mqtt.settings import MqttError

#: PBKDF2 iterations (OWASP's 2023 figure for PBKDF2-HMAC-SHA256; about 0.14 s on a desktop core, ~1 s on a Pi 4).
ITERATIONS = 600_000
MIN_LENGTH, MAX_LENGTH = 6, 64


def _derive(code: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", code.encode("utf-8"), salt, iterations)


def check_new(code: str) -> str:
    """A code fit to be set (6-64 printable characters, not one repeated character nor a plain run)."""
    if not MIN_LENGTH <= len(code) <= MAX_LENGTH:
        raise MqttError(f"the code must be {MIN_LENGTH}-{MAX_LENGTH} characters long")
    if not code.isprintable():
        raise MqttError("the code must be printable characters only")
    if len(set(code)) == 1 or code in "0123456789012345678909876543210" or code in "abcdefghijklmnopqrstuvwxyz":
        raise MqttError("that code is too easy to guess (a repeated character or a plain run)")
    return code


def set_code(path, code: str, iterations: int = ITERATIONS) -> Path:
    """Store the hash of ``code`` in ``path`` (a temporary file, then renamed: never half a file). Mode 0600; when
    root writes it into a folder of another group (``/etc/doorface``, root:doorface), 0640 and that group."""
    check_new(code)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    salt = os.urandom(16)
    rec = {"kdf": "pbkdf2-sha256", "iterations": iterations, "salt": salt.hex(),
           "hash": _derive(code, salt, iterations).hex(), "set": round(time.time())}
    gid = path.parent.stat().st_gid
    shared = os.geteuid() == 0 and gid != 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f)
    if shared:
        os.chown(tmp, 0, gid)
        os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    return path


class CodeStore:
    """The stored hash; :meth:`verify` compares in constant time. Reads the file at each check (``set-code`` takes
    effect without a restart); a missing or malformed file refuses every code."""

    def __init__(self, path):
        self.path = Path(path)

    def load(self) -> Optional[dict]:
        try:
            rec = json.loads(self.path.read_text())
            if rec.get("kdf") != "pbkdf2-sha256" or int(rec["iterations"]) < 100_000:
                return None
            bytes.fromhex(rec["salt"]), bytes.fromhex(rec["hash"])
            return rec
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_set(self) -> bool:
        return self.load() is not None

    def verify(self, code) -> bool:
        rec = self.load()
        if rec is None or not isinstance(code, str) or not 0 < len(code) <= MAX_LENGTH:
            return False
        got = _derive(code, bytes.fromhex(rec["salt"]), int(rec["iterations"]))
        return hmac.compare_digest(got, bytes.fromhex(rec["hash"]))
