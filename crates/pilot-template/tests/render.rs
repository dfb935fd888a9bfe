//! Rendering: the variables, the head convention, the limits, the sample check, and every
//! preset's output checked against its service's documented schema for every sample event.

use pilot_core::{Event, Severity};
use pilot_template::{presets, samples, RenderError, Template, TemplateError, Vars, MAX_OUTPUT};
use serde_json::{json, Value};

fn event(name: &str, data: Value) -> Event {
    Event::new(
        12,
        name,
        7,
        "2026-01-15T12:34:56.789Z".parse().unwrap(),
        pilot_core::event::data_from_value(&data).ok(),
    )
}

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn render(source: &str, e: &Event) -> Result<pilot_template::Rendered, RenderError> {
    Template::from_source("t", source)
        .unwrap()
        .render(e, "msg_abc_12", &Vars::new())
}

#[test]
fn templates_see_the_event_and_its_catalog_entry() {
    let e = event(
        "handshake.received",
        json!({"peer_node_id": 42, "justification": "hi"}),
    );
    let err = render("{{ event }}", &e).unwrap_err();
    assert!(
        matches!(err, RenderError::InvalidJson { .. }),
        "the default Content-Type is JSON, so text is refused: {err}"
    );
    let t = Template::from_source(
        "t",
        "{% set content_type = 'text/plain' %}{{ event }}|{{ event_id }}|{{ node_id }}|\
         {{ timestamp }}|{{ severity }}|{{ category }}|{{ webhook_id }}|{{ data.peer_node_id }}|\
         {{ fields | length }}|{{ payload.event_id }}|{{ description != '' }}|{{ summary }}",
    )
    .unwrap();
    let r = t.render(&e, "msg_abc_12", &Vars::new()).unwrap();
    assert_eq!(r.content_type, "text/plain");
    let parts: Vec<&str> = r.body.split('|').collect();
    assert_eq!(
        parts[..11],
        [
            "handshake.received",
            "12",
            "7",
            "2026-01-15T12:34:56.789Z",
            "notice",
            "trust",
            "msg_abc_12",
            "42",
            "2",
            "12",
            "True"
        ]
    );
    assert!(
        parts[11].starts_with("handshake.received on node 7: "),
        "{}",
        parts[11]
    );
    assert!(r.headers.is_empty());
}

