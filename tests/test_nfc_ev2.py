"""NTAG 424 DNA EV2 secure messaging, pinned to the worked examples of NXP AN12196 (rev. 2.0
section numbers; the tables are Table 14 AuthenticateEV2First with key 0, Table 18
ChangeFileSettings in CommMode.Full, Tables 25 and 26 ChangeKey), then the card model refusing
what a real card refuses."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from edge.drivers.nfc_cards import BlankNtag424
from edge.drivers.ntag424_ev2 import (
    Ev2Error,
    Ev2Session,
    auth_part2,
    change_key_data,
    crc32nk,
    finish_auth,
    session_keys,
)

h = bytes.fromhex

# AN12196 Table 14: AuthenticateEV2First with key 0x00 (factory key, all zero).
T14_CMD1 = h("9071000002000000")
T14_RESP1 = h("A04C124213C186F22399D33AC2A30215 91AF")
T14_RND_A = h("13C5DB8A5930439FC3DEF9A4C675360F")
T14_RND_B = h("B9E2FC789B64BF237CCCAA20EC7E6E48")
T14_CMD2 = h("90AF000020 35C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D 00")
T14_RESP2 = h("3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663 9100")
A_TI = h("9D00C4DF")
A_ENC = h("1309C877509E5A215007FF0ED19CA564")
A_MAC = h("4C6626F5E72EA694202139295C7A7FC7")

# AN12196 Table 18: ChangeFileSettings of file 02, CommMode.Full, session A at CmdCtr 1.
T18_DATA = h("4000E0C1F121200000430000430000")
T18_CMD = h("905F000019 02 61B6D97903566E84C3AE5274467E89EA D799B7C1A0EF7A04 00")
T18_RESP = h("57BFF87B1241E93D 9100")

# AN12196 Tables 25/26: ChangeKey in session B (authenticated with key 0).
B_TI = h("7614281A")
B_ENC = h("4CF3CB41A22583A61E89B158D252FC53")
B_MAC = h("5529860B2FC5FB6154B7F28361D30BF9")
T25_NEW_KEY = h("F3847D627727ED3BC9C4CC050489B966")
T25_CMD = h(
    "90C4000029 02 2CF362B7BF4311FF3BE1DAA295E8C68DE09050560D19B9E16C2393AE9CD1FAC7"
    + " 5D0CE20BCD1D06E6 00"
)
T25_RESP = h("203BB55D1089D587 9100")
T26_NEW_KEY = h("5004BF991F408672B1EF00F08F9E8647")
T26_CMD = h(
    "90C4000029 00 C0EB4DEEFEDDF0B513A03A95A75491818580503190D4D05053FF75668A01D6FD"
    + " A6610234BDED6432 00"
)


def scripted(*chunks: bytes) -> Callable[[int], bytes]:
    """Injectable randomness that hands out the given values in order."""
    it: Iterator[bytes] = iter(chunks)

    def take(n: int) -> bytes:
        value = next(it)
        assert len(value) == n
        return value

    return take


def test_session_keys_match_an12196_table_14() -> None:
    assert session_keys(bytes(16), T14_RND_A, T14_RND_B) == (A_ENC, A_MAC)


def test_pcd_side_of_authenticate_ev2_first_matches_table_14() -> None:
    apdu, rnd_b = auth_part2(bytes(16), T14_RESP1[:16], T14_RND_A)
    assert rnd_b == T14_RND_B
    assert apdu == T14_CMD2
    session = finish_auth(bytes(16), 0, T14_RND_A, rnd_b, T14_RESP2[:-2])
    assert (session.enc_key, session.mac_key, session.ti, session.cmd_ctr) == (
        A_ENC, A_MAC, A_TI, 0,
    )  # fmt: skip
    assert A_ENC.hex() not in repr(session).lower()
    with pytest.raises(Ev2Error, match="RndA"):
        finish_auth(bytes(16), 0, bytes(16), rnd_b, T14_RESP2[:-2])


def test_card_side_of_authenticate_ev2_first_matches_table_14() -> None:
    card = BlankNtag424(h("04958CAA5C5E80"), random=scripted(T14_RND_B, A_TI))
    card.transmit(h("00A4040007D276000085010100"))
    assert card.transmit(T14_CMD1) == T14_RESP1
    assert card.transmit(T14_CMD2) == T14_RESP2
    assert card.session is not None
    assert (card.session.enc_key, card.session.mac_key) == (A_ENC, A_MAC)


def test_change_file_settings_full_matches_table_18() -> None:
    session = Ev2Session(A_ENC, A_MAC, ti=A_TI, key_no=0, cmd_ctr=1)
    assert session.command(0x5F, b"\x02", T18_DATA) == T18_CMD
    assert session.response(T18_RESP) == b""
    assert session.cmd_ctr == 2
    # The card side opens the same APDU and answers with the same MAC.
    card = Ev2Session(A_ENC, A_MAC, ti=A_TI, key_no=0, cmd_ctr=1)
    assert card.open_command(0x5F, T18_CMD[5:-1], 1) == (b"\x02", T18_DATA)
    assert card.answer() == T18_RESP


def test_change_key_of_another_key_matches_table_25() -> None:
    assert crc32nk(T25_NEW_KEY) == h("789DFADC")
    session = Ev2Session(B_ENC, B_MAC, ti=B_TI, key_no=0, cmd_ctr=2)
    data = change_key_data(2, 0, T25_NEW_KEY, 0x01, old=bytes(16))
    assert data == T25_NEW_KEY + h("01789DFADC")
    assert session.command(0xC4, b"\x02", data) == T25_CMD
    assert session.response(T25_RESP) == b""
    card = Ev2Session(B_ENC, B_MAC, ti=B_TI, key_no=0, cmd_ctr=2)
    assert card.open_command(0xC4, T25_CMD[5:-1], 1) == (b"\x02", data)
    assert card.answer() == T25_RESP


def test_change_key_of_the_authenticated_key_matches_table_26() -> None:
    session = Ev2Session(B_ENC, B_MAC, ti=B_TI, key_no=0, cmd_ctr=3)
    data = change_key_data(0, 0, T26_NEW_KEY, 0x01)
    assert data == T26_NEW_KEY + b"\x01"
    assert session.command(0xC4, b"\x00", data) == T26_CMD
    assert session.response(h("9100"), mac=False) == b""  # no MAC: the session ends with it


def test_a_wrong_response_mac_is_refused() -> None:
    session = Ev2Session(A_ENC, A_MAC, ti=A_TI, key_no=0, cmd_ctr=1)
    with pytest.raises(Ev2Error, match="MAC"):
        session.response(bytes([T18_RESP[0] ^ 1]) + T18_RESP[1:])


UID = h("04958CAA5C5E80")
SELECT = h("00A4040007D276000085010100")
NEW_KEY_2 = h("F3847D627727ED3BC9C4CC050489B966")


def authenticated_card(rnd_b: bytes = T14_RND_B) -> tuple[BlankNtag424, Ev2Session]:
    """A blank card and the PCD's session with it, authenticated with the factory key 0."""
    card = BlankNtag424(UID, random=scripted(rnd_b, A_TI))
    assert card.transmit(SELECT)[-2:] == h("9000")
    resp = card.transmit(T14_CMD1)
    part2, rnd_b = auth_part2(bytes(16), resp[:16], T14_RND_A)
    resp = card.transmit(part2)
    return card, finish_auth(bytes(16), 0, T14_RND_A, rnd_b, resp[:-2])


