"""Every user gets an Operator row (no venue: the whole chain) when created."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models.signals import post_save
from django.dispatch import receiver

from backoffice.operators.models import Operator


@receiver(post_save, sender=User)
def _operator_row(sender: type[User], instance: User, created: bool, **kw: Any) -> None:
    if created:
        Operator.objects.get_or_create(user=instance)
