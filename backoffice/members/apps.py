from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MembersConfig(AppConfig):
    name = "backoffice.members"
    label = "members"
    verbose_name = _("Members and cards")

    def ready(self) -> None:
        from auditlog.registry import auditlog
        from django.contrib.auth.models import Group, User

        from backoffice.members.models import Card, Member
        from backoffice.operators.models import Operator

        # Changes to the console's own rows (profiles, operators, groups) in django-auditlog's
        # change log; the actions on the cloud go to our Action trail.
        auditlog.register(Member)
        auditlog.register(Card)
        auditlog.register(Operator)
        auditlog.register(User, exclude_fields=["password", "last_login"])
        auditlog.register(Group, m2m_fields={"permissions"})
