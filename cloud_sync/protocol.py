"""The kiosk <-> cloud wire protocol (DESIGN.md section 6): topics, versioned message schemas,
signed envelopes, and compact op batches.

Every message travels in an envelope signed by its sender's Ed25519 key over a domain-separated
encoding that includes the topic, so a message signed for one kiosk or one purpose is useless on
any other topic. Op batches drop what the receiver can re-derive (replica, seq, prev hash).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from cloud_sync.errors import BatchError, MessageRefused
from edge.ledger.op import Kind, Op

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
ROOT = "kiosk/v1"
SHARE_GROUP = "$share/reconcilers/"
# Domain separation: unlike the ledger's op context, so neither signature replays as the other.
ENVELOPE_CONTEXT = b"kiosk-edge/msg/v1\x00"


# -- topics ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one device under `kiosk/v1/<site>/<device>`."""

    site: str
    device: str

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.site}/{self.device}"

    @property
    def ops(self) -> str:
        return f"{self.base}/ops"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def grants(self) -> str:
        return f"{self.base}/grants"

    @property
    def rpc_req(self) -> str:
        return f"{self.base}/rpc/req"

    @property
    def rpc_res(self) -> str:
        return f"{self.base}/rpc/res"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def denylist(self) -> str:
        return denylist_topic(self.site)


def denylist_topic(site: str) -> str:
    return f"{ROOT}/{site}/denylist"


def check_name(name: str, what: str) -> str:
    """Site and device ids become topic levels and certificate CNs: keep them plain."""
    if not name or any(c in name for c in "/+#$\x00 ") or len(name) > 64:
        raise ValueError(f"{what} {name!r} must be 1-64 characters without / + # $ or spaces")
    return name


def parse_device_topic(topic: str) -> tuple[str, str, str] | None:
    """`kiosk/v1/<site>/<device>/<leaf...>` -> (site, device, leaf); None for anything else."""
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != ROOT:
        return None
    return parts[2], parts[3], "/".join(parts[4:])


def reconciler_filters(shared: bool) -> list[str]:
    """What a reconciler subscribes to: every device's uplink topics, optionally load-shared."""
    prefix = SHARE_GROUP if shared else ""
    return [f"{prefix}{ROOT}/+/+/{leaf}" for leaf in ("ops", "rpc/req", "status")]


# -- messages -------------------------------------------------------------------------------


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(Frozen):
    """A message: its `type` names it on the wire and picks its schema."""

    type: str


class OpsUpload(Message):
    """kiosk -> cloud on `ops`: a compact batch of the kiosk's own signed ops, in seq order."""

    type: Literal["ops"] = "ops"
    batch: bytes


class Ack(Message):
    """cloud -> kiosk on `ack`: the highest contiguous seq of the kiosk's chain stored durably."""

    type: Literal["ack"] = "ack"
    seq: int = Field(ge=0)
    hash: bytes


class ChainOps(Message):
    """cloud -> kiosk on `grants`: a run of this kiosk's stream, the cloud-signed chain of what
    concerns it (its xfers are the grants; docs/knowledge-model.md), or, with `own`, the kiosk's
    own ops sent back for recovery."""

    type: Literal["chain"] = "chain"
    batch: bytes
    own: bool = False


class Recall(Message):
    """cloud -> kiosk on `grants`: please transfer idle rights back; answered with an xfer op."""

    type: Literal["recall"] = "recall"
    id: str
    account: str
    purse: str
    amount: int = Field(gt=0)


class Snapshot(Message):
    """cloud -> kiosk on `grants`: an account's purse values as the cloud knows them, including
    the kiosk's own ops up to `own_head` (the kiosk adds what it wrote after: the true value)."""

    type: Literal["snapshot"] = "snapshot"
    account: str
    values: dict[str, int]
    rights: dict[str, int]
    as_of_ms: int
    own_head: int = Field(ge=0)


class DenyEntry(Frozen):
    token: str  # HMAC of the card number with the site key, never the number
    status: str  # lost, frozen, cancelled, replaced; "active" lifts an entry


class DenyDelta(Message):
    """cloud -> kiosks on `<site>/denylist` (retained head): one versioned change set."""

    type: Literal["deny"] = "deny"
    site: str
    version: int = Field(ge=1)
    entries: list[DenyEntry]


