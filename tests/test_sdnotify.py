"""The notify protocol against a datagram socket the test binds, as systemd would."""

from __future__ import annotations

import socket

from edge.daemon.sdnotify import Notifier


def test_ready_status_and_watchdog_reach_the_socket(tmp_path):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"})
    assert n.watchdog_interval_s == 10.0
    assert n.ready("serving")
    assert server.recv(256) == b"READY=1\nSTATUS=serving"
    assert n.watchdog()
    assert server.recv(256) == b"WATCHDOG=1"
    assert n.stopping()
    assert server.recv(256) == b"STOPPING=1"
    n.close()
    server.close()


def test_without_systemd_nothing_is_sent():
    n = Notifier({})
    assert n.watchdog_interval_s is None
    assert not n.ready()


def test_a_vanished_socket_is_logged_not_raised(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not n.status("x")
    assert "systemd notify failed" in caplog.text
