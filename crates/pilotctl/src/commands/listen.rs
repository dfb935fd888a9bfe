//! `listen`: a local webhook receiver for trying pilot out. It answers every POST to its path
//! with 200 and prints one line per event; other paths get 404.
//!
//! Text lines read `#<event_id> <event> node=<node_id> <timestamp> <data>`; with `--json` each
//! event is printed as one JSON line. A batch body `{"events":[...]}` prints one line per
//! event. With `--secret` (or `--secret-file`) each delivery's signature is checked
//! ([`crate::verify`]): lines end with `verified` or `INVALID SIGNATURE (...)` (with `--json`,
//! a `"verified"` field), and an invalid delivery is answered 401.
//! `listening on http://ADDR/PATH` goes to stderr once the socket is bound, so scripts can wait
//! for it.

use std::convert::Infallible;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::cli::ListenArgs;
use crate::context::Context;
use crate::output::{one_line, print_line, CliError, Output};
use crate::verify::{Signed, Verdict, Verifier};

/// The largest delivery body accepted.
const MAX_BODY: usize = 1024 * 1024;
/// How long open connections get to finish when the receiver stops.
const DRAIN: Duration = Duration::from_secs(2);

struct State {
    path: String,
    json: bool,
    count: Option<u64>,
    verifier: Option<Verifier>,
    seen: AtomicU64,
    done: Notify,
}

/// `listen`.
pub async fn run(ctx: &Context, args: &ListenArgs) -> Result<Output, CliError> {
    let path = normalize_path(&args.path)?;
    let verifier = secret(args)?.map(|s| Verifier::new(&s));
    let listener = TcpListener::bind(&args.addr)
        .await
        .map_err(|e| CliError::io(format!("cannot listen on {}: {e}", args.addr)))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::io(format!("cannot listen on {}: {e}", args.addr)))?;
    let _ = writeln!(io::stderr(), "listening on http://{local}{path}");
    if args.count == Some(0) {
        return Ok(Output::Streamed);
    }
    let state = Arc::new(State {
        path,
        json: ctx.json,
        count: args.count,
        verifier,
        seen: AtomicU64::new(0),
        done: Notify::new(),
    });
    let graceful = GracefulShutdown::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = state.done.notified() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors and the like: wait a moment, keep serving.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |req| handle(state.clone(), req));
                let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        }
    }
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(Output::Streamed)
}

/// The secret of `--secret` or `--secret-file` (its first line).
fn secret(args: &ListenArgs) -> Result<Option<String>, CliError> {
    let secret = match (&args.secret, &args.secret_file) {
        (Some(s), _) => s.trim().to_string(),
        (None, Some(path)) => crate::settings::read_small(path, "--secret-file")?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    if secret.is_empty() {
        return Err(CliError::invalid_argument("the secret is empty"));
    }
    Ok(Some(secret))
}

/// `events` and `/events` both mean `/events`.
fn normalize_path(path: &str) -> Result<String, CliError> {
    let path = path.trim();
    if path.contains(char::is_whitespace) || path.contains(['?', '#']) {
        return Err(CliError::invalid_argument(format!(
            "--path {path:?} must be a plain URL path like /events"
        )));
    }
    Ok(if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    })
}

fn reply(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != state.path {
        return Ok(reply(StatusCode::NOT_FOUND));
    }
    if req.method() != Method::POST {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return Ok(r);
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (id, ts, sig, pilot) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
        header("x-pilot-signature-256"),
    );
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE)),
        Err(_) => return Ok(reply(StatusCode::BAD_REQUEST)),
    };
    let n = state.seen.fetch_add(1, Ordering::SeqCst) + 1;
    if state.count.is_some_and(|c| n > c) {
        // Past --count: the receiver is closing, so let the sender try again elsewhere.
        return Ok(reply(StatusCode::SERVICE_UNAVAILABLE));
    }
    let verdict = state.verifier.as_ref().map(|v| {
        let signed = Signed {
            webhook_id: id.as_deref(),
            webhook_timestamp: ts.as_deref(),
            webhook_signature: sig.as_deref(),
            pilot_signature: pilot.as_deref(),
        };
        v.verify(&signed, &body, jiff::Timestamp::now().as_second())
    });
    let lines = delivery_lines(&body, state.json, verdict.as_ref());
    let printed = lines.iter().try_for_each(|l| print_line(l));
    if printed.is_err() || state.count == Some(n) {
        state.done.notify_one();
    }
    Ok(reply(match verdict {
        Some(Verdict::Invalid(_)) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::OK,
    }))
}

/// The lines printed for one delivery: one per event (a batch `{"events":[...]}` has
/// several), each with the verdict when signatures are checked.
pub fn delivery_lines(body: &[u8], json: bool, verdict: Option<&Verdict>) -> Vec<String> {
    let events: Vec<Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut o))
            if o.len() == 1 && o.get("events").is_some_and(Value::is_array) =>
        {
            match o.remove("events") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        }
        // One event, no verdict to add: the body exactly as it came.
        Ok(Value::Object(_)) if json && verdict.is_none() => {
            return vec![one_line(&String::from_utf8_lossy(body)).into_owned()]
        }
        Ok(v @ Value::Object(_)) => vec![v],
        _ => {
            let raw = one_line(&String::from_utf8_lossy(body)).into_owned();
            let line = if json {
                raw
            } else {
                format!("(not a pilot event) {raw}")
            };
            return vec![with_verdict_text(line, json, verdict)];
        }
    };
    events
        .into_iter()
        .map(|event| {
            if json {
                match (event, verdict) {
                    (Value::Object(mut o), Some(v)) => {
                        o.insert("verified".into(), Value::Bool(v.is_verified()));
                        Value::Object(o).to_string()
                    }
                    (event, _) => event.to_string(),
                }
            } else {
                let text = delivery_line(event.to_string().as_bytes());
                with_verdict_text(text, false, verdict)
            }
        })
        .collect()
}

