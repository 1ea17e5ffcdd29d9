"""Logs: one line per tap at INFO (tap id, kind, decision, reason, latency) in a running
daemon's log, and never a card number or a PIN in any line of it."""

from __future__ import annotations

import asyncio
import logging
import re

from edge.ledger.records import hash_pin
from edge.taps.tokens import Token, TokenKind, card_ref
from tests.daemon_helpers import Site, kiosk_config, next_outcome, running

CARD_NUMBER = "6012345671"  # a member's magstripe number
UID = "04A1B2C3D4E5F6"
PIN = "2468"
WRONG_PIN = "1357"
TAP_LINE = re.compile(
    r"^tap id=[0-9a-f]{16} kind=\w+ decision=(approved|refused|repeat) reason=\S+"
    r" latency_ms=[\d.]+$"
)


async def test_tap_lines_are_logged_and_no_card_number_or_pin_is(tmp_path, caplog):
    cfg = kiosk_config(tmp_path, pin_above=1000, debounce_seconds=0)
    site = Site(tmp_path, cfg)
    site.enroll("m1", "Alice", UID, cash=9000, pin_hash=hash_pin(PIN, b"s"))
    swipe_ref = card_ref(site.secrets.card_ref_key, Token(TokenKind.MAGSTRIPE, CARD_NUMBER, False))
    from edge.ledger import records as rec

    site.cloud.append(rec.card_intents(swipe_ref, "m1", 1))
    site.push()
    caplog.set_level(logging.DEBUG)  # everything any module says, not only the tap lines
    async with running(cfg) as (daemon, outcomes):
        assert daemon.nfc is not None and daemon.keypad is not None and daemon.wedge is not None
        daemon.nfc.present_uid(UID)
        assert (await next_outcome(outcomes)).decision.needs_pin
        daemon.keypad.source.type_text(WRONG_PIN)
        assert not (await next_outcome(outcomes)).decision.approved
        daemon.nfc.present_uid(UID)
        await next_outcome(outcomes)
        daemon.keypad.source.type_text(PIN)
        assert (await next_outcome(outcomes)).decision.approved
        daemon.wedge.source.swipe(f"%M{CARD_NUMBER}^MEMBER/ALICE^4912?")
        swiped = await next_outcome(outcomes)
        assert swiped.decision.needs_pin  # 20.00 is above the PIN threshold
        daemon.keypad.source.type_text(PIN)
        assert (await next_outcome(outcomes)).decision.approved
        daemon.nfc.present_uid("04FFFFFFFFFFFF")  # not a card of ours
        assert not (await next_outcome(outcomes)).decision.approved
        await asyncio.sleep(0.1)
        health = daemon.health()
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (CARD_NUMBER, UID, "04FFFFFFFFFFFF", PIN, WRONG_PIN):
        assert secret not in text, f"{secret} appears in the log"
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tap ")]
    assert all(
        r.levelno == logging.INFO for r in caplog.records if r.getMessage().startswith("tap ")
    )
    assert len(lines) == 4, lines  # wrong PIN, right PIN, swipe + PIN, unknown card
    assert all(TAP_LINE.match(line) for line in lines), lines
    assert [line.split()[3] for line in lines] == [
        "decision=refused",
        "decision=approved",
        "decision=approved",
        "decision=refused",
    ]
    assert "reason=PIN_WRONG" in lines[0] and "reason=UNKNOWN_CARD" in lines[3]
    assert "kind=Swiped" not in lines[2]  # the decision came with the PIN
    assert health["taps"] == 4
    assert health["refusals"] == {"PIN_WRONG": 1, "UNKNOWN_CARD": 1}
    assert 0 < health["tap_p50_ms"] <= health["tap_p95_ms"]  # type: ignore[operator]
