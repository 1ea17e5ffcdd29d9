"""NTAG 424 SUN crypto and AN10922 diversification: NXP vectors, and distinct non-zero keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from edge.drivers import ntag424
from edge.drivers.nfc_cards import Ntag424Tag
from edge.drivers.ntag424 import RejectReason, SiteKeys, SunRejected
from edge.drivers.sun_url import parse_ndef_uri, parse_sun_url

# NXP AN12196's published examples, kept in the repo so the check never skips.
VECTORS_PATH = Path(__file__).parent / "vectors" / "ntag424_sun.json"
ZERO = bytes(16)


def _vectors() -> list[dict[str, object]]:
    vectors: list[dict[str, object]] = json.loads(VECTORS_PATH.read_text())["vectors"]
    return vectors


def _h(v: object) -> bytes:
    assert isinstance(v, str)
    return bytes.fromhex(v)


def _plain_picc(key: bytes, enc: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(ZERO)).decryptor()
    return dec.update(enc) + dec.finalize()


def test_an10922_matches_nxp_example() -> None:
    # AN10922 2.2.1: M = UID || AID || system identifier ("NXP Abu").
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    m = bytes.fromhex("04782E21801D803042F54E585020416275")
    assert ntag424.an10922_diversify(master, m).hex().upper() == "A8DD63A3B89D54B37CA802473FDA9175"


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=31))
def test_an10922_equals_cmac_when_input_fills_two_blocks(master: bytes, m: bytes) -> None:
    # 0x01 || M is 17..32 bytes: CMAC's own padding then reaches 32 bytes, as AN10922 pads.
    c = cmac.CMAC(algorithms.AES(master))
    c.update(b"\x01" + m)
    assert ntag424.an10922_diversify(master, m) == c.finalize()


def test_an10922_pads_short_input_to_two_blocks_unlike_plain_cmac() -> None:
    master, m = bytes(range(16)), bytes.fromhex("04958CAA5C5E80")
    c = cmac.CMAC(algorithms.AES(master))
    c.update(b"\x01" + m)
    assert ntag424.an10922_diversify(master, m) != c.finalize()


@pytest.mark.parametrize("m", [b"", bytes(32)])
def test_an10922_refuses_input_outside_1_to_31_bytes(m: bytes) -> None:
    with pytest.raises(ValueError):
        ntag424.an10922_diversify(bytes(16), m)


def test_verifier_matches_both_nxp_vectors() -> None:
    for v in _vectors():
        expect = v["expect"]
        assert isinstance(expect, dict)
        meta, file_key = _h(v["sdm_meta_read_key"]), _h(v["sdm_file_read_key"])
        uid, ctr = ntag424.decrypt_picc_data(meta, _h(v["picc_data_enc"]))
        assert uid.hex().upper() == expect["uid"]
        assert ctr == expect["read_ctr"]
        ses = ntag424.session_mac_key(file_key, uid, ctr)
        if "ses_mac_key" in expect:
            assert ses.hex().upper() == expect["ses_mac_key"]
        mac_input = str(v["mac_input_ascii"]).encode()
        assert ntag424.sdm_mac(ses, mac_input) == _h(v["sdmmac"])
        if "enc_file_data" in v:
            data = ntag424.decrypt_file_data(file_key, uid, ctr, _h(v["enc_file_data"]))
            assert data.decode() == expect["file_data_ascii"]


def test_emulated_card_reproduces_nxp_vector_without_file_data() -> None:
    v = _vectors()[0]
    enc = _h(v["picc_data_enc"])
    pad = _plain_picc(ZERO, enc)[11:]  # the card's random bytes, recovered independently
    card = Ntag424Tag(
        bytes.fromhex("04DE5F1EACC040"), meta_key=ZERO, file_key=ZERO, read_ctr=60,
        random=lambda n: pad[:n],
    )  # fmt: skip
    url = parse_ndef_uri(card.sun_file())
    assert url is not None
    msg = parse_sun_url(url)
    assert msg.picc_enc == enc
    assert msg.mac == _h(v["sdmmac"])


def test_emulated_card_crypto_reproduces_nxp_vector_with_file_data() -> None:
    v = _vectors()[1]
    uid, ctr = bytes.fromhex("04958CAA5C5E80"), 8
    pad = _plain_picc(ZERO, _h(v["picc_data_enc"]))[11:]
    assert ntag424.encrypt_picc_data(ZERO, uid, ctr, pad) == _h(v["picc_data_enc"])
    enc = ntag424.encrypt_file_data(ZERO, uid, ctr, b"x" * 16)
    assert enc == _h(v["enc_file_data"])
    ses = ntag424.session_mac_key(ZERO, uid, ctr)
    assert ntag424.sdm_mac(ses, enc.hex().upper().encode() + b"&cmac=") == _h(v["sdmmac"])


@pytest.fixture
def keys() -> SiteKeys:
    return SiteKeys(master=bytes.fromhex("6B1D0E5F9A3C47D2B8E0F1A2C3D4E5F6"), system_id=b"site-7")


def _sun(card: Ntag424Tag) -> tuple[bytes, bytes]:
    url = parse_ndef_uri(card.sun_file())
    assert url is not None
    msg = parse_sun_url(url)
    return msg.picc_enc, msg.mac


def test_site_keys_are_distinct_non_zero_and_per_card(keys: SiteKeys) -> None:
    uid_a, uid_b = bytes.fromhex("04958CAA5C5E80"), bytes.fromhex("04958CAA5C5E81")
    derived = {keys.meta_read_key, keys.file_read_key(uid_a), keys.file_read_key(uid_b)}
    assert len(derived) == 3
    assert ZERO not in derived
    assert "6B1D" not in repr(keys)


def test_card_with_distinct_site_keys_verifies(keys: SiteKeys) -> None:
    uid = bytes.fromhex("04958CAA5C5E80")
    card = Ntag424Tag.for_site(uid, keys, read_ctr=4)
    reading = ntag424.verify_sun(keys, *_sun(card))
    assert (reading.uid, reading.read_ctr) == (uid, 5)


def test_picc_data_under_the_file_key_is_rejected(keys: SiteKeys) -> None:
    # The bug all-zero keys hide: a card (or verifier) using the file key for PICCData.
    uid = bytes.fromhex("04958CAA5C5E80")
    card = Ntag424Tag(uid, meta_key=keys.file_read_key(uid), file_key=keys.file_read_key(uid))
    with pytest.raises(SunRejected) as err:
        ntag424.verify_sun(keys, *_sun(card))
    assert err.value.reason is RejectReason.BAD_MAC


def test_mac_under_the_meta_key_is_rejected(keys: SiteKeys) -> None:
    uid = bytes.fromhex("04958CAA5C5E80")
    card = Ntag424Tag(uid, meta_key=keys.meta_read_key, file_key=keys.meta_read_key)
    with pytest.raises(SunRejected) as err:
        ntag424.verify_sun(keys, *_sun(card))
    assert (err.value.reason, err.value.detail) == (RejectReason.BAD_MAC, "SDMMAC mismatch")


def test_one_flipped_mac_bit_is_rejected(keys: SiteKeys) -> None:
    picc, mac = _sun(Ntag424Tag.for_site(bytes.fromhex("04958CAA5C5E80"), keys))
    with pytest.raises(SunRejected) as err:
        ntag424.verify_sun(keys, picc, mac[:-1] + bytes([mac[-1] ^ 0x80]))
    assert err.value.reason is RejectReason.BAD_MAC
