//! Node quarantine: `node.cordon`, `node.taint`, `node.drain` and `node.quarantine` (all of them
//! in one step). The taint is always `NoSchedule` with contain's own key: `NoExecute` would
//! kill the pods on the node, and the evidence with them.

use crate::cluster::Watch;
use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{self, meta_path};
use super::{
    Action, ActionError, ActionInfo, Observed, StaticPlace, StaticProblem, StaticStep, StepInput,
    TargetRule, Verification, decode_with, schema_of,
};
use crate::cluster::object::controller_of;
use crate::cluster::object::{self, ObjectRef, Selector};
use crate::cluster::{kinds, merge};
use crate::plan::{FieldChange, Op, Reversibility, StepPlan};

/// The key of contain's taint and label on a quarantined node.
pub const QUARANTINE_KEY: &str = "contain.dev/quarantine";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Cordon,
    Taint,
    Drain,
    Quarantine,
}

pub struct NodeAction {
    part: Part,
    info: &'static ActionInfo,
}

pub static CORDON: NodeAction = NodeAction {
    part: Part::Cordon,
    info: &ActionInfo {
        name: "node.cordon",
        summary: "Mark a node unschedulable.",
        changes: "spec.unschedulable of the node",
        undo: "restores spec.unschedulable as it was (a node cordoned before stays cordoned)",
        reversible: true,
        destroys_evidence: false,
        target: TargetRule::Required(&["Node"]),
        outputs: &[],
    },
};

pub static TAINT: NodeAction = NodeAction {
    part: Part::Taint,
    info: &ActionInfo {
        name: "node.taint",
        summary: "Add contain's NoSchedule taint to a node (never NoExecute, which would kill the evidence).",
        changes: "one element of spec.taints of the node",
        undo: "removes that taint, leaving the others as they are",
        reversible: true,
        destroys_evidence: false,
        target: TargetRule::Required(&["Node"]),
        outputs: &[],
    },
};

pub static DRAIN: NodeAction = NodeAction {
    part: Part::Drain,
    info: &ActionInfo {
        name: "node.drain",
        summary: "Evict the pods of a node through the Eviction API, like kubectl drain, keeping the suspects.",
        changes: "evicts pods (their controllers recreate them elsewhere)",
        undo: "none: evicted pods are not brought back",
        reversible: false,
        destroys_evidence: true,
        target: TargetRule::Required(&["Node"]),
        outputs: &[
            ("evicted", "pods evicted, as namespace/name"),
            ("kept", "pods left on the node, with why"),
        ],
    },
};

pub static QUARANTINE: NodeAction = NodeAction {
    part: Part::Quarantine,
    info: &ActionInfo {
        name: "node.quarantine",
        summary: "Cordon, taint and label a node; optionally drain it.",
        changes: "spec.unschedulable, contain's taint and label on the node; with `drain`, evicts its pods",
        undo: "restores the node as it was; evicted pods are not brought back",
        reversible: true,
        destroys_evidence: false,
        target: TargetRule::Required(&["Node"]),
        outputs: &[
            ("evicted", "pods evicted, as namespace/name"),
            ("kept", "pods left on the node, with why"),
        ],
    },
};

/// `with` of `node.cordon`.
#[derive(Deserialize, serde::Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CordonWith {
    /// Allow the run to take every schedulable node of the cluster out of scheduling (refused
    /// otherwise: nothing could be scheduled any more).
    #[serde(default)]
    pub allow_every_node: bool,
}

/// `with` of `node.taint`.
#[derive(Deserialize, serde::Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TaintWith {
    /// Value of the taint (default: the run id).
    #[serde(default)]
    pub value: Option<String>,
}

/// `with` of `node.drain`, and of `node.quarantine` with `drain` (flattened there). Unknown
/// fields are refused by the schema check at load; serde's own refusal cannot be combined
/// with flattening.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DrainWith {
    /// Pods to keep on the node, by name (the suspects).
    #[serde(default)]
    pub keep: Vec<String>,
    /// Pods with all these labels stay too (default `contain.dev/suspect: "true"`).
    #[serde(default = "suspect_selector")]
    pub keep_labels: BTreeMap<String, String>,
    /// Evict pods that use emptyDir volumes (their data is lost); refused otherwise.
    #[serde(default)]
    pub delete_emptydir_data: bool,
    /// Evict pods no controller will recreate; refused otherwise.
    #[serde(default)]
    pub force: bool,
    /// How long to keep retrying evictions a PodDisruptionBudget refuses (default 5m).
    #[serde(default)]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

