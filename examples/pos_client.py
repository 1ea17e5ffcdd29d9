"""A point-of-sale system talking to the kiosk-edge back office: it tops a member up through the
REST API with its receipt number as the Idempotency-Key (a retry after a lost answer credits
once), and receives the `topup` webhook on a tiny HTTP server that checks the HMAC signature and
refuses old timestamps. Standard library only, as a POS integration would be.

    python examples/pos_client.py --api http://127.0.0.1:8000 --token kt_... \\
        --secret whsec_... --listen 8765 --account m1 --amount 2500 --receipt POS-0001

The console side: `kiosk cloud integration add pos-1 --group cashier` (the token) and
`kiosk cloud webhooks add --name pos-1 --url http://127.0.0.1:8765/hook --event topup` (the
secret). Exit 0 once the webhook for this receipt arrived and verified, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_S = 300  # a signature older than this is a replay


def verify(secret: str, header: str, body: bytes, now: float) -> bool:
    """`Kiosk-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > TOLERANCE_S:
        return False
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, parts.get("v1", ""))


def receiver(secret: str, port: int, events: queue.Queue[dict[str, Any]]) -> ThreadingHTTPServer:
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not verify(secret, self.headers.get("Kiosk-Signature", ""), body, time.time()):
                self.send_response(401)  # the sender retries; a forger gets nothing
                self.end_headers()
                return
            self.send_response(204)
            self.end_headers()
            events.put(json.loads(body))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def top_up(api: str, token: str, account: str, amount: int, receipt: str) -> dict[str, Any]:
    if not api.startswith(("http://", "https://")):
        raise SystemExit(f"--api {api!r} is not an http(s) URL")
    body = json.dumps({"amount": amount, "receipt": receipt}).encode()
    req = urllib.request.Request(  # noqa: S310 (checked above)
        f"{api}/api/members/{account}/topups/",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": receipt,
        },
    )
    for attempt in range(3):  # a retry with the same key is answered with the first answer
        try:
            with urllib.request.urlopen(req, timeout=10) as res:  # noqa: S310 (checked above)
                return dict(json.load(res))
        except urllib.error.HTTPError as exc:
            raise SystemExit(
                f"top-up refused ({exc.code}): {json.load(exc).get('detail')}"
            ) from None
        except OSError:
            time.sleep(0.5 * (attempt + 1))
    raise SystemExit("the back office did not answer")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--api", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--account", required=True)
    p.add_argument("--amount", type=int, required=True, help="minor units")
    p.add_argument("--receipt", required=True)
    p.add_argument("--wait", type=float, default=30.0)
    a = p.parse_args()
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    server = receiver(a.secret, a.listen, events)
    try:
        done = top_up(a.api, a.token, a.account, a.amount, a.receipt)
        print(f"topped up {done['amount']} on {done['account']}: balance {done['balance']}")
        deadline = time.monotonic() + a.wait
        while time.monotonic() < deadline:
            try:
                event = events.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            data = event.get("data", {})
            print(f"webhook {event['event']} {event['id']} verified: {json.dumps(data)}")
            if event["event"] == "topup" and data.get("receipt") == a.receipt:
                return 0
        print("no webhook for this receipt arrived", file=sys.stderr)
        return 1
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
