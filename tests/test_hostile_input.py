"""Hostile input (issue 12 items 1 and 4): poison messages from an enrolled kiosk, a poisoned
retained status or deny list, ops stamped far from the cloud's clock. Nothing crashes or stalls
the reconciler or a kiosk; each refusal is logged with its sender and counted in the fleet view;
the next message is processed."""

from __future__ import annotations

import contextlib
import time

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.agent import SyncAgent
from cloud_sync.errors import BatchError, MessageRefused
from cloud_sync.protocol import (
    CLOUD_TO_KIOSK,
    KIOSK_TO_CLOUD,
    DenyDelta,
    DenyEntry,
    Hello,
    OpsUpload,
    Status,
    Topics,
    WireBatch,
    decode_body,
    decode_ops,
    encode_ops,
    open_envelope,
    seal,
)
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import AgentSettings, BrokerSettings
from cloud_sync.store import SqliteCloudStore
from edge.ledger import Kind, Ledger, generate_key, public_bytes

T = Topics("s1", "k1")
DEEP = b"\x91" * 200_000 + b"\xc0"  # a list in a list ... 200,000 deep: a few hundred KB


@pytest.fixture
def cloud(tmp_path):
    key = generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=key)
    dev = generate_key()
    store.trust("k1", public_bytes(dev), "kiosk")
    store.enroll("k1", "s1")
    rec = Reconciler(store, key, clock=lambda: int(time.time() * 1000))
    yield rec, dev
    store.close()


def sealed_raw(topic: str, body: bytes, key, ts_ms: int | None = None) -> bytes:
    """An envelope around any body bytes, correctly signed by `key` (what a stolen kiosk key
    can send)."""
    from cloud_sync.protocol import PROTOCOL_VERSION, Envelope, _signed_bytes

    env = Envelope(PROTOCOL_VERSION, "k1", ts_ms or int(time.time() * 1000), body)
    sig = key.sign(_signed_bytes(topic, env))
    return msgspec.msgpack.encode(msgspec.structs.replace(env, sig=sig))


def signed_op_batch(key, **change) -> bytes:
    led_ops = []
    from edge.ledger.op import GENESIS, Op

    op = Op(
        replica="k1",
        seq=1,
        wall_ms=int(time.time() * 1000),
        mono_ms=1,
        kind=Kind.INC,
        account="m1",
        purse="cash",
        amount=5,
        counterpart="",
        ref="r",
        data="",
        prev=GENESIS,
        sig=b"",
    )
    op = msgspec.structs.replace(op, **change)
    op = op.signed(key)
    led_ops.append(op)
    return encode_ops(led_ops)


def poison(dev) -> dict[str, tuple[str, bytes]]:
    big = 1 << 63
    empty_batch = msgspec.msgpack.encode(WireBatch("k1", 1, b"\x00" * 32, []))
    return {
        "deep envelope": (T.status, DEEP),
        "deep body": (T.status, sealed_raw(T.status, DEEP, dev)),
        "hello 2^63": (
            T.rpc_req,
            seal(
                Hello(id="h", head=big, cloud_head=0, deny_version=0),
                topic=T.rpc_req,
                sender="k1",
                key=dev,
                ts_ms=int(time.time() * 1000),
            ),
        ),
        "status 2^64-1": (
            T.status,
            seal(
                Status(online=True, head=(1 << 64) - 1),
                topic=T.status,
                sender="k1",
                key=dev,
                ts_ms=1,
            ),
        ),
        "empty batch": (
            T.ops,
            seal(OpsUpload(batch=empty_batch), topic=T.ops, sender="k1", key=dev, ts_ms=1),
        ),
        "op amount 2^63": (
            T.ops,
            seal(
                OpsUpload(batch=signed_op_batch(dev, amount=big)),
                topic=T.ops,
                sender="k1",
                key=dev,
                ts_ms=1,
            ),
        ),
        "NUL in account": (
            T.ops,
            seal(
                OpsUpload(batch=signed_op_batch(dev, account="m\x001")),
                topic=T.ops,
                sender="k1",
                key=dev,
                ts_ms=1,
            ),
        ),
        "unknown field": (
            T.status,
            sealed_raw(
                T.status, msgspec.msgpack.encode({"type": "status", "online": True, "x": 1}), dev
            ),
        ),
        "oversized": (T.ops, b"\x00" * (2 << 20)),
    }


