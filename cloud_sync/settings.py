"""Settings of the agent (kiosk side) and the reconciler (cloud side), as msgspec Structs loaded
from a TOML file; every field has a working default except who and where a replica is."""

from __future__ import annotations

import socket
import ssl
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from msgspec import Meta, field
from msgspec.structs import replace

from cloud_sync.errors import ConfigError
from cloud_sync.membership import MembershipSettings
from cloud_sync.protocol import CLIENT_ID_PREFIX, check_name
from edge.ledger.chain import KioskAuthority
from edge.validation import Settings, SettingsFault, load


class TlsSettings(Settings, frozen=True, kw_only=True):
    """Mutual TLS: the deployment CA, and this party's certificate and key (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx


class BrokerSettings(Settings, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8883
    tls: TlsSettings | None = None
    keepalive_s: Annotated[int, Meta(ge=5)] = 30
    connect_timeout_s: Annotated[float, Meta(gt=0)] = 5.0
    mqtt_version: Literal[4, 5] = 5  # 4 = MQTT 3.1.1 (e.g. the embedded amqtt broker)

    def client_kwargs(self, session_expiry_s: int | None = None) -> dict[str, Any]:
        """Keyword arguments for aiomqtt.Client shared by the agent and the reconciler; with
        `session_expiry_s`, a persistent session (v5 needs the expiry property besides
        clean_start=False, or the broker drops what arrives while we reconnect)."""
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        session: dict[str, Any] = {}
        if self.mqtt_version == 5:
            session["protocol"] = aiomqtt.ProtocolVersion.V5
            if session_expiry_s is not None:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = session_expiry_s
                session["clean_start"] = False
                session["properties"] = props
        else:
            session["protocol"] = aiomqtt.ProtocolVersion.V311
            session["clean_session"] = session_expiry_s is None
        return session | {
            "hostname": self.host,
            "port": self.port,
            "keepalive": self.keepalive_s,
            "timeout": self.connect_timeout_s,
            "tls_context": self.tls.context() if self.tls else None,
            # paho does not set TCP_NODELAY: without it a QoS 1 round trip takes ~88 ms.
            "socket_options": ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        }


class AgentSettings(Settings, frozen=True, kw_only=True):
    """The kiosk's sync agent."""

    site: str
    device: str
    broker: BrokerSettings = BrokerSettings()
    key_file: Path | None = None  # the device's Ed25519 key (the ledger's signing key)
    state_file: Path | None = None  # deny list and last ack; default beside nothing: in memory
    batch_size: Annotated[int, Meta(ge=1, le=1000)] = 100
    window: Annotated[int, Meta(ge=1)] = 500  # ops sent and not yet acked
    ack_timeout_s: Annotated[float, Meta(gt=0)] = 3.0
    rights_budget_ms: Annotated[int, Meta(ge=1)] = 300
    poll_interval_s: Annotated[float, Meta(gt=0)] = 0.2
    sync_interval_s: Annotated[float, Meta(gt=0)] = 30.0
    backoff_min_s: Annotated[float, Meta(gt=0)] = 0.2
    backoff_max_s: Annotated[float, Meta(gt=0)] = 30.0

    def __post_init__(self) -> None:
        check_name(self.site, "site")
        check_name(self.device, "device")


class EscrowPolicy(Settings, frozen=True, kw_only=True):
    """How the cloud hands out its rights.

    Working float: when a kiosk spends from a purse, the cloud tops that kiosk's rights on the
    purse up to `float_fraction` of the cloud's free rights (capped by `float_max` per unit).
    Online requests get what they ask plus `request_headroom` of a float. Rights a kiosk has not
    used for `idle_recall_s` are recalled. Nothing beyond what a tap asks is placed at a kiosk
    if the cloud would keep less than `reserve` of the member's rights free.
    """

    float_fraction: Annotated[float, Meta(ge=0, le=1)] = 0.25
    float_max: dict[str, int] = field(default_factory=dict)  # per purse unit, e.g. {"cash": 5000}
    request_headroom: bool = True
    idle_recall_s: Annotated[float, Meta(gt=0)] = 3600.0
    # A request the free rights cannot cover, while kiosks hold enough: recall and answer when
    # the rights are back, or refuse after this long (the kiosk's rights budget is 300 ms).
    recall_wait_ms: Annotated[int, Meta(ge=0)] = 1000
    # Per purse unit: rights an idle recall leaves at a kiosk of the member's own scope, so a
    # member can still pay at their usual venue when it is cut off (docs/escrow-policy.md).
    standing: dict[str, int] = field(default_factory=lambda: {"cash": 1500, "visits": 1})
    # Per purse unit: what the cloud always keeps free of a member's rights when it places any
    # beyond what a tap asks (floats, headroom, standing floats), so a member can still spend
    # elsewhere while a kiosk holding some of their rights is cut off (docs/escrow-policy.md).
    reserve: dict[str, int] = field(default_factory=lambda: {"cash": 5000, "visits": 1})


