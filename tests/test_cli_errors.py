"""Every `kiosk` command answers a mistake or a fault with one line that names it and its fix:
exit 2 for a usage mistake, 1 for a fault, never a traceback (`-v` adds one for a bug report).
A table of bad inputs per command group, run through click's CliRunner, and a few as real
processes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click.testing
import pytest

from edge.ledger import Intent, Kind, Ledger, generate_key, save_private_key
from kiosk.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SIM_CONFIG = (ROOT / "examples" / "kiosk-sim.toml").read_text()


@dataclass
class Place:
    """A folder laid out with what the bad inputs need: a kiosk config with keys, a cloud
    config, ledgers good, damaged and not ledgers at all."""

    root: Path

    def __getattr__(self, name: str) -> str:  # place.x -> str(root / x)
        return str(self.root / name.replace("_dot_", "."))

    def kiosk_config(self, name: str, edit: Callable[[str], str] = lambda t: t) -> str:
        text = SIM_CONFIG.replace("demo-out/kiosk-sim", str(self.root / "k"))
        path = self.root / name
        path.write_text(edit(text))
        return str(path)

    def cloud_config(
        self, name: str, extra: str = "", store: str = "", key: str = "cloud.key"
    ) -> str:
        store = store or f"sqlite:///{self.root / 'cloud.db'}"
        path = self.root / name
        path.write_text(f'[reconciler]\nkey_file = "{key}"\nstore = "{store}"\n{extra}')
        return str(path)


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Place:
    root = tmp_path_factory.mktemp("bad-inputs")
    p = Place(root)
    cfg = p.kiosk_config("kiosk.toml")
    runner = click.testing.CliRunner()
    assert runner.invoke(cli, ["provision", "keys", "--config", cfg]).exit_code == 0
    save_private_key(root / "cloud.key", generate_key())
    p.cloud_config("cloud.toml")
    with Ledger(root / "good.db", replica="k1", key=generate_key()) as led:
        for i in range(300):
            led.append([Intent(Kind.INC, f"m{i}", "cash", 100)])
        led.checkpoint()
    good = (root / "good.db").read_bytes()
    (root / "truncated.db").write_bytes(good[: len(good) // 2])
    (root / "random.db").write_bytes(os.urandom(5000))
    (root / "empty.db").write_bytes(b"")
    other = sqlite3.connect(root / "other.db")
    other.execute("CREATE TABLE photos (name TEXT)")
    other.commit()
    other.close()
    (root / "folder").mkdir()
    (root / "nottoml.toml").write_text("[kiosk\nid = ")
    (root / "short.key").write_bytes(b"\x01" * 7)
    (root / "garbage.key").write_bytes(b"not a key at all")
    os.chmod(root / "garbage.key", 0o600)
    (root / "loose.key").write_bytes((root / "cloud.key").read_bytes())
    os.chmod(root / "loose.key", 0o644)
    (root / "ca").mkdir()
    return p


def _with(text: str, section: str, line: str) -> str:
    """Set `line` in `[section]` of a TOML text (replacing the key if it is there)."""
    key = line.split("=")[0].strip()
    out, inside = [], False
    for row in text.splitlines():
        if row.startswith("["):
            inside = row.strip() == f"[{section}]"
        if inside and row.split("=")[0].strip() == key:
            continue
        out.append(row)
        if inside and row.strip() == f"[{section}]":
            out.append(line)
    return "\n".join(out) + "\n"


# (case id, args from the place, exit code, words the line must hold)
Case = tuple[str, Callable[[Place], list[str]], int, str]

CASES: list[Case] = [
    # the root and unknown commands
    ("unknown command", lambda p: ["nope"], 2, "no such command"),
    ("unknown option", lambda p: ["ledger", "verify", "--dbx", "x"], 2, "no such option"),
    # kiosk ledger
    ("ledger no --db", lambda p: ["ledger", "verify"], 2, "missing option '--db'"),
    (
        "ledger missing file",
        lambda p: ["ledger", "verify", "--db", p.nothing_dot_db],
        2,
        "does not exist",
    ),
    ("ledger folder", lambda p: ["ledger", "verify", "--db", p.folder], 2, "is a directory"),
    (
        "ledger truncated",
        lambda p: ["ledger", "verify", "--db", p.truncated_dot_db],
        1,
        "damaged or is not a ledger",
    ),
    (
        "ledger random bytes",
        lambda p: ["ledger", "show", "--db", p.random_dot_db],
        1,
        "damaged or is not a ledger",
    ),
    (
        "ledger empty file",
        lambda p: ["ledger", "verify", "--db", p.empty_dot_db],
        1,
        "not a kiosk ledger",
    ),
    (
        "ledger other sqlite",
        lambda p: ["ledger", "export", "--db", p.other_dot_db],
        1,
        "not a kiosk ledger",
    ),
    # kiosk run
    ("run missing config", lambda p: ["run", "--config", p.nothing_dot_toml], 1, "nothing.toml"),
    ("run config is a folder", lambda p: ["run", "--config", p.folder], 2, "is a directory"),
    ("run not toml", lambda p: ["run", "--config", p.nottoml_dot_toml], 1, "nottoml.toml"),
    (
        "run wrong type",
        lambda p: [
            "run",
            "--config",
            p.kiosk_config(
                "wrong-type.toml", lambda t: t.replace("price = 2500", 'price = "lots"')
            ),
        ],
        1,
        "price",
    ),
    (
        "run unknown backend",
        lambda p: [
            "run",
            "--config",
            p.kiosk_config("backend.toml", lambda t: _with(t, "display", 'backend = "hologram"')),
        ],
        1,
        "backend",
    ),
    (
        "run missing GPIO library",
        lambda p: [
            "run",
            "--config",
            p.kiosk_config(
                "gpio.toml",
                lambda t: _with(
                    _with(t, "gpio", 'backend = "real"'), "gpio", 'pin_factory = "lgpio"'
                ),
            ),
        ],
        1,
        "pin factory lgpio",
    ),
    (
        "run missing key file",
        lambda p: [
            "run",
            "--config",
            p.kiosk_config("nokey.toml", lambda t: t.replace('/k/device.key"', '/k/none.key"')),
        ],
        1,
        "none.key",
    ),
    (
        "run key file not a key",
        lambda p: [
            "run",
            "--config",
            p.kiosk_config(
                "badkey.toml",
                lambda t: t.replace(f'{p.root}/k/device.key"', f'{p.garbage_dot_key}"'),
            ),
        ],
        1,
        "not a pem private key",
    ),
    (
        "run site key of wrong size",
        lambda p: [
            "run",
            "--config",
            p.kiosk_config(
                "shortsite.toml",
                lambda t: t.replace(f'{p.root}/k/site.key"', f'{p.short_dot_key}"'),
            ),
        ],
        1,
        "short.key",
    ),
    (
        "run unenrolled kiosk",
        lambda p: [
            "run",
            "--config",
            p.kiosk_config(
                "unenrolled.toml", lambda t: t + '\n[agent.broker]\nhost = "127.0.0.1"\nport = 1\n'
            ),
        ],
        1,
        "enroll",
    ),
    # kiosk selftest
    (
        "selftest not toml",
        lambda p: ["selftest", "--config", p.nottoml_dot_toml],
        2,
        "nottoml.toml",
    ),
    (
        "selftest bad wait",
        lambda p: ["selftest", "--config", p.kiosk_dot_toml, "--wait-card", "-1"],
        2,
        "--wait-card",
    ),
    # kiosk provision
    (
        "service without state folder",
        lambda p: [
            "provision",
            "service",
            "--config",
            p.kiosk_config(
                "nostate.toml",
                lambda t: t.replace(f'state_dir = "{p.root}/k"', f'state_dir = "{p.root}/gone"'),
            ),
        ],
        1,
        "state folder",
    ),
    (
        "service minutes out of range",
        lambda p: ["provision", "service", "--config", p.kiosk_dot_toml, "--minutes", "999"],
        2,
        "--minutes",
    ),
    (
        "keys not toml",
        lambda p: ["provision", "keys", "--config", p.nottoml_dot_toml],
        1,
        "nottoml.toml",
    ),
    (
        "bundle apply missing file",
        lambda p: ["provision", "bundle", "apply", p.nothing_dot_b],
        2,
        "does not exist",
    ),
    (
        "bundle apply bad hex",
        lambda p: ["provision", "bundle", "apply", p.kiosk_dot_toml, "--cloud-public-key", "zz"],
        2,
        "not hex",
    ),
    # kiosk cards
    (
        "cards zero count",
        lambda p: [
            "cards",
            "issue",
            "--count",
            "0",
            "--kind",
            "barcode",
            "--range",
            "1-9",
            "--out",
            p.cards,
            "--site",
            "s",
            "--site-key",
            p.k_site_key,
        ],
        2,
        "--count",
    ),
    (
        "cards unknown kind",
        lambda p: [
            "cards",
            "issue",
            "--count",
            "1",
            "--kind",
            "laser",
            "--range",
            "1-9",
            "--out",
            p.cards,
            "--site",
            "s",
            "--site-key",
            p.k_site_key,
        ],
        2,
        "--kind",
    ),
    # kiosk cloud: config faults
    (
        "cloud missing config",
        lambda p: ["cloud", "kiosks", "--config", p.nothing_dot_toml],
        2,
        "does not exist",
    ),
    (
        "cloud not toml",
        lambda p: ["cloud", "kiosks", "--config", p.nottoml_dot_toml],
        1,
        "cannot read config",
    ),
    (
        "cloud wrong type",
        lambda p: [
            "cloud",
            "kiosks",
            "--config",
            p.cloud_config("ctype.toml", 'chain_chunk = "many"\n'),
        ],
        1,
        "chain_chunk",
    ),
    (
        "cloud unknown backend",
        lambda p: [
            "cloud",
            "kiosks",
            "--config",
            p.cloud_config("cstore.toml", store="mysql://db/kiosk"),
        ],
        1,
        "unknown store backend 'mysql'",
    ),
    (
        "cloud missing key file",
        lambda p: ["cloud", "kiosks", "--config", p.cloud_config("ckey.toml", key="missing.key")],
        1,
        "missing.key",
    ),
    (
        "cloud no site key",
        lambda p: [
            "cloud",
            "card",
            "link",
            "--config",
            p.cloud_dot_toml,
            "--account",
            "m1",
            "--card",
            "123",
        ],
        1,
        "site_key_file",
    ),
    (
        "cloud bad --db store",
        lambda p: [
            "cloud",
            "kiosks",
            "--config",
            p.cloud_config("cbad.toml", store=f"sqlite:///{p.root / 'random.db'}"),
        ],
        1,
        "random.db",
    ),
    # kiosk cloud: operator input
    ("topup negative", lambda p: _topup(p, "-5"), 2, "not a whole number"),
    ("topup zero", lambda p: _topup(p, "0"), 2, "between 1 and"),
    ("topup huge", lambda p: _topup(p, "9" * 30), 2, "between 1 and"),
    ("topup decimal", lambda p: _topup(p, "25.50"), 2, "write 2500 for 25.00"),
    ("topup exponent", lambda p: _topup(p, "1e3"), 2, "not a whole number"),
    (
        "voucher huge",
        lambda p: [
            "cloud",
            "voucher",
            "--config",
            p.cloud_dot_toml,
            "--code",
            "v1",
            "--amount",
            str(2**64),
        ],
        2,
        "between 1 and",
    ),
    ("account with space", lambda p: _register(p, "m 1", "Ann"), 2, "holds spaces"),
    ("account reserved", lambda p: _register(p, "card:abc", "Ann"), 2, "reserves"),
    ("account empty", lambda p: _register(p, "", "Ann"), 2, "is empty"),
    ("account too long", lambda p: _register(p, "a" * 65, "Ann"), 2, "longer than 64"),
    ("name control char", lambda p: _register(p, "m1", "Ann\x1b[31m"), 2, "control"),
    ("name not UTF-8", lambda p: _register(p, "m1", "Ann\udcff"), 2, "not valid utf-8"),
    (
        "history huge",
        lambda p: [
            "cloud",
            "show",
            "--config",
            p.cloud_dot_toml,
            "--account",
            "m1",
            "--history",
            str(10**20),
        ],
        2,
        "--history",
    ),
    ("keys neither option", lambda p: ["cloud", "keys"], 2, "either --config or --out"),
    (
        "keys loose mode",
        lambda p: ["cloud", "keys", "--out", p.loose_dot_key],
        1,
        "readable by others",
    ),
    (
        "ca issue without ca",
        lambda p: ["cloud", "ca", "issue", "--device", "g1", "--site", "s", "--dir", p.ca],
        1,
        "ca",
    ),
    (
        "broker port out of range",
        lambda p: ["cloud", "broker-config", "--dir", p.ca, "--port", "70000"],
        2,
        "--port",
    ),
    (
        "enroll key not hex",
        lambda p: [
            "cloud",
            "enroll",
            "--config",
            p.cloud_dot_toml,
            "--device",
            "g1",
            "--site",
            "s",
            "--public-key",
            "xyz",
        ],
        1,
        "not an ed25519 public key",
    ),
    # kiosk sim
    ("sim too few kiosks", lambda p: ["sim", "fleet", "--kiosks", "1"], 2, "--kiosks"),
    (
        "sim scenario not toml",
        lambda p: ["sim", "fleet", "--scenario", p.nottoml_dot_toml, "--out", p.simout],
        1,
        "nottoml.toml",
    ),
    ("sim hours negative", lambda p: ["sim", "fleet", "--hours", "-3"], 2, "--hours"),
    # kiosk demo
    ("demo out is a file", lambda p: ["demo", "--out", p.kiosk_dot_toml], 2, "--out"),
]


def _topup(p: Place, amount: str) -> list[str]:
    return [
        "cloud",
        "topup",
        "--config",
        p.cloud_dot_toml,
        "--account",
        "m1",
        "--amount",
        amount,
        "--ref",
        "r1",
    ]


def _register(p: Place, account: str, name: str) -> list[str]:
    return [
        "cloud",
        "member",
        "register",
        "--config",
        p.cloud_dot_toml,
        "--account",
        account,
        "--name",
        name,
    ]


def _one_error_line(result: click.testing.Result) -> str:
    assert "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("args", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_bad_input_gets_one_line_naming_the_fault(
    place: Place, args: Callable[[Place], list[str]], code: int, words: str
) -> None:
    result = click.testing.CliRunner().invoke(cli, args(place))
    line = _one_error_line(result)
    assert result.exit_code == code, line
    assert words.lower() in line.lower(), line
    assert ";" in line or code == 2 or "fix" in line or ":" in line  # a fault and a way on


def test_verify_leaves_a_file_that_is_not_a_ledger_unchanged(place: Place) -> None:
    for name in ("other.db", "empty.db", "good.db", "truncated.db"):
        path = place.root / name
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        click.testing.CliRunner().invoke(cli, ["ledger", "verify", "--db", str(path)])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == before, name
        assert not path.with_name(name + "-wal").exists(), name
    tables = sqlite3.connect(place.root / "other.db").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    )
    assert [t[0] for t in tables] == ["photos"]


def test_verify_still_says_ok_for_a_ledger(place: Place) -> None:
    result = click.testing.CliRunner().invoke(cli, ["ledger", "verify", "--db", place.good_dot_db])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 300 ops in 1 chains")


def test_a_damaged_ledger_under_a_running_kiosk_is_named(place: Place, tmp_path: Path) -> None:
    state = tmp_path / "k"
    state.mkdir()
    for key in ("device.key", "site.key"):
        (state / key).write_bytes((place.root / "k" / key).read_bytes())
        os.chmod(state / key, 0o600)
    (state / "ledger.db").write_bytes((place.root / "truncated.db").read_bytes())
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(SIM_CONFIG.replace("demo-out/kiosk-sim", str(state)))
    result = click.testing.CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    line = _one_error_line(result)
    assert result.exit_code == 1
    assert f"the ledger file {state / 'ledger.db'} is damaged" in line


def test_a_bug_is_one_line_and_v_adds_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.ledger import cli as ledger_cli

    def broken(db: Path) -> Ledger:
        raise RuntimeError("planted")

    monkeypatch.setattr(ledger_cli, "_open", broken)
    runner = click.testing.CliRunner()
    quiet = runner.invoke(cli, ["ledger", "verify", "--db", __file__])
    line = _one_error_line(quiet)
    assert quiet.exit_code == 1
    assert "internal error RuntimeError: planted" in line and "kiosk -v" in line
    loud = runner.invoke(cli, ["-v", "ledger", "verify", "--db", __file__])
    assert loud.exit_code == 1
    assert "Traceback" in loud.stderr and "RuntimeError: planted" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == line


@contextlib.contextmanager
def _small_disk(where: Path) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _kiosk(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )


def test_a_full_disk_on_open_is_reported_as_a_full_disk(place: Place, tmp_path: Path) -> None:
    with _small_disk(tmp_path / "disk") as disk:
        for key in ("device.key", "site.key"):
            (disk / key).write_bytes((place.root / "k" / key).read_bytes())
            os.chmod(disk / key, 0o600)
        with contextlib.suppress(OSError), (disk / "filler").open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        cfg = tmp_path / "kiosk.toml"
        cfg.write_text(SIM_CONFIG.replace("demo-out/kiosk-sim", str(disk)))
        run = _kiosk("run", "--config", str(cfg))
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: disk full"), run.stderr
    assert "damaged" not in lines[0]


def test_real_processes_answer_in_one_line(place: Place) -> None:
    verify = _kiosk("ledger", "verify", "--db", place.truncated_dot_db)
    assert verify.returncode == 1
    assert verify.stderr.count("\n") == 1 and "is damaged or is not a ledger" in verify.stderr
    usage = _kiosk(
        "cloud",
        "topup",
        "--config",
        place.cloud_dot_toml,
        "--account",
        "m1",
        "--amount",
        "1" + "0" * 25,
        "--ref",
        "r",
    )
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1, usage.stderr
    script = Path(sys.executable).with_name("kiosk")
    name = subprocess.run(
        [
            str(script),
            "cloud",
            "member",
            "register",
            "--config",
            place.cloud_dot_toml,
            "--account",
            "m1",
            "--name",
            b"Ann\xff".decode("utf-8", "surrogateescape"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert name.returncode == 2 and name.stderr.startswith("error: "), name.stderr
    assert "utf-8" in name.stderr.lower() and "Traceback" not in name.stderr


def test_an_unreadable_file_names_the_permission(place: Place, tmp_path: Path) -> None:
    """As user nobody (the tests run as root, who reads every file): effective ids only, for
    the length of one in-process command."""
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    secret = tmp_path / "ledger.db"
    secret.write_bytes((place.root / "good.db").read_bytes())
    os.chmod(secret, 0o600)
    modes = {d: d.stat().st_mode for d in (tmp_path, tmp_path.parent, tmp_path.parent.parent)}
    for d in modes:
        os.chmod(d, 0o755)
    os.setegid(65534)
    os.seteuid(65534)
    try:
        result = click.testing.CliRunner().invoke(cli, ["ledger", "verify", "--db", str(secret)])
    finally:
        os.seteuid(0)
        os.setegid(0)
        for d, mode in modes.items():
            os.chmod(d, mode)
    line = _one_error_line(result)
    assert result.exit_code == 1
    assert str(secret) in line and "may read" in line, line
