//! `webhook dead-letters [purge]` and `webhook replay`: what webhooks gave up on, and sending
//! it (or retained deliveries) again.

use std::io::IsTerminal as _;
use std::time::Duration;

use pilot_ipc::protocol::{
    DeadLetterInfo, DeadLettersReply, InfoReply, PurgeReply, ReplayReply, ReplayStatus, Selection,
};
use pilot_ipc::{Client, Request};
use serde::Serialize;

use crate::cli::{DeadLetterFilter, DeadLettersAction, DeadLettersArgs, ReplayArgs, SelectArgs};
use crate::context::Context;
use crate::output::{code, style, Align, CliError, Output, Table};

/// How often `replay --wait` looks at the daemon.
const POLL: Duration = Duration::from_millis(100);

/// `T` as unix milliseconds: an RFC 3339 time, or a duration before `now` (`2h`).
pub fn parse_time(flag: &str, t: &str, now: jiff::Timestamp) -> Result<u64, CliError> {
    let bad = || {
        CliError::invalid_argument(format!(
            "{flag} {t:?}: give an RFC 3339 time (2026-12-05T10:00:00Z) or a duration ago (2h, 30m)"
        ))
    };
    let at = match t.parse::<jiff::Timestamp>() {
        Ok(at) => at,
        Err(_) => {
            let ago = pilot_core::duration::parse(t).map_err(|_| bad())?;
            let ago = jiff::SignedDuration::try_from(ago).map_err(|_| bad())?;
            now.checked_sub(ago).map_err(|_| bad())?
        }
    };
    u64::try_from(at.as_millisecond()).map_err(|_| bad())
}

fn selection(select: &SelectArgs) -> Result<Selection, CliError> {
    let now = jiff::Timestamp::now();
    let time =
        |flag: &str, t: &Option<String>| t.as_deref().map(|t| parse_time(flag, t, now)).transpose();
    Ok(Selection {
        since_ms: time("--since", &select.since)?,
        until_ms: time("--until", &select.until)?,
        events: select
            .events
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
        ..Selection::default()
    })
}

fn filter_selection(f: &DeadLetterFilter) -> Result<Selection, CliError> {
    Ok(Selection {
        reason: f.reason.clone(),
        limit: f.limit,
        ..selection(&f.select)?
    })
}

/// `webhook dead-letters [purge] [--name N] [--since T] [--until T] [--events P] [--reason R]
/// [--limit K]`.
pub async fn dead_letters(ctx: &Context, args: &DeadLettersArgs) -> Result<Output, CliError> {
    let socket = ctx.socket()?;
    let mut client = Client::connect(&socket).await?;
    if let Some(DeadLettersAction::Purge(f)) = &args.action {
        let reply: PurgeReply = client
            .call(&Request::PurgeDeadLetters {
                name: f.name.clone(),
                selection: filter_selection(f)?,
            })
            .await?;
        let text = match reply.purged {
            1 => "purged 1 dead letter".to_string(),
            n => format!("purged {n} dead letters"),
        };
        return Ok(Output::report(&reply, text));
    }
    let f = &args.filter;
    let reply: DeadLettersReply = client
        .call(&Request::DeadLetters {
            name: f.name.clone(),
            selection: filter_selection(f)?,
        })
        .await?;
    let text = table(&reply.dead_letters);
    Ok(Output::report(&reply, text))
}

/// The dead letters as an aligned table, oldest first.
pub fn table(rows: &[DeadLetterInfo]) -> String {
    if rows.is_empty() {
        return "no dead letters".into();
    }
    let mut table = Table::new(&[
        ("WEBHOOK", Align::Left),
        ("EVENT_ID", Align::Right),
        ("EVENT", Align::Left),
        ("TIME", Align::Left),
        ("REASON", Align::Left),
        ("ATTEMPTS", Align::Right),
        ("ERROR", Align::Left),
    ]);
    for d in rows {
        let plain = |s: String| (s, anstyle::Style::new());
        table.styled_row([
            plain(d.name.clone()),
            plain(d.event_id.to_string()),
            plain(d.event.clone()),
            plain(d.timestamp.clone()),
            (d.reason.clone(), style::BAD),
            plain(d.attempts.to_string()),
            plain(crate::output::one_line(d.error.as_deref().unwrap_or("")).into_owned()),
        ]);
    }
    table.render()
}

