//! The JSON-lines reader of `emit --file`: one event per line, read as a stream.
//!
//! Each non-blank line is an object `{"event":"name","data":{...},"severity":"warning"}` (`data`
//! and `severity` optional, a line without `severity` takes `emit --severity`'s, if given; other
//! fields, like those of a captured `pilotctl events` line, are ignored); a catalog event's data
//! must match the catalog (`pilot_core::catalog`). The reader yields events until the first bad
//! line or read error, which it keeps with its line number. It never holds more than one line
//! (of at most [`MAX_LINE`] bytes) in memory.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

use pilot_core::catalog;
use pilot_core::event::{check_data, validate_name, MAX_DATA_BYTES};
use pilot_core::Severity;
use pilot_ipc::EmitItem;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::output::{code, CliError};

/// The longest line accepted, in bytes (the data limit plus room for the name and fields).
pub const MAX_LINE: usize = 2 * MAX_DATA_BYTES;

/// How many (item, line) pairs are remembered to name the line of a refused item. The client
/// keeps at most `PIPELINE_WINDOW` items in flight, so a refused item is always among these.
const REMEMBER: usize = 2 * pilot_ipc::client::PIPELINE_WINDOW;

/// Why reading stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    pub error: CliError,
}

#[derive(Deserialize)]
struct Line {
    event: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    severity: Option<String>,
}

/// An iterator of the events in a JSON-lines stream.
pub struct EventLines<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
    error: Option<LineError>,
    yielded: usize,
    recent: VecDeque<(usize, u64)>,
    severity: Option<Severity>,
}

impl<R: BufRead> EventLines<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: 0,
            buf: Vec::new(),
            error: None,
            yielded: 0,
            recent: VecDeque::new(),
            severity: None,
        }
    }

    /// The severity of the lines that do not give one (none: the catalog's for the name).
    pub fn with_severity(mut self, severity: Option<Severity>) -> Self {
        self.severity = severity;
        self
    }

    /// The bad line or read error that stopped the iterator, if one did.
    pub fn error(&self) -> Option<&LineError> {
        self.error.as_ref()
    }

    /// The line number of the `index`th event yielded (0-based), if it is recent enough.
    pub fn line_of(&self, index: usize) -> Option<u64> {
        self.recent
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, l)| *l)
    }

    fn fail(&mut self, error: CliError) -> Option<EmitItem> {
        self.error = Some(LineError {
            line: self.line,
            error,
        });
        None
    }
}

impl<R: BufRead> Iterator for EventLines<R> {
    type Item = EmitItem;

    fn next(&mut self) -> Option<EmitItem> {
        if self.error.is_some() {
            return None;
        }
        loop {
            self.buf.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf);
            match read {
                Ok(0) => return None,
                Ok(_) => self.line += 1,
                Err(e) => {
                    self.line += 1;
                    return self.fail(CliError::new(code::IO_ERROR, format!("cannot read: {e}")));
                }
            }
            if self.buf.len() > MAX_LINE && self.buf.last() != Some(&b'\n') {
                return self.fail(CliError::invalid_argument(format!(
                    "line is longer than {MAX_LINE} bytes"
                )));
            }
            let text = self.buf.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match parse_line(text, self.severity) {
                Ok(item) => {
                    if self.recent.len() == REMEMBER {
                        self.recent.pop_front();
                    }
                    self.recent.push_back((self.yielded, self.line));
                    self.yielded += 1;
                    return Some(item);
                }
                Err(e) => return self.fail(e),
            }
        }
    }
}

/// Parses and checks one line; `severity` is for a line that does not give one.
pub fn parse_line(text: &[u8], severity: Option<Severity>) -> Result<EmitItem, CliError> {
    let line: Line = serde_json::from_slice(text).map_err(|e| {
        let what = if e.is_data() {
            "expected an object like {\"event\":\"a.b\",\"data\":{...}}"
        } else {
            "invalid JSON"
        };
        CliError::invalid_argument(format!("{what}: {e}"))
    })?;
    validate_name(&line.event)?;
    if let Some(d) = &line.data {
        check_data(d)?;
    }
    catalog::check(&line.event, line.data.as_deref())?;
    let severity = match &line.severity {
        Some(s) => Some(
            s.parse::<Severity>()
                .map_err(|e| CliError::invalid_argument(e.to_string()))?,
        ),
        None => severity,
    };
    Ok(EmitItem {
        event: line.event,
        data: line.data,
        severity,
    })
}