def test_every_poison_message_is_refused_counted_and_the_next_one_processed(cloud, caplog):
    rec, dev = cloud
    cases = poison(dev)
    for name, (topic, payload) in cases.items():
        assert rec.handle(topic, payload) == [], name
    assert rec.refused == len(cases)
    flags = rec.store.flags()["k1"]
    assert flags.refused == len(cases)
    assert "refused from k1" in caplog.text
    assert "2^63" not in caplog.text  # reasons are the decoder's, not our test names
    hello = seal(
        Hello(id="ok", head=0, cloud_head=0, deny_version=0),
        topic=T.rpc_req,
        sender="k1",
        key=dev,
        ts_ms=int(time.time() * 1000),
    )
    out = rec.handle(T.rpc_req, hello)
    assert any(o.topic == T.rpc_res for o in out)  # answered: the reconciler goes on


def test_ops_stamped_48_hours_ahead_are_flagged_not_silent(cloud, caplog):
    rec, dev = cloud
    ahead = int(time.time() * 1000) + 48 * 3600 * 1000
    msg = seal(
        OpsUpload(batch=signed_op_batch(dev, wall_ms=ahead)),
        topic=T.ops,
        sender="k1",
        key=dev,
        ts_ms=int(time.time() * 1000),
    )
    rec.handle(T.ops, msg)
    flags = rec.store.flags()["k1"]
    assert flags.skewed == 1
    assert "+172800 s" in flags.last_skew
    assert "device k1: op #1 stamped +172800 s" in caplog.text


