"""A small TOML writer for the kiosk config (tables, strings, numbers, booleans, arrays): the
standard library reads TOML but cannot write it, and a config is all we ever write."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _table(prefix: str, table: Mapping[str, Any], out: list[str]) -> None:
    plain = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    subs = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if prefix and (plain or not subs):
        out.append(f"\n[{prefix}]")
    out.extend(f"{_key(k)} = {_value(v)}" for k, v in plain.items())
    for k, v in subs.items():
        _table(f"{prefix}.{_key(k)}" if prefix else _key(k), v, out)


def dumps(data: Mapping[str, Any]) -> str:
    out: list[str] = []
    _table("", data, out)
    return "\n".join(out).lstrip("\n") + "\n"
