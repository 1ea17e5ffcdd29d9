"""The kiosk <-> cloud wire protocol (DESIGN.md section 6): topics, versioned message schemas,
signed envelopes, and compact op batches.

Every message travels in an envelope signed by its sender's Ed25519 key over a domain-separated
encoding that includes the topic, so a message signed for one kiosk or one purpose is useless on
any other topic. Op batches drop what the receiver can re-derive (replica, seq, prev hash).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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


# Client ids are broker-global in mosquitto: a client that connects with a connected client's
# id, on any listener, disconnects it and may take over its session. So every client id a client
# sends must start with CLIENT_ID_PREFIX (`clientid_prefixes`, checked before anything else), and
# on the device listener the broker replaces it with the certificate CN
# (`use_username_as_clientid`): a device is always itself. A CN never contains "/" (check_name),
# so no id a client can choose on the enrollment or cloud listener ever equals a device's. What
# remains in the "/" space is the enrollment claim ids and the reconcilers' ids, both secret
# (128 bits from a claim code or from the OS), never derived from a name.
CLIENT_ID_PREFIX = "/"


def device_client_id(device: str) -> str:
    """What a kiosk's agent sends; the device listener replaces it with the certificate CN."""
    return CLIENT_ID_PREFIX + device


def secret_client_id(role: str) -> str:
    """A reconciler's or operator's id on the cloud listener: unguessable, since whoever knew
    it could take its session (and the messages queued for it)."""
    return f"{CLIENT_ID_PREFIX}{role}-{secrets.token_hex(16)}"


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
#
# Every message is decoded into typed msgspec Structs, never into Any: the schema bounds what a
# payload can be (nesting depth, sizes, integer ranges, string contents, field sets) before any
# of it reaches the ledger or a store. SQLite and PostgreSQL hold signed 64-bit integers and
# PostgreSQL text holds no NUL, so neither ever arrives from the wire.

MAX_PAYLOAD = 1 << 20  # bytes of one MQTT payload (the broker's message_size_limit is the same)
MAX_BATCH = 5000  # ops in one batch (the reconciler sends at most 1000 at a time)
MAX_ENTRIES = 10_000  # deny entries of one delta, purses of one account in a snapshot
MAX_SNAPSHOTS = 500  # accounts in one snapshots message
MAX_TEXT = 256  # characters of one id, account, purse, ref or reason
I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)

_NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT, pattern=_NO_NUL)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT, pattern=_NO_NUL)]
Count = Annotated[int, msgspec.Meta(ge=0, le=I64_MAX)]
Positive = Annotated[int, msgspec.Meta(gt=0, le=I64_MAX)]
Int64 = Annotated[int, msgspec.Meta(ge=I64_MIN, le=I64_MAX)]
Blob = Annotated[bytes, msgspec.Meta(max_length=MAX_PAYLOAD)]
Digest = Annotated[bytes, msgspec.Meta(max_length=64)]


