"""One ledger op: its fields, canonical encoding, signature and chain hash."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# Domain separation: a signature over an op can never be replayed as another kind of message.
SIGNING_CONTEXT = b"kiosk-edge/op/v1\x00"
GENESIS = bytes(32)  # the `prev` of every replica's first op


class Kind(enum.IntEnum):
    """What an op does. Numbers are part of the signed encoding: never renumber."""

    INC = 1  # credit at the author (top-up, accrual, issue)
    DEC = 2  # debit within the author's rights
    XFER = 3  # hand rights from the author to `counterpart`
    DEBT = 4  # debit beyond rights under the offline risk allowance: recorded debt
    SET = 5  # versioned register write: purse = register name, amount = version, data = value


SPENDING = frozenset({Kind.DEC, Kind.DEBT})


@dataclass(frozen=True, slots=True)
class Intent:
    """What a local write wants to do; the store turns it into a signed op (or refuses)."""

    kind: Kind
    account: str
    purse: str
    amount: int
    counterpart: str = ""
    data: str = ""


class Op(msgspec.Struct, frozen=True, array_like=True):
    """A signed op. Encoded as a fixed-order msgpack array: deterministic, so it can be signed."""

    replica: str
    seq: int
    wall_ms: int
    mono_ms: int
    kind: Kind
    account: str
    purse: str
    amount: int
    counterpart: str
    ref: str
    data: str
    prev: bytes
    sig: bytes = b""

    def body(self) -> bytes:
        """The canonical bytes the signature covers: every field but `sig`."""
        return _encoder.encode((self.replica, self.seq, *self.content(), self.prev))

    def content(self) -> tuple[object, ...]:
        """What the op says, apart from where it sits (replica, seq, prev) and its signature: the
        same for a cloud op and every stream copy of it."""
        return (
            self.wall_ms,
            self.mono_ms,
            int(self.kind),
            self.account,
            self.purse,
            self.amount,
            self.counterpart,
            self.ref,
            self.data,
        )

    def hash(self) -> bytes:
        """The chain hash: the next op of this replica carries it as `prev`."""
        return hashlib.sha256(self.body() + self.sig).digest()

    def signed(self, key: Ed25519PrivateKey) -> Op:
        return msgspec.structs.replace(self, sig=key.sign(SIGNING_CONTEXT + self.body()))

    def signature_ok(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(self.sig, SIGNING_CONTEXT + self.body())
        except InvalidSignature:
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        """A readable form for export: bytes as hex, kind by name."""
        return {
            "replica": self.replica,
            "seq": self.seq,
            "wall_ms": self.wall_ms,
            "mono_ms": self.mono_ms,
            "kind": self.kind.name.lower(),
            "account": self.account,
            "purse": self.purse,
            "amount": self.amount,
            "counterpart": self.counterpart,
            "ref": self.ref,
            "data": self.data,
            "prev": self.prev.hex(),
            "sig": self.sig.hex(),
        }


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Op)
_list_decoder = msgspec.msgpack.Decoder(list[Op])


def encode(op: Op) -> bytes:
    return _encoder.encode(op)


def decode(data: bytes) -> Op:
    """Decode one op; raises msgspec.ValidationError / DecodeError on malformed bytes."""
    return _decoder.decode(data)


def encode_batch(ops: list[Op]) -> bytes:
    return _encoder.encode(ops)


def decode_batch(data: bytes) -> list[Op]:
    return _list_decoder.decode(data)
