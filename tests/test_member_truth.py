"""A member walks through a venue of four real kiosk daemons (gate, point of sale, second gate,
top-up kiosk) linked through a real mosquitto with mutual TLS to a reconciler: every screen shows
the balance the cloud holds. Then the same walk with one gate's cable pulled and plugged back:
offline its screen is marked "as of" and is off only by what was spent elsewhere meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloud_sync import admin
from edge.config import KioskConfig
from edge.daemon.daemon import KioskDaemon
from edge.daemon.sdnotify import Notifier
from edge.drivers.gpio import SimulatedInputs
from edge.drivers.nfc_cards import Ntag424Tag
from edge.drivers.ntag424 import SiteKeys
from edge.ledger import Intent, Kind, generate_key, public_bytes, save_private_key
from edge.ledger import records as rec
from edge.ledger.sitekey import create_site_key, load_site_secrets
from edge.taps.pipeline import Outcome
from edge.validation import dump, load
from kiosk.link import link_factory
from tests.daemon_helpers import kiosk_config, next_outcome
from tests.mqtt_broker import World, eventually, world
from tests.tcp_proxy import Cable

pytestmark = pytest.mark.mqtt

UID = "04A1B2C3D4E5F6"
KIOSKS = {"gate-1": "gate", "pos-1": "pos", "gate-2": "gate", "topup-1": "topup"}
START = 10_000
PRICE = 2_000  # Swim at a gate (tests.daemon_helpers.kiosk_config)
SALE = 350  # a fixed sale at the point of sale


class Venue:
    """The four daemons, their outcome queues, and the cloud they talk to."""

    def __init__(self, w: World, card: Ntag424Tag) -> None:
        self.w = w
        self.card = card  # the member's NTAG 424 DNA: its SUN read counter moves at every tap
        self.daemons: dict[str, KioskDaemon] = {}
        self.outcomes: dict[str, asyncio.Queue[Outcome]] = {}
        self.last: dict[str, float] = {}  # loop time of the last tap per kiosk

    def cloud_cash(self) -> int:
        assert self.w.store is not None
        return self.w.store.purse("m1", "cash").value

    async def stored(self, kiosk: str) -> None:
        """The kiosk's ops are at the cloud (the member walks on to the next kiosk)."""
        assert self.w.store is not None
        store, led = self.w.store, self.daemons[kiosk].ledger
        await eventually(lambda: store.head(kiosk)[0] == led.head()[0], what=f"{kiosk} stored")

    async def tap(self, kiosk: str) -> Outcome:
        """The member's card at a kiosk (after its double-tap window: a new visit)."""
        d = self.daemons[kiosk]
        loop = asyncio.get_running_loop()
        wait = self.last.get(kiosk, -1e9) + d.cfg.rules.debounce_seconds + 0.1 - loop.time()
        await asyncio.sleep(max(0.0, wait))
        d.nfc.present(self.card)
        out = await next_outcome(self.outcomes[kiosk])
        self.last[kiosk] = loop.time()
        assert not out.decision.repeated
        return out

    async def top_up(self, kiosk: str, coins: int) -> Outcome:
        d = self.daemons[kiosk]
        assert (await self.tap(kiosk)).topup_open
        await SimulatedInputs(d.gpio).insert_coin(coins)
        await next_outcome(self.outcomes[kiosk])
        return await self.tap(kiosk)  # closes the session: the balance shown


def _config(tmp: Path, w: World, kiosk: str, role: str, port: int | None) -> KioskConfig:
    (tmp / kiosk / "state").mkdir(parents=True)
    base = kiosk_config(tmp / kiosk, role=role)
    raw: dict[str, Any] = dump(base)
    raw["kiosk"] |= {
        "id": kiosk,
        "site": w.site,
        "site_key_file": str(tmp / "site.key"),
        "cloud_public_key": public_bytes(w.keys["cloud"]).hex(),  # type: ignore[arg-type]
    }
    if role == "pos":
        raw["kiosk"]["pos_amount"] = SALE
    broker = dump(w.broker.settings(kiosk))
    if port is not None:
        broker["port"] = port
    raw["agent"] = {
        "broker": broker,
        "poll_interval_s": 0.02,
        "ack_timeout_s": 1.0,
        "backoff_min_s": 0.05,
        "backoff_max_s": 0.3,
    }
    return load(KioskConfig, raw)


