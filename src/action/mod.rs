//! The action catalogue. Each action observes the objects it touches and turns them into a
//! plan (operations, inverse operations, reversibility), then verifies its post-condition.
//! Actions never write: the executor applies their plans.

pub mod approve;
pub mod capture;
pub mod common;
pub mod detach;
#[cfg(test)]
pub mod fixture;
pub mod isolate;
pub mod label;
pub mod node;
pub mod owned;
pub mod pod_delete;
pub mod policies;
pub mod reach;
pub mod redeploy;
pub mod revoke;
pub mod rollout;
pub mod scale;
pub mod suspend;
pub mod wait;

use serde::Serialize;
use serde_json::Value;

use crate::cluster::{Access, ClusterError};
use crate::plan::{Op, StepPlan};

/// What the catalogue says about an action (`contain actions`).
#[derive(Debug, Serialize)]
pub struct ActionInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// What it changes in the cluster.
    pub changes: &'static str,
    /// How a rollback undoes it, or why it cannot.
    pub undo: &'static str,
    pub reversible: bool,
    /// Whether it can destroy evidence about a pod (the evidence-first rule applies).
    pub destroys_evidence: bool,
    pub target: TargetRule,
    /// Outputs later steps read as `steps.<id>.outputs.<name>`.
    pub outputs: &'static [(&'static str, &'static str)],
}

/// Which targets an action accepts.
#[derive(Debug, Serialize)]
#[serde(tag = "target", content = "kinds", rename_all = "snake_case")]
pub enum TargetRule {
    None,
    Optional(&'static [&'static str]),
    Required(&'static [&'static str]),
}

impl TargetRule {
    /// The kinds allowed; empty means any known kind.
    pub fn kinds(&self) -> &'static [&'static str] {
        match self {
            TargetRule::None => &[],
            TargetRule::Optional(k) | TargetRule::Required(k) => k,
        }
    }
}

pub use crate::plan::ResolvedTarget;

/// Everything an action needs to plan one step.
#[derive(Clone, Debug)]
pub struct StepInput {
    pub step_id: String,
    pub run_id: String,
    pub target: Option<ResolvedTarget>,
    /// The step's `with`, rendered and checked against the action's schema.
    pub with: Value,
    /// Tokens minted by the step's `MintCanary` operations, for verification. Never stored.
    pub canaries: Vec<crate::outcome::Canary>,
}

impl StepInput {
    /// The step's target; validation guarantees one for the actions that require it.
    pub fn required_target(&self) -> Result<&ResolvedTarget, ActionError> {
        self.target
            .as_ref()
            .ok_or_else(|| ActionError::InvalidParams("a target is required".into()))
    }
}

pub use crate::cluster::observe::{Answer, Missing, Observed, Read};
pub use crate::outcome::{Check, CheckStatus, Verification};

/// Why an action could not plan or verify.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0} not found")]
    TargetNotFound(String),
    #[error("no {0} matches the target")]
    NoMatch(String),
    #[error("invalid `with`: {0}")]
    InvalidParams(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The decision needs these reads first; it is asked again once they are made. Never
    /// shown: the executor makes the reads.
    #[error("the plan needs {} more read(s)", .0.len())]
    Needs(Vec<Read>),
}

impl From<Missing> for ActionError {
    fn from(missing: Missing) -> Self {
        ActionError::Needs(missing.0)
    }
}

impl crate::cluster::observe::Needing for ActionError {
    fn needed(&self) -> Option<&[Read]> {
        match self {
            ActionError::Needs(reads) => Some(reads),
            _ => None,
        }
    }

    fn asks_again(reads: Vec<Read>) -> Self {
        ActionError::Refused(format!(
            "internal error: the plan asked again for reads it was given ({reads:?})"
        ))
    }
}

