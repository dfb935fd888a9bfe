//! A loaded template ([`Template`]): its source compiled once into a sandboxed minijinja
//! environment with pilot's filters and limits; [`Template::render`] turns one event into a
//! [`Rendered`] body and head, and [`Template::check`] renders every sample event first.

use std::fmt;
use std::io::{self, Read as _, Write};
use std::path::Path;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use pilot_core::webhook_settings::{is_reserved_header, parse_header};
use pilot_core::Event;

use crate::context::{Context, Vars};
use crate::presets;
use crate::summary::shorten;

/// The largest rendered body: a render that writes more fails.
pub const MAX_OUTPUT: usize = 256 * 1024;
/// The instructions one render may run (minijinja's fuel): a loop that never ends runs out.
/// The presets use a few thousand per event.
pub const FUEL: u64 = 500_000;
/// How deep templates may nest (loops, macros, calls).
pub const RECURSION_LIMIT: usize = 64;
/// The most headers a template may set.
pub const MAX_HEADERS: usize = 32;
/// The largest template file read.
pub const MAX_SOURCE: u64 = 64 * 1024;
/// The `Content-Type` of a template that sets none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// Whether `content_type` is JSON (`application/json` or `*/*+json`, any parameters): a
/// template's body must then be valid JSON.
pub fn is_json_content_type(content_type: &str) -> bool {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}

/// Why a template cannot be used (found when it is loaded or checked).
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown template {given:?}: give a preset ({}) or the path of a template file",
        presets::NAMES.join(", ")
    )]
    UnknownPreset { given: String },
    #[error("template file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("template file {path} is larger than {} KiB", MAX_SOURCE / 1024)]
    TooLarge { path: String },
    #[error("template file {path} is not UTF-8 text")]
    NotUtf8 { path: String },
    #[error("template {name} does not compile: {detail}")]
    Syntax { name: String, detail: String },
    #[error("template {name} fails for a sample {event} event: {source}")]
    Sample {
        name: String,
        event: String,
        #[source]
        source: RenderError,
    },
}

/// Why a template could not render one event (that event fails; the endpoint goes on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Engine(String),
    #[error("the template ran too long (over {FUEL} instructions)")]
    OutOfFuel,
    #[error("the rendered body is larger than {} KiB", MAX_OUTPUT / 1024)]
    TooLarge,
    #[error("the body is not valid JSON for Content-Type {content_type:?}: {detail}")]
    InvalidJson {
        content_type: String,
        detail: String,
    },
    #[error("content_type must be a string of visible ASCII, got {0}")]
    ContentType(String),
    #[error("headers must be a map of header names to strings ({0})")]
    Headers(String),
    #[error("header {name:?} {reason}")]
    Header { name: String, reason: &'static str },
}

impl From<Error> for RenderError {
    fn from(e: Error) -> Self {
        if e.kind() == ErrorKind::OutOfFuel {
            return RenderError::OutOfFuel;
        }
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        RenderError::Engine(text)
    }
}

/// What one render gives: the body and its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: String,
    /// `content_type` as the template set it, else [`DEFAULT_CONTENT_TYPE`].
    pub content_type: String,
    /// The template's `headers`, checked: token names, visible ASCII values, none that pilot
    /// sets itself.
    pub headers: Vec<(String, String)>,
}

/// A compiled template (a preset or a file), ready to render events.
pub struct Template {
    /// The preset's name or the file's path.
    name: String,
    source: String,
    env: Environment<'static>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.source == other.source
    }
}

impl Template {
    /// The template `spec` names: a preset ([`presets::NAMES`]), else a file path (anything
    /// with a `/` or a `.`), read now.
    pub fn load(spec: &str) -> Result<Template, TemplateError> {
        if let Some(source) = presets::source(spec) {
            return Template::from_source(spec, source);
        }
        if !presets::looks_like_path(spec) {
            return Err(TemplateError::UnknownPreset { given: spec.into() });
        }
        let source = read_source(Path::new(spec))?;
        Template::from_source(spec, &source)
    }

