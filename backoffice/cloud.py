"""The console's one handle on the cloud: the store and reconciler opened once per process with
the cloud's signing key (operators never see it), the site secret for card references, and
publishing deny-list deltas to kiosks. Waitress serves on several threads and the reconciler
takes one caller at a time, so every use holds `lock`."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import aiomqtt

from cloud_sync import admin
from cloud_sync.errors import ConfigError
from cloud_sync.reconciler import Outgoing, Reconciler
from cloud_sync.settings import CloudConfig
from cloud_sync.store import CloudStore, open_store
from edge.ledger import load_private_key
from edge.ledger import records as rec
from edge.ledger.sitekey import SiteSecrets, load_site_secrets

log = logging.getLogger(__name__)


class Cloud:
    def __init__(self, cfg: CloudConfig) -> None:
        s = cfg.reconciler
        self.cfg = cfg
        key = load_private_key(s.key_file)
        self.store: CloudStore = open_store(s.store, replica=s.replica, key=key)
        self.reconciler = Reconciler(self.store, key, escrow=s.escrow, chain_chunk=s.chain_chunk)
        from cloud_sync.fleet import FleetRecords

        self.fleet = FleetRecords(s.store)  # kiosk health reports and alerts
        self.secrets: SiteSecrets | None = (
            load_site_secrets(s.site_key_file) if s.site_key_file else None
        )
        self.lock = threading.RLock()

    def card_refs(self, number: str) -> list[str]:
        """The references a typed card number or NFC UID may have (printed number, SUN UID,
        UID-only card). A number with a wrong check digit names no card."""
        if self.secrets is None or not number.strip():
            return []
        check = self.cfg.membership.card_check_digit
        refs = (
            [admin.card_token(self.secrets, number, check_digit=check)]
            if admin.number_checks(number) or not check
            else []
        )
        if all(c in "0123456789abcdefABCDEF " for c in number):
            refs += [admin.card_token(self.secrets, number, k) for k in ("nfc", "uid")]
        return refs

    def card_token(self, number: str, kind: str) -> str:
        if self.secrets is None:
            raise ConfigError("set reconciler.site_key_file: card numbers need the site key")
        check = self.cfg.membership.card_check_digit
        return admin.card_token(self.secrets, number, kind, check_digit=check)

    def sites(self) -> list[str]:
        known = set(self.cfg.console.sites) | {d.site for d in self.store.devices()}
        return sorted(known)

    def publish(self, outs: Sequence[Outgoing]) -> bool:
        """Send deny-list deltas now; False if the broker is unreachable (the reconciler sends
        the stored delta when kiosks next say hello)."""
        try:
            asyncio.run(admin.publish_once(self.cfg.reconciler.broker, list(outs)))
        except (aiomqtt.MqttError, OSError) as exc:
            log.warning("deny-list delta stored but not published: %s", exc)
            return False
        return True

    def account_state(self, account: str) -> dict[str, object]:
        """What an action may change about an account, for the audit trail's before/after."""
        store = self.store
        name = store.register(account, rec.MEMBER_NAME)
        return {
            "name": name.value if name else None,
            "balances": {p.purse: p.value for p in store.purses(account)},
        }


_cloud: Cloud | None = None
_open_lock = threading.Lock()


def cloud() -> Cloud:
    """The process's cloud handle, opened from the config the console was started with."""
    global _cloud
    with _open_lock:
        if _cloud is None:
            from django.conf import settings

            cfg: CloudConfig | None = settings.CLOUD
            if cfg is None:
                raise ConfigError("the console was started without a cloud config")
            _cloud = Cloud(cfg)
        return _cloud