impl Default for DrainWith {
    fn default() -> Self {
        DrainWith {
            keep: Vec::new(),
            keep_labels: suspect_selector(),
            delete_emptydir_data: false,
            force: false,
            timeout: None,
        }
    }
}

fn suspect_selector() -> BTreeMap<String, String> {
    [("contain.dev/suspect".to_string(), "true".to_string())].into()
}

fn yes() -> bool {
    true
}

/// `with` of `node.quarantine`: its own fields and node.drain's.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct QuarantineWith {
    /// Mark the node unschedulable (`spec.unschedulable`), as `kubectl cordon` does.
    #[serde(default = "yes")]
    pub cordon: bool,
    /// Taint the node `contain.dev/quarantine=<run id>:NoSchedule`.
    #[serde(default = "yes")]
    pub taint: bool,
    /// Label the node `contain.dev/quarantine=<run id>`.
    #[serde(default = "yes")]
    pub label: bool,
    /// Also drain the node (the drain's own fields are node.drain's).
    #[serde(default)]
    pub drain: bool,
    /// How the node is drained, with `drain`.
    #[serde(flatten)]
    pub drain_options: DrainWith,
    /// Refuse new pods on the node at admission (default true): cordon and taint do not stop a
    /// pod that tolerates every taint. A ValidatingAdmissionPolicy, owned by the run and
    /// removed by rollback, refuses pods created with `spec.nodeName` set to the node and
    /// scheduler bindings to it.
    #[serde(default = "yes")]
    pub admission_guard: bool,
    /// Namespaces whose pods may still land on the node (a forensics namespace).
    #[serde(default = "forensics")]
    pub guard_exempt_namespaces: Vec<String>,
    /// Allow the run to quarantine every schedulable node of the cluster (refused otherwise:
    /// nothing could be scheduled any more).
    #[serde(default)]
    pub allow_every_node: bool,
}

fn forensics() -> Vec<String> {
    vec!["forensics".into()]
}

/// What one step does to the node.
struct Wanted {
    cordon: bool,
    taint: Option<String>,
    label: bool,
    drain: Option<DrainWith>,
    /// The namespaces exempt from the admission guard, when there is one.
    guard: Option<Vec<String>>,
}

/// The name of the admission policy (and binding) that guards a quarantined node.
fn guard_name(node: &str) -> String {
    let name = format!("contain-quarantine-{node}");
    name.chars().take(253).collect()
}

/// The ValidatingAdmissionPolicy and its binding that refuse new pods on `node`, except in
/// `exempt` namespaces and the kubelet's mirror pods of static pods.
fn guard_objects(node: &str, exempt: &[String], input: &StepInput) -> (Value, Value) {
    let name = guard_name(node);
    let labels = json!({common::RUN_ID_LABEL: input.run_id, common::STEP_LABEL: input.step_id});
    // The node name is a DNS subdomain (letters, digits, '-', '.'): safe inside a CEL string.
    // A Binding (the scheduler placing a pod) has a target; a Pod has a spec. An expression
    // that errors would refuse every pod in the cluster (failurePolicy Fail), so every field is
    // tested with has() before it is read.
    let expression = format!(
        "has(object.target) ? object.target.name != '{node}' : \
         (!has(object.spec) || !has(object.spec.nodeName) || object.spec.nodeName != '{node}' || \
          (has(object.metadata.annotations) && 'kubernetes.io/config.mirror' in object.metadata.annotations))"
    );
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"contain.dev/purpose": format!("node {node} is quarantined: no new pods may run there")}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods", "pods/binding"]
            }]},
            "validations": [{
                "expression": expression,
                "message": format!("node {node} is quarantined by contain run {}: no new pods may run there", input.run_id),
                "reason": "Forbidden"
            }]
        }
    });
    let mut match_resources = json!({});
    if !exempt.is_empty() {
        match_resources = json!({"namespaceSelector": {"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": exempt
        }]}});
    }
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": labels},
        "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": match_resources}
    });
    (policy, binding)
}

