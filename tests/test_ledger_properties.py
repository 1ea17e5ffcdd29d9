"""Property tests of the bounded counter: any interleaving, duplication and reordering of ops
converges; strict mode never lets a purse below its bound; rights are never negative."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.ledger import Intent, Kind, Ledger, SpendRefused, generate_key, public_bytes

KIOSKS = ("k1", "k2", "k3")
ACCOUNTS = ("m1", "m2")
PURSES = ("cash", "visits:swim")
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None

action = st.one_of(
    st.tuples(
        st.just("topup"), st.sampled_from(ACCOUNTS), st.sampled_from(PURSES), st.integers(1, 500)
    ),
    st.tuples(
        st.just("grant"),
        st.sampled_from(KIOSKS),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(PURSES),
        st.integers(1, 300),
    ),
    st.tuples(
        st.just("spend"),
        st.sampled_from(KIOSKS),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(PURSES),
        st.integers(1, 200),
    ),
    st.tuples(
        st.just("kiosk_topup"),
        st.sampled_from(KIOSKS),
        st.sampled_from(ACCOUNTS),
        st.integers(1, 100),
    ),
    st.tuples(
        st.just("give_back"),
        st.sampled_from(KIOSKS),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(PURSES),
        st.integers(1, 200),
    ),
    st.tuples(
        st.just("sync"), st.sampled_from(("cloud", *KIOSKS)), st.sampled_from(("cloud", *KIOSKS))
    ),
)


def make_fleet(root: Path) -> dict[str, Ledger]:
    keys = {r: generate_key() for r in ("cloud", *KIOSKS)}
    roles = {r: ("cloud" if r == "cloud" else "kiosk") for r in keys}
    fleet = {}
    for r, key in keys.items():
        led = Ledger(root / f"{r}.db", replica=r, key=key, role=roles[r])
        for other, okey in keys.items():
            if other != r:
                led.trust(other, public_bytes(okey), roles[other])
        fleet[r] = led
    return fleet


def observer(root: Path, name: str, fleet: dict[str, Ledger]) -> Ledger:
    led = Ledger(root / f"{name}.db")
    for r, src in fleet.items():
        pub = src.public_key(r)
        assert pub is not None
        led.trust(r, public_bytes(pub), src.role)
    return led


def run(fleet: dict[str, Ledger], actions: list[tuple]) -> int:
    refused = 0
    for a in actions:
        try:
            match a:
                case ("topup", acct, purse, n):
                    fleet["cloud"].append([Intent(Kind.INC, acct, purse, n)])
                case ("grant", k, acct, purse, n):
                    fleet["cloud"].append([Intent(Kind.XFER, acct, purse, n, counterpart=k)])
                case ("spend", k, acct, purse, n):
                    fleet[k].append([Intent(Kind.DEC, acct, purse, n)])
                case ("kiosk_topup", k, acct, n):
                    fleet[k].append([Intent(Kind.INC, acct, "cash", n)])
                case ("give_back", k, acct, purse, n):
                    fleet[k].append([Intent(Kind.XFER, acct, purse, n, counterpart="cloud")])
                case ("sync", src, dst):
                    if src != dst:
                        fleet[dst].apply_many(list(fleet[src].ops()))
        except SpendRefused:
            refused += 1
    return refused


def snapshot(led: Ledger) -> tuple:
    purses = tuple(
        (p.account, p.purse, p.value, tuple((s.replica, led_r(p, s.replica)) for s in p.shares))
        for p in led.purses()
    )
    return purses, tuple(sorted(led.heads().items()))


def led_r(p, replica):
    return p.rights(replica)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(action, min_size=1, max_size=40), seed=st.integers(0, 2**32 - 1))
def test_any_delivery_order_with_duplicates_converges_and_bounds_hold(actions, seed):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = Path(tmp)
        fleet = make_fleet(root)
        run(fleet, actions)
        every_op = [op for led in fleet.values() for op in led.ops(led.replica)]
        rng = random.Random(seed)
        views = []
        for name in ("obs-a", "obs-b"):
            obs = observer(root, name, fleet)
            delivery = every_op + rng.sample(every_op, k=len(every_op) // 2)  # some twice
            rng.shuffle(delivery)
            counts = obs.apply_many(delivery)
            assert counts["refused"] == 0
            assert obs.pending_count() == 0
            views.append(obs)
        # Convergence: the same state whatever the order, duplicates included.
        assert snapshot(views[0]) == snapshot(views[1])
        obs = views[0]
        assert obs.heads() == {r: led.head()[0] for r, led in fleet.items() if led.head()[0]}
        for p in obs.purses():
            ops = [o for o in every_op if (o.account, o.purse) == (p.account, p.purse)]
            incs = sum(o.amount for o in ops if o.kind is Kind.INC)
            decs = sum(o.amount for o in ops if o.kind in (Kind.DEC, Kind.DEBT))
            assert p.value == incs - decs
            assert p.value >= p.lower_bound  # strict mode: never below the bound
            for s in p.shares:
                assert p.rights(s.replica) >= 0
        # Every replica's own partial view also holds its bound.
        for led in fleet.values():
            for p in led.purses():
                assert p.value >= p.lower_bound
                assert p.rights(led.replica) >= 0
        for led in (*fleet.values(), *views):
            led.close()
