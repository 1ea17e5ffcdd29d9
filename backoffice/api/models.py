"""Integrations (a POS, a ticketing system): each is a Django user of its own, so its rights are
the operators' permissions and groups and its actions are in the same audit trail (actor
`api:<name>`); its tokens are kept as SHA-256 digests only; answers to idempotent requests are
kept so a retry gets the same answer."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Integration(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="integration"
    )
    note = models.CharField(_("what it is"), max_length=200, blank=True)
    created = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("integration")
        verbose_name_plural = _("integrations")

    def __str__(self) -> str:
        return self.user.get_username()


class ApiToken(models.Model):
    """`kt_<prefix>_<secret>`: the prefix finds the row, the digest proves the secret."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=12, unique=True)
    digest = models.CharField(max_length=64)
    created = models.DateTimeField(_("created"), auto_now_add=True)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked = models.BooleanField(_("revoked"), default=False)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"kt_{self.prefix}_… ({self.integration})"


class IdempotentAnswer(models.Model):
    """The answer given to (integration, Idempotency-Key): the same request again gets it back;
    the same key with another request is refused (409)."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE)
    key = models.CharField(max_length=200)
    request_digest = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=("integration", "key"), name="one_answer_per_key"),
        )
