"""One function per decoder: bytes in; the decoder's named refusal is fine, anything else raises."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync import enroll_wire, protocol
from cloud_sync.errors import BatchError, MessageRefused
from edge.drivers import cardformats

# Fixed keys: a valid signature is out of a fuzzer's reach, so the typed body decoder has its
# own target below, fed the bytes that would sit inside a verified envelope.
_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_PUB = _KEY.public_key()
_TOPIC = "kiosk/v1/s1/k1/ops"
_CLAIM = enroll_wire.ClaimKeys.from_code("AAAAA-BBBBB-CCCCC-DDDDD")


def envelope(data: bytes) -> None:
    with contextlib.suppress(MessageRefused):
        protocol.open_envelope(
            data, topic=_TOPIC, keys=lambda s: _PUB, allowed=protocol.KIOSK_TO_CLOUD["ops"]
        )


def body(data: bytes) -> None:
    import msgspec

    with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
        protocol.decode_body(data)


def ops(data: bytes) -> None:
    with contextlib.suppress(BatchError):
        protocol.decode_ops(data)


def enroll_request(data: bytes) -> None:
    with contextlib.suppress(enroll_wire.EnrollError):
        enroll_wire.open_request(data, enroll_wire.request_topic(_CLAIM.claim_id), _CLAIM.key)


def enroll_answer(data: bytes) -> None:
    with contextlib.suppress(enroll_wire.EnrollError):
        enroll_wire.open_answer(data, _CLAIM, b"\x00" * 32)


def bundle(data: bytes) -> None:
    from provisioning.bundle import verify_signed
    from provisioning.errors import BundleRejected

    with contextlib.suppress(BundleRejected):
        verify_signed(data, _PUB)


def wedge_text(data: bytes) -> None:
    """What a keyboard-wedge reader typed (magstripe, barcode, QR): classified, never raised."""
    cardformats.classify(data.decode("utf-8", "replace"))


def kiosk_config(data: bytes) -> None:
    """A kiosk TOML file: loaded or refused with ConfigError."""
    import tomllib

    from pydantic import ValidationError

    from edge.config import KioskConfig

    with contextlib.suppress(tomllib.TOMLDecodeError, ValidationError):
        KioskConfig.model_validate(tomllib.loads(data.decode("utf-8", "replace")))


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
