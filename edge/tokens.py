"""Card references: an HMAC of a card's identifier with the site key. The ledger, the logs and
the cloud only ever see the reference, never the number."""

from __future__ import annotations

import hashlib
import hmac

from edge.drivers.base import Token, TokenKind

# Tokens that name the same physical card map to the same family: an NTAG 424 read with and
# without SUN verification is one card; a number printed as a barcode and on a stripe is one card.
_FAMILY = {
    TokenKind.NFC_UID: "nfc",
    TokenKind.NTAG424_SUN: "nfc",
    TokenKind.MAGSTRIPE: "num",
    TokenKind.BARCODE: "num",
    TokenKind.QR: "qr",
}


def card_ref(site_key: bytes, token: Token) -> str:
    return ref_of(site_key, _FAMILY[token.kind], token.value)


def ref_of(site_key: bytes, family: str, value: str) -> str:
    mac = hmac.new(site_key, f"{family}:{value.strip().upper()}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]
