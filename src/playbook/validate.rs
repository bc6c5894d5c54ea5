//! Validation of a playbook: the schema, then the rules a schema cannot say (unique step ids,
//! known actions and kinds, template syntax and references, the evidence-first rule). Every
//! problem is collected with its place; nothing stops at the first.

use std::collections::HashMap;

use serde_json::Value;

use super::refs::{self, Reference};
use super::render;
use super::shape;
use super::types::Playbook;
use crate::action::{self, FanOut, TargetRule};
use crate::cluster::{kinds, object};
use crate::diagnostics::{Problem, did_you_mean};
use crate::duration::parse_duration;
use crate::source::Span;
use crate::yaml::node::{Key, Node, NodeValue};
use crate::yaml::schema_check::{self, is_template, join};

/// The roots a template may read, and what `run` offers.
pub const ROOTS: &[&str] = &["params", "facts", "steps", "run"];
pub const RUN_FIELDS: &[&str] = &["id", "mode", "playbook", "started_at", "cluster"];
/// What `require_plan:` guards read of the finished plan (`plan.<figure>`).
pub const PLAN_FIGURES: &[&str] = &[
    "namespaces",
    "pods_evicted",
    "pods_evicted_outside",
    "nodes_quarantined",
    "schedulable_nodes",
    "irreversible",
    "writes",
];

/// The schema of the playbook format, as `contain schema` prints it: the derived schema plus
/// the action names and each action's `with` fields, for editors.
pub fn playbook_schema() -> Value {
    let mut schema = base_schema();
    let names: Vec<Value> = action::catalogue()
        .iter()
        .map(|a| Value::from(a.info().name))
        .collect();
    let mut definitions = serde_json::Map::new();
    let step = schema
        .pointer_mut("/$defs/Step")
        .expect("Step is in the schema");
    step["properties"]["action"]["enum"] = Value::Array(names);
    let conditions: Vec<Value> = action::catalogue()
        .iter()
        .map(|a| {
            let mut with = a.with_schema();
            allow_templates(&mut with);
            // The action's own definitions move to the root, under the action's name.
            let prefix = format!("{}.", a.info().name);
            rename_refs(&mut with, &prefix);
            if let Some(map) = with.as_object_mut() {
                map.remove("$schema");
                map.remove("title");
                if let Some(Value::Object(defs)) = map.remove("$defs") {
                    for (name, def) in defs {
                        definitions.insert(format!("{prefix}{name}"), def);
                    }
                }
            }
            serde_json::json!({
                "if": {"properties": {"action": {"const": a.info().name}}, "required": ["action"]},
                "then": {"properties": {"with": with}}
            })
        })
        .collect();
    step["allOf"] = Value::Array(conditions);
    if let Some(defs) = schema.get_mut("$defs").and_then(Value::as_object_mut) {
        defs.extend(definitions);
    }
    schema
}

/// A rendered template is a string, so wherever a `with` field wants a number or a boolean,
/// the editor schema also accepts a string holding a template.
fn allow_templates(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            // Numbers, booleans, and strings constrained by a pattern or an enum: a template's
            // value is only known after rendering, where the action checks it.
            let scalar = match map.get("type") {
                Some(Value::String(t)) => matches!(t.as_str(), "integer" | "number" | "boolean"),
                Some(Value::Array(ts)) => ts
                    .iter()
                    .any(|t| matches!(t.as_str(), Some("integer" | "number" | "boolean"))),
                _ => false,
            } || map.contains_key("pattern")
                || map.contains_key("enum");
            for value in map.values_mut() {
                allow_templates(value);
            }
            if scalar {
                let original = Value::Object(std::mem::take(map));
                map.insert(
                    "anyOf".into(),
                    serde_json::json!([original, {"type": "string", "pattern": "\\{\\{|\\{%"}]),
                );
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_templates),
        _ => {}
    }
}

/// Points `#/$defs/X` references at `#/$defs/<prefix>X`.
fn rename_refs(schema: &mut Value, prefix: &str) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(reference) if key == "$ref" => {
                        if let Some(name) = reference.strip_prefix("#/$defs/") {
                            *reference = format!("#/$defs/{prefix}{name}");
                        }
                    }
                    other => rename_refs(other, prefix),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rename_refs(i, prefix)),
        _ => {}
    }
}

/// The schema derived from the types alone, which validation checks against.
pub fn base_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Playbook)).expect("schema serializes")
}

/// Checks a parsed playbook and returns it typed, or every problem found.
pub fn validate(root: &Node) -> Result<Playbook, Vec<Problem>> {
    let schema = base_schema();
    let mut problems = Vec::new();
    schema_check::check(root, &schema, &schema, "", &mut problems);
    Checks::new(root, &mut problems).run();
    if !problems.is_empty() {
        return Err(problems);
    }
    serde_json::from_value(root.to_json()).map_err(|e| {
        vec![Problem::new(
            format!("invalid playbook: {e}"),
            Some(root.span),
        )]
    })
}

