"""Who may use the page: the accounts file (PBKDF2-SHA256 password hashes), sessions, and the login rate limit.

- **Accounts.** ``admin`` (everything) and, once made, ``viewer`` (status and the access log: no photos of people, no
  open). Passwords are generated, never chosen: ``doorface web`` makes the admin's at first start and prints it once;
  ``doorface web reset-password [--role viewer]`` makes a new one. Stored as PBKDF2-SHA256, 600,000 iterations, a
  16-byte salt, in ``accounts.json`` (mode 0600) with a ``generation`` per account: a reset ends every session of
  that account, also in the running page (it rereads the file when it changes).
- **Sessions.** A random 256-bit token in a cookie (HttpOnly, Secure, SameSite=Strict); the server keeps its hash, the
  role, a CSRF token and when it was last used. It ends ``session_minutes`` after the last request, 12 hours after the
  login at the latest, at logout, on a password reset and when the page restarts.
- **Login rate limit.** Wrong passwords are counted per client address and in total over 15 minutes; past the limits
  the login answers HTTP 429 (with ``Retry-After``) without checking the password, backing off. See
  :class:`LoginLimiter`.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Deque, Dict, Optional, Tuple

from edge.web.settings import WebError

ITERATIONS = 600_000
ROLES = ("admin", "viewer")
#: A session ends this long after its login, however active (seconds).
SESSION_MAX = 12 * 3600
#: The window over which wrong passwords are counted (seconds).
LOGIN_WINDOW = 15 * 60


def hash_password(password: str, salt: Optional[bytes] = None, iterations: int = ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>``."""
    salt = salt if salt is not None else os.urandom(16)
    dk = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, iterations, salt, want = stored.split("$")
        if algo != "pbkdf2_sha256" or int(iterations) < ITERATIONS:
            return False
        dk = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(base64.b64encode(dk).decode(), want)