impl NodeAction {
    fn wanted(&self, with: &Value, run_id: &str) -> Result<Wanted, ActionError> {
        Ok(match self.part {
            Part::Cordon => {
                let _: CordonWith = decode_with(with)?;
                Wanted {
                    cordon: true,
                    taint: None,
                    label: false,
                    drain: None,
                    guard: None,
                }
            }
            Part::Taint => {
                let w: TaintWith = decode_with(with)?;
                Wanted {
                    cordon: false,
                    taint: Some(w.value.unwrap_or_else(|| run_id.to_string())),
                    label: false,
                    drain: None,
                    guard: None,
                }
            }
            Part::Drain => Wanted {
                cordon: false,
                taint: None,
                label: false,
                drain: Some(decode_with(with)?),
                guard: None,
            },
            Part::Quarantine => {
                let w: QuarantineWith = decode_with(with)?;
                let drain = w.drain.then_some(w.drain_options);
                for ns in &w.guard_exempt_namespaces {
                    object::validate_namespace(ns)
                        .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
                }
                Wanted {
                    cordon: w.cordon,
                    taint: w.taint.then(|| run_id.to_string()),
                    label: w.label,
                    drain,
                    guard: w.admission_guard.then_some(w.guard_exempt_namespaces),
                }
            }
        })
    }
}

fn taint_path() -> Vec<String> {
    vec![
        "spec".into(),
        "taints".into(),
        merge::keyed("key", QUARANTINE_KEY),
    ]
}

/// The pods a PodDisruptionBudget would refuse to evict now (`disruptionsAllowed: 0`): planned
/// all the same, since the budget may allow it later, and said so.
fn blocked_by_budgets(
    evict: &[Value],
    timeout: Duration,
    seen: &Observed,
) -> Result<Vec<String>, ActionError> {
    let namespaces: std::collections::BTreeSet<&str> =
        evict.iter().filter_map(|p| object::namespace(p)).collect();
    let mut notes = Vec::new();
    for namespace in namespaces {
        let budgets = seen.list(
            "PodDisruptionBudget",
            Some(namespace),
            &crate::cluster::Selector::default(),
        )?;
        for budget in budgets {
            let allowed = budget
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64);
            let Some(selector) = budget
                .pointer("/spec/selector")
                .and_then(crate::cluster::Selector::from_value)
            else {
                continue;
            };
            if allowed != Some(0) {
                continue;
            }
            let blocked: Vec<&str> = evict
                .iter()
                .filter(|p| object::namespace(p) == Some(namespace))
                .filter(|p| selector.matches(&object::labels(p)))
                .filter_map(|p| object::name(p))
                .collect();
            if !blocked.is_empty() {
                notes.push(format!(
                    "PodDisruptionBudget {namespace}/{} allows no disruption now: the eviction of {} is tried at apply time and retried for up to {}s; the step fails if the budget still refuses then",
                    object::name(budget).unwrap_or_default(),
                    blocked.join(", "),
                    timeout.as_secs()
                ));
            }
        }
    }
    Ok(notes)
}

/// The pods a drain evicts, and the ones it leaves with why. Refuses like kubectl drain does.
fn drain_plan(
    node: &str,
    options: &DrainWith,
    seen: &Observed,
) -> Result<(Vec<Value>, Vec<String>), ActionError> {
    // The node's pods only, selected by the API server, never a cluster-wide list.
    let pods = seen.pods_on_node(node)?.to_vec();
    let keep = Selector::labels(options.keep_labels.clone());
    let mut evict = Vec::new();
    let mut kept = Vec::new();
    let mut refusals = Vec::new();
    for pod in pods {
        let name = format!(
            "{}/{}",
            object::namespace(&pod).unwrap_or_default(),
            object::name(&pod).unwrap_or_default()
        );
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reason = if matches!(phase, "Succeeded" | "Failed") {
            Some("finished")
        } else if pod
            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some()
        {
            Some("mirror pod (the kubelet owns it)")
        } else if controller_of(&pod).is_some_and(|(kind, _)| kind == "DaemonSet") {
            Some("DaemonSet pod (it would come straight back)")
        } else if options
            .keep
            .iter()
            .any(|k| Some(k.as_str()) == object::name(&pod))
            || (!keep.is_empty() && keep.matches(&object::labels(&pod)))
        {
            Some("kept for investigation")
        } else if pod.pointer("/metadata/deletionTimestamp").is_some() {
            Some("already terminating")
        } else {
            None
        };
        if let Some(reason) = reason {
            kept.push(format!("{name}: {reason}"));
            continue;
        }
        if controller_of(&pod).is_none() && !options.force {
            refusals.push(format!("{name} has no controller and would not come back (set force: true to evict it anyway)"));
        }
        let empty_dir = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|v| v.get("emptyDir").is_some()));
        if empty_dir && !options.delete_emptydir_data {
            refusals.push(format!("{name} uses emptyDir volumes whose data eviction deletes (set delete_emptydir_data: true)"));
        }
        evict.push(pod);
    }
    if !refusals.is_empty() {
        return Err(ActionError::Refused(format!(
            "cannot drain {node}: {}",
            refusals.join("; ")
        )));
    }
    Ok((evict, kept))
}