/// What `replay --wait` reports.
#[derive(Debug, Serialize)]
struct Replayed {
    #[serde(flatten)]
    reply: ReplayReply,
    /// This replay's outcomes (with --wait).
    delivered: u64,
    failed: u64,
    filtered: u64,
}

/// `webhook replay --name N [--since T] [--until T] [--events P] [--to NAME]
/// [--dead-letters-only] [--dry-run] [--wait]`.
pub async fn replay(ctx: &Context, args: &ReplayArgs) -> Result<Output, CliError> {
    if args.select.since.is_none() {
        return Err(CliError::invalid_argument(
            "replay needs --since T: the oldest event to send again (RFC 3339, or a duration \
             ago like 2h)",
        ));
    }
    let selection = selection(&args.select)?;
    let socket = ctx.socket()?;
    let mut client = Client::connect(&socket).await?;
    let reply: ReplayReply = client
        .call(&Request::Replay {
            name: args.name.clone(),
            to: args.to.clone(),
            selection,
            dead_letters_only: args.dead_letters_only,
            dry_run: args.dry_run,
        })
        .await?;
    let range = match (reply.first_event_id, reply.last_event_id) {
        (Some(a), Some(b)) if a != b => format!(" (event ids {a} to {b})"),
        (Some(a), _) => format!(" (event id {a})"),
        _ => String::new(),
    };
    let to = if reply.to == reply.name {
        String::new()
    } else {
        format!(" to {:?}", reply.to)
    };
    let noun = if reply.selected == 1 {
        "event"
    } else {
        "events"
    };
    if reply.dry_run {
        let text = format!(
            "would replay {} {noun} of {:?}{to}{range}; nothing changed (--dry-run)",
            reply.selected, reply.name
        );
        return Ok(Output::report(&reply, text));
    }
    let queued = format!(
        "replaying {} {noun} of {:?}{to}{range}",
        reply.selected, reply.name
    );
    if !args.wait || reply.selected == 0 {
        let text = if args.wait {
            queued
        } else {
            format!("{queued}; follow with `pilotctl webhook show {}`", reply.to)
        };
        return Ok(Output::report(&reply, text));
    }
    let settled = wait(&mut client, &reply).await?;
    let text = format!(
        "{queued}: {} delivered, {} failed again, {} left out by filters",
        settled.delivered, settled.failed, settled.filtered
    );
    if settled.failed > 0 {
        return Err(CliError::new(
            code::REPLAY_FAILED,
            format!(
                "{text}; see `pilotctl webhook dead-letters --name {} --reason replay_failed`",
                reply.to
            ),
        ));
    }
    Ok(Output::report(
        &Replayed {
            delivered: settled.delivered,
            failed: settled.failed,
            filtered: settled.filtered,
            reply,
        },
        text,
    ))
}

/// Follows the target's replay counters until nothing is queued; this replay's outcomes.
async fn wait(client: &mut Client, reply: &ReplayReply) -> Result<ReplayStatus, CliError> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(reply.selected);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} replayed {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let base = reply.replay;
    loop {
        let info: InfoReply = client.call(&Request::Info).await?;
        let now = info
            .webhooks
            .iter()
            .find(|w| w.name == reply.to)
            .map(|w| w.status.replay)
            .ok_or_else(|| {
                CliError::new(
                    code::NOT_FOUND,
                    format!("webhook {:?} was removed during the replay", reply.to),
                )
            })?;
        let done = ReplayStatus {
            pending: now.pending,
            delivered: now.delivered.saturating_sub(base.delivered),
            failed: now.failed.saturating_sub(base.failed),
            filtered: now.filtered.saturating_sub(base.filtered),
        };
        if let Some(bar) = &bar {
            bar.set_position((done.delivered + done.failed + done.filtered).min(reply.selected));
            if done.failed > 0 {
                bar.set_message(format!("({} failed)", done.failed));
            }
        }
        if now.pending == 0 {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            return Ok(done);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_or_a_duration_ago() {
        let now: jiff::Timestamp = "2026-12-05T12:00:00Z".parse().unwrap();
        let at = parse_time("--since", "2026-12-05T10:00:00Z", now).unwrap();
        assert_eq!(at, 1_796_464_800_000);
        assert_eq!(parse_time("--since", "2h", now).unwrap(), at);
        let e = parse_time("--since", "yesterday", now).unwrap_err();
        assert!(e.message.contains("RFC 3339"), "{e:?}");
    }
}
