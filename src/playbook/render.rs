//! Rendering with tera 2, on the string fields of the parsed playbook only.
//!
//! The rules that keep rendering safe: templates come from the reviewed playbook, never from
//! cluster data; a string without `{{`/`{%` is returned as is; output is never rendered again;
//! autoescape is off (we produce names, not HTML); undefined variables are errors; rendered
//! names are validated before they reach a selector or an API path.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::action::ResolvedTarget;
use crate::cluster::object;
use crate::cluster::{Selector, kinds};
use crate::playbook::types::Target;
use crate::yaml::schema_check::is_template;

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RenderError {
    /// Where the template is, e.g. `steps[2].target.name`.
    pub field: String,
    pub message: String,
    /// Column within the template string where tera located the problem, if it did.
    pub column: Option<usize>,
}

impl RenderError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        RenderError {
            field: field.to_string(),
            message: message.into(),
            column: None,
        }
    }
}

/// The values templates can read: `params`, `facts`, `steps.<id>.outputs`, `run`.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub params: Map<String, Value>,
    pub facts: Map<String, Value>,
    pub steps: Map<String, Value>,
    pub run: Map<String, Value>,
}

/// The template engine: built once (it registers every built-in filter and function), shared
/// by every renderer.
static ENGINE: std::sync::LazyLock<tera::Tera> = std::sync::LazyLock::new(tera::Tera::default);

/// Renders strings against a scope.
///
/// A run keeps one renderer and records each step's status into it as planning goes
/// ([`Renderer::set_step`]): params and facts are converted for the engine once per run, and a
/// step adds only its own entry, so planning stays linear in the number of steps.
pub struct Renderer {
    context: std::cell::RefCell<tera::Context>,
    /// The same values as JSON, for the paths a `for_each:` names (a list keeps its items'
    /// types).
    values: Map<String, Value>,
    steps: HashMap<String, tera::Value>,
    /// Whether `steps` changed since it was last put into the context.
    steps_changed: std::cell::Cell<bool>,
}

impl Renderer {
    pub fn new(scope: &Scope) -> Self {
        let mut context = tera::Context::new();
        context.insert("params", &scope.params);
        context.insert("facts", &scope.facts);
        context.insert("run", &scope.run);
        let steps = scope
            .steps
            .iter()
            .map(|(id, status)| (id.clone(), tera::Value::from_serializable(status)))
            .collect();
        let mut values = Map::new();
        values.insert("params".into(), Value::Object(scope.params.clone()));
        values.insert("facts".into(), Value::Object(scope.facts.clone()));
        values.insert("run".into(), Value::Object(scope.run.clone()));
        values.insert("steps".into(), Value::Object(scope.steps.clone()));
        Renderer {
            context: std::cell::RefCell::new(context),
            values,
            steps,
            steps_changed: std::cell::Cell::new(true),
        }
    }

    /// Records how a step ended (`{"status": …, "outputs": …}`), for the templates after it.
    pub fn set_step(&mut self, id: &str, status: &Value) {
        if let Some(Value::Object(steps)) = self.values.get_mut("steps") {
            steps.insert(id.to_string(), status.clone());
        }
        self.steps
            .insert(id.to_string(), tera::Value::from_serializable(status));
        self.steps_changed.set(true);
    }

    /// Renders one string. A string with no template markers is returned untouched.
    pub fn render_str(&self, field: &str, text: &str) -> Result<String, RenderError> {
        if !is_template(text) {
            return Ok(text.to_string());
        }
        self.render(field, text)
    }

    fn render(&self, field: &str, template: &str) -> Result<String, RenderError> {
        if self.steps_changed.replace(false) {
            // Values are reference-counted inside the engine: this copies handles, not outputs.
            self.context
                .borrow_mut()
                .insert_value("steps", tera::Value::from(self.steps.clone()));
        }
        ENGINE
            .render_str(template, &self.context.borrow(), false)
            .map_err(|e| tera_error(field, &e))
    }

