"""The NDEF file of an NTAG 424 DNA and its SUN URL: parse, and build (for simulated cards).

One layout: a URI record `https://<host>/<path>?e=<PICCData, 32 hex>&cmac=<SDMMAC, 16 hex>`, the
card configured with SDMMACInputOffset = SDMMACOffset, so the MAC input is empty (AN12196 4.4).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.drivers.ntag424 import RejectReason, SunRejected

__all__ = [
    "SunMessage",
    "build_ndef_file",
    "is_sun_url",
    "parse_ndef_uri",
    "parse_sun_url",
    "sun_url",
]

_HEX = frozenset("0123456789abcdefABCDEF")
# NFC Forum URI record prefixes (RTD URI 1.0, table 3); only the common ones, others read as "".
_URI_PREFIXES = {
    0x00: "",
    0x01: "http://www.",
    0x02: "https://www.",
    0x03: "http://",
    0x04: "https://",
}
_TNF_WELL_KNOWN = 0x01
MAX_NDEF_LEN = 1024


@dataclass(frozen=True, slots=True)
class SunMessage:
    """The SUN fields of a URL, still unverified."""

    picc_enc: bytes
    mac: bytes
    mac_input: bytes = b""


def _malformed(detail: str) -> SunRejected:
    return SunRejected(RejectReason.MALFORMED, detail)


def parse_ndef_uri(ndef_file: bytes) -> str | None:
    """The URI of the first URI record in an NDEF file (2-byte NLEN + message); None if it has none.

    Raises SunRejected(MALFORMED) when the bytes are not a well-formed NDEF message.
    """
    if len(ndef_file) < 2:
        raise _malformed("NDEF file shorter than its length field")
    nlen = int.from_bytes(ndef_file[:2], "big")
    msg = ndef_file[2 : 2 + nlen]
    if len(msg) != nlen:
        raise _malformed("NDEF message shorter than NLEN")
    pos = 0
    while pos < len(msg):
        header = msg[pos]
        short, has_id, tnf = header & 0x10, header & 0x08, header & 0x07
        pos += 1
        fixed = 1 + (1 if short else 4) + (1 if has_id else 0)
        if pos + fixed > len(msg):
            raise _malformed("truncated NDEF record header")
        type_len = msg[pos]
        plen_size = 1 if short else 4
        payload_len = int.from_bytes(msg[pos + 1 : pos + 1 + plen_size], "big")
        id_len = msg[pos + 1 + plen_size] if has_id else 0
        pos += fixed
        rtype = msg[pos : pos + type_len]
        pos += type_len + id_len
        payload = msg[pos : pos + payload_len]
        pos += payload_len
        if pos > len(msg):
            raise _malformed("truncated NDEF record")
        if tnf == _TNF_WELL_KNOWN and rtype == b"U":
            if not payload:
                raise _malformed("empty URI record")
            try:
                rest = payload[1:].decode("utf-8")
            except UnicodeDecodeError:
                raise _malformed("URI is not UTF-8") from None
            return _URI_PREFIXES.get(payload[0], "") + rest
        if header & 0x40:  # ME: last record
            break
    return None


def is_sun_url(uri: str) -> bool:
    """Whether a URL carries SUN parameters (then it must verify; else it is a plain tag)."""
    query = uri.partition("?")[2].partition("#")[0]
    return any(p.partition("=")[0] in ("e", "cmac") for p in query.split("&"))


def _hex_param(value: str, nbytes: int, name: str) -> bytes:
    if len(value) != 2 * nbytes or not _HEX.issuperset(value):
        raise _malformed(f"{name} must be {2 * nbytes} hex digits")
    return bytes.fromhex(value)


def parse_sun_url(uri: str) -> SunMessage:
    """`e` and `cmac` from a SUN URL in our layout, or SunRejected(MALFORMED)."""
    query = uri.partition("?")[2].partition("#")[0]
    params: dict[str, str] = {}
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if not sep or key in params:
            raise _malformed("query is not unique key=value pairs")
        params[key] = value
    if set(params) != {"e", "cmac"}:
        raise _malformed("expected exactly the parameters e and cmac")
    return SunMessage(
        picc_enc=_hex_param(params["e"], 16, "e"), mac=_hex_param(params["cmac"], 8, "cmac")
    )


def sun_url(base: str, picc_enc: bytes, mac: bytes) -> str:
    """The URL a card in our layout mirrors: base + `?e=..&cmac=..` (uppercase hex, as NTAG)."""
    return f"{base}?e={picc_enc.hex().upper()}&cmac={mac.hex().upper()}"


def build_ndef_file(uri: str) -> bytes:
    """An NDEF file holding one short URI record (the https:// prefix abbreviated)."""
    code, rest = 0x00, uri
    for c, prefix in sorted(_URI_PREFIXES.items(), key=lambda kv: -len(kv[1])):
        if prefix and uri.startswith(prefix):
            code, rest = c, uri[len(prefix) :]
            break
    payload = bytes([code]) + rest.encode("utf-8")
    if len(payload) > 255:
        raise ValueError("URI too long for a short NDEF record")
    record = bytes([0xD1, 0x01, len(payload)]) + b"U" + payload  # MB|ME|SR, TNF well-known
    return len(record).to_bytes(2, "big") + record
