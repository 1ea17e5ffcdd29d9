"""Every API error is `{"detail": "<one line>"}`; a refused body adds `invalid` per field."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler


def _first(errors: Any) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            return f"{field}: {_first(value)}"
    if isinstance(errors, list) and errors:
        return _first(errors[0])
    return str(errors)


def handle(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": _first(exc.detail), "invalid": exc.detail}
    return response
