//! Supervision of the plugin's tasks (the spooler, the durable worker, the in-memory worker):
//! none may die silently.
//!
//! Each runs in a task of its own under a small supervising task ([`spawn`]). When it ends
//! normally the supervisor ends with it; when it panics (or is aborted from outside the
//! plugin) the supervisor logs the failure at `error`, counts it (`task_failures` in the
//! endpoint's stats, `pilot_webhook_task_failures_total` in the metrics), marks the endpoint
//! *failed* (`failed` state in `info` and `webhook list`, with the reason) and runs the task's
//! own clean-up (the spooler's stop token is cancelled, so the next configure or `webhook
//! resume` starts a new one). A durable endpoint's spooler that dies leaves its durable sink
//! unclosed, so every `emit` waiting for it (and every later one) is answered `not_durable`
//! until the endpoint is restarted (see [`pilot_core::bus`]).
//!
//! Aborting the supervisor (the plugin's shutdown does, past its limit) aborts the task too.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tracing::error;

use crate::shared::Shared;
use crate::stats::bump;

/// Aborts the task when dropped (its supervisor was aborted).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns `task` (named `what` in logs) under a supervisor; `on_failure` runs if it panics or
/// is cancelled. The handle is the supervisor's: it completes after the task.
pub(crate) fn spawn<F>(
    runtime: &Handle,
    shared: Arc<Shared>,
    what: &'static str,
    task: F,
    on_failure: impl FnOnce() + Send + 'static,
) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let inner = runtime.spawn(task);
    runtime.spawn(async move {
        let mut inner = AbortOnDrop(inner);
        let Err(e) = (&mut inner.0).await else {
            return;
        };
        let reason = if e.is_panic() {
            format!("the webhook {what} panicked: {}", panic_message(&e.into_panic()))
        } else {
            format!("the webhook {what} was cancelled")
        };
        error!(
            webhook = %shared.options.name,
            task = what,
            %reason,
            "webhook task ended unexpectedly; the endpoint is marked failed until it is resumed or configured again"
        );
        bump(&shared.counters.task_failures);
        shared.counters.set_failure(reason.clone());
        shared.counters.set_last_error(reason);
        on_failure();
    })
}

/// The text a panic carried, when it is text.
fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