class TrustPolicy(Settings, frozen=True, kw_only=True):
    """What the cloud accepts from each kiosk (`[reconciler.trust]`), beyond the chain rules.
    An op outside these bounds quarantines its kiosk: the op and the kiosk's later ops are held
    for an operator's review (`kiosk cloud device review`) and applied only once released.
    A gate or point of sale never credits cash; points only within what the same tap paid.
    A top-up kiosk credits cash up to `credit_per_op` per op and `credit_per_day` per cloud day
    (UTC; 0 = no day bound). Debits beyond the kiosk's rights only within `debt_per_op` (the
    offline risk allowance the kiosks are configured with; 0 = strict)."""

    credit_per_op: Annotated[int, Meta(ge=0)] = 100_000
    credit_per_day: Annotated[int, Meta(ge=0)] = 1_000_000
    points_per_100: Annotated[int, Meta(ge=0)] = 100
    debt_per_op: Annotated[int, Meta(ge=0)] = 0
    version_ahead_s: Annotated[int, Meta(ge=0)] = 86_400

    def authority(self, role: str) -> KioskAuthority:
        return KioskAuthority(
            role=role,
            credit_per_op=self.credit_per_op,
            credit_per_day=self.credit_per_day or None,
            points_per_100=self.points_per_100,
            debt_per_op=self.debt_per_op,
            version_ahead_ms=self.version_ahead_s * 1000,
        )


class EnrollSettings(Settings, frozen=True, kw_only=True):
    """Online enrollment with claim codes (`[reconciler.enroll]`): where the deployment CA is, the
    site config templates (`<sites_dir>/<site>.toml`) and site secrets (`<site>.site.key`, else
    `reconciler.site_key_file`), and the broker address written into enrolled kiosks'
    `[agent.broker]`: the host the kiosk enrolled through unless `broker_host` is set, and the
    device listener's port (`kiosk cloud broker-config --port`; the reconciler's own port is
    the cloud listener, where a kiosk may do nothing)."""

    ca_dir: Path
    sites_dir: Path
    broker_host: str | None = None
    broker_port: Annotated[int, Meta(ge=1, le=65535)] = 8883
    cert_days: Annotated[int, Meta(ge=1)] = 825
    answer_ttl_s: Annotated[int, Meta(ge=60)] = 900  # the enrollment document's validity


class AlertSettings(Settings, frozen=True, kw_only=True):
    """`[reconciler.alerts]`: when the reconciler marks a kiosk offline and raises alerts."""

    offline_after_s: Annotated[float, Meta(gt=0)] = 90.0  # no status or hello: marked offline
    offline_alert_s: Annotated[float, Meta(ge=0)] = 300.0  # offline this long: alert
    disk_low_bytes: Annotated[int, Meta(ge=0)] = 200_000_000
    refusals_per_min: Annotated[int, Meta(ge=1)] = 10  # messages the reconciler refused
    check_interval_s: Annotated[float, Meta(gt=0)] = 5.0


class ReconcilerSettings(Settings, frozen=True, kw_only=True):
    """The cloud reconciler."""

    replica: str = "cloud"
    key_file: Path
    store: str = "sqlite:///cloud.db"  # or postgresql://...
    broker: BrokerSettings = BrokerSettings()
    shared: bool = False  # subscribe through $share/reconcilers/ (several processes, PostgreSQL)
    # Empty: "/reconciler-" and 128 random bits, new at each start. Whoever knows a reconciler's
    # id can take its session (and the messages queued for it): a fixed one must be as secret.
    client_id: str = ""
    session_expiry_s: Annotated[int, Meta(ge=0)] = 3600
    escrow: EscrowPolicy = EscrowPolicy()
    trust: TrustPolicy = TrustPolicy()
    sweep_interval_s: Annotated[float, Meta(gt=0)] = 60.0
    site_key_file: Path | None = None  # HMAC key for card numbers (operator CLI)
    chain_chunk: Annotated[int, Meta(ge=1)] = 200
    # An op or message stamped further than this from the cloud's clock is flagged (log and
    # `kiosk cloud kiosks`): a kiosk clock that is wrong, or ops made up for later.
    max_skew_s: Annotated[int, Meta(gt=0)] = 600
    enroll: EnrollSettings | None = None  # online enrollment (claim codes) when set
    # Each kiosk's stream (docs/knowledge-model.md): kept here, and pushed this often.
    streams_file: Path = Path("streams.db")
    stream_interval_s: Annotated[float, Meta(gt=0)] = 0.25
    # Scope groups: home "chain-a" = these sites; a member whose home is the group is known at
    # every kiosk of its sites.
    scopes: dict[str, list[str]] = field(default_factory=dict)
    alerts: AlertSettings = AlertSettings()
    metrics_port: Annotated[int, Meta(ge=1, le=65535)] | None = None  # Prometheus endpoint
    metrics_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        v = self.client_id
        if v and (not v.startswith(CLIENT_ID_PREFIX) or len(v) < 24):
            raise ValueError(
                f"client_id must start with {CLIENT_ID_PREFIX!r} (the broker refuses other ids)"
                " and be at least 24 characters of secret; leave it out for a random one"
            )
        scheme, sep, _ = self.store.partition("://")
        if sep and scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"unknown store backend {scheme!r}: use sqlite:///PATH or postgresql://..."
            )


