"""A private `pcscd -f` for tests and the bench: started as our child, stopped by its PID."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from smartcard import scard

__all__ = ["VPCD_READER", "Pcscd", "wait_reader_empty", "why_pcscd_unusable"]

PCSCD = shutil.which("pcscd") or "/usr/sbin/pcscd"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_READER = "Virtual PCD 00 00"


def _other_pcscd() -> list[str]:
    out = subprocess.run(["pgrep", "-a", "pcscd"], capture_output=True, text=True, check=False)
    return [line for line in out.stdout.splitlines() if line.strip()]


def why_pcscd_unusable() -> str | None:
    """None when we can run our own pcscd with vpcd, else the reason (for pytest.skip)."""
    if not os.access(PCSCD, os.X_OK):
        return f"pcscd not installed ({PCSCD}): apt-get install pcscd"
    if not VPCD_DRIVER.exists():
        return "vpcd driver missing: apt-get install vsmartcard-vpcd"
    others = _other_pcscd()
    if others:
        # Never kill a pcscd we did not start; its readers and clients are not ours.
        return f"a pcscd is already running ({'; '.join(others)}): stop it to run the pcsc tests"
    return None


def wait_reader_empty(reader: str = VPCD_READER, timeout_ms: int = 10_000) -> None:
    """Block until pcscd reports no card in `reader` (it notices a removal on its next poll)."""
    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult:
        return
    try:
        state = scard.SCARD_STATE_UNAWARE
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            hresult, states = scard.SCardGetStatusChange(ctx, 500, [(reader, state)])
            if hresult == 0:
                state = states[0][1]
                if state & scard.SCARD_STATE_EMPTY:
                    return
        raise TimeoutError(f"{reader} still reports a card after {timeout_ms} ms")
    finally:
        scard.SCardReleaseContext(ctx)


class Pcscd:
    """Our pcscd child process; `start` waits until vpcd's reader is listed."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([PCSCD, "-f"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pcscd exited with {self.proc.returncode}; see {self.log_path}")
            if self._reader_listed():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pcscd did not list {VPCD_READER!r} in {timeout}s; see {self.log_path}")

    @staticmethod
    def _reader_listed() -> bool:
        hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult:
            return False
        try:
            hresult, readers = scard.SCardListReaders(ctx, [])
            return hresult == 0 and VPCD_READER in readers
        finally:
            scard.SCardReleaseContext(ctx)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
