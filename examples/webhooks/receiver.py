"""A webhook receiver that checks stackcascade's (and Pulumi Cloud's) signature. Standard library only.

    WEBHOOK_SECRET='the secret you gave the webhook' python examples/webhooks/receiver.py --port 8000

Each request's ``Pulumi-Webhook-Signature`` must be the lowercase hex HMAC-SHA256 of the exact body,
keyed with the webhook's secret. Compute it over the raw bytes, before any JSON parsing, and compare
in constant time. Valid deliveries get 200, anything else 401. One JSON line per request on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """True when ``signature`` is the HMAC-SHA256 of ``body`` under ``secret``."""
    if not signature:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def make_handler(secret: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            valid = verify(secret, body, self.headers.get("Pulumi-Webhook-Signature"))
            self.send_response(200 if valid else 401)
            self.end_headers()
            record = {
                "verified": valid,
                "id": self.headers.get("Pulumi-Webhook-ID"),
                "kind": self.headers.get("Pulumi-Webhook-Kind"),
                "payload": json.loads(body) if valid else None,
            }
            print(json.dumps(record), flush=True)

        def log_message(self, *_: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        sys.exit("set WEBHOOK_SECRET to the webhook's secret")
    server = HTTPServer((args.host, args.port), make_handler(secret))
    print(f"listening on http://{args.host}:{server.server_address[1]}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
