"""The shipped operator groups: cashier, venue manager, chain admin, auditor."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from backoffice.operators.groups import CHAIN_ADMIN, CHAIN_ADMIN_APPS, GROUPS


def make_groups(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate): make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, perms in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for dotted in perms:
            label, codename = dotted.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=label, codename=codename)
            )
    admin, _ = Group.objects.get_or_create(name=CHAIN_ADMIN)
    admin.permissions.add(*Permission.objects.filter(content_type__app_label__in=CHAIN_ADMIN_APPS))


def drop_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[*GROUPS, CHAIN_ADMIN]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("operators", "0001_initial"),
        ("members", "0001_initial"),
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("auditlog", "__latest__"),
        ("axes", "__latest__"),
        ("otp_totp", "__latest__"),
        ("contenttypes", "__latest__"),
    ]

    operations = [migrations.RunPython(make_groups, drop_groups)]
