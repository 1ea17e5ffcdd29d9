"""The online enrollment wire format both sides use: claim codes and the keys derived from them,
the topics, and the sealed request and answer (see cloud_sync.enroll for the whole protocol)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cloud_sync import ca
from cloud_sync.errors import SyncError
from cloud_sync.protocol import SHARE_GROUP
from edge.ledger import KeyFileError
from edge.ledger.keys import public_bytes, public_key_from_bytes

log = logging.getLogger(__name__)

VERSION = 1
CONTEXT = b"kiosk-edge/enroll/v1\x00"
CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32: 5 bits a character
CODE_CHARS = 20  # 100 bits
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")  # as [kiosk] id allows
RESERVED_SITES = frozenset({"enroll"})  # kiosk/v1/enroll/... is the claims' topic space


class EnrollError(SyncError):
    """An enrollment request or answer was refused; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- codes and keys --------------------------------------------------------------------------


def new_code() -> str:
    """A claim code to read out or type: `XXXXX-XXXXX-XXXXX-XXXXX` (base32, 100 bits)."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_CHARS))
    return "-".join(raw[i : i + 5] for i in range(0, CODE_CHARS, 5))


def normalize_code(code: str) -> str:
    """Case, spaces and dashes do not matter; 0/1/8 typed for O/I/B are forgiven."""
    raw = re.sub(r"[\s-]", "", code).upper().translate(str.maketrans("018", "OIB"))
    if len(raw) != CODE_CHARS or any(c not in CODE_ALPHABET for c in raw):
        raise ValueError(f"not a claim code: expected {CODE_CHARS} letters/digits 2-7")
    return raw


def _hkdf(ikm: bytes, info: bytes, n: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), n, salt=b"kiosk-edge enroll v1", info=info).derive(ikm)


@dataclass(frozen=True, slots=True)
class ClaimKeys:
    claim_id: str  # topic level, MQTT client id, store key
    key: bytes  # what the store holds

    @classmethod
    def from_code(cls, code: str) -> ClaimKeys:
        ikm = normalize_code(code).encode()
        return cls(_hkdf(ikm, b"claim id", 16).hex(), _hkdf(ikm, b"claim key"))

    @property
    def mac_key(self) -> bytes:
        return _hkdf(self.key, b"mac")

    @property
    def box_key(self) -> bytes:
        return _hkdf(self.key, b"aes-gcm")

    def __repr__(self) -> str:
        return f"ClaimKeys({self.claim_id}, <hidden>)"


def request_topic(claim_id: str) -> str:
    return f"{ca.ENROLL_ROOT}/{claim_id}/req"


def answer_topic(claim_id: str) -> str:
    return f"{ca.ENROLL_ROOT}/{claim_id}/res"


def enroll_filters(shared: bool) -> list[str]:
    return [f"{SHARE_GROUP if shared else ''}{ca.ENROLL_ROOT}/+/req"]


def parse_request_topic(topic: str) -> str | None:
    """The claim id of `kiosk/v1/enroll/<claim id>/req`, else None."""
    prefix = ca.ENROLL_ROOT + "/"
    if not topic.startswith(prefix) or not topic.endswith("/req"):
        return None
    claim_id = topic[len(prefix) : -len("/req")]
    return claim_id if re.fullmatch(r"[0-9a-f]{32}", claim_id) else None


def fingerprint(public_key: bytes) -> str:
    """A short form of the cloud public key for people to compare."""
    return hashlib.sha256(public_key).hexdigest()[:16]


# -- wire format -----------------------------------------------------------------------------


MAX_REQUEST = 16 * 1024  # bytes of a request (a P-256 CSR in PEM is about 500)
MAX_ANSWER = 512 * 1024  # bytes of an answer (site config, certificates)

_Small = Annotated[bytes, msgspec.Meta(max_length=64)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]


class Request(msgspec.Struct, array_like=True, frozen=True):
    """device -> cloud on `.../req`."""

    v: _Count
    device: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=DEVICE_ID.pattern)]
    csr: Annotated[bytes, msgspec.Meta(max_length=8192)]  # PEM
    ledger_key: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]  # raw Ed25519
    nonce: _Small
    ts_ms: _Count
    reenroll: bool
    mac: _Small = b""  # HMAC-SHA256(claim MAC key, signed bytes)
    sig: _Small = b""  # Ed25519 of the ledger key over the same bytes + mac


class Grant(msgspec.Struct, array_like=True, frozen=True):
    """Inside the encrypted answer: the enrollment document (a signed bundle), the device
    certificate and the CA certificate, for the request with this digest."""

    request: _Small
    document: Annotated[bytes, msgspec.Meta(max_length=MAX_ANSWER)]
    certificate: Annotated[bytes, msgspec.Meta(max_length=16384)]
    ca: Annotated[bytes, msgspec.Meta(max_length=16384)]
    sig: _Small = b""  # the cloud's Ed25519 signature


class Answer(msgspec.Struct, array_like=True, frozen=True):
    """cloud -> device on `.../res`: `box` = AES-GCM(claim key) of a Grant when ok; else a
    reason, MACed with the claim key when the claim is known."""

    v: _Count
    request: _Small  # digest of the request answered
    ok: bool
    reason: Annotated[str, msgspec.Meta(max_length=1000, pattern=r"^[^\x00]*$")] = ""
    iv: _Small = b""
    box: Annotated[bytes, msgspec.Meta(max_length=MAX_ANSWER)] = b""
    mac: _Small = b""


ENCODER = msgspec.msgpack.Encoder()


def _request_bytes(topic: str, r: Request) -> bytes:
    fields = (r.v, r.device, r.csr, r.ledger_key, r.nonce, r.ts_ms, r.reenroll)
    return CONTEXT + b"req\x00" + topic.encode() + b"\x00" + ENCODER.encode(fields)


def grant_bytes(topic: str, g: Grant) -> bytes:
    fields = (g.request, g.document, g.certificate, g.ca)
    return CONTEXT + b"grant\x00" + topic.encode() + b"\x00" + ENCODER.encode(fields)


def refusal_bytes(topic: str, digest: bytes, reason: str) -> bytes:
    return CONTEXT + b"refused\x00" + topic.encode() + b"\x00" + digest + reason.encode()


def box_aad(topic: str, digest: bytes) -> bytes:
    return CONTEXT + b"box\x00" + topic.encode() + b"\x00" + digest


def claim_mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()


def seal_request(
    keys: ClaimKeys,
    *,
    device: str,
    csr_pem: bytes,
    ledger_key: Ed25519PrivateKey,
    reenroll: bool,
    ts_ms: int,
    nonce: bytes | None = None,
) -> bytes:
    topic = request_topic(keys.claim_id)
    r = Request(
        VERSION,
        device,
        csr_pem,
        public_bytes(ledger_key),
        nonce or os.urandom(16),
        ts_ms,
        reenroll,
    )
    signed = _request_bytes(topic, r)
    mac = claim_mac(keys.mac_key, signed)
    sig = ledger_key.sign(signed + mac)
    return ENCODER.encode(msgspec.structs.replace(r, mac=mac, sig=sig))


def open_request(payload: bytes, topic: str, key: bytes) -> Request:
    """Decode a request and check its claim MAC and its ledger-key signature."""
    if len(payload) > MAX_REQUEST:
        raise EnrollError(f"request of {len(payload)} bytes is more than {MAX_REQUEST}")
    try:
        r = msgspec.msgpack.decode(payload, type=Request)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise EnrollError(f"malformed request: {exc}") from exc
    if r.v != VERSION:
        raise EnrollError(f"unknown enrollment version {r.v}")
    signed = _request_bytes(topic, r)
    mac_key = _hkdf(key, b"mac")
    if not hmac.compare_digest(r.mac, claim_mac(mac_key, signed)):
        raise EnrollError("request does not prove the claim code")
    try:
        public_key_from_bytes(r.ledger_key).verify(r.sig, signed + r.mac)
    except (InvalidSignature, KeyFileError) as exc:
        raise EnrollError("request is not signed by the ledger key it names") from exc
    return r


def open_answer(
    payload: bytes, keys: ClaimKeys, request_digest: bytes
) -> tuple[Grant, Ed25519PublicKey] | None:
    """Device side: the grant of an answer to our request, with the cloud key that signed it;
    None when the answer is for another request (ignore it). A refusal raises EnrollError,
    saying whether the claim key vouches for it."""
    topic = answer_topic(keys.claim_id)
    if len(payload) > MAX_ANSWER:
        log.warning("oversized enrollment answer on %s ignored", topic)
        return None
    try:
        a = msgspec.msgpack.decode(payload, type=Answer)
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.warning("malformed enrollment answer on %s ignored", topic)
        return None
    if a.v != VERSION or not hmac.compare_digest(a.request, request_digest):
        return None
    if not a.ok:
        mac = claim_mac(keys.mac_key, refusal_bytes(topic, a.request, a.reason))
        if a.mac and hmac.compare_digest(a.mac, mac):
            raise EnrollError(a.reason)
        raise EnrollError(f"{a.reason} (unauthenticated answer)")
    try:
        plain = AESGCM(keys.box_key).decrypt(a.iv, a.box, box_aad(topic, a.request))
    except (InvalidTag, ValueError) as exc:
        raise EnrollError("answer not sealed with this claim code (forged or altered)") from exc
    try:
        g = msgspec.msgpack.decode(plain, type=Grant)
        cloud_pub = bytes.fromhex(_document_payload(g.document)["cloud_public_key"])
        cloud_key = public_key_from_bytes(cloud_pub)
    except Exception as exc:
        raise EnrollError(f"answer content unreadable: {exc}") from exc
    if not hmac.compare_digest(g.request, request_digest):
        raise EnrollError("answer names another request")
    try:
        cloud_key.verify(g.sig, grant_bytes(topic, g))
    except InvalidSignature as exc:
        raise EnrollError("answer is not signed by the cloud key it names") from exc
    return g, cloud_key


def _document_payload(document: bytes) -> dict[str, Any]:
    """The unverified payload of a signed enrollment document (the caller verifies it)."""
    import json

    outer = json.loads(document)
    payload: dict[str, Any] = json.loads(base64.b64decode(outer["payload"], validate=True))
    return payload
