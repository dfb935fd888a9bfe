//! `webhook render --template T EVENT [--data JSON]`: what a webhook with that template would
//! send for that event (the Content-Type, the template's headers and the body), rendered here
//! with the daemon's own renderer and limits, without a daemon or a receiver. The event's data
//! is checked against the catalog as `emit` checks it.

use pilot_core::catalog;
use pilot_core::event::{parse_data, validate_name};
use pilot_core::Event;
use pilot_template::{Template, Vars};
use serde::Serialize;

use crate::cli::RenderArgs;
use crate::output::{CliError, Output};

/// What would be sent.
#[derive(Debug, Serialize)]
struct Rendered {
    template: String,
    content_type: String,
    /// The template's headers, in order (pilot's own, such as the signatures, are not shown).
    headers: Vec<Header>,
    body: String,
}

#[derive(Debug, Serialize)]
struct Header {
    name: String,
    value: String,
}

/// `webhook render`.
pub fn run(args: &RenderArgs) -> Result<Output, CliError> {
    validate_name(&args.event)?;
    let data = match args.data.as_deref() {
        None => None,
        Some("-") => Some(super::emit::read_stdin_data()?),
        Some(s) => Some(s.to_string()),
    };
    let data = data.map(|d| parse_data(d.trim())).transpose()?;
    catalog::check(&args.event, data.as_deref())?;
    let spec = pilot_flags::template_spec(&args.template);
    let template = Template::load(&spec)
        .map_err(|e| CliError::invalid_argument(format!("--template {}: {e}", args.template)))?;
    let event = Event::with_severity(
        args.event_id,
        args.event.clone(),
        args.node_id,
        // Milliseconds, as the bus stamps events.
        jiff::Timestamp::now()
            .round(jiff::Unit::Millisecond)
            .unwrap_or_else(|_| jiff::Timestamp::now()),
        data,
        args.severity,
    );
    let vars: Vars = args.template_vars.iter().cloned().collect();
    let webhook_id = format!("msg_{}_{}", args.node_id, args.event_id);
    let r = template.render(&event, &webhook_id, &vars).map_err(|e| {
        CliError::invalid_argument(format!(
            "template {} fails for this event: {e}",
            template.name()
        ))
    })?;
    let mut text = format!("Content-Type: {}\n", r.content_type);
    for (name, value) in &r.headers {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push('\n');
    text.push_str(r.body.trim_end_matches('\n'));
    let out = Rendered {
        template: template.name().to_string(),
        content_type: r.content_type,
        headers: r
            .headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect(),
        body: r.body,
    };
    Ok(Output::report(&out, text))
}
