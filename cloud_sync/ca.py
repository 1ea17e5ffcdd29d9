"""The deployment CA for mutual TLS: a CA key and certificate, device and reconciler certificates
(CN = device id), and the mosquitto config and ACL that let a device write only its own topics."""

from __future__ import annotations

import datetime as dt
import grp
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_sync.errors import ConfigError
from cloud_sync.protocol import ROOT, check_name

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
RECONCILER = "reconciler"  # CN of the reconciler's certificate: the wide ACL rights
BROKER = "broker"
BROKER_ACCOUNT = "mosquitto"  # the user and group Debian's mosquitto runs as
# Never a device's CN: the cloud's own certificates, and the CA's files (`ca` -> ca.key).
RESERVED_NAMES = frozenset({RECONCILER, BROKER, "ca", "mosquitto", "enroll"})
ENROLL_ROOT = f"{ROOT}/enroll"  # kiosk/v1/enroll/<claim id>/req|res (the enrollment listener)
CRL = "crl.pem"  # revoked device certificates; mosquitto's `crlfile`
ISSUED = "issued.jsonl"  # one line per certificate issued: cn, serial (revocation finds them)
REVOKED = "revoked.jsonl"  # one line per certificate revoked
# A kiosk whose clock is up to 30 days behind (a dead RTC battery, a long storage) must still
# connect, so that the cloud's time can set it: certificates are valid from 31 days back.
BACKDATE = dt.timedelta(days=31)


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def _name(cn: str, site: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if site:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, site))
    return x509.Name(attrs)


def init_ca(directory: Path, *, name: str = "kiosk-edge deployment CA", days: int = 3650) -> Path:
    """Create the CA key (0600) and self-signed certificate; refuse to overwrite one."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / CA_KEY).exists():
        raise ConfigError(f"{directory / CA_KEY} exists; a CA is created once")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / CA_KEY, key)
    (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory / CA_CERT


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{directory}: no usable CA ({exc}); run `kiosk cloud ca init`") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{directory / CA_KEY}: not an EC key")
    return cert, key


def _certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    cn: str,
    *,
    site: str | None,
    server_names: tuple[str, ...],
    days: int,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_names else []
    usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, site))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server_names:
        import ipaddress

        sans: list[x509.GeneralName] = []
        for n in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _record_issued(directory: Path, cert: x509.Certificate, cn: str) -> None:
    line = json.dumps({"cn": cn, "serial": format(cert.serial_number, "x")})
    with (directory / ISSUED).open("a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _lines(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_crl(directory: Path) -> Path:
    """(Re)write the CRL of every revoked certificate, signed by the CA (mosquitto reads it
    at start and on SIGHUP). Its next update is far ahead: an expired CRL refuses everyone."""
    ca_cert, ca_key = _load_ca(directory)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + dt.timedelta(days=3650))
    )
    for row in _lines(directory / REVOKED):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(row["serial"], 16))
            .revocation_date(now)
            .build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    path = directory / CRL
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)
    share_with_broker([path])
    return path


def revoke(directory: Path, cn: str) -> int:
    """Revoke every certificate issued to `cn` and rewrite the CRL; how many were revoked."""
    check_name(cn, "certificate name")
    if cn in RESERVED_NAMES:
        raise ConfigError(f"{cn!r} is one of the cloud's own certificates, not a device")
    done = {r["serial"] for r in _lines(directory / REVOKED)}
    serials = [r["serial"] for r in _lines(directory / ISSUED) if r["cn"] == cn]
    fresh = [s for s in dict.fromkeys(serials) if s not in done]
    with (directory / REVOKED).open("a") as f:
        for serial in fresh:
            f.write(json.dumps({"cn": cn, "serial": serial}) + "\n")
    write_crl(directory)
    return len(fresh)


def issue(
    directory: Path,
    cn: str,
    *,
    site: str | None = None,
    server_names: tuple[str, ...] = (),
    days: int = 825,
) -> Issued:
    """A certificate signed by the CA: a device (CN = device id, OU = site), the reconciler
    (CN = `reconciler`), or the broker (with `server_names` as SANs)."""
    check_name(cn, "certificate name")
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(
        ca_cert, ca_key, key.public_key(), cn, site=site, server_names=server_names, days=days
    )
    out = Issued(directory / f"{cn}.crt", directory / f"{cn}.key")
    _record_issued(directory, cert, cn)
    _write_key(out.key, key)
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def issue_device(directory: Path, device: str, *, site: str, days: int = 825) -> Issued:
    """A device certificate (`kiosk cloud ca issue`): refuses the reserved names, whose files
    are the CA's, the broker's and the reconciler's (a device named `reconciler` would get the
    reconciler's rights, one named `ca` would overwrite the CA key), and an existing one."""
    check_name(device, "device id")
    if device.lower() in RESERVED_NAMES:
        names = ", ".join(sorted(RESERVED_NAMES))
        raise ConfigError(f"device id {device!r} is reserved ({names}); choose another")
    if (directory / f"{device}.key").exists():
        raise ConfigError(f"{directory / device}.key exists; a device certificate is issued once")
    return issue(directory, device, site=site, days=days)


