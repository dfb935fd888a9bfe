//! The commands: one module each, and the dispatch from a parsed command line to them.

pub mod daemon;
pub mod emit;
pub mod events;
pub mod info;
pub mod listen;
pub mod webhook;

use crate::cli::{Command, DaemonCommand};
use crate::context::Context;
use crate::output::{CliError, Output};

/// Runs one command.
pub async fn run(ctx: &Context, command: &Command) -> Result<Output, CliError> {
    match command {
        Command::Daemon(DaemonCommand::Start(args)) => daemon::start(ctx, args).await,
        Command::Daemon(DaemonCommand::Stop) => daemon::stop(ctx).await,
        Command::Daemon(DaemonCommand::Status { check }) => daemon::status(ctx, *check).await,
        Command::SetWebhook { url } => webhook::set(ctx, url).await,
        Command::ClearWebhook => webhook::clear(ctx).await,
        Command::Info => info::run(ctx).await,
        Command::Emit(args) => emit::run(ctx, args).await,
        Command::Events(args) => events::run(ctx, args).await,
        Command::Listen(args) => listen::run(ctx, args).await,
    }
}