#[test]
fn a_template_sets_its_content_type_and_headers() {
    let t = Template::from_source(
        "t",
        r#"{% set content_type = "application/vnd.acme+json" %}{% set headers = {"X-Event": event, "X-Id": event_id | string} %}{"e": {{ event | tojson }}}"#,
    )
    .unwrap();
    let r = t
        .render(&event("a.b", json!({})), "id", &Vars::new())
        .unwrap();
    assert_eq!(r.content_type, "application/vnd.acme+json");
    assert_eq!(
        r.headers,
        [
            ("X-Event".into(), "a.b".into()),
            ("X-Id".into(), "12".into())
        ]
    );
    assert_eq!(r.body, r#"{"e": "a.b"}"#);
}

#[test]
fn bad_heads_are_render_errors() {
    let e = event("a.b", json!({}));
    for (source, want) in [
        (
            r#"{% set headers = {"Content-Type": "x"} %}{}"#,
            "content_type",
        ),
        (
            r#"{% set headers = {"webhook-id": "x"} %}{}"#,
            "set by pilot",
        ),
        (r#"{% set headers = {"Host": "evil"} %}{}"#, "set by pilot"),
        (
            r#"{% set headers = {"Bad Name": "x"} %}{}"#,
            "not a valid header",
        ),
        (
            r#"{% set headers = {"X-A": "caf\u00e9"} %}{}"#,
            "visible ASCII",
        ),
        (r#"{% set headers = {"X-A": 3} %}{}"#, "must be a map"),
        (r#"{% set headers = "X-A: 1" %}{}"#, "must be a map"),
        (r#"{% set content_type = 3 %}{}"#, "content_type"),
        (r#"{% set content_type = "a\nb" %}{}"#, "content_type"),
    ] {
        let err = render(source, &e).unwrap_err().to_string();
        assert!(err.contains(want), "{source}: {err}");
    }
}

#[test]
fn a_json_content_type_must_render_json() {
    let e = event("a.b", json!({"m": "say \"hi\""}));
    let err = render(r#"{"m": "{{ data.m }}"}"#, &e).unwrap_err();
    assert!(matches!(err, RenderError::InvalidJson { .. }), "{err}");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    let ok = render(r#"{"m": {{ data.m | tojson }}}"#, &e).unwrap();
    let v: Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(v["m"], "say \"hi\"");
}

#[test]
fn renders_are_bounded_in_time_depth_and_size() {
    let e = event("a.b", json!({}));
    let err = render(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        &e,
    )
    .unwrap_err();
    assert_eq!(err, RenderError::OutOfFuel, "{err}");
    let err = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", &e).unwrap_err();
    assert!(matches!(err, RenderError::Engine(_)), "{err}");
    let err = render(
        "{% set content_type = 'text/plain' %}{% for i in range(100) %}{{ 'x' * 10000 }}{% endfor %}",
        &e,
    )
    .unwrap_err();
    assert_eq!(err, RenderError::TooLarge);
    assert!(err.to_string().contains("256 KiB"));
    let just = format!(
        "{{% set content_type = 'text/plain' %}}{{{{ 'x' * {} }}}}",
        MAX_OUTPUT
    );
    assert_eq!(render(&just, &e).unwrap().body.len(), MAX_OUTPUT);
}

#[test]
fn fail_and_undefined_values() {
    let e = event("a.b", json!({}));
    let err = render("{{ fail('set --template-var x') }}", &e).unwrap_err();
    assert!(err.to_string().contains("set --template-var x"), "{err}");
    let r = render(
        "{% set content_type = 'text/plain' %}[{{ data.missing }}][{{ vars.none }}]",
        &e,
    )
    .unwrap();
    assert_eq!(r.body, "[][]", "undefined prints nothing");
    let err = render("{{ data.missing.deeper }}", &e).unwrap_err();
    assert!(matches!(err, RenderError::Engine(_)));
    let r = render(
        "{% set content_type = 'text/plain' %}{{ 'ééééé' | truncate(3) }}|{{ 'abc' | truncate(3) }}|{{ 'abcdef' | truncate(4, '..') }}",
        &e,
    )
    .unwrap();
    assert_eq!(r.body, "éé…|abc|ab..");
}

#[test]
fn syntax_errors_and_unknown_presets_are_clear() {
    let err = Template::from_source("mine.j2", "{% if %}").unwrap_err();
    assert!(matches!(err, TemplateError::Syntax { .. }));
    assert!(err.to_string().contains("mine.j2"), "{err}");
    let err = Template::load("slak").unwrap_err();
    assert!(
        err.to_string()
            .contains("slack, discord, teams, pagerduty, ntfy"),
        "{err}"
    );
    let err = Template::load("/nonexistent/t.j2").unwrap_err();
    assert!(err.to_string().contains("/nonexistent/t.j2"), "{err}");
}

#[test]
fn files_are_read_with_a_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.j2");
    std::fs::write(&path, r#"{"e": {{ event | tojson }}}"#).unwrap();
    let t = Template::load(path.to_str().unwrap()).unwrap();
    assert_eq!(t.name(), path.to_str().unwrap());
    t.check(&Vars::new()).unwrap();
    std::fs::write(&path, vec![b'x'; 65 * 1024]).unwrap();
    let err = Template::load(path.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, TemplateError::TooLarge { .. }), "{err}");
    std::fs::write(&path, [0xff, 0xfe]).unwrap();
    let err = Template::load(path.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, TemplateError::NotUtf8 { .. }), "{err}");
}

#[test]
fn check_refuses_a_template_that_fails_for_some_sample() {
    let t = Template::from_source("t", r#"{"m": "{{ data.message }}"}"#).unwrap();
    let err = t.check(&Vars::new()).unwrap_err();
    assert!(
        err.to_string()
            .contains("fails for a sample myapp.tricky_input event"),
        "{err}"
    );
    let t = Template::from_source("t", "{{ payload | tojson }}").unwrap();
    t.check(&Vars::new()).unwrap();
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{ptr} is a string in {v}"))
}

/// Renders preset `name` for every sample event and hands each parsed body (or the text) to
/// `check`.
fn each_sample(name: &str, vars: &Vars, check: impl Fn(&Event, &pilot_template::Rendered)) {
    let t = Template::load(name).unwrap();
    t.check(vars).unwrap();
    for e in samples::events() {
        let r = t.render(&e, "msg_7_1", vars).unwrap();
        check(&e, &r);
    }
}

#[test]
fn slack_has_text_and_blocks() {
    each_sample("slack", &Vars::new(), |e, r| {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(str_at(&v, "/text").contains(&e.event));
        let blocks = v["blocks"].as_array().unwrap();
        assert!(!blocks.is_empty() && blocks.len() <= 50);
        for b in blocks {
            assert!(b["type"].is_string());
        }
        assert_eq!(blocks[0]["type"], "header");
        assert!(str_at(&v, "/blocks/0/text/text").chars().count() <= 150);
        if let Some(fields) = blocks[1]["fields"].as_array() {
            assert!(fields.len() <= 10);
        }
    });
}

#[test]
fn discord_has_content_and_an_embed() {
    each_sample("discord", &Vars::new(), |e, r| {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert!(str_at(&v, "/content").chars().count() <= 2000);
        let embed = &v["embeds"][0];
        assert_eq!(embed["title"], e.event.as_str());
        assert!(embed["color"].is_u64());
        let fields = embed["fields"].as_array().unwrap();
        assert!(fields.len() <= 25);
        for f in fields {
            assert!(!str_at(f, "/name").is_empty() && !str_at(f, "/value").is_empty());
        }
    });
}

#[test]
fn teams_is_an_adaptive_card_message() {
    each_sample("teams", &Vars::new(), |_, r| {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["type"], "message");
        let a = &v["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert!(a["content"]["version"].is_string());
        let body = a["content"]["body"].as_array().unwrap();
        assert_eq!(body[0]["type"], "TextBlock");
        assert!(body.iter().any(|b| b["type"] == "FactSet"));
    });
}

#[test]
fn pagerduty_needs_a_routing_key_and_maps_severity() {
    let err = Template::load("pagerduty")
        .unwrap()
        .check(&Vars::new())
        .unwrap_err();
    assert!(
        err.to_string().contains("--template-var routing_key="),
        "{err}"
    );
    let key = vars(&[("routing_key", "R0UT1NGKEY")]);
    each_sample("pagerduty", &key, |e, r| {
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["routing_key"], "R0UT1NGKEY");
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["dedup_key"], "msg_7_1");
        let summary = str_at(&v, "/payload/summary");
        assert!(!summary.is_empty() && summary.chars().count() <= 1024);
        assert!(!str_at(&v, "/payload/source").is_empty());
        let want = match e.severity {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            _ => "info",
        };
        assert_eq!(v["payload"]["severity"], want, "{}", e.event);
    });
}

#[test]
fn ntfy_is_plain_text_with_title_and_priority() {
    each_sample("ntfy", &Vars::new(), |e, r| {
        assert!(r.content_type.starts_with("text/plain"));
        assert!(
            r.body.starts_with(&format!("{} on node", e.event)),
            "{}",
            r.body
        );
        let get = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert!(get("Title").unwrap().contains(&e.event));
        let p: u8 = get("Priority").unwrap().parse().unwrap();
        assert!((1..=5).contains(&p));
        assert_eq!(p == 5, e.severity == Severity::Critical);
        assert!(get("Tags").is_some());
    });
}

#[test]
fn every_preset_is_named_and_checks() {
    let key = vars(&[("routing_key", "k")]);
    for name in presets::NAMES {
        Template::load(name).unwrap().check(&key).unwrap();
    }
    assert!(presets::looks_like_path("./x.j2") && !presets::looks_like_path("slack"));
}
