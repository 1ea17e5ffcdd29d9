"""`kiosk ledger ...`: verify, show and export a ledger file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edge.ledger.errors import LedgerError
from edge.ledger.store import Ledger
from edge.ledger.verify import verify as verify_ledger

DbPath = click.Path(exists=True, dir_okay=False, path_type=Path)


def _open(db: Path) -> Ledger:
    """The ledger for reading only: these commands never change the file they are shown."""
    try:
        return Ledger(db, read_only=True)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def ledger() -> None:
    """Inspect a kiosk's signed ledger: verify chains, show purses, export ops."""


@ledger.command()
@click.option("--db", required=True, type=DbPath, help="Ledger database file.")
def verify(db: Path) -> None:
    """Check every chain (signatures, hash links, seq gaps, purse totals).

    Exit 0 with a summary when intact; exit 1 naming replica and seq where it is not.
    """
    with _open(db) as led:
        report = verify_ledger(led)
    for problem in report.problems:
        click.echo(f"TAMPERED replica={problem.replica} seq={problem.seq}: {problem.what}")
    chains = ", ".join(f"{c.replica}#1..{c.head_seq}" for c in report.chains.values())
    if report.ok:
        click.echo(f"ok: {report.total_ops} ops in {len(report.chains)} chains ({chains})")
        return
    click.echo(f"FAILED: {len(report.problems)} problem(s) in {db}", err=True)
    sys.exit(1)


@ledger.command()
@click.option("--db", required=True, type=DbPath, help="Ledger database file.")
@click.option("--account", default=None, help="Only this account.")
def show(db: Path, account: str | None) -> None:
    """Value and rights per purse (rights: what each replica may still spend)."""
    with _open(db) as led:
        states = led.purses(account)
        if not states:
            click.echo("no purses" + (f" for account {account}" if account else ""))
            return
        click.echo(f"{'account':<14}{'purse':<16}{'value':>9}{'bound':>8}{'debt':>7}  rights")
        for st in states:
            rights = ", ".join(f"{s.replica}={st.rights(s.replica)}" for s in st.shares)
            click.echo(
                f"{st.account:<14}{st.purse:<16}{st.value:>9}{st.lower_bound:>8}{st.debt:>7}"
                f"  {rights}"
            )


@ledger.command()
@click.option("--db", required=True, type=DbPath, help="Ledger database file.")
def export(db: Path) -> None:
    """Every op as JSON lines, one op a line, in (replica, seq) order."""
    with _open(db) as led:
        for op in led.ops():
            click.echo(json.dumps(op.to_json(), separators=(",", ":")))
