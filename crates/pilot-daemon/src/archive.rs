//! The control requests on the archive: list and purge dead letters, queue replays. The
//! archive outlives endpoints, so dead letters of a removed endpoint can still be listed,
//! purged and replayed to another one (`replay --to`).

use std::sync::Arc;

use bytes::Bytes;
use pilot_core::Pattern;
use pilot_ipc::protocol::{
    DeadLetterInfo, DeadLettersReply, PurgeReply, ReplayReply, ReplayStatus, Selection,
};
use pilot_ipc::ErrorCode;
use pilot_webhook::{Archive, ArchivedEvent, DeadLetterReason, Query, Shelf};
use serde_json::value::RawValue;

use crate::server::{endpoint_reply, err, ok};
use crate::state::Daemon;

/// How many dead letters a list returns when no limit is given.
pub const DEFAULT_LIST_LIMIT: usize = 100;

fn archive(daemon: &Daemon) -> Result<Arc<Archive>, Bytes> {
    daemon
        .endpoints
        .options()
        .archive
        .clone()
        .ok_or_else(|| err(ErrorCode::Internal, "this daemon keeps no archive"))
}

/// The archive query of `selection`, or the error reply for a bad pattern or reason.
fn query(selection: &Selection, default_limit: Option<usize>) -> Result<Query, Bytes> {
    if let Some(reason) = &selection.reason {
        if DeadLetterReason::parse(reason).is_none() {
            let all: Vec<&str> = DeadLetterReason::ALL.iter().map(|r| r.as_str()).collect();
            return Err(err(
                ErrorCode::InvalidArgument,
                &format!("unknown reason {reason:?}; one of: {}", all.join(", ")),
            ));
        }
    }
    let mut events = Vec::new();
    for p in &selection.events {
        let pattern: Pattern = p.parse().map_err(|e: pilot_core::pattern::PatternError| {
            err(ErrorCode::InvalidArgument, &e.to_string())
        })?;
        events.push(pattern);
    }
    if let (Some(since), Some(until)) = (selection.since_ms, selection.until_ms) {
        if since >= until {
            return Err(err(
                ErrorCode::InvalidArgument,
                "--since must be before --until",
            ));
        }
    }
    Ok(Query {
        since_ms: selection.since_ms,
        until_ms: selection.until_ms,
        reason: selection.reason.clone(),
        events,
        limit: selection.limit.or(default_limit),
    })
}

/// The endpoints a request names: `name`, or every one the archive knows (and every
/// configured one) when none.
fn names(daemon: &Daemon, archive: &Archive, name: Option<String>) -> Result<Vec<String>, Bytes> {
    if let Some(name) = name {
        pilot_core::endpoint::validate_name(&name)
            .map_err(|e| err(ErrorCode::InvalidArgument, &e.to_string()))?;
        return Ok(vec![name]);
    }
    let mut all = archive
        .endpoints()
        .map_err(|e| err(ErrorCode::Internal, &e.to_string()))?;
    all.extend(daemon.endpoints.all().into_iter().map(|(n, _)| n));
    all.sort();
    all.dedup();
    Ok(all)
}

fn time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn dead_letter_info(name: &str, e: ArchivedEvent) -> DeadLetterInfo {
    let payload = std::str::from_utf8(&e.payload)
        .ok()
        .and_then(|s| RawValue::from_string(s.to_string()).ok());
    DeadLetterInfo {
        name: name.to_string(),
        event_id: e.event_id,
        event: e.event,
        timestamp: time(e.event_ms),
        dead_lettered_at: time(e.kept_ms),
        webhook_id: e.webhook_id,
        reason: e.reason,
        error: e.error,
        attempts: e.attempts,
        payload,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, pilot_webhook::ArchiveError> + Send + 'static,
) -> Result<T, Bytes> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(err(ErrorCode::Internal, &e.to_string())),
        Err(e) => Err(err(
            ErrorCode::Internal,
            &format!("the archive call crashed: {e}"),
        )),
    }
}