/// How a step whose target spans namespaces becomes parts of the plan, each planned, journaled,
/// applied, verified and rolled back on its own (a resumed run picks up at the first unfinished
/// part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanOut {
    /// One plan for every match (the action handles objects in many namespaces itself).
    Whole,
    /// One part per namespace with matches.
    PerNamespace,
    /// One part per matching object.
    PerObject,
}

/// How a step's target picks its objects, as the playbook writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Picks {
    /// One object, by `name`.
    Named,
    /// The objects a `selector` matches (in one namespace).
    Selector,
    /// Every object of the kind in a namespace.
    Namespace,
    /// A `selector` or `image` in every namespace (`all_namespaces`).
    AllNamespaces,
    /// The pods running an `image`.
    Image,
}

/// A step as `validate` sees it, before anything is rendered or read: what its static rules
/// are checked against.
#[derive(Clone, Copy, Debug)]
pub struct StaticStep<'a> {
    /// The target's kind, when it has a target and the kind is written literally.
    pub kind: Option<&'a str>,
    /// How the target picks objects, when the step has a target.
    pub picks: Option<Picks>,
    /// The step's `with` as written (a templated value is a string here).
    pub with: &'a Value,
}

/// Where a static refusal points: the step (its action), its target, or one of its `with`
/// fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticPlace {
    Step,
    Target,
    With(&'static str),
}

impl StaticProblem {
    pub fn at(at: StaticPlace, message: impl Into<String>) -> Self {
        StaticProblem {
            at,
            message: message.into(),
        }
    }
}

/// A string written literally (a template is known only once rendered, and checked then).
pub fn literal(value: &Value) -> Option<&str> {
    value
        .as_str()
        .filter(|text| !crate::yaml::schema_check::is_template(text))
}

impl StaticStep<'_> {
    /// A `with` field's value when it is written literally.
    pub fn literal(&self, field: &str) -> Option<&str> {
        self.with.get(field).and_then(literal)
    }

    /// The literal strings of a list field.
    pub fn literals(&self, field: &str) -> Vec<&str> {
        self.with
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(literal)
            .collect()
    }

    /// Whether the step sets `field` at all (literally or by a template).
    pub fn has(&self, field: &str) -> bool {
        self.with.get(field).is_some_and(|v| !v.is_null())
    }
}

/// A refusal `plan` would make for a reason visible in the playbook itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticProblem {
    pub at: StaticPlace,
    pub message: String,
}

/// Every refusal an action makes for a static reason: `validate` reports them with their
/// places, and `plan` refuses the same steps with the same words.
pub fn static_problems(action: &dyn Action, step: &StaticStep) -> Vec<StaticProblem> {
    let mut problems = Vec::new();
    // One part per object: a target spanning namespaces, or cluster-scoped objects (nodes)
    // picked by a selector.
    let cluster_scoped = step
        .kind
        .and_then(crate::cluster::kinds::lookup)
        .is_some_and(|k| !k.namespaced);
    let per_object = action.fan_out() == FanOut::PerObject
        && (step.picks == Some(Picks::AllNamespaces)
            || (step.picks == Some(Picks::Selector) && cluster_scoped));
    if action.one_object() && step.picks.is_some_and(|p| p != Picks::Named) && !per_object {
        problems.push(StaticProblem {
            at: StaticPlace::Target,
            message: one_object_message(action.info().name),
        });
    }
    problems.extend(action.check_static(step));
    problems
}

/// Why an action that works on one object refuses a target that picks several.
pub fn one_object_message(action: &str) -> String {
    format!("{action} works on one object: give the target a name")
}

/// One action of the catalogue.
pub trait Action: Send + Sync {
    fn info(&self) -> &'static ActionInfo;

    /// The JSON schema of the action's `with` fields.
    fn with_schema(&self) -> Value;

    /// How a target that spans namespaces (`all_namespaces`) is planned: by default one part
    /// per namespace, so every action sees the single-namespace target it was written for.
    fn fan_out(&self) -> FanOut {
        FanOut::PerNamespace
    }

    /// Whether the action works on one object at a time: its target names it (or, spanning
    /// namespaces, fans out into one part per object).
    fn one_object(&self) -> bool {
        false
    }

