"""The text measurements are cached: every screen draws exactly what it drew without the cache."""

from __future__ import annotations

from datetime import datetime

import pytest

from edge.drivers import display_text
from edge.feedback.screens import (
    ApprovedScreen,
    BalanceScreen,
    DeniedScreen,
    IdleScreen,
    Screen,
    ServiceScreen,
    Status,
    TopUpScreen,
)

SCREENS: list[Screen] = [
    IdleScreen(),
    IdleScreen(lang="zh"),
    ApprovedScreen("Member 7", "-¥1.00", "¥9,999.00"),
    ApprovedScreen("Wolfeschlegelsteinhausen", "-1 visit + -¥2.50", "3 visits", note="Now gold"),
    ApprovedScreen("张伟", "-¥1.00", "¥12.00", lang="zh", note="还差 20 积分升级"),
    DeniedScreen("Not enough balance", detail="Balance ¥0.50\nPrice ¥1.00"),
    DeniedScreen("卡已挂失", lang="zh"),
    TopUpScreen("¥15.00", done=True, balance="¥27.00"),
    BalanceScreen("Ann", ("¥5.00  12 pts", "Pass to 06-30", "-¥1.00 +1 pts -1 visit")),
    ServiceScreen(("gate-1 @ pool (gate)", "cloud: offline", "unsent ops: 3  inbox: 0")),
]
STATUS = Status(online=False, now=datetime(2025, 6, 1, 14, 2))


def _frames() -> list[bytes]:
    return [screen.render(STATUS).tobytes() for screen in SCREENS]


def test_screens_are_identical_with_and_without_the_measurement_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    display_text._width.cache_clear()
    display_text._ink_box.cache_clear()
    cold = _frames()
    warm = _frames()
    assert display_text._width.cache_info().hits > 0
    assert display_text._ink_box.cache_info().hits > 0
    monkeypatch.setattr(display_text, "_width", display_text._width.__wrapped__)
    monkeypatch.setattr(display_text, "_ink_box", display_text._ink_box.__wrapped__)
    uncached = _frames()
    assert cold == warm == uncached
    assert len(set(uncached)) == len(SCREENS)  # each screen drew something of its own