    /// A template of `source`, called `name` in messages.
    pub fn from_source(name: &str, source: &str) -> Result<Template, TemplateError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_keep_trailing_newline(false);
        env.add_filter("truncate", truncate);
        env.add_function("fail", fail);
        env.add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| TemplateError::Syntax {
                name: name.into(),
                detail: RenderError::from(e).to_string(),
            })?;
        Ok(Template {
            name: name.into(),
            source: source.into(),
            env,
        })
    }

    /// The preset's name or the file's path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders `event`, sent with `webhook_id`, with the endpoint's `vars`.
    pub fn render(
        &self,
        event: &Event,
        webhook_id: &str,
        vars: &Vars,
    ) -> Result<Rendered, RenderError> {
        let ctx = Context::of(event, webhook_id, vars);
        let tmpl = self.env.get_template(&self.name)?;
        let mut out = Capped::default();
        let captured = match tmpl.render_captured_to(&ctx, &mut out) {
            Ok(c) => c,
            Err(_) if out.over => return Err(RenderError::TooLarge),
            Err(e) => return Err(e.into()),
        };
        let state = captured.state();
        let content_type = match state.lookup("content_type") {
            None => DEFAULT_CONTENT_TYPE.to_string(),
            Some(v) if v.is_undefined() || v.is_none() => DEFAULT_CONTENT_TYPE.to_string(),
            Some(v) => match v.as_str() {
                Some(s) if !s.trim().is_empty() && s.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
                    s.trim().to_string()
                }
                _ => return Err(RenderError::ContentType(shorten(&v.to_string(), 60))),
            },
        };
        let headers = match state.lookup("headers") {
            None => Vec::new(),
            Some(v) if v.is_undefined() || v.is_none() => Vec::new(),
            Some(v) => headers_of(&v)?,
        };
        let body = String::from_utf8(out.buf)
            .map_err(|_| RenderError::Engine("the body is not UTF-8".into()))?;
        if is_json_content_type(&content_type) {
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&body) {
                return Err(RenderError::InvalidJson {
                    content_type,
                    detail: e.to_string(),
                });
            }
        }
        Ok(Rendered {
            body,
            content_type,
            headers,
        })
    }

    /// Renders every sample event ([`crate::samples::events`]) with `vars`; the first failure
    /// is the error.
    pub fn check(&self, vars: &Vars) -> Result<(), TemplateError> {
        for event in crate::samples::events() {
            let id = format!("msg_{}_{}", event.node_id, event.event_id);
            self.render(&event, &id, vars)
                .map_err(|source| TemplateError::Sample {
                    name: self.name.clone(),
                    event: event.event.clone(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Reads a template file (at most [`MAX_SOURCE`] bytes, UTF-8).
fn read_source(path: &Path) -> Result<String, TemplateError> {
    let shown = path.display().to_string();
    let read = |source| TemplateError::Read {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > MAX_SOURCE {
        return Err(TemplateError::TooLarge { path: shown });
    }
    String::from_utf8(bytes).map_err(|_| TemplateError::NotUtf8 { path: shown })
}

/// The template's `headers` map as checked pairs.
fn headers_of(v: &Value) -> Result<Vec<(String, String)>, RenderError> {
    let keys = v
        .try_iter()
        .map_err(|_| RenderError::Headers(format!("got {}", v.kind())))?;
    let mut out = Vec::new();
    for key in keys {
        let Some(name) = key.as_str() else {
            return Err(RenderError::Headers(format!("a name is {}", key.kind())));
        };
        let value = v.get_item(&key)?;
        let Some(value) = value.as_str() else {
            return Err(RenderError::Headers(format!(
                "the value of {name:?} is {}",
                value.kind()
            )));
        };
        let bad = |reason| RenderError::Header {
            name: shorten(name, 60),
            reason,
        };
        if name.eq_ignore_ascii_case("content-type") {
            return Err(bad("is set with `{% set content_type = ... %}`"));
        }
        let (name, value) = parse_header(&format!("{name}: {value}")).map_err(|_| {
            bad("is not a valid header (a token name, a value without line breaks)")
        })?;
        if is_reserved_header(&name) {
            return Err(bad("is set by pilot itself and cannot be given"));
        }
        if !value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(bad("has a value a header cannot carry (use visible ASCII)"));
        }
        if value.len() > 8 * 1024 {
            return Err(bad("has a value longer than 8 KiB"));
        }
        out.push((name, value));
        if out.len() > MAX_HEADERS {
            return Err(RenderError::Headers(format!("more than {MAX_HEADERS}")));
        }
    }
    Ok(out)
}

/// `truncate(s, length=255, end="…")`: `s` cut to at most `length` characters, ending with
/// `end` when cut.
fn truncate(s: String, length: Option<usize>, end: Option<String>) -> String {
    let length = length.unwrap_or(255);
    if s.chars().count() <= length {
        return s;
    }
    let end = end.unwrap_or_else(|| "…".into());
    let keep = length.saturating_sub(end.chars().count());
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(&end);
    out
}

/// `fail(message)`: stops the render with `message` (a template's own check, such as a
/// missing `vars` value).
fn fail(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// The render's output, refusing to grow past [`MAX_OUTPUT`].
#[derive(Default)]
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT {
            self.over = true;
            return Err(io::Error::other("output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