/// `dead_letters`.
pub async fn dead_letters(daemon: &Daemon, name: Option<String>, selection: Selection) -> Bytes {
    let run = async {
        let archive = archive(daemon)?;
        let query = query(&selection, Some(DEFAULT_LIST_LIMIT))?;
        let names = names(daemon, &archive, name)?;
        let limit = query.limit;
        let list = blocking(move || {
            let mut all = Vec::new();
            for name in names {
                for e in archive.list(Shelf::Dead, &name, &query)? {
                    all.push((name.clone(), e));
                }
            }
            // Across endpoints: oldest events first, then cut to the limit.
            all.sort_by_key(|(_, e)| (e.event_ms, e.event_id));
            if let Some(limit) = limit {
                all.truncate(limit);
            }
            Ok(all)
        })
        .await?;
        Ok::<_, Bytes>(ok(&DeadLettersReply {
            dead_letters: list
                .into_iter()
                .map(|(n, e)| dead_letter_info(&n, e))
                .collect(),
        }))
    };
    run.await.unwrap_or_else(|reply| reply)
}

/// `purge_dead_letters`.
pub async fn purge(daemon: &Daemon, name: Option<String>, selection: Selection) -> Bytes {
    let run = async {
        let archive = archive(daemon)?;
        let query = query(&selection, None)?;
        let names = names(daemon, &archive, name)?;
        let purged = blocking(move || {
            let mut n = 0;
            for name in names {
                n += archive.purge(Shelf::Dead, &name, &query)?;
            }
            Ok(n)
        })
        .await?;
        tracing::info!(purged, "dead letters purged");
        Ok::<_, Bytes>(ok(&PurgeReply { purged }))
    };
    run.await.unwrap_or_else(|reply| reply)
}

/// `replay`: queues the selection for the target endpoint's replay lane.
pub async fn replay(
    daemon: &Daemon,
    name: String,
    to: Option<String>,
    selection: Selection,
    dead_letters_only: bool,
    dry_run: bool,
) -> Bytes {
    let run = async {
        let archive = archive(daemon)?;
        pilot_core::endpoint::validate_name(&name)
            .map_err(|e| err(ErrorCode::InvalidArgument, &e.to_string()))?;
        let target_name = to.clone().unwrap_or_else(|| name.clone());
        // The target must exist (the source may be a removed endpoint).
        let target = endpoint_reply(daemon, &target_name)?;
        if target.plugin.url().is_none() {
            return Err(err(
                ErrorCode::InvalidArgument,
                &format!("webhook {target_name:?} has no URL: set it before replaying to it"),
            ));
        }
        let query = query(&selection, None)?;
        let shelves: &'static [Shelf] = if dead_letters_only {
            &[Shelf::Dead]
        } else {
            &[Shelf::Dead, Shelf::Retained]
        };
        // Read before queueing: the baseline `--wait` counts this replay's outcomes from.
        let stats = target.plugin.stats();
        let (source, dest) = (name.clone(), target_name.clone());
        let selected =
            blocking(move || archive.queue_replay(&source, shelves, &query, &dest, dry_run))
                .await?;
        if !dry_run && !selected.is_empty() {
            target.plugin.wake_replays();
        }
        tracing::info!(webhook = %name, to = %target_name, selected = selected.len(), dry_run, "replay queued");
        Ok::<_, Bytes>(ok(&ReplayReply {
            name,
            to: target_name,
            selected: selected.len() as u64,
            first_event_id: selected.first().map(|e| e.event_id),
            last_event_id: selected.last().map(|e| e.event_id),
            dry_run,
            replay: ReplayStatus {
                pending: stats.replay.pending + if dry_run { 0 } else { selected.len() as u64 },
                delivered: stats.replay.delivered,
                failed: stats.replay.failed,
                filtered: stats.replay.filtered,
            },
        }))
    };
    run.await.unwrap_or_else(|reply| reply)
}
