//! `contain actions [NAME]`: the action catalogue, each action's target, what it changes,
//! whether it can be undone, and every `with` field with its type, default and description.

use serde_json::Value;

use super::ui;
use super::{CommandError, CommandResult, Ctx, Status};
use crate::action;

pub fn run(ctx: &Ctx, name: Option<&str>) -> CommandResult {
    let catalogue = action::catalogue();
    let selected: Vec<_> = match name {
        Some(name) => match action::lookup(name) {
            Some(a) => vec![a],
            None => {
                let hint =
                    crate::diagnostics::did_you_mean(name, catalogue.iter().map(|a| a.info().name))
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                return Err(CommandError::Input(format!(
                    "unknown action `{name}`{hint}"
                )));
            }
        },
        None => catalogue.to_vec(),
    };
    if !ctx.text() {
        let list: Vec<Value> = selected
            .iter()
            .map(|a| {
                let mut info = serde_json::to_value(a.info()).unwrap_or(Value::Null);
                info["with"] = a.with_schema();
                info
            })
            .collect();
        ui::print_output(&Value::Array(list), ctx.output);
        return Ok(Status::Success);
    }
    let mut out = String::new();
    for a in selected {
        let info = a.info();
        let kinds = info.target.kinds();
        let target = match &info.target {
            action::TargetRule::None => "none".to_string(),
            _ if kinds.is_empty() => "any kind".to_string(),
            _ => kinds.join(", "),
        };
        out.push_str(&format!("{}\n  {}\n", info.name, info.summary));
        out.push_str(&format!(
            "  target:     {target}\n  changes:    {}\n",
            info.changes
        ));
        out.push_str(&format!(
            "  reversible: {} ({})\n",
            if info.reversible { "yes" } else { "no" },
            info.undo
        ));
        if info.destroys_evidence {
            out.push_str("  evidence:   can destroy evidence: needs a forensics.capture first, or a waiver\n");
        }
        let schema = a.with_schema();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
            for (field, spec) in props {
                let doc = spec
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                let kind = field_type(spec, &defs);
                let default = match spec.get("default") {
                    _ if required.contains(&field.as_str()) => "required".to_string(),
                    Some(Value::Null) | None => "optional".to_string(),
                    Some(value) => format!("default {value}"),
                };
                out.push_str(&format!("  with.{field} ({kind}, {default}): {doc}\n"));
            }
        }
        for (output, doc) in info.outputs {
            out.push_str(&format!("  outputs.{output}: {doc}\n"));
        }
        out.push('\n');
    }
    ui::out(&out);
    Ok(Status::Success)
}

/// A `with` field's type as a reader wants it: `string`, `bool`, `string[]`, `map`, or the values
/// of an enum (`auto|network-policy|cluster-policy`).
fn field_type(spec: &Value, defs: &Value) -> String {
    if let Some(reference) = spec.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return field_type(&defs[name], defs);
    }
    if let Some(values) = spec.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        return values.join("|");
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = spec.get(key).and_then(Value::as_array) {
            let kinds: Vec<String> = options
                .iter()
                .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .map(|o| match o.get("const") {
                    Some(value) => value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_string),
                    None => field_type(o, defs),
                })
                .collect();
            return kinds.join("|");
        }
    }
    let kind = match spec.get("type") {
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("any")
            .to_string(),
        Some(Value::String(kind)) => kind.clone(),
        _ => "any".to_string(),
    };
    match kind.as_str() {
        "boolean" => "bool".into(),
        "array" => format!("{}[]", field_type(&spec["items"], defs)),
        "object" => "map".into(),
        _ => kind,
    }
}