def new_password() -> str:
    """20 characters from an unambiguous alphabet (about 100 bits)."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(20))


class Accounts:
    """``accounts.json``: role -> {hash, generation, changed}. The constructor does no I/O."""

    def __init__(self, path):
        self.path = Path(path)
        self._cache: Tuple[Optional[float], dict] = (None, {})
        self._lock = threading.Lock()

    def load(self) -> dict:
        """The accounts, reread when the file changed (a reset by the CLI reaches the running page)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            if self._cache[0] != mtime:
                try:
                    data = json.loads(self.path.read_text())
                    if not isinstance(data, dict) or not all(isinstance(v, dict) and "hash" in v
                                                             for v in data.values()):
                        raise ValueError("not an accounts file")
                except (OSError, ValueError) as exc:
                    raise WebError(f"cannot read the page's accounts {self.path}: {exc}") from None
                self._cache = (mtime, data)
            return self._cache[1]

    def set_password(self, role: str, password: str) -> None:
        if role not in ROLES:
            raise WebError(f"no role {role!r} (admin or viewer)")
        data = dict(self.load())
        gen = int(data.get(role, {}).get("generation", 0)) + 1
        data[role] = {"hash": hash_password(password), "generation": gen, "changed": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def ensure_admin(self) -> Optional[str]:
        """At first start: make the admin's password and return it (to be printed once); None when it exists."""
        if "admin" in self.load():
            return None
        password = new_password()
        self.set_password("admin", password)
        return password

    def check(self, role: str, password: str) -> bool:
        acct = self.load().get(role)
        if acct is None:
            hash_password(password)      # the same time whether or not the account exists
            return False
        return verify_password(password, acct["hash"])

    def generation(self, role: str) -> Optional[int]:
        acct = self.load().get(role)
        return None if acct is None else int(acct.get("generation", 0))


@dataclass
class Session:
    role: str
    generation: int
    csrf: str
    created: float
    last: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Server-side sessions, keyed by the hash of the cookie's token (a memory dump holds no usable cookie)."""

    def __init__(self, accounts: Accounts, idle_seconds: float, clock=time.time):
        self.accounts, self.idle, self.clock = accounts, idle_seconds, clock
        self._by_hash: Dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, role: str) -> Tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        s = Session(role, self.accounts.generation(role) or 0, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            self._by_hash[_digest(token)] = s
        return token, s

    def get(self, token: Optional[str]) -> Optional[Session]:
        """The live session of ``token`` (its idle timer restarted), or None: unknown, expired, or its account's
        password was reset since."""
        if not token:
            return None
        now = self.clock()
        key = _digest(token)
        with self._lock:
            s = self._by_hash.get(key)
            if s is None:
                return None
            if now - s.last > self.idle or now - s.created > SESSION_MAX or \
                    self.accounts.generation(s.role) != s.generation:
                del self._by_hash[key]
                return None
            s.last = now
            return s

    def peek(self, token: Optional[str]) -> Optional[Session]:
        """The live session of ``token`` without restarting its idle timer (the gate before a body; an open live
        stream, which must end with its session)."""
        if not token:
            return None
        now = self.clock()
        with self._lock:
            s = self._by_hash.get(_digest(token))
        if s is None or now - s.last > self.idle or now - s.created > SESSION_MAX or \
                self.accounts.generation(s.role) != s.generation:
            return None
        return s

    def end(self, token: Optional[str]) -> None:
        if token:
            with self._lock:
                self._by_hash.pop(_digest(token), None)

    def _expire(self, now: float) -> None:
        for k in [k for k, s in self._by_hash.items() if now - s.last > self.idle or now - s.created > SESSION_MAX]:
            del self._by_hash[k]

    def __len__(self) -> int:
        return len(self._by_hash)


@dataclass
class LoginLimiter:
    """Wrong passwords per client address and in total, over :data:`LOGIN_WINDOW` seconds.

    A client with ``per_client`` failures in the window is refused (HTTP 429) until ``60 * 2**(extra)`` seconds after
    its last failure (``extra``: failures beyond the limit; at most an hour). ``total`` failures from everyone in the
    window refuse every login for 5 minutes after the last one: a crowd of addresses guessing slowly still meets a
    limit (the owner too, for those minutes; `doorface web` logs it). A refused login checks no password, so the
    limit also bounds the CPU spent on PBKDF2. Memory: at most :attr:`max_clients` addresses are remembered."""

    per_client: int = 5
    total: int = 50
    clock: object = time.monotonic
    max_clients: int = 10000
    _clients: "OrderedDict[str, Deque[float]]" = field(default_factory=OrderedDict)
    _all: Deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _attempt_lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again; 0: now."""
        now = self.clock()
        with self._lock:
            self._trim(now)
            waits = [0.0]
            if len(self._all) >= self.total:
                waits.append(self._all[-1] + 300 - now)
            mine = self._clients.get(client)
            if mine and len(mine) >= self.per_client:
                extra = len(mine) - self.per_client
                waits.append(mine[-1] + min(60 * 2 ** extra, 3600) - now)
            return int(max(waits) + 0.999)

    def attempt(self, client: str) -> int:
        """One login attempt, atomically: 0 and the attempt counted as a failure until :meth:`succeeded` says
        otherwise, or the seconds to wait (nothing counted). Guesses sent all at once cannot pass the limit while
        the first ones are still being checked."""
        with self._attempt_lock:
            wait = self.retry_after(client)
            if not wait:
                self.failed(client)
            return wait

    def failed(self, client: str) -> None:
        now = self.clock()
        with self._lock:
            q = self._clients.pop(client, None) or deque()
            q.append(now)
            self._clients[client] = q
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            self._all.append(now)

    def succeeded(self, client: str) -> None:
        """The attempt counted by :meth:`attempt` was the right password: the client's count is cleared, and its
        attempt taken out of the total."""
        with self._lock:
            self._clients.pop(client, None)
            if self._all:
                self._all.pop()

    def _trim(self, now: float) -> None:
        while self._all and now - self._all[0] > LOGIN_WINDOW:
            self._all.popleft()
        for key in list(self._clients):
            q = self._clients[key]
            while q and now - q[0] > LOGIN_WINDOW:
                q.popleft()
            if not q:
                del self._clients[key]
