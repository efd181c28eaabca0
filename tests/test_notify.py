import socket

from edge.door.notify import Systemd


def listener(tmp_path):
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    return s, path


def test_messages_reach_a_real_socket(tmp_path):
    s, path = listener(tmp_path)
    sd = Systemd({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert sd.enabled and sd.watchdog_period() == 4.0
    assert sd.ready("3 templates")
    assert s.recv(1024) == b"READY=1\nSTATUS=3 templates"
    assert sd.watchdog_ping()
    assert s.recv(1024) == b"WATCHDOG=1"
    sd.status("last: grant ann")
    assert s.recv(1024) == b"STATUS=last: grant ann"
    sd.stopping()
    assert s.recv(1024) == b"STOPPING=1"
    s.close()


def test_does_nothing_outside_systemd():
    sd = Systemd({})
    assert not sd.enabled and sd.watchdog_period() is None
    assert sd.ready() is False and sd.watchdog_ping() is False


def test_watchdog_for_another_pid_is_ignored():
    assert Systemd({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "100", "WATCHDOG_PID": "1"}).watchdog_period() is None


def test_missing_socket_is_not_an_error(tmp_path):
    assert Systemd({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready() is False
