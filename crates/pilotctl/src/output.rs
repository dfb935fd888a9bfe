//! What pilotctl prints: results as JSON or short text, and errors with a machine code.
//!
//! With `--json` a result is one line `{"status":"ok","data":{...}}` on stdout and an error is
//! one line `{"status":"error","code":"...","message":"..."}` on stderr. Without it a result
//! is a few lines of text and an error is `error: <message>` on stderr. Errors exit 1.
//! Warnings go to stderr as `warning: <message>` in both modes. Writes to a closed stdout
//! (`pilotctl ... | head`) are not errors.
//!
//! Text may be coloured with [`paint`]; it is written through `anstream`, which drops the
//! colour unless stdout is a terminal, and always when `NO_COLOR` is set. [`Table`] lines up
//! columns by their visible width, so colour never shifts them.

use std::fmt;
use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use pilot_core::catalog::DataError;
use pilot_core::config::ConfigError;
use pilot_core::event::EventError;
use pilot_core::paths::HomeError;
use pilot_core::webhook_url::UrlError;
use pilot_ipc::ClientError;
use serde::Serialize;
use serde_json::Value;

/// The machine codes pilotctl itself produces (the daemon may add its own, passed through).
pub mod code {
    pub const NOT_RUNNING: &str = "not_running";
    pub const ALREADY_RUNNING: &str = "already_running";
    pub const INVALID_ARGUMENT: &str = "invalid_argument";
    pub const CONFIG_ERROR: &str = "config_error";
    pub const START_FAILED: &str = "start_failed";
    pub const TIMEOUT: &str = "timeout";
    pub const IO_ERROR: &str = "io_error";
    pub const ALREADY_EXISTS: &str = "already_exists";
    pub const NOT_FOUND: &str = "not_found";
    pub const LIMIT_REACHED: &str = "limit_reached";
    pub const BACKLOG: &str = "backlog";
    pub const REPLAY_FAILED: &str = "replay_failed";
}

/// A failed command: a stable machine code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: &'static str,
    pub message: String,
}

impl CliError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_ARGUMENT, message)
    }

    pub fn io(message: impl Into<String>) -> Self {
        Self::new(code::IO_ERROR, message)
    }

    /// The same error with `context: ` put before its message.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The same error with `suffix` appended to its message.
    pub fn with_suffix(mut self, suffix: impl fmt::Display) -> Self {
        self.message.push_str(&suffix.to_string());
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::new(code::CONFIG_ERROR, e.to_string())
    }
}

impl From<HomeError> for CliError {
    fn from(e: HomeError) -> Self {
        Self::io(e.to_string())
    }
}

impl From<UrlError> for CliError {
    fn from(e: UrlError) -> Self {
        Self::invalid_argument(e.to_string())
    }
}

impl From<DataError> for CliError {
    fn from(e: DataError) -> Self {
        Self::invalid_argument(e.to_string())
    }
}

impl From<EventError> for CliError {
    fn from(e: EventError) -> Self {
        Self::invalid_argument(e.to_string())
    }
}

/// What a successful command leaves to print.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A result: `data` for `--json`, `text` otherwise.
    Report { data: Value, text: String },
    /// Nothing to print; exit with this status (`daemon status --check`).
    Exit(u8),
    /// The command printed as it went (event streams); exit 0.
    Streamed,
}

impl Output {
    /// A result from any serializable data.
    pub fn report(data: &impl Serialize, text: impl Into<String>) -> Self {
        Output::Report {
            data: serde_json::to_value(data).unwrap_or(Value::Null),
            text: text.into(),
        }
    }
}

/// The success envelope: `{"status":"ok","data":...}`.
pub fn ok_json(data: &Value) -> String {
    serde_json::json!({ "status": "ok", "data": data }).to_string()
}

/// The error envelope: `{"status":"error","code":"...","message":"..."}`.
pub fn error_json(err: &CliError) -> String {
    serde_json::json!({ "status": "error", "code": err.code, "message": err.message }).to_string()
}

