"""The example configs a tech copies are valid kiosk configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import Role, load_config

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("kiosk-*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_loads(path):
    cfg = load_config(path)
    assert cfg.kiosk.role in set(Role)
    assert cfg.nfc is not None
    assert cfg.display is not None


def test_the_cloud_example_loads_with_the_real_loader():
    from cloud_sync.settings import load_config as load_cloud_config

    path = EXAMPLES[0].parent / "cloud.toml"
    cfg = load_cloud_config(path).reconciler
    # Paths in the file are relative to it, wherever the command runs.
    assert cfg.key_file == path.parent / "cloud.key"
    assert cfg.broker.tls is not None and cfg.broker.tls.ca == path.parent / "pki" / "ca.crt"
    assert cfg.enroll is not None and cfg.enroll.sites_dir == path.parent / "sites"
    assert cfg.store.startswith("sqlite:///") and cfg.escrow.float_max == {"cash": 5000}
