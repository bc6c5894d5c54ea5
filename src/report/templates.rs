//! Handlebars rendering shared by every report (drills, incidents) and notification: strict
//! mode (a template naming a field that does not exist is an error, not an empty string), one
//! escape function per output format, and templates shipped in the binary that a directory can
//! override file by file. Control characters (terminal escapes from hostile cluster or alert
//! text) are dropped by every escape.

use std::path::Path;

use handlebars::{Handlebars, RenderError};
use serde_json::Value;

/// The text without control characters (but line breaks and tabs) and without bidirectional
/// overrides: neither has a place in a report, and either can disguise what it shows.
fn without_controls(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars()
        .filter(|c| (!c.is_control() || *c == '\n' || *c == '\t') && !super::is_bidi_override(*c))
}

/// Markdown: punctuation that would start markup is backslash-escaped; a line break inside a
/// table cell would end the row, so it becomes a space.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in without_controls(text) {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Each character `entity` names becomes that entity; control characters are dropped.
fn escape_entities(text: &str, entity: fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(text.len());
    for c in without_controls(text) {
        match entity(c) {
            Some(replacement) => out.push_str(replacement),
            None => out.push(c),
        }
    }
    out
}

/// XML 1.0: the five escapes, and no control characters (XML cannot carry them at all).
pub fn escape_xml(text: &str) -> String {
    escape_entities(text, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&apos;"),
        _ => None,
    })
}

handlebars::handlebars_helper!(or_dash: |v: Value| match v {
    Value::Null => "–".to_string(),
    Value::Number(n) => n.to_string(),
    Value::String(s) => s,
    other => other.to_string(),
});

/// A strict handlebars registry escaping with `escape`, with the `or_dash` helper (a dash for
/// a missing value).
pub fn registry(escape: fn(&str) -> String) -> Handlebars<'static> {
    let mut handlebars = Handlebars::new();
    handlebars.set_strict_mode(true);
    handlebars.register_escape_fn(escape);
    handlebars.register_helper("or_dash", Box::new(or_dash));
    handlebars
}

/// A template: the override in `templates` when it has one, else the shipped one.
pub fn template(
    templates: Option<&Path>,
    file: &str,
    shipped: &'static str,
) -> Result<String, String> {
    match templates.map(|dir| dir.join(file)) {
        Some(path) if path.is_file() => std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read template {}: {e}", path.display())),
        _ => Ok(shipped.to_string()),
    }
}

/// Renders `text` (the template named `name`) with `view`; errors name the template.
pub fn render(
    escape: fn(&str) -> String,
    name: &str,
    text: &str,
    view: &Value,
) -> Result<String, String> {
    let mut handlebars = registry(escape);
    handlebars
        .register_template_string(name, text)
        .map_err(|e| format!("template {name}: {e}"))?;
    handlebars
        .render(name, view)
        .map_err(|e: RenderError| format!("template {name}: {e}"))
}

/// HTML text and attribute values: the five escapes (`'` too, so single-quoted attributes are
/// safe), and no control characters.
pub fn escape_html(text: &str) -> String {
    escape_entities(text, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&#39;"),
        _ => None,
    })
}

/// JSON string content (a webhook body): the template writes the quotes, this escapes what
/// goes between them. Control characters other than line breaks and tabs are dropped: a
/// receiver may well print the text on a terminal.
pub fn escape_json(text: &str) -> String {
    let clean: String = without_controls(text).collect();
    let quoted = serde_json::to_string(&clean).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_escapes_its_own_markup_and_drops_terminal_escapes() {
        let hostile = "<script>alert('x')</script> \u{1b}[31m{{x}} | \"q\"";
        let html = escape_html(hostile);
        assert!(!html.contains('<') && !html.contains('\u{1b}') && html.contains("&#39;x&#39;"));
        let md = escape_markdown(hostile);
        assert!(md.contains("\\<script\\>") && md.contains("\\|") && !md.contains('\u{1b}'));
        let json = escape_json(hostile);
        let parsed: String = serde_json::from_str(&format!("\"{json}\"")).unwrap();
        assert_eq!(parsed, hostile.replace('\u{1b}', ""));
    }
}
