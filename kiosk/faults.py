"""How the `kiosk` command answers a fault: one line, `error: <what>; <fix>`, exit 2 for a usage
mistake and 1 for a fault of the environment; a bug gets one line too, and `-v` its traceback."""

from __future__ import annotations

import errno
import sqlite3
import sys

import click

from edge.drivers.base import DriverError
from edge.errors import KioskError
from edge.ledger.errors import LedgerError, sqlite_fault

__all__ = ["USAGE", "explain", "one_line"]

USAGE = 2  # a mistake in what was typed: fix the command
FAULT = 1  # the command was right, the world was not: fix the machine, the file, the network


def _ours(exc: BaseException) -> bool:
    """An error of ours: its message is written for a field tech and names the fix. The cloud's
    root is looked up only if its module is loaded (a kiosk never loads it, nor raises it)."""
    roots: list[type[BaseException]] = [KioskError, LedgerError, DriverError]
    sync = sys.modules.get("cloud_sync.errors")
    if sync is not None:
        roots.append(sync.SyncError)
    return isinstance(exc, tuple(roots))


_OS_FIXES = {
    errno.ENOSPC: ("disk full", "free space on that disk (df -h) and run again"),
    errno.EDQUOT: ("disk quota used up", "free space or raise the quota and run again"),
    errno.EACCES: (
        "permission denied",
        "run as a user that may use it (sudo, or sudo -u kiosk) or fix its owner and mode",
    ),
    errno.EPERM: ("operation not permitted", "run as root (sudo) or as the file's owner"),
    errno.ENOENT: ("no such file or folder", "check the path (and create the folder first)"),
    errno.EISDIR: ("is a folder, not a file", "give the path of the file"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "check the path"),
    errno.EROFS: ("read-only file system", "remount it read-write or use another folder"),
    errno.ELOOP: ("too many symbolic links", "check the path"),
    errno.ENAMETOOLONG: ("file name too long", "use a shorter path"),
    errno.ECONNREFUSED: ("connection refused", "check the address and that the service runs"),
    errno.EHOSTUNREACH: ("host unreachable", "check the network and the address"),
    errno.ETIMEDOUT: ("timed out", "check the network and the address"),
}


def one_line(text: str) -> str:
    """A message on one line: multi-line messages joined with '; '."""
    parts = [p.strip().rstrip(".") for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts) or "no detail"


def _os_error(exc: OSError) -> str:
    what, fix = _OS_FIXES.get(exc.errno or -1, (exc.strerror or type(exc).__name__, ""))
    where = " ".join(f"{f}" for f in (exc.filename, exc.filename2) if f is not None)
    fix = fix or "check the path and the device, then run again"
    return f"{what}: {where}; {fix}" if where else f"{what}; {fix}"


def _leaf(exc: BaseException) -> BaseException:
    """The first error inside an exception group (a TaskGroup wraps what its tasks raise)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def explain(exc: BaseException) -> tuple[str, int, bool]:
    """(the line without `error: `, exit code, whether it is a bug) for what reached the top."""
    exc = _leaf(exc)
    if isinstance(exc, click.UsageError):
        where = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
        return one_line(exc.format_message()) + where, USAGE, False
    if isinstance(exc, click.ClickException):
        return one_line(exc.format_message()), exc.exit_code, False
    if isinstance(exc, click.Abort | KeyboardInterrupt):
        return "interrupted; nothing more was done", FAULT, False
    if _ours(exc):
        return one_line(str(exc)), FAULT, False
    if isinstance(exc, sqlite3.Error):
        # Without the file's name (SQLite does not say it): the fault and the fix all the same.
        line = str(sqlite_fault("(database)", exc)).replace(" (database)", "")
        return one_line(line), FAULT, False
    if isinstance(exc, UnicodeEncodeError) and exc.reason == "surrogates not allowed":
        return (
            "a name or argument is not valid UTF-8 text; type it again in UTF-8"
            " (check the terminal's locale, e.g. LANG=C.UTF-8)",
            USAGE,
            False,
        )
    if isinstance(exc, UnicodeError):
        return (
            f"text that is not valid UTF-8 ({exc}); save the file as UTF-8 and run again",
            FAULT,
            False,
        )
    if isinstance(exc, OSError):
        return _os_error(exc), FAULT, False
    if isinstance(exc, OverflowError):
        return f"a number is too large ({exc}); give a smaller value", USAGE, False
    if isinstance(exc, MemoryError):
        return "out of memory; close other programs or use a smaller input", FAULT, False
    return (
        f"internal error {type(exc).__name__}: {one_line(str(exc))}; this is a bug: run the"
        " same command with `kiosk -v ...` for the traceback and report it",
        FAULT,
        True,
    )
