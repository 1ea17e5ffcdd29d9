"""How `kiosk cloud ...` commands reach the console's audit trail: when the console's database
exists (the console has run its migrations there), the command is recorded in it through the
same Django model, as actor `cli:<unix user>`. Imported lazily by the CLI only."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloud_sync.settings import CloudConfig
from edge.ledger import LedgerError
from edge.ledger.sitekey import load_site_secrets

log = logging.getLogger(__name__)


def console_database_exists(cfg: CloudConfig) -> bool:
    url = cfg.console_database()
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).exists()
    return cfg.console.database is not None  # a configured PostgreSQL database


def setup_django(cfg: CloudConfig) -> None:
    from backoffice import CONFIG_ENV

    if cfg.path is not None:
        os.environ[CONFIG_ENV] = str(cfg.path.resolve())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
    import django

    django.setup()


def audit_cli(cfg: CloudConfig, command: str, params: Mapping[str, Any], error: str) -> None:
    if importlib.util.find_spec("django") is None or not console_database_exists(cfg):
        return
    setup_django(cfg)
    from backoffice.audit.trail import record_cli
    from cloud_sync import admin

    secrets = None
    if cfg.reconciler.site_key_file is not None:
        try:
            secrets = load_site_secrets(cfg.reconciler.site_key_file)
        except LedgerError:
            secrets = None

    def card_ref(number: str) -> str:
        if secrets is not None:
            return admin.card_token(secrets, number, check_digit=False)  # whatever was typed
        return hashlib.sha256(number.encode()).hexdigest()[:16]  # never the number itself

    record_cli(command, params, error, card_ref)
