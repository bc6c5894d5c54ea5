//! Handlebars rendering shared by every report (drills, incidents) and notification: strict
//! mode (a template naming a field that does not exist is an error, not an empty string), one
//! escape function per output format, and templates shipped in the binary that a directory can
//! override file by file. Control characters (terminal escapes from hostile cluster or alert
//! text) are dropped by every escape.

use std::path::Path;

use handlebars::{Handlebars, RenderError};
use serde_json::Value;

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

/// A report as JSON data: pretty, inert in a terminal, one line break at the end.
pub fn json(view: &Value) -> String {
    crate::escape::inert_json(serde_json::to_string_pretty(view).unwrap_or_default()) + "\n"
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
