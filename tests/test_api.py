"""The REST API against the console served by its real command: tokens per integration with the
operators' permissions, top-ups and refunds answered once per Idempotency-Key, the feed of
transactions paged by cursor, card lifecycle, the audit trail; and schemathesis fuzzing every
operation of the served OpenAPI schema, which must find nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_sync import admin
from tests.console_helpers import running_console

requests = pytest.importorskip("requests")
pytest.importorskip("rest_framework")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    yield from running_console(tmp_path_factory.mktemp("api") / "cloud")


@pytest.fixture(scope="module")
def tokens(console):
    from backoffice.api.tokens import issue

    return {
        "manager": issue("pos-1", ["venue manager"]),
        "cashier": issue("till-2", ["cashier"]),
        "fuzz": issue("fuzzer", ["venue manager"]),
    }


def call(console, token, method, path, body=None, key=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if key:
        headers["Idempotency-Key"] = key
    return requests.request(method, console.url + path, json=body, headers=headers, timeout=10)


def test_top_up_is_answered_once_per_idempotency_key(console, tokens):
    t = tokens["manager"]
    body = {"amount": 2500, "receipt": "POS-77"}
    first = call(console, t, "POST", "/api/members/m1/topups/", body, key="k-77")
    assert first.status_code == 201, first.text
    again = call(console, t, "POST", "/api/members/m1/topups/", body, key="k-77")
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other = call(console, t, "POST", "/api/members/m1/topups/", {**body, "amount": 9}, key="k-77")
    assert other.status_code == 409 and "another request" in other.json()["detail"]
    assert call(console, t, "POST", "/api/members/m1/topups/", body).status_code == 400
    # the receipt itself is also idempotent at the cloud: a new key, the same receipt, credits once
    third = call(console, t, "POST", "/api/members/m1/topups/", body, key="k-78")
    assert third.status_code == 201
    bal = call(console, t, "GET", "/api/members/m1/balances/").json()
    assert bal == {"account": "m1", "balances": {"cash": 2500}}
    reused = call(console, t, "POST", "/api/members/m2/topups/", body, key="k-79")
    assert reused.status_code == 409 and "POS-77" in reused.json()["detail"]
    done = console.actions(actor="api:pos-1", action="top_up")
    assert [a.allowed for a in done].count(True) == 2 and [a.allowed for a in done].count(
        False
    ) == 1


def test_tokens_carry_the_operators_permissions_and_refusals_are_audited(console, tokens):
    assert call(console, None, "GET", "/api/members/").status_code == 401
    assert call(console, "kt_nope_nope", "GET", "/api/members/").status_code == 401
    cashier = tokens["cashier"]
    assert call(console, cashier, "GET", "/api/members/m1/").status_code == 200
    refund = {"tap": "t1", "reason": "cold"}
    assert call(console, cashier, "POST", "/api/refunds/", refund, key="r1").status_code == 403
    refused = console.actions(actor="api:till-2", allowed=False)
    assert refused and "members.refund" in refused[0].reason
    unknown = call(console, tokens["manager"], "POST", "/api/refunds/", refund, key="r2")
    assert unknown.status_code == 409 and "no purchase" in unknown.json()["detail"]


def test_members_and_cards_through_the_api(console, tokens):
    t = tokens["manager"]
    made = call(console, t, "POST", "/api/members/", {"account": "m9", "name": "Chen Jing"})
    assert made.status_code == 201, made.text
    assert (
        call(console, t, "POST", "/api/members/", {"account": "m9", "name": "X"}).status_code == 409
    )
    card = call(console, t, "POST", "/api/members/m9/cards/", {"number": "90001231"})
    assert card.status_code == 201, card.text
    ref = card.json()["ref"]
    assert "90001231" not in ref
    lost = call(console, t, "POST", f"/api/cards/{ref}/status/", {"status": "lost"})
    assert lost.status_code == 200 and lost.json()["status"] == "lost", lost.text
    back = call(console, t, "POST", f"/api/cards/{ref}/status/", {"status": "active"})
    assert back.status_code == 409  # a lost card is never unfrozen
    page = call(console, t, "GET", "/api/members/?search=chen").json()
    assert [m["account"] for m in page["results"]] == ["m9"]
    store = console.store()
    try:
        assert admin.card_status(store, ref).value == "lost"
    finally:
        store.close()


def test_the_transaction_feed_pages_by_cursor_without_gaps_or_repeats(console, tokens):
    t = tokens["manager"]
    for i in range(5):
        body = {"amount": 100 + i, "receipt": f"F-{i}"}
        assert call(console, t, "POST", "/api/members/m2/topups/", body, key=f"f{i}").ok
    seen, cursor = [], ""
    for _ in range(50):
        page = call(console, t, "GET", f"/api/transactions/?limit=3&cursor={cursor}").json()
        seen += [(r["replica"], r["seq"]) for r in page["results"]]
        cursor = page["next_cursor"]
        if not page["more"]:
            break
    store = console.store()
    try:
        total = sum(store.heads().values())
    finally:
        store.close()
    assert len(seen) == len(set(seen)) == total
    assert call(console, t, "GET", "/api/transactions/?cursor=%%%").status_code == 400
    # nothing new: the last cursor gives an empty page
    assert call(console, t, "GET", f"/api/transactions/?cursor={cursor}").json()["results"] == []


def test_the_shift_report_counts_each_integrations_top_ups_from_the_audit_trail(console, tokens):
    import datetime as dt

    from backoffice.reports.shifts import shifts
    from cloud_sync.reports import Window

    t = tokens["manager"]
    for i in (1, 2):
        body = {"amount": 700 * i, "receipt": f"S-{i}"}
        assert call(console, t, "POST", "/api/members/m2/topups/", body, key=f"s{i}").ok
    call(console, t, "POST", "/api/members/m1/topups/", {"amount": 1, "receipt": "S-1"}, key="s3")
    today = dt.datetime.now(dt.UTC).date()
    report = shifts(Window(today - dt.timedelta(days=1), today + dt.timedelta(days=2)))
    rows = [r for r in report.main.rows if r["operator"] == "api:pos-1"]
    store = console.store()
    try:  # what the cloud credited for this integration's receipts, from the ops
        receipts = [a.before["receipt"] for a in console.actions(actor="api:pos-1",
                    action="top_up", allowed=True)]  # fmt: skip
        credited = sum(o.amount for r in set(receipts) for o in store.by_ref(r))  # a retry: once
    finally:
        store.close()
    assert sum(r["topped_up"] for r in rows) == credited > 0
    assert sum(r["top_ups"] for r in rows) == len(receipts)
    assert sum(r["refused"] for r in rows) >= 1


def test_openapi_schema_and_docs_are_served(console):
    schema = requests.get(console.url + "/api/schema/?format=json", timeout=10)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/members/{account}/topups/" in paths
    docs = requests.get(console.url + "/api/docs/", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_schemathesis_finds_nothing_in_the_served_api(console, tokens, tmp_path):
    """Every operation of the served schema, fuzzed (positive and negative data) with every
    check schemathesis has; the closing summary line goes to the test log."""
    exe = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(exe), "run", console.url + "/api/schema/?format=json",
         "-H", f"Authorization: Bearer {tokens['fuzz']}",
         "--checks", "all", "--max-examples", "25", "--seed", "15", "--workers", "1",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "10"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,  # its cache stays there
    )  # fmt: skip
    out = run.stdout + run.stderr
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    print("schemathesis:", summary[-1] if summary else out[-2000:])
    assert run.returncode == 0, out[-6000:]
