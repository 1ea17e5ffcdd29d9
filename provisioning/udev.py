"""udev rules for the kiosk: the shipped GPIO/I2C/SPI rules plus one line per configured card
reader (keyboard wedge), so that only group kiosk can read what a reader types."""

from __future__ import annotations

import re
from pathlib import Path

from edge.drivers.config import WedgeConfig
from provisioning.errors import ProvisionError

__all__ = ["SHIPPED_RULES", "reader_rule", "render_rules"]

SHIPPED_RULES = Path(__file__).resolve().parent.parent / "systemd" / "99-kiosk-edge.rules"
# Characters udev would read as glob or quoting in a match value.
_UNSAFE = re.compile(r'["*?\[\]\\\n]')


def _safe(value: str, what: str) -> str:
    if not value or _UNSAFE.search(value):
        raise ProvisionError(f"{what} {value!r} cannot go into a udev rule (quotes or wildcards)")
    return value


def reader_rule(part: str, wedge: WedgeConfig) -> str | None:
    """The udev line for one real wedge reader, or None for a simulated one."""
    if wedge.backend != "real":
        return None
    common = 'SUBSYSTEM=="input", KERNEL=="event*"'
    tail = 'GROUP="kiosk", MODE="0660"'
    if wedge.path:
        if not wedge.path.startswith("/dev/"):
            raise ProvisionError(f"[{part}] path {wedge.path!r} is not under /dev/")
        rel = _safe(wedge.path.removeprefix("/dev/"), f"[{part}] path")
        if rel.startswith("input/event"):
            match = f'KERNEL=="{rel.removeprefix("input/")}"'
        else:
            match = f'SYMLINK=="{rel}"'  # by-id/by-path links exist when 99-* rules run
        return f"# [{part}] {wedge.path}\n{common}, {match}, {tail}"
    name = _safe(wedge.name or "", f"[{part}] name")
    return f'# [{part}] name contains {name!r}\n{common}, ATTRS{{name}}=="*{name}*", {tail}'


def render_rules(readers: dict[str, WedgeConfig | None]) -> str:
    """The whole rules file: shipped rules, then a line per configured real reader."""
    lines = [SHIPPED_RULES.read_text().rstrip("\n")]
    for part, wedge in readers.items():
        rule = None if wedge is None else reader_rule(part, wedge)
        if rule:
            lines.append(rule)
    return "\n".join(lines) + "\n"