class Message(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """A message: its `type` (the struct's tag) names it on the wire and picks its schema."""

    @property
    def type(self) -> str:
        return str(type(self).__struct_config__.tag)


class OpsUpload(Message, frozen=True, tag="ops"):
    """kiosk -> cloud on `ops`: a compact batch of the kiosk's own signed ops, in seq order."""

    batch: Blob


class Ack(Message, frozen=True, tag="ack"):
    """cloud -> kiosk on `ack`: the highest contiguous seq of the kiosk's chain stored durably."""

    seq: Count
    hash: Digest


class ChainOps(Message, frozen=True, tag="chain"):
    """cloud -> kiosk on `grants`: a run of this kiosk's stream, the cloud-signed chain of what
    concerns it (its xfers are the grants; docs/knowledge-model.md), or, with `own`, the kiosk's
    own ops sent back for recovery. kiosk -> cloud on `ops`: the kiosk's stream handed back to a
    cloud restored from a backup (`ChainWanted`)."""

    batch: Blob
    own: bool = False


class Recall(Message, frozen=True, tag="recall"):
    """cloud -> kiosk on `grants`: please transfer idle rights back; answered with an xfer op."""

    id: Name
    account: Name
    purse: Name
    amount: Positive


class ChainWanted(Message, frozen=True, tag="chain_wanted"):
    """cloud -> kiosk on `grants`: a cloud restored from a backup asks for the kiosk's stream
    after `after_seq` (stream seqs), before it writes anything new."""

    after_seq: Count


class Snapshot(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An account's purse values as the cloud knows them, including the kiosk's own ops up to
    `own_head` (the kiosk adds what it wrote after: the true value), and the kiosk's rights."""

    account: Name
    values: Annotated[dict[Name, Int64], msgspec.Meta(max_length=MAX_ENTRIES)]
    rights: Annotated[dict[Name, Int64], msgspec.Meta(max_length=MAX_ENTRIES)]
    as_of_ms: Count
    own_head: Count


class Snapshots(Message, frozen=True, tag="snapshots"):
    """cloud -> kiosk on `grants`: the new values of the accounts an upload, a top-up or a
    lookup changed, for one kiosk, under one signature."""

    items: Annotated[list[Snapshot], msgspec.Meta(min_length=1, max_length=MAX_SNAPSHOTS)]


class DenyEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: Name  # HMAC of the card number with the site key, never the number
    status: Name  # lost, frozen, cancelled, replaced; "active" lifts an entry


class DenyDelta(Message, frozen=True, tag="deny"):
    """cloud -> kiosks on `<site>/denylist` (retained head): one versioned change set."""

    site: Name
    version: Positive
    entries: Annotated[list[DenyEntry], msgspec.Meta(max_length=MAX_ENTRIES)]


class Hello(Message, frozen=True, tag="hello"):
    """kiosk -> cloud on `rpc/req` at every connect: where the kiosk stands, so the cloud can
    send back its ack, the cloud chain it misses and the deny-list deltas it misses."""

    id: Name
    head: Count
    cloud_head: Count
    deny_version: Count


class RightsRequest(Message, frozen=True, tag="rights"):
    """kiosk -> cloud on `rpc/req`: a tap needs `amount` more rights than the kiosk holds."""

    id: Name
    account: Name
    purse: Name
    amount: Positive
    cloud_head: Count


class Lookup(Message, frozen=True, tag="lookup"):
    """kiosk -> cloud on `rpc/req`: an account this kiosk does not know (a card or code of
    another scope, tapped here while online). The answer's chain brings it into the kiosk's
    stream (docs/knowledge-model.md)."""

    id: Name
    account: Name
    cloud_head: Count


class RecoverRequest(Message, frozen=True, tag="recover"):
    """kiosk -> cloud on `rpc/req`: send back my own ops after `after_seq` (restored image)."""

    id: Name
    after_seq: Count


class DenySince(Message, frozen=True, tag="deny_since"):
    """kiosk -> cloud on `rpc/req`: the deny-list deltas after `since` (a gap was seen)."""

    id: Name
    since: Count


class ForkOps(Message, frozen=True, tag="fork"):
    """kiosk -> cloud on `rpc/req`: ops of the kiosk's own branch that it set aside when its
    chain forked from what the cloud stored (a restored image that kept writing), from
    `fork_seq` on, in batches (the first starts at `fork_seq`, each next one after the last
    seq the cloud answered). The cloud records their overspend as debt; the answer's
    `granted` is the newest seq of the branch it has accounted."""

    id: Name
    fork_seq: Positive
    batch: Blob


class Answer(Message, frozen=True, tag="answer"):
    """cloud -> kiosk on `rpc/res`: the answer to a request, by id."""

    id: Name
    ok: bool
    reason: Text = ""
    granted: Count = 0
    chain: Blob = b""  # cloud ops the kiosk needs to apply (the grant and what precedes it)
    deny: Annotated[list[DenyDelta], msgspec.Meta(max_length=1000)] = msgspec.field(
        default_factory=list
    )


class Health(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a kiosk measures of itself, sent in its status (the fleet view, metrics, alerts)."""

    version: Text = ""
    clock_trusted: bool = True
    clock_source: Text = ""
    reader_ok: bool = True  # every configured reader (NFC, wedge) present
    display_ok: bool = True  # the display present (True when none is fitted)
    disk_free_bytes: Count = 0
    taps: Count = 0  # decisions since start
    # reason name -> count since start
    refusals: Annotated[dict[Name, Count], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=dict
    )
    tap_p50_ms: Annotated[float, msgspec.Meta(ge=0, le=1e9)] = 0.0
    tap_p95_ms: Annotated[float, msgspec.Meta(ge=0, le=1e9)] = 0.0
    forked: bool = False  # the kiosk's chain differs from what the cloud stored: spending stopped


class Status(Message, frozen=True, tag="status"):
    """kiosk -> cloud on `status` (retained; the last will says offline, and so does a kiosk
    that stops cleanly, before it disconnects)."""

    online: bool
    head: Count = 0
    acked: Count = 0
    queue_depth: Count = 0
    recovering: Count = 0
    wall_ms: Count = 0
    health: Health | None = None


AnyMessage = (
    OpsUpload
    | Ack
    | ChainOps
    | Recall
    | ChainWanted
    | Snapshots
    | DenyDelta
    | Hello
    | RightsRequest
    | Lookup
    | RecoverRequest
    | DenySince
    | ForkOps
    | Answer
    | Status
)
_body_dec = msgspec.msgpack.Decoder(AnyMessage)

# Which messages may arrive on which leaf, and from whom: anything else is refused.
KIOSK_TO_CLOUD: dict[str, tuple[type[Message], ...]] = {
    "ops": (OpsUpload, ChainOps),
    "rpc/req": (Hello, RightsRequest, Lookup, RecoverRequest, DenySince, ForkOps),
    "status": (Status,),
}
CLOUD_TO_KIOSK: dict[str, tuple[type[Message], ...]] = {
    "ack": (Ack,),
    "grants": (ChainOps, ChainWanted, Recall, Snapshots),
    "rpc/res": (Answer,),
    "denylist": (DenyDelta,),
}


def decode_body(data: bytes) -> Message:
    """A message body (inside a verified envelope) -> its typed message; raises
    msgspec.DecodeError / ValidationError for anything outside the schema."""
    msg: Message = _body_dec.decode(data)
    return msg


# -- envelope -------------------------------------------------------------------------------


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    v: Count
    sender: Name
    ts_ms: Count  # the sender's wall clock at sealing, covered by the signature
    body: Blob
    sig: Annotated[bytes, msgspec.Meta(max_length=64)] = b""


_enc = msgspec.msgpack.Encoder()
_env_dec = msgspec.msgpack.Decoder(Envelope)


def _signed_bytes(topic: str, env: Envelope) -> bytes:
    head = _enc.encode((env.v, env.sender, env.ts_ms, env.body))
    return ENVELOPE_CONTEXT + topic.encode() + b"\x00" + head


def seal(msg: Message, *, topic: str, sender: str, key: Ed25519PrivateKey, ts_ms: int) -> bytes:
    """The bytes to publish: the message in an envelope signed for this topic."""
    body = _enc.encode(msg)
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
    if len(data) > MAX_PAYLOAD:
        raise MessageRefused(topic, f"{len(data)} bytes is more than {MAX_PAYLOAD}")
    try:
        env = _env_dec.decode(data)
    except msgspec.ValidationError as exc:
        raise MessageRefused(topic, f"malformed envelope: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise MessageRefused(topic, f"not msgpack: {exc}") from exc
    if env.v != PROTOCOL_VERSION:
        raise MessageRefused(topic, f"unknown protocol version {env.v}")
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
        msg = decode_body(env.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MessageRefused(topic, f"malformed body: {exc}") from exc
    if not isinstance(msg, tuple(allowed)):
        raise MessageRefused(topic, f"{msg.type!r} is not allowed on this topic")
    return Opened(env.sender, env.ts_ms, msg)


def as_json(msg: Message) -> dict[str, Any]:
    """A readable form for logs and the CLI (bytes as hex)."""
    out: dict[str, Any] = msgspec.to_builtins(msg, builtin_types=(bytes,), enc_hook=None)

    def hexed(v: Any) -> Any:
        if isinstance(v, bytes):
            return v.hex()
        if isinstance(v, dict):
            return {k: hexed(x) for k, x in v.items()}
        if isinstance(v, list):
            return [hexed(x) for x in v]
        return v

    return {k: hexed(v) for k, v in out.items()}


# -- compact op batches ---------------------------------------------------------------------

_Row = tuple[
    Int64,  # wall ms, as a delta from the previous op
    Int64,  # monotonic ms, as a delta
    Annotated[int, msgspec.Meta(ge=0, le=255)],  # kind
    Text,  # account
    Text,  # purse
    Int64,  # amount
    Text,  # counterpart
    Text,  # ref
    Annotated[str, msgspec.Meta(max_length=65536, pattern=_NO_NUL)],  # data
    Annotated[bytes, msgspec.Meta(max_length=64)],  # sig
]


class WireBatch(msgspec.Struct, array_like=True, frozen=True):
    """A contiguous run of one chain. Per op only what cannot be re-derived: wall/mono time as
    deltas from the previous op, kind, account, purse, amount, counterpart, ref, data, sig.
    Replica, seq and prev come from the batch head and the previous op's hash."""

    replica: Name
    first_seq: Positive
    prev: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    rows: Annotated[list[_Row], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


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
    """Rebuild the ops of a batch (signatures are checked by whoever applies them). Raises
    BatchError for anything outside the schema: empty, oversized, out-of-range numbers."""
    if len(data) > MAX_PAYLOAD:
        raise BatchError(f"op batch of {len(data)} bytes is more than {MAX_PAYLOAD}")
    try:
        batch = _batch_dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BatchError(f"malformed op batch: {exc}") from exc
    if batch.first_seq + len(batch.rows) > I64_MAX:
        raise BatchError("op batch seq out of range")
    ops: list[Op] = []
    prev = batch.prev
    wall = mono = 0
    for i, (dw, dm, kind, account, purse, amount, counterpart, ref, data_, sig) in enumerate(
        batch.rows
    ):
        wall += dw
        mono += dm
        if not (0 <= wall <= I64_MAX and 0 <= mono <= I64_MAX):
            raise BatchError(f"op #{batch.first_seq + i}: time out of range")
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
