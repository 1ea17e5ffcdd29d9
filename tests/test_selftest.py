"""`kiosk selftest` through click's CliRunner, on simulated parts and a missing reader."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.drivers.base import Check
from edge.drivers.config import ConfigError, NfcConfig, load_drivers_config
from kiosk.cli import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def nfc_stub(monkeypatch: pytest.MonkeyPatch) -> list[NfcConfig]:
    """An NFC driver module whose self-test passes (the real one lives on another branch)."""
    seen: list[NfcConfig] = []

    async def self_test(cfg: NfcConfig) -> list[Check]:
        seen.append(cfg)
        return [Check("nfc reader", True, "simulated reader: tag read")]

    module = types.ModuleType("edge.drivers.nfc")
    module.self_test = self_test  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edge.drivers.nfc", module)
    return seen


def test_nfc_reader_self_test_is_used_through_create_nfc_reader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The NFC driver's shape: create_nfc_reader(backend, verifier, reader_name=) -> a reader
    with an async self_test()."""
    made: list[tuple[str, str | None]] = []

    class Reader:
        async def self_test(self) -> list[Check]:
            return [Check("nfc reader", False, "no reader named like 'ACR'", "plug it in")]

    def create_nfc_reader(backend: str, verifier: object, *, reader_name: str | None) -> Reader:
        made.append((backend, reader_name))
        return Reader()

    module = types.ModuleType("edge.drivers.nfc")
    module.create_nfc_reader = create_nfc_reader  # type: ignore[attr-defined]
    module.SunVerifier = lambda keys, counters: (keys, counters)  # type: ignore[attr-defined]
    module.SiteKeys = lambda master: master  # type: ignore[attr-defined]
    module.MemoryCounterStore = lambda key: key  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "edge.drivers.nfc", module)
    config = tmp_path / "kiosk.toml"
    config.write_text('[nfc]\nbackend = "real"\nreader = "ACR"\n')
    code, out = run("--config", str(config))
    assert code == 1
    assert made == [("real", "ACR")]
    assert "no reader named like 'ACR'" in out
    assert "fix: plug it in" in out


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["selftest", *args])
    return result.exit_code, result.output


def test_sim_config_passes_every_hardware_check(nfc_stub: list[NfcConfig]) -> None:
    # The example is a whole kiosk config: the hardware rows pass; an example device that was
    # never enrolled fails the enrollment row, with the fix (see test_selftest_system.py).
    code, out = run("--config", str(EXAMPLES / "kiosk-sim.toml"))
    rows = {
        line[8:25].strip(): line[:6].strip()
        for line in out.splitlines()
        if line[:4] in ("PASS", "FAIL")
    }
    for part in ("display", "gate relay", "door sensor", "coin acceptor", "wedge read"):
        assert rows[part] == "PASS", out
    assert rows["enrollment"] == "FAIL"
    assert "fix: kiosk provision" in out
    assert code == 1
    assert nfc_stub[0].backend == "sim"


def test_missing_evdev_device_fails_with_a_fix(tmp_path: Path, nfc_stub: object) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(
        '[wedge]\nbackend = "real"\npath = "/dev/input/by-id/usb-No_Such_Reader-event-kbd"\n'
        '[display]\nbackend = "sim"\n'
    )
    code, out = run("--config", str(config))
    assert code == 1
    assert "FAIL    wedge reader" in out
    assert "usb-No_Such_Reader" in out
    assert "fix: plug the reader in" in out
    assert "PASS    display" in out
    assert "1 failed" in out


def test_no_nfc_driver_is_reported_plainly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "edge.drivers.nfc", None)  # import fails as if not built
    config = tmp_path / "kiosk.toml"
    config.write_text('[nfc]\nbackend = "sim"\n')
    code, out = run("--config", str(config))
    assert code == 1
    assert "NFC driver not available" in out


def test_pi_config_on_a_machine_without_the_hardware_names_each_fix(nfc_stub: object) -> None:
    code, out = run("--config", str(EXAMPLES / "kiosk-pi.toml"))
    assert code == 1
    assert "FAIL    display" in out
    assert "FAIL    gpio pins" in out
    assert "FAIL    wedge reader" in out
    assert out.count("fix:") >= 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[wedge\nbackend = 1", "not valid TOML"),
        ('[wedge]\nbackend = "real"\npth = "/dev/x"\n', "wedge.pth: not a known setting"),
        ('[wedge]\nbackend = "usb"\n', "wedge.backend: "),
        ('[wedge]\nbackend = "real"\n', "needs `path` or `name`"),
        ('[gpio]\nbackend = "sim"\ncoin_pin = 6\n', "coin_pulses"),
    ],
)
def test_bad_config_is_exit_2_with_where_and_what(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(text)
    result = CliRunner().invoke(cli, ["selftest", "--config", str(config)])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_drivers_config(tmp_path / "nope.toml")


def test_example_configs_load() -> None:
    sim = load_drivers_config(EXAMPLES / "kiosk-sim.toml")
    pi = load_drivers_config(EXAMPLES / "kiosk-pi.toml")
    assert sim.gpio is not None
    assert sim.gpio.coin_pulses == {1: 100, 5: 500, 10: 1000}
    assert pi.display is not None
    assert pi.display.i2c_address == 0x3C
    assert pi.nfc is not None
    assert pi.nfc.reader == "ACS ACR122"