impl Action for NodeAction {
    fn info(&self) -> &'static ActionInfo {
        self.info
    }

    fn with_schema(&self) -> Value {
        match self.part {
            Part::Cordon => schema_of::<CordonWith>(),
            Part::Taint => schema_of::<TaintWith>(),
            Part::Drain => schema_of::<DrainWith>(),
            Part::Quarantine => schema_of::<QuarantineWith>(),
        }
    }

    /// It acts on one object, named by the target.
    fn one_object(&self) -> bool {
        true
    }

    /// Nodes picked by a selector are planned one part per node.
    fn fan_out(&self) -> super::FanOut {
        super::FanOut::PerObject
    }

    fn check_static(&self, step: &StaticStep) -> Vec<StaticProblem> {
        let mut problems = Vec::new();
        if self.part == Part::Taint
            && let Some(value) = step.literal("value")
            && let Err(e) = object::validate_label_value(QUARANTINE_KEY, value)
        {
            problems.push(StaticProblem::at(StaticPlace::With("value"), e.to_string()));
        }
        if self.part == Part::Quarantine {
            for namespace in step.literals("guard_exempt_namespaces") {
                if let Err(e) = object::validate_namespace(namespace) {
                    problems.push(StaticProblem::at(
                        StaticPlace::With("guard_exempt_namespaces"),
                        e.to_string(),
                    ));
                }
            }
        }
        problems
    }

    fn destroys_evidence(&self, with: &Value) -> bool {
        match self.part {
            Part::Drain => true,
            Part::Quarantine => with.get("drain").is_some_and(|d| d != &Value::Bool(false)),
            _ => false,
        }
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let wanted = self.wanted(&input.with, &input.run_id)?;
        let target = input.required_target()?;
        let node = common::observe_named(input, self.info.name, seen)?;
        let node_name = object::name(&node).unwrap_or_default().to_string();
        let mut fields: Vec<common::Wanted> = Vec::new();
        if wanted.cordon {
            fields.push((
                vec!["spec".into(), "unschedulable".into()],
                Some(Value::Bool(true)),
            ));
        }
        if let Some(value) = &wanted.taint {
            object::validate_label_value(QUARANTINE_KEY, value)
                .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
            fields.push((
                taint_path(),
                Some(json!({"key": QUARANTINE_KEY, "value": value, "effect": "NoSchedule"})),
            ));
        }
        if wanted.label {
            fields.push((
                meta_path("labels", QUARANTINE_KEY),
                Some(Value::from(input.run_id.clone())),
            ));
        }
        let mut changes: Vec<FieldChange> = common::changes_for(&node, &fields);
        // An existing quarantine taint with another value is left alone: the node is
        // already tainted by contain, and rewriting it would make the undo remove it.
        changes.retain(|c| !(c.path == taint_path() && c.before.is_some()));
        let mut notes = Vec::new();
        if wanted.cordon && node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
            notes.push(format!(
                "{node_name} is already cordoned; the undo leaves it cordoned"
            ));
        }
        let mut ops = Vec::new();
        let mut inverse = Vec::new();
        if let Some((op, undo)) = common::patch_pair(&node, changes) {
            ops.push(op);
            inverse.push(undo);
        }
        if let Some(exempt) = &wanted.guard {
            let (policy, binding) = guard_objects(&node_name, exempt, input);
            let name = guard_name(&node_name);
            for (kind, object) in [
                ("ValidatingAdmissionPolicy", policy),
                ("ValidatingAdmissionPolicyBinding", binding),
            ] {
                ops.push(Op::Create { object });
                // Undone before the node itself, so the scheduler may bind there again
                // the moment the node is schedulable.
                inverse.insert(
                    0,
                    Op::delete_created(ObjectRef::new(kind, None, &name), &input.run_id),
                );
            }
            notes.push(format!(
                "admission guard: ValidatingAdmissionPolicy {name} refuses new pods on {node_name} (created with spec.nodeName, or bound by the scheduler), even pods that tolerate every taint{}; mirror pods of static pods are let through",
                if exempt.is_empty() {
                    String::new()
                } else {
                    format!(", except in namespace(s) {}", exempt.join(", "))
                }
            ));
            notes.push(format!(
                "while the guard stands, DaemonSet pods that die on {node_name} are not recreated there"
            ));
        }
        let mut outputs = serde_json::Map::new();
        let mut reversibility = Reversibility::Reversible;
        if let Some(drain) = &wanted.drain {
            let (evict, kept) = drain_plan(&node_name, drain, seen)?;
            let timeout = drain
                .timeout
                .as_deref()
                .and_then(crate::duration::parse_duration)
                .unwrap_or(Duration::from_secs(300));
            for pod in &evict {
                ops.push(Op::Evict {
                    target: ObjectRef::of(pod).expect("listed objects have names"),
                    uid: object::uid(pod).unwrap_or_default().to_string(),
                    timeout_millis: timeout.as_millis() as u64,
                });
            }
            if !kept.is_empty() {
                notes.push(format!("left on the node: {}", kept.join("; ")));
            }
            notes.push(format!(
                "evictions a PodDisruptionBudget refuses are retried for up to {}s; the budgets are never overridden",
                timeout.as_secs()
            ));
            notes.extend(blocked_by_budgets(&evict, timeout, seen)?);
            if let Some(exempt) = &wanted.guard {
                let outside: Vec<String> = evict
                    .iter()
                    .filter(|p| {
                        !object::namespace(p).is_some_and(|ns| exempt.iter().any(|e| e == ns))
                    })
                    .filter_map(|p| object::namespace(p).map(str::to_string))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                if !outside.is_empty() && !exempt.is_empty() {
                    notes.push(format!(
                        "the drain evicts pods of namespace(s) the guard does not exempt, which cannot come back to {node_name} while it stands: {}",
                        outside.join(", ")
                    ));
                }
            }
            let evicted: Vec<String> = evict
                .iter()
                .map(|p| {
                    format!(
                        "{}/{}",
                        object::namespace(p).unwrap_or_default(),
                        object::name(p).unwrap_or_default()
                    )
                })
                .collect();
            outputs.insert("evicted".into(), Value::from(evicted));
            outputs.insert("kept".into(), Value::from(kept));
            reversibility = if self.part == Part::Drain {
                Reversibility::Irreversible { reason: "evicted pods are not brought back (their controllers recreated them elsewhere)".into() }
            } else {
                Reversibility::Partial {
                    reason: "evicted pods are not brought back".into(),
                }
            };
        }
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: self.info.name.to_string(),
            summary: format!("{} {target}", self.info.name.trim_start_matches("node.")),
            ops,
            inverse,
            reversibility,
            notes,
            outputs,
        })
    }

    fn verify_access(&self, input: &StepInput, plan: &StepPlan) -> Vec<crate::cluster::Access> {
        let mut reads = super::reads_of_writes(plan);
        if let Ok(Wanted {
            guard: Some(exempt),
            ..
        }) = self.wanted(&input.with, &input.run_id)
        {
            // The probe pod of the guard's verification, sent with dryRun=All.
            let namespace = ["default", "kube-system"]
                .into_iter()
                .find(|ns| !exempt.iter().any(|e| e == ns))
                .unwrap_or("default");
            reads.push(crate::cluster::Access::on(
                "create",
                kinds::lookup("Pod").expect("known kind"),
                Some(namespace),
                None,
            ));
        }
        reads
    }

    fn verify(
        &self,
        input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let wanted = self.wanted(&input.with, &input.run_id)?;
        let mut verification = common::verify_patches(&plan.ops, seen)?;
        let Some(target) = input.target.as_ref().and_then(|t| t.name.clone()) else {
            return Ok(verification);
        };
        let node = seen
            .get(&ObjectRef::new("Node", None, &target))?
            .cloned()
            .unwrap_or(Value::Null);
        if wanted.cordon {
            verification.check(
                format!("{target} is unschedulable"),
                node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)),
                None,
            );
        }
        if let Some(exempt) = &wanted.guard {
            let what = format!(
                "the API server refuses a new pod pinned to {target} (server-side dry run)"
            );
            if seen.simulated() {
                verification.not_checked(what, "a simulated cluster has no admission");
            } else {
                let namespace = ["default", "kube-system"]
                    .into_iter()
                    .find(|ns| !exempt.iter().any(|e| e == ns))
                    .unwrap_or("default");
                let probe = json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "contain-quarantine-probe", "namespace": namespace},
                    "spec": {"nodeName": target, "tolerations": [{"operator": "Exists"}],
                             "containers": [{"name": "probe", "image": "contain.invalid/probe"}]}
                });
                // A new policy takes a moment to reach the API server's admission chain: the
                // probe is sent again (from 50 ms on, backing off) for up to 15 s.
                let refusal = seen.probe(&probe)?;
                let ours = refusal.is_some_and(|t| t.contains("is quarantined"));
                verification.check_within(
                    what,
                    ours,
                    refusal.map(str::to_string),
                    Duration::from_secs(15),
                    None,
                );
            }
        }
        if wanted.taint.is_some() {
            let tainted = merge::get(&node, &taint_path())
                .is_some_and(|t| t.get("effect").and_then(Value::as_str) == Some("NoSchedule"));
            verification.check(
                format!("{target} has the {QUARANTINE_KEY}:NoSchedule taint"),
                tainted,
                None,
            );
        }
        if wanted.drain.is_some() {
            let evicted: Vec<&Op> = plan
                .ops
                .iter()
                .filter(|op| matches!(op, Op::Evict { .. }))
                .collect();
            if seen.simulated() {
                verification.not_checked(
                    "evicted pods are rescheduled elsewhere",
                    "a simulated cluster runs no controllers",
                );
            }
            for op in evicted {
                let Op::Evict {
                    target: pod, uid, ..
                } = op
                else {
                    continue;
                };
                let gone = match seen.get(pod)? {
                    None => true,
                    Some(p) => object::uid(p) != Some(uid.as_str()),
                };
                verification.check_within(
                    format!("{pod} is off the node"),
                    gone,
                    None,
                    Duration::from_secs(60),
                    Some(Watch::object(pod)),
                );
            }
        }
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{cluster, input, named, plan, pod, shown};
    use super::super::lookup;
    use super::*;

    fn node() -> Value {
        json!({"kind": "Node", "metadata": {"name": "n1"}, "spec": {}})
    }

    fn on_n1(mut pod: Value) -> Value {
        pod["spec"]["nodeName"] = json!("n1");
        pod
    }

    fn planned(action: &str, with: Value, objects: Vec<Value>) -> Result<StepPlan, ActionError> {
        let sim = cluster(objects);
        plan(
            lookup(action).unwrap(),
            &input("q", Some(named("Node", None, "n1")), with),
            &sim,
        )
    }

    #[test]
    fn a_budget_that_allows_no_disruption_now_is_planned_and_said_and_outside_namespaces_named() {
        let owned = |name: &str, ns: &str| {
            on_n1(pod(
                ns,
                name,
                json!({"app": "web"}),
                Some(("ReplicaSet", "web-5d9")),
            ))
        };
        let budget = json!({"kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 0}});
        let objects = vec![
            node(),
            super::super::fixture::namespace("shop"),
            super::super::fixture::namespace("payments"),
            owned("web-1", "shop"),
            owned("pay-1", "payments"),
            budget,
        ];
        let plan = planned(
            "node.quarantine",
            json!({"drain": true, "guard_exempt_namespaces": ["shop"]}),
            objects,
        )
        .unwrap();
        let notes = plan.notes.join("\n");
        assert!(
            notes.contains("PodDisruptionBudget shop/web allows no disruption now: the eviction of web-1 is tried at apply time and retried for up to 300s"),
            "{notes}"
        );
        assert!(
            notes.contains("the drain evicts pods of namespace(s) the guard does not exempt, which cannot come back to n1 while it stands: payments"),
            "{notes}"
        );
        assert_eq!(
            plan.outputs["evicted"],
            json!(["payments/pay-1", "shop/web-1"])
        );
    }

    #[test]
    fn a_cordon_sets_unschedulable_and_its_undo_clears_it() {
        let text = shown(&planned("node.cordon", json!({}), vec![node()]).unwrap());
        assert!(text.contains("spec.unschedulable: (none) → true"), "{text}");
        assert!(text.contains("spec.unschedulable: true → (none)"), "{text}");
        // Already cordoned by someone else: nothing to write, and nothing to undo.
        let mut cordoned = node();
        cordoned["spec"]["unschedulable"] = json!(true);
        let plan = planned("node.cordon", json!({}), vec![cordoned]).unwrap();
        assert!(
            plan.ops.is_empty() && plan.inverse.is_empty(),
            "{}",
            shown(&plan)
        );
    }

    #[test]
    fn a_taint_is_keyed_by_contain_and_valued_with_the_run() {
        let text = shown(&planned("node.taint", json!({}), vec![node()]).unwrap());
        assert!(
            text.contains(r#"spec.taints[key=contain.dev/quarantine]: (none) → {"key":"contain.dev/quarantine","value":"run-1","effect":"NoSchedule"}"#),
            "{text}"
        );
        let valued =
            shown(&planned("node.taint", json!({"value": "inc-42"}), vec![node()]).unwrap());
        assert!(valued.contains(r#""value":"inc-42""#), "{valued}");
    }

    #[test]
    fn a_quarantine_cordons_taints_labels_and_guards_admission_and_undoes_guard_first() {
        let plan = planned("node.quarantine", json!({}), vec![node()]).unwrap();
        let text = shown(&plan);
        for line in [
            "spec.unschedulable: (none) → true",
            r#"metadata.labels["contain.dev/quarantine"]: (none) → "run-1""#,
            "+ create ValidatingAdmissionPolicy contain-quarantine-n1",
            "+ create ValidatingAdmissionPolicyBinding contain-quarantine-n1",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // The guard comes off before the node is opened again.
        assert!(
            matches!(&plan.inverse[0], Op::Delete { target, .. } if target.kind == "ValidatingAdmissionPolicyBinding")
        );
        assert!(matches!(plan.inverse.last(), Some(Op::Patch { .. })));
        assert!(
            plan.notes
                .iter()
                .any(|n| n.contains("except in namespace(s) forensics"))
        );
        let unguarded = planned(
            "node.quarantine",
            json!({"admission_guard": false}),
            vec![node()],
        )
        .unwrap();
        assert!(!shown(&unguarded).contains("ValidatingAdmissionPolicy"));
    }

    #[test]
    fn a_drain_evicts_what_controllers_recreate_and_keeps_suspects_and_daemons() {
        let objects = vec![
            node(),
            on_n1(pod(
                "shop",
                "web-1",
                json!({"app": "web"}),
                Some(("ReplicaSet", "web-5d9")),
            )),
            on_n1(pod(
                "shop",
                "suspect",
                json!({"contain.dev/suspect": "true"}),
                Some(("ReplicaSet", "web-5d9")),
            )),
            on_n1(pod(
                "kube-system",
                "proxy-x",
                json!({}),
                Some(("DaemonSet", "proxy")),
            )),
        ];
        let plan = planned("node.drain", json!({}), objects.clone()).unwrap();
        assert_eq!(
            plan.outputs["evicted"],
            json!(["shop/web-1"]),
            "{}",
            shown(&plan)
        );
        let kept = plan.outputs["kept"].to_string();
        assert!(
            kept.contains("suspect") && kept.contains("proxy-x"),
            "{kept}"
        );
        assert!(matches!(&plan.ops[..], [Op::Evict { .. }]));
        assert!(matches!(
            plan.reversibility,
            Reversibility::Irreversible { .. }
        ));
        // A pod no controller recreates is refused unless `force`; so is emptyDir data.
        let mut bare = on_n1(pod("shop", "bare", json!({}), None));
        bare["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        let mut objects = objects;
        objects.push(bare);
        let refused = planned("node.drain", json!({}), objects.clone())
            .unwrap_err()
            .to_string();
        assert!(refused.starts_with("cannot drain n1"), "{refused}");
        assert!(refused.contains("bare"), "{refused}");
        let forced = planned(
            "node.drain",
            json!({"force": true, "delete_emptydir_data": true}),
            objects,
        )
        .unwrap();
        assert_eq!(forced.outputs["evicted"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_node_named_nowhere_is_refused() {
        let refused = planned("node.cordon", json!({}), vec![])
            .unwrap_err()
            .to_string();
        assert!(refused.contains("not found"), "{refused}");
    }
}