class ConsoleSettings(Settings, frozen=True, kw_only=True):
    """The operators' web console (`[console]`, package `backoffice`): its own database (default
    `console.db` beside a SQLite cloud store; `postgresql://...` at scale), the file holding its
    session-signing secret (default `console.secret` beside the database or config), and the
    lockout after wrong passwords. The CLI records its actions in the same audit trail when the
    console's database exists."""

    database: str | None = None
    secret_key_file: Path | None = None
    lockout_failures: Annotated[int, Meta(ge=1)] = 5
    lockout_minutes: Annotated[int, Meta(ge=1)] = 15
    sites: list[str] = field(default_factory=list)  # venues offered in forms (else from kiosks)


class SiteLocale(Settings, frozen=True, kw_only=True):
    """How a venue reads its reports: currency sign and time zone (its days start at local
    midnight)."""

    currency: Annotated[str, Meta(max_length=3)] = ""
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            fault = f"timezone {self.timezone!r} is not a known time zone (e.g. Asia/Shanghai)"
            raise ValueError(fault) from None


class ReportSettings(SiteLocale, frozen=True, kw_only=True):
    """`[reports]`: the chain's currency and time zone, and per venue overrides
    (`[reports.sites.<site>]`)."""

    sites: dict[str, SiteLocale] = field(default_factory=dict)

    def locale(self, site: str | None) -> SiteLocale:
        return self.sites.get(site or "", self)


class WebhookSettings(Settings, frozen=True, kw_only=True):
    """`[webhooks]`: delivery of events to integrations (`backoffice.webhooks`)."""

    attempts: Annotated[int, Meta(ge=1, le=30)] = 8  # then the delivery is marked failed
    backoff_s: Annotated[float, Meta(gt=0)] = 2.0  # first retry; doubles each time
    backoff_max_s: Annotated[float, Meta(gt=0)] = 3600.0
    timeout_s: Annotated[float, Meta(gt=0)] = 5.0
    poll_s: Annotated[float, Meta(gt=0)] = 1.0  # how often the worker looks for new ops
    low_balance: Annotated[int, Meta(ge=0)] = 1000  # cash at or below this after a tap: an event
    worker: bool = True  # run the delivery worker inside `kiosk cloud console`


class CloudConfig(Settings, frozen=True, kw_only=True):
    """A TOML file with a `[reconciler]` table (and optionally `[agent]` for a test kiosk, and
    `[console]` for the back office)."""

    kind: Literal["kiosk-edge-cloud"] = "kiosk-edge-cloud"
    reconciler: ReconcilerSettings
    membership: MembershipSettings = MembershipSettings()
    console: ConsoleSettings = ConsoleSettings()
    reports: ReportSettings = ReportSettings()
    webhooks: WebhookSettings = WebhookSettings()
    path: Path | None = None  # the file it came from (load_config)

    def console_database(self) -> str:
        """Where the console's own tables live: `[console] database`, else `console.db`
        beside a SQLite cloud store (or beside this config when the store is PostgreSQL)."""
        if self.console.database:
            return self.console.database
        store = self.reconciler.store
        if store.startswith(("postgresql://", "postgres://")):
            base = self.path.parent if self.path else Path.cwd()
            return f"sqlite:///{base / 'console.db'}"
        # Relative like the store's own path (both to the working directory).
        sqlite_path = Path(store.removeprefix("sqlite:///"))
        return f"sqlite:///{sqlite_path.parent / 'console.db'}"


def _beside(base: Path, table: object, keys: tuple[str, ...]) -> None:
    """Relative paths among `keys` of a config table are taken from the config's folder (a
    value of the wrong type is left for the settings check to name)."""
    if not isinstance(table, dict):
        return
    for k in keys:
        value = table.get(k)
        if isinstance(value, str) and not Path(value).is_absolute():
            table[k] = str(base / value)


def load_config(path: Path) -> CloudConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    data.setdefault("kind", "kiosk-edge-cloud")
    base = path.parent
    rec = data.get("reconciler", {})
    if isinstance(rec, dict):
        rec.setdefault("streams_file", "streams.db")
        _beside(base, rec, ("key_file", "site_key_file", "streams_file"))
        broker = rec.get("broker")
        tls = broker.get("tls") if isinstance(broker, dict) else None
        _beside(base, tls, ("ca", "cert", "key"))
        _beside(base, rec.get("enroll"), ("ca_dir", "sites_dir"))
    _beside(base, data.get("console"), ("secret_key_file",))
    try:
        return replace(load(CloudConfig, data), path=path)
    except SettingsFault as exc:
        raise ConfigError(f"{path}: wrong settings: {exc}") from None
