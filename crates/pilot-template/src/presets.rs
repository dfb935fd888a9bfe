//! The built-in templates, by name: `slack`, `discord`, `teams`, `pagerduty` and `ntfy`. Each
//! is a plain template file in `src/presets/` (a starting point to copy for one's own), and
//! each reads well for every catalog category: the [`crate::summary`] line as the headline,
//! the catalog's description, the key fields, the severity, node and event id.
//!
//! | preset | body | notes |
//! |---|---|---|
//! | `slack` | incoming webhook `{"text", "blocks"}` | header, description, fields, context |
//! | `discord` | `{"content", "embeds"}` | one embed coloured by severity |
//! | `teams` | a `message` with one Adaptive Card attachment | Workflows / Power Automate webhooks |
//! | `pagerduty` | Events API v2 `trigger` | needs `--template-var routing_key=...`; `dedup_key` is the `webhook-id` |
//! | `ntfy` | plain text | `Title`, `Priority` (1-5 from the severity) and `Tags` headers |

/// The presets' names.
pub const NAMES: &[&str] = &["slack", "discord", "teams", "pagerduty", "ntfy"];

/// The source of preset `name`, if it is one.
pub fn source(name: &str) -> Option<&'static str> {
    Some(match name {
        "slack" => include_str!("presets/slack.j2"),
        "discord" => include_str!("presets/discord.j2"),
        "teams" => include_str!("presets/teams.j2"),
        "pagerduty" => include_str!("presets/pagerduty.j2"),
        "ntfy" => include_str!("presets/ntfy.j2"),
        _ => return None,
    })
}

/// Whether a `--template` value is a file path rather than a preset name: it has a `/` or a
/// `.` (`./alert.j2`, `/etc/pilot/alert.json.j2`).
pub fn looks_like_path(spec: &str) -> bool {
    spec.contains(['/', '.'])
}
