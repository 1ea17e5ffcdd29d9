"""Secrets typed on a command line (PINs, card numbers, claim codes) without leaving them in `ps`
or the shell history: the option also takes `-` (standard input), `@FILE` (a file) or no value at
all (a prompt without echo)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

PROMPT = "\x00ask"  # the option given without a value

HOW = "`-` reads it from standard input, `@FILE` from a file, the option alone asks without echo"


def read_secret(value: str, what: str) -> str:
    """The secret a value stands for: asked for, read from standard input or a file, or the
    value itself (discouraged: visible to other users of the machine)."""
    if value == PROMPT:
        return str(click.prompt(what, hide_input=True)).strip()
    if value == "-":
        line = sys.stdin.readline()
        if not line.strip():
            raise click.BadParameter(f"no {what} on standard input")
        return line.strip()
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise click.BadParameter(f"{path}: {exc.strerror or exc}") from exc
        if not text:
            raise click.BadParameter(f"{path} is empty; it should hold the {what}")
        return text
    return value


class Secret(click.ParamType):  # type: ignore[type-arg]
    """A secret option's type: resolves `-`, `@FILE` and the prompt, then checks the text with
    `inner` (another parameter type), if given."""

    name = "SECRET"

    def __init__(self, what: str, inner: click.ParamType[Any] | None = None) -> None:
        self.what = what
        self.inner = inner

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        text = read_secret(value, self.what)
        return self.inner.convert(text, param, ctx) if self.inner is not None else text


def secret_option(
    *decls: str, what: str, help: str, inner: click.ParamType[Any] | None = None, **kwargs: Any
) -> Callable[[F], F]:
    """A click option for a secret, taking `-`, `@FILE` or no value (prompt)."""
    return click.option(
        *decls,
        type=Secret(what, inner),
        is_flag=False,
        flag_value=PROMPT,
        help=f"{help} ({HOW}).",
        **kwargs,
    )