/// Appends `  verified` or `  INVALID SIGNATURE (why)` to a text line.
fn with_verdict_text(line: String, json: bool, verdict: Option<&Verdict>) -> String {
    match (json, verdict) {
        (false, Some(Verdict::Verified { .. })) => format!("{line}  verified"),
        (false, Some(Verdict::Invalid(why))) => format!("{line}  INVALID SIGNATURE ({why})"),
        _ => line,
    }
}

#[derive(Deserialize)]
struct Delivery {
    event_id: u64,
    event: String,
    node_id: u64,
    timestamp: String,
    #[serde(default)]
    data: Option<Value>,
}

/// `#<event_id> <event> node=<node_id> <timestamp> <data-json-compact>` (no data part when
/// the event has none); a body that is not a pilot event is shown as it came.
pub fn delivery_line(body: &[u8]) -> String {
    match serde_json::from_slice::<Delivery>(body) {
        Ok(d) => {
            let data = d.data.map(|v| format!(" {v}")).unwrap_or_default();
            format!(
                "#{} {} node={} {}{data}",
                d.event_id, d.event, d.node_id, d.timestamp
            )
        }
        Err(_) => format!(
            "(not a pilot event) {}",
            one_line(&String::from_utf8_lossy(body))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_print_as_one_line() {
        let body = br#"{"event_id":1,"event":"handshake.received","node_id":5,"timestamp":"2026-01-15T12:34:56.789Z","data":{"peer_node_id":7,"justification":"want to collaborate"}}"#;
        assert_eq!(
            delivery_line(body),
            r#"#1 handshake.received node=5 2026-01-15T12:34:56.789Z {"peer_node_id":7,"justification":"want to collaborate"}"#
        );
        let body = br#"{"event_id":2,"event":"node.deregistered","node_id":0,"timestamp":"2026-01-15T12:34:56Z"}"#;
        assert_eq!(
            delivery_line(body),
            "#2 node.deregistered node=0 2026-01-15T12:34:56Z"
        );
        let pretty = b"{\n  \"event_id\": 3, \"event\": \"a.b\", \"node_id\": 1,\n  \"timestamp\": \"t\", \"data\": {\"z\": 1, \"a\": [1, 2]}\n}";
        assert_eq!(
            delivery_line(pretty),
            r#"#3 a.b node=1 t {"z":1,"a":[1,2]}"#
        );
        assert_eq!(
            delivery_line(b"hello\nworld"),
            "(not a pilot event) hello world"
        );
    }

    #[test]
    fn batches_print_one_line_per_event_with_the_verdict() {
        let body = br#"{"events":[{"event_id":1,"event":"a.b","node_id":0,"timestamp":"t"},{"event_id":2,"event":"a.c","node_id":0,"timestamp":"t","data":{"k":1}}]}"#;
        assert_eq!(
            delivery_lines(body, false, None),
            ["#1 a.b node=0 t", r#"#2 a.c node=0 t {"k":1}"#]
        );
        let ok = Verdict::Verified { scheme: "standard" };
        assert_eq!(
            delivery_lines(body, true, Some(&ok)),
            [
                r#"{"event_id":1,"event":"a.b","node_id":0,"timestamp":"t","verified":true}"#,
                r#"{"event_id":2,"event":"a.c","node_id":0,"timestamp":"t","data":{"k":1},"verified":true}"#
            ]
        );
        let bad = Verdict::Invalid("no webhook-signature entry matches".into());
        let single = br#"{"event_id":3,"event":"a.b","node_id":0,"timestamp":"t"}"#;
        assert_eq!(
            delivery_lines(single, false, Some(&bad)),
            ["#3 a.b node=0 t  INVALID SIGNATURE (no webhook-signature entry matches)"]
        );
        assert_eq!(
            delivery_lines(single, true, None),
            [r#"{"event_id":3,"event":"a.b","node_id":0,"timestamp":"t"}"#]
        );
        assert_eq!(
            delivery_lines(b"junk", false, Some(&ok)),
            ["(not a pilot event) junk  verified"]
        );
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("/events").unwrap(), "/events");
        assert_eq!(normalize_path("hooks/x").unwrap(), "/hooks/x");
        assert!(normalize_path("/a b").is_err());
        assert!(normalize_path("/a?b").is_err());
    }

    async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_200_on_its_path_404_elsewhere_and_stops_after_count() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let args = ListenArgs {
            addr: addr.to_string(),
            path: "/events".into(),
            count: Some(2),
            secret: None,
            secret_file: None,
        };
        let server = tokio::spawn(async move { run(&Context::default(), &args).await });
        let body = r#"{"event_id":1,"event":"a.b","node_id":0,"timestamp":"t"}"#;
        let mut first = String::new();
        for _ in 0..100 {
            if let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_millis(50),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                first = post(addr, "/nope", body).await;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(first.starts_with("HTTP/1.1 404"), "{first}");
        assert!(post(addr, "/events", body)
            .await
            .starts_with("HTTP/1.1 200"));
        assert!(post(addr, "/events", body)
            .await
            .starts_with("HTTP/1.1 200"));
        let out = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("listen stops after --count")
            .unwrap()
            .unwrap();
        assert_eq!(out, Output::Streamed);
    }
}
