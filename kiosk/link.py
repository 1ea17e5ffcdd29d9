"""How `kiosk` wires a kiosk to the cloud: the `[agent]` section of the kiosk's config becomes the
sync agent's settings (cloud_sync), and the daemon gets the agent through a factory, so that the
daemon itself never imports the cloud side."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from edge.checks.system import BrokerAddress
from edge.config import ConfigError, KioskConfig, load_config
from edge.validation import SettingsFault, load

if TYPE_CHECKING:
    from cloud_sync.settings import AgentSettings
    from edge.daemon.daemon import CloudLink, LinkFactory
    from edge.ledger import Ledger


def agent_settings(cfg: KioskConfig) -> AgentSettings | None:
    """The sync agent's settings, or None when this kiosk has no cloud link. Site, device and
    key come from `[kiosk]`; the agent's state file sits in the kiosk's state dir."""
    if cfg.agent is None:
        return None
    from cloud_sync.settings import AgentSettings

    k = cfg.kiosk
    return load(
        AgentSettings,
        {
            "state_file": k.state_dir / "agent.db",
            **cfg.agent,
            "site": k.site,
            "device": k.id,
            "key_file": k.key_file,
        },
    )


def load_kiosk_config(path: Path) -> KioskConfig:
    """The kiosk's config with its `[agent]` section checked too; raises ConfigError naming the
    file and the setting (`agent.broker.port: ...`)."""
    cfg = load_config(path)
    try:
        agent_settings(cfg)
    except SettingsFault as exc:
        raise ConfigError(f"{path}: wrong settings: {exc.under('agent')}") from None
    return cfg


def broker_address(cfg: KioskConfig) -> BrokerAddress | None:
    """Where the self-test looks for the broker and the device certificate."""
    settings = agent_settings(cfg)
    if settings is None:
        return None
    broker = settings.broker
    cert = broker.tls.cert if broker.tls is not None else None
    return BrokerAddress(broker.host, broker.port, cert)


def link_factory(cfg: KioskConfig) -> LinkFactory | None:
    """What the daemon calls to open its cloud link, or None for a kiosk that runs alone."""
    settings = agent_settings(cfg)
    if settings is None:
        return None

    def open_link(ledger: Ledger) -> AbstractAsyncContextManager[CloudLink]:
        # Imported only when configured: aiomqtt and TLS are not a standalone kiosk's cost.
        from cloud_sync.agent import SyncAgent

        return SyncAgent(ledger, settings)

    return open_link
