//! The commands: one module each, and the dispatch from a parsed command line to them.

pub mod archive;
pub mod catalog;
pub mod config;
pub mod daemon;
pub mod deliveries;
pub mod emit;
pub mod endpoints;
pub mod events;
pub mod generated;
pub mod info;
pub mod listen;
pub mod render;
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
        Command::Webhook(WebhookCommand::Add(args)) => endpoints::add(ctx, args).await,
        Command::Webhook(WebhookCommand::List) => endpoints::list(ctx).await,
        Command::Webhook(WebhookCommand::Show(a)) => endpoints::show(ctx, &a.name).await,
        Command::Webhook(WebhookCommand::Update(args)) => endpoints::update(ctx, args).await,
        Command::Webhook(WebhookCommand::Remove(args)) => endpoints::remove(ctx, args).await,
        Command::Webhook(WebhookCommand::Pause(a)) => endpoints::pause(ctx, &a.name, true).await,
        Command::Webhook(WebhookCommand::Resume(a)) => endpoints::pause(ctx, &a.name, false).await,
        Command::Webhook(WebhookCommand::Secret(SecretCommand::Show(w))) => {
            secret::show_cmd(ctx, &w.name)
        }
        Command::Webhook(WebhookCommand::Secret(SecretCommand::Rotate { grace, webhook })) => {
            secret::rotate_cmd(ctx, *grace, &webhook.name).await
        }
        Command::Webhook(WebhookCommand::Deliveries(args)) => deliveries::run(ctx, args).await,
        Command::Webhook(WebhookCommand::DeadLetters(args)) => {
            archive::dead_letters(ctx, args).await
        }
        Command::Webhook(WebhookCommand::Replay(args)) => archive::replay(ctx, args).await,
        Command::Webhook(WebhookCommand::Test(w)) => tools::test(ctx, &w.name).await,
        Command::Webhook(WebhookCommand::Render(args)) => render::run(args),
        Command::Webhook(WebhookCommand::Redeliver { event_id, webhook }) => {
            tools::redeliver(ctx, *event_id, &webhook.name).await
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
