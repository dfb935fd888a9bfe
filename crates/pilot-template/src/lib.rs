//! pilot-template: webhook payload templates. A [`Template`] turns one event into the body of
//! one request, with its `Content-Type` and extra headers, so a webhook can post straight to
//! Slack, Discord, Teams, PagerDuty or ntfy ([`presets`]) or to any receiver with a body of
//! the user's own (a file).
//!
//! Templates are Jinja, rendered by [minijinja](https://docs.rs/minijinja): sandboxed (a
//! template reaches nothing but the values it is given: no files, no network, no environment)
//! and bounded: every render has a fuel budget ([`FUEL`] instructions), a recursion limit and
//! an output cap ([`MAX_OUTPUT`]); a template that runs out of any of them fails for that event
//! with a [`RenderError`], and never hangs or grows without bound.
//!
//! What a template sees is built by [`context`] (the event, its catalog category and
//! description, a readable one-line [`summary`], the key fields, the delivery's `webhook_id`
//! and the user's `vars`). A template sets its head with top-level assignments:
//! `{% set content_type = "text/plain" %}` (default `application/json`) and
//! `{% set headers = {"Title": event} %}`. A JSON content type (`application/json`, `*+json`)
//! must render valid JSON.
//!
//! [`Template::check`] renders a template against a sample of every catalog event
//! ([`samples`]) and refuses one that fails for any of them: what `pilotctl webhook add` and
//! the daemon's configure run before they accept a template.
//!
//! This crate knows nothing of HTTP, the bus or the CLI; `pilot-core` does not depend on it.

pub mod context;
pub mod presets;
pub mod samples;
pub mod summary;
mod template;

pub use context::Vars;
pub use template::{
    is_json_content_type, RenderError, Rendered, Template, TemplateError, DEFAULT_CONTENT_TYPE,
    FUEL, MAX_HEADERS, MAX_OUTPUT, RECURSION_LIMIT,
};
