//! The commands: one module each, and the dispatch from a parsed command line to them.

pub mod catalog;
pub mod config;
pub mod daemon;
pub mod deliveries;
pub mod emit;
pub mod events;
pub mod generated;
pub mod info;
pub mod listen;
pub mod secret;
pub mod service;
pub mod tools;
pub mod webhook;

use crate::cli::{Command, DaemonCommand, EventsCommand, SecretCommand, WebhookCommand};
use crate::context::Context;
use crate::output::{CliError, Output};

/// Runs one command.
pub async fn run(ctx: &Context, command: &Command) -> Result<Output, CliError> {
    match command {
        Command::Daemon(DaemonCommand::Start(args)) => daemon::start(ctx, args).await,
        Command::Daemon(DaemonCommand::Stop) => daemon::stop(ctx).await,
        Command::Daemon(DaemonCommand::Status { check }) => daemon::status(ctx, *check).await,
        Command::Daemon(DaemonCommand::InstallService(args)) => service::install(ctx, args),
        Command::SetWebhook(args) => webhook::set(ctx, args).await,
        Command::ClearWebhook => webhook::clear(ctx).await,
        Command::Webhook(WebhookCommand::Secret(SecretCommand::Show)) => secret::show_cmd(ctx),
        Command::Webhook(WebhookCommand::Secret(SecretCommand::Rotate { grace })) => {
            secret::rotate_cmd(ctx, *grace).await
        }
        Command::Webhook(WebhookCommand::Deliveries(args)) => deliveries::run(ctx, args).await,
        Command::Webhook(WebhookCommand::Test) => tools::test(ctx).await,
        Command::Webhook(WebhookCommand::Redeliver { event_id }) => {
            tools::redeliver(ctx, *event_id).await
        }
        Command::Info => info::run(ctx).await,
        Command::Emit(args) => emit::run(ctx, args).await,
        Command::Events(args) => match &args.command {
            Some(EventsCommand::Catalog(c)) => Ok(catalog::run(c)),
            None => events::run(ctx, args).await,
        },
        Command::Listen(args) => listen::run(ctx, args).await,
        Command::Config(args) => config::run(ctx, args).await,
        Command::Completions { shell } => generated::completions(*shell),
        Command::Man { dir } => generated::man(dir.as_deref()),
    }
}
