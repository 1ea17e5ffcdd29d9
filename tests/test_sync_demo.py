"""The sync demo hook runs end to end and reports a reconciled, verified state."""

from __future__ import annotations

import pytest

from cloud_sync.demo import run_sync_demo


@pytest.mark.mqtt
async def test_sync_demo_reconciles_after_the_outage(tmp_path):
    lines = await run_sync_demo(tmp_path / "out")
    text = "\n".join(lines)
    assert "refused" in text  # strict mode refused an offline overspend
    assert "reconciled: all ops stored and acked" in text
    assert "every chain verified: True" in text
