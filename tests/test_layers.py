"""The import directions of DESIGN.md section 2, checked on every import statement of our
packages (lazy ones inside functions and TYPE_CHECKING blocks included), and what `kiosk run`
loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge", "cloud_sync", "provisioning", "kiosk", "backoffice")

# Where a module may import from, among our packages (longest matching prefix wins).
ALLOWED: dict[str, tuple[str, ...]] = {
    "edge.ledger": ("edge.ledger",),
    "edge.drivers": ("edge.drivers", "edge.validation"),
    "edge.aio": (),
    "edge.validation": (),
    "edge": ("edge",),  # the daemon, taps, feedback, checks: never the cloud side
    # The cloud side reads the ledger core; the enrollment document format is provisioning's.
    "cloud_sync": (
        "cloud_sync",
        "edge.ledger",
        "edge.aio",
        "edge.validation",
        "provisioning.bundle",
        "provisioning.errors",
    ),
    "provisioning": ("provisioning", "edge", "cloud_sync.enroll_wire"),
    "backoffice": ("backoffice", "cloud_sync", "edge.ledger"),
    "kiosk": PACKAGES,  # the composition root wires them all
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = (
        module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def rule_for(module: str) -> tuple[str, tuple[str, ...]]:
    matches = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    key = max(matches, key=len)
    return key, ALLOWED[key]


def allowed(target: str, prefixes: tuple[str, ...]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def our_modules() -> list[Path]:
    return sorted(
        p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py")
    )


def test_every_import_follows_the_layers() -> None:
    faults = []
    for path in our_modules():
        module = module_name(path)
        key, prefixes = rule_for(module)
        for target in sorted(imports_of(path)):
            # `from edge.drivers import wedge` names a module: judge the module, not the package.
            if not allowed(target, prefixes) and not allowed(target.rsplit(".", 1)[0], prefixes):
                faults.append(f"{module} imports {target} (rule {key!r}: {', '.join(prefixes)})")
    assert faults == []


@pytest.mark.parametrize(
    ("module", "target", "ok"),
    [
        ("edge.daemon.daemon", "cloud_sync.agent", False),
        ("edge.ledger.store", "edge.drivers.base", False),
        ("edge.drivers.wedge", "edge.ledger", False),
        ("cloud_sync.reconciler", "edge.daemon.daemon", False),
        ("cloud_sync.reconciler", "edge.ledger.op", True),
        ("kiosk.run", "cloud_sync.agent", True),
    ],
)
def test_the_rules_refuse_what_the_design_forbids(module: str, target: str, ok: bool) -> None:
    _, prefixes = rule_for(module)
    assert allowed(target, prefixes) is ok


def modules_after_loading_the_daemon(config: Path) -> list[str]:
    """The modules a process holds once `kiosk run` is wired and its config (with the agent's
    settings, when linked) is loaded."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from kiosk.cli import cli\n"
        "import click\n"
        "cli.get_command(click.Context(cli), 'run')\n"
        "import edge.daemon.daemon, kiosk.link\n"
        f"kiosk.link.link_factory(kiosk.link.load_kiosk_config(Path({str(config)!r})))\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()


KIOSK = '[kiosk]\nid = "t1"\nsite = "pool"\nrole = "topup"\n'


def test_kiosk_run_loads_no_cloud_side_simulation_provisioning_or_pydantic(
    tmp_path: Path,
) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(KIOSK + '[gpio]\nbackend = "sim"\n[display]\nbackend = "sim"\n')
    out = modules_after_loading_the_daemon(config)
    heavy = [
        m
        for m in out
        if m.split(".")[0]
        in ("cloud_sync", "provisioning", "aiomqtt", "matplotlib", "django", "pydantic")
        or m.startswith(("kiosk.sim", "kiosk.demo", "edge.ledger.cli"))
    ]
    assert heavy == []
    assert {"edge.daemon.daemon", "edge.config"} <= set(out)


def test_a_linked_kiosk_loads_its_agent_settings_without_pydantic(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(KIOSK + '[agent.broker]\nhost = "broker.example"\nport = 8883\n')
    out = modules_after_loading_the_daemon(config)
    assert "cloud_sync.settings" in out
    assert [m for m in out if m.split(".")[0] == "pydantic"] == []