    /// The action's own refusals that need nothing but the step as written (`validate` shows
    /// them with their places; `plan` refuses the same). By default, none.
    fn check_static(&self, step: &StaticStep) -> Vec<StaticProblem> {
        let _ = step;
        Vec::new()
    }

    /// Whether this step, with these `with` fields, can destroy evidence about a pod.
    fn destroys_evidence(&self, with: &Value) -> bool {
        let _ = with;
        self.info().destroys_evidence
    }

    /// What the step will do, decided from what was read: a pure function. A read it needs
    /// and `seen` lacks is asked for with [`ActionError::Needs`]; the executor makes it and
    /// asks again.
    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError>;

    /// The reads the plan still needs beyond `seen` (none once it can decide).
    fn reads(&self, input: &StepInput, seen: &Observed) -> Vec<Read> {
        match self.plan(input, seen) {
            Err(ActionError::Needs(reads)) => reads,
            _ => Vec::new(),
        }
    }

    /// The API permissions `verify` needs beyond the plan's own operations. By default, a read
    /// of each object the plan writes.
    fn verify_access(&self, input: &StepInput, plan: &StepPlan) -> Vec<Access> {
        let _ = input;
        reads_of_writes(plan)
    }

    /// Checks the step's post-conditions after its plan was applied, from what was read: a
    /// pure function like `plan`. A check that may take time to hold (a controller at work)
    /// is waited for ([`Verification::check_within`]); the executor reads again until it holds.
    /// By default, each field the plan patches reads back as planned (an action whose only
    /// writes are patches, or that writes nothing, needs no more).
    fn verify(
        &self,
        input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let _ = input;
        common::verify_patches(&plan.ops, seen)
    }
}

/// A read of each object a plan writes: what verifying the writes needs at least.
pub fn reads_of_writes(plan: &StepPlan) -> Vec<Access> {
    plan.ops
        .iter()
        .filter(|op| op.is_write())
        .flat_map(Op::access)
        .filter(|a| a.verb == "get")
        .collect()
}

/// Every action, in catalogue order.
pub fn catalogue() -> &'static [&'static dyn Action] {
    static ACTIONS: &[&dyn Action] = &[
        &capture::Capture,
        &isolate::Isolate,
        &label::LABEL,
        &label::ANNOTATE,
        &scale::Scale,
        &suspend::Suspend,
        &detach::Detach,
        &pod_delete::PodDelete,
        &revoke::Revoke,
        &node::QUARANTINE,
        &node::CORDON,
        &node::TAINT,
        &node::DRAIN,
        &redeploy::Redeploy,
        &wait::Wait,
        &approve::Approve,
    ];
    ACTIONS
}

/// The action named `name`.
pub fn lookup(name: &str) -> Option<&'static dyn Action> {
    catalogue().iter().copied().find(|a| a.info().name == name)
}

/// The schema of a `with` type, with its definitions inlined under `$defs`. Every optional
/// field gets its `default` (what an empty `with:` decodes to), where the schema alone does
/// not say it (enums by reference, for example), so `contain actions` can show it.
pub fn schema_of<T: schemars::JsonSchema + serde::de::DeserializeOwned + serde::Serialize>() -> Value
{
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Bool(true));
    let defaults = serde_json::from_value::<T>(serde_json::json!({}))
        .ok()
        .and_then(|empty| serde_json::to_value(empty).ok());
    if let (Some(Value::Object(defaults)), Some(Value::Object(properties))) =
        (defaults, schema.get_mut("properties"))
    {
        for (name, property) in properties.iter_mut() {
            if let (Some(value), Some(property)) = (defaults.get(name), property.as_object_mut()) {
                property.entry("default").or_insert_with(|| value.clone());
            }
        }
    }
    schema
}

