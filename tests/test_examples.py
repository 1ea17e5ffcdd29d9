"""The example configs a tech copies are valid kiosk configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import Role, load_config

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_loads(path):
    cfg = load_config(path)
    assert cfg.kiosk.role in set(Role)
    assert cfg.nfc is not None
    assert cfg.display is not None
