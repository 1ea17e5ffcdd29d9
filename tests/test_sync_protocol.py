"""The wire protocol: compact batches round-trip, envelopes refuse forgeries, wrong topics,
unknown versions and types not allowed on a topic."""

from __future__ import annotations

import msgspec
import pytest

from cloud_sync.errors import BatchError, MessageRefused
from cloud_sync.protocol import (
    CLOUD_TO_KIOSK,
    KIOSK_TO_CLOUD,
    Ack,
    OpsUpload,
    Recall,
    Topics,
    decode_ops,
    encode_ops,
    open_envelope,
    parse_device_topic,
    reconciler_filters,
    seal,
)
from edge.ledger import Intent, Kind, generate_key


def ops_of(fleet, n=20):
    k = fleet.add("site1-kiosk-0001")
    k.append([Intent(Kind.INC, "acct-0000000001", "cash", 100_000)])
    for i in range(n - 1):
        k.append([Intent(Kind.DEC, "acct-0000000001", "cash", 350)], ref=f"tap-{i:08d}")
    return list(k.ops(k.replica))


def test_batch_round_trips_and_stays_under_160_bytes_per_op(fleet):
    ops = ops_of(fleet, 50)
    data = encode_ops(ops[1:])
    assert decode_ops(data) == ops[1:]
    assert len(data) / 49 <= 160


def test_batch_must_be_one_linked_run(fleet):
    ops = ops_of(fleet, 4)
    with pytest.raises(BatchError):
        encode_ops([ops[0], ops[2]])
    with pytest.raises(BatchError):
        decode_ops(b"\x93junk")


def test_a_tampered_batch_fails_the_op_signatures(fleet):
    ops = ops_of(fleet, 3)
    raw = msgspec.msgpack.decode(encode_ops(ops))
    raw[3][1][5] = 1  # amount of the second op
    forged = decode_ops(msgspec.msgpack.encode(raw))
    key = fleet.keys["site1-kiosk-0001"].public_key()
    assert forged[0].signature_ok(key)
    assert not forged[1].signature_ok(key)


def test_envelope_checks_signer_topic_version_and_type():
    cloud = generate_key()
    t1, t2 = Topics("s1", "k1"), Topics("s1", "k2")
    keys = {"cloud": cloud.public_key()}.get
    data = seal(Ack(seq=3, hash=bytes(32)), topic=t1.ack, sender="cloud", key=cloud, ts_ms=1)
    opened = open_envelope(data, topic=t1.ack, keys=keys, allowed=CLOUD_TO_KIOSK["ack"])
    assert opened.message == Ack(seq=3, hash=bytes(32))
    with pytest.raises(MessageRefused, match="bad signature"):  # replayed onto another kiosk
        open_envelope(data, topic=t2.ack, keys=keys, allowed=CLOUD_TO_KIOSK["ack"])
    with pytest.raises(MessageRefused, match="not allowed"):
        open_envelope(data, topic=t1.ack, keys=keys, allowed=CLOUD_TO_KIOSK["grants"])
    rogue = seal(
        Recall(id="x", account="m1", purse="cash", amount=5),
        topic=t1.grants,
        sender="cloud",
        key=generate_key(),
        ts_ms=1,
    )
    with pytest.raises(MessageRefused, match="bad signature"):
        open_envelope(rogue, topic=t1.grants, keys=keys, allowed=CLOUD_TO_KIOSK["grants"])
    env = msgspec.msgpack.decode(data)
    env[0] = 2
    with pytest.raises(MessageRefused, match="unknown protocol version 2"):
        open_envelope(msgspec.msgpack.encode(env), topic=t1.ack, keys=keys, allowed=[Ack])
    with pytest.raises(MessageRefused, match="expected 'k1'"):
        open_envelope(data, topic=t1.ack, keys=keys, allowed=[Ack], sender="k1")
    with pytest.raises(MessageRefused, match="no trusted key"):
        open_envelope(data, topic=t1.ack, keys={}.get, allowed=[Ack])
    with pytest.raises(MessageRefused, match="not msgpack"):
        open_envelope(b"\xc1", topic=t1.ack, keys=keys, allowed=[Ack])
    up = seal(OpsUpload(batch=b"x"), topic=t1.ops, sender="cloud", key=cloud, ts_ms=1)
    assert open_envelope(up, topic=t1.ops, keys=keys, allowed=KIOSK_TO_CLOUD["ops"])


def test_topics():
    t = Topics("s1", "k1")
    assert t.ops == "kiosk/v1/s1/k1/ops"
    assert t.rpc_req == "kiosk/v1/s1/k1/rpc/req"
    assert t.denylist == "kiosk/v1/s1/denylist"
    assert parse_device_topic(t.rpc_res) == ("s1", "k1", "rpc/res")
    assert parse_device_topic("other/v1/s1/k1/ops") is None
    assert reconciler_filters(True)[0] == "$share/reconcilers/kiosk/v1/+/+/ops"