    /// Renders every string inside a value (mapping keys stay literal).
    pub fn render_value(&self, field: &str, value: &Value) -> Result<Value, RenderError> {
        Ok(match value {
            Value::String(s) => Value::String(self.render_str(field, s)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.render_value(&format!("{field}[{i}]"), v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_value(&format!("{field}.{k}"), v)?)))
                    .collect::<Result<_, RenderError>>()?,
            ),
            other => other.clone(),
        })
    }

    /// The list a `for_each:` names: a path such as `facts.workload.nodes` (dots, `["key"]`,
    /// `[0]`), read as JSON so its items keep their types. Null (an optional fact not found)
    /// is an empty list.
    pub fn list(&self, field: &str, path: &str) -> Result<Vec<Value>, RenderError> {
        let refs = crate::playbook::refs::in_expression(path);
        let whole = match refs.as_slice() {
            [r] if r.offset == path.len() - path.trim_start().len()
                && r.len == path.trim().len() =>
            {
                r
            }
            _ => {
                return Err(RenderError::new(
                    field,
                    format!("`{path}` is not a path to a list (e.g. facts.workload.nodes)"),
                ));
            }
        };
        let mut here = self.values.get(&whole.root);
        for segment in &whole.segments {
            here = match here {
                Some(Value::Object(map)) => map.get(segment),
                Some(Value::Array(items)) => {
                    segment.parse::<usize>().ok().and_then(|i| items.get(i))
                }
                _ => None,
            };
        }
        match here {
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(other) => Err(RenderError::new(
                field,
                format!("`{path}` is not a list: it is {other}"),
            )),
        }
    }

    /// Binds `item` (a `for_each:` step's current item) for the renders that follow, or
    /// unbinds it.
    pub fn set_item(&self, item: Option<&Value>) {
        self.set("item", item);
    }

    /// Binds a top-level variable (`item`, `plan`) for the renders that follow, or unbinds it.
    pub fn set(&self, name: &'static str, value: Option<&Value>) {
        let mut context = self.context.borrow_mut();
        match value {
            Some(value) => context.insert(name, value),
            None => {
                context.remove(name);
            }
        }
    }

    /// Evaluates a `when:` expression.
    pub fn condition(&self, field: &str, expression: &str) -> Result<bool, RenderError> {
        let template = format!("{{% if {expression} %}}true{{% else %}}false{{% endif %}}");
        Ok(self.render(field, &template)? == "true")
    }

    /// Renders a target and validates the names it produced.
    pub fn target(&self, field: &str, target: &Target) -> Result<ResolvedTarget, RenderError> {
        let kind_name = self.render_str(&format!("{field}.kind"), &target.kind)?;
        let kind = kinds::lookup(&kind_name).ok_or_else(|| {
            RenderError::new(
                &format!("{field}.kind"),
                format!("unknown kind `{kind_name}`"),
            )
        })?;
        let namespace = match &target.namespace {
            Some(ns) if kind.namespaced => {
                let ns = self.render_str(&format!("{field}.namespace"), ns)?;
                object::validate_namespace(&ns)
                    .map_err(|e| RenderError::new(&format!("{field}.namespace"), e.to_string()))?;
                Some(ns)
            }
            _ => None,
        };
        let name = match &target.name {
            Some(name) => {
                let name = self.render_str(&format!("{field}.name"), name)?;
                object::validate_object_name(kind.kind, &name)
                    .map_err(|e| RenderError::new(&format!("{field}.name"), e.to_string()))?;
                Some(name)
            }
            None => None,
        };
        let selector = match &target.selector {
            Some(labels) => {
                let mut rendered = BTreeMap::new();
                for (key, value) in labels {
                    let path = format!("{field}.selector.{key}");
                    let value = self.render_str(&path, value)?;
                    object::validate_label_key(key)
                        .map_err(|e| RenderError::new(&path, e.to_string()))?;
                    object::validate_label_value(key, &value)
                        .map_err(|e| RenderError::new(&path, e.to_string()))?;
                    rendered.insert(key.clone(), value);
                }
                Some(Selector::labels(rendered))
            }
            None => None,
        };
        let image = match &target.image {
            Some(image) => {
                let path = format!("{field}.image");
                let image = self.render_str(&path, image)?;
                let digest = crate::plan::target::parse_digest(&image).ok_or_else(|| {
                    RenderError::new(
                        &path,
                        format!(
                            "`{image}` is not an image digest (sha256:<64 hex>, alone or after `@`)"
                        ),
                    )
                })?;
                Some(digest)
            }
            None => None,
        };
        Ok(ResolvedTarget {
            kind,
            namespace: namespace.filter(|_| !target.all_namespaces),
            name,
            selector,
            all_namespaces: target.all_namespaces && kind.namespaced,
            image,
        })
    }
}

/// The first line of tera's message and the column it points at.
fn tera_error(field: &str, error: &tera::Error) -> RenderError {
    let text = error.to_string();
    let message = text
        .lines()
        .next()
        .unwrap_or("template error")
        .trim_start_matches("error: ")
        .to_string();
    let column = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|loc| loc.rsplit(':').next())
        .and_then(|c| c.parse().ok());
    RenderError {
        field: field.to_string(),
        message,
        column,
    }
}

/// Checks that a string compiles as a template, without rendering it.
pub fn check_syntax(text: &str) -> Result<(), RenderError> {
    // One engine per thread, its one template replaced each time: a fresh engine registers every
    // built-in filter and function, which costs more than compiling a short template.
    thread_local! {
        static CHECKER: std::cell::RefCell<tera::Tera> = std::cell::RefCell::new(tera::Tera::default());
    }
    CHECKER
        .with_borrow_mut(|tera| tera.add_raw_template("t", text))
        .map_err(|e| tera_error("", &e))
}