/// The text form of an error: `error: <message>`.
pub fn error_text(err: &CliError) -> String {
    format!("error: {}", err.message)
}

/// Prints results and errors in the chosen mode.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
}

impl Printer {
    /// Prints a result and returns the exit status.
    pub fn finish(&self, out: Output) -> u8 {
        match out {
            Output::Report { data, text } => {
                // A closed stdout is the reader's choice, not a failure of the command.
                if self.json {
                    let mut stdout = io::stdout().lock();
                    let _ = writeln!(stdout, "{}", ok_json(&data)).and_then(|()| stdout.flush());
                } else {
                    // Colour only on a terminal, never with NO_COLOR.
                    let mut stdout = anstream::stdout().lock();
                    let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
                }
                0
            }
            Output::Exit(code) => code,
            Output::Streamed => 0,
        }
    }

    /// Prints an error on stderr and returns the exit status (1).
    pub fn fail(&self, err: &CliError) -> u8 {
        let line = if self.json {
            error_json(err)
        } else {
            error_text(err)
        };
        let _ = writeln!(io::stderr().lock(), "{line}");
        1
    }
}

/// Prints `warning: <message>` on stderr, in both modes (the `--json` envelope has no place
/// for warnings, and stdout stays the result alone).
pub fn warn(message: &impl fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "warning: {message}");
}

/// Prints `note: <message>` on stderr, in both modes (like [`warn`], for something done that
/// the result does not show).
pub fn note(message: &impl fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "note: {message}");
}

/// Writes one line to stdout and flushes it (for streams read line by line).
pub fn print_line(line: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

/// Text that may hold line breaks, as one line. For JSON text the meaning is unchanged:
/// a JSON string cannot hold a raw line break, so they only ever sit between tokens.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ").into()
    } else {
        text.into()
    }
}

/// `3725` -> `1h 2m 5s`.
pub fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// Aligned `label: value` lines, each indented by `indent` spaces.
pub fn aligned(rows: &[(&str, String)], indent: usize) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:indent$}{:<width$} {v}", "", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The styles of human output.
pub mod style {
    use super::*;

    /// Table headers.
    pub const HEADER: Style = Style::new().bold();
    /// Things that work: a 2xx, a closed circuit.
    pub const GOOD: Style = AnsiColor::Green.on_default();
    /// Things that need a look: a half-open circuit, dropped events.
    pub const WARN: Style = AnsiColor::Yellow.on_default();
    /// Failures: an error, an open circuit, a disabled webhook.
    pub const BAD: Style = AnsiColor::Red.on_default();
}

/// `text` in `style` (escape codes that `Printer` drops unless stdout is a colour terminal).
pub fn paint(style: Style, text: &str) -> String {
    if text.is_empty() || style == Style::new() {
        return text.to_string();
    }
    format!("{style}{text}{style:#}")
}

