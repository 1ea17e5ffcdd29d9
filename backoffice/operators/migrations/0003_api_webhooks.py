"""The chain admin also holds every permission of reports, the API's integrations and webhooks;
a venue manager may see reports and see and replay webhook deliveries; an auditor sees
reports."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

APPS = ("reports", "api", "webhooks")
GRANTS = {
    "venue manager": (
        ("reports", "view_report"),
        ("webhooks", "view_delivery"),
        ("webhooks", "replay_delivery"),
    ),
    "auditor": (("reports", "view_report"), ("webhooks", "view_delivery")),
}


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    admin, _ = Group.objects.get_or_create(name="chain admin")
    admin.permissions.add(*Permission.objects.filter(content_type__app_label__in=APPS))
    for name, perms in GRANTS.items():
        group = Group.objects.filter(name=name).first()
        if group is None:  # removed by the chain admin
            continue
        for label, codename in perms:
            group.permissions.add(
                Permission.objects.get(content_type__app_label=label, codename=codename)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("operators", "0002_default_groups"),
        ("reports", "0001_initial"),
        ("api", "0001_initial"),
        ("webhooks", "0001_initial"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
