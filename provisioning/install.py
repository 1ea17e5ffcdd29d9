"""Lay out a kiosk appliance on Raspberry Pi OS: system user, directories, config, device key,
udev rules, the systemd unit. Works into a scratch root (`root`, DESTDIR-style) for tests and
image builds, where nothing is started and no systemctl/udevadm runs.

`systemd/install.sh` does the part before this (Debian packages, the venv under /opt/kiosk-edge)
and then runs `kiosk provision install`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from edge.drivers.config import WedgeConfig
from edge.validation import SettingsFault, load
from provisioning.errors import ProvisionError
from provisioning.files import Owner, ensure_dir, write_atomic
from provisioning.identity import ensure_device_key, kiosk_owner
from provisioning.udev import render_rules

__all__ = ["Layout", "Report", "install", "uninstall"]

log = logging.getLogger(__name__)

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT = "kiosk-edge.service"
README = Path(__file__).resolve().parent.parent / "README.md"

Runner = Callable[[Sequence[str]], None]


def run_command(cmd: Sequence[str]) -> None:
    log.info("running %s", " ".join(cmd))
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if done.returncode:
        raise ProvisionError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where everything goes, under `root` ("/" on a real kiosk)."""

    root: Path = Path("/")

    def at(self, absolute: str | Path) -> Path:
        return self.root / PurePosixPath(absolute).relative_to("/")

    @property
    def live(self) -> bool:
        return self.root.resolve() == Path("/")

    @property
    def opt(self) -> Path:
        return self.at("/opt/kiosk-edge")

    @property
    def config_dir(self) -> Path:
        return self.at("/etc/kiosk")

    @property
    def config_file(self) -> Path:
        return self.config_dir / "kiosk.toml"

    @property
    def state_dir(self) -> Path:
        return self.at("/var/lib/kiosk")

    @property
    def unit(self) -> Path:
        return self.at(f"/etc/systemd/system/{UNIT}")

    @property
    def udev_rules(self) -> Path:
        return self.at("/etc/udev/rules.d/99-kiosk-edge.rules")

    @property
    def sysusers(self) -> Path:
        return self.at("/etc/sysusers.d/kiosk-edge.conf")

    @property
    def command_link(self) -> Path:
        return self.at("/usr/local/bin/kiosk")


@dataclass
class Report:
    """What an install or uninstall did, in the order it did it."""

    done: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        log.info("%s", text)
        self.done.append(text)


def readers_of(config: Path) -> dict[str, WedgeConfig | None]:
    """The wedge readers of a kiosk config (only these sections: the rest may not be final)."""
    try:
        data = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(f"{config}: cannot read the kiosk config: {exc}") from exc
    out: dict[str, WedgeConfig | None] = {}
    for part in ("wedge", "keypad"):
        if part in data:
            try:
                out[part] = load(WedgeConfig, data[part])
            except SettingsFault as exc:
                raise ProvisionError(f"{config}: wrong settings: {exc.under(part)}") from None
    return out


def _device_key_path(layout: Layout, config: Path) -> Path:
    data = tomllib.loads(config.read_text()) if config.exists() else {}
    key_file = str(data.get("kiosk", {}).get("key_file", "/etc/kiosk/device.key"))
    return layout.at(key_file)


def create_user(layout: Layout, run: Runner, report: Report) -> Owner | None:
    """systemd-sysusers creates user kiosk and the device groups (in the scratch root's /etc)."""
    write_atomic(layout.sysusers, (SYSTEMD_DIR / "kiosk-edge.sysusers").read_bytes(), 0o644)
    if os.geteuid() != 0:
        report.add("not root: user kiosk not created, files keep the current owner")
        return None
    if layout.live:
        run(["systemd-sysusers", str(layout.sysusers)])
        owner = kiosk_owner()
    else:
        layout.at("/etc").mkdir(parents=True, exist_ok=True)
        run(["systemd-sysusers", f"--root={layout.root}", str(layout.sysusers)])
        owner = kiosk_owner(layout.at("/etc/passwd"))
    if owner is None:
        raise ProvisionError("systemd-sysusers ran but there is no user kiosk")
    report.add(f"user kiosk: uid {owner.uid}, gid {owner.gid}")
    return owner