/// How a column lines up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A text table: a bold header row and columns two spaces apart, each as wide as its widest
/// cell (counted in characters, without colour); the last column is not padded.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<(String, Style)>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.styled_row(cells.into_iter().map(|c| (c, Style::new())));
    }

    /// Adds a row of cells, each with its style.
    pub fn styled_row(&mut self, cells: impl IntoIterator<Item = (String, Style)>) {
        self.rows.push(cells.into_iter().collect());
    }

    /// The table, one line per row after the header, without a final line break.
    pub fn render(&self) -> String {
        let header: Vec<(String, Style)> = self
            .columns
            .iter()
            .map(|(name, _)| (name.to_string(), style::HEADER))
            .collect();
        let mut widths: Vec<usize> = vec![0; self.columns.len()];
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, (cell, _)) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |row: &[(String, Style)]| {
            let mut out = String::new();
            let last = row.len().min(self.columns.len()).saturating_sub(1);
            for (i, ((cell, st), w)) in row.iter().zip(&widths).enumerate() {
                let pad = " ".repeat(w - cell.chars().count());
                let painted = paint(*st, cell);
                match (i == last, self.columns[i].1) {
                    (_, Align::Right) => out.push_str(&format!("{pad}{painted}")),
                    (true, Align::Left) => out.push_str(&painted),
                    (false, Align::Left) => out.push_str(&format!("{painted}{pad}")),
                }
                if i != last {
                    out.push_str("  ");
                }
            }
            out.trim_end().to_string()
        };
        std::iter::once(&header)
            .chain(&self.rows)
            .map(|r| line(r))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pilot_ipc::protocol::ErrorCode;

    #[test]
    fn envelopes_have_the_documented_shape() {
        let data = serde_json::json!({"webhook": "http://x/", "applied": false});
        assert_eq!(
            ok_json(&data),
            r#"{"status":"ok","data":{"webhook":"http://x/","applied":false}}"#
        );
        let err = CliError::new(code::NOT_RUNNING, "no daemon");
        assert_eq!(
            error_json(&err),
            r#"{"status":"error","code":"not_running","message":"no daemon"}"#
        );
        assert_eq!(error_text(&err), "error: no daemon");
    }

    #[test]
    fn errors_keep_their_codes() {
        let e: CliError = pilot_core::webhook_url::validate("ftp://x/")
            .unwrap_err()
            .into();
        assert_eq!(e.code, "invalid_argument");
        let e: CliError = pilot_core::event::validate_name("x").unwrap_err().into();
        assert_eq!(e.code, "invalid_argument");
        let e: CliError = ClientError::NotRunning { path: "/s".into() }.into();
        assert_eq!(e.code, "not_running");
        let e: CliError = ClientError::Remote {
            code: ErrorCode::ShuttingDown,
            message: "bye".into(),
        }
        .into();
        assert_eq!((e.code, e.message.as_str()), ("shutting_down", "bye"));
        let e: CliError = ClientError::Closed.into();
        assert_eq!(e.code, "connection_lost");
        assert_eq!(
            CliError::io("boom").context("reading x").message,
            "reading x: boom"
        );
    }

    #[test]
    fn config_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        std::fs::write(&path, "{").unwrap();
        let e: CliError = pilot_core::ConfigFile::load(&path).unwrap_err().into();
        assert_eq!(e.code, "config_error");
        assert!(e.message.contains(&path.display().to_string()));
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("{\"a\":1}"), "{\"a\":1}");
        assert_eq!(one_line("{\n  \"a\": 1\r\n}"), "{   \"a\": 1  }");
    }

    #[test]
    fn uptime_reads_well() {
        assert_eq!(format_uptime(0), "0s");
        assert_eq!(format_uptime(59), "59s");
        assert_eq!(format_uptime(3600), "1h");
        assert_eq!(format_uptime(3725), "1h 2m 5s");
        assert_eq!(format_uptime(90_061), "1d 1h 1m 1s");
    }

    #[test]
    fn tables_line_up_whatever_the_colour() {
        let mut t = Table::new(&[
            ("ID", Align::Right),
            ("NAME", Align::Left),
            ("NOTE", Align::Left),
        ]);
        t.styled_row(["7", "a.b", ""].map(|c| (c.to_string(), Style::new())));
        t.styled_row([
            ("12".to_string(), Style::new()),
            ("handshake.received".to_string(), style::BAD),
            ("ok".to_string(), style::GOOD),
        ]);
        let text = t.render();
        assert!(
            text.contains("\x1b["),
            "colour is in the text until it is printed"
        );
        assert_eq!(
            anstream::adapter::strip_str(&text).to_string(),
            "ID  NAME                NOTE\n 7  a.b\n12  handshake.received  ok"
        );
        assert_eq!(paint(style::BAD, ""), "");
    }

    #[test]
    fn aligned_rows_line_up() {
        let text = aligned(&[("pid", "1".into()), ("version", "0.1.0".into())], 2);
        assert_eq!(text, "  pid:     1\n  version: 0.1.0");
    }
}
