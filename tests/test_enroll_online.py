"""Online enrollment with one-time claim codes, end to end: a real mosquitto with the mTLS and
the enrollment-only listeners, a real reconciler service with the Enroller, the device side
writing /etc/kiosk-style files; then the enrolled kiosk's agent syncs over mTLS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiomqtt
import pytest
from click.testing import CliRunner
from msgspec.structs import replace

from cloud_sync import ca
from cloud_sync.agent import SyncAgent
from cloud_sync.enroll import Enroller, create_claim
from cloud_sync.enroll_wire import ClaimKeys, open_answer, request_topic
from cloud_sync.enroll_wire import digest as request_digest
from cloud_sync.reconciler import wall_ms
from cloud_sync.settings import EnrollSettings
from edge.config import load_config
from edge.ledger import Intent, Kind, Ledger, load_private_key, public_bytes
from kiosk.cli import cli
from kiosk.link import agent_settings
from provisioning.enroll import enroll_async
from provisioning.errors import AlreadyEnrolled, EnrollRefused, ProvisionError
from tests.mqtt_broker import Broker, World, eventually, make_pki

pytestmark = [
    pytest.mark.mqtt,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"),
        reason="no mosquitto",
    ),
]

SITE_TEMPLATE = """
[kiosk]
id = "template"
site = "template"
role = "pos"
currency = "¥"

[agent]
batch_size = 50
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@dataclass
class Cloud:
    w: World
    enroller: Enroller

    @property
    def broker(self) -> Broker:
        return self.w.broker

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.broker.enroll_port}"

    def claim(self, ttl: timedelta = timedelta(hours=2), **kw: object) -> str:
        assert self.w.store is not None
        code, _ = create_claim(self.w.store, site="s1", ttl=ttl, **kw)  # type: ignore[arg-type]
        return code

    def used(self, code: str) -> bool:
        assert self.w.store is not None
        claim = self.w.store.claim(ClaimKeys.from_code(code).claim_id)
        assert claim is not None
        return claim.used_ms is not None

    async def enroll(self, code: str, etc: Path, device: str, **kw: object) -> object:
        kw.setdefault("ca_file", self.broker.pki / ca.CA_CERT)
        return await enroll_async(
            claim=code,
            broker=self.url,
            config_dir=etc,
            device=device,
            timeout_s=20,
            **kw,  # type: ignore[arg-type]
        )


@contextlib.asynccontextmanager
async def cloud(root: Path) -> AsyncIterator[Cloud]:
    pki = make_pki(root, [], "s1")
    sites = root / "sites"
    sites.mkdir()
    (sites / "s1.toml").write_text(SITE_TEMPLATE)
    (sites / "s1.site.key").write_bytes(b"K" * 32)
    broker = Broker(pki, enroll=True)
    broker.start()
    w = World(root, broker)
    try:
        async with asyncio.timeout(90):
            rec = w.cloud()
            assert w.store is not None
            enroller = Enroller(
                w.store,
                rec.key,
                EnrollSettings(ca_dir=pki, sites_dir=sites, broker_port=broker.port),
            )
            w.start_reconciler(enroller=enroller)
            await eventually(lambda: w.services[0].connected.is_set(), what="reconciler")
            yield Cloud(w, enroller)
    finally:
        try:
            async with asyncio.timeout(20):
                await w.close()
        finally:
            broker.stop()


