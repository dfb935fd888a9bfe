//! `webhook deliveries`: the daemon's delivery log (the last 1000 attempts) as an aligned table
//! or JSON.

use anstyle::Style;
use pilot_ipc::protocol::{DeliveriesReply, DeliveryInfo};
use pilot_ipc::{Client, Request};

use crate::cli::DeliveriesArgs;
use crate::context::Context;
use crate::output::{style, Align, CliError, Output, Table};

/// `webhook deliveries [--failed] [--limit N]`.
pub async fn run(ctx: &Context, args: &DeliveriesArgs) -> Result<Output, CliError> {
    let socket = ctx.socket()?;
    let mut client = Client::connect(&socket).await?;
    let reply: DeliveriesReply = client
        .call(&Request::Deliveries {
            failed_only: args.failed,
            limit: Some(args.limit),
            name: crate::commands::tools::named(&args.webhook.name),
        })
        .await?;
    let text = table(&reply.deliveries, args.failed);
    Ok(Output::report(&reply, text))
}

/// The attempts as an aligned table, oldest first.
pub fn table(rows: &[DeliveryInfo], failed_only: bool) -> String {
    if rows.is_empty() {
        return if failed_only {
            "no failed delivery attempts".into()
        } else {
            "no delivery attempts yet".into()
        };
    }
    let mut table = Table::new(&[
        ("TIME", Align::Left),
        ("EVENT_ID", Align::Right),
        ("EVENT", Align::Left),
        ("ATTEMPT", Align::Right),
        ("STATUS", Align::Right),
        ("LATENCY", Align::Right),
        ("ERROR", Align::Left),
    ]);
    for d in rows {
        let ok = d.status.is_some_and(|s| (200..300).contains(&s));
        let status_style = if ok { style::GOOD } else { style::BAD };
        let plain = |s: String| (s, Style::new());
        table.styled_row([
            plain(short_time(&d.at)),
            plain(d.event_id.to_string()),
            plain(d.event.clone()),
            plain(d.attempt.to_string()),
            (
                d.status.map_or_else(|| "-".into(), |s| s.to_string()),
                status_style,
            ),
            plain(latency(d.latency_ms)),
            (
                crate::output::one_line(d.error.as_deref().unwrap_or("")).into_owned(),
                style::BAD,
            ),
        ]);
    }
    table.render()
}

/// An RFC 3339 time to the millisecond (as given if it does not parse).
fn short_time(at: &str) -> String {
    match at.parse::<jiff::Timestamp>() {
        Ok(t) => format!("{t:.3}"),
        Err(_) => at.to_string(),
    }
}

/// `12.3ms`, `1.52s`.
pub fn latency(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2}s", ms / 1000.0)
    } else {
        format!("{ms:.1}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up() {
        let rows = vec![
            DeliveryInfo {
                at: "2026-01-15T12:00:00.1234567Z".into(),
                event_id: 7,
                event: "handshake.received".into(),
                attempt: 1,
                status: Some(500),
                latency_ms: 3.21,
                error: Some("HTTP 500 Internal Server Error from http://h/".into()),
                ..Default::default()
            },
            DeliveryInfo {
                at: "2026-01-15T12:00:01.2Z".into(),
                event_id: 12,
                event: "a.b".into(),
                attempt: 2,
                status: None,
                latency_ms: 1520.0,
                error: None,
                ..Default::default()
            },
        ];
        assert_eq!(
            anstream::adapter::strip_str(&table(&rows, false)).to_string(),
            "TIME                      EVENT_ID  EVENT               ATTEMPT  STATUS  LATENCY  ERROR\n\
             2026-01-15T12:00:00.123Z         7  handshake.received        1     500    3.2ms  HTTP 500 Internal Server Error from http://h/\n\
             2026-01-15T12:00:01.200Z        12  a.b                       2       -    1.52s"
        );
        assert_eq!(table(&[], true), "no failed delivery attempts");
    }
}
