"""`kiosk run` as systemd runs it: a process that says READY on $NOTIFY_SOCKET, and on SIGTERM
stops cleanly (exit 0), its screen saying "out of service", its ledger intact."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from PIL import Image

from edge.feedback.screens import OutOfServiceScreen, Status
from edge.ledger import Ledger, verify
from tests.daemon_helpers import Site, kiosk_config

CONFIG = """
[kiosk]
id = "gate-1"
site = "pool"
role = "gate"
product = "swim"
state_dir = "{tmp}/state"
key_file = "{tmp}/device.key"
site_key_file = "{tmp}/site.key"

[rules.products.swim]
name = "Swim"
price = 2000

[nfc]
backend = "sim"

[gpio]
backend = "sim"

[display]
backend = "sim"
frames_dir = "{tmp}/frames"
"""


def test_sigterm_stops_the_daemon_cleanly(tmp_path):
    site = Site(tmp_path, kiosk_config(tmp_path))
    site.enroll("m1", "Alice", "04A1B2C3D4E5F6", cash=5000)
    site.push()
    config = tmp_path / "kiosk.toml"
    config.write_text(CONFIG.format(tmp=tmp_path))
    sock_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.settimeout(20)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from kiosk.cli import main; main()",
            "run",
            "--config",
            str(config),
        ],
        env={**os.environ, "NOTIFY_SOCKET": sock_path},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.recv(256).startswith(b"READY=1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
        assert server.recv(256) == b"STOPPING=1"
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    last = sorted((tmp_path / "frames").glob("*.png"))[-1]
    expected = OutOfServiceScreen().render(Status(online=False, now=None))
    got = Image.open(last).convert("1")
    # The status bar holds a clock; the body must be the out-of-service screen.
    body = (0, 12, 128, 64)
    assert got.crop(body).tobytes() == expected.convert("1").crop(body).tobytes()
    with Ledger(tmp_path / "state" / "ledger.db") as led:
        assert verify(led).ok