async def test_enroll_then_sync_over_mtls_and_replays_change_nothing(tmp_path: Path) -> None:
    async with cloud(tmp_path) as c:
        store = c.w.store
        assert store is not None
        code = c.claim()
        keys = ClaimKeys.from_code(code)
        # Someone with the reconciler's rights records every request: we replay one later.
        captured: list[bytes] = []
        spy = aiomqtt.Client(**c.broker.settings(ca.RECONCILER).client_kwargs(), identifier="/spy")
        async with spy:
            await spy.subscribe(request_topic(keys.claim_id), qos=1)

            async def record() -> None:
                async for m in spy.messages:
                    captured.append(bytes(m.payload))  # type: ignore[arg-type]

            recorder = asyncio.create_task(record())
            etc = tmp_path / "etc-k1"
            res = await c.enroll(code.lower(), etc, "k1")  # case and dashes do not matter
            await eventually(lambda: len(captured) == 1, what="request seen")
            recorder.cancel()

        assert (res.device, res.site, res.reenrolled) == ("k1", "s1", False)  # type: ignore[attr-defined]
        # Files, modes, and a config the daemon can load.
        for name, want in (("device.key", 0o600), ("tls.key", 0o600), ("site.key", 0o600)):
            assert mode(etc / name) == want, name
        assert not (etc / ".enroll-pending.json").exists()
        assert (etc / "site.key").read_bytes() == b"K" * 32
        cfg = load_config(etc / "kiosk.toml")
        assert (cfg.kiosk.id, cfg.kiosk.site, cfg.kiosk.currency) == ("k1", "s1", "¥")
        assert cfg.kiosk.cloud_public_key == public_bytes(c.w.keys["cloud"]).hex()  # type: ignore[arg-type]
        settings = agent_settings(cfg)
        assert settings is not None and settings.broker.tls is not None
        assert settings.broker.port == c.broker.port  # the mTLS listener, not the enrollment one
        assert settings.broker.host == "127.0.0.1"  # the host it enrolled through
        assert settings.broker.tls.cert == etc / "tls.crt"
        assert settings.batch_size == 50  # the site template's [agent]
        record = json.loads((etc / "enrollment.json").read_text())
        assert record["method"] == "online" and record["claim"] == keys.claim_id
        # The cloud trusts the device's ledger key and knows its site; the claim is spent.
        ledger_key = load_private_key(etc / "device.key")
        known = store.public_key("k1")
        assert known is not None and public_bytes(known) == public_bytes(ledger_key)
        dev = store.device("k1")
        assert dev is not None and dev.site == "s1"
        claim = store.claim(keys.claim_id)
        assert claim is not None and claim.used_by == "k1"

        # The same request again (a redelivery, or a snooper's replay): answered again from the
        # store (sealed for the code holder only), nothing changes.
        before = (store.claim(keys.claim_id), store.devices())
        answers: list[bytes] = []
        async with aiomqtt.Client(
            "127.0.0.1",
            c.broker.enroll_port or 0,
            identifier="/" + keys.claim_id,
            tls_params=aiomqtt.TLSParameters(ca_certs=str(c.broker.pki / ca.CA_CERT)),
        ) as replayer:
            await replayer.subscribe(f"kiosk/v1/enroll/{keys.claim_id}/res", qos=1)
            await replayer.publish(request_topic(keys.claim_id), captured[0], qos=1)
            async with asyncio.timeout(20):
                async for m in replayer.messages:
                    answers.append(bytes(m.payload))  # type: ignore[arg-type]
                    break
        assert c.enroller.replays == 1 and c.enroller.enrolled == 1
        assert (store.claim(keys.claim_id), store.devices()) == before
        got = open_answer(answers[0], keys, request_digest(captured[0]))
        assert got is not None and got[0].certificate == claim.certificate

        # A second device with the used code gets nothing.
        with pytest.raises(EnrollRefused, match="already used"):
            await c.enroll(code, tmp_path / "etc-k2", "k2")
        assert store.device("k2") is None
        assert not (tmp_path / "etc-k2" / "kiosk.toml").exists()

        # The enrolled kiosk syncs with its new certificate over mutual TLS.
        led = Ledger(tmp_path / "k1.db", replica="k1", key=ledger_key)
        led.trust("cloud", bytes.fromhex(cfg.kiosk.cloud_public_key), "cloud")
        tuned = replace(settings, state_file=tmp_path / "k1-state.db", poll_interval_s=0.02)
        c.w.ledgers["k1"] = led
        c.w.agents["k1"] = SyncAgent(led, tuned)
        store.append([Intent(Kind.INC, "m1", "cash", 1_000)], ref="topup-1")
        store.grant("m1", "cash", "k1", 500, 500, ref="seed-k1")
        c.w.start_agent("k1")
        await c.w.online("k1")
        await eventually(lambda: led.purse("m1", "cash").rights("k1") == 500, what="grant")
        led.append([Intent(Kind.DEC, "m1", "cash", 120)], ref="tap-1")
        c.w.agents["k1"].notify()
        await c.w.settled()
        assert store.purse("m1", "cash").value == 880
        assert c.w.reconciler is not None and c.w.reconciler.refused == 0


