"""The chain admin also holds every permission of the API's integrations and of webhooks; a
venue manager may replay webhook deliveries and see them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

APPS = ("api", "webhooks")
VENUE_MANAGER = (("webhooks", "view_delivery"), ("webhooks", "replay_delivery"))


def grant(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    admin, _ = Group.objects.get_or_create(name="chain admin")
    admin.permissions.add(*Permission.objects.filter(content_type__app_label__in=APPS))
    manager = Group.objects.filter(name="venue manager").first()
    if manager is not None:
        for label, codename in VENUE_MANAGER:
            manager.permissions.add(
                Permission.objects.get(content_type__app_label=label, codename=codename)
            )


class Migration(migrations.Migration):
    dependencies = [
        ("operators", "0002_default_groups"),
        ("api", "0001_initial"),
        ("webhooks", "0001_initial"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
