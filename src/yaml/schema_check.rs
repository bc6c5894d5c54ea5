//! Checks a spanned YAML tree against a JSON schema (the subset schemars produces), collecting
//! every problem with its place instead of stopping at the first.
//!
//! A string holding a template (`{{ … }}` or `{% … %}`) is accepted where a number, boolean or
//! patterned string is expected: its value is only known after rendering, and is checked then.

use serde_json::Value;

use crate::diagnostics::{Problem, did_you_mean};
use crate::yaml::node::{Node, NodeValue};

/// Checks `node` against `schema`, whose `$ref`s point into `root`.
pub fn check(node: &Node, schema: &Value, root: &Value, path: &str, out: &mut Vec<Problem>) {
    Checker {
        root,
        patterns: Default::default(),
    }
    .check(node, schema, path, out);
}

/// True when a string will be rendered as a template.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// A readable path: `steps[2].with.replicas`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn place(path: &str) -> String {
    if path.is_empty() {
        "the document".to_string()
    } else {
        format!("`{path}`")
    }
}

struct Checker<'a> {
    root: &'a Value,
    /// Compiled `pattern`s: a playbook checks the same few patterns once per step.
    patterns: std::cell::RefCell<std::collections::HashMap<String, Option<regex::Regex>>>,
}

impl<'a> Checker<'a> {
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        let mut schema = schema;
        // Follow a bounded chain of local refs; schemars never nests them deeply.
        for _ in 0..16 {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(target) = reference
                .strip_prefix('#')
                .and_then(|pointer| self.root.pointer(pointer))
            else {
                break;
            };
            schema = target;
        }
        schema
    }

    fn check(&self, node: &Node, schema: &'a Value, path: &str, out: &mut Vec<Problem>) {
        let schema = self.resolve(schema);
        if schema == &Value::Bool(true) {
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(node, sub, path, out);
            }
        }
        if let Some(branches) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array)
        {
            self.check_branches(node, branches, path, out);
        }
        if let (Some(condition), Some(then)) = (schema.get("if"), schema.get("then")) {
            let mut scratch = Vec::new();
            self.check(node, condition, path, &mut scratch);
            if scratch.is_empty() {
                self.check(node, then, path, out);
            }
        }
        if !self.check_type(node, schema, path, out) {
            return;
        }
        self.check_values(node, schema, path, out);
        match &node.value {
            NodeValue::Map(entries) => self.check_map(node, entries, schema, path, out),
            NodeValue::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &index(path, i), out);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_branches(
        &self,
        node: &Node,
        branches: &'a [Value],
        path: &str,
        out: &mut Vec<Problem>,
    ) {
        let mut best: Option<Vec<Problem>> = None;
        for branch in branches {
            let mut problems = Vec::new();
            self.check(node, branch, path, &mut problems);
            if problems.is_empty() {
                return;
            }
            if best.as_ref().is_none_or(|b| problems.len() < b.len()) {
                best = Some(problems);
            }
        }
        let consts: Vec<String> = branches
            .iter()
            .filter_map(|b| self.resolve(b).get("const"))
            .map(display_value)
            .collect();
        if consts.len() == branches.len() {
            out.push(
                Problem::new(
                    format!(
                        "{} must be one of {}, found {}",
                        place(path),
                        consts.join(", "),
                        describe(node)
                    ),
                    Some(node.span),
                )
                .label("not allowed here"),
            );
        } else if let Some(best) = best {
            out.extend(best);
        }
    }

    /// Returns false when the type is wrong, so nested checks do not pile up on top.
    fn check_type(&self, node: &Node, schema: &Value, path: &str, out: &mut Vec<Problem>) -> bool {
        let Some(types) = schema.get("type") else {
            return true;
        };
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => return true,
        };
        let templated = node.as_str().is_some_and(is_template);
        let fits = types.iter().any(|t| match (*t, &node.value) {
            ("null", NodeValue::Null) => true,
            ("boolean", NodeValue::Bool(_)) => true,
            ("integer", NodeValue::Int(_)) => true,
            ("number", NodeValue::Int(_) | NodeValue::Float(_)) => true,
            ("string", NodeValue::Str(_)) => true,
            ("array", NodeValue::Seq(_)) => true,
            ("object", NodeValue::Map(_)) => true,
            ("boolean" | "integer" | "number", NodeValue::Str(_)) => templated,
            _ => false,
        });
        if !fits {
            let wanted: Vec<&str> = types
                .iter()
                .filter(|t| **t != "null")
                .map(|t| match *t {
                    "object" => "a mapping",
                    "array" => "a list",
                    "string" => "a string",
                    "integer" => "an integer",
                    "number" => "a number",
                    "boolean" => "a boolean",
                    other => other,
                })
                .collect();
            out.push(
                Problem::new(
                    format!(
                        "{} must be {}, found {}",
                        place(path),
                        wanted.join(" or "),
                        describe(node)
                    ),
                    Some(node.span),
                )
                .label(format!("expected {}", wanted.join(" or "))),
            );
        }
        fits
    }

    /// Whether `text` fails `pattern` (an invalid pattern rejects nothing).
    fn pattern_rejects(&self, pattern: &str, text: &str) -> bool {
        let mut patterns = self.patterns.borrow_mut();
        let compiled = patterns
            .entry(pattern.to_string())
            .or_insert_with(|| regex::Regex::new(pattern).ok());
        compiled.as_ref().is_some_and(|re| !re.is_match(text))
    }

    fn check_values(&self, node: &Node, schema: &Value, path: &str, out: &mut Vec<Problem>) {
        let templated = node.as_str().is_some_and(is_template);
        if templated {
            return;
        }
        // Only enum and const compare whole values; most schemas have neither.
        let json = || node.to_json();
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(&json())
        {
            let names: Vec<String> = allowed.iter().map(display_value).collect();
            let mut problem = Problem::new(
                format!(
                    "{} must be one of {}, found {}",
                    place(path),
                    names.join(", "),
                    describe(node)
                ),
                Some(node.span),
            )
            .label("not allowed here");
            if let Some(text) = node.as_str()
                && let Some(close) = did_you_mean(text, allowed.iter().filter_map(Value::as_str))
            {
                problem = problem.help(format!("did you mean `{close}`?"));
            }
            out.push(problem);
        }
        if let Some(constant) = schema.get("const")
            && constant != &json()
        {
            out.push(
                Problem::new(
                    format!(
                        "{} must be {}, found {}",
                        place(path),
                        display_value(constant),
                        describe(node)
                    ),
                    Some(node.span),
                )
                .label("not allowed here"),
            );
        }
        if let Some(text) = node.as_str() {
            let pattern = schema.get("pattern").and_then(Value::as_str);
            // A duration is bounded too, the same everywhere (the pattern alone is not).
            if pattern == Some(crate::duration::PATTERN)
                && let Some(problem) = crate::duration::problem(text)
                && !self.pattern_rejects(crate::duration::PATTERN, text)
            {
                out.push(
                    Problem::new(format!("{} {problem}", place(path)), Some(node.span))
                        .label("invalid value"),
                );
            }
            if let Some(pattern) = pattern
                && self.pattern_rejects(pattern, text)
            {
                out.push(
                    Problem::new(
                        format!("{} {}", place(path), pattern_phrase(pattern, text)),
                        Some(node.span),
                    )
                    .label("invalid value"),
                );
            }
            let chars = text.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && chars > max
            {
                out.push(Problem::new(
                    format!(
                        "{} is {chars} characters long, over the limit of {max}",
                        place(path)
                    ),
                    Some(node.span),
                ));
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && chars < min
            {
                out.push(Problem::new(
                    format!("{} must not be empty", place(path)),
                    Some(node.span),
                ));
            }
        }
        if let NodeValue::Int(n) = node.value {
            if let Some(min) = schema.get("minimum").and_then(Value::as_i64)
                && n < min
            {
                out.push(Problem::new(
                    format!("{} must be at least {min}, found {n}", place(path)),
                    Some(node.span),
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_i64)
                && n > max
            {
                out.push(Problem::new(
                    format!("{} must be at most {max}, found {n}", place(path)),
                    Some(node.span),
                ));
            }
        }
    }

    fn check_map(
        &self,
        node: &Node,
        entries: &[(crate::yaml::node::Key, Node)],
        schema: &'a Value,
        path: &str,
        out: &mut Vec<Problem>,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (key, value) in entries {
            let child = join(path, &key.name);
            match properties.and_then(|p| p.get(&key.name)) {
                Some(sub) => self.check(value, sub, &child, out),
                None => match additional {
                    Some(Value::Bool(false)) => {
                        let known: Vec<&str> = properties
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let help = match did_you_mean(&key.name, known.iter().copied()) {
                            Some(close) => format!("did you mean `{close}`?"),
                            None if known.is_empty() => "no fields are allowed here".to_string(),
                            None => format!("known fields: {}", known.join(", ")),
                        };
                        out.push(
                            Problem::new(
                                format!("unknown field `{}` in {}", key.name, place(path)),
                                Some(key.span),
                            )
                            .label("unknown field")
                            .help(help),
                        );
                    }
                    Some(sub @ Value::Object(_)) => self.check(value, sub, &child, out),
                    _ => {}
                },
            }
        }
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !entries.iter().any(|(k, _)| k.name == name) {
                    out.push(
                        Problem::new(
                            format!("missing field `{name}` in {}", place(path)),
                            Some(node.span),
                        )
                        .label(format!("`{name}` is required here")),
                    );
                }
            }
        }
    }
}

fn pattern_phrase(pattern: &str, text: &str) -> String {
    match pattern {
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" => format!(
            "`{text}` is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
        ),
        r"^([0-9]+(ms|s|m|h))+$" => {
            format!("`{text}` is not a duration (use e.g. 30s, 5m, 1h30m, 250ms)")
        }
        _ => format!("`{text}` does not match the pattern {pattern}"),
    }
}

fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

/// "string `abc`", "integer 3", "a mapping".
fn describe(node: &Node) -> String {
    match &node.value {
        NodeValue::Null => "null".to_string(),
        NodeValue::Bool(b) => format!("boolean {b}"),
        NodeValue::Int(i) => format!("integer {i}"),
        NodeValue::Float(f) => format!("number {f}"),
        NodeValue::Str(s) => {
            let shown: String = s.chars().take(40).collect();
            let more = if s.chars().count() > 40 { "…" } else { "" };
            format!("string `{}{more}`", shown.escape_debug())
        }
        NodeValue::Seq(_) => "a list".to_string(),
        NodeValue::Map(_) => "a mapping".to_string(),
    }
}
