"""The fleet's starting state, built once per run and copied for every policy: deterministic
keys, the cloud's store with every member, card, balance, pass and coupon, and a kiosk ledger
that already holds the cloud's chain (as an enrolled kiosk would after its first sync)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.store import SqliteCloudStore
from cloud_sync.streams import HOME
from edge.drivers.base import Token, TokenKind
from edge.ledger import Intent, Kind, Ledger, RiskPolicy, public_bytes
from edge.ledger import records as rec
from edge.ledger.store import Clock
from edge.taps.tokens import card_ref
from kiosk.sim.population import Population

EPOCH_MS = 1_748_822_400_000  # 2025-06-02T00:00:00Z: midnight of the simulated day
SITE_KEY = b"kiosk-edge-fleet-simulation-key!"  # card-reference HMAC key (32 bytes)
CLOUD = "cloud"


def key_for(seed: int, name: str) -> Ed25519PrivateKey:
    """A replica's key, the same in every run with this seed (Ed25519 signing is deterministic,
    so the ops and their sizes are too)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest())


def token(uid: str) -> Token:
    return Token(TokenKind.NTAG424_SUN, uid, True)


def _copy_private(seed: Path, path: Path) -> None:
    """A copy of a seed ledger, owner-only like every ledger the product creates."""
    shutil.copyfile(seed, path)
    path.chmod(0o600)


@dataclass(frozen=True, slots=True)
class Seed:
    dir: Path
    seed: int

    @property
    def cloud_db(self) -> Path:
        return self.dir / "cloud-seed.db"

    @property
    def kiosk_db(self) -> Path:
        return self.dir / "kiosk-seed.db"

    def open_store(self, path: Path, clock: Clock) -> SqliteCloudStore:
        _copy_private(self.cloud_db, path)
        # durable=False: the durability the product needs is not what a simulation measures.
        store = SqliteCloudStore(path, replica=CLOUD, key=key_for(self.seed, CLOUD), durable=False)
        store.ledger.clock = clock
        return store

    def open_central(self, path: Path, clock: Clock, risk: RiskPolicy) -> Ledger:
        _copy_private(self.cloud_db, path)
        key = key_for(self.seed, CLOUD)
        return Ledger(
            path, replica=CLOUD, key=key, role="cloud", risk=risk, clock=clock, durable=False
        )

    def open_kiosk(self, path: Path, device: str, clock: Clock, risk: RiskPolicy) -> Ledger:
        _copy_private(self.kiosk_db, path)
        key = key_for(self.seed, device)
        return Ledger(path, replica=device, key=key, risk=risk, clock=clock, durable=False)


def build_seed(folder: Path, pop: Population, seed: int) -> Seed:
    folder.mkdir(parents=True, exist_ok=True)
    s = Seed(folder, seed)
    clock = Clock(wall_ms=lambda: EPOCH_MS, mono_ms=lambda: 0)
    store = SqliteCloudStore(s.cloud_db, replica=CLOUD, key=key_for(seed, CLOUD), durable=False)
    store.ledger.clock = clock
    for k in pop.kiosks:
        store.trust(k.id, public_bytes(key_for(seed, k.id)), "kiosk")
        store.enroll(k.id, k.site, k.role.value)
    version = EPOCH_MS - 86_400_000
    day_end = EPOCH_MS + 8 * 86_400_000
    for m in pop.members:
        ref = card_ref(SITE_KEY, token(m.uid))
        # The home first: it scopes every later op of the account to the kiosks of that site.
        intents = rec.register_writes(m.id, version, **{HOME: m.home})
        intents += rec.member_intents(m.id, f"Member {m.id[1:]}", version, tier=m.tier)
        intents += rec.card_intents(ref, m.id, version)
        if m.time_pass:
            intents += rec.register_writes(
                m.id, version, **{rec.PASS_PREFIX + "swim": f"{EPOCH_MS - 1}-{day_end}"}
            )
        if m.cash:
            intents.append(Intent(Kind.INC, m.id, "cash", m.cash))
        if m.visits:
            intents.append(Intent(Kind.INC, m.id, "visits:swim", m.visits))
        if m.coupon:
            coupon = rec.COUPON_PREFIX + m.coupon
            intents += rec.register_writes(coupon, version, **{HOME: m.home})
            intents.append(Intent(Kind.INC, coupon, rec.COUPON_PURSE, 1))
        store.append(intents, ref=f"enrol:{m.id}")
    store.ledger.checkpoint()
    store.close()
    # A kiosk starts knowing only the cloud's key: its stream brings what its scope needs.
    kiosk = Ledger(s.kiosk_db, durable=False)
    kiosk.trust(CLOUD, public_bytes(key_for(seed, CLOUD)), "cloud")
    kiosk.checkpoint()
    kiosk.close()
    return s
