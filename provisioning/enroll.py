"""Online enrollment, device side: `kiosk provision enroll --claim CODE --broker mqtts://host:port`.

The kiosk makes (or keeps) its Ed25519 ledger key, makes a TLS key (EC P-256) and a CSR, proves
the claim code to the cloud over the broker's enrollment-only listener, and gets back its
certificate, the CA certificate and the cloud-signed enrollment document (site config, cloud
public key, site secret); see cloud_sync.enroll for the protocol and why the cloud key can be
trusted. The answer is checked (sealed with the claim key, for our request, signed by the cloud
key it names, which must match a pinned or given one; certificate for our TLS key and device id,
issued by that CA), then written through `provisioning.bundle.apply_enrollment`: atomic files,
keys 0600, the enrollment record last, re-enrollment only with `reenroll` (recorded).

An enrolled device is refused before the claim is used, unless `reenroll`. Until an answer is
applied, the request and TLS key are kept in `.enroll-pending.json` (0600): running the same
command again re-sends the very same request, which the cloud answers again instead of calling
the claim used (a lost answer does not cost a claim).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_sync.enroll_wire import (
    DEVICE_ID,
    ClaimKeys,
    EnrollError,
    Grant,
    answer_topic,
    client_id,
    digest,
    open_answer,
    request_topic,
    seal_request,
)
from edge.ledger import load_private_key, public_bytes
from edge.ledger.keys import public_key_from_bytes
from provisioning.bundle import (
    ENROLLMENT_FILE,
    EnrollResult,
    apply_enrollment,
    pinned_cloud_key,
    verify_signed,
)
from provisioning.errors import AlreadyEnrolled, BundleRejected, EnrollRefused, ProvisionError
from provisioning.files import Owner, write_atomic
from provisioning.identity import ensure_device_key, kiosk_owner

__all__ = ["enroll", "enroll_async", "parse_broker"]

PENDING_FILE = ".enroll-pending.json"
TLS_KEY, TLS_CERT, CA_CERT = "tls.key", "tls.crt", "ca.crt"
DEFAULT_PORT = 8883


def parse_broker(url: str) -> tuple[str, int]:
    """`mqtts://host:port` (TLS only: the claim proof is safe in clear, the site is not)."""
    parts = urlsplit(url)
    if parts.scheme != "mqtts" or not parts.hostname:
        raise ProvisionError(f"broker must be mqtts://HOST[:PORT], not {url!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ProvisionError(f"broker {url!r}: {exc}") from None
    return parts.hostname, port


def default_device_id() -> str:
    return socket.gethostname().split(".")[0]


def _tls_key_and_csr(device: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.PEM)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pending_request(
    config_dir: Path, keys: ClaimKeys, device: str, reenroll: bool, ledger_hex: str, ts_ms: int
) -> tuple[bytes, bytes]:
    """(request payload, TLS key PEM): the unanswered one for this claim, else a new one."""
    path = config_dir / PENDING_FILE
    want = {"claim": keys.claim_id, "device": device, "reenroll": reenroll, "ledger": ledger_hex}
    if path.exists():
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
            if {k: doc.get(k) for k in want} == want:
                return base64.b64decode(doc["request"]), doc["tls_key"].encode()
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: make a new request
    key, csr = _tls_key_and_csr(device)
    ledger_key = load_private_key(config_dir / "device.key")
    payload = seal_request(
        keys, device=device, csr_pem=csr, ledger_key=ledger_key, reenroll=reenroll, ts_ms=ts_ms
    )
    pem = _pem(key)
    doc = {**want, "request": base64.b64encode(payload).decode(), "tls_key": pem.decode()}
    write_atomic(path, json.dumps(doc).encode(), 0o600)
    return payload, pem


async def _exchange(
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    keys: ClaimKeys,
    payload: bytes,
    timeout_s: float,
) -> tuple[Grant, bytes]:
    import aiomqtt

    request_digest = digest(payload)
    where = f"mqtts://{host}:{port}"
    client = aiomqtt.Client(
        host,
        port,
        # The broker's ACL ties the claim topics to this client id (`%c`).
        identifier=client_id(keys.claim_id),
        tls_context=ctx,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=min(timeout_s, 10.0),
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    )
    try:
        async with asyncio.timeout(timeout_s), client:
            await client.subscribe(answer_topic(keys.claim_id), qos=1)
            await client.publish(request_topic(keys.claim_id), payload, qos=1)
            async for message in client.messages:
                if not isinstance(message.payload, bytes | bytearray):
                    continue
                got = open_answer(bytes(message.payload), keys, request_digest)
                if got is not None:
                    grant, cloud_key = got
                    return grant, public_bytes(cloud_key)
    except TimeoutError:
        raise ProvisionError(
            f"no answer from the cloud at {where} within {timeout_s:g} s: is the reconciler "
            "running with [reconciler.enroll]? (run the same command again to retry)"
        ) from None
    except EnrollError as exc:
        raise EnrollRefused(exc.reason) from None
    except (aiomqtt.MqttError, OSError) as exc:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            raise ProvisionError(
                f"{where}: the broker's certificate is not signed by the CA given with --ca "
                f"(or a system CA): refusing to enroll there ({text})"
            ) from None
        raise ProvisionError(f"cannot reach the enrollment listener {where}: {text}") from None
    raise ProvisionError(f"{where}: the connection closed before an answer")


def _check_certificate(grant: Grant, tls_pem: bytes, device: str) -> None:
    try:
        cert = x509.load_pem_x509_certificate(grant.certificate)
        ca_cert = x509.load_pem_x509_certificate(grant.ca)
        key = serialization.load_pem_private_key(tls_pem, None)
    except ValueError as exc:
        raise EnrollRefused(f"unreadable certificate in the answer: {exc}") from exc
    pub = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*pub) != key.public_key().public_bytes(*pub):
        raise EnrollRefused("the certificate is not for this device's TLS key")
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [a.value for a in cns] != [device]:
        raise EnrollRefused(f"the certificate names {cns!r}, not {device!r}")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise EnrollRefused(f"the certificate is not issued by the CA sent with it: {exc}") from exc


async def enroll_async(
    *,
    claim: str,
    broker: str,
    config_dir: Path,
    device: str | None = None,
    ca_file: Path | None = None,
    cloud_public_key: bytes | None = None,
    reenroll: bool = False,
    timeout_s: float = 30.0,
    owner: Owner | None = None,
) -> EnrollResult:
    """Enroll this kiosk online with a claim code; see the module docstring."""
    device = device or default_device_id()
    if not DEVICE_ID.match(device):
        raise ProvisionError(f"device id {device!r}: 1-32 of A-Z a-z 0-9 _ . - (give --device)")
    try:
        keys = ClaimKeys.from_code(claim)
    except ValueError as exc:
        raise ProvisionError(str(exc)) from None
    host, port = parse_broker(broker)
    record = config_dir / ENROLLMENT_FILE
    if record.exists() and not reenroll:  # before the claim is spent
        previous = json.loads(record.read_text())
        raise AlreadyEnrolled(
            f"device already enrolled as {previous.get('device')!r} at site "
            f"{previous.get('site')!r}; give --reenroll to replace that enrollment"
        )
    pinned = pinned_cloud_key(config_dir)
    if pinned is not None and cloud_public_key is not None and pinned != cloud_public_key:
        raise BundleRejected("cloud key", "the given cloud key differs from the pinned one")
    expected = cloud_public_key or pinned
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ProvisionError(f"--ca {ca_file}: not a readable CA certificate ({exc})") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    owner = owner if owner is not None else kiosk_owner()
    config_dir.mkdir(parents=True, exist_ok=True)
    ledger = ensure_device_key(config_dir / "device.key", owner)
    payload, tls_pem = _pending_request(
        config_dir, keys, device, reenroll, ledger.public_hex, time.time_ns() // 1_000_000
    )
    grant, cloud_raw = await _exchange(host, port, ctx, keys, payload, timeout_s)

    if expected is not None and cloud_raw != expected:
        raise BundleRejected("cloud key", "the answer is signed by another cloud key than ours")
    enrollment = verify_signed(grant.document, public_key_from_bytes(cloud_raw))
    if enrollment.device != device:
        raise EnrollRefused(f"the cloud enrolled {enrollment.device!r}, not {device!r}")
    _check_certificate(grant, tls_pem, device)
    config: dict[str, Any] = json.loads(json.dumps(enrollment.config))
    agent = config.setdefault("agent", {})
    link = agent.setdefault("broker", {})
    link.setdefault("host", host)
    link["tls"] = {
        "ca": str(config_dir / CA_CERT),
        "cert": str(config_dir / TLS_CERT),
        "key": str(config_dir / TLS_KEY),
    }
    result = apply_enrollment(
        dataclasses.replace(enrollment, config=config),
        config_dir,
        reenroll=reenroll,
        # The answer is fresh by construction (bound to our new request), so its validity is
        # judged by the cloud's clock, not a kiosk clock that NTP may not have set yet.
        now=enrollment.issued_at,
        owner=owner,
        files={
            TLS_KEY: (tls_pem, 0o600),
            TLS_CERT: (grant.certificate, 0o644),
            CA_CERT: (grant.ca, 0o644),
        },
        record_extra={"method": "online", "claim": keys.claim_id, "broker": f"{host}:{port}"},
    )
    (config_dir / PENDING_FILE).unlink(missing_ok=True)
    return result


def enroll(**kwargs: Any) -> EnrollResult:
    """`enroll_async` for the command line."""
    return asyncio.run(enroll_async(**kwargs))