/// Decodes a rendered `with` into the action's own type.
pub fn decode_with<T: serde::de::DeserializeOwned>(with: &Value) -> Result<T, ActionError> {
    serde_json::from_value(with.clone()).map_err(|e| ActionError::InvalidParams(e.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn problems(action: &str, kind: &str, picks: Picks, with: Value) -> Vec<StaticProblem> {
        let step = StaticStep {
            kind: Some(kind),
            picks: Some(picks),
            with: &with,
        };
        static_problems(lookup(action).unwrap(), &step)
    }

    #[test]
    fn an_action_on_one_object_refuses_a_target_that_picks_several() {
        for action in [
            "node.quarantine",
            "node.cordon",
            "serviceaccount.revoke",
            "workload.redeploy",
        ] {
            let refused = problems(action, "ServiceAccount", Picks::Selector, json!({}));
            assert_eq!(
                refused,
                [StaticProblem {
                    at: StaticPlace::Target,
                    message: format!("{action} works on one object: give the target a name"),
                }],
                "{action}"
            );
            assert!(problems(action, "Node", Picks::Named, json!({})).is_empty());
        }
        // Nodes picked by a selector become one part per node.
        for action in ["node.quarantine", "node.cordon"] {
            assert!(problems(action, "Node", Picks::Selector, json!({})).is_empty());
        }
        // A detach fans a target across namespaces out into one part per pod.
        assert!(problems("pod.detach", "Pod", Picks::AllNamespaces, json!({})).is_empty());
        assert_eq!(
            problems("pod.detach", "Pod", Picks::Selector, json!({})).len(),
            1
        );
        // Actions that take many objects at once have no such rule.
        assert!(problems("network.isolate", "Pod", Picks::Selector, json!({})).is_empty());
    }

    #[test]
    fn exclusive_isolation_refuses_a_namespace_target() {
        let refused = problems(
            "network.isolate",
            "Namespace",
            Picks::Named,
            json!({"exclusive": true}),
        );
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].at, StaticPlace::With("exclusive"));
        assert!(
            refused[0]
                .message
                .starts_with("`exclusive` needs pods or a workload")
        );
        assert!(
            problems(
                "network.isolate",
                "Pod",
                Picks::Selector,
                json!({"exclusive": true})
            )
            .is_empty()
        );
        for kind in ["Deployment", "DaemonSet"] {
            assert!(
                problems(
                    "network.isolate",
                    kind,
                    Picks::Named,
                    json!({"exclusive": true})
                )
                .is_empty()
            );
        }
        // A templated value is only known after rendering: nothing to say yet.
        assert!(
            problems(
                "network.isolate",
                "Namespace",
                Picks::Named,
                json!({"exclusive": "{{ params.x }}"})
            )
            .is_empty()
        );
    }

    #[test]
    fn literal_values_are_checked_and_templates_left_for_rendering() {
        let bad = problems(
            "node.quarantine",
            "Node",
            Picks::Named,
            json!({"guard_exempt_namespaces": ["Bad_NS", "{{ params.ns }}", "forensics"]}),
        );
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].at, StaticPlace::With("guard_exempt_namespaces"));
        assert!(bad[0].message.contains("Bad_NS"));
        let labels = problems(
            "object.label",
            "Pod",
            Picks::Named,
            json!({"labels": {"ok": "fine", "{{ params.key }}": "x", "bad key!": "x"}}),
        );
        assert_eq!(labels.len(), 1, "{labels:?}");
        // Annotation values are free text; only their keys are label-shaped.
        assert!(
            problems(
                "object.annotate",
                "Pod",
                Picks::Named,
                json!({"annotations": {"note": "any text at all!"}})
            )
            .is_empty()
        );
    }

    #[test]
    fn a_wait_is_one_kind_of_wait_and_a_field_needs_a_named_object() {
        let wait = |picks: Option<Picks>, with: Value| {
            let step = StaticStep {
                kind: Some("Pod"),
                picks,
                with: &with,
            };
            static_problems(lookup("wait").unwrap(), &step)
        };
        assert!(wait(None, json!({"duration": "5s"})).is_empty());
        assert!(
            wait(
                Some(Picks::Named),
                json!({"field": "status.phase", "equals": "Running"})
            )
            .is_empty()
        );
        assert_eq!(
            wait(None, json!({"duration": "5s", "field": "x", "equals": 1}))[0].at,
            StaticPlace::Step
        );
        assert_eq!(wait(None, json!({})).len(), 1);
        assert_eq!(
            wait(None, json!({"field": "x", "equals": 1}))[0].at,
            StaticPlace::With("field")
        );
        assert_eq!(
            wait(Some(Picks::Selector), json!({"field": "x", "equals": 1}))[0].at,
            StaticPlace::Target
        );
    }

    #[test]
    fn a_redeploy_names_each_container_once_with_a_valid_image() {
        let redeploy =
            |with: Value| problems("workload.redeploy", "Deployment", Picks::Named, with);
        assert!(
            redeploy(json!({"containers": [{"name": "app", "image": "reg.example/app:1"}]}))
                .is_empty()
        );
        let twice = redeploy(
            json!({"containers": [{"name": "app", "image": "reg.example/a:1"}, {"name": "app", "image": "reg.example/a:2"}]}),
        );
        assert_eq!(twice[0].message, "container `app` is named twice");
        assert_eq!(
            redeploy(json!({"containers": [{"name": "app", "image": "not an image!"}]})).len(),
            1
        );
        assert!(
            redeploy(json!({"containers": [{"name": "app", "image": "{{ params.image }}"}]}))
                .is_empty()
        );
    }

    #[test]
    fn an_action_declares_its_reads_round_by_round_and_plans_from_plain_values() {
        use crate::cluster::object::ObjectRef;
        let scale = lookup("workload.scale").unwrap();
        let input = StepInput {
            step_id: "stop".into(),
            run_id: "run-1".into(),
            target: Some(fixture::named("Deployment", Some("shop"), "web")),
            with: json!({"replicas": 0}),
            canaries: Vec::new(),
        };
        let web = ObjectRef::new("Deployment", Some("shop"), "web");
        let mut seen = Observed::new(false);
        // First round: the target.
        assert_eq!(scale.reads(&input, &seen), [Read::Get(web.clone())]);
        seen.record(
            Read::Get(web.clone()),
            Answer::Object(Some(json!({"kind": "Deployment",
                "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "4"},
                "spec": {"replicas": 3}}))),
        );
        // Nothing more to read: the plan is made from what was recorded, with no cluster.
        assert!(scale.reads(&input, &seen).is_empty());
        let plan = scale.plan(&input, &seen).unwrap();
        assert_eq!(plan.outputs["previous_replicas"], json!({"web": 3}));
        // An object that is not there is an answer too.
        let mut gone = Observed::new(false);
        gone.record(Read::Get(web), Answer::Object(None));
        assert!(matches!(
            scale.plan(&input, &gone),
            Err(ActionError::TargetNotFound(_))
        ));
    }

    #[test]
    fn isolation_reads_the_pod_then_the_policy_api_then_the_namespace_policies() {
        use crate::cluster::object::{ObjectRef, Selector};
        let isolate = lookup("network.isolate").unwrap();
        let input = StepInput {
            step_id: "cut".into(),
            run_id: "run-1".into(),
            target: Some(fixture::named("Pod", Some("shop"), "web-1")),
            with: json!({}),
            canaries: Vec::new(),
        };
        let mut seen = Observed::new(false);
        let mut rounds = Vec::new();
        loop {
            let reads = isolate.reads(&input, &seen);
            if reads.is_empty() {
                break;
            }
            for read in &reads {
                let answer = match read {
                    Read::Get(r) if r.kind == "Pod" => Answer::Object(Some(fixture::pod(
                        "shop",
                        "web-1",
                        json!({"app": "web"}),
                        None,
                    ))),
                    Read::Get(_) => Answer::Object(None),
                    Read::Serves(_) => Answer::Served(false),
                    Read::List { .. } => Answer::Objects(Vec::new()),
                    other => panic!("isolation does not read {other:?}"),
                };
                seen.record(read.clone(), answer);
            }
            rounds.push(reads);
        }
        assert_eq!(
            rounds,
            [
                vec![Read::Get(ObjectRef::new("Pod", Some("shop"), "web-1"))],
                vec![Read::Serves("ClusterNetworkPolicy")],
                vec![Read::Get(ObjectRef::new(
                    "NetworkPolicy",
                    Some("shop"),
                    "contain-isolate-cut-1"
                ))],
                vec![Read::List {
                    kind: "NetworkPolicy",
                    namespace: Some("shop".into()),
                    selector: Selector::default(),
                }],
            ]
        );
        assert!(isolate.plan(&input, &seen).is_ok());
    }

    /// The verification `action` makes when each read is answered by `answer`.
    fn verified(
        action: &dyn Action,
        input: &StepInput,
        plan: &StepPlan,
        answer: impl Fn(&Read) -> Answer,
    ) -> Verification {
        let mut seen = Observed::new(false);
        loop {
            match action.verify(input, plan, &seen) {
                Err(ActionError::Needs(reads)) => {
                    for read in reads {
                        let found = answer(&read);
                        seen.record(read, found);
                    }
                }
                other => return other.unwrap(),
            }
        }
    }

    #[test]
    fn a_check_that_needs_time_is_waited_for_not_failed_and_passes_once_it_holds() {
        let quarantine = lookup("node.quarantine").unwrap();
        let input = StepInput {
            step_id: "q".into(),
            run_id: "run-1".into(),
            target: Some(fixture::named("Node", None, "n1")),
            with: json!({}),
            canaries: Vec::new(),
        };
        let node = json!({"kind": "Node", "metadata": {"name": "n1", "uid": "n", "resourceVersion": "2",
            "labels": {"contain.dev/quarantine": "run-1"}},
            "spec": {"unschedulable": true, "taints": [{"key": "contain.dev/quarantine", "value": "run-1", "effect": "NoSchedule"}]}});
        let plan = {
            let sim = fixture::cluster(vec![
                json!({"kind": "Node", "metadata": {"name": "n1", "uid": "n"}, "spec": {}}),
            ]);
            fixture::plan(quarantine, &input, &sim).unwrap()
        };
        let answers = |refusal: Option<&'static str>| {
            let node = node.clone();
            move |read: &Read| match read {
                Read::Get(r) if r.kind == "Node" => Answer::Object(Some(node.clone())),
                Read::Get(_) => Answer::Object(Some(json!({}))),
                Read::Probe(_) => Answer::Refusal(refusal.map(str::to_string)),
                other => panic!("quarantine verification does not read {other:?}"),
            }
        };
        // The guard has not reached admission yet: the probe was accepted. Not failed: waited.
        let early = verified(quarantine, &input, &plan, answers(None));
        assert_eq!(early.waiting.len(), 1, "{early:?}");
        assert!(
            early.waiting[0]
                .what
                .contains("refuses a new pod pinned to n1")
        );
        assert!(
            early.waiting[0].watch.is_none(),
            "an admission answer is polled"
        );
        // Refused by the guard: the check passes.
        let late = verified(
            quarantine,
            &input,
            &plan,
            answers(Some(
                "pods \"contain-quarantine-probe\" is forbidden: node n1 is quarantined",
            )),
        );
        assert!(late.waiting.is_empty());
        assert!(
            late.checks
                .iter()
                .any(|c| c.what.contains("refuses a new pod") && c.status == CheckStatus::Passed)
        );
        // Time up: what was still waited for is recorded failed.
        let mut gave_up = early;
        gave_up.give_up_waiting();
        assert!(
            gave_up
                .checks
                .iter()
                .any(|c| c.what.contains("refuses a new pod") && c.status == CheckStatus::Failed)
        );
    }
}