def sign_csr(directory: Path, csr_pem: bytes, cn: str, *, site: str, days: int = 825) -> bytes:
    """A device (client-only) certificate for the public key of a CSR (online enrollment). Only
    the CSR's key is used, after checking its self-signature (the requester holds the private
    key): the name, site and usages are ours, whatever the CSR asks for. Returns the PEM."""
    check_name(cn, "certificate name")
    if cn.lower() in RESERVED_NAMES:
        raise ConfigError(f"{cn!r} is reserved for the cloud's own certificates")
    # Whatever a requester sends must end in a refusal, never in a fault: the cryptography
    # library raises more than ValueError for what it cannot parse or does not support.
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        public_key = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"not a usable PEM certificate request: {exc}") from exc
    if not valid:
        raise ConfigError("certificate request is not signed by its own key")
    if (
        not isinstance(public_key, ec.EllipticCurvePublicKey)
        or public_key.curve.name != "secp256r1"
    ):
        raise ConfigError("certificate request key must be EC P-256")
    ca_cert, ca_key = _load_ca(directory)
    cert = _certificate(ca_cert, ca_key, public_key, cn, site=site, server_names=(), days=days)
    _record_issued(directory, cert, cn)
    return cert.public_bytes(serialization.Encoding.PEM)


def ca_pem(directory: Path) -> bytes:
    return _load_ca(directory)[0].public_bytes(serialization.Encoding.PEM)


def acl_text() -> str:
    """mosquitto ACL: `%u` is the certificate CN (use_identity_as_username), so a device can
    write only its own uplink topics and read only its own downlink topics and its site's deny
    list; the reconciler reads and writes everything under the root."""
    lines = [
        "# kiosk-edge broker ACL (generated by `kiosk cloud broker-config`)",
        f"user {RECONCILER}",
        f"topic readwrite {ROOT}/#",
        "",
        "# every device, by certificate CN",
    ]
    for leaf in ("ops", "rpc/req", "status"):
        lines.append(f"pattern write {ROOT}/+/%u/{leaf}")
    for leaf in ("ack", "grants", "rpc/res"):
        lines.append(f"pattern read {ROOT}/+/%u/{leaf}")
    lines.append(f"pattern read {ROOT}/+/denylist")
    return "\n".join(lines) + "\n"


def enroll_acl_text() -> str:
    """ACL of the enrollment listener (anonymous, no client certificate): a client may only
    write the request topic and read the answer topic of the claim id it uses as its MQTT client
    id (`%c`), so without the claim code one cannot even watch another enrollment's topics."""
    return (
        "# kiosk-edge enrollment listener ACL (generated by `kiosk cloud broker-config`)\n"
        f"pattern write {ENROLL_ROOT}/%c/req\n"
        f"pattern read {ENROLL_ROOT}/%c/res\n"
    )


# TLS 1.2 with forward secrecy and AEAD only (no CBC, no SHA-1 MACs), and TLS 1.3's AEAD suites.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"
)
TLS13_CIPHERS = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
# The largest MQTT packet the broker takes (a payload is at most protocol.MAX_PAYLOAD, 1 MiB;
# the rest is room for the topic and properties). mosquitto 2.0 sets it for every listener.
MAX_PACKET = (1 << 20) + 4096
ENROLL_MAX_CONNECTIONS = 64


def _tls_lines() -> list[str]:
    return ["tls_version tlsv1.2", f"ciphers {TLS12_CIPHERS}", f"ciphers_tls1.3 {TLS13_CIPHERS}"]