@contextlib.asynccontextmanager
async def venue(tmp: Path, cable: str = "") -> AsyncIterator[tuple[Venue, Cable | None]]:
    async with world(tmp, list(KIOSKS)) as w:
        w.cloud()
        assert w.store is not None
        create_site_key(tmp / "site.key")
        secrets = load_site_secrets(tmp / "site.key")
        token = admin.card_token(secrets, UID, "nfc")
        keys = SiteKeys(secrets.sun_master, system_id=w.site.encode()[:23])
        # The member's home scopes her to this site's kiosks (docs/knowledge-model.md).
        w.store.append(rec.register_writes("m1", 1, home=w.site))
        admin.register_member(w.store, "m1", "Ann")
        admin.link_card(w.store, "m1", token)
        w.store.append([Intent(Kind.INC, "m1", "cash", START)], ref="counter-1")
        w.start_reconciler()
        v = Venue(w, Ntag424Tag.for_site(bytes.fromhex(UID), keys))
        stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
        async with contextlib.AsyncExitStack() as stack:
            proxy = await stack.enter_async_context(Cable(w.broker.port)) if cable else None
            for kiosk, role in KIOSKS.items():
                port = proxy.port if proxy is not None and kiosk == cable else None
                cfg = _config(tmp, w, kiosk, role, port)
                key = generate_key()
                save_private_key(cfg.kiosk.key_file, key)
                w.store.trust(kiosk, public_bytes(key), "kiosk")
                w.store.enroll(kiosk, w.site, role=role)
                d = KioskDaemon(cfg, notifier=Notifier({}), link=link_factory(cfg))
                stop = asyncio.Event()
                stops.append((stop, asyncio.create_task(d.run(stop), name=kiosk)))
                async with asyncio.timeout(10):
                    await d.ready.wait()
                q: asyncio.Queue[Outcome] = asyncio.Queue()
                assert d.feedback is not None
                d.feedback.observers.append(q.put_nowait)
                v.daemons[kiosk], v.outcomes[kiosk] = d, q
            try:
                for kiosk, d in v.daemons.items():
                    ledger = d.ledger
                    await eventually(lambda d=d: d.agent.synced, what=f"{kiosk} online")
                    await eventually(
                        lambda ledger=ledger: (
                            ledger.register(rec.card_account(token), "member") is not None
                        ),
                        what=f"card known at {kiosk}",
                    )
                yield v, proxy
            finally:
                for stop, _ in stops:
                    stop.set()
                async with asyncio.timeout(20):
                    await asyncio.gather(*(t for _, t in stops))


def shown(out: Outcome) -> int:
    assert out.decision.approved, out.decision
    return out.decision.remaining["cash"]


async def test_every_screen_shows_the_balance_the_cloud_holds(tmp_path):
    async with venue(tmp_path) as (v, _):
        walk = [("gate-1", -PRICE), ("pos-1", -SALE), ("gate-2", -PRICE), ("topup-1", +500)]
        expected = START
        for kiosk, change in walk:
            out = await v.top_up(kiosk, 5) if change > 0 else await v.tap(kiosk)
            expected += change
            await v.stored(kiosk)
            assert v.cloud_cash() == expected
            assert shown(out) == expected, kiosk
            assert out.as_of_ms == 0  # online: the truth, not marked
        # Back to the first gate: it never saw the sale, the second gate or the top-up.
        out = await v.tap("gate-1")
        await v.stored("gate-1")
        assert shown(out) == v.cloud_cash() == expected - PRICE
        assert v.daemons["gate-1"].ledger.head()[0] >= 2  # and each op went up once:
        assert v.w.store is not None
        store = v.w.store
        for kiosk, d in v.daemons.items():
            # A kiosk may still be sending back rights the cloud recalled to keep its reserve.
            await eventually(
                lambda kiosk=kiosk, d=d: store.head(kiosk)[0] == d.ledger.head()[0],
                what=f"{kiosk}'s ops stored",
            )


async def test_a_partitioned_gate_shows_its_best_knowledge_and_heals(tmp_path):
    async with venue(tmp_path, cable="gate-1") as (v, cable):
        assert cable is not None
        gate = v.daemons["gate-1"]
        out = await v.tap("gate-1")
        await v.stored("gate-1")
        assert shown(out) == v.cloud_cash() == START - PRICE
        out = await v.tap("pos-1")
        await v.stored("pos-1")
        assert shown(out) == v.cloud_cash()
        # The gate holds a working float, and has heard of the sale, when its cable is pulled.
        await eventually(
            lambda: gate.ledger.purse("m1", "cash").rights("gate-1") >= PRICE, what="float"
        )
        await eventually(
            lambda: (gate.agent.known_values("m1") or ({}, 0))[0].get("cash") == v.cloud_cash(),
            what="sale known at the gate",
        )
        before = v.cloud_cash()
        cable.cut()
        await eventually(lambda: not gate.agent.online, what="gate offline")
        out = await v.tap("pos-1")  # spent elsewhere during the partition
        await v.stored("pos-1")
        offline = await v.tap("gate-1")
        assert offline.as_of_ms > 0  # marked: "as of"
        true_now = before - SALE - PRICE
        assert shown(offline) == before - PRICE  # off only by the sale elsewhere meanwhile
        assert shown(offline) - true_now == SALE
        cable.heal()
        await eventually(lambda: gate.agent.synced, what="gate back online")
        await v.stored("gate-1")
        assert v.cloud_cash() == true_now
        await eventually(
            lambda: (gate.agent.known_values("m1") or ({}, 0))[0].get("cash") == true_now,
            what="gate knows the truth again",
        )
        out = await v.tap("gate-2")
        await v.stored("gate-2")
        assert shown(out) == v.cloud_cash() == true_now - PRICE