struct Checks<'a> {
    root: &'a Node,
    problems: &'a mut Vec<Problem>,
    params: Vec<&'a str>,
    facts: Vec<&'a str>,
    /// Each fact's kind, for checking the fields a template reads from it.
    fact_kinds: HashMap<&'a str, &'a str>,
    /// Each action's `with` schema, generated once however many steps use it.
    with_schemas: HashMap<&'static str, Value>,
}

/// A step as far as the checks need it.
struct StepView<'a> {
    index: usize,
    node: &'a Node,
    id: Option<&'a Node>,
    action: Option<&'static dyn action::Action>,
}

impl<'a> Checks<'a> {
    fn new(root: &'a Node, problems: &'a mut Vec<Problem>) -> Self {
        let keys = |name: &str| -> Vec<&'a str> {
            root.get(name)
                .and_then(Node::as_map)
                .map(|m| {
                    m.iter()
                        .map(|(k, _): &(Key, Node)| k.name.as_str())
                        .collect()
                })
                .unwrap_or_default()
        };
        let fact_kinds = root
            .get("facts")
            .and_then(Node::as_map)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, spec): &(Key, Node)| {
                        Some((k.name.as_str(), spec.get("kind")?.as_str()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Checks {
            params: keys("params"),
            facts: keys("facts"),
            fact_kinds,
            root,
            problems,
            with_schemas: HashMap::new(),
        }
    }

    fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    fn run(&mut self) {
        self.check_params();
        self.check_facts();
        self.check_guards();
        self.check_durations(self.root, "");
        let steps = self.steps();
        self.check_step_ids(&steps);
        // Every step id with its action, in order: a step's scope is the prefix before it (one
        // list for the whole playbook, so validation stays linear in its steps).
        let ids: Vec<StepId<'a>> = steps
            .iter()
            .filter_map(|s| {
                let target = s.node.get("target");
                let wide = target
                    .and_then(|t| t.get("all_namespaces"))
                    .and_then(Node::as_bool)
                    == Some(true)
                    && s.action.is_some_and(|a| a.fan_out() != FanOut::Whole);
                // Nodes (or any cluster-scoped kind) picked by a selector, one part each.
                let by_selector = target.is_some_and(|t| {
                    t.get("selector").is_some()
                        && t.get("kind")
                            .and_then(Node::as_str)
                            .and_then(kinds::lookup)
                            .is_some_and(|k| !k.namespaced)
                }) && s.action.is_some_and(|a| a.fan_out() == FanOut::PerObject);
                let parts = wide || by_selector || s.node.get("for_each").is_some();
                Some((s.id?.as_str()?, s.action, parts))
            })
            .collect();
        let mut before = 0;
        for step in &steps {
            self.check_step(step, &ids[..before]);
            if step.id.and_then(Node::as_str).is_some() {
                before += 1;
            }
        }
        self.check_evidence_first(&steps);
    }

    fn check_params(&mut self) {
        let Some(params) = self.root.get("params").and_then(Node::as_map) else {
            return;
        };
        for (key, spec) in params {
            let path = join("params", &key.name);
            let identifier = key
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !key.name.starts_with(|c: char| c.is_ascii_digit());
            if !identifier {
                self.push(
                    Problem::new(
                        format!("param name `{}` must be letters, digits and '_'", key.name),
                        Some(key.span),
                    )
                    .label("used as `params.<name>` in templates"),
                );
            }
            let ty = spec.get("type").and_then(Node::as_str);
            let required = matches!(
                spec.get("required").map(|n| &n.value),
                Some(NodeValue::Bool(true))
            );
            let pattern = spec.get("pattern").and_then(|p| Some((p, p.as_str()?)));
            let regex = match pattern {
                Some((node, text)) => match regex::Regex::new(&format!("^(?:{text})$")) {
                    Ok(re) => Some(re),
                    Err(e) => {
                        self.push(Problem::new(
                            format!("`{path}.pattern` is not a valid regular expression: {e}"),
                            Some(node.span),
                        ));
                        None
                    }
                },
                None => None,
            };
            if let Some(default) = spec.get("default") {
                if required {
                    self.push(
                        Problem::new(
                            format!("param `{}` is required and has a default", key.name),
                            Some(default.span),
                        )
                        .label("a required param cannot have a default")
                        .help("drop `required: true`, or drop the default"),
                    );
                }
                if let Some(ty) = ty
                    && let Err(message) =
                        check_param_value(ty, default, regex.as_ref(), spec.get("enum"))
                {
                    self.push(Problem::new(
                        format!("default of param `{}` {message}", key.name),
                        Some(default.span),
                    ));
                }
            }
            if let (Some(ty), Some(allowed)) = (ty, spec.get("enum").and_then(Node::as_seq)) {
                for value in allowed {
                    if let Err(message) = check_param_value(ty, value, regex.as_ref(), None) {
                        self.push(Problem::new(
                            format!("enum value of param `{}` {message}", key.name),
                            Some(value.span),
                        ));
                    }
                }
            }
        }
    }

    fn check_facts(&mut self) {
        let Some(facts) = self.root.get("facts").and_then(Node::as_map) else {
            return;
        };
        for (position, (key, spec)) in facts.iter().enumerate() {
            let path = join("facts", &key.name);
            // A PodContext is a Pod with its surroundings: it is addressed like a Pod.
            let is_context = spec.get("kind").and_then(Node::as_str)
                == Some(crate::playbook::types::POD_CONTEXT);
            let is_workload_context = spec.get("kind").and_then(Node::as_str)
                == Some(crate::playbook::types::WORKLOAD_CONTEXT);
            let kind = if is_context {
                kinds::lookup("Pod")
            } else if is_workload_context {
                // A WorkloadContext is addressed like the workload it expands.
                const WORKLOADS: &[&str] = &[
                    "Deployment",
                    "StatefulSet",
                    "DaemonSet",
                    "ReplicaSet",
                    "Job",
                    "CronJob",
                ];
                if spec.get("of").is_none() {
                    self.push(
                        Problem::new(
                            format!(
                                "`{path}`: a WorkloadContext needs `of`, the workload's kind ({})",
                                WORKLOADS.join(", ")
                            ),
                            spec.get("kind").map(|n| n.span),
                        )
                        .label("of what?"),
                    );
                }
                self.check_kind(spec.get("of"), WORKLOADS, &join(&path, "of"))
            } else {
                if let Some(of) = spec.get("of") {
                    self.push(
                        Problem::new(
                            format!("`{path}.of` is for a WorkloadContext only"),
                            Some(of.span),
                        )
                        .label("not used here"),
                    );
                }
                self.check_kind(spec.get("kind"), &[], &path)
            };
            let earlier: Vec<&str> = facts[..position]
                .iter()
                .map(|(k, _)| k.name.as_str())
                .collect();
            for field in ["name", "namespace"] {
                if let Some(node) = spec.get(field) {
                    self.check_template(
                        node,
                        &join(&path, field),
                        Scope::Fact { earlier: &earlier },
                    );
                }
            }
            if let Some(kind) = kind {
                self.check_scope(kind, spec, &path);
            }
        }
    }

    /// `require:` guards read params and facts, never step outputs (they run before any step);
    /// `require_plan:` guards read the finished plan's figures too (`plan.*`).
    fn check_guards(&mut self) {
        for field in ["require", "require_plan"] {
            self.check_guards_of(field);
        }
    }

    fn check_guards_of(&mut self, field: &str) {
        let Some(guards) = self.root.get(field).and_then(Node::as_seq) else {
            return;
        };
        let over_plan = field == "require_plan";
        for (i, guard) in guards.iter().enumerate() {
            let path = format!("{field}[{i}]");
            if let Some(that) = guard.get("that")
                && let Some(text) = that.as_str()
            {
                if let Err(e) = render::check_condition(text) {
                    let span = narrow(that, e.column.map(|c| c.saturating_sub(1)));
                    self.push(
                        Problem::new(
                            format!("`{path}.that` does not compile: {}", e.message),
                            Some(span),
                        )
                        .label("here"),
                    );
                }
                let scope = Scope::Step {
                    earlier: &[],
                    looping: false,
                };
                self.check_guard_references(that, refs::in_expression(text), over_plan, &scope);
            }
            if over_plan
                && let Some(message) = guard.get("message")
                && let Some(text) = message.as_str()
            {
                let scope = Scope::Step {
                    earlier: &[],
                    looping: false,
                };
                self.check_guard_references(message, refs::in_template(text), true, &scope);
            } else if let Some(message) = guard.get("message") {
                self.check_template(
                    message,
                    &join(&path, "message"),
                    Scope::Step {
                        earlier: &[],
                        looping: false,
                    },
                );
            }
        }
    }

    /// A guard's references; over the plan, `plan.<figure>` is one of [`PLAN_FIGURES`].
    fn check_guard_references(
        &mut self,
        node: &Node,
        references: Vec<Reference>,
        over_plan: bool,
        scope: &Scope,
    ) {
        let (figures, others): (Vec<Reference>, Vec<Reference>) = references
            .into_iter()
            .partition(|r| over_plan && r.root == "plan");
        self.check_references(node, &others, scope);
        for figure in figures {
            let name = figure
                .segments
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            if PLAN_FIGURES.contains(&name) {
                continue;
            }
            let mut problem = Problem::new(
                format!("`plan.{name}` is not a figure of the plan"),
                Some(narrow_to(node, figure.offset, figure.len)),
            )
            .label("unknown")
            .help(format!("the plan offers: {}", PLAN_FIGURES.join(", ")));
            if let Some(close) = did_you_mean(name, PLAN_FIGURES.iter().copied()) {
                problem = problem.help(format!("did you mean `{close}`?"));
            }
            self.push(problem);
        }
    }

    fn steps(&self) -> Vec<StepView<'a>> {
        self.root
            .get("steps")
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, node)| StepView {
                index,
                node,
                id: node.get("id").filter(|n| n.as_str().is_some()),
                action: node
                    .get("action")
                    .and_then(Node::as_str)
                    .and_then(action::lookup),
            })
            .collect()
    }

    fn check_step_ids(&mut self, steps: &[StepView<'a>]) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for step in steps {
            let Some(id) = step.id else { continue };
            let name = id.as_str().unwrap_or_default();
            if let Some(first) = seen.get(name) {
                self.push(
                    Problem::new(format!("duplicate step id `{name}`"), Some(id.span))
                        .label("used again here")
                        .help(format!(
                            "step ids must be unique; `{name}` is first used on line {}",
                            first.line
                        )),
                );
            } else {
                seen.insert(name, id.span);
            }
        }
    }

    fn check_step(&mut self, step: &StepView<'a>, earlier: &[StepId<'a>]) {
        let path = format!("steps[{}]", step.index);
        let action_node = step.node.get("action");
        if let Some(node) = action_node
            && let Some(name) = node.as_str()
            && step.action.is_none()
        {
            let names = action::catalogue().iter().map(|a| a.info().name);
            let mut problem = Problem::new(format!("unknown action `{name}`"), Some(node.span))
                .label("not in the catalogue");
            problem = match did_you_mean(name, names) {
                Some(close) => problem.help(format!(
                    "did you mean `{close}`? (`contain actions` lists them all)"
                )),
                None => problem.help("`contain actions` lists the actions"),
            };
            self.push(problem);
        }
        let for_each = step.node.get("for_each");
        let scope = Scope::Step {
            earlier,
            looping: for_each.is_some(),
        };
        if let Some(each) = for_each
            && let Some(text) = each.as_str()
        {
            if let Err(e) = render::check_condition(text) {
                let span = narrow(each, e.column.map(|c| c.saturating_sub(1)));
                self.push(
                    Problem::new(
                        format!("`{path}.for_each` does not compile: {}", e.message),
                        Some(span),
                    )
                    .label("here"),
                );
            }
            let reads: Vec<Reference> = refs::in_expression(text)
                .into_iter()
                .filter(|r| r.root != "item")
                .collect();
            self.check_references(each, &reads, &scope);
        }
        if let Some(action) = step.action {
            self.check_target(step, action, &path, &scope);
            let with = step.node.get("with");
            let with_schema = self
                .with_schemas
                .entry(action.info().name)
                .or_insert_with(|| action.with_schema());
            let empty = Node {
                value: NodeValue::Map(Vec::new()),
                span: step.node.span,
            };
            schema_check::check(
                with.unwrap_or(&empty),
                with_schema,
                with_schema,
                &join(&path, "with"),
                self.problems,
            );
        }
        if let Some(with) = step.node.get("with") {
            self.check_templates_in(with, &join(&path, "with"), &scope);
        }
        if let Some(title) = step.node.get("title") {
            self.check_template(title, &join(&path, "title"), scope.clone());
        }
        if let Some(when) = step.node.get("when")
            && let Some(text) = when.as_str()
        {
            if let Err(e) = render::check_condition(text) {
                let span = narrow(when, e.column.map(|c| c.saturating_sub(1)));
                self.push(
                    Problem::new(
                        format!("`{path}.when` does not compile: {}", e.message),
                        Some(span),
                    )
                    .label("here"),
                );
            }
            self.check_references(when, &refs::in_expression(text), &scope);
        }
        self.check_durations(step.node, &path);
    }

    /// A `timeout` or `review_after` of zero would fall due at once: the schema admits `0s`,
    /// so it is refused here.
    fn check_durations(&mut self, node: &Node, path: &str) {
        for key in ["timeout", "review_after"] {
            let Some((value, text)) = node.get(key).and_then(|t| Some((t, t.as_str()?))) else {
                continue;
            };
            let field = if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            };
            // Past the longest duration, or not one at all, is the schema check's to report.
            let problem = parse_duration(text)
                .is_some_and(|d| d.is_zero())
                .then(|| format!("`{field}` must be longer than zero"));
            if let Some(problem) = problem {
                self.push(Problem::new(problem, Some(value.span)));
            }
        }
    }

    fn check_target(
        &mut self,
        step: &StepView<'a>,
        action: &'static dyn action::Action,
        path: &str,
        scope: &Scope,
    ) {
        let target = step.node.get("target");
        let rule = &action.info().target;
        let name = action.info().name;
        match (rule, target) {
            (TargetRule::Required(_), None) => {
                self.push(
                    Problem::new(
                        format!("`{name}` needs a target"),
                        step.node.get("action").map(|n| n.span),
                    )
                    .label("this action works on objects")
                    .help("add `target: {kind: …, name: …, namespace: …}`"),
                );
                return;
            }
            (TargetRule::None, Some(t)) => {
                self.push(
                    Problem::new(format!("`{name}` takes no target"), Some(t.span))
                        .label("remove this"),
                );
                return;
            }
            (_, None) => {
                self.check_action_rules(step, action, path, None, None);
                return;
            }
            _ => {}
        }
        let target = target.expect("matched Some above");
        let tpath = join(path, "target");
        let kind = self.check_kind(target.get("kind"), rule.kinds(), &tpath);
        let has_name = target.get("name").is_some();
        let has_selector = target.get("selector").is_some();
        if has_name && has_selector {
            self.push(
                Problem::new(
                    format!("`{tpath}` has both `name` and `selector`"),
                    Some(target.span),
                )
                .label("choose one"),
            );
        }
        let all_namespaces = target.get("all_namespaces").and_then(Node::as_bool) == Some(true);
        let image = target.get("image");
        if let Some(kind) = kind {
            self.check_wide_target(kind, target, &tpath);
        }
        if let Some(kind) = kind {
            self.check_scope(kind, target, &tpath);
            if !has_name
                && !has_selector
                && !all_namespaces
                && image.is_none()
                && kind.namespaced
                && target.get("namespace").is_none()
            {
                self.push(
                    Problem::new(format!("`{tpath}` names no object"), Some(target.span))
                        .label("needs `name`, `selector`, or at least `namespace`"),
                );
            }
            if let Some(node) = target.get("name")
                && let Some(text) = node.as_str()
                && !is_template(text)
                && let Err(e) = object::validate_object_name(kind.kind, text)
            {
                self.push(Problem::new(e.to_string(), Some(node.span)).label("invalid name"));
            }
        }
        if let Some(selector) = target.get("selector").and_then(Node::as_map) {
            for (key, value) in selector {
                if let Err(e) = object::validate_label_key(&key.name) {
                    self.push(
                        Problem::new(e.to_string(), Some(key.span)).label("invalid label key"),
                    );
                }
                if let Some(text) = value.as_str().filter(|t| !is_template(t))
                    && let Err(e) = object::validate_label_value(&key.name, text)
                {
                    self.push(
                        Problem::new(e.to_string(), Some(value.span)).label("invalid label value"),
                    );
                }
            }
        }
        self.check_templates_in(target, &tpath, scope);
        let picks = if all_namespaces {
            action::Picks::AllNamespaces
        } else if has_name {
            action::Picks::Named
        } else if has_selector {
            action::Picks::Selector
        } else if image.is_some() {
            action::Picks::Image
        } else {
            action::Picks::Namespace
        };
        self.check_action_rules(step, action, path, kind.map(|k| k.kind), Some(picks));
    }

    /// The action's own static rules (a target that picks several objects for an action that
    /// works on one, a `with` field the target cannot honour), each where it is written: what
    /// `plan` would otherwise refuse only once the cluster is read.
    fn check_action_rules(
        &mut self,
        step: &StepView<'a>,
        action: &'static dyn action::Action,
        path: &str,
        kind: Option<&'static str>,
        picks: Option<action::Picks>,
    ) {
        let with = step.node.get("with");
        let with_json = with.map(Node::to_json).unwrap_or(Value::Null);
        let view = action::StaticStep {
            kind,
            picks,
            with: &with_json,
        };
        for problem in action::static_problems(action, &view) {
            let (node, label) = match problem.at {
                action::StaticPlace::Step => (step.node.get("action"), "this step".to_string()),
                action::StaticPlace::Target => (step.node.get("target"), "this target".to_string()),
                action::StaticPlace::With(field) => (
                    with.and_then(|w| w.get(field)),
                    format!("`{}`", join(&join(path, "with"), field)),
                ),
            };
            self.push(Problem::new(problem.message, node.map(|n| n.span)).label(label));
        }
    }

    /// `all_namespaces` and `image`: a cluster-wide selection must still be a selection, and an
    /// image names pods.
    fn check_wide_target(&mut self, kind: &'static kinds::Kind, target: &Node, tpath: &str) {
        let flag = target.get("all_namespaces");
        let all_namespaces = flag.and_then(Node::as_bool) == Some(true);
        let image = target.get("image");
        if all_namespaces {
            let span = flag.map(|n| n.span);
            for (field, why) in [
                ("namespace", "`all_namespaces` selects in every namespace"),
                (
                    "name",
                    "a name picks one object; `all_namespaces` selects many",
                ),
            ] {
                if target.get(field).is_some() {
                    self.push(
                        Problem::new(
                            format!("`{tpath}` has both `all_namespaces` and `{field}`"),
                            span,
                        )
                        .label("choose one")
                        .help(why),
                    );
                }
            }
            if !kind.namespaced {
                self.push(
                    Problem::new(format!("`{tpath}`: {} is not namespaced", kind.kind), span)
                        .label("remove `all_namespaces`"),
                );
            }
            if target.get("selector").is_none() && image.is_none() {
                self.push(
                    Problem::new(format!("`{tpath}` selects every {} in the cluster", kind.kind), span)
                        .label("needs `selector` or `image`")
                        .help("a cluster-wide step names what it is after: a label selector or an image digest"),
                );
            }
        }
        if let Some(node) = image {
            if kind.kind != "Pod" {
                self.push(
                    Problem::new(
                        format!("`{tpath}.image` selects pods, not {}", kind.kind),
                        Some(node.span),
                    )
                    .label("only with `kind: Pod`"),
                );
            }
            if let Some(text) = node.as_str().filter(|t| !is_template(t))
                && crate::plan::target::parse_digest(text).is_none()
            {
                self.push(
                    Problem::new(format!("`{text}` is not an image digest"), Some(node.span))
                        .label("not a digest")
                        .help("`sha256:<64 hex>`, alone or after `@` in a reference: a tag can be moved, a digest cannot"),
                );
            }
        }
    }

    /// A known kind, and one the action accepts.
    fn check_kind(
        &mut self,
        node: Option<&Node>,
        allowed: &[&str],
        path: &str,
    ) -> Option<&'static kinds::Kind> {
        let node = node?;
        let name = node.as_str()?;
        // A kind from a param (`kind: "{{ params.kind }}"`) is known once rendered, and
        // checked then against the same rules.
        if is_template(name) {
            return None;
        }
        let Some(kind) = kinds::lookup(name) else {
            let mut problem = Problem::new(
                format!("unknown kind `{name}` in `{path}`"),
                Some(node.span),
            )
            .label("unknown kind");
            if let Some(close) = did_you_mean(name, kinds::names()) {
                problem = problem.help(format!("did you mean `{close}`?"));
            }
            self.push(problem);
            return None;
        };
        if !allowed.is_empty() && !allowed.contains(&name) {
            self.push(
                Problem::new(
                    format!(
                        "`{path}` must be one of {}, found `{name}`",
                        allowed.join(", ")
                    ),
                    Some(node.span),
                )
                .label("not accepted by this action"),
            );
            return None;
        }
        Some(kind)
    }

    /// Namespaced kinds need a namespace; cluster-scoped kinds must not have one.
    fn check_scope(&mut self, kind: &kinds::Kind, node: &Node, path: &str) {
        match (kind.namespaced, node.get("namespace")) {
            (true, None) if node.get("name").is_some() => self.push(
                Problem::new(
                    format!("`{path}` needs a namespace: {} is namespaced", kind.kind),
                    Some(node.span),
                )
                .label("add `namespace: …`"),
            ),
            (false, Some(ns)) => self.push(
                Problem::new(
                    format!(
                        "{} is cluster-scoped: `{path}.namespace` must be removed",
                        kind.kind
                    ),
                    Some(ns.span),
                )
                .label("not namespaced"),
            ),
            _ => {}
        }
    }

    fn check_templates_in(&mut self, node: &Node, path: &str, scope: &Scope) {
        match &node.value {
            NodeValue::Str(_) => self.check_template(node, path, scope.clone()),
            NodeValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_templates_in(item, &format!("{path}[{i}]"), scope);
                }
            }
            NodeValue::Map(entries) => {
                for (key, value) in entries {
                    if is_template(&key.name) {
                        self.push(
                            Problem::new(
                                format!("keys are not templated: `{}`", key.name),
                                Some(key.span),
                            )
                            .label("only values are rendered"),
                        );
                    }
                    self.check_templates_in(value, &join(path, &key.name), scope);
                }
            }
            _ => {}
        }
    }

    fn check_template(&mut self, node: &Node, path: &str, scope: Scope) {
        let Some(text) = node.as_str() else { return };
        if !is_template(text) {
            return;
        }
        if let Err(e) = render::check_syntax(text) {
            let span = narrow(node, e.column.map(|c| c.saturating_sub(1)));
            self.push(
                Problem::new(
                    format!("`{path}` is not a valid template: {}", e.message),
                    Some(span),
                )
                .label("here"),
            );
            return;
        }
        self.check_references(node, &refs::in_template(text), &scope);
    }

    fn check_references(&mut self, node: &Node, references: &[Reference], scope: &Scope) {
        for reference in references {
            if let Some(problem) = self.check_reference(reference, scope) {
                let span = narrow_to(node, reference.offset, reference.len);
                self.push(problem.with_span(span));
            }
        }
    }

    /// The fields a reference reads from a fact, against the fact kind's shape.
    fn check_fact_shape(&self, fact: &str, r: &Reference, shown: &str) -> Option<Problem> {
        let kind = self.fact_kinds.get(fact)?;
        let path = &r.segments[1..];
        let err = shape::check(kind, path).err()?;
        let field = &path[err.at];
        let at = std::iter::once(fact)
            .chain(path[..err.at].iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(".");
        let mut problem = match err.scalar {
            Some(what) => Problem::new(
                format!("`{shown}`: `facts.{at}` is {what}, it has no field `{field}`"),
                None,
            )
            .label("not a field"),
            None => Problem::new(
                format!("`{shown}`: `facts.{at}` of a {kind} has no field `{field}`"),
                None,
            )
            .label("unknown field"),
        };
        if let Some(close) = did_you_mean(field, err.known.iter().map(String::as_str)) {
            problem = problem.help(format!("did you mean `{close}`?"));
        } else if !err.known.is_empty() && err.known.len() <= 12 {
            problem = problem.help(format!("fields there: {}", err.known.join(", ")));
        }
        Some(problem)
    }

    fn check_reference(&self, r: &Reference, scope: &Scope) -> Option<Problem> {
        let first = r.segments.first().map(String::as_str);
        let shown = std::iter::once(r.root.as_str())
            .chain(r.segments.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(".");
        match (r.root.as_str(), first) {
            ("params", Some(name)) if !self.params.contains(&name) => {
                Some(undefined(&shown, "param", name, &self.params))
            }
            ("facts", Some(name)) => match scope {
                Scope::Fact { earlier } if !earlier.contains(&name) => Some(
                    Problem::new(
                        format!("`{shown}` is not a fact declared above this one"),
                        None,
                    )
                    .label("undefined here")
                    .help("facts are resolved in order; a fact can only read the facts above it"),
                ),
                _ if !self.facts.contains(&name) => {
                    Some(undefined(&shown, "fact", name, &self.facts))
                }
                _ => self.check_fact_shape(name, r, &shown),
            },
            ("steps", Some(id)) => {
                let Scope::Step { earlier, .. } = scope else {
                    return Some(
                        Problem::new(
                            format!("`{shown}`: facts are resolved before any step runs"),
                            None,
                        )
                        .label("not available here"),
                    );
                };
                let Some((_, action, wide)) = earlier.iter().find(|(name, _, _)| *name == id)
                else {
                    let ids: Vec<&str> = earlier.iter().map(|(n, _, _)| *n).collect();
                    let mut p = Problem::new(
                        format!("`{shown}` reads step `{id}`, which does not run before this one"),
                        None,
                    )
                    .label("unknown or later step");
                    if let Some(close) = did_you_mean(id, ids.iter().copied()) {
                        p = p.help(format!("did you mean `{close}`?"));
                    }
                    return Some(p);
                };
                match (
                    r.segments.get(1).map(String::as_str),
                    r.segments.get(2),
                    action,
                ) {
                    (Some("outputs"), Some(output), Some(action)) => {
                        let outputs: Vec<&str> = if *wide {
                            vec!["parts", "count"]
                        } else {
                            action.info().outputs.iter().map(|(n, _)| *n).collect()
                        };
                        (!outputs.contains(&output.as_str())).then(|| {
                            let help = if outputs.is_empty() {
                                format!("`{}` has no outputs", action.info().name)
                            } else {
                                format!("`{}` outputs: {}", action.info().name, outputs.join(", "))
                            };
                            Problem::new(
                                format!("`{shown}`: step `{id}` has no output `{output}`"),
                                None,
                            )
                            .label("unknown output")
                            .help(help)
                        })
                    }
                    (Some("outputs" | "status"), _, _) | (None, _, _) => None,
                    (Some(other), _, _) => Some(
                        Problem::new(
                            format!(
                                "`{shown}`: a step offers `outputs` and `status`, not `{other}`"
                            ),
                            None,
                        )
                        .label("unknown field"),
                    ),
                }
            }
            ("item", _) => match scope {
                Scope::Step { looping: true, .. } => None,
                _ => Some(
                    Problem::new(
                        format!("`{shown}`: `item` is only defined in a step with `for_each`"),
                        None,
                    )
                    .label("not defined here"),
                ),
            },
            ("run", Some(field)) if !RUN_FIELDS.contains(&field) => {
                Some(undefined(&shown, "run field", field, RUN_FIELDS))
            }
            (root, _) if !ROOTS.contains(&root) => {
                let mut p = Problem::new(format!("unknown variable `{root}`"), None)
                    .label("undefined")
                    .help("templates read `params`, `facts`, `steps` and `run`");
                if let Some(close) = did_you_mean(root, ROOTS.iter().copied()) {
                    p = p.help(format!("did you mean `{close}`? templates read `params`, `facts`, `steps` and `run`"));
                }
                Some(p)
            }
            _ => None,
        }
    }

    /// Safety rule 1: a step that can destroy evidence about a pod needs a `forensics.capture`
    /// of the same target earlier in the run, or an explicit waiver with a reason.
    fn check_evidence_first(&mut self, steps: &[StepView<'a>]) {
        for (position, step) in steps.iter().enumerate() {
            let Some(action) = step.action else { continue };
            let with = step.node.get("with").map_or(Value::Null, Node::to_json);
            if !action.destroys_evidence(&with) || step.node.get("evidence").is_some() {
                continue;
            }
            let target = step.node.get("target");
            let captured = steps[..position].iter().any(|earlier| {
                earlier.node.get("action").and_then(Node::as_str) == Some("forensics.capture")
                    && covers(earlier.node.get("target"), target)
            });
            if !captured {
                let id = step.id.and_then(Node::as_str).unwrap_or("?");
                self.push(
                    Problem::new(
                        format!(
                            "step `{id}` ({}) can destroy evidence, but no `forensics.capture` of its target runs before it",
                            action.info().name
                        ),
                        step.node.get("action").map(|n| n.span),
                    )
                    .label("destroys evidence")
                    .help("capture the target in an earlier step, or waive with `evidence: {waived: \"<reason>\"}`"),
                );
            }
        }
    }
}

/// Whether a capture's target covers a destructive step's target: the same object expression,
/// or any capture when the destructive step targets a node or a workload (whose pods the
/// capture then names).
fn covers(capture: Option<&Node>, target: Option<&Node>) -> bool {
    let (Some(capture), Some(target)) = (capture, target) else {
        return capture.is_some();
    };
    let field = |n: &Node, f: &str| n.get(f).map(|v| compact(&v.to_json()));
    let kind = target
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or_default();
    if kind != "Pod" {
        return true;
    }
    ["name", "namespace", "selector"]
        .iter()
        .all(|f| field(capture, f) == field(target, f))
}

fn compact(value: &Value) -> String {
    value.to_string().split_whitespace().collect()
}

#[derive(Clone)]
enum Scope<'s> {
    Fact {
        earlier: &'s [&'s str],
    },
    /// `looping`: the step has `for_each`, so its templates may read `item`.
    Step {
        earlier: &'s [StepId<'s>],
        looping: bool,
    },
}

