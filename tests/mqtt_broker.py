"""Test helpers for sync: a real mosquitto with mutual TLS and the generated ACL on a free
loopback port (killed by PID), a deployment CA, and a small world of cloud + kiosks + agents."""

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
from dataclasses import dataclass, field
from pathlib import Path

from cloud_sync import ca
from cloud_sync.agent import SyncAgent
from cloud_sync.enroll import Enroller
from cloud_sync.reconciler import Reconciler, ReconcilerService
from cloud_sync.settings import (
    AgentSettings,
    BrokerSettings,
    EscrowPolicy,
    ReconcilerSettings,
    TlsSettings,
)
from cloud_sync.store import CloudStore, SqliteCloudStore
from edge.aio import cancel_and_wait
from edge.ledger import Ledger, generate_key, public_bytes
from edge.ledger.purse import STRICT, RiskPolicy

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """mosquitto on a free loopback port with the product's TLS and ACL config (and, with
    `enroll`, the enrollment-only listener on `enroll_port`)."""

    def __init__(self, pki: Path, *, enroll: bool = False) -> None:
        self.pki = pki
        self.port = free_port()
        self.enroll_port = free_port() if enroll else None
        self.proc: subprocess.Popen[bytes] | None = None
        user = "root" if os.geteuid() == 0 else None
        self.conf = ca.write_broker_config(
            pki, port=self.port, user=user, enroll_port=self.enroll_port
        )
        self.log = pki / "mosquitto.log"

    def start(self) -> None:
        assert self.proc is None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for port in (self.port, self.enroll_port or self.port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not open its port")

    def stop(self) -> None:
        if self.proc is None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)  # a crash, not a clean shutdown
        self.proc.wait(timeout=5)
        self.proc = None

    def settings(self, cn: str) -> BrokerSettings:
        return BrokerSettings(
            host="127.0.0.1",
            port=self.port,
            keepalive_s=5,
            connect_timeout_s=2.0,
            tls=TlsSettings(
                ca=self.pki / ca.CA_CERT, cert=self.pki / f"{cn}.crt", key=self.pki / f"{cn}.key"
            ),
        )


def make_pki(root: Path, devices: list[str], site: str) -> Path:
    pki = root / "pki"
    ca.init_ca(pki)
    ca.issue(pki, ca.RECONCILER)
    for d in devices:
        ca.issue(pki, d, site=site)
    return pki


_TASKS: list[asyncio.Task[None]] = []


def _crashed() -> None:
    for t in _TASKS:
        if t.done() and not t.cancelled() and t.exception() is not None:
            raise AssertionError(f"task {t.get_name()} crashed") from t.exception()


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait until `check()` holds (bounded loop, short sleeps); fail at once if a background
    task of the world crashed."""
    deadline = time.monotonic() + timeout
    while not check():
        _crashed()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.01)


@dataclass
class World:
    """A cloud (store + reconciler service) and kiosks (ledger + agent) over one broker."""

    root: Path
    broker: Broker
    site: str = "s1"
    store: CloudStore | None = None
    reconciler: Reconciler | None = None
    keys: dict[str, object] = field(default_factory=dict)
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    agents: dict[str, SyncAgent] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    services: list[ReconcilerService] = field(default_factory=list)

    def cloud(
        self, store: CloudStore | None = None, escrow: EscrowPolicy | None = None
    ) -> Reconciler:
        key = generate_key()
        self.keys["cloud"] = key
        self.store = store or SqliteCloudStore(self.root / "cloud.db", replica="cloud", key=key)
        self.reconciler = Reconciler(self.store, key, escrow=escrow, chain_chunk=50)
        return self.reconciler

    def start_reconciler(
        self,
        reconciler: Reconciler | None = None,
        shared: bool = False,
        enroller: Enroller | None = None,
    ) -> None:
        rec = reconciler or self.reconciler
        assert rec is not None
        settings = ReconcilerSettings(
            key_file=self.root / "unused.key",
            broker=self.broker.settings(ca.RECONCILER),
            shared=shared,
            sweep_interval_s=3600,
            client_id=f"reconciler-{len(self.services) + 1}",
        )
        svc = ReconcilerService(rec, settings, enroller)
        self.services.append(svc)
        task = asyncio.create_task(svc.run(), name=f"reconciler{len(self.services)}")
        _TASKS.append(task)
        self.tasks[task.get_name()] = task

    def kiosk(
        self, device: str, risk: RiskPolicy = STRICT, role: str = "topup", **agent: object
    ) -> SyncAgent:
        assert self.store is not None
        key = generate_key()
        self.keys[device] = key
        led = Ledger(self.root / f"{device}.db", replica=device, key=key, risk=risk)
        led.trust("cloud", public_bytes(self.keys["cloud"]), "cloud")  # type: ignore[arg-type]
        self.store.trust(device, public_bytes(key), "kiosk")
        self.store.enroll(device, self.site, role)
        self.ledgers[device] = led
        settings = AgentSettings(
            site=self.site,
            device=device,
            broker=self.broker.settings(device),
            state_file=self.root / f"{device}-state.db",
            ack_timeout_s=1.0,
            poll_interval_s=0.02,
            sync_interval_s=2.0,
            backoff_min_s=0.05,
            backoff_max_s=0.5,
            **agent,  # type: ignore[arg-type]
        )
        ag = SyncAgent(led, settings, key=key)
        self.agents[device] = ag
        return ag

    def start_agent(self, device: str) -> None:
        task = asyncio.create_task(self.agents[device].run(), name=device)
        _TASKS.append(task)
        self.tasks[device] = task

    async def stop_task(self, name: str) -> None:
        task = self.tasks.pop(name)
        async with asyncio.timeout(10):
            await cancel_and_wait([task])
        _TASKS.remove(task)

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        async with asyncio.timeout(10):  # a task that stops on no request at all fails here
            await cancel_and_wait(tasks)
        for t in tasks:
            _TASKS.remove(t)
        for ag in self.agents.values():
            await ag.__aexit__(None, None, None)
        for led in self.ledgers.values():
            led.close()
        if self.store is not None:
            self.store.close()

    async def online(self, *devices: str) -> None:
        for d in devices:
            ag = self.agents[d]
            await eventually(lambda ag=ag: ag.online and ag._synced.is_set(), what=f"{d} online")

    async def settled(self, timeout: float = 15.0) -> None:
        """Every kiosk's chain is stored by the cloud and acked back."""
        assert self.store is not None
        store = self.store

        def done() -> bool:
            return all(
                store.head(d)[0] == led.head()[0] and self.agents[d].acked == led.head()[0]
                for d, led in self.ledgers.items()
            )

        await eventually(done, timeout, "all chains stored and acked")


@contextlib.asynccontextmanager
async def world(root: Path, devices: list[str]) -> AsyncIterator[World]:
    pki = make_pki(root, devices, "s1")
    broker = Broker(pki)
    broker.start()
    w = World(root, broker)
    try:
        async with asyncio.timeout(90):  # a hang fails with the traceback of where it waits
            yield w
    finally:
        try:
            async with asyncio.timeout(20):
                await w.close()
        finally:
            broker.stop()
