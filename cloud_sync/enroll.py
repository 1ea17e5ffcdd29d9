"""Online enrollment with one-time claim codes (the cloud side; the wire format both
sides use is cloud_sync.enroll_wire).

The operator creates a claim (`kiosk cloud claim create --site S`): a random code of 100 bits
that the field tech types on the kiosk (`kiosk provision enroll --claim CODE`). Everything is
derived from the code with HKDF; the code itself never travels and is never stored:

- claim id (128 bits, hex): the MQTT topic level and the client id on the enrollment listener
  (`kiosk/v1/enroll/<claim id>/req|res`; the broker ACL lets client `%c` use only its own two
  topics), and the store's key for the claim;
- claim key: stored with the claim; from it a MAC key and an AES-GCM key.

The device (no certificate yet) connects to the enrollment-only listener (server TLS, anonymous)
and sends a request: device id, a CSR for its new TLS key, its Ed25519 ledger public key, a
random nonce and the reenroll flag, MACed with the claim's MAC key (proof of the code) and
signed with the ledger key (proof of possession; the CSR proves the TLS key).

The cloud checks the MAC, the claim (known, unexpired, unused, device name allowed), signs the
CSR's public key with the deployment CA (CN = device id, OU = site, client auth only), marks the
claim used in one conditional UPDATE (exactly one winner among reconcilers), trusts the ledger
key and records the device. Its answer carries the enrollment document (the same cloud-signed
document as an offline bundle: site config, cloud public key, site secret), the certificate and
the CA certificate, signed by the cloud's Ed25519 key and encrypted with AES-GCM under the claim
key, bound to the digest of the request it answers. A snooper on the anonymous listener learns
nothing and cannot forge or replay an answer.

How the device comes to trust the cloud key (it has none pinned yet): the answer decrypts only
under the claim key, which only the cloud (the store) and the holder of the code have, so the
cloud public key inside is as trustworthy as the code; the device then checks every cloud
signature against that key, and against the key already pinned (re-enrollment) or given with
`--cloud-public-key` (the operator's `claim create` prints it), if any. The TLS certificate of
the enrollment listener is checked against `--ca` (or the system CAs).

A replayed request (the same bytes, e.g. a redelivery after a crash) changes nothing: while the
claim is valid it is answered again from what was stored; any other request on a used claim is
refused. Both are logged.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloud_sync import ca
from cloud_sync.enroll_wire import (
    DEVICE_ID,
    ENCODER,
    RESERVED_SITES,
    VERSION,
    Answer,
    ClaimKeys,
    EnrollError,
    Grant,
    Request,
    answer_topic,
    box_aad,
    claim_mac,
    digest,
    grant_bytes,
    new_code,
    open_request,
    parse_request_topic,
    refusal_bytes,
)
from cloud_sync.errors import ConfigError, MessageRefused, SyncError
from cloud_sync.protocol import check_name
from cloud_sync.reconciler import Outgoing, wall_ms
from cloud_sync.settings import EnrollSettings
from cloud_sync.store import Claim, CloudStore
from edge.ledger import LedgerError
from edge.ledger.keys import public_bytes

log = logging.getLogger(__name__)


# -- operator side ---------------------------------------------------------------------------


def create_claim(
    store: CloudStore,
    *,
    site: str,
    ttl: timedelta,
    device: str = "",
    now_ms: int | None = None,
) -> tuple[str, Claim]:
    """A new one-time claim for `site` (and only `device`, if given): returns (code, claim).
    The code is shown once; the store keeps its hash and derived key only."""
    check_name(site, "site")
    if site in RESERVED_SITES:
        raise ConfigError(f"site name {site!r} is reserved")
    if device and not DEVICE_ID.match(device):
        raise ConfigError(f"device id {device!r}: 1-32 of A-Z a-z 0-9 _ . -")
    code = new_code()
    keys = ClaimKeys.from_code(code)
    now = wall_ms() if now_ms is None else now_ms
    claim = Claim(
        claim_id=keys.claim_id,
        key=keys.key,
        site=site,
        device=device,
        created_ms=now,
        expires_ms=now + int(ttl.total_seconds() * 1000),
    )
    store.add_claim(claim)
    return code, claim


# -- cloud handler ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteFiles:
    template: dict[str, Any]
    secret: bytes


class Enroller:
    """Answers enrollment requests (beside the Reconciler, on the same store and broker link).
    Not thread-safe: one caller at a time."""

    def __init__(
        self,
        store: CloudStore,
        key: Ed25519PrivateKey,
        settings: EnrollSettings,
        *,
        site_key_file: Path | None = None,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.store = store
        self.key = key
        self.settings = settings
        # Without an explicit host, the kiosk keeps the one it enrolled through (it reached it,
        # and checked its certificate); the reconciler's own address may be 127.0.0.1.
        self.broker_host = settings.broker_host
        self.broker_port = settings.broker_port
        self.site_key_file = site_key_file
        self.clock = clock
        self.enrolled = 0
        self.replays = 0  # requests seen before (answered again or refused), nothing changed
        self.refused = 0

    def site_files(self, site: str) -> SiteFiles:
        path = self.settings.sites_dir / f"{site}.toml"
        try:
            template = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: no site config template ({exc})") from exc
        secret_file = self.settings.sites_dir / f"{site}.site.key"
        if not secret_file.exists():
            if self.site_key_file is None:
                raise ConfigError(f"no site secret: {secret_file} (or reconciler.site_key_file)")
            secret_file = self.site_key_file
        try:
            secret = secret_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{secret_file}: {exc.strerror}") from exc
        return SiteFiles(template, secret)

    def handle(self, topic: str, payload: bytes) -> list[Outgoing]:
        """One request -> the answer to publish (at most one). Logs every refusal and replay."""
        claim_id = parse_request_topic(topic)
        if claim_id is None:
            self.refused += 1
            log.warning("%s", MessageRefused(topic, "not an enrollment request topic"))
            return []
        answers = answer_topic(claim_id)
        request_digest = digest(payload)
        claim = self.store.claim(claim_id)
        if claim is None:
            return [self._refuse(answers, request_digest, None, "unknown claim code")]
        try:
            req = open_request(payload, topic, claim.key)
        except EnrollError as exc:
            return [self._refuse(answers, request_digest, claim, exc.reason)]
        try:
            return [self._enroll(answers, request_digest, claim, req)]
        except EnrollError as exc:
            return [self._refuse(answers, request_digest, claim, exc.reason)]

    def _enroll(self, answers: str, request_digest: bytes, claim: Claim, req: Request) -> Outgoing:
        now = self.clock()
        if claim.used_ms is not None:
            return self._replay(answers, request_digest, claim, req, now)
        if now >= claim.expires_ms:
            raise EnrollError("claim code expired; ask the operator for a new one")
        self._check_device(claim, req)
        site = self._site(claim.site)
        try:
            cert = ca.sign_csr(
                self.settings.ca_dir,
                req.csr,
                req.device,
                site=claim.site,
                days=self.settings.cert_days,
            )
        except ConfigError as exc:
            raise EnrollError(f"certificate request refused: {exc}") from exc
        won = self.store.use_claim(
            claim.claim_id,
            device=req.device,
            request=request_digest,
            certificate=cert,
            reenroll=req.reenroll,
            now_ms=now,
        )
        if not won:  # another reconciler (or an expiry) got there first
            fresh = self.store.claim(claim.claim_id)
            if fresh is None or fresh.used_ms is None:
                raise EnrollError("claim code expired; ask the operator for a new one")
            return self._replay(answers, request_digest, fresh, req, now)
        self._register(claim.site, req)
        self.enrolled += 1
        if req.reenroll:
            log.warning(
                "re-enrolled %s at %s (claim %s, requested with --reenroll)",
                req.device,
                claim.site,
                claim.claim_id,
            )
        else:
            log.info("enrolled %s at %s (claim %s)", req.device, claim.site, claim.claim_id)
        return self._grant(answers, request_digest, claim, req, cert, site)

    def _replay(
        self, answers: str, request_digest: bytes, claim: Claim, req: Request, now: int
    ) -> Outgoing:
        self.replays += 1
        if claim.request == request_digest and now < claim.expires_ms:
            # The very request that used the claim (a redelivery, or a device that lost the
            # answer): answer it again from what is stored; nothing changes.
            log.warning(
                "replayed enrollment request for claim %s (%s): answered again, nothing changed",
                claim.claim_id,
                req.device,
            )
            self._register(claim.site, req)  # idempotent: completes a crash after use_claim
            site = self._site(claim.site)
            return self._grant(answers, request_digest, claim, req, claim.certificate, site)
        log.warning(
            "enrollment request for claim %s (%s) refused: claim already used by %s",
            claim.claim_id,
            req.device,
            claim.used_by,
        )
        raise EnrollError("claim code already used; ask the operator for a new one")

    def _check_device(self, claim: Claim, req: Request) -> None:
        d = req.device
        if not DEVICE_ID.match(d) or d in ca.RESERVED_NAMES or d == self.store.replica:
            raise EnrollError(f"device id {d!r} is not allowed (1-32 of A-Z a-z 0-9 _ . -)")
        if claim.device and claim.device != d:
            raise EnrollError(f"this claim code is for device {claim.device!r}, not {d!r}")
        known = self.store.public_key(d)
        if known is not None and public_bytes(known) != req.ledger_key:
            raise EnrollError(f"device id {d!r} is enrolled with another ledger key")
        if (known is not None or self.store.device(d) is not None) and not req.reenroll:
            raise EnrollError(f"device {d!r} is enrolled already; re-enrolling needs --reenroll")

    def _site(self, site: str) -> SiteFiles:
        try:
            return self.site_files(site)
        except ConfigError as exc:
            log.error("enrollment for site %s impossible: %s", site, exc)
            raise EnrollError(f"the cloud has no configuration for site {site!r}") from exc

    def _register(self, site: str, req: Request) -> None:
        try:
            self.store.trust(req.device, req.ledger_key, "kiosk")
            self.store.enroll(req.device, site)
        except (SyncError, LedgerError) as exc:
            raise EnrollError(f"cannot register the device: {exc}") from exc

    def _grant(
        self,
        answers: str,
        request_digest: bytes,
        claim: Claim,
        req: Request,
        cert: bytes,
        files: SiteFiles,
    ) -> Outgoing:
        site = claim.site
        from provisioning.bundle import create_bundle
        from provisioning.errors import ProvisionError

        template = dict(files.template)
        agent = dict(template.get("agent") or {})
        broker = dict(agent.get("broker") or {})
        if self.broker_host:
            broker.setdefault("host", self.broker_host)
        broker.setdefault("port", self.broker_port)
        agent["broker"] = broker
        template["agent"] = agent
        try:
            document = create_bundle(
                site=site,
                device=req.device,
                cloud_key=self.key,
                site_secret=files.secret,
                config_template=template,
                expires_in=timedelta(seconds=self.settings.answer_ttl_s),
            )
        except ProvisionError as exc:
            log.error("site %s: cannot make an enrollment document: %s", site, exc)
            raise EnrollError(f"the cloud's configuration for site {site!r} is invalid") from exc
        grant = Grant(request_digest, document, cert, ca.ca_pem(self.settings.ca_dir))
        grant = msgspec.structs.replace(grant, sig=self.key.sign(grant_bytes(answers, grant)))
        keys = ClaimKeys(claim.claim_id, claim.key)
        iv = os.urandom(12)
        box = AESGCM(keys.box_key).encrypt(
            iv, ENCODER.encode(grant), box_aad(answers, request_digest)
        )
        answer = Answer(VERSION, request_digest, True, iv=iv, box=box)
        return Outgoing(answers, ENCODER.encode(answer))

    def _refuse(
        self, answers: str, request_digest: bytes, claim: Claim | None, reason: str
    ) -> Outgoing:
        self.refused += 1
        log.warning("%s", MessageRefused(answers.removesuffix("/res") + "/req", reason))
        mac = b""
        if claim is not None:
            keys = ClaimKeys(claim.claim_id, claim.key)
            mac = claim_mac(keys.mac_key, refusal_bytes(answers, request_digest, reason))
        answer = Answer(VERSION, request_digest, False, reason=reason, mac=mac)
        return Outgoing(answers, ENCODER.encode(answer))
