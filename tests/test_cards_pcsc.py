"""`kiosk cards issue --kind ntag424` through a real pcscd: a blank card on vpcd is personalised
over PC/SC and its SUN tap verifies."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard not installed (pip install -e '.[hw]')")

from click.testing import CliRunner

from edge.drivers.nfc_cards import BlankNtag424
from edge.ledger.sitekey import create_site_key
from kiosk.cli import cli
from tests.card_emulator import VpcdCard
from tests.pcscd_process import VPCD_READER, Pcscd

pytestmark = pytest.mark.pcsc


def test_issue_personalises_a_blank_card_on_a_pcsc_writer(pcscd: Pcscd, tmp_path: Path) -> None:
    site_key = tmp_path / "site.key"
    create_site_key(site_key)
    blank = BlankNtag424(bytes.fromhex("04112233445566"))
    card = VpcdCard(blank)
    card.insert()
    # The writer waits for the card to leave after it is done: take it off once personalised.
    remover = threading.Thread(target=lambda: (_wait_personalised(blank, card), card.remove()))
    remover.start()
    try:
        result = CliRunner().invoke(
            cli,
            [
                "cards", "issue", "--count", "1", "--kind", "ntag424", "--range",
                "90000000-90009999", "--out", str(tmp_path / "out"), "--site", "pool-7",
                "--site-key", str(site_key), "--reader", VPCD_READER, "--no-pdf",
            ],
        )  # fmt: skip
    finally:
        remover.join(timeout=30)
        card.remove()
    assert result.exit_code == 0, result.output
    assert "1 cards issued" in result.output
    assert blank.sdm is not None
    assert blank.keys[0] != bytes(16)


def _wait_personalised(card: BlankNtag424, link: VpcdCard, timeout_s: float = 20.0) -> None:
    done = threading.Event()
    # Personalised = key 0 changed and the read-back tap counted (read counter 1); then wait
    # until the writer has stopped talking to the card (it is still reading the file when the
    # counter moves: pulling the card then is a "removed mid-read").
    for _ in range(int(timeout_s / 0.05)):
        if card.keys[0] != bytes(16) and card.read_ctr >= 1:
            break
        done.wait(0.05)
    quiet_since, seen = 0, -1
    for _ in range(int(timeout_s / 0.05)):
        if link.apdus == seen:
            quiet_since += 1
            if quiet_since >= 6:  # 300 ms without an APDU
                return
        else:
            seen, quiet_since = link.apdus, 0
        done.wait(0.05)