def install(
    layout: Layout,
    *,
    config: Path | None = None,
    run: Runner = run_command,
    enable: bool = True,
) -> Report:
    """Install (or bring up to date) everything but the venv. Idempotent: a second run with the
    same inputs leaves every file as it was; existing keys and config are never replaced
    (except the config, when `config` is given and differs)."""
    report = Report()
    owner = create_user(layout, run, report)
    root_kiosk = Owner(0, owner.gid) if owner else None
    ensure_dir(layout.opt, 0o755)
    ensure_dir(layout.config_dir, 0o750, root_kiosk)
    ensure_dir(layout.state_dir, 0o700, owner)
    if config is not None:
        if write_atomic(layout.config_file, config.read_bytes(), 0o640, root_kiosk):
            report.add(f"config: {layout.config_file} from {config}")
    elif layout.config_file.exists():
        write_atomic(layout.config_file, layout.config_file.read_bytes(), 0o640, root_kiosk)
    key = ensure_device_key(_device_key_path(layout, layout.config_file), owner)
    if key.created:
        report.add(f"device key: {key.path} (public {key.public_hex})")
    readers = readers_of(layout.config_file) if layout.config_file.exists() else {}
    if write_atomic(layout.udev_rules, render_rules(readers).encode(), 0o644):
        report.add(f"udev rules: {layout.udev_rules} ({len(readers)} reader section(s))")
    if write_atomic(layout.unit, (SYSTEMD_DIR / UNIT).read_bytes(), 0o644):
        report.add(f"unit: {layout.unit}")
    if README.exists():
        write_atomic(layout.opt / "README.md", README.read_bytes(), 0o644)
    link_target = Path("/opt/kiosk-edge/venv/bin/kiosk")
    link = layout.command_link
    if not link.is_symlink() or Path(os.readlink(link)) != link_target:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(link_target)
        report.add(f"command: {link} -> {link_target}")
    if layout.live:
        run(["udevadm", "control", "--reload"])
        run(["udevadm", "trigger", "--subsystem-match=input", "--subsystem-match=gpio"])
        run(["systemctl", "daemon-reload"])
        if enable:
            run(["systemctl", "enable", "pcscd.socket", UNIT])
            report.add(f"enabled {UNIT} (start it after enrollment: systemctl start {UNIT})")
    else:
        report.add(f"scratch root {layout.root}: no systemctl, no udevadm")
    return report


def uninstall(layout: Layout, *, purge: bool = False, run: Runner = run_command) -> Report:
    """Remove the program, unit, rules and command; keep /etc/kiosk (keys, config) and
    /var/lib/kiosk (the ledger) unless `purge`. The system user stays (Debian keeps system users
    so that no later user inherits files owned by its uid)."""
    report = Report()
    if layout.live and layout.unit.exists():
        run(["systemctl", "disable", "--now", UNIT])
    for path in (layout.unit, layout.udev_rules, layout.sysusers, layout.command_link):
        if path.is_symlink() or path.exists():
            path.unlink()
            report.add(f"removed {path}")
    if layout.opt.exists():
        shutil.rmtree(layout.opt)
        report.add(f"removed {layout.opt}")
    if layout.live:
        run(["systemctl", "daemon-reload"])
        run(["udevadm", "control", "--reload"])
    if purge:
        for path in (layout.config_dir, layout.state_dir):
            if path.exists():
                shutil.rmtree(path)
                report.add(f"purged {path}")
    else:
        report.add(f"kept {layout.config_dir} and {layout.state_dir} (use --purge to remove)")
    return report