def change_key_2(session: Ev2Session) -> bytes:
    return session.command(0xC4, b"\x02", change_key_data(2, 0, NEW_KEY_2, 1, old=bytes(16)))


def test_the_card_model_accepts_a_change_key_and_answers_with_a_mac() -> None:
    card, session = authenticated_card()
    assert session.response(card.transmit(change_key_2(session))) == b""
    assert card.keys[2] == NEW_KEY_2
    assert card.key_versions[2] == 1
    assert card.session is not None and card.session.cmd_ctr == session.cmd_ctr == 1


def test_a_command_without_authentication_is_refused() -> None:
    _, session = authenticated_card()
    fresh = BlankNtag424(UID)
    fresh.transmit(SELECT)
    assert fresh.transmit(change_key_2(session)) == h("91AE")
    assert fresh.keys[2] == bytes(16)


def test_a_wrong_mac_is_refused_and_ends_the_session() -> None:
    card, session = authenticated_card()
    apdu = bytearray(change_key_2(session))
    apdu[-2] ^= 0x01  # last MAC byte
    assert card.transmit(bytes(apdu)) == h("911E")
    assert card.session is None
    assert card.keys[2] == bytes(16)


def test_a_replayed_command_fails_on_the_command_counter() -> None:
    card, session = authenticated_card()
    apdu = change_key_2(session)
    session.response(card.transmit(apdu))
    assert card.transmit(apdu) == h("911E")  # same bytes, the card's CmdCtr has moved on


def test_a_wrong_old_key_fails_the_crc() -> None:
    card, session = authenticated_card()
    wrong = change_key_data(2, 0, NEW_KEY_2, 1, old=bytes(range(16)))
    assert card.transmit(session.command(0xC4, b"\x02", wrong)) == h("911E")
    assert card.keys[2] == bytes(16)


def test_authentication_with_a_wrong_key_is_refused() -> None:
    card = BlankNtag424(UID, random=scripted(T14_RND_B, A_TI))
    card.transmit(SELECT)
    resp = card.transmit(T14_CMD1)
    part2, _ = auth_part2(bytes(range(16)), resp[:16], T14_RND_A)
    assert card.transmit(part2) == h("91AE")
    assert card.session is None


def test_changing_the_authenticated_key_ends_the_session() -> None:
    card, session = authenticated_card()
    new0 = h("5004BF991F408672B1EF00F08F9E8647")
    resp = card.transmit(session.command(0xC4, b"\x00", change_key_data(0, 0, new0, 1)))
    assert resp == h("9100")
    assert card.keys[0] == new0 and card.session is None
    session.response(resp, mac=False)
    assert card.transmit(change_key_2(session)) == h("91AE")


def test_a_select_ends_the_session() -> None:
    card, session = authenticated_card()
    card.transmit(SELECT)
    assert card.transmit(change_key_2(session)) == h("91AE")


def test_change_file_settings_sets_the_sdm_layout_of_table_18() -> None:
    card, session = authenticated_card()
    settings = h("4000E0C1F121200000430000430000")
    assert session.response(card.transmit(session.command(0x5F, b"\x02", settings))) == b""
    assert card.sdm == {"meta": 2, "file": 1, "picc": 0x20, "mac_input": 0x43, "mac": 0x43}
    assert card.access == h("00E0")


def test_the_writer_authenticates_with_the_apdus_of_table_14() -> None:
    from provisioning.ntag424_writer import authenticate

    card = BlankNtag424(UID, random=scripted(T14_RND_B, A_TI))
    sent: list[bytes] = []

    class Recorder:
        def transmit(self, apdu: bytes) -> bytes:
            sent.append(apdu)
            return card.transmit(apdu)

    card.transmit(SELECT)
    session = authenticate(Recorder(), 0, bytes(16), scripted(T14_RND_A))
    assert sent == [T14_CMD1, T14_CMD2]
    assert (session.enc_key, session.mac_key, session.ti) == (A_ENC, A_MAC, A_TI)
