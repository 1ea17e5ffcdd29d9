"""The restore drill on a real mosquitto: back the cloud store up while kiosks tap and the
counter tops up, lose the cloud, restore the copy. The restored cloud writes nothing new until
the kiosks have handed back what the copy lacks (their own ops, and their streams: the copies of
the cloud's ops they hold): nothing any kiosk had seen is lost, nothing is refused afterwards,
no kiosk's lag sticks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloud_sync import backup
from cloud_sync.fleet import CloudRestoring, FleetRecords
from cloud_sync.reconciler import Reconciler
from cloud_sync.settings import EscrowPolicy
from cloud_sync.store import SqliteCloudStore
from cloud_sync.streams import StreamBook
from edge.ledger import Intent, Kind, generate_key, save_private_key
from kiosk.cli import cli
from tests.mqtt_broker import eventually, world
from tests.test_sync_mqtt import assert_converged, seed, spend

KIOSKS = ["k1", "k2", "k3"]


def values(store) -> dict[tuple[str, str], int]:  # type: ignore[no-untyped-def]
    return {(s.account, s.purse): s.value for s in store.purses()}


@pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="no mosquitto",
)
async def test_restore_drill_loses_nothing_a_kiosk_saw_and_forks_nothing(tmp_path):
    db = tmp_path / "cloud.db"
    streams = tmp_path / "streams.db"
    async with world(tmp_path, KIOSKS) as w:
        rec = w.cloud(escrow=EscrowPolicy(float_fraction=0.1))
        rec.fleet = FleetRecords(str(db))
        rec.streams = StreamBook(streams, "cloud", w.keys["cloud"])  # type: ignore[arg-type]
        for d in KIOSKS:
            w.kiosk(d)
        seed(w, floats=tuple(KIOSKS), each=2_000)
        w.start_reconciler()
        for d in KIOSKS:
            w.start_agent(d)
        await w.online(*KIOSKS)
        store = w.store
        assert store is not None
        for i, d in enumerate(KIOSKS):
            await eventually(
                lambda d=d: w.ledgers[d].purse("m1", "cash").rights(d) >= 2_000, what="seed"
            )
            assert spend(w.ledgers[d], "m1", 100 + i, f"before-{d}")
            w.agents[d].notify()
        store.append([Intent(Kind.INC, "m1", "cash", 8_611)], ref="receipt-1")
        await w.settled()

        copy = tmp_path / "backup.db"
        pages = backup.backup(f"sqlite:///{db}", copy, streams)  # online: the reconciler runs on
        assert pages > 0

        # After the copy: taps, counter top-ups, online grants (cloud ops the copy lacks).
        for n in range(3):
            store.append([Intent(Kind.INC, "m2", "cash", 1_000 + n)], ref=f"receipt-after-{n}")
            for d in KIOSKS:
                assert spend(w.ledgers[d], "m2", 10 + n, f"after-{d}-{n}")
                w.agents[d].notify()
        assert await w.agents["k1"].request_rights("m1", "cash", 3_000)
        assert spend(w.ledgers["k1"], "m1", 4_000, "after-k1-big")
        w.agents["k1"].notify()
        await w.settled()
        cloud_head = store.head("cloud")[0]
        await eventually(
            lambda: all(w.ledgers[d].head("cloud")[0] == rec.streams.head(d)[0] for d in KIOSKS),
            15,
            "every kiosk holds its stream",
        )
        seen = values(store)
        heads = {d: w.ledgers[d].head()[0] for d in KIOSKS}

        # The cloud is lost; its copy is restored.
        await w.stop_task("reconciler1")
        rec.fleet.close()
        rec.streams.close()
        store.close()
        state = backup.restore(f"sqlite:///{db}", copy, streams)
        assert state.waiting == KIOSKS
        store2 = SqliteCloudStore(db, replica="cloud", key=w.keys["cloud"])  # type: ignore[arg-type]
        assert store2.head("cloud")[0] < cloud_head  # the copy lacks the later cloud ops
        rec2 = Reconciler(
            store2,
            w.keys["cloud"],  # type: ignore[arg-type]
            escrow=EscrowPolicy(float_fraction=0.1),
            chain_chunk=50,
            fleet=FleetRecords(str(db)),
            streams=StreamBook(streams, "cloud", w.keys["cloud"]),  # type: ignore[arg-type]
        )
        assert rec2.restoring
        with pytest.raises(CloudRestoring):  # no new cloud op until recovered
            store2.append([Intent(Kind.INC, "m1", "cash", 1)], ref="too-early")
        w.store, w.reconciler = store2, rec2
        w.start_reconciler(rec2)
        await eventually(lambda: not rec2.restoring, 30, "restore complete")
        await w.settled(30)

        # Nothing any kiosk had seen is lost: the top-ups and grants after the copy are back
        # (re-appended from the kiosks' stream copies, none twice).
        assert store2.head("cloud")[0] == cloud_head
        assert values(store2) == seen
        assert {d: store2.head(d)[0] for d in KIOSKS} == heads

        # Afterwards nothing is refused: new cloud ops link, taps and grants go on.
        store2.append([Intent(Kind.INC, "m1", "cash", 500)], ref="receipt-after-restore")
        assert await w.agents["k2"].request_rights("m1", "cash", 2_500)
        assert spend(w.ledgers["k2"], "m1", 2_500, "restored-k2")
        for d in KIOSKS:
            assert spend(w.ledgers[d], "m2", 5, f"restored-{d}")
            w.agents[d].notify()
        await w.settled(30)
        await eventually(
            lambda: all(w.ledgers[d].head("cloud")[0] == rec2.streams.head(d)[0] for d in KIOSKS),
            15,
            "every kiosk takes the restored cloud's new ops",
        )
        assert rec2.refused == 0
        assert all(w.agents[d].refused == 0 for d in KIOSKS)
        await eventually(lambda: all(d.lag == 0 for d in store2.devices()), 10, "no lag")
        assert store2.purse("m1", "cash").value == seen[("m1", "cash")] + 500 - 2_500
        assert_converged(w)
        rec2.fleet.close()  # type: ignore[union-attr]


def test_backup_and_restore_commands_and_release_of_a_lost_kiosk(tmp_path):
    key = generate_key()
    save_private_key(tmp_path / "cloud.key", key)
    db = tmp_path / "cloud.db"
    config = tmp_path / "cloud.toml"
    config.write_text(f'[reconciler]\nkey_file = "{tmp_path / "cloud.key"}"\nstore = "{db}"\n')
    store = SqliteCloudStore(db, replica="cloud", key=key)
    store.enroll("k1", "s1")
    store.enroll("k2", "s1")
    store.append([Intent(Kind.INC, "m1", "cash", 700)], ref="r1")
    store.close()
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "cloud",
            "member",
            "register",
            "--config",
            str(config),
            "--account",
            "m1",
            "--name",
            "Ann",
        ],
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(
        cli, ["cloud", "backup", "--config", str(config), "--out", str(tmp_path / "b.db")]
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(
        cli, ["cloud", "restore", "--config", str(config), "--from", str(tmp_path / "b.db")]
    )
    assert out.exit_code == 0, out.output
    assert "2 kiosk(s) (k1, k2)" in out.output
    out = runner.invoke(
        cli,
        [
            "cloud",
            "topup",
            "--config",
            str(config),
            "--account",
            "m1",
            "--amount",
            "5",
            "--ref",
            "r2",
        ],
    )
    assert out.exit_code == 1
    assert "restored from a backup" in out.output and "Traceback" not in out.output
    out = runner.invoke(cli, ["cloud", "kiosks", "--config", str(config)])
    assert "waiting for k1, k2" in out.output
    out = runner.invoke(cli, ["cloud", "restore", "--config", str(config), "--release", "k1"])
    assert out.exit_code == 0 and "still waiting for k2" in out.output
    out = runner.invoke(cli, ["cloud", "restore", "--config", str(config), "--release", "k2"])
    assert out.exit_code == 0 and "restore complete" in out.output, out.output
    out = runner.invoke(cli, ["cloud", "restore", "--config", str(config)])
    assert out.exit_code == 2
    bad = tmp_path / "not-a-backup.db"
    bad.write_text("hello")
    out = runner.invoke(cli, ["cloud", "restore", "--config", str(config), "--from", str(bad)])
    assert out.exit_code == 1 and "not a cloud store backup" in out.output