def mosquitto_conf(
    *,
    directory: Path,
    port: int,
    bind: str = "127.0.0.1",
    server: Issued,
    acl_file: Path,
    crl_file: Path | None = None,
    user: str | None = None,
    persistence_dir: Path | None = None,
    enroll_port: int | None = None,
    enroll_acl_file: Path | None = None,
    enroll_max_connections: int = ENROLL_MAX_CONNECTIONS,
) -> str:
    """A mosquitto 2.0 config: one mTLS listener, identity from the certificate, the ACL; with
    `enroll_port`, a second, enrollment-only listener (server TLS, anonymous, its own ACL, at
    most `enroll_max_connections` clients). Both: TLS 1.2+ with AEAD suites only; every
    packet at most MAX_PACKET bytes (a larger one disconnects its sender)."""
    mtls = [
        f"listener {port} {bind}",
        f"cafile {directory / CA_CERT}",
        f"certfile {server.cert}",
        f"keyfile {server.key}",
        "require_certificate true",
        "use_identity_as_username true",
        *_tls_lines(),
        f"acl_file {acl_file}",
        "allow_anonymous false",
    ]
    if crl_file is not None:
        mtls.insert(2, f"crlfile {crl_file}")
    lines = ["# kiosk-edge broker (generated by `kiosk cloud broker-config`)"]
    if enroll_port is None:
        lines += ["per_listener_settings false", *mtls]
    else:
        if enroll_acl_file is None:
            raise ConfigError("an enrollment listener needs its ACL file")
        lines += [
            "per_listener_settings true",
            *mtls,
            "",
            "# enrollment only: devices without a certificate yet, claim topics only",
            f"listener {enroll_port} {bind}",
            f"certfile {server.cert}",
            f"keyfile {server.key}",
            "require_certificate false",
            *_tls_lines(),
            f"acl_file {enroll_acl_file}",
            "allow_anonymous true",
            f"max_connections {enroll_max_connections}",
            "",
        ]
    lines += [
        f"max_packet_size {MAX_PACKET}",
        f"message_size_limit {MAX_PACKET - 4096}",
        "set_tcp_nodelay true",
        "max_inflight_messages 100",
        "max_queued_messages 100000",
    ]
    if user:
        lines.append(f"user {user}")
    if persistence_dir:
        lines += ["persistence true", f"persistence_location {persistence_dir}/"]
    return "\n".join(lines) + "\n"


def broker_group() -> int | None:
    """The gid of group `mosquitto` (Debian's package creates it), or None without one."""
    try:
        return grp.getgrnam(BROKER_ACCOUNT).gr_gid
    except KeyError:
        return None


def share_with_broker(files: list[Path | None]) -> None:
    """Let mosquitto read its key, certificates and ACLs whether it runs as root or as user
    `mosquitto`: started as root it drops to that user before reading them, and a 0600 key
    owned by root is then unreadable. As root, the files go to group `mosquitto` (the key 0640:
    never readable by others); otherwise nothing changes (`broker_unreadable` says what)."""
    gid = broker_group()
    if gid is None or os.geteuid() != 0:
        return
    for path in files:
        if path is None:
            continue
        os.chown(path, -1, gid)
        os.chmod(path, 0o640 if path.suffix == ".key" else 0o644)


def broker_unreadable(directory: Path) -> list[Path]:
    """What user `mosquitto` cannot reach in `directory` (its key, or a folder on the way it
    cannot enter): empty when the broker will read its files, or when there is no such user."""
    gid = broker_group()
    if gid is None:
        return []
    blocked: list[Path] = []
    key = directory / f"{BROKER}.key"
    if key.exists():
        st = key.stat()
        if not (st.st_mode & 0o004 or (st.st_gid == gid and st.st_mode & 0o040)):
            blocked.append(key)
    for folder in [directory.resolve(), *directory.resolve().parents]:
        st = folder.stat()
        if not (st.st_mode & 0o001 or (st.st_gid == gid and st.st_mode & 0o010)):
            blocked.append(folder)
    return blocked


def write_broker_config(
    directory: Path,
    *,
    port: int,
    bind: str = "127.0.0.1",
    user: str | None = None,
    enroll_port: int | None = None,
    server_names: tuple[str, ...] = (),
) -> Path:
    """Issue the broker's certificate (if missing) and write mosquitto.conf + acl in the CA
    directory (+ enroll.acl with `enroll_port`); returns the config path."""
    server = Issued(directory / f"{BROKER}.crt", directory / f"{BROKER}.key")
    if not server.cert.exists():
        names = tuple(dict.fromkeys((bind, "localhost", *server_names)))
        server = issue(directory, BROKER, server_names=names)
    acl = directory / "mosquitto.acl"
    acl.write_text(acl_text())
    enroll_acl = None
    if enroll_port is not None:
        enroll_acl = directory / "enroll.acl"
        enroll_acl.write_text(enroll_acl_text())
    crl = write_crl(directory)
    share_with_broker([server.key, server.cert, directory / CA_CERT, acl, enroll_acl])
    conf = directory / "mosquitto.conf"
    conf.write_text(
        mosquitto_conf(
            directory=directory,
            port=port,
            bind=bind,
            server=server,
            acl_file=acl,
            crl_file=crl,
            user=user,
            enroll_port=enroll_port,
            enroll_acl_file=enroll_acl,
        )
    )
    return conf