class Hello(Message):
    """kiosk -> cloud on `rpc/req` at every connect: where the kiosk stands, so the cloud can
    send back its ack, the cloud chain it misses and the deny-list deltas it misses."""

    type: Literal["hello"] = "hello"
    id: str
    head: int
    cloud_head: int
    deny_version: int


class RightsRequest(Message):
    """kiosk -> cloud on `rpc/req`: a tap needs `amount` more rights than the kiosk holds."""

    type: Literal["rights"] = "rights"
    id: str
    account: str
    purse: str
    amount: int = Field(gt=0)
    cloud_head: int


class Lookup(Message):
    """kiosk -> cloud on `rpc/req`: an account this kiosk does not know (a card or code of
    another scope, tapped here while online). The answer's chain brings it into the kiosk's
    stream (docs/knowledge-model.md)."""

    type: Literal["lookup"] = "lookup"
    id: str
    account: str
    cloud_head: int


class RecoverRequest(Message):
    """kiosk -> cloud on `rpc/req`: send back my own ops after `after_seq` (restored image)."""

    type: Literal["recover"] = "recover"
    id: str
    after_seq: int = Field(ge=0)


class DenySince(Message):
    """kiosk -> cloud on `rpc/req`: the deny-list deltas after `since` (a gap was seen)."""

    type: Literal["deny_since"] = "deny_since"
    id: str
    since: int = Field(ge=0)


class Answer(Message):
    """cloud -> kiosk on `rpc/res`: the answer to a request, by id."""

    type: Literal["answer"] = "answer"
    id: str
    ok: bool
    reason: str = ""
    granted: int = 0
    chain: bytes = b""  # cloud ops the kiosk needs to apply (the grant and what precedes it)
    deny: list[DenyDelta] = Field(default_factory=list)


class Status(Message):
    """kiosk -> cloud on `status` (retained; the last will says offline)."""

    type: Literal["status"] = "status"
    online: bool
    head: int = 0
    acked: int = 0
    queue_depth: int = 0
    recovering: int = 0
    wall_ms: int = 0


AnyMessage = Annotated[
    OpsUpload
    | Ack
    | ChainOps
    | Recall
    | Snapshot
    | DenyDelta
    | Hello
    | RightsRequest
    | Lookup
    | RecoverRequest
    | DenySince
    | Answer
    | Status,
    Field(discriminator="type"),
]
_any = TypeAdapter(AnyMessage)

# Which messages may arrive on which leaf, and from whom: anything else is refused.
KIOSK_TO_CLOUD = {
    "ops": (OpsUpload,),
    "rpc/req": (Hello, RightsRequest, Lookup, RecoverRequest, DenySince),
    "status": (Status,),
}
CLOUD_TO_KIOSK = {
    "ack": (Ack,),
    "grants": (ChainOps, Recall, Snapshot),
    "rpc/res": (Answer,),
    "denylist": (DenyDelta,),
}


# -- envelope -------------------------------------------------------------------------------


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    v: int
    sender: str
    ts_ms: int
    body: bytes
    sig: bytes = b""


_enc = msgspec.msgpack.Encoder()
_env_dec = msgspec.msgpack.Decoder(Envelope)


def _signed_bytes(topic: str, env: Envelope) -> bytes:
    head = _enc.encode((env.v, env.sender, env.ts_ms, env.body))
    return ENVELOPE_CONTEXT + topic.encode() + b"\x00" + head


def seal(msg: Message, *, topic: str, sender: str, key: Ed25519PrivateKey, ts_ms: int) -> bytes:
    """The bytes to publish: the message in an envelope signed for this topic."""
    body = _enc.encode(msg.model_dump())
    env = Envelope(PROTOCOL_VERSION, sender, ts_ms, body)
    sig = key.sign(_signed_bytes(topic, env))
    return _enc.encode(msgspec.structs.replace(env, sig=sig))


@dataclass(frozen=True, slots=True)
class Opened:
    sender: str
    ts_ms: int
    message: Message


KeyLookup = Callable[[str], Ed25519PublicKey | None]


