"""Personalise a blank NTAG 424 DNA for a site: our SUN URL in the NDEF file, SDM on with the
offsets of our URL layout, keys 2/3 (SDM meta read / file read) and key 0 (application master)
changed to AN10922-diversified keys, then a SUN tap read back and verified.

The commands are the card's own secure messaging (NT4H2421Gx, AN12196; the crypto is in
`edge.drivers.ntag424_ev2`, pinned to AN12196's examples): WriteData of the NDEF file in
CommMode.Plain while its write right is still free, then AuthenticateEV2First with the factory
key 0 and, in that session, ChangeFileSettings and ChangeKey 2, 3, 0 in CommMode.Full. Key 0 goes
last: changing the authenticated key ends the session.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from edge.drivers.nfc_cards import SDM_ENABLED, SDM_UID_CTR_ASCII
from edge.drivers.nfc_tap import (
    GET_UID,
    SELECT_NDEF_APP,
    CardLink,
    CardPresented,
    SunVerifier,
    read_tap,
)
from edge.drivers.ntag424 import FILE_READ_KEY_NO, META_READ_KEY_NO, SiteKeys, an10922_diversify
from edge.drivers.ntag424_ev2 import (
    AUTH_FIRST,
    Ev2Error,
    Ev2Session,
    auth_part2,
    change_key_data,
    finish_auth,
)
from edge.drivers.sun_counters import MemoryCounterStore
from edge.drivers.sun_url import build_ndef_file, sun_url
from provisioning.errors import ProvisionError

__all__ = ["PersonalisedCard", "app_master_key", "authenticate", "personalise", "sdm_layout"]

APP_MASTER_KEY_NO = 0x00
NDEF_FILE_NO = 0x02
KEY_VERSION = 0x01
SW_NATIVE_OK = b"\x91\x00"
SW_OK = b"\x90\x00"
# After personalisation: read free, write and change with key 0 (RW|Change, Read|Write).
ACCESS_AFTER = bytes([0x00, 0xE0])
# SDMAccessRights: RFU|CtrRet (no counter retrieval), MetaRead|FileRead.
SDM_ACCESS = bytes([0xFF, (META_READ_KEY_NO << 4) | FILE_READ_KEY_NO])


class PersonaliseError(ProvisionError):
    """A card refused a personalisation step (not blank, wrong card, removed)."""


def app_master_key(keys: SiteKeys, uid: bytes) -> bytes:
    """Key 0 of a card, diversified like the file read key (M = 00 || UID || system id)."""
    return an10922_diversify(keys.master, bytes([APP_MASTER_KEY_NO]) + uid + keys.system_id)


def sdm_layout(base_url: str) -> tuple[bytes, int, int]:
    """The NDEF file template and the offsets of `e` (PICCData) and `cmac` in it."""
    template = build_ndef_file(sun_url(base_url, bytes(16), bytes(8)))
    picc = template.index(b"?e=") + 3
    mac = template.index(b"&cmac=") + 6
    return template, picc, mac


def _refused(what: str, sw: bytes) -> PersonaliseError:
    blank = sw in (b"\x91\xae", b"\x91\x9d")  # auth error, permission denied
    hint = " (card not blank, or personalised for another site)" if blank else ""
    return PersonaliseError(f"{what} refused: SW {sw.hex()}{hint}")


def _plain(link: CardLink, ins: int, data: bytes, what: str) -> None:
    resp = link.transmit(bytes([0x90, ins, 0x00, 0x00, len(data)]) + data + b"\x00")
    if resp[-2:] != SW_NATIVE_OK:
        raise _refused(what, resp[-2:])


def authenticate(
    link: CardLink, key_no: int, key: bytes, random: Callable[[int], bytes] = os.urandom
) -> Ev2Session:
    """AuthenticateEV2First with `key`: the session for CommMode.Full commands."""
    resp = link.transmit(bytes([0x90, AUTH_FIRST, 0x00, 0x00, 0x02, key_no, 0x00, 0x00]))
    if resp[-2:] != b"\x91\xaf" or len(resp) != 18:
        raise _refused("AuthenticateEV2First", resp[-2:])
    part2, rnd_b = auth_part2(key, resp[:16], rnd_a := random(16))
    resp = link.transmit(part2)
    if resp[-2:] != SW_NATIVE_OK:
        raise _refused("AuthenticateEV2First", resp[-2:])
    try:
        return finish_auth(key, key_no, rnd_a, rnd_b, resp[:-2])
    except Ev2Error as exc:
        raise PersonaliseError(f"AuthenticateEV2First: {exc}") from exc


def _full(
    link: CardLink,
    session: Ev2Session,
    ins: int,
    header: bytes,
    plain: bytes,
    what: str,
    *,
    mac: bool = True,
) -> None:
    resp = link.transmit(session.command(ins, header, plain))
    if resp[-2:] != SW_NATIVE_OK:
        raise _refused(what, resp[-2:])
    try:
        session.response(resp, mac=mac)
    except Ev2Error as exc:
        raise PersonaliseError(f"{what}: {exc} (not a genuine card, or a tampered link)") from exc


@dataclass(frozen=True, slots=True)
class PersonalisedCard:
    uid_hex: str
    read_ctr: int

    def __repr__(self) -> str:
        return f"PersonalisedCard(uid=<hidden>, read_ctr={self.read_ctr})"


def personalise(
    link: CardLink,
    keys: SiteKeys,
    base_url: str,
    *,
    random: Callable[[int], bytes] = os.urandom,
) -> PersonalisedCard:
    """Personalise the blank card on `link` for the site of `keys`, and verify a SUN read.

    `random` gives RndA (injectable so a trace can be reproduced)."""
    resp = link.transmit(GET_UID)
    uid = resp[:-2]
    if resp[-2:] != SW_OK or len(uid) != 7:
        raise PersonaliseError("no 7-byte UID: is this an NTAG 424 DNA?")
    if link.transmit(SELECT_NDEF_APP)[-2:] != SW_OK:
        raise PersonaliseError("no NDEF application: is this an NTAG 424 DNA?")
    template, picc_at, mac_at = sdm_layout(base_url)
    size = len(template).to_bytes(3, "little")
    _plain(link, 0x8D, bytes([NDEF_FILE_NO]) + bytes(3) + size + template, "WriteData")
    settings = (
        bytes([SDM_ENABLED])
        + ACCESS_AFTER
        + bytes([SDM_UID_CTR_ASCII])
        + SDM_ACCESS
        + picc_at.to_bytes(3, "little")
        + mac_at.to_bytes(3, "little")  # MAC input offset = MAC offset: empty MAC input
        + mac_at.to_bytes(3, "little")
    )
    factory = bytes(16)
    session = authenticate(link, APP_MASTER_KEY_NO, factory, random)
    file_no = bytes([NDEF_FILE_NO])
    _full(link, session, 0x5F, file_no, settings, "ChangeFileSettings")
    key0 = app_master_key(keys, uid)
    for key_no, new in (
        (META_READ_KEY_NO, keys.meta_read_key),
        (FILE_READ_KEY_NO, keys.file_read_key(uid)),
        (APP_MASTER_KEY_NO, key0),  # last: changing the authenticated key ends the session
    ):
        data = change_key_data(key_no, APP_MASTER_KEY_NO, new, KEY_VERSION, old=factory)
        what = f"ChangeKey {key_no}"
        _full(link, session, 0xC4, bytes([key_no]), data, what, mac=key_no != APP_MASTER_KEY_NO)
    # Read it back as a kiosk would: the SUN message must verify with the site's keys.
    verifier = SunVerifier(keys, MemoryCounterStore(os.urandom(32)))
    event = read_tap(link, verifier)
    if not isinstance(event, CardPresented) or not event.token.authenticated:
        raise PersonaliseError(f"read-back did not verify: {event}")
    if event.token.value != uid.hex().upper():
        raise PersonaliseError("read-back names another UID")
    return PersonalisedCard(uid.hex().upper(), 1)
