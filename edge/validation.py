"""Settings as msgspec Structs: one way to load TOML-shaped data into them (`load`), to turn them
back into plain data (`dump`), and their faults as one line a person can act on.

A leaf module: anything may import it, it imports nothing of ours. msgspec and not pydantic: the
kiosk daemon loads its config once, and pydantic alone cost it 17 MB of its 60 MB budget."""

from __future__ import annotations

import enum
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import msgspec

__all__ = ["Settings", "SettingsFault", "dump", "load"]

T = TypeVar("T")


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A settings section: frozen, keyword-only, and a key it does not know is refused. Subclasses
    say `frozen=True, kw_only=True` again: msgspec does not inherit kw_only, nor mypy frozen.
    Types and `Meta` bounds are checked by `load`, not by the constructor (code, tests); checks in
    `__post_init__` run in both, and on `msgspec.structs.replace`."""


class SettingsFault(ValueError):
    """A wrong setting: its dotted place (`agent.broker.port`) and what is wrong with it."""

    def __init__(self, place: str, what: str) -> None:
        super().__init__(f"{place or '(top level)'}: {what}")
        self.place, self.what = place, what

    def under(self, prefix: str) -> SettingsFault:
        """The same fault, placed inside section `prefix` (`broker.port` -> `agent.broker.port`)."""
        return SettingsFault(".".join(p for p in (prefix, self.place) if p), self.what)


def load(kind: type[T], data: object) -> T:
    """`data` (a dict as tomllib reads it) as the settings `kind`, with every bound checked;
    raises SettingsFault naming the first wrong setting. Strings become paths; as pydantic's lax
    mode did, a number written as a string ("8883") is taken as the number."""
    try:
        return msgspec.convert(data, kind, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        raise _fault(kind, data, str(exc)) from None


def dump(settings: object) -> Any:
    """Settings as plain data (dicts, lists, str, int...) that `load` takes back."""
    return msgspec.to_builtins(settings, enc_hook=_encode)


def _decode(kind: type, value: object) -> object:
    if isinstance(value, kind):
        return value
    if kind is Path:
        if isinstance(value, str):
            return Path(value)
        raise TypeError(f"Expected a path (`str`), got `{type(value).__name__}`")
    # A type of ours (edge.config's amounts) checks and converts what was written.
    from_setting = getattr(kind, "from_setting", None)
    if from_setting is None:
        raise NotImplementedError(f"no setting of type {kind.__name__}")  # a bug of ours
    return from_setting(value)


def _encode(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise NotImplementedError(f"cannot write a setting of type {type(value).__name__}")


_AT = re.compile(r"^(.*) - at (`key` in )?`\$(.*)`$", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_KEY_FAULTS = (
    (re.compile(r"^Object contains unknown field `(.+)`$"), "not a known setting"),
    (re.compile(r"^Object missing required field `(.+)`$"), "required, missing"),
)


def _fault(kind: type, data: object, text: str) -> SettingsFault:
    """msgspec's "Expected `int`, got `str` - at `$.agent.broker.port`" as a SettingsFault. msgspec
    writes a dict value's place as `[...]`; the key is found again as the first value that does not
    load on its own (msgspec checks values in order and stops at the first fault)."""
    m = _AT.match(text)
    what, at = (m.group(1), m.group(3)) if m else (text, "")
    if m and m.group(2):
        what = f"a key: {what}"
    place: list[str] = []
    for name, index in _STEP.findall(at):
        if name:
            data, kind = _field(data, kind, name)
            place.append(name)
        elif index == "...":
            key, data, kind = _failing_value(data, kind)
            place.append(key)
        else:
            data, kind = _item(data, kind, int(index))
            place.append(index)
    if what.startswith("Invalid enum value") and (choices := _choices(kind)):
        what = f"{what} (one of: {', '.join(choices)})"
    for pattern, plain in _KEY_FAULTS:
        if km := pattern.match(what):
            place.append(km.group(1))
            what = plain
    return SettingsFault(".".join(place), what)


def _bare(kind: Any) -> Any:
    """`kind` without Annotated metadata and without `| None`."""
    while True:
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
            continue
        arms = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(arms) == 1:
            kind = arms[0]
            continue
        return kind


def _choices(kind: Any) -> list[str]:
    kind = _bare(kind)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return [str(e.value) for e in kind]
    if typing.get_origin(kind) is typing.Literal:
        return [str(v) for v in typing.get_args(kind)]
    return []


def _field(data: object, kind: Any, name: str) -> tuple[object, Any]:
    kind = _bare(kind)
    hints = typing.get_type_hints(kind, include_extras=True) if isinstance(kind, type) else {}
    value = data.get(name) if isinstance(data, dict) else getattr(data, name, None)
    return value, hints.get(name, Any)


def _item(data: object, kind: Any, index: int) -> tuple[object, Any]:
    args = typing.get_args(_bare(kind))
    value = data[index] if isinstance(data, list) and index < len(data) else None
    return value, (args[0] if args else Any)


def _failing_value(data: object, kind: Any) -> tuple[str, object, Any]:
    args = typing.get_args(_bare(kind))
    value_kind = args[1] if len(args) == 2 else Any
    if isinstance(data, dict):
        for key, value in data.items():
            try:
                msgspec.convert(value, value_kind, strict=False, dec_hook=_decode)
            except (msgspec.ValidationError, TypeError):
                return str(key), value, value_kind
    return "?", None, value_kind