def open_envelope(
    data: bytes,
    *,
    topic: str,
    keys: KeyLookup,
    allowed: Sequence[type[Message]],
    sender: str | None = None,
) -> Opened:
    """Check and decode a message: version, signature by a known key (and by `sender`, when
    given), and a type allowed on this topic. Raises MessageRefused with the reason."""
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise MessageRefused(topic, f"not msgpack: {exc}") from exc
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], int):
        raise MessageRefused(topic, "not an envelope")
    if raw[0] != PROTOCOL_VERSION:
        raise MessageRefused(topic, f"unknown protocol version {raw[0]}")
    try:
        env = _env_dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MessageRefused(topic, f"malformed envelope: {exc}") from exc
    if sender is not None and env.sender != sender:
        raise MessageRefused(topic, f"signed by {env.sender!r}, expected {sender!r}")
    key = keys(env.sender)
    if key is None:
        raise MessageRefused(topic, f"no trusted key for sender {env.sender!r}")
    try:
        key.verify(env.sig, _signed_bytes(topic, env))
    except InvalidSignature as exc:
        raise MessageRefused(topic, f"bad signature (sender {env.sender!r})") from exc
    try:
        msg = _any.validate_python(msgspec.msgpack.decode(env.body))
    except (msgspec.DecodeError, ValidationError) as exc:
        raise MessageRefused(topic, f"malformed body: {exc}") from exc
    if not isinstance(msg, tuple(allowed)):
        raise MessageRefused(topic, f"{msg.type!r} is not allowed on this topic")
    return Opened(env.sender, env.ts_ms, msg)


def as_json(msg: Message) -> dict[str, Any]:
    """A readable form for logs and the CLI (bytes as hex)."""
    return msg.model_dump(mode="json")


# -- compact op batches ---------------------------------------------------------------------

_Row = tuple[int, int, int, str, str, int, str, str, str, bytes]


class WireBatch(msgspec.Struct, array_like=True, frozen=True):
    """A contiguous run of one chain. Per op only what cannot be re-derived: wall/mono time as
    deltas from the previous op, kind, account, purse, amount, counterpart, ref, data, sig.
    Replica, seq and prev come from the batch head and the previous op's hash."""

    replica: str
    first_seq: int
    prev: bytes
    rows: list[_Row]


_batch_dec = msgspec.msgpack.Decoder(WireBatch)


def encode_ops(ops: Sequence[Op]) -> bytes:
    """Encode a contiguous, linked run of one replica's chain. Raises BatchError otherwise."""
    if not ops:
        raise BatchError("an op batch needs at least one op")
    first = ops[0]
    rows: list[_Row] = []
    wall = mono = 0
    prev_hash = first.prev
    for i, op in enumerate(ops):
        if op.replica != first.replica or op.seq != first.seq + i or op.prev != prev_hash:
            raise BatchError(f"op {op.replica}#{op.seq} breaks the run starting at #{first.seq}")
        rows.append(
            (
                op.wall_ms - wall,
                op.mono_ms - mono,
                int(op.kind),
                op.account,
                op.purse,
                op.amount,
                op.counterpart,
                op.ref,
                op.data,
                op.sig,
            )
        )
        wall, mono = op.wall_ms, op.mono_ms
        prev_hash = op.hash()
    return _enc.encode(WireBatch(first.replica, first.seq, first.prev, rows))


def decode_ops(data: bytes) -> list[Op]:
    """Rebuild the ops of a batch (signatures are checked by whoever applies them)."""
    try:
        batch = _batch_dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BatchError(f"malformed op batch: {exc}") from exc
    if batch.first_seq < 1 or len(batch.prev) != 32:
        raise BatchError("malformed op batch head")
    ops: list[Op] = []
    prev = batch.prev
    wall = mono = 0
    for i, (dw, dm, kind, account, purse, amount, counterpart, ref, data_, sig) in enumerate(
        batch.rows
    ):
        wall += dw
        mono += dm
        try:
            k = Kind(kind)
        except ValueError as exc:
            raise BatchError(f"unknown op kind {kind}") from exc
        op = Op(
            replica=batch.replica,
            seq=batch.first_seq + i,
            wall_ms=wall,
            mono_ms=mono,
            kind=k,
            account=account,
            purse=purse,
            amount=amount,
            counterpart=counterpart,
            ref=ref,
            data=data_,
            prev=prev,
            sig=sig,
        )
        ops.append(op)
        prev = hashlib.sha256(op.body() + op.sig).digest()
    return ops