/// Checks that a `when:` expression compiles.
pub fn check_condition(expression: &str) -> Result<(), RenderError> {
    let prefix = "{% if ";
    check_syntax(&format!("{prefix}{expression} %}}true{{% endif %}}")).map_err(|mut e| {
        e.column = e.column.map(|c| c.saturating_sub(prefix.len()));
        e
    })
}

/// Turns rendered strings into the numbers and booleans a schema asks for: a template always
/// renders to a string, but `replicas: "{{ params.n }}"` means a number.
pub fn coerce(value: Value, schema: &Value, root: &Value) -> Value {
    let schema = resolve(schema, root);
    match value {
        Value::String(s) => {
            let wants = |t: &str| schema_types(schema).contains(&t);
            if wants("integer")
                && let Ok(n) = s.trim().parse::<i64>()
            {
                return Value::from(n);
            }
            if wants("number")
                && let Ok(n) = s.trim().parse::<f64>()
            {
                return serde_json::Number::from_f64(n).map_or(Value::String(s), Value::Number);
            }
            if wants("boolean") && matches!(s.trim(), "true" | "false") {
                return Value::Bool(s.trim() == "true");
            }
            if wants("null") && !wants("string") && s.trim().is_empty() {
                return Value::Null;
            }
            Value::String(s)
        }
        Value::Object(map) => {
            let properties = schema.get("properties");
            let additional = schema.get("additionalProperties");
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let sub = properties.and_then(|p| p.get(&k)).or(additional);
                        let v = match sub {
                            Some(sub) => coerce(v, sub, root),
                            None => v,
                        };
                        (k, v)
                    })
                    .collect(),
            )
        }
        Value::Array(items) => match schema.get("items") {
            Some(sub) => Value::Array(items.into_iter().map(|v| coerce(v, sub, root)).collect()),
            None => Value::Array(items),
        },
        other => other,
    }
}

fn resolve<'a>(schema: &'a Value, root: &'a Value) -> &'a Value {
    let mut schema = schema;
    for _ in 0..16 {
        match schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| root.pointer(p))
        {
            Some(target) => schema = target,
            None => break,
        }
    }
    // `Option<T>` comes out as anyOf [T, null]: look through it.
    if let Some(first) = schema
        .get("anyOf")
        .and_then(Value::as_array)
        .and_then(|branches| {
            branches
                .iter()
                .find(|b| b.get("type") != Some(&Value::from("null")))
        })
    {
        return resolve(first, root);
    }
    schema
}

fn schema_types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn renderer() -> Renderer {
        let mut scope = Scope::default();
        scope.params.insert("pod".into(), json!("web-1"));
        scope
            .params
            .insert("evil".into(), json!("{{ params.pod }}"));
        Renderer::new(&scope)
    }

    #[test]
    fn undefined_values_are_errors() {
        let err = renderer()
            .render_str("steps[0].target.name", "{{ params.nope }}")
            .unwrap_err();
        assert!(err.message.contains("`nope` is not defined"), "{err}");
        assert_eq!(err.column, Some(11));
    }

    #[test]
    fn output_is_not_rendered_twice() {
        assert_eq!(
            renderer().render_str("f", "{{ params.evil }}").unwrap(),
            "{{ params.pod }}"
        );
    }

    #[test]
    fn rendered_names_are_validated() {
        let target = Target {
            kind: "Pod".into(),
            name: Some("{{ params.evil }}".into()),
            namespace: Some("shop".into()),
            selector: None,
            all_namespaces: false,
            image: None,
        };
        let err = renderer().target("steps[0].target", &target).unwrap_err();
        assert_eq!(err.field, "steps[0].target.name");
    }

    #[test]
    fn an_image_target_renders_to_its_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let mut target = Target {
            kind: "Pod".into(),
            name: None,
            namespace: Some("shop".into()),
            selector: None,
            all_namespaces: true,
            image: Some(format!("registry.example/app@{digest}")),
        };
        let resolved = renderer().target("steps[0].target", &target).unwrap();
        assert_eq!(resolved.image.as_deref(), Some(digest.as_str()));
        assert!(resolved.all_namespaces && resolved.namespace.is_none());
        target.image = Some("registry.example/app:1.2".into());
        let err = renderer().target("steps[0].target", &target).unwrap_err();
        assert_eq!(err.field, "steps[0].target.image");
    }

    #[test]
    fn conditions_evaluate() {
        let r = renderer();
        assert!(r.condition("when", "params.pod == 'web-1'").unwrap());
        assert!(!r.condition("when", "params.pod != 'web-1'").unwrap());
        assert!(check_condition("params.pod ==").is_err());
    }

    #[test]
    fn coercion_follows_the_schema() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}});
        let out = coerce(json!({"n": "3", "s": "3"}), &schema, &schema);
        assert_eq!(out, json!({"n": 3, "s": "3"}));
    }
}
