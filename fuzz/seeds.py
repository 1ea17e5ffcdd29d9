"""Write the seed corpora (`fuzz/corpus/<target>/`): a few valid inputs of each kind, signed
with the targets' fixed keys, so mutations start from structure. Run after a format change:

    python -m fuzz.seeds
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloud_sync import enroll_wire, protocol
from edge.ledger.op import GENESIS, Kind, Op
from fuzz.targets import CLAIM, KEY, REQUEST_DIGEST, TOPIC
from provisioning.bundle import create_bundle

CORPUS = Path(__file__).parent / "corpus"
_NOW = 1_790_000_000_000  # fixed times: the same seeds on every run


def _chain(n: int) -> list[Op]:
    ops: list[Op] = []
    prev = GENESIS
    for i in range(n):
        kind = (Kind.INC, Kind.DEC, Kind.XFER)[i % 3]
        op = Op(
            replica="k1",
            seq=i + 1,
            wall_ms=_NOW + i * 1000,
            mono_ms=10 + i,
            kind=kind,
            account=f"m{i}",
            purse="cash" if i % 2 else "points",
            amount=100 * (i + 1),
            counterpart="cloud" if kind == Kind.XFER else "",
            ref=f"tap-{i}",
            data="",
            prev=prev,
            sig=b"",
        ).signed(KEY)
        ops.append(op)
        prev = op.hash()
    return ops


def _messages() -> list[protocol.Message]:
    batch = protocol.encode_ops(_chain(3))
    deny = protocol.DenyDelta(
        site="s1", version=3, entries=[protocol.DenyEntry(token="ab" * 16, status="lost")]
    )
    return [
        protocol.OpsUpload(batch=batch),
        protocol.Ack(seq=7, hash=b"\x01" * 32),
        protocol.ChainOps(batch=batch, own=True),
        protocol.Recall(id="r1", account="m1", purse="cash", amount=500),
        protocol.Snapshots(
            items=[
                protocol.Snapshot(
                    account="m1",
                    values={"cash": 1200},
                    rights={"cash": 300},
                    as_of_ms=_NOW,
                    own_head=9,
                )
            ]
        ),
        deny,
        protocol.Hello(id="h1", head=9, cloud_head=4, deny_version=3),
        protocol.RightsRequest(id="q1", account="m1", purse="cash", amount=250, cloud_head=4),
        protocol.RecoverRequest(id="v1", after_seq=2),
        protocol.DenySince(id="d1", since=1),
        protocol.Answer(id="q1", ok=True, granted=250, chain=batch, deny=[deny]),
        protocol.Status(online=True, head=9, acked=8, queue_depth=1, wall_ms=_NOW),
    ]


def _enroll_request() -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
    from cryptography.x509.oid import NameOID

    tls_key = ec.derive_private_key(12345, ec.SECP256R1())
    csr = (
        CertificateSigningRequestBuilder()
        .subject_name(Name([NameAttribute(NameOID.COMMON_NAME, "k1")]))
        .sign(tls_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    return enroll_wire.seal_request(
        CLAIM, device="k1", csr_pem=csr, ledger_key=KEY, reenroll=False, ts_ms=_NOW, nonce=b"n" * 16
    )


def _bundle() -> bytes:
    return create_bundle(
        site="s1",
        device="k1",
        cloud_key=KEY,
        site_secret=b"\x07" * 32,
        config_template={
            "kiosk": {"role": "gate", "product": "swim"},
            "rules": {"products": {"swim": {"name": "Swim", "price": 2500}}},
        },
        expires_in=timedelta(hours=2),
        now=datetime.fromtimestamp(_NOW / 1000, UTC),
    )


def _enroll_answers() -> list[bytes]:
    topic = enroll_wire.answer_topic(CLAIM.claim_id)
    grant = enroll_wire.Grant(REQUEST_DIGEST, _bundle(), b"-----CERT-----", b"-----CA-----")
    grant = msgspec.structs.replace(grant, sig=KEY.sign(enroll_wire.grant_bytes(topic, grant)))
    iv = b"\x09" * 12
    box = AESGCM(CLAIM.box_key).encrypt(
        iv, enroll_wire.ENCODER.encode(grant), enroll_wire.box_aad(topic, REQUEST_DIGEST)
    )
    ok = enroll_wire.Answer(enroll_wire.VERSION, REQUEST_DIGEST, True, iv=iv, box=box)
    reason = "claim expired"
    mac = enroll_wire.claim_mac(
        CLAIM.mac_key, enroll_wire.refusal_bytes(topic, REQUEST_DIGEST, reason)
    )
    refused = enroll_wire.Answer(enroll_wire.VERSION, REQUEST_DIGEST, False, reason=reason, mac=mac)
    return [enroll_wire.ENCODER.encode(a) for a in (ok, refused)]


def seeds() -> dict[str, list[bytes]]:
    messages = _messages()
    examples = Path(__file__).parent.parent / "examples"
    return {
        "envelope": [
            protocol.seal(m, topic=TOPIC, sender="k1", key=KEY, ts_ms=_NOW) for m in messages[:4]
        ],
        "body": [msgspec.msgpack.encode(m) for m in messages],
        "ops": [protocol.encode_ops(_chain(n)) for n in (1, 3, 6)],
        "enroll_request": [_enroll_request()],
        "enroll_answer": _enroll_answers(),
        "bundle": [_bundle()],
        "wedge_text": [
            b"%B6011000000000004^MEMBER/A^25121010000000000000?;6011000000000004=2512101?",
            b";1234567890123456?",
            b"4006381333931",
            b"]Q1C:COUPON-42",
            b"V:VOUCHER-7",
            b"https://t.example/c?e=00112233445566778899AABBCCDDEEFF&cmac=0011223344556677",
        ],
        "kiosk_config": [(examples / n).read_bytes() for n in ("kiosk-sim.toml", "kiosk-pi.toml")],
    }


def write(root: Path = CORPUS) -> dict[str, int]:
    """Replace each target's seed folder with the seeds; returns how many per target."""
    counts: dict[str, int] = {}
    for target, items in seeds().items():
        folder = root / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for data in items:
            (folder / hashlib.sha256(data).hexdigest()[:16]).write_bytes(data)
        counts[target] = len(items)
    return counts


if __name__ == "__main__":
    for name, n in write().items():
        print(f"{name}: {n} seeds in {CORPUS / name}{os.sep}")
