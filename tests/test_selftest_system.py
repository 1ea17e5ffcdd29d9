"""`kiosk selftest` rows about the kiosk itself: keys and enrollment, certificate expiry, broker
reachability (a real TCP listener), clock trust (injected outputs) and disk space."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.checks.system import system_checks
from edge.drivers.base import Check
from kiosk.cli import cli
from kiosk.link import broker_address, load_kiosk_config

NOW = datetime(2026, 3, 1, tzinfo=UTC)

# What `kiosk selftest` passes: the [agent] section read by the composition root.
LINK = {"load": load_kiosk_config, "broker_of": broker_address}


def synced(cmd: Sequence[str]) -> str:
    return "yes\n" if cmd[0] == "timedatectl" else ""


def unsynced(cmd: Sequence[str]) -> str:
    return "no\n" if cmd[0] == "timedatectl" else ""


def cert_file(path: Path, not_after: datetime) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gate-1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    yield sock.getsockname()[1]
    sock.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(tmp: Path, *, port: int, cert: Path | None, cloud_key: str = "ab" * 32) -> Path:
    tls = (
        f'\n[agent.broker.tls]\nca = "{cert}"\ncert = "{cert}"\nkey = "{cert}.key"\n'
        if cert
        else ""
    )
    path = tmp / "kiosk.toml"
    path.write_text(
        f'[kiosk]\nid = "gate-1"\nsite = "pool-7"\nrole = "pos"\nstate_dir = "{tmp}/state"\n'
        f'key_file = "{tmp}/device.key"\nsite_key_file = "{tmp}/site.key"\n'
        f'cloud_public_key = "{cloud_key}"\n\n[agent.broker]\nhost = "127.0.0.1"\n'
        f"port = {port}\n{tls}"
    )
    return path


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def provisioned(tmp_path: Path, port: int, cert: Path | None = None) -> Path:
    config = write_config(tmp_path, port=port, cert=cert)
    result = CliRunner().invoke(cli, ["provision", "keys", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return config


def test_an_enrolled_kiosk_passes_every_system_check(tmp_path: Path, listener: int) -> None:
    cert = cert_file(tmp_path / "device.crt", NOW + timedelta(days=300))
    config = provisioned(tmp_path, listener, cert)
    checks = by_name(system_checks(config, run=synced, now=NOW, **LINK))
    assert set(checks) == {
        "config", "device key", "site key", "enrollment", "certificate", "broker", "clock", "disk",
    }  # fmt: skip
    failed = [c for c in checks.values() if not c.ok]
    assert failed == []
    assert checks["clock"].detail.startswith("ntp")


def test_each_failure_says_how_to_fix_it(tmp_path: Path) -> None:
    cert = cert_file(tmp_path / "device.crt", NOW + timedelta(days=10))
    config = provisioned(tmp_path, closed_port(), cert)
    (tmp_path / "site.key").chmod(0o644)
    (tmp_path / "device.key").unlink()
    checks = by_name(system_checks(config, run=unsynced, now=NOW, **LINK))
    assert "missing" in checks["device key"].detail
    assert "kiosk provision keys" in checks["device key"].fix
    assert checks["site key"].fix == f"chmod 600 {tmp_path / 'site.key'}"
    assert "in 10 days" in checks["certificate"].detail
    assert not checks["broker"].ok
    assert "network" in checks["broker"].fix
    assert not checks["clock"].ok
    assert "timedatectl set-ntp true" in checks["clock"].fix
    assert "time_passes_fail_closed" in checks["clock"].fix


def test_expired_certificate_and_no_enrollment(tmp_path: Path) -> None:
    cert = cert_file(tmp_path / "device.crt", NOW - timedelta(days=1))
    config = write_config(tmp_path, port=closed_port(), cert=cert, cloud_key="")
    checks = by_name(system_checks(config, run=synced, now=NOW, **LINK))
    assert "expired" in checks["certificate"].detail
    assert not checks["enrollment"].ok
    assert "bundle apply" in checks["enrollment"].fix


def test_unreadable_config_is_one_failing_row(tmp_path: Path) -> None:
    bad = tmp_path / "kiosk.toml"
    bad.write_text('[kiosk]\nid = "gate 1"\n')
    (check,) = system_checks(bad, run=synced, now=NOW, **LINK)
    assert (check.name, check.ok) == ("config", False)


def test_selftest_command_prints_the_system_rows_in_its_table(tmp_path: Path) -> None:
    config = provisioned(tmp_path, closed_port())
    result = CliRunner().invoke(cli, ["selftest", "--config", str(config)])
    assert result.exit_code == 1  # the broker is not there
    for row in ("config", "device key", "site key", "enrollment", "broker", "clock", "disk"):
        assert row in result.output
    assert "fix: check the network" in result.output
    assert "FAIL" in result.output
