"""The mosquitto.conf `kiosk cloud broker-config` writes runs on the real mosquitto whether it is
started as root (it drops to user mosquitto before reading its key) or as user mosquitto, and a
device connects to it with mutual TLS."""

from __future__ import annotations

import grp
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click.testing
import pytest

from kiosk.cli import cli
from tests.mqtt_broker import MOSQUITTO, free_port

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="no mosquitto binary"),
    pytest.mark.skipif(os.geteuid() != 0, reason="starts mosquitto as root and as mosquitto"),
]


def _has_mosquitto_user() -> bool:
    try:
        grp.getgrnam("mosquitto")
    except KeyError:
        return False
    return True


@pytest.fixture
def pki() -> Iterator[Path]:
    # Not under pytest's tmp dir: that is 0700 root, and user mosquitto must enter the folder.
    root = Path(tempfile.mkdtemp(prefix="kiosk-broker-"))
    os.chmod(root, 0o755)
    try:
        yield root / "pki"
    finally:
        shutil.rmtree(root)


def _run(*args: str) -> str:
    result = click.testing.CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _mtls_connect(pki: Path, port: int, device: str) -> bytes:
    """An MQTT CONNECT over mutual TLS with the device's certificate; returns the CONNACK."""
    import socket

    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / f"{device}.crt"), str(pki / f"{device}.key"))
    client_id = device.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x1e"  # MQTT 3.1.1, clean session, keepalive 30 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = var + payload
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(bytes([0x10, len(body)]) + body)
        return tls.recv(4)


@pytest.mark.parametrize("started_as", ["root", "mosquitto"])
def test_the_generated_broker_config_runs_and_accepts_a_device(pki: Path, started_as: str):
    if not _has_mosquitto_user():
        pytest.skip("no user mosquitto on this machine")
    _run("cloud", "ca", "init", "--dir", str(pki))
    _run("cloud", "ca", "issue", "--device", "gate-1", "--site", "pool", "--dir", str(pki))
    port = free_port()
    out = _run("cloud", "broker-config", "--dir", str(pki), "--port", str(port))
    assert "warning" not in out
    conf = pki / "mosquitto.conf"
    assert "user root" not in conf.read_text()
    key = pki / "broker.key"
    assert key.stat().st_mode & 0o777 == 0o640  # never readable by others
    assert key.stat().st_gid == grp.getgrnam("mosquitto").gr_gid

    # As its own user: uid and gid mosquitto, as systemd's User=/Group= would start it.
    ids = (
        {}
        if started_as == "root"
        else {"user": "mosquitto", "group": "mosquitto", "extra_groups": []}
    )
    log = pki.parent / "mosquitto.log"
    with log.open("wb") as out_file:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=out_file, stderr=subprocess.STDOUT, **ids
        )
    try:
        deadline = time.monotonic() + 10
        connack = b""
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                connack = _mtls_connect(pki, port, "gate-1")
                break
            except OSError:
                time.sleep(0.05)
        assert connack == b"\x20\x02\x00\x00", (connack, log.read_text())  # accepted
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_without_root_it_says_what_mosquitto_cannot_read(pki: Path, monkeypatch):
    if not _has_mosquitto_user():
        pytest.skip("no user mosquitto on this machine")
    from cloud_sync import ca

    monkeypatch.setattr(ca.os, "geteuid", lambda: 1000)  # as an operator without sudo
    _run("cloud", "ca", "init", "--dir", str(pki))
    result = click.testing.CliRunner().invoke(
        cli, ["cloud", "broker-config", "--dir", str(pki), "--port", "18883"]
    )
    assert result.exit_code == 0
    warnings = result.stderr.strip().splitlines()
    assert warnings == [
        f"warning: user mosquitto cannot read {pki / 'broker.key'}: run this command as root,"
        f" or `sudo chgrp mosquitto {pki / 'broker.key'} && sudo chmod g+r {pki / 'broker.key'}`"
    ]
