"""Device identity and offline enrollment bundles: keys 0600 and never overwritten, bundles
verified against the cloud key, refused when expired, reused, forged or re-enrolling."""

from __future__ import annotations

import json
import stat
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.config import load_config
from edge.ledger import generate_key, load_private_key, public_bytes, save_private_key
from edge.ledger.sitekey import load_site_secrets
from kiosk.cli import cli
from provisioning.bundle import (
    apply_bundle_file,
    apply_signed,
    create_bundle,
    parse_duration,
)
from provisioning.errors import AlreadyEnrolled, BundleRejected, ProvisionError

TEMPLATE = {
    "kiosk": {"id": "x", "site": "x", "role": "gate", "product": "swim", "currency": "¥"},
    "rules": {
        "products": {"swim": {"name": "Swim 游泳", "price": 1500}},
        "tiers": [{"name": "gold", "min_points": 1000, "discount_pct": 10}],
    },
    "gpio": {"backend": "sim", "coin_pin": 6, "coin_pulses": {"1": 100}},
}
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def cloud_key():  # type: ignore[no-untyped-def]
    return generate_key()


def bundle(cloud_key, device: str = "gate-1", site: str = "pool-7", **kw) -> bytes:  # type: ignore[no-untyped-def]
    return create_bundle(
        site=site,
        device=device,
        cloud_key=cloud_key,
        site_secret=kw.pop("secret", b"S" * 32),
        config_template=TEMPLATE,
        expires_in=kw.pop("ttl", timedelta(hours=2)),
        now=kw.pop("now", NOW),
    )


def test_keys_are_made_once_0600_and_kept(tmp_path: Path) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[kiosk]\nid = "k1"\nsite = "s"\nrole = "pos"\n'
        f'key_file = "{tmp_path}/device.key"\nsite_key_file = "{tmp_path}/site.key"\n'
    )
    code, out = invoke("provision", "keys", "--config", str(config))
    assert code == 0, out
    assert mode(tmp_path / "device.key") == 0o600
    assert mode(tmp_path / "site.key") == 0o600
    key = load_private_key(tmp_path / "device.key")
    assert public_bytes(key).hex() in out
    secret = (tmp_path / "site.key").read_bytes()
    load_site_secrets(tmp_path / "site.key")  # readable by the daemon's loader
    code, out = invoke("provision", "keys", "--config", str(config))
    assert code == 0
    assert "kept" in out
    assert (tmp_path / "site.key").read_bytes() == secret
    assert public_bytes(load_private_key(tmp_path / "device.key")) == public_bytes(key)
    code, out = invoke("provision", "keys", "--config", str(config), "--force")
    assert code == 0
    assert (tmp_path / "site.key").read_bytes() != secret


def test_a_bundle_enrolls_the_device(tmp_path: Path, cloud_key) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "b.json"
    path.write_bytes(bundle(cloud_key))
    etc = tmp_path / "etc"
    res = apply_bundle_file(
        path, etc, cloud_public_key=public_bytes(cloud_key), now=NOW + timedelta(minutes=5)
    )
    assert (res.device, res.site, res.reenrolled) == ("gate-1", "pool-7", False)
    cfg = load_config(etc / "kiosk.toml")
    assert (cfg.kiosk.id, cfg.kiosk.site) == ("gate-1", "pool-7")
    assert cfg.kiosk.cloud_public_key == public_bytes(cloud_key).hex()
    assert cfg.kiosk.key_file == etc / "device.key"
    assert cfg.rules.products["swim"].name == "Swim 游泳"
    assert (etc / "site.key").read_bytes() == b"S" * 32
    assert mode(etc / "site.key") == 0o600
    assert mode(etc / "device.key") == 0o600
    assert (etc / "cloud.pub").read_text().strip() == public_bytes(cloud_key).hex()
    record = json.loads((etc / "enrollment.json").read_text())
    assert record["device_public_key"] == res.device_public_key


def test_a_bundle_signed_by_another_key_is_refused(tmp_path: Path, cloud_key) -> None:  # type: ignore[no-untyped-def]
    rogue = generate_key()
    with pytest.raises(BundleRejected) as err:
        apply_signed(bundle(rogue), tmp_path, cloud_public_key=public_bytes(cloud_key), now=NOW)
    assert err.value.why == "signature"
    assert not (tmp_path / "kiosk.toml").exists()