def test_the_fleet_view_shows_refusals_and_skew(cloud, tmp_path):
    rec, dev = cloud
    rec.handle(T.status, DEEP)
    rec.store.flag("k1", "skewed", "message stamped +999 s from the cloud's clock")
    from click.testing import CliRunner

    from kiosk.cloud import cloud as cloud_group

    store_path = tmp_path / "cloud.db"
    key_file = tmp_path / "cloud.key"
    from edge.ledger import save_private_key

    save_private_key(key_file, rec.key)
    cfg = tmp_path / "cloud.toml"
    cfg.write_text(f'[reconciler]\nkey_file = "{key_file}"\nstore = "sqlite:///{store_path}"\n')
    rec.store.close()
    res = CliRunner().invoke(cloud_group, ["kiosks", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    row = next(line for line in res.output.splitlines() if " k1 " in f" {line} ")
    assert "[refused 1, skewed 1]" in row
    assert "last refused: malformed envelope" in res.output or "not msgpack" in res.output


# -- the kiosk side ------------------------------------------------------------------------------


@pytest.fixture
def kiosk(tmp_path):
    cloud_key = generate_key()
    key = generate_key()
    led = Ledger(tmp_path / "k1.db", replica="k1", key=key)
    led.trust("cloud", public_bytes(cloud_key), "cloud")
    settings = AgentSettings(
        site="s1", device="k1", broker=BrokerSettings(), state_file=tmp_path / "k1-state.db"
    )
    agent = SyncAgent(led, settings, key=key)
    yield agent, cloud_key
    agent.denylist.close()
    led.close()


def deny(version: int, cloud_key, ts_ms: int, token: str = "tok") -> bytes:
    delta = DenyDelta(site="s1", version=version, entries=[DenyEntry(token=token, status="lost")])
    return seal(delta, topic=T.denylist, sender="cloud", key=cloud_key, ts_ms=ts_ms)


def test_a_poisoned_retained_deny_list_is_refused_and_the_kiosk_goes_on(kiosk):
    agent, cloud_key = kiosk
    now = int(time.time() * 1000)
    agent.handle(T.denylist, DEEP)
    agent.handle(T.denylist, sealed_raw(T.denylist, DEEP, cloud_key))
    huge = msgspec.msgpack.encode({"type": "deny", "site": "s1", "version": 1 << 63, "entries": []})
    from cloud_sync.protocol import PROTOCOL_VERSION, Envelope, _signed_bytes

    env = Envelope(PROTOCOL_VERSION, "cloud", now, huge)
    env = msgspec.structs.replace(env, sig=cloud_key.sign(_signed_bytes(T.denylist, env)))
    agent.handle(T.denylist, msgspec.msgpack.encode(env))
    assert agent.refused == 3
    agent.handle(T.denylist, deny(1, cloud_key, now))
    assert agent.denied("tok") == "lost"  # the next message is applied


def test_a_three_day_old_retained_deny_list_does_not_look_fresh(kiosk):
    agent, cloud_key = kiosk
    three_days_ago = int(time.time() * 1000) - 3 * 86400 * 1000
    agent.handle(T.denylist, deny(1, cloud_key, three_days_ago))
    assert agent.denied("tok") == "lost"  # applied: the content is still the cloud's
    age_s = (agent.clock() - agent.last_contact_ms) / 1000
    assert age_s >= 3 * 86400 - 5  # judged by the signed time, not by when it arrived


def test_a_cloud_clock_ahead_cannot_make_the_deny_list_look_fresher_than_now(kiosk):
    agent, cloud_key = kiosk
    agent.handle(T.denylist, deny(1, cloud_key, int(time.time() * 1000) + 10 * 86400 * 1000))
    assert agent.last_contact_ms <= agent.clock()


# -- decoders under hypothesis ---------------------------------------------------------------------

wire_ints = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)  # what msgpack can carry
messages = st.binary(max_size=2048) | st.recursive(
    st.none() | st.booleans() | wire_ints | st.text(max_size=20) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
).map(lambda v: msgspec.msgpack.encode(v))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_the_envelope_decoder_refuses_or_opens_anything(data):
    key = generate_key()
    for leaf, allowed in [*KIOSK_TO_CLOUD.items(), *CLOUD_TO_KIOSK.items()]:
        with contextlib.suppress(MessageRefused):
            open_envelope(
                data,
                topic=f"kiosk/v1/s1/k1/{leaf}",
                keys=lambda s: key.public_key(),
                allowed=allowed,
            )


@settings(max_examples=200, deadline=None)
@given(messages)
def test_the_body_decoder_yields_only_messages_within_limits(data):
    try:
        msg = decode_body(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    for value in msgspec.structs.asdict(msg).values():
        if isinstance(value, int) and not isinstance(value, bool):
            assert 0 <= value < 1 << 63


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            wire_ints,
            wire_ints,
            st.integers(0, 300),
            st.text(max_size=5),
            st.text(max_size=5),
            wire_ints,
            st.text(max_size=3),
            st.text(max_size=3),
            st.text(max_size=3),
            st.binary(max_size=64),
        ),
        max_size=4,
    ),
    wire_ints,
)
def test_the_batch_decoder_gives_ops_a_database_can_hold(rows, first):
    data = msgspec.msgpack.encode(["k1", first, b"\x00" * 32, rows])
    try:
        ops = decode_ops(data)
    except BatchError:
        return
    assert ops
    for op in ops:
        for n in (op.seq, op.wall_ms, op.mono_ms, op.amount):
            assert -(1 << 63) <= n < 1 << 63
        for s in (op.account, op.purse, op.counterpart, op.ref, op.data):
            assert "\x00" not in s


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_the_enrollment_and_bundle_decoders_refuse_cleanly(data):
    from fuzz import targets

    for target in targets.TARGETS.values():
        target(data)
