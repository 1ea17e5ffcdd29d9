"""Run by bench.tap_bench in its own process: the kiosk daemon on simulated drivers, 10,000 taps
through the simulated NFC reader, then its resident memory as JSON on stdout."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import kiosk.cli  # noqa: F401 - `kiosk run` carries the CLI's imports: count them too
from edge.daemon.daemon import KioskDaemon
from edge.daemon.sdnotify import Notifier


def rss_mb(pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def main(root: Path) -> dict[str, float]:
    from bench.tap_bench import MEMBERS, TAPS, bench_config

    cfg = bench_config(root)
    daemon = KioskDaemon(cfg, notifier=Notifier())
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await daemon.ready.wait()
    assert daemon.feedback is not None
    assert daemon.nfc is not None
    ready_rss = rss_mb()
    done: asyncio.Queue[object] = asyncio.Queue()
    daemon.feedback.observers.append(done.put_nowait)
    for i in range(TAPS):
        daemon.nfc.present_uid(f"04{i % MEMBERS:012X}")  # type: ignore[attr-defined]
        await done.get()
    stop.set()
    await task
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pathlib;print(pathlib.Path('/proc/self/status').read_text())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    bare_kb = next(int(ln.split()[1]) for ln in bare.splitlines() if ln.startswith("VmRSS:"))
    return {
        "rss_mb": rss_mb(),
        "ready_rss_mb": ready_rss,
        "bare_rss_mb": bare_kb / 1024,
        "taps": TAPS,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
