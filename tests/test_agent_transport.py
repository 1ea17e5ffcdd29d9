"""SyncAgent over a transport other than MQTT (attach / handle / detach): the seam the fleet
simulation drives the real agent through."""

from __future__ import annotations

import asyncio
import contextlib

from cloud_sync.agent import SyncAgent
from cloud_sync.protocol import Ack, Topics, seal
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import AgentSettings
from cloud_sync.store import SqliteCloudStore
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes
from edge.validation import load


class Direct:
    """Delivers each uplink to the reconciler at once and its answers back to the agent."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.agent: SyncAgent | None = None
        self.published: list[str] = []

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.published.append(topic)
        assert self.agent is not None
        for out in self.reconciler.handle(topic, payload):
            self.agent.handle(out.topic, out.payload)


def _site(tmp_path):
    cloud_key, kiosk_key = generate_key(), generate_key()
    store = SqliteCloudStore(tmp_path / "cloud.db", replica="cloud", key=cloud_key)
    store.trust("k1", public_bytes(kiosk_key), "kiosk")
    store.enroll("k1", "s1")
    store.append([Intent(Kind.INC, "m1", "cash", 5_000)], ref="topup")
    led = Ledger(tmp_path / "k1.db", replica="k1", key=kiosk_key)
    led.trust("cloud", public_bytes(cloud_key), "cloud")
    agent = SyncAgent(led, AgentSettings(site="s1", device="k1"), key=kiosk_key)
    return store, Reconciler(store, cloud_key), led, agent


async def test_rights_request_over_an_attached_transport(tmp_path):
    store, rec, led, agent = _site(tmp_path)
    transport = Direct(rec)
    transport.agent = agent
    assert not await agent.request_rights("m1", "cash", 300)  # not attached: offline
    agent.attach(transport)
    assert agent.online
    assert await agent.request_rights("m1", "cash", 300)
    assert transport.published == [Topics("s1", "k1").rpc_req]
    assert led.purse("m1", "cash").rights("k1") >= 300
    assert agent.snapshot("m1").values["cash"] == 5_000
    agent.detach()
    assert not agent.online
    assert not await agent.request_rights("m1", "cash", 10_000)
    store.close()
    led.close()


async def test_handle_applies_an_ack_and_counts_a_forged_message(tmp_path):
    store, rec, led, agent = _site(tmp_path)
    t = Topics("s1", "k1")
    led.append([Intent(Kind.INC, "m1", "cash", 100)], ref="coin")
    op = next(led.ops("k1"))
    forged = seal(
        Ack(seq=1, hash=op.hash()), topic=t.ack, sender="cloud", key=generate_key(), ts_ms=0
    )
    agent.handle(t.ack, forged)
    assert agent.refused == 1 and agent.acked == 0
    store.ingest([op])
    agent.handle(t.ack, rec.ack(t).payload)
    assert agent.acked == 1
    assert agent.refused == 1
    store.close()
    led.close()


async def test_a_kiosk_holding_part_of_a_price_gets_the_rest_online(tmp_path):
    """The pipeline asks its RightsSource for the shortfall of a refused debit; the agent must
    fetch that much more, even when it already holds more than the shortfall itself."""
    from edge.config import KioskConfig
    from edge.taps.pipeline import TapPipeline
    from tests.kiosk_helpers import SITE_KEY, RecordingFeedback, enroll, nfc

    store, rec, led, agent = _site(tmp_path)
    enroll(store.ledger, "m2", "Bob", "04BB", purses={"cash": 5_000})
    store.grant("m2", "cash", "k1", 700, 700, ref="float")
    led.apply_many(store.ops("cloud"))
    assert led.purse("m2", "cash").rights("k1") == 700
    transport = Direct(rec)
    transport.agent = agent
    agent.attach(transport)
    agent.last_contact_ms = 1 << 62
    cfg = load(
        KioskConfig, {"kiosk": {"id": "k1", "site": "s1", "role": "pos", "pos_amount": 1_200}}
    )
    kiosk = TapPipeline(cfg, led, SITE_KEY, RecordingFeedback(), rights=agent)
    out = await kiosk.card(nfc("04BB"))
    assert out.decision.approved, out.decision
    assert transport.published  # it asked the cloud
    assert led.purse("m2", "cash").value == 5_000 - 1_200
    store.close()
    led.close()


class LosesTheCancelOnStatus(Direct):
    """Publishes like Direct, but a stop that lands while the status is on its way is lost, as
    Python 3.11's asyncio.wait_for inside aiomqtt's publish loses it (CPython gh-86296)."""

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if topic.endswith("/status"):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.5)
            return
        await super().publish(topic, payload, qos, retain)


async def test_the_sync_loop_stops_even_when_its_publish_lost_the_cancel(tmp_path):
    """The hang of a full test run: the kiosk's sync loop lost its stop in the status publish,
    and then said hello forever while the daemon waited for it."""
    store, rec, led, agent = _site(tmp_path)
    transport = LosesTheCancelOnStatus(rec)
    transport.agent = agent
    agent.attach(transport)
    task = asyncio.create_task(agent._sync())
    await asyncio.sleep(0.2)  # hello answered, status on its way
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    task.cancel()
    store.close()
    led.close()
    assert done and task.cancelled(), "the sync loop went on after its stop"
