"""Installing the appliance into a scratch root: files, modes, owners (as root), idempotence,
uninstall keeping the ledger and --purge removing it. The real system is never touched."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kiosk.cli import cli
from provisioning.identity import kiosk_owner

REPO = Path(__file__).resolve().parent.parent
INSTALL_SH = REPO / "systemd" / "install.sh"
AS_ROOT = os.geteuid() == 0
HAVE_SYSUSERS = shutil.which("systemd-sysusers") is not None

CONFIG = """\
[kiosk]
id = "gate-1"
site = "pool-7"
role = "gate"
product = "swim"

[rules.products.swim]
name = "Swim"
price = 1500

[wedge]
backend = "real"
path = "/dev/input/by-id/usb-Mag-Tek_USB_Swipe_Reader-event-kbd"
"""


def snapshot(root: Path) -> dict[str, tuple[str, int, int, int, str]]:
    """Every path under root: (kind, mode, uid, gid, sha256 or link target)."""
    out: dict[str, tuple[str, int, int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            kind, digest = "link", os.readlink(path)
        elif path.is_dir():
            kind, digest = "dir", ""
        else:
            kind, digest = "file", hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(root))] = (
            kind,
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            digest,
        )
    return out


def provision(*args: str) -> str:
    result = CliRunner().invoke(cli, ["provision", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_lays_out_the_appliance(root: Path, config: Path) -> None:
    out = provision("install", "--root", str(root), "--config", str(config))
    assert "no systemctl" in out
    assert (root / "etc/systemd/system/kiosk-edge.service").read_bytes() == (
        REPO / "systemd/kiosk-edge.service"
    ).read_bytes()
    rules = (root / "etc/udev/rules.d/99-kiosk-edge.rules").read_text()
    assert 'SYMLINK=="input/by-id/usb-Mag-Tek_USB_Swipe_Reader-event-kbd"' in rules
    assert (root / "etc/kiosk/kiosk.toml").read_text() == CONFIG
    assert mode(root / "etc/kiosk") == 0o750
    assert mode(root / "etc/kiosk/kiosk.toml") == 0o640
    assert mode(root / "etc/kiosk/device.key") == 0o600
    assert mode(root / "var/lib/kiosk") == 0o700
    assert os.readlink(root / "usr/local/bin/kiosk") == "/opt/kiosk-edge/venv/bin/kiosk"
    assert (root / "etc/sysusers.d/kiosk-edge.conf").exists()


@pytest.mark.skipif(not (AS_ROOT and HAVE_SYSUSERS), reason="owners need root + systemd-sysusers")
def test_install_as_root_gives_keys_and_state_to_user_kiosk(root: Path, config: Path) -> None:
    provision("install", "--root", str(root), "--config", str(config))
    owner = kiosk_owner(root / "etc/passwd")
    assert owner is not None
    group = (root / "etc/group").read_text()
    for g in ("input", "gpio", "i2c"):
        assert any(line.startswith(f"{g}:") and "kiosk" in line for line in group.splitlines())
    key = (root / "etc/kiosk/device.key").stat()
    assert (key.st_uid, key.st_gid) == (owner.uid, owner.gid)
    state = (root / "var/lib/kiosk").stat()
    assert (state.st_uid, state.st_gid) == (owner.uid, owner.gid)
    cfg = (root / "etc/kiosk/kiosk.toml").stat()
    assert (cfg.st_uid, cfg.st_gid) == (0, owner.gid)  # root writes it, kiosk reads it
    # The host's own users are untouched.
    assert "kiosk-edge daemon" not in Path("/etc/passwd").read_text()


def test_install_twice_gives_the_same_tree(root: Path, config: Path) -> None:
    provision("install", "--root", str(root), "--config", str(config))
    first = snapshot(root)
    out = provision("install", "--root", str(root), "--config", str(config))
    assert snapshot(root) == first
    assert "device key" not in out  # kept, not regenerated


def test_uninstall_keeps_keys_and_ledger_and_purge_removes_them(root: Path, config: Path) -> None:
    provision("install", "--root", str(root), "--config", str(config))
    ledger = root / "var/lib/kiosk/ledger.db"
    ledger.write_bytes(b"the ledger")
    key = (root / "etc/kiosk/device.key").read_bytes()
    provision("uninstall", "--root", str(root))
    assert not (root / "etc/systemd/system/kiosk-edge.service").exists()
    assert not (root / "etc/udev/rules.d/99-kiosk-edge.rules").exists()
    assert not (root / "opt/kiosk-edge").exists()
    assert not (root / "usr/local/bin/kiosk").is_symlink()
    assert ledger.read_bytes() == b"the ledger"
    assert (root / "etc/kiosk/device.key").read_bytes() == key
    # A reinstall finds the same identity.
    provision("install", "--root", str(root))
    assert (root / "etc/kiosk/device.key").read_bytes() == key
    provision("uninstall", "--root", str(root), "--purge")
    assert not ledger.exists()
    assert not (root / "etc/kiosk").exists()


def test_install_refuses_a_key_that_others_can_read(root: Path, config: Path) -> None:
    provision("install", "--root", str(root), "--config", str(config))
    (root / "etc/kiosk/device.key").chmod(0o644)
    result = CliRunner().invoke(cli, ["provision", "install", "--root", str(root)])
    assert result.exit_code != 0
    assert "chmod 600" in result.output


def run_sh(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(
        ["sh", str(INSTALL_SH), *args], capture_output=True, text=True, env=env, check=False
    )


def test_install_sh_into_a_scratch_root_twice_then_uninstall(root: Path, config: Path) -> None:
    done = run_sh("--root", str(root), "--no-venv", "--config", str(config))
    assert done.returncode == 0, done.stderr
    first = snapshot(root)
    assert "etc/systemd/system/kiosk-edge.service" in first
    done = run_sh("--root", str(root), "--no-venv", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert snapshot(root) == first
    (root / "var/lib/kiosk/ledger.db").write_bytes(b"x")
    done = run_sh("--root", str(root), "--no-venv", "--uninstall")
    assert done.returncode == 0, done.stderr
    assert (root / "var/lib/kiosk/ledger.db").exists()
    done = run_sh("--root", str(root), "--no-venv", "--uninstall", "--purge")
    assert done.returncode == 0, done.stderr
    assert not (root / "var/lib/kiosk").exists()


def test_install_sh_without_root_or_scratch_dir_refuses() -> None:
    if AS_ROOT:
        pytest.skip("running as root: the script would install for real")
    done = run_sh("--no-venv")
    assert done.returncode == 1
    assert "run as root" in done.stderr
