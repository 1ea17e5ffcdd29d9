from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OperatorsConfig(AppConfig):
    name = "backoffice.operators"
    label = "operators"
    verbose_name = _("Operators")

    def ready(self) -> None:
        from backoffice.operators import signals  # noqa: F401 - an Operator row per user
