"""One function per decoder: bytes in; the decoder's named refusal is fine, anything else raises.

Most decoding happens inside msgspec's C code, which gives a Python fuzzer no coverage feedback;
so each target also does what a receiver does next with a decoded value (re-encode it, hash its
ops, render it for the log) and checks that the round trip gives the same value back: the
coverage of that Python code is what guides the mutations, and a mismatch is a bug."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Callable

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync import enroll_wire, protocol
from cloud_sync.errors import BatchError, MessageRefused
from edge.config import KioskConfig
from edge.drivers import cardformats
from edge.validation import SettingsFault, load
from provisioning.bundle import verify_signed
from provisioning.errors import BundleRejected

# Fixed keys: a valid signature is out of a fuzzer's reach, so the typed body decoder has its
# own target below, fed the bytes that would sit inside a verified envelope. The seed corpora
# (`fuzz/seeds.py`) are signed with the same keys, so mutations start from valid messages.
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key()
TOPIC = "kiosk/v1/s1/k1/ops"
CLAIM = enroll_wire.ClaimKeys.from_code("AAAAA-BBBBB-CCCCC-DDDDD")
REQUEST_DIGEST = b"\x00" * 32


def envelope(data: bytes) -> None:
    with contextlib.suppress(MessageRefused):
        opened = protocol.open_envelope(
            data, topic=TOPIC, keys=lambda s: PUB, allowed=protocol.KIOSK_TO_CLOUD["ops"]
        )
        protocol.as_json(opened.message)


def body(data: bytes) -> None:
    try:
        msg = protocol.decode_body(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    protocol.as_json(msg)
    again = protocol.decode_body(msgspec.msgpack.encode(msg))
    if again != msg:
        raise AssertionError(f"{msg.type} does not survive a round trip")


def ops(data: bytes) -> None:
    try:
        decoded = protocol.decode_ops(data)
    except BatchError:
        return
    for op in decoded:
        op.hash()
    if protocol.decode_ops(protocol.encode_ops(decoded)) != decoded:
        raise AssertionError("an op batch does not survive a round trip")


def enroll_request(data: bytes) -> None:
    with contextlib.suppress(enroll_wire.EnrollError):
        enroll_wire.open_request(data, enroll_wire.request_topic(CLAIM.claim_id), CLAIM.key)


def enroll_answer(data: bytes) -> None:
    with contextlib.suppress(enroll_wire.EnrollError):
        enroll_wire.open_answer(data, CLAIM, REQUEST_DIGEST)


def bundle(data: bytes) -> None:
    with contextlib.suppress(BundleRejected):
        verify_signed(data, PUB)


def wedge_text(data: bytes) -> None:
    """What a keyboard-wedge reader typed (magstripe, barcode, QR): classified, never raised."""
    cardformats.classify(data.decode("utf-8", "replace"))


def kiosk_config(data: bytes) -> None:
    """A kiosk TOML file: loaded or refused with a named error."""
    with contextlib.suppress(tomllib.TOMLDecodeError, SettingsFault):
        load(KioskConfig, tomllib.loads(data.decode("utf-8", "replace")))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "envelope": envelope,
    "body": body,
    "ops": ops,
    "enroll_request": enroll_request,
    "enroll_answer": enroll_answer,
    "bundle": bundle,
    "wedge_text": wedge_text,
    "kiosk_config": kiosk_config,
}
