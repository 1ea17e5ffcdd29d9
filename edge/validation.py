"""Settings faults as one line a person can act on (every config reader uses this).

A leaf module: anything may import it, it imports nothing of ours."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class _HasErrors(Protocol):
    def errors(self) -> Sequence[Mapping[str, Any]]: ...


def settings_faults(exc: _HasErrors, prefix: str = "") -> str:
    """A pydantic ValidationError as one line a person can act on: `agent.broker.port: Input should
    be a valid integer; site: Field required` (each setting's dotted place, then what is wrong)."""
    faults = []
    for err in exc.errors():
        place = [*(prefix.split(".") if prefix else []), *(str(p) for p in err["loc"])]
        where = ".".join(place)
        faults.append(f"{where or '(top level)'}: {err['msg']}")
    return "; ".join(faults)