def test_an_altered_bundle_is_refused(tmp_path: Path, cloud_key) -> None:  # type: ignore[no-untyped-def]
    import base64

    outer = json.loads(bundle(cloud_key))
    payload = json.loads(base64.b64decode(outer["payload"]))
    payload["expires_at"] = (NOW + timedelta(days=365)).isoformat()
    outer["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(BundleRejected, match="not signed by the trusted cloud key"):
        apply_signed(
            json.dumps(outer).encode(), tmp_path, cloud_public_key=public_bytes(cloud_key), now=NOW
        )


def test_an_expired_bundle_is_refused(tmp_path: Path, cloud_key) -> None:  # type: ignore[no-untyped-def]
    blob = bundle(cloud_key, ttl=timedelta(hours=2))
    with pytest.raises(BundleRejected) as err:
        apply_signed(
            blob, tmp_path, cloud_public_key=public_bytes(cloud_key), now=NOW + timedelta(hours=2)
        )
    assert err.value.why == "expired"


def test_a_bundle_works_once(tmp_path: Path, cloud_key) -> None:  # type: ignore[no-untyped-def]
    blob = bundle(cloud_key)
    pub = public_bytes(cloud_key)
    apply_signed(blob, tmp_path, cloud_public_key=pub, now=NOW)
    with pytest.raises(BundleRejected) as err:
        apply_signed(blob, tmp_path, reenroll=True, now=NOW)  # pinned key, even with --reenroll
    assert err.value.why == "used"


def test_reenrollment_needs_the_flag_and_is_recorded(tmp_path: Path, cloud_key) -> None:  # type: ignore[no-untyped-def]
    pub = public_bytes(cloud_key)
    first = apply_signed(bundle(cloud_key), tmp_path, cloud_public_key=pub, now=NOW)
    device_key = (tmp_path / "device.key").read_bytes()
    with pytest.raises(AlreadyEnrolled, match="--reenroll"):
        apply_signed(bundle(cloud_key, device="gate-2"), tmp_path, now=NOW)
    again = apply_signed(bundle(cloud_key, device="gate-2"), tmp_path, reenroll=True, now=NOW)
    assert again.reenrolled
    assert load_config(tmp_path / "kiosk.toml").kiosk.id == "gate-2"
    # The device keeps its identity; the history names what was replaced.
    assert (tmp_path / "device.key").read_bytes() == device_key
    assert again.device_public_key == first.device_public_key
    history = [
        json.loads(x) for x in (tmp_path / "enrollment-history.jsonl").read_text().split("\n") if x
    ]
    assert history[0]["replaced"]["device"] == "gate-1"
    assert history[0]["by"]["device"] == "gate-2"


def test_the_pinned_cloud_key_is_used_and_cannot_be_swapped(tmp_path: Path, cloud_key) -> None:  # type: ignore[no-untyped-def]
    apply_signed(bundle(cloud_key), tmp_path, cloud_public_key=public_bytes(cloud_key), now=NOW)
    other = generate_key()
    with pytest.raises(BundleRejected) as err:
        apply_signed(
            bundle(other), tmp_path, cloud_public_key=public_bytes(other), reenroll=True, now=NOW
        )
    assert err.value.why == "cloud key"


def test_without_any_cloud_key_nothing_is_trusted(tmp_path: Path, cloud_key) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BundleRejected, match="--cloud-public-key"):
        apply_signed(bundle(cloud_key), tmp_path, now=NOW)


def test_bundle_create_and_apply_through_the_cli(tmp_path: Path) -> None:
    cloud = tmp_path / "cloud.key"
    save_private_key(cloud, generate_key())
    template = tmp_path / "site.toml"
    template.write_text('[kiosk]\nid = "t"\nsite = "t"\nrole = "pos"\n')
    out = tmp_path / "gate-1.bundle"
    code, text = invoke(
        "provision", "bundle", "create", "--site", "pool-7", "--device", "pos-1", "--out",
        str(out), "--cloud-key", str(cloud), "--config", str(template), "--site-key",
        str(tmp_path / "pool-7.site.key"), "--expires", "30m",
    )  # fmt: skip
    assert code == 0, text
    assert mode(out) == 0o600
    assert mode(tmp_path / "pool-7.site.key") == 0o600
    pub = public_bytes(load_private_key(cloud)).hex()
    etc = tmp_path / "etc"
    code, text = invoke(
        "provision", "bundle", "apply", str(out), "--config-dir", str(etc),
        "--cloud-public-key", pub,
    )  # fmt: skip
    assert code == 0, text
    assert "enrolled: pos-1 at pool-7" in text
    assert tomllib.loads((etc / "kiosk.toml").read_text())["kiosk"]["role"] == "pos"
    code, text = invoke("provision", "bundle", "apply", str(out), "--config-dir", str(etc))
    assert code == 1
    assert "applied before" in text


def test_durations() -> None:
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("90s") == timedelta(seconds=90)
    with pytest.raises(ProvisionError):
        parse_duration("2 hours")
