#!/usr/bin/env python3
"""A pilot webhook receiver that verifies Standard Webhooks signatures (stdlib only).

    WEBHOOK_SECRET=whsec_... python3 receiver.py            # http://127.0.0.1:8080/
    WEBHOOK_SECRET=whsec_... PORT=0 python3 receiver.py     # any free port

Every POST must carry a valid `webhook-signature` for the secret: one of its space-separated
`v1,<base64>` entries must equal HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"),
where key is the base64-decoded part after `whsec_` (a secret without that prefix: its raw
bytes), and `webhook-timestamp` must be within 5 minutes of now. Deliveries are deduplicated by
`webhook-id` (a retry or a redelivery carries the same id). A body is one event, or a batch
`{"events": [...]}`.

Answers: 200 processed (or a duplicate, skipped), 401 bad signature, 400 bad body. Prints one
JSON line on stdout when listening ({"listening": URL}) and one per request:
{"webhook_id", "verified", "duplicate", "error", "events": [{"event_id", "event"}]}.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60
MAX_BODY = 1024 * 1024
SEEN_MAX = 10_000


def signing_key(secret):
    """The HMAC key: base64-decoded after `whsec_`, else the secret's raw bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_"):], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def verify(key, msg_id, timestamp, signatures, body, now=None):
    """None when the request is authentic, else why not."""
    if not (msg_id and timestamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent_at = int(timestamp)
    except ValueError:
        return "webhook-timestamp is not a number"
    now = int(time.time()) if now is None else now
    if abs(now - sent_at) > TOLERANCE_SECONDS:
        return "webhook-timestamp is too far from now (replayed or delayed)"
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    # During a secret rotation there is one entry per valid secret: any may match.
    for entry in signatures.split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return None
    return "no signature matches"


class Seen:
    """The webhook-ids already processed (the newest SEEN_MAX), shared by all threads."""

    def __init__(self):
        self.ids = OrderedDict()
        self.lock = threading.Lock()

    def first_time(self, msg_id):
        with self.lock:
            if msg_id in self.ids:
                return False
            self.ids[msg_id] = True
            if len(self.ids) > SEEN_MAX:
                self.ids.popitem(last=False)
            return True


KEY = signing_key(os.environ.get("WEBHOOK_SECRET", ""))
SEEN = Seen()


def report(**fields):
    print(json.dumps(fields), flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return self.answer(413)
        body = self.rfile.read(length)
        msg_id = self.headers.get("webhook-id")
        error = verify(
            KEY,
            msg_id,
            self.headers.get("webhook-timestamp"),
            self.headers.get("webhook-signature"),
            body,
        )
        if error:
            report(webhook_id=msg_id, verified=False, duplicate=False, error=error, events=[])
            return self.answer(401)
        try:
            payload = json.loads(body)
            events = payload["events"] if "events" in payload else [payload]
            summary = [{"event_id": e["event_id"], "event": e["event"]} for e in events]
        except (ValueError, KeyError, TypeError) as e:
            report(webhook_id=msg_id, verified=True, duplicate=False, error=f"bad body: {e}", events=[])
            return self.answer(400)
        if not SEEN.first_time(msg_id):
            report(webhook_id=msg_id, verified=True, duplicate=True, error=None, events=summary)
            return self.answer(200)
        # Process the events here (quickly: answer within the sender's timeout).
        report(webhook_id=msg_id, verified=True, duplicate=False, error=None, events=summary)
        self.answer(200)

    def log_message(self, format, *args):
        pass  # stdout carries one JSON line per request; keep stderr quiet


def main():
    if not os.environ.get("WEBHOOK_SECRET"):
        sys.exit("set WEBHOOK_SECRET to the secret `pilotctl webhook secret show` prints")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    report(listening=f"http://{host}:{server.server_address[1]}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
