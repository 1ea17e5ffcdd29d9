"""Every `kiosk` command has help text and a row in the README (sqlite-utils does the same)."""

from __future__ import annotations

from pathlib import Path

import click
import click.testing

from kiosk.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"


def commands(group: click.Group, prefix: str = "kiosk") -> list[tuple[str, click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        path = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            found.extend(commands(cmd, path))
        else:
            found.append((path, cmd))
    return found


def test_every_command_has_help_and_is_in_the_readme():
    text = README.read_text()
    listed = commands(cli)
    assert listed
    for path, cmd in listed:
        assert cmd.help, f"{path} has no help text"
        assert f"`{path}" in text, f"{path} is not documented in README.md"


def test_top_level_help_lists_every_group():
    result = click.testing.CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in cli.commands:
        assert name in result.output