/// A step's id, (when known) its action, and whether it is planned in parts (a target spanning
/// namespaces, nodes by selector, `for_each`): its outputs are then `parts` and `count`.
type StepId<'s> = (&'s str, Option<&'static dyn action::Action>, bool);

fn undefined(shown: &str, what: &str, name: &str, known: &[&str]) -> Problem {
    let mut p =
        Problem::new(format!("`{shown}`: no {what} named `{name}`"), None).label("undefined");
    p = match did_you_mean(name, known.iter().copied()) {
        Some(close) => p.help(format!("did you mean `{close}`?")),
        None if known.is_empty() => p.help(format!("the playbook declares no {what}s")),
        None => p.help(format!("declared: {}", known.join(", "))),
    };
    p
}

trait WithSpan {
    fn with_span(self, span: Span) -> Self;
}

impl WithSpan for Problem {
    fn with_span(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }
}

/// The span of a part of a plain scalar; the whole scalar when quoting makes offsets unsure.
fn narrow_to(node: &Node, offset: usize, len: usize) -> Span {
    match node.as_str() {
        Some(text) if node.span.len == text.len() => node.span.narrow(offset, len),
        _ => node.span,
    }
}

fn narrow(node: &Node, column: Option<usize>) -> Span {
    match column {
        Some(c) => narrow_to(node, c, 1),
        None => node.span,
    }
}