/// Reads all of `reader` up to `limit` bytes; `None` when there is more.
pub fn read_limited(reader: impl Read, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut buf)?;
    Ok((buf.len() <= limit).then_some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn lines(text: &str) -> EventLines<Cursor<Vec<u8>>> {
        EventLines::new(Cursor::new(text.as_bytes().to_vec()))
    }

    #[test]
    fn reads_events_and_skips_blank_lines() {
        let mut r = lines(
            "{\"event\":\"a.b\",\"data\":{\"k\":1}}\n\n  \r\n{\"event\":\"c.d\"}\r\n\
             {\"event_id\":9,\"event\":\"e.f\",\"node_id\":1,\"timestamp\":\"2026-01-15T12:34:56Z\",\"data\":null}",
        );
        let items: Vec<EmitItem> = (&mut r).collect();
        assert!(r.error().is_none());
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].event, "a.b");
        assert_eq!(items[0].data.as_ref().unwrap().get(), r#"{"k":1}"#);
        assert_eq!(items[1].event, "c.d");
        assert!(items[1].data.is_none());
        assert!(items[2].data.is_none());
        assert_eq!(r.line_of(0), Some(1));
        assert_eq!(r.line_of(1), Some(4));
        assert_eq!(r.line_of(2), Some(5));
        assert_eq!(r.line_of(3), None);
    }

    #[test]
    fn stops_at_the_first_bad_line_and_names_it() {
        let cases = [
            (
                "{\"event\":\"a.b\"}\n\n{\"event\":\"Bad\"}\n{\"event\":\"c.d\"}\n",
                3,
                "Bad",
            ),
            ("{\"event\":\"a.b\"}\nnot json\n", 2, "invalid JSON"),
            (
                "{\"event\":\"a.b\"}\n{\"data\":{}}\n",
                2,
                "expected an object",
            ),
            ("{\"event\":\"a.b\"}\n[1]\n", 2, "expected an object"),
            ("{\"event\":\"a.b\",\"data\":[1]}\n", 1, "JSON object"),
            ("{\"event\":\"a.b\",\"data\":\"s\"}\n", 1, "JSON object"),
            (
                "{\"event\":\"a.b\"}\n{\"event\":\"tunnel.peer_added\",\"data\":{\"peer_node_id\":\"7\"}}\n",
                2,
                "\"peer_node_id\" must be integer, found string",
            ),
            (
                "{\"event\":\"tunnel.peer_added\"}\n",
                1,
                "\"peer_node_id\" is missing",
            ),
            (
                "{\"event\":\"a.b\"}\n{\"event\":\"a.b\",\"severity\":\"loud\"}\n",
                2,
                "unknown severity \"loud\" (one of: debug, info",
            ),
        ];
        for (text, line, needle) in cases {
            let mut r = lines(text);
            let n = (&mut r).count();
            let err = r.error().expect(text);
            assert_eq!(err.line, line, "{text}");
            assert_eq!(
                n as u64,
                line - 1 - u64::from(text.contains("\n\n")),
                "{text}"
            );
            assert_eq!(err.error.code, "invalid_argument");
            assert!(err.error.message.contains(needle), "{}", err.error.message);
            assert!(r.next().is_none(), "stays stopped");
        }
    }

    #[test]
    fn a_lines_severity_wins_over_the_flags() {
        let text = "{\"event\":\"a.b\"}\n{\"event\":\"a.b\",\"severity\":\"Critical\"}\n";
        let got = |flag| -> Vec<Option<Severity>> {
            lines(text)
                .with_severity(flag)
                .map(|i| i.severity)
                .collect()
        };
        assert_eq!(got(None), [None, Some(Severity::Critical)]);
        assert_eq!(
            got(Some(Severity::Debug)),
            [Some(Severity::Debug), Some(Severity::Critical)]
        );
    }

    #[test]
    fn an_overlong_line_is_refused_without_reading_it_all() {
        let big = format!(
            "{{\"event\":\"a.b\",\"data\":{{\"k\":\"{}\"}}}}\n",
            "x".repeat(MAX_LINE)
        );
        let mut r = lines(&format!(
            "{{\"event\":\"a.b\"}}\n{big}{{\"event\":\"c.d\"}}\n"
        ));
        assert_eq!((&mut r).count(), 1);
        let err = r.error().unwrap();
        assert_eq!(err.line, 2);
        assert!(err.error.message.contains("longer than"));
    }

    #[test]
    fn data_over_the_limit_is_refused() {
        let big = format!(
            "{{\"event\":\"a.b\",\"data\":{{\"k\":\"{}\"}}}}\n",
            "x".repeat(MAX_DATA_BYTES)
        );
        let mut r = lines(&big);
        assert_eq!((&mut r).count(), 0);
        assert!(r.error().unwrap().error.message.contains("limit"));
    }

    #[test]
    fn remembers_lines_of_recent_items_only() {
        let text = "{\"event\":\"a.b\"}\n".repeat(REMEMBER + 10);
        let mut r = lines(&text);
        assert_eq!((&mut r).count(), REMEMBER + 10);
        assert_eq!(r.line_of(0), None);
        assert_eq!(r.line_of(REMEMBER + 9), Some(REMEMBER as u64 + 10));
    }

    #[test]
    fn read_limited_stops_past_the_limit() {
        assert_eq!(read_limited(&b"abc"[..], 3).unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_limited(&b"abcd"[..], 3).unwrap(), None);
    }
}
