//! `events catalog`: the event catalog (`pilot_core::catalog`: name, category, severity, data
//! fields, description) as an aligned table, as JSON, or as the Markdown section that closes
//! `docs/events.md` (`--markdown`). A family of events is shown as its pattern
//! (`plugin.<name>.panic`), with `"pattern": true` in JSON.

use pilot_core::catalog::{Category, EventSpec, Field, CATALOG};
use serde::Serialize;

use crate::cli::CatalogArgs;
use crate::output::{Align, Output, Table};

/// The first line of the generated section of `docs/events.md`; everything after it is
/// generated.
pub const MARKER: &str = "<!-- Generated from crates/pilot-core/src/catalog.rs by `pilotctl events catalog --markdown`: edit the catalog, not this section (`UPDATE_DOCS=1 cargo test -p pilot-tests --test catalog` rewrites it). -->";

#[derive(Serialize)]
struct CategoryInfo {
    id: &'static str,
    title: &'static str,
}

#[derive(Serialize)]
struct Listing<'a> {
    categories: Vec<CategoryInfo>,
    events: Vec<&'a EventSpec>,
}

/// `events catalog [--category C] [--markdown]`.
pub fn run(args: &CatalogArgs) -> Output {
    let categories: Vec<Category> = match args.category {
        Some(c) => vec![c],
        None => Category::ALL.to_vec(),
    };
    if args.markdown {
        let md = markdown(&categories);
        return Output::report(&serde_json::json!({ "markdown": md }), md.trim_end());
    }
    let events: Vec<&EventSpec> = CATALOG
        .iter()
        .filter(|e| categories.contains(&e.category))
        .collect();
    let text = table(&events);
    let listing = Listing {
        categories: categories
            .iter()
            .map(|c| CategoryInfo {
                id: c.id(),
                title: c.title(),
            })
            .collect(),
        events,
    };
    Output::report(&listing, text)
}

/// One field as the table shows it: `name:type`, in brackets when optional.
fn field_cell(f: &Field) -> String {
    if f.required {
        format!("{}:{}", f.name, f.ty)
    } else {
        format!("[{}:{}]", f.name, f.ty)
    }
}

/// EVENT, CATEGORY, SEVERITY, DATA, DESCRIPTION; columns aligned, the last one not padded.
fn table(events: &[&EventSpec]) -> String {
    let mut table = Table::new(&[
        ("EVENT", Align::Left),
        ("CATEGORY", Align::Left),
        ("SEVERITY", Align::Left),
        ("DATA", Align::Left),
        ("DESCRIPTION", Align::Left),
    ]);
    for e in events {
        let data = if e.fields.is_empty() {
            "-".to_string()
        } else {
            e.fields
                .iter()
                .map(field_cell)
                .collect::<Vec<_>>()
                .join(" ")
        };
        table.row([
            e.name.to_string(),
            e.category.id().to_string(),
            e.severity.to_string(),
            data,
            e.description.to_string(),
        ]);
    }
    table.render()
}

/// The generated section of `docs/events.md`: the marker, then one table per category.
fn markdown(categories: &[Category]) -> String {
    let mut out = format!(
        "{MARKER}\n\n## The event catalog\n\nThe events the Pilot daemon publishes, and pilot's \
         own, with their `data` fields and JSON types. Every field is required unless marked \
         optional; the severity is the event's unless its publisher gives another (see \
         [Severity](#severity)). A name with a `<part>` is a pattern for a family of events, \
         one per value of that part (`plugin.<name>.panic` covers `plugin.webhook.panic`); \
         each is checked like a fixed name. `pilotctl events catalog` prints the same list.\n"
    );
    for &c in categories {
        out.push_str(&format!(
            "\n### {} (`{}`)\n\n| event | severity | data | description |\n|---|---|---|---|\n",
            c.title(),
            c.id()
        ));
        for e in c.events() {
            let data = if e.fields.is_empty() {
                "none".to_string()
            } else {
                e.fields
                    .iter()
                    .map(|f| {
                        let opt = if f.required { "" } else { " (optional)" };
                        format!("`{}` {}{opt}", f.name, f.ty)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push_str(&format!(
                "| `{}` | {} | {data} | {} |\n",
                e.name,
                e.severity,
                e.description.replace('|', "\\|")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_aligned_and_complete() {
        let events: Vec<&EventSpec> = CATALOG.iter().collect();
        // The header is bold; colour is stripped on the way out when not on a terminal.
        let text = anstream::adapter::strip_str(&table(&events)).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), CATALOG.len() + 1);
        assert!(lines[0].starts_with("EVENT "));
        let col = lines[0].find("DATA").unwrap();
        let sev = lines[0].find("SEVERITY").unwrap();
        for (line, e) in lines[1..].iter().zip(CATALOG) {
            assert!(line.starts_with(e.name), "{line}");
            assert!(line[col..].starts_with(&field_cell_or_dash(e)), "{line}");
            assert!(
                line[sev..].starts_with(&format!("{} ", e.severity)),
                "{line}"
            );
        }
        assert!(
            text.contains("[reason:string]"),
            "optional fields in brackets"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("plugin.<name>.unhealthy ")),
            "families as patterns"
        );
    }

    fn field_cell_or_dash(e: &EventSpec) -> String {
        e.fields.first().map_or("-".into(), field_cell)
    }

    #[test]
    fn markdown_has_a_table_per_category() {
        let md = markdown(&Category::ALL);
        assert!(md.starts_with(MARKER));
        assert_eq!(md.matches("\n### ").count(), Category::ALL.len());
        for e in CATALOG {
            assert_eq!(md.matches(&format!("| `{}` |", e.name)).count(), 1);
        }
        assert!(md.contains("| `node.deregistered` | notice | none |"));
        assert!(md.contains("| `security.nonce_replay` | critical | "));
        assert!(md.contains("`reason` string (optional)"));
        assert!(md.contains("\n### Plugin health (`plugin`)\n"));
        assert!(md.contains("| `plugin.<name>.panic` | warning | `plugin` string, "));
        assert!(md.contains("a family of events"));
    }
}
