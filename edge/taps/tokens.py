"""Card references: an HMAC of a card's identifier with the site key. The ledger, the logs and
the cloud only ever see the reference, never the number."""

from __future__ import annotations

from edge.drivers.base import Token, TokenKind
from edge.ledger.records import card_ref_of

# Tokens that name the same physical card map to the same family: a number printed as a barcode
# and on a stripe is one card. A UID read alone ("uid") is never the same card as that UID's
# verified SUN identity ("nfc"): anyone can clone a UID, so a clone of a SUN card's UID names a
# card of its own, which exists only if an operator linked it on purpose (docs/security.md).
_FAMILY = {
    TokenKind.NFC_UID: "uid",
    TokenKind.NTAG424_SUN: "nfc",
    TokenKind.MAGSTRIPE: "num",
    TokenKind.BARCODE: "num",
    TokenKind.QR: "qr",
}


def card_ref(card_ref_key: bytes, token: Token) -> str:
    return card_ref_of(card_ref_key, _FAMILY[token.kind], token.value)
