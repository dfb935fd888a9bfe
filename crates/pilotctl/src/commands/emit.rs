//! `emit`: publish one event (`emit EVENT [--data JSON]`) or a JSON-lines file of events
//! (`emit --file PATH`, pipelined over one connection) onto the daemon's bus. A catalog event's
//! data is checked against the catalog before anything is sent. `--severity` sets the events'
//! severity (default: the catalog's, `info` outside it).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use pilot_core::catalog;
use pilot_core::event::{parse_data, validate_name, MAX_DATA_BYTES};
use pilot_core::Severity;
use pilot_ipc::client::EmitSummary;
use pilot_ipc::Client;
use serde::Serialize;

use crate::cli::EmitArgs;
use crate::context::{show, Context};
use crate::lines::{read_limited, EventLines};
use crate::output::{CliError, Output};

#[derive(Debug, Serialize)]
struct Emitted<'a> {
    event_id: u64,
    event: &'a str,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct Published {
    count: u64,
    first_event_id: Option<u64>,
    last_event_id: Option<u64>,
}

/// `emit`.
pub async fn run(ctx: &Context, args: &EmitArgs) -> Result<Output, CliError> {
    match (&args.event, &args.file) {
        (Some(event), _) => one(ctx, event, args.data.as_deref(), args.severity).await,
        (None, Some(file)) => many(ctx, file, args.severity).await,
        (None, None) => Err(CliError::invalid_argument(
            "give an event name or --file PATH",
        )),
    }
}

async fn one(
    ctx: &Context,
    event: &str,
    data: Option<&str>,
    severity: Option<Severity>,
) -> Result<Output, CliError> {
    validate_name(event)?;
    let data = match data {
        None => None,
        Some("-") => Some(read_stdin_data()?),
        Some(s) => Some(s.to_string()),
    };
    let data = data.map(|d| parse_data(d.trim())).transpose()?;
    catalog::check(event, data.as_deref())?;
    let mut client = Client::connect(&ctx.socket()?).await?;
    let reply = client.emit_with(event, data, severity).await?;
    let text = format!("emitted #{} {event}", reply.event_id);
    Ok(Output::report(
        &Emitted {
            event_id: reply.event_id,
            event,
        },
        text,
    ))
}

pub(crate) fn read_stdin_data() -> Result<String, CliError> {
    let bytes = read_limited(io::stdin().lock(), MAX_DATA_BYTES + 1024)
        .map_err(|e| CliError::io(format!("cannot read event data from stdin: {e}")))?
        .ok_or_else(|| {
            CliError::invalid_argument(format!(
                "event data on stdin is larger than the limit of {MAX_DATA_BYTES} bytes"
            ))
        })?;
    String::from_utf8(bytes)
        .map_err(|_| CliError::invalid_argument("event data on stdin is not UTF-8"))
}

async fn many(ctx: &Context, file: &Path, severity: Option<Severity>) -> Result<Output, CliError> {
    let reader: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        let f = File::open(file)
            .map_err(|e| CliError::io(format!("cannot open {}: {e}", show(file))))?;
        Box::new(BufReader::with_capacity(64 * 1024, f))
    };
    let mut lines = EventLines::new(reader).with_severity(severity);
    let mut client = Client::connect(&ctx.socket()?).await?;
    match client.emit_pipelined(&mut lines).await {
        Ok(summary) => match lines.error() {
            None => Ok(report(&summary)),
            Some(bad) => Err(bad
                .error
                .clone()
                .context(format!("line {}", bad.line))
                .with_suffix(published_before(&summary))),
        },
        Err(failure) => {
            let at = lines
                .line_of(failure.index)
                .map(|l| format!("line {l}"))
                .unwrap_or_else(|| format!("event {}", failure.index + 1));
            Err(CliError::from(failure.error)
                .context(at)
                .with_suffix(published_before(&failure.summary)))
        }
    }
}

fn report(summary: &EmitSummary) -> Output {
    let data = Published {
        count: summary.count,
        first_event_id: summary.first_event_id,
        last_event_id: summary.last_event_id,
    };
    let text = format!("emitted {}{}", events(summary.count), range(summary));
    Output::report(&data, text)
}

fn events(n: u64) -> String {
    if n == 1 {
        "1 event".into()
    } else {
        format!("{n} events")
    }
}

fn range(s: &EmitSummary) -> String {
    match (s.first_event_id, s.last_event_id) {
        (Some(a), Some(b)) if a == b => format!(" (#{a})"),
        (Some(a), Some(b)) => format!(" (#{a}..#{b})"),
        _ => String::new(),
    }
}

fn published_before(s: &EmitSummary) -> String {
    let verb = if s.count == 1 { "was" } else { "were" };
    format!(
        " ({} before it {verb} published{})",
        events(s.count),
        range(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_read_well() {
        let s = EmitSummary {
            count: 3,
            first_event_id: Some(4),
            last_event_id: Some(6),
        };
        let Output::Report { data, text } = report(&s) else {
            panic!()
        };
        assert_eq!(text, "emitted 3 events (#4..#6)");
        assert_eq!(
            data.to_string(),
            r#"{"count":3,"first_event_id":4,"last_event_id":6}"#
        );
        let Output::Report { data, text } = report(&EmitSummary::default()) else {
            panic!()
        };
        assert_eq!(text, "emitted 0 events");
        assert_eq!(
            data.to_string(),
            r#"{"count":0,"first_event_id":null,"last_event_id":null}"#
        );
        let one = EmitSummary {
            count: 1,
            first_event_id: Some(1),
            last_event_id: Some(1),
        };
        assert_eq!(
            published_before(&one),
            " (1 event before it was published (#1))"
        );
    }
}
