"""The sync demo: a broker (mosquitto with mutual TLS when installed, else amqtt in-process), the
SQLite cloud store and reconciler, two kiosks with agents; online grants, an outage in which
strict mode refuses overspend, then reconciliation. Returns printable lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from cloud_sync import ca
from cloud_sync.agent import SyncAgent
from cloud_sync.reconciler import Reconciler, ReconcilerService
from cloud_sync.settings import AgentSettings, BrokerSettings, ReconcilerSettings, TlsSettings
from cloud_sync.store import SqliteCloudStore
from edge.aio import cancel_and_wait
from edge.ledger import Intent, Kind, Ledger, SpendRefused, generate_key, public_bytes, verify


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int) -> None:
    for _ in range(500):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"broker did not open port {port}")


class _Broker:
    """mosquitto (mTLS + ACL) when installed, else amqtt in this process (plain TCP)."""

    def __init__(self, root: Path, kind: str = "auto") -> None:
        self.root = root
        self.port = _free_port()
        self.cloud_port = _free_port()
        self.mosquitto = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
        )
        if kind == "amqtt":
            self.mosquitto = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.amqtt: Any = None
        self.pki = root / "pki"
        if self.mosquitto:
            ca.init_ca(self.pki)
            ca.issue(self.pki, ca.RECONCILER)
            user = "root" if os.geteuid() == 0 else None
            self.conf = ca.write_broker_config(
                self.pki, port=self.port, cloud_port=self.cloud_port, user=user
            )

    @property
    def kind(self) -> str:
        return "mosquitto (mutual TLS, ACL)" if self.mosquitto else "amqtt (in-process)"

    def settings(self, cn: str) -> BrokerSettings:
        if not self.mosquitto:
            return BrokerSettings(
                port=self.port, keepalive_s=5, connect_timeout_s=2, mqtt_version=4
            )
        if not (self.pki / f"{cn}.crt").exists():
            ca.issue(self.pki, cn, site="demo")
        tls = TlsSettings(
            ca=self.pki / ca.CA_CERT, cert=self.pki / f"{cn}.crt", key=self.pki / f"{cn}.key"
        )
        # The reconciler certificate has its rights on the cloud listener only.
        port = self.cloud_port if cn == ca.RECONCILER else self.port
        return BrokerSettings(port=port, keepalive_s=5, connect_timeout_s=2, tls=tls)

    async def start(self) -> None:
        if self.mosquitto:
            with (self.root / "mosquitto.log").open("ab") as log:
                self.proc = subprocess.Popen(
                    [self.mosquitto, "-c", str(self.conf)], stdout=log, stderr=log
                )
        else:
            from amqtt.broker import Broker

            self.amqtt = Broker(
                {
                    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                    "plugins": {
                        "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                            "allow_anonymous": True
                        }
                    },
                }
            )
            await self.amqtt.start()
        await _wait_port(self.port)

    async def stop(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
            self.proc = None
        if self.amqtt is not None:
            await self.amqtt.shutdown()
            self.amqtt = None


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


@contextlib.asynccontextmanager
async def _running(coro_fns: list[Callable[[], Any]]) -> AsyncIterator[list[asyncio.Task[Any]]]:
    tasks = [asyncio.create_task(fn()) for fn in coro_fns]
    try:
        yield tasks
    finally:
        async with asyncio.timeout(10):
            await cancel_and_wait(tasks)


async def run_sync_demo(out_dir: Path, broker_kind: str = "auto") -> list[str]:
    """Run the scenario under `out_dir` (created; replaced if present) and return its report.
    `broker_kind`: "auto" (mosquitto when installed, else amqtt) or "amqtt"."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    lines: list[str] = []
    say = lines.append
    broker = _Broker(out_dir, broker_kind)
    await broker.start()
    cloud_key = generate_key()
    store = SqliteCloudStore(out_dir / "cloud.db", replica="cloud", key=cloud_key)
    rec = Reconciler(store, cloud_key)
    svc = ReconcilerService(
        rec,
        ReconcilerSettings(key_file=out_dir / "unused", broker=broker.settings(ca.RECONCILER)),
    )
    ledgers: dict[str, Ledger] = {}
    agents: dict[str, SyncAgent] = {}
    for name in ("kiosk-a", "kiosk-b"):
        key = generate_key()
        led = Ledger(out_dir / f"{name}.db", replica=name, key=key)
        led.trust("cloud", public_bytes(cloud_key), "cloud")
        store.trust(name, public_bytes(key), "kiosk")
        store.enroll(name, "demo")
        ledgers[name] = led
        agents[name] = SyncAgent(
            led,
            AgentSettings(
                site="demo",
                device=name,
                broker=broker.settings(name),
                state_file=out_dir / f"{name}-sync.db",
                ack_timeout_s=1.0,
                poll_interval_s=0.02,
                sync_interval_s=2.0,
                backoff_min_s=0.05,
                backoff_max_s=0.5,
            ),
            key=key,
        )
    store.append([Intent(Kind.INC, "alice", "cash", 5000)], ref="counter-1")
    say(f"broker: {broker.kind} on 127.0.0.1:{broker.port}")
    say("cloud: alice topped up 50.00 at the counter")
    a, b = ledgers["kiosk-a"], ledgers["kiosk-b"]

    def spend(led: Ledger, amount: int, ref: str) -> str:
        try:
            led.append([Intent(Kind.DEC, "alice", "cash", amount)], ref=ref)
            return "approved"
        except SpendRefused as exc:
            return f"refused ({exc.reason.value})"

    try:
        async with _running([svc.run, *(ag.run for ag in agents.values())]):
            await _until(lambda: all(ag.synced for ag in agents.values()))
            for name, led in ledgers.items():
                ok = await agents[name].request_rights("alice", "cash", 1000)
                say(
                    f"{name}: online rights request for 10.00 -> {'granted' if ok else 'no'};"
                    f" holds {led.purse('alice', 'cash').rights(name) / 100:.2f}"
                )
            say(f"kiosk-a: spend 8.00 online: {spend(a, 800, 'a1')}")
            await _until(lambda: store.head("kiosk-a")[0] == a.head()[0])
            await broker.stop()
            say("-- network outage: the broker is down --")
            await _until(lambda: not any(ag.online for ag in agents.values()))
            for led, amount, ref in ((a, 1000, "a2"), (b, 1200, "b1"), (a, 3000, "a3")):
                name = led.replica
                say(f"{name}: spend {amount / 100:.2f} offline: {spend(led, amount, ref)}")
            say(
                f"queued for upload: kiosk-a {agents['kiosk-a'].queue_depth},"
                f" kiosk-b {agents['kiosk-b'].queue_depth}"
            )
            await broker.start()
            say("-- broker back --")
            settled = await _until(
                lambda: all(
                    store.head(n)[0] == led.head()[0] and agents[n].acked == led.head()[0]
                    for n, led in ledgers.items()
                )
            )
            state = store.purse("alice", "cash")
            say(f"reconciled: {'all ops stored and acked' if settled else 'NOT settled'}")
            say(
                f"cloud: alice has {state.value / 100:.2f} (bound {state.lower_bound / 100:.2f}),"
                f" debt {state.debt}; every chain verified:"
                f" {all(verify(x).ok for x in ledgers.values()) and verify(store.ledger).ok}"
            )
    finally:
        for ag in agents.values():
            await ag.__aexit__(None, None, None)
        for led in ledgers.values():
            led.close()
        store.close()
        await broker.stop()
    return lines


def main(out_dir: Path) -> None:  # pragma: no cover - manual entry point
    for line in asyncio.run(run_sync_demo(out_dir)):
        print(line)