async def test_expired_claim_and_wrong_ca_are_refused(tmp_path: Path) -> None:
    async with cloud(tmp_path) as c:
        etc = tmp_path / "etc"
        expired = c.claim(ttl=timedelta(hours=2), now_ms=wall_ms() - 3 * 3600 * 1000)
        with pytest.raises(EnrollRefused, match="expired"):
            await c.enroll(expired, etc, "k1")
        assert not c.used(expired)
        assert not (etc / "kiosk.toml").exists()

        # A broker whose certificate another CA signed: the device does not talk to it.
        other = tmp_path / "other-ca"
        ca.init_ca(other)
        code = c.claim()
        with pytest.raises(ProvisionError, match="not signed by the CA"):
            await c.enroll(code, etc, "k1", ca_file=other / ca.CA_CERT)
        assert not c.used(code)  # nothing reached the cloud
        # The right CA: the pending request is sent, and the same claim still works.
        pending = json.loads((etc / ".enroll-pending.json").read_text())
        await c.enroll(code, etc, "k1")
        assert c.used(code)
        claim = c.w.store.claim(pending["claim"])  # type: ignore[union-attr]
        assert claim is not None
        assert claim.request == request_digest(__import__("base64").b64decode(pending["request"]))

        # A claim bound to a device name works for that name only; an unknown code for nothing.
        bound = c.claim(device="gate-9")
        with pytest.raises(EnrollRefused, match="for device 'gate-9'"):
            await c.enroll(bound, tmp_path / "etc-x", "gate-8")
        with pytest.raises(EnrollRefused, match="unknown claim code"):
            await c.enroll("AAAAA-BBBBB-CCCCC-DDDDD", tmp_path / "etc-y", "k3")


def cli_enroll(c: Cloud, code: str, etc: Path, *extra: str) -> tuple[int, str]:
    args = [
        "provision", "enroll", "--claim", code, "--broker", c.url, "--ca",
        str(c.broker.pki / ca.CA_CERT), "--config-dir", str(etc), "--timeout", "20", *extra,
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


async def test_reenroll_needs_the_flag_and_is_recorded(tmp_path: Path) -> None:
    async with cloud(tmp_path) as c:
        etc = tmp_path / "etc"
        first = c.claim()
        # The CLI runs its own event loop: in a thread, beside the test's reconciler.
        code, out = await asyncio.to_thread(cli_enroll, c, first, etc, "--device", "k1")
        assert code == 0, out
        assert "enrolled: k1 at s1" in out
        tls_key = (etc / "tls.key").read_bytes()

        second = c.claim()
        with pytest.raises(AlreadyEnrolled, match="--reenroll"):
            await c.enroll(second, etc, "k1")
        assert not c.used(second)  # refused before the claim was spent

        # Another device claiming the same id with its own ledger key: refused by the cloud.
        with pytest.raises(EnrollRefused, match="another ledger key"):
            await c.enroll(second, tmp_path / "etc-impostor", "k1")
        assert not c.used(second)

        code, out = await asyncio.to_thread(
            cli_enroll, c, second, etc, "--device", "k1", "--reenroll"
        )
        assert code == 0, out
        assert "re-enrolled: k1 at s1" in out
        assert (etc / "tls.key").read_bytes() != tls_key  # a new TLS key and certificate
        history = [
            json.loads(x) for x in (etc / "enrollment-history.jsonl").read_text().splitlines()
        ]
        assert len(history) == 1
        assert history[0]["replaced"]["claim"] == ClaimKeys.from_code(first).claim_id
        assert history[0]["by"]["claim"] == ClaimKeys.from_code(second).claim_id
        claim = c.w.store.claim(ClaimKeys.from_code(second).claim_id)  # type: ignore[union-attr]
        assert claim is not None and claim.reenroll


def test_claim_create_and_broker_config_commands(tmp_path: Path) -> None:
    from edge.ledger import generate_key, save_private_key

    pki = tmp_path / "pki"
    ca.init_ca(pki)
    save_private_key(tmp_path / "cloud.key", generate_key())
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "s1.toml").write_text(SITE_TEMPLATE)
    config = tmp_path / "cloud.toml"
    config.write_text(
        '[reconciler]\nkey_file = "cloud.key"\nstore = "sqlite:///' + str(tmp_path / "c.db") + '"\n'
        '[reconciler.enroll]\nca_dir = "pki"\nsites_dir = "sites"\n'
    )
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["cloud", "claim", "create", "--config", str(config), "--site", "s1", "--expires", "30m"],
    )
    assert result.exit_code == 0, result.output
    code = result.output.split("claim code: ")[1].split()[0]
    ClaimKeys.from_code(code)
    result = runner.invoke(
        cli, ["cloud", "claim", "create", "--config", str(config), "--site", "nowhere"]
    )
    assert result.exit_code == 1 and "no site config template" in result.output
    result = runner.invoke(
        cli,
        ["cloud", "broker-config", "--dir", str(pki), "--port", "8883", "--enroll-port", "8884"],
    )
    assert result.exit_code == 0, result.output
    conf = (pki / "mosquitto.conf").read_text()
    assert "listener 8884" in conf and "per_listener_settings true" in conf
    # %c is "/" + the claim id: the topic is kiosk/v1/enroll/<claim id>/req
    assert "pattern write kiosk/v1/enroll%c/req" in (pki / "enroll.acl").read_text()


