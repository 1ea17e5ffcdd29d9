"""The systemd unit and udev rules: systemd's own checker, its security rating, and the access
the daemon needs (readers, GPIO, I2C, pcscd, state dir) still granted."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNITS = sorted(p for p in SYSTEMD.iterdir() if p.suffix in (".service", ".socket", ".timer"))
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package systemd)"
)
MAX_EXPOSURE = 3.9


def directives(unit: Path) -> dict[str, list[str]]:
    """Every `Key=value` of a unit, keys repeated as systemd allows (section-qualified)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def test_there_is_a_unit_to_check() -> None:
    assert SYSTEMD / "kiosk-edge.service" in UNITS


@needs_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_analyze_verify_passes(unit: Path, tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at a stand-in of the installed command.
    fake = tmp_path / "kiosk"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/kiosk-edge/venv/bin/kiosk", str(fake)))
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(copy)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


@needs_analyze
def test_security_exposure_is_ok_or_better() -> None:
    unit = SYSTEMD / "kiosk-edge.service"
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        cwd=SYSTEMD,
    )
    match = re.search(
        r"Overall exposure level for kiosk-edge\.service: (\d+\.\d+) (\w+)", done.stdout
    )
    assert match, done.stdout + done.stderr
    exposure, verdict = float(match.group(1)), match.group(2)
    assert exposure <= MAX_EXPOSURE, f"exposure {exposure} {verdict}"
    assert verdict in ("OK", "SAFE")


def test_service_is_a_watched_notify_daemon_run_as_kiosk() -> None:
    d = directives(SYSTEMD / "kiosk-edge.service")
    assert d["Service.Type"] == ["notify"]
    assert d["Service.NotifyAccess"] == ["main"]
    assert d["Service.Restart"] == ["on-failure"]
    assert d["Service.WatchdogSec"]
    assert d["Service.User"] == ["kiosk"]
    assert d["Service.StateDirectory"] == ["kiosk"]
    assert d["Service.ConfigurationDirectory"] == ["kiosk"]
    assert d["Service.ExecStart"] == [
        "/opt/kiosk-edge/venv/bin/kiosk run --config /etc/kiosk/kiosk.toml"
    ]
    assert d["Service.SyslogIdentifier"] == ["kiosk-edge"]
    for target in ("pcscd.socket", "network-online.target"):
        assert target in " ".join(d["Unit.After"])
        assert target in " ".join(d["Unit.Wants"])
    assert d["Install.WantedBy"] == ["multi-user.target"]


def test_hardening_still_lets_the_daemon_reach_its_parts() -> None:
    d = directives(SYSTEMD / "kiosk-edge.service")
    groups = " ".join(d["Service.SupplementaryGroups"]).split()
    assert {"input", "gpio", "i2c"} <= set(groups)
    allowed = [a.split()[0] for a in d["Service.DeviceAllow"]]
    for needed in ("char-input", "char-gpiochip", "char-i2c"):
        assert needed in allowed
    # The pcscd socket and sd_notify are unix sockets; MQTT is inet.
    families = " ".join(d["Service.RestrictAddressFamilies"]).split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    # Nothing may hide /run/pcscd or the state dir from the daemon.
    for key in ("Service.InaccessiblePaths", "Service.TemporaryFileSystem"):
        assert key not in d
    assert d.get("Service.PrivateNetwork", ["no"]) == ["no"]
    assert d["Service.PrivateDevices"] == ["no"]  # else /dev/input and /dev/gpiochip* vanish


def test_unit_parses_as_ini_without_duplicate_sections() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / "kiosk-edge.service").read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]


def test_udev_rules_give_gpio_i2c_to_their_groups() -> None:
    rules = (SYSTEMD / "99-kiosk-edge.rules").read_text()
    assert 'KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' in rules
    assert 'KERNEL=="i2c-[0-9]*", GROUP="i2c", MODE="0660"' in rules


RULE_PAIR = re.compile(r'^(?:[A-Z_]+(?:\{[A-Za-z_]+\})?)(?:==|!=|=|\+=)"[^"]*"$')


def test_generated_reader_rules_are_well_formed_and_only_for_group_kiosk() -> None:
    from edge.drivers.config import WedgeConfig
    from provisioning.udev import render_rules

    text = render_rules(
        {
            "wedge": WedgeConfig(path="/dev/input/by-id/usb-Mag-Tek_Reader-event-kbd"),
            "keypad": WedgeConfig(name="PIN Pad", mode="pin"),
            "sim": WedgeConfig(backend="sim"),
        }
    )
    rules = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    for rule in rules:
        for pair in rule.split(", "):
            assert RULE_PAIR.match(pair), f"bad udev pair {pair!r} in {rule!r}"
    readers = [r for r in rules if 'SUBSYSTEM=="input"' in r]
    assert readers == [
        'SUBSYSTEM=="input", KERNEL=="event*", '
        'SYMLINK=="input/by-id/usb-Mag-Tek_Reader-event-kbd", GROUP="kiosk", MODE="0660"',
        'SUBSYSTEM=="input", KERNEL=="event*", '
        'ATTRS{name}=="*PIN Pad*", GROUP="kiosk", MODE="0660"',
    ]


def test_a_reader_name_with_wildcards_is_refused() -> None:
    from edge.drivers.config import WedgeConfig
    from provisioning.errors import ProvisionError
    from provisioning.udev import render_rules

    with pytest.raises(ProvisionError, match="udev rule"):
        render_rules({"wedge": WedgeConfig(name='Mag"Tek*')})
