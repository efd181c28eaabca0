"""The local socket through which other processes (the Home Assistant bridge, the web page, ``doorface events
--follow``) hear the door's records and send it commands. Network-facing code runs there, never beside the relay.

Protocol (version 1): a Unix stream socket, one JSON object per line, UTF-8, every line with ``"v": 1``.

- On connect the server sends ``{"v": 1, "type": "hello", "door": ..., "queue": N}``, then every record the bus
  publishes (see :mod:`edge.door.events`), in order. A peer that reads too slowly has at most ``queue`` records
  waiting for it; older ones are dropped, and the next record it gets carries ``"dropped"``: how many it has lost
  in all (decisions can be caught up from the access log by ``seq``).
- A peer sends commands: ``{"v": 1, "cmd": "open", "id": "any", "user": "who asked"}``. The server answers
  ``{"v": 1, "type": "reply", "id": ..., "ok": true}`` once the command is queued for the frame loop (the outcome is
  a ``decision`` record, ``remote_open`` or ``remote_rejected``, carrying the same ``id``), or ``"ok": false`` with
  an ``error``. Commands: ``open`` (one pulse of the strike, under the door's lockout; ``"face": true``: only
  while an enrolled, live face is in view), ``ping``, and ``reject`` (``"reason"``, ``"count"``): a command a peer
  refused itself (a bad remote-open code), logged as ``remote_rejected`` with that reason and, with ``"count":
  true``, counted as a denied attempt towards the lockout.
- The hello line also carries the strike's and the camera's state now (``"relay"``, ``"camera"``), when known.
- Who may connect: the socket file is mode 0660, owned by the door's group; on top of that, the server reads the
  peer's credentials (``SO_PEERCRED``) and refuses, with one ``error`` line, a peer that is neither root, nor the
  door's own user, nor a member of the allowed group.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
from collections import deque
from pathlib import Path
from typing import Callable, Deque, List, Optional

from edge.door.events import PROTOCOL, CommandQueue, Sink

log = logging.getLogger("doorface")

#: Records waiting per peer before the oldest is dropped.
PEER_QUEUE = 256
#: Longest command line accepted (bytes).
MAX_LINE = 4096
COMMANDS = ("open", "ping", "reject", "reload", "frames")
#: ``frames``: at most this many frames per request, this wide, this often (a live preview or an enrollment at the
#: door camera; never more than :data:`FRAME_PEERS` peers at once).
FRAME_LIMITS = {"count": (1, 3000), "width": (64, 1280), "fps": (0.2, 15.0)}
FRAME_PEERS = 2


def peer_credentials(conn: socket.socket) -> tuple:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket."""
    data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", data)


def peer_groups(pid: int, gid: int) -> set:
    """The peer's primary and supplementary groups (from ``/proc/<pid>/status``)."""
    groups = {gid}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    except OSError:
        pass
    return groups


def allowed(uid: int, groups: set, own_uid: int, group: Optional[int]) -> bool:
    """Root, the door's own user, or a member of ``group`` (None: nobody else)."""
    return uid == 0 or uid == own_uid or (group is not None and group in groups)


def resolve_group(name: str) -> Optional[int]:
    """A group name or number -> gid; "" -> the process's own group."""
    if not name:
        return os.getegid()
    if name.isdigit():
        return int(name)
    import grp

    return grp.getgrnam(name).gr_gid


def _status(fn) -> dict:
    """The door's state for a hello line; never fails the connection."""
    try:
        return dict(fn()) if fn is not None else {}
    except Exception:
        return {}


def encode(obj: dict) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _refuse(conn: socket.socket) -> None:
    """Say why, then close without a reset (what the peer already sent is read and thrown away)."""
    try:
        conn.sendall(encode({"v": PROTOCOL, "type": "error", "error": "permission denied: not in the door's group"}))
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        while conn.recv(4096):
            pass
    except OSError:
        pass
    finally:
        conn.close()


