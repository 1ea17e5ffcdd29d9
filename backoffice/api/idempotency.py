"""Idempotency-Key for the API's writes: the same key with the same request is answered with the
first answer (even if the first attempt is still being retried by a flaky network), the same key
with another request is refused with 409."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.db import IntegrityError, transaction
from rest_framework.request import Request
from rest_framework.response import Response

from backoffice.api.models import IdempotentAnswer

HEADER = "Idempotency-Key"


def _digest(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def answer_once(request: Request, make: Callable[[], Response]) -> Response:
    key = (request.headers.get(HEADER) or "").strip()
    if not key or len(key) > 200:
        return Response({"detail": f"send an {HEADER} header (1-200 characters)"}, status=400)
    integration = request.auth.integration  # type: ignore[union-attr]
    digest = _digest(request)
    found = IdempotentAnswer.objects.filter(integration=integration, key=key).first()
    if found is None:
        response = make()
        if response.status_code >= 500:
            return response
        try:
            with transaction.atomic():
                found = IdempotentAnswer.objects.create(
                    integration=integration,
                    key=key,
                    request_digest=digest,
                    status=response.status_code,
                    body=response.data,
                )
        except IntegrityError:  # a concurrent retry answered first: give its answer
            found = IdempotentAnswer.objects.get(integration=integration, key=key)
        else:
            return response
    if found.request_digest != digest:
        return Response({"detail": f"{HEADER} {key} was used for another request"}, status=409)
    replay = Response(found.body, status=found.status)
    replay["Idempotent-Replayed"] = "true"
    return replay
