"""`kiosk selftest`: find each configured device, exercise it, and print a pass/fail table with
the likely fix for every failure. Exit status 0 when all pass, 1 on any failure, 2 for a bad
config file."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import shutil
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

from edge.drivers.base import Check
from edge.drivers.config import DriversConfig, NfcConfig

__all__ = ["format_table", "nfc_checks", "run_selftest"]

log = logging.getLogger(__name__)

PART_TIMEOUT_S = 15.0

NFC_MISSING = Check(
    "nfc reader",
    False,
    "NFC driver not available",
    "this firmware build has no edge.drivers.nfc: install a build with it, or remove [nfc] "
    "from the config if the kiosk has no NFC reader",
)


async def nfc_checks(cfg: NfcConfig) -> list[Check]:
    """The NFC driver's own self-test, imported lazily from `edge.drivers.nfc`: a module-level
    `self_test([cfg])`, or else the reader's `self_test()` method of
    `create_nfc_reader(backend, verifier, reader_name=...)`. Sync or async both work."""
    try:
        module = importlib.import_module("edge.drivers.nfc")
    except ModuleNotFoundError as exc:
        if exc.name not in ("edge.drivers.nfc", "edge.drivers"):
            raise  # the driver is there but a library it needs is not: show that
        return [NFC_MISSING]
    test: Callable[..., object] | None = getattr(module, "self_test", None)
    create: Callable[..., Any] | None = getattr(module, "create_nfc_reader", None)
    if test is not None:
        result = test(cfg) if inspect.signature(test).parameters else test()
    elif create is not None:
        # A hardware check reads no SUN message, so throwaway in-memory keys do: the site's
        # real keys stay where they are.
        verifier = module.SunVerifier(
            module.SiteKeys(os.urandom(16)), module.MemoryCounterStore(os.urandom(32))
        )
        reader = create(cfg.backend, verifier, reader_name=cfg.reader or None)
        result = reader.self_test()
    else:
        return [NFC_MISSING]
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, list) or not all(isinstance(c, Check) for c in result):
        return [Check("nfc reader", False, "NFC self-test returned no checks", "")]
    return result


async def _guarded(name: str, test: Awaitable[list[Check]], timeout_s: float) -> list[Check]:
    try:
        async with asyncio.timeout(timeout_s):
            return await test
    except TimeoutError:
        return [Check(name, False, f"no answer in {timeout_s:g} s", "check the part's cable/power")]
    except Exception as exc:  # a crash in one part's test must not hide the other parts
        log.debug("self-test of %s crashed", name, exc_info=True)
        return [Check(name, False, f"self-test failed: {type(exc).__name__}: {exc}", "")]


async def run_selftest(cfg: DriversConfig, *, wait_card_s: float = 0.0) -> list[Check]:
    """Every configured part's checks, in a fixed order (display first: it shows the pattern
    while the others run)."""
    # Imported here: `kiosk --help` and other commands need none of evdev, gpiozero, luma.
    from edge.drivers import display as display_driver
    from edge.drivers import gpio as gpio_driver
    from edge.drivers import wedge as wedge_driver

    checks: list[Check] = []
    timeout = PART_TIMEOUT_S + wait_card_s
    if cfg.display is not None:
        checks += await _guarded("display", display_driver.self_test(cfg.display), timeout)
    if cfg.gpio is not None:
        checks += await _guarded("gpio", gpio_driver.self_test(cfg.gpio), timeout)
    if cfg.wedge is not None:
        test = wedge_driver.self_test(cfg.wedge, wait_card_s=wait_card_s)
        checks += await _guarded("wedge reader", test, timeout)
    if cfg.nfc is not None:
        checks += await _guarded("nfc reader", nfc_checks(cfg.nfc), timeout)
    if not checks:
        checks.append(
            Check("config", False, "no parts configured", "add [nfc], [wedge], [gpio], [display]")
        )
    return checks


def format_table(checks: list[Check], width: int | None = None) -> str:
    """A plain-text table: result, check, detail; each failure followed by its fix."""
    width = width or max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    name_w = max(len("CHECK"), *(len(c.name) for c in checks))
    detail_w = max(20, width - name_w - 9)
    lines = [f"{'RESULT':6}  {'CHECK':{name_w}}  DETAIL", "-" * min(width, 6 + name_w + 4 + 40)]
    for c in checks:
        detail = textwrap.wrap(c.detail, detail_w) or [""]
        lines.append(f"{'PASS' if c.ok else 'FAIL':6}  {c.name:{name_w}}  {detail[0]}")
        lines += [f"{'':6}  {'':{name_w}}  {more}" for more in detail[1:]]
        if not c.ok and c.fix:
            fix = textwrap.wrap("fix: " + c.fix, detail_w)
            lines += [f"{'':6}  {'':{name_w}}  {line}" for line in fix]
    failed = sum(not c.ok for c in checks)
    lines.append("")
    lines.append(
        f"{len(checks)} checks, {failed} failed"
        + (": fix the FAIL rows above and run again" if failed else ": all passed")
    )
    return "\n".join(lines)
