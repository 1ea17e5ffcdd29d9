"""The broker as a boundary (issue 12 item 3): no client can take another's client id or session.

Attacks on the real mosquitto with the generated config: a second device certificate, an
anonymous client on the enrollment port and a device certificate on the cloud listener each
connect with the ids they can predict (a device's, the old `kiosk-<site>-<device>`, the
reconciler's name); the victim stays connected, and every message queued in its session
arrives."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest
from msgspec.structs import replace

from cloud_sync import ca
from cloud_sync.protocol import device_client_id, secret_client_id
from cloud_sync.settings import BrokerSettings
from tests.mqtt_broker import Broker, make_pki

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"),
        reason="no mosquitto",
    ),
]

SESSION_S = 600
ACK = "kiosk/v1/s1/k1/ack"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(make_pki(tmp_path, ["k1", "k2"], "s1"), enroll=True)
    b.start()
    yield b
    b.stop()


def _client(settings: BrokerSettings, ident: str, session: bool = True) -> aiomqtt.Client:
    kwargs = settings.client_kwargs(SESSION_S if session else None)
    return aiomqtt.Client(**kwargs, identifier=ident)


def _on(settings: BrokerSettings, port: int) -> BrokerSettings:
    """The same certificate, aimed at another listener."""
    return replace(settings, port=port)


def _anonymous(broker: Broker, ident: str) -> aiomqtt.Client:
    """A client on the enrollment port: no certificate, the id it likes."""
    tls = ssl.create_default_context(cafile=str(broker.pki / ca.CA_CERT))
    return aiomqtt.Client(
        "127.0.0.1",
        broker.enroll_port or 0,
        identifier=ident,
        tls_context=tls,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True,  # what an attacker sends to wipe a session it takes over
        timeout=3,
    )


async def _attempt(client: aiomqtt.Client) -> str:
    """Connect and leave at once; 'refused' or 'connected' (under some id)."""
    try:
        async with asyncio.timeout(5), client:
            await asyncio.sleep(0.2)
    except aiomqtt.MqttError:
        return "refused"
    return "connected"


async def _receive(client: aiomqtt.Client, n: int) -> list[bytes]:
    got: list[bytes] = []
    async with asyncio.timeout(5):
        async for m in client.messages:
            assert isinstance(m.payload, bytes)
            got.append(m.payload)
            if len(got) == n:
                return got
    return got


async def _nothing(client: aiomqtt.Client, wait: float = 0.7) -> list[bytes]:
    got: list[bytes] = []
    try:
        async with asyncio.timeout(wait):
            async for m in client.messages:
                assert isinstance(m.payload, bytes)
                got.append(m.payload)
    except TimeoutError:
        pass
    return got


@pytest.fixture
async def reconciler_link(broker: Broker) -> AsyncIterator[aiomqtt.Client]:
    async with _client(broker.settings(ca.RECONCILER), secret_client_id("reconciler")) as c:
        yield c


async def test_a_second_certificate_cannot_kick_a_device_nor_take_its_queued_messages(
    broker: Broker, reconciler_link: aiomqtt.Client
):
    k1 = broker.settings("k1")
    k2 = broker.settings("k2")
    victim = device_client_id("k1")
    # k1 has a session with a subscription, and goes offline: the cloud queues 3 acks for it.
    async with _client(k1, victim) as c:
        await c.subscribe(ACK, qos=1)
    for i in range(3):
        await reconciler_link.publish(ACK, f"queued-{i}".encode(), qos=1)

    # k2's certificate, with every id that names k1: the broker makes each of them "k2".
    for ident in (victim, "/kiosk-s1-k1", "/" + "k1" * 2):
        thief = _client(k2, ident)
        async with thief:
            await thief.subscribe("#", qos=1)
            assert await _nothing(thief) == []  # nothing of k1's, and no rights besides
    assert await _attempt(_client(k2, "k1")) == "refused"  # an id without the prefix
    assert await _attempt(_client(k2, "kiosk-s1-k1")) == "refused"

    # k1 comes back: its session is intact, all three are there.
    async with _client(k1, victim) as c:
        assert await _receive(c, 3) == [b"queued-0", b"queued-1", b"queued-2"]

        # And while it is connected, the same attempts do not disconnect it.
        for ident in (victim, "k1"):
            await _attempt(_client(k2, ident))
            await _attempt(_anonymous(broker, ident))
        await reconciler_link.publish(ACK, b"after the attacks", qos=1)
        assert await _receive(c, 1) == [b"after the attacks"]


async def test_the_enrollment_port_cannot_reach_a_device_or_the_reconciler(broker: Broker):
    k1 = broker.settings("k1")
    rec = broker.settings(ca.RECONCILER)
    rec_id = secret_client_id("reconciler")
    status = "kiosk/v1/s1/k1/status"
    # The reconciler's persistent session subscribes, goes away; k1 reports 3 times meanwhile.
    async with _client(rec, rec_id) as r:
        await r.subscribe("kiosk/v1/+/+/status", qos=1)
    async with _client(k1, device_client_id("k1"), session=False) as c:
        for i in range(3):
            await c.publish(status, f"status-{i}".encode(), qos=1)

        # Anonymous clients on the enrollment port try every id they could predict.
        predictable = ["k1", "kiosk-s1-k1", "reconciler", "/reconciler", "/k1", "/kiosk-s1-k1"]
        results = {ident: await _attempt(_anonymous(broker, ident)) for ident in predictable}
        # Without the prefix: refused outright. With it: a distinct client, which touches
        # neither k1 (its id is "k1", from its certificate) nor the reconciler's secret id.
        assert results == {
            "k1": "refused",
            "kiosk-s1-k1": "refused",
            "reconciler": "refused",
            "/reconciler": "connected",
            "/k1": "connected",
            "/kiosk-s1-k1": "connected",
        }
        # A device certificate on the cloud listener: no rights, and the same ids.
        for ident in ("/reconciler", "/reconciler-1"):
            spy = _client(_on(k1, broker.cloud_port), ident)
            async with spy:
                await spy.subscribe("kiosk/v1/#", qos=1)
                await c.publish(status, b"while spied on", qos=1)
                assert await _nothing(spy) == []

        # k1 was never kicked: it still publishes on the same connection.
        await c.publish(status, b"still here", qos=1)

    # The reconciler comes back to its session: every status arrived, in order.
    async with _client(rec, rec_id) as r:
        got = await _receive(r, 6)
    assert got == [
        b"status-0",
        b"status-1",
        b"status-2",
        b"while spied on",
        b"while spied on",
        b"still here",
    ]


def test_reconciler_and_operator_ids_are_secret_and_never_a_device_name():
    ids = {secret_client_id("reconciler") for _ in range(100)}
    assert len(ids) == 100
    for ident in ids:
        assert ident.startswith("/reconciler-") and len(ident) == len("/reconciler-") + 32
    # A device CN can never start with the prefix: names never contain "/".
    with pytest.raises(ValueError):
        ca.issue_device(Path("/nonexistent"), "/reconciler-x", site="s1")


def test_a_fixed_reconciler_client_id_must_look_secret(tmp_path: Path):
    from cloud_sync.settings import ReconcilerSettings

    with pytest.raises(ValueError, match="client_id must start with '/'"):
        ReconcilerSettings(key_file=tmp_path / "k", client_id="reconciler-1")
    with pytest.raises(ValueError, match="24 characters"):
        ReconcilerSettings(key_file=tmp_path / "k", client_id="/rec-1")
    ok = secret_client_id("reconciler")
    assert ReconcilerSettings(key_file=tmp_path / "k", client_id=ok).client_id == ok