/// Checks a param value (a default, an enum entry, or a `--set` value) against its type.
pub fn check_param_value(
    ty: &str,
    value: &Node,
    pattern: Option<&regex::Regex>,
    allowed: Option<&Node>,
) -> Result<(), String> {
    let fits = match (ty, &value.value) {
        ("string", NodeValue::Str(_))
        | ("int", NodeValue::Int(_))
        | ("bool", NodeValue::Bool(_)) => true,
        ("list", NodeValue::Seq(items)) => items.iter().all(|i| i.as_str().is_some()),
        _ => false,
    };
    if !fits {
        return Err(format!("must be of type {ty}, found {}", value.type_name()));
    }
    if let Some(re) = pattern {
        let texts: Vec<&str> = match &value.value {
            NodeValue::Str(s) => vec![s],
            NodeValue::Seq(items) => items.iter().filter_map(Node::as_str).collect(),
            _ => Vec::new(),
        };
        if let Some(bad) = texts.iter().find(|t| !re.is_match(t)) {
            return Err(format!(
                "`{bad}` does not match the pattern {}",
                re.as_str()
            ));
        }
    }
    if let Some(allowed) = allowed.and_then(Node::as_seq) {
        let json = value.to_json();
        if !allowed.iter().any(|a| a.to_json() == json) {
            let names: Vec<String> = allowed.iter().map(|a| a.to_json().to_string()).collect();
            return Err(format!("must be one of {}, found {json}", names.join(", ")));
        }
    }
    Ok(())
}
