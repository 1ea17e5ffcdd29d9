"""Tap benchmarks: tap -> durable op -> gate signal through the real pipeline (ledger, rules,
GPIO on gpiozero's mock pins, display on luma's dummy panel) beside the floor measured in the
same run; and the daemon as a process: start to READY, resident memory after 10,000 taps."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.ledger_bench import SCRATCH, Floor
from bench.report import Row, percentile, row
from edge.config import KioskConfig
from edge.drivers.base import Token, TokenKind
from edge.drivers.display import open_display
from edge.drivers.gpio import open_gpio
from edge.feedback.outputs import GateAndScreen
from edge.ledger import Intent, Kind, Ledger, generate_key, public_bytes, save_private_key
from edge.ledger import records as rec
from edge.ledger.sitekey import create_site_key, load_site_secrets
from edge.taps.pipeline import TapPipeline
from edge.taps.tokens import card_ref
from edge.validation import load

MEMBERS = 500
TAPS = 10_000


def bench_config(root: Path) -> KioskConfig:
    return load(
        KioskConfig,
        {
            "kiosk": {
                "id": "gate-1",
                "site": "pool",
                "role": "gate",
                "product": "swim",
                "state_dir": str(root / "state"),
                "key_file": str(root / "device.key"),
                "site_key_file": str(root / "site.key"),
            },
            # The simulated taps are plain UID tags: the bench site opts in to UID-only cards
            # (a SUN card's check runs in the reader driver, before the timed tap path).
            "rules": {
                "products": {"swim": {"name": "Swim", "price": 100}},
                "accept_uid_cards": True,
                "debounce_seconds": 0,
                "tiers": [
                    {"name": "silver", "min_points": 0},
                    {"name": "gold", "min_points": 10**9},
                ],
            },
            "nfc": {"backend": "sim"},
            "gpio": {"backend": "sim", "relay_pulse_s": 0.001},
            "display": {"backend": "sim"},
        },
    )


def prepare_site(root: Path, members: int = MEMBERS) -> tuple[KioskConfig, list[str]]:
    """A kiosk state folder whose ledger already holds members, cards and rights."""
    cfg = bench_config(root)
    create_site_key(cfg.kiosk.site_key_file)
    secrets = load_site_secrets(cfg.kiosk.site_key_file)
    kiosk_key, cloud_key = generate_key(), generate_key()
    save_private_key(cfg.kiosk.key_file, kiosk_key)
    cfg.kiosk.state_dir.mkdir(parents=True)
    cloud = Ledger(root / "cloud.db", replica="cloud", key=cloud_key, role="cloud", durable=False)
    cloud.trust("gate-1", public_bytes(kiosk_key), "kiosk")
    uids = []
    for i in range(members):
        uid = f"04{i:012X}"
        ref = card_ref(secrets.card_ref_key, Token(TokenKind.NFC_UID, uid, False))
        cloud.append(
            [
                *rec.member_intents(f"m{i}", f"Member {i}", 1, tier="silver"),
                *rec.card_intents(ref, f"m{i}", 1),
                Intent(Kind.INC, f"m{i}", "cash", 10**9),
                Intent(Kind.XFER, f"m{i}", "cash", 10**9, counterpart="gate-1"),
            ]
        )
        uids.append(uid)
    led = Ledger(cfg.kiosk.state_dir / "ledger.db", replica="gate-1", key=kiosk_key, durable=False)
    led.trust("cloud", public_bytes(cloud_key), "cloud")
    led.apply_many(list(cloud.ops("cloud")))
    led.close()
    cloud.close()
    return cfg, uids


async def _tap_latencies(
    cfg: KioskConfig, uids: list[str], floor: Floor
) -> tuple[list[float], list[float]]:
    secrets = load_site_secrets(cfg.kiosk.site_key_file)
    from edge.daemon.daemon import KioskDaemon

    led = KioskDaemon(cfg).open_ledger()
    ours: list[float] = []
    base: list[float] = []
    assert cfg.gpio is not None
    assert cfg.display is not None
    async with open_gpio(cfg.gpio) as gpio, open_display(cfg.display) as display:
        feedback = GateAndScreen(cfg, gpio, display)
        kiosk = TapPipeline(cfg, led, secrets.card_ref_key, feedback)
        for i in range(TAPS):
            if i % 10 == 0:
                base.append(floor.once_us())
            token = Token(TokenKind.NFC_UID, uids[i % len(uids)], False)
            out = await kiosk.card(token)
            assert out.gate_ns, out.decision
            ours.append((out.gate_ns - out.started_ns) / 1000)
        await feedback.settle()
    led.close()
    return ours, base


def tap_latency() -> list[Row]:
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        cfg, uids = prepare_site(Path(tmp))
        floor = Floor(Path(tmp))
        ours, base = asyncio.run(_tap_latencies(cfg, uids, floor))
        floor.close()
    p99 = percentile(ours, 99)
    return [
        row(
            "tap_to_gate_p50",
            "us",
            percentile(ours, 50),
            "floor_insert_sign_p50",
            percentile(base, 50),
            "<= 2.0",
        ),
        row(
            "tap_to_gate_p99",
            "us",
            p99,
            "floor_insert_sign_p99",
            percentile(base, 99),
            "<= 2.0 and p99 <= 5000 us",
        ),
    ]


def daemon_process() -> list[Row]:
    """Spawn `python -m bench.daemon_probe`: time to READY on a notify socket we bind, then the
    probe taps 10,000 times and reports its resident memory."""
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = Path(tmp)
        prepare_site(root)
        sock_path = str(root / "notify.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server.bind(sock_path)
        server.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": sock_path}
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.daemon_probe", str(root)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        while not server.recv(512).startswith(b"READY=1"):
            pass
        ready_s = time.perf_counter() - t0
        out, _ = proc.communicate(timeout=600)
        server.close()
        probe = json.loads(out.strip().splitlines()[-1])
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare_start = time.perf_counter() - t0
    return [
        row(
            "daemon_start_to_ready",
            "ms",
            ready_s * 1000,
            "python_bare_start",
            bare_start * 1000,
            "value <= 1000 ms",
        ),
        row(
            "daemon_rss_after_10k_taps",
            "MB",
            probe["rss_mb"],
            "python_bare_rss",
            probe["bare_rss_mb"],
            "value <= 60 MB",
        ),
    ]


def run() -> list[Row]:
    return [*tap_latency(), *daemon_process()]
