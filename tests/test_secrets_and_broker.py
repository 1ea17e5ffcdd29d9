"""Secrets (issue 12 item 7) and the broker as a boundary (item 3): store modes, secrets never on
the command line, reserved CA names, malformed CSRs; the generated mosquitto config attacked."""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import subprocess

import pytest
from click.testing import CliRunner

from cloud_sync import ca
from cloud_sync.errors import ConfigError
from cloud_sync.store import SqliteCloudStore
from edge.ledger import generate_key
from provisioning.secret_input import Secret


def test_cloud_db_and_its_wal_are_created_owner_only(tmp_path):
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=generate_key())
    store.flag("k1", "refused", "x")  # a write: the -wal exists
    for name in ("cloud.db", "cloud.db-wal"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    store.close()


def test_a_store_readable_by_others_is_named_at_start(tmp_path, caplog):
    path = tmp_path / "cloud.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    SqliteCloudStore(path, replica="cloud", key=generate_key()).close()
    assert f"{path} is readable by others (mode 0644); run: chmod 600 {path}" in caplog.text


def test_a_secret_comes_from_stdin_a_file_or_a_prompt(tmp_path):
    import click

    @click.command()
    @click.option("--pin", type=Secret("PIN"), is_flag=False, flag_value="\x00ask")
    def show(pin: str) -> None:
        click.echo(f"got {pin}")

    r = CliRunner()
    assert r.invoke(show, ["--pin", "-"], input="4321\n").output == "got 4321\n"
    f = tmp_path / "pin"
    f.write_text("5555\n")
    assert r.invoke(show, ["--pin", f"@{f}"]).output == "got 5555\n"
    out = r.invoke(show, ["--pin"], input="9999\n").output
    assert "got 9999" in out and "9999\ngot" not in out  # asked without echo
    bad = r.invoke(show, ["--pin", f"@{tmp_path / 'none'}"])
    assert bad.exit_code == 2 and "No such file" in bad.output


@pytest.mark.parametrize("name", ["ca", "broker", "reconciler", "CA"])
def test_the_ca_refuses_reserved_device_names(tmp_path, name):
    ca.init_ca(tmp_path)
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(ConfigError, match="reserved"):
        ca.issue_device(tmp_path, name, site="s1")
    assert (tmp_path / "ca.key").read_bytes() == before
    assert not (tmp_path / "reconciler.key").exists() or name != "reconciler"


def test_kiosk_cloud_ca_issue_reserved_name_is_one_line(tmp_path):
    from kiosk.cli import cli as main

    ca.init_ca(tmp_path)
    res = CliRunner().invoke(
        main, ["cloud", "ca", "issue", "--device", "ca", "--site", "s1", "--dir", str(tmp_path)]
    )
    assert res.exit_code == 1
    assert "reserved" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    "csr",
    [
        b"",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        b"\x00" * 100,
    ],
)
def test_a_malformed_csr_is_refused_cleanly(tmp_path, csr):
    ca.init_ca(tmp_path)
    with pytest.raises(ConfigError):
        ca.sign_csr(tmp_path, csr, "k1", site="s1")


def test_an_ed25519_csr_is_refused_cleanly(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    ca.init_ca(tmp_path)
    key = Ed25519PrivateKey.generate()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k1")]))
        .sign(key, None)
    )
    with pytest.raises(ConfigError, match="P-256"):
        ca.sign_csr(tmp_path, csr.public_bytes(serialization.Encoding.PEM), "k1", site="s1")


# -- the broker --------------------------------------------------------------------------------

needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"),
    reason="no mosquitto",
)


@pytest.fixture
def broker(tmp_path):
    from tests.mqtt_broker import Broker, make_pki

    pki = make_pki(tmp_path, ["k1"], "s1")
    b = Broker(pki, enroll=True)
    b.start()
    yield b
    b.stop()


def _handshake(port: int, ciphers: str, tls13: bool = False) -> bool:
    import socket

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3 if tls13 else ssl.TLSVersion.TLSv1_2
    if not tls13:
        ctx.set_ciphers(ciphers)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
            ctx.wrap_socket(raw) as s,
        ):
            return s.version() is not None
    except (ssl.SSLError, OSError):
        return False


@pytest.mark.mqtt
@needs_mosquitto
def test_the_broker_refuses_cbc_sha1_and_takes_aead(broker):
    assert broker.enroll_port is not None
    for port in (broker.enroll_port,):
        assert not _handshake(port, "ECDHE-ECDSA-AES128-SHA")  # CBC with SHA-1
        assert not _handshake(port, "AES128-SHA")
        assert _handshake(port, "ECDHE-ECDSA-AES128-GCM-SHA256")
        assert _handshake(port, "", tls13=True)


@pytest.mark.mqtt
@needs_mosquitto
def test_an_oversized_message_on_the_enrollment_port_is_not_delivered(broker, tmp_path):
    sub = shutil.which("mosquitto_sub")
    pub = shutil.which("mosquitto_pub")
    if not (sub and pub):
        pytest.skip("no mosquitto clients")
    claim = "a" * 32
    topic = f"kiosk/v1/enroll/{claim}/req"
    cafile = str(broker.pki / ca.CA_CERT)
    common = ["-h", "127.0.0.1", "-p", str(broker.enroll_port), "--cafile", cafile]
    big = tmp_path / "big"
    big.write_bytes(b"x" * (2 << 20))
    # Published retained from the anonymous port, by the client the ACL allows on that topic.
    subprocess.run(
        [pub, *common, "-i", claim, "-t", topic, "-f", str(big), "-q", "1", "-r"],
        capture_output=True,
        timeout=10,
    )
    small = subprocess.run(
        [pub, *common, "-i", claim, "-t", topic, "-m", "ok", "-q", "1"],
        capture_output=True,
        timeout=10,
    )
    assert small.returncode == 0, small.stderr
    # The reconciler (all topics) sees no retained oversized copy.
    rec = broker.settings(ca.RECONCILER)
    assert rec.tls is not None
    got = subprocess.run(
        [
            sub,
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "--cafile",
            cafile,
            "--cert",
            str(rec.tls.cert),
            "--key",
            str(rec.tls.key),
            "-t",
            topic,
            "-W",
            "2",
            "-C",
            "1",
            "-i",
            "reconciler-test",
        ],
        capture_output=True,
        timeout=10,
    )
    assert len(got.stdout) < 1000


def test_the_generated_config_sets_limits_and_aead_suites(tmp_path):
    ca.init_ca(tmp_path)
    conf = ca.write_broker_config(tmp_path, port=18883, enroll_port=18884).read_text()
    assert "ciphers ECDHE-ECDSA-AES128-GCM-SHA256" in conf and "SHA:" not in conf
    assert "ciphers_tls1.3 TLS_AES_128_GCM_SHA256" in conf
    assert f"max_packet_size {ca.MAX_PACKET}" in conf
    assert "max_connections 64" in conf
    assert conf.count("tls_version tlsv1.2") == 2
