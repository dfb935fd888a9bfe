//! Scraping `/metrics` over a real TCP connection and a strict parser of the text it gets
//! (OpenMetrics 1.0 text, as Prometheus reads it): every sample must follow the `# HELP` and
//! `# TYPE` lines of its family and carry a name that family allows; the text ends in `# EOF`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP response, read until the server closed the connection.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr` over a fresh HTTP/1.1 connection (`Connection: close`).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `GET /metrics` on `addr`, asserting a 200, parsed.
pub fn scrape(addr: SocketAddr) -> Exposition {
    let r = http_get(addr, "/metrics").unwrap_or_else(|e| panic!("scrape {addr}: {e}"));
    assert_eq!(r.status, 200, "{r:?}");
    parse(&r.body).unwrap_or_else(|e| panic!("{e}\nin:\n{}", r.body))
}

/// A metric family's `# HELP` and `# TYPE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub kind: String,
    pub help: String,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The family it belongs to.
    pub family: String,
    /// Its own name (`<family>_total`, `<family>_bucket`, ...).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of sample `name` with exactly `labels`, if present.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`get`](Self::get), panicking when the sample is missing.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {:#?}", self.samples))
    }

    /// Every sample of family `family`.
    pub fn of(&self, family: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.family == family).collect()
    }
}

/// The sample names a family of type `kind` may have.
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "gauge" | "unknown" => &[""],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[],
    }
}

/// Parses the text; an error names the line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut help: Option<(String, String)> = None;
    let mut current: Option<(String, String)> = None; // (family, kind)
    let mut eof = false;
    for (i, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        if eof {
            return Err(at("text after # EOF".into()));
        }
        if line == "# EOF" {
            eof = true;
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name.to_string(), h.to_string()));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type".into()))?;
            if suffixes(kind).is_empty() {
                return Err(at(format!("unknown type {kind}")));
            }
            let h = match help.take() {
                Some((n, h)) if n == name => h,
                _ => return Err(at("TYPE without a HELP of the same name before it".into())),
            };
            if out.families.contains_key(name) {
                return Err(at("family declared twice".into()));
            }
            out.families.insert(
                name.into(),
                Family {
                    kind: kind.into(),
                    help: h,
                },
            );
            current = Some((name.into(), kind.into()));
        } else if line.starts_with('#') {
            return Err(at("unexpected comment".into()));
        } else {
            let (family, kind) = current
                .as_ref()
                .ok_or_else(|| at("sample before any TYPE".into()))?;
            let sample = parse_sample(line).map_err(at)?;
            if !suffixes(kind)
                .iter()
                .any(|s| sample.0 == format!("{family}{s}"))
            {
                return Err(at(format!("not a sample of {family} ({kind})")));
            }
            out.samples.push(Sample {
                family: family.clone(),
                name: sample.0,
                labels: sample.1,
                value: sample.2,
            });
        }
    }
    if !eof {
        return Err("no # EOF at the end".into());
    }
    Ok(out)
}

type Parsed = (String, BTreeMap<String, String>, f64);

/// `name{k="v",...} value`.
fn parse_sample(line: &str) -> Result<Parsed, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "no value".to_string())?;
    let name = &line[..name_end];
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    if name.is_empty() || !name.chars().all(valid) || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let Some((_, c)) = chars.next() else {
                return Err("unterminated labels".into());
            };
            match c {
                '}' if key.is_empty() => break,
                ',' if key.is_empty() => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err("label value without quotes".into());
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '"')) => break,
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, c @ ('\\' | '"'))) => value.push(c),
                                _ => return Err("bad escape in a label value".into()),
                            },
                            Some((_, c)) => value.push(c),
                            None => return Err("unterminated label value".into()),
                        }
                    }
                    if labels.insert(std::mem::take(&mut key), value).is_some() {
                        return Err("label given twice".into());
                    }
                }
                c if valid(c) => key.push(c),
                c => return Err(format!("unexpected {c:?} in labels")),
            }
        }
        let consumed = chars.next().map_or(inner.len(), |(i, _)| i);
        rest = &inner[consumed..];
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_string())?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok((name.to_string(), labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_families_labels_and_escapes() {
        let text = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total 3\n\
                    # HELP g A gauge.\n# TYPE g gauge\ng{x=\"q \\\"1\\\"\",y=\"a\\\\b\"} 1.5\n# EOF\n";
        let e = parse(text).unwrap();
        assert_eq!(e.families["a_b"].kind, "counter");
        assert_eq!(e.families["a_b"].help, "Things.");
        assert_eq!(e.value("a_b_total", &[]), 3.0);
        assert_eq!(e.value("g", &[("x", "q \"1\""), ("y", "a\\b")]), 1.5);
    }

    #[test]
    fn refuses_what_prometheus_would_not_read() {
        for bad in [
            "a 1\n# EOF\n",                                    // no TYPE
            "# TYPE a gauge\na 1\n# EOF\n",                    // no HELP
            "# HELP a x\n# TYPE a counter\na 1\n# EOF\n",      // counter without _total
            "# HELP a x\n# TYPE a gauge\nb 1\n# EOF\n",        // other family
            "# HELP a x\n# TYPE a gauge\na{k=\"v} 1\n# EOF\n", // unterminated
            "# HELP a x\n# TYPE a gauge\na one\n# EOF\n",      // bad value
            "# HELP a x\n# TYPE a gauge\na 1\n",               // no EOF
            "# HELP a x\n# TYPE a gauge\na 1\n# EOF\na 2\n",   // after EOF
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
