#!/usr/bin/env node
// A pilot webhook receiver that verifies Standard Webhooks signatures (node:http and
// node:crypto only; Node 18 or newer).
//
//     WEBHOOK_SECRET=whsec_... node receiver.js            # http://127.0.0.1:8080/
//     WEBHOOK_SECRET=whsec_... PORT=0 node receiver.js     # any free port
//
// Every POST must carry a valid `webhook-signature` for the secret: one of its space-separated
// `v1,<base64>` entries must equal HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"),
// where key is the base64-decoded part after `whsec_` (a secret without that prefix: its raw
// bytes), and `webhook-timestamp` must be within 5 minutes of now. Deliveries are deduplicated
// by `webhook-id` (a retry or a redelivery carries the same id). A body is one event, or a
// batch `{"events": [...]}`.
//
// Answers: 200 processed (or a duplicate, skipped), 401 bad signature, 400 bad body. Prints one
// JSON line on stdout when listening ({"listening": URL}) and one per request:
// {"webhook_id", "verified", "duplicate", "error", "events": [{"event_id", "event"}]}.
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');

const TOLERANCE_SECONDS = 5 * 60;
const MAX_BODY = 1024 * 1024;
const SEEN_MAX = 10000;

// The HMAC key: base64-decoded after `whsec_`, else the secret's raw bytes.
function signingKey(secret) {
  if (secret.startsWith('whsec_')) {
    const b64 = secret.slice('whsec_'.length);
    if (/^[A-Za-z0-9+/]*={0,2}$/.test(b64) && b64.length % 4 === 0) {
      return Buffer.from(b64, 'base64');
    }
  }
  return Buffer.from(secret, 'utf8');
}

// null when the request is authentic, else why not.
function verify(key, msgId, timestamp, signatures, body, now = Math.floor(Date.now() / 1000)) {
  if (!msgId || !timestamp || !signatures) {
    return 'missing webhook-id, webhook-timestamp or webhook-signature';
  }
  if (!/^\d+$/.test(timestamp)) return 'webhook-timestamp is not a number';
  if (Math.abs(now - Number(timestamp)) > TOLERANCE_SECONDS) {
    return 'webhook-timestamp is too far from now (replayed or delayed)';
  }
  const expected = crypto
    .createHmac('sha256', key)
    .update(`${msgId}.${timestamp}.`)
    .update(body)
    .digest();
  // During a secret rotation there is one entry per valid secret: any may match.
  for (const entry of signatures.split(' ')) {
    const [version, signature] = entry.split(',', 2);
    if (version !== 'v1' || !signature) continue;
    const given = Buffer.from(signature, 'base64');
    if (given.length === expected.length && crypto.timingSafeEqual(given, expected)) {
      return null;
    }
  }
  return 'no signature matches';
}

// The webhook-ids already processed (the newest SEEN_MAX).
const seen = new Set();
function firstTime(msgId) {
  if (seen.has(msgId)) return false;
  seen.add(msgId);
  if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
  return true;
}

function report(fields) {
  process.stdout.write(JSON.stringify(fields) + '\n');
}

const key = signingKey(process.env.WEBHOOK_SECRET || '');

const server = http.createServer((req, res) => {
  const answer = (status) => {
    res.writeHead(status, { 'Content-Length': 0 });
    res.end();
  };
  if (req.method !== 'POST') return answer(405);
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  req.on('end', () => {
    if (size > MAX_BODY) return answer(413);
    const body = Buffer.concat(chunks);
    const msgId = req.headers['webhook-id'];
    const error = verify(
      key,
      msgId,
      req.headers['webhook-timestamp'],
      req.headers['webhook-signature'],
      body,
    );
    if (error) {
      report({ webhook_id: msgId ?? null, verified: false, duplicate: false, error, events: [] });
      return answer(401);
    }
    let summary;
    try {
      const payload = JSON.parse(body.toString('utf8'));
      const events = Array.isArray(payload.events) ? payload.events : [payload];
      summary = events.map((e) => ({ event_id: e.event_id, event: e.event }));
    } catch (e) {
      report({ webhook_id: msgId, verified: true, duplicate: false, error: `bad body: ${e.message}`, events: [] });
      return answer(400);
    }
    const duplicate = !firstTime(msgId);
    // Process the events here when not a duplicate (quickly: answer within the sender's timeout).
    report({ webhook_id: msgId, verified: true, duplicate, error: null, events: summary });
    answer(200);
  });
});

if (!process.env.WEBHOOK_SECRET) {
  console.error('set WEBHOOK_SECRET to the secret `pilotctl webhook secret show` prints');
  process.exit(1);
}
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 8080);
server.listen(port, host, () => {
  report({ listening: `http://${host}:${server.address().port}/` });
});