def _claim_race(stores: list, claim_id: str) -> list[bool]:  # type: ignore[type-arg]
    from concurrent.futures import ThreadPoolExecutor

    def use(i: int) -> bool:
        return bool(
            stores[i].use_claim(
                claim_id,
                device=f"k{i}",
                request=bytes([i]) * 32,
                certificate=b"cert",
                reenroll=False,
                now_ms=wall_ms(),
            )
        )

    with ThreadPoolExecutor(len(stores)) as pool:
        return list(pool.map(use, range(len(stores))))


def test_a_claim_is_used_exactly_once_by_racing_stores(tmp_path: Path) -> None:
    from cloud_sync.store import SqliteCloudStore
    from edge.ledger import generate_key

    key = generate_key()
    a = SqliteCloudStore(tmp_path / "c.db", replica="cloud", key=key)
    b = SqliteCloudStore(tmp_path / "c.db", replica="cloud", key=key)
    try:
        _code, claim = create_claim(a, site="s1", ttl=timedelta(hours=1))
        assert sorted(_claim_race([a, b], claim.claim_id)) == [False, True]
        used = b.claim(claim.claim_id)
        assert used is not None and used.used_by in ("k0", "k1")
        _code, old = create_claim(a, site="s1", ttl=timedelta(hours=1), now_ms=0)
        assert _claim_race([a], old.claim_id) == [False]  # expired: nobody
    finally:
        a.close()
        b.close()


@pytest.mark.postgres
def test_a_claim_is_used_exactly_once_on_postgres() -> None:
    import uuid

    psycopg = pytest.importorskip("psycopg")
    from cloud_sync.pgstore import PgCloudStore
    from edge.ledger import generate_key

    dsn = os.environ.get("KIOSK_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"kiosk_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {dsn}: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    key = generate_key()
    stores = []
    try:
        stores = [
            PgCloudStore(f"{dsn.rsplit('/', 1)[0]}/{name}", replica="cloud", key=key)
            for _ in range(3)
        ]
        _code, claim = create_claim(stores[0], site="s1", ttl=timedelta(hours=1))
        assert sorted(_claim_race(stores, claim.claim_id)) == [False, False, True]
        used = stores[1].claim(claim.claim_id)
        assert used is not None and used.used_ms is not None and used.certificate == b"cert"
    finally:
        for s in stores:
            s.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


async def test_a_malformed_csr_is_refused_and_the_claim_stays_usable(tmp_path: Path) -> None:
    import ssl

    from cloud_sync.enroll_wire import answer_topic, seal_request
    from edge.ledger import generate_key

    async with cloud(tmp_path) as c:
        code = c.claim()
        keys = ClaimKeys.from_code(code)
        bad = seal_request(
            keys,
            device="gate-9",
            csr_pem=b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
            ledger_key=generate_key(),
            reenroll=False,
            ts_ms=1,
        )
        tls = ssl.create_default_context(cafile=str(c.broker.pki / ca.CA_CERT))
        async with aiomqtt.Client(
            "127.0.0.1", c.broker.enroll_port or 0, identifier="/" + keys.claim_id, tls_context=tls
        ) as client:
            await client.subscribe(answer_topic(keys.claim_id), qos=1)
            await client.publish(request_topic(keys.claim_id), bad, qos=1)
            async with asyncio.timeout(10):
                async for m in client.messages:
                    assert isinstance(m.payload, bytes)
                    assert b"certificate request refused" in m.payload
                    break
        assert not c.used(code)  # not spent: a correct retry works
        svc = c.w.services[0]
        assert not any(t.done() for t in c.w.tasks.values())  # the reconciler goes on
        await c.enroll(code, tmp_path / "etc", "gate-9")
        assert c.used(code)
        assert svc.connected.is_set()