class _Peer:
    def __init__(self, conn: socket.socket, size: int):
        self.conn = conn
        self.queue: Deque[bytes] = deque()
        self.size = size
        self.dropped = 0
        self.cond = threading.Condition()
        self.closed = False
        self.high_water = 0

    def offer(self, record: dict) -> None:
        with self.cond:
            if len(self.queue) >= self.size:
                self.queue.popleft()
                self.dropped += 1
            rec = {**record, "dropped": self.dropped} if self.dropped else record
            self.queue.append(encode(rec))
            self.high_water = max(self.high_water, len(self.queue))
            self.cond.notify()

    def reply(self, obj: dict) -> None:
        with self.cond:
            self.queue.append(encode({"v": PROTOCOL, **obj}))
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()


class SeamServer(Sink):
    """The socket, as a sink of the bus (records go out to every peer) and a source of commands (into
    ``commands``). :meth:`start` binds and listens; :meth:`close` stops and removes the socket file."""

    name = "socket"

    def __init__(self, path, commands: CommandQueue, group: str = "", door: str = "doorface",
                 queue: int = PEER_QUEUE, status: Optional[Callable[[], dict]] = None):
        self.path = Path(path)
        self.status = status    # the door's current state for the hello line (relay, camera)
        self.commands, self.group_name, self.door, self.queue = commands, group, door, queue
        self.peers: List[_Peer] = []
        self._lock = threading.Lock()
        self._sock: Optional[socket.socket] = None
        self._stop = threading.Event()
        self.refused = 0

    def start(self) -> "SeamServer":
        self.group = resolve_group(self.group_name)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()    # left by a killed daemon
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        if self.group != os.getegid():
            os.chown(self.path, -1, self.group)
        sock.listen(16)
        sock.settimeout(0.5)
        self._sock = sock
        threading.Thread(target=self._accept, name="socket-accept", daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            pid, uid, gid = peer_credentials(conn)
            if not allowed(uid, peer_groups(pid, gid), os.geteuid(), self.group):
                self.refused += 1
                log.warning("events socket: refused a peer (uid %d, pid %d): not in the door's group", uid, pid)
                threading.Thread(target=_refuse, args=(conn,), name="socket-refuse", daemon=True).start()
                continue
            peer = _Peer(conn, self.queue)
            now = _status(self.status)
            peer.reply({"type": "hello", "door": self.door, "queue": self.queue, "commands": list(COMMANDS), **now})
            with self._lock:
                self.peers.append(peer)
            threading.Thread(target=self._write, args=(peer,), name="socket-write", daemon=True).start()
            threading.Thread(target=self._read, args=(peer, uid), name="socket-read", daemon=True).start()

    def _write(self, peer: _Peer) -> None:
        try:
            while True:
                with peer.cond:
                    while not peer.queue and not peer.closed:
                        peer.cond.wait()
                    if peer.closed:
                        return
                    line = peer.queue.popleft()
                peer.conn.sendall(line)
        except OSError:
            pass
        finally:
            self._drop(peer)

    def _read(self, peer: _Peer, uid: int) -> None:
        try:
            f = peer.conn.makefile("rb")
            while True:
                line = f.readline(MAX_LINE + 1)
                if not line:
                    return
                peer.reply(self.handle(line, uid, peer))
        except (OSError, ValueError):
            pass
        finally:
            self._drop(peer)

    def handle(self, line: bytes, uid: int, peer: Optional[_Peer] = None) -> dict:
        """One command line -> the reply (the command itself goes to the frame loop's queue)."""
        if len(line) > MAX_LINE:
            return {"type": "reply", "ok": False, "error": f"line longer than {MAX_LINE} bytes"}
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return {"type": "reply", "ok": False, "error": f"not a JSON object: {exc}"}
        rid = cmd.get("id")
        if cmd.get("v") != PROTOCOL:
            return {"type": "reply", "id": rid, "ok": False, "error": f"unsupported version {cmd.get('v')!r}"}
        name = cmd.get("cmd")
        if name not in COMMANDS:
            return {"type": "reply", "id": rid, "ok": False, "error": f"unknown command {name!r}"}
        if name == "ping":
            return {"type": "reply", "id": rid, "ok": True}
        user = str(cmd.get("user") or f"uid {uid}")[:64]
        if name == "frames":
            try:
                extra = {"peer": peer, **frame_request(cmd)}
            except ValueError as exc:
                return {"type": "reply", "id": rid, "ok": False, "error": str(exc)}
        else:
            extra = {"face": cmd.get("face") is True} if name == "open" else {} if name == "reload" else \
                {"reason": str(cmd.get("reason") or "rejected")[:200], "count": cmd.get("count") is True}
        if not self.commands.put({"cmd": name, "id": rid, "user": user, "uid": uid, **extra}):
            return {"type": "reply", "id": rid, "ok": False, "error": "too many commands waiting"}
        return {"type": "reply", "id": rid, "ok": True}

    def _drop(self, peer: _Peer) -> None:
        peer.close()
        with self._lock:
            if peer in self.peers:
                self.peers.remove(peer)
        try:
            peer.conn.shutdown(socket.SHUT_RDWR)   # the peer sees the end now (its reader thread holds a file of it)
        except OSError:
            pass
        try:
            peer.conn.close()
        except OSError:
            pass

    def send(self, record: dict) -> None:
        with self._lock:
            peers = list(self.peers)
        for p in peers:
            p.offer(record)

    def send_to(self, peer: _Peer, record: dict) -> bool:
        """One record to one peer (frames); False when that peer is gone."""
        with self._lock:
            if peer not in self.peers:
                return False
        peer.offer(record)
        return True

    def close(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                self.path.unlink()
            except OSError:
                pass
        with self._lock:
            peers = list(self.peers)
        for p in peers:
            self._drop(p)


def frame_request(cmd: dict) -> dict:
    """A ``frames`` command's numbers, checked against :data:`FRAME_LIMITS` (ValueError says which)."""
    out = {}
    for key, (lo, hi) in FRAME_LIMITS.items():
        v = cmd.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ValueError(f"frames: {key} must be a number in [{lo:g}, {hi:g}]")
        out[key] = int(v) if key != "fps" else float(v)
    return out


def socket_path(cfg_value: str, state_dir) -> Path:
    """Where the socket lives: the config's path, or systemd's ``RUNTIME_DIRECTORY`` (``/run/doorface``), or the
    state dir."""
    if cfg_value:
        return Path(cfg_value)
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime or state_dir) / "events.sock"


class SeamClient:
    """A peer of the socket: :meth:`records` yields the door's records; :meth:`command` sends one command and
    returns the reply (records that arrive meanwhile are kept for :meth:`records`)."""

    def __init__(self, path, timeout: Optional[float] = 5.0):
        self.path, self.timeout = Path(path), timeout
        self._sock: Optional[socket.socket] = None
        self._file = None
        self._pending: Deque[dict] = deque()
        self.hello: Optional[dict] = None

    def connect(self) -> "SeamClient":
        from edge.errors import DoorfaceError

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise DoorfaceError(f"cannot reach the door at {self.path}: {exc.strerror or exc} (is `doorface run` "
                                "running, and are you in its group?)") from None
        self._sock, self._file = sock, sock.makefile("rb")
        first = self._next()
        if first.get("type") == "error":
            self.close()
            raise DoorfaceError(f"the door refused this connection: {first.get('error')}")
        self.hello = first
        return self

    def _next(self) -> dict:
        line = self._file.readline()
        if not line:
            raise EOFError("the door closed the connection")
        return json.loads(line)

    def command(self, name: str, **fields) -> dict:
        self._sock.sendall(encode({"v": PROTOCOL, "cmd": name, **fields}))
        while True:
            rec = self._next()
            if rec.get("type") == "reply":
                return rec
            self._pending.append(rec)

    def records(self, until: Callable[[dict], bool] = lambda r: False):
        """Yield records (forever, or until ``until(record)`` is true for a yielded one, or the door closes)."""
        while True:
            rec = self._pending.popleft() if self._pending else self._next()
            yield rec
            if until(rec):
                return

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()
