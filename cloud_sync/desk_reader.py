"""The operator's desk NFC reader (PC/SC): read a card's UID once, to link it to an account by
the same reference a kiosk computes when the card is tapped."""

from __future__ import annotations

from cloud_sync.errors import ActionRefused

GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]  # PC/SC part 3 pseudo-APDU


def read_uid(reader_name: str, timeout_s: float = 15.0) -> str:
    """Wait up to `timeout_s` for a card on the first reader whose name contains `reader_name`
    and return its UID as upper-case hex."""
    try:
        from smartcard.CardRequest import CardRequest
        from smartcard.CardType import AnyCardType
        from smartcard.Exceptions import CardRequestTimeoutException, SmartcardException
        from smartcard.System import readers
    except ImportError:
        raise ActionRefused("the desk reader needs pyscard: pip install 'kiosk-edge[hw]'") from None
    try:
        found = [r for r in readers() if reader_name in str(r)]
    except SmartcardException as exc:
        raise ActionRefused(f"cannot list PC/SC readers ({exc}); is pcscd running?") from None
    if not found:
        raise ActionRefused(f"no PC/SC reader matching {reader_name!r}")
    request = CardRequest(timeout=timeout_s, cardType=AnyCardType(), readers=found)
    try:
        service = request.waitforcard()
        service.connection.connect()
        try:
            data, sw1, sw2 = service.connection.transmit(GET_UID)
        finally:
            service.connection.disconnect()
    except CardRequestTimeoutException:
        raise ActionRefused(f"no card on {found[0]} within {timeout_s:.0f} s") from None
    except SmartcardException as exc:
        raise ActionRefused(f"could not read the card: {exc}") from None
    if (sw1, sw2) != (0x90, 0x00) or not data:
        raise ActionRefused(f"the card did not give its UID (status {sw1:02X}{sw2:02X})")
    return bytes(data).hex().upper()
