//! `network.isolate`: cut pods off the network with a deny-all NetworkPolicy (Ingress and
//! Egress), with optional allow-lists. The target is a pod (by name or selector), a workload
//! (its pod selector, so replacement pods are isolated too) or a whole namespace.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{self, RUN_ID_LABEL, STEP_LABEL, meta_path};
use super::{
    Action, ActionError, ActionInfo, Observed, ResolvedTarget, StaticPlace, StaticProblem,
    StaticStep, StepInput, TargetRule, Verification, decode_with, schema_of,
};
use super::{owned, policies};
use crate::cluster::Access;
use crate::cluster::object::{self, ObjectRef, Selector};
use crate::netpol::{self, Direction};
use crate::plan::{Op, Reversibility, StepPlan};

pub struct Isolate;

/// The label that puts a pod under a quarantine policy; its value is the run id.
pub const QUARANTINE_LABEL: &str = "contain.dev/quarantine";
/// Where `exclusive` keeps the labels it removed.
pub const REMOVED_LABELS: &str = "contain.dev/isolation-removed-labels";

static INFO: ActionInfo = ActionInfo {
    name: "network.isolate",
    summary: "Deny all ingress and egress of the target pods, except what the allow-lists name.",
    changes: "creates a NetworkPolicy; labels target pods (by name or selector, or a workload's own pods by ownership) so the policy selects them",
    undo: "deletes the policy and restores the pods' labels",
    reversible: true,
    destroys_evidence: false,
    target: TargetRule::Required(&[
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
        "Namespace",
    ]),
    outputs: &[
        ("policy", "name of the quarantine NetworkPolicy"),
        ("namespace", "its namespace"),
        ("pods", "names of the pods it selects now"),
        (
            "other_policies",
            "other policies that still select the pods and admit traffic",
        ),
        (
            "selected_by",
            "per pod, every policy that admits traffic to it once the step is done",
        ),
    ],
};

/// `with` of `network.isolate`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IsolateWith {
    /// Name of the NetworkPolicy (default `contain-isolate-<step id>-<end of the run id>`, one per run).
    #[serde(default)]
    pub policy_name: Option<String>,
    /// Keep DNS lookups to kube-dns working (default true).
    #[serde(default = "yes")]
    pub allow_dns: bool,
    /// Namespaces still allowed in both directions (a forensics namespace, for example).
    #[serde(default)]
    pub allow_namespaces: Vec<String>,
    /// CIDRs still reachable (egress), e.g. an evidence store.
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    /// Make the quarantine the only policy that admits traffic to the pods: every other policy
    /// that selects them and admits traffic stops selecting them (see `exclusive_by`).
    #[serde(default)]
    pub exclusive: bool,
    /// How `exclusive` takes the pods out of the other policies: `policy-patch` (default) adds
    /// `contain.dev/quarantine DoesNotExist` to each such policy's podSelector, so it keeps
    /// selecting every other pod exactly as before and the pods keep their labels (it works
    /// against select-everything policies too); `relabel` removes the labels those policies
    /// select on (the pods then also leave their controller and Services).
    #[serde(default)]
    pub exclusive_by: ExclusiveBy,
    /// Where the isolation lives: `auto` (default) uses a ClusterNetworkPolicy in the Admin
    /// tier when the cluster serves the network-policy-api (its Deny overrides every
    /// NetworkPolicy, so none is patched), else NetworkPolicies; `network-policy` or
    /// `cluster-policy` to choose.
    #[serde(default)]
    pub mechanism: Mechanism,
    /// Targeted egress blocking, for when cutting all traffic is too blunt: deny only these
    /// CIDRs (a C2 server, an exfiltration range) and leave everything else as it is. Needs a
    /// cluster-scoped policy API (ClusterNetworkPolicy): a NetworkPolicy can only allow.
    #[serde(default)]
    pub deny_cidrs: Vec<String>,
}

/// What an isolation is made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    #[default]
    Auto,
    NetworkPolicy,
    ClusterPolicy,
}

/// The mechanism a plan records in its outputs, for verification.
const CLUSTER_POLICY: &str = "cluster-network-policy";

/// A ClusterNetworkPolicy in the Admin tier, at the highest precedence, that accepts the
/// allow-lists and denies everything else to and from the pods `pod_selector` picks in
/// `namespace`.
fn cluster_policy_object(
    name: &str,
    namespace: &str,
    pod_selector: &Value,
    with: &IsolateWith,
    input: &StepInput,
) -> Value {
    let mut policy = cluster_policy_isolation(name, namespace, pod_selector, with, input);
    if !with.deny_cidrs.is_empty() {
        // Targeted: only the named networks are denied, ingress and the rest of egress stay.
        policy["spec"]["ingress"] = json!([]);
        policy["spec"]["egress"] = json!([{"name": "deny-cidrs", "action": "Deny", "to": [{"networks": with.deny_cidrs}]}]);
        policy["metadata"]["annotations"]["contain.dev/purpose"] =
            json!("incident containment: deny egress to the named networks");
    }
    policy
}

fn cluster_policy_isolation(
    name: &str,
    namespace: &str,
    pod_selector: &Value,
    with: &IsolateWith,
    input: &StepInput,
) -> Value {
    let namespaces =
        |ns: &String| json!({"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
    let mut ingress = Vec::new();
    if !with.allow_namespaces.is_empty() {
        ingress.push(json!({"name": "allow-namespaces", "action": "Accept",
                            "from": with.allow_namespaces.iter().map(namespaces).collect::<Vec<_>>()}));
    }
    ingress.push(json!({"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}));
    let mut egress = Vec::new();
    if with.allow_dns {
        egress.push(json!({"name": "allow-dns", "action": "Accept",
            "to": [{"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                             "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}}],
            "protocols": [{"udp": {"destinationPort": {"number": 53}}}, {"tcp": {"destinationPort": {"number": 53}}}]}));
    }
    if !with.allow_namespaces.is_empty() {
        egress.push(json!({"name": "allow-namespaces", "action": "Accept",
                           "to": with.allow_namespaces.iter().map(namespaces).collect::<Vec<_>>()}));
    }
    if !with.allow_cidrs.is_empty() {
        egress.push(json!({"name": "allow-cidrs", "action": "Accept", "to": [{"networks": with.allow_cidrs}]}));
    }
    egress.push(json!({"name": "deny-all", "action": "Deny",
                       "to": [{"namespaces": {}}, {"networks": ["0.0.0.0/0", "::/0"]}]}));
    json!({
        "apiVersion": "policy.networking.k8s.io/v1beta1",
        "kind": "ClusterNetworkPolicy",
        "metadata": {
            "name": name,
            "labels": {RUN_ID_LABEL: input.run_id, STEP_LABEL: input.step_id},
            "annotations": {"contain.dev/purpose": "incident quarantine: deny all traffic except the allow-lists"}
        },
        "spec": {
            "tier": "Admin",
            "priority": 0,
            "subject": {"pods": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "podSelector": pod_selector
            }},
            "ingress": ingress,
            "egress": egress
        }
    })
}

/// The mechanism of an exclusive isolation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExclusiveBy {
    #[default]
    PolicyPatch,
    Relabel,
}

/// The undo of an exclusion of quarantined pods another run added to `policy`: its
/// `matchExpressions` without it (no field when nothing else is left).
fn shared_exclusion_undo(policy: &Value) -> Option<Op> {
    let exclusion = json!({"key": QUARANTINE_LABEL, "operator": "DoesNotExist"});
    let before = policy
        .pointer("/spec/podSelector/matchExpressions")?
        .clone();
    let rest: Vec<Value> = before
        .as_array()?
        .iter()
        .filter(|e| **e != exclusion)
        .cloned()
        .collect();
    let change = crate::plan::FieldChange {
        path: ["spec", "podSelector", "matchExpressions"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        before: Some(before),
        after: (!rest.is_empty()).then_some(Value::Array(rest)),
    };
    Some(Op::Patch {
        target: ObjectRef::of(policy)?,
        uid: object::uid(policy).unwrap_or_default().to_string(),
        changes: vec![change],
    })
}

/// The podSelector of `policy` with the quarantined pods excluded, or `None` when it excludes
/// them already.
pub fn excluding_quarantined(policy: &Value) -> Option<Value> {
    let mut expressions = policy
        .pointer("/spec/podSelector/matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let exclusion = json!({"key": QUARANTINE_LABEL, "operator": "DoesNotExist"});
    if expressions.contains(&exclusion) {
        return None;
    }
    expressions.push(exclusion);
    Some(Value::Array(expressions))
}

fn yes() -> bool {
    true
}

/// Whom the policy selects, and which pods that is now.
struct Scope {
    namespace: String,
    selector: Value,
    pods: Vec<Value>,
    /// Pods that must be labelled for the policy to select them.
    label_pods: bool,
    /// For a workload target, how each pod was found: its owner chain.
    owners: Vec<String>,
}

fn scope(target: &ResolvedTarget, run_id: &str, seen: &Observed) -> Result<Scope, ActionError> {
    match target.kind.kind {
        "Namespace" => {
            let name = target
                .name
                .clone()
                .ok_or_else(|| ActionError::InvalidParams(NAMESPACE_NEEDS_A_NAME.into()))?;
            common::observe(target, seen)?;
            let pods = seen
                .list("Pod", Some(&name), &Selector::default())?
                .to_vec();
            Ok(Scope {
                namespace: name,
                selector: json!({}),
                pods,
                label_pods: false,
                owners: Vec::new(),
            })
        }
        "Pod" => {
            let pods = common::observe(target, seen)?;
            let namespace = target.namespace.clone().unwrap_or_default();
            Ok(Scope {
                namespace,
                selector: json!({"matchLabels": {QUARANTINE_LABEL: run_id}}),
                pods,
                label_pods: true,
                owners: Vec::new(),
            })
        }
        _ => {
            let workloads = common::observe(target, seen)?;
            let workload = workloads
                .first()
                .ok_or_else(|| ActionError::NoMatch(target.to_string()))?;
            let namespace = object::namespace(workload).unwrap_or_default().to_string();
            let owned = owned::pods_of(seen, workload)?;
            if owned.is_empty() {
                return Err(ActionError::NoMatch(format!("pods owned by {target}")));
            }
            // Selected by the run's label on exactly these pods, never by the workload's
            // selector, which may match another workload's pods too.
            Ok(Scope {
                namespace,
                selector: json!({"matchLabels": {QUARANTINE_LABEL: run_id}}),
                pods: owned.iter().map(|o| o.pod.clone()).collect(),
                label_pods: true,
                owners: owned.iter().map(owned::OwnedPod::describe).collect(),
            })
        }
    }
}

fn policy_object(
    name: &str,
    namespace: &str,
    selector: &Value,
    with: &IsolateWith,
    input: &StepInput,
) -> Value {
    let peers = |ns: &String| json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}});
    let mut ingress = Vec::new();
    if !with.allow_namespaces.is_empty() {
        ingress.push(json!({"from": with.allow_namespaces.iter().map(peers).collect::<Vec<_>>()}));
    }
    let mut egress = Vec::new();
    if with.allow_dns {
        egress.push(json!({
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
        }));
    }
    if !with.allow_namespaces.is_empty() {
        egress.push(json!({"to": with.allow_namespaces.iter().map(peers).collect::<Vec<_>>()}));
    }
    if !with.allow_cidrs.is_empty() {
        egress.push(json!({"to": with.allow_cidrs.iter().map(|c| json!({"ipBlock": {"cidr": c}})).collect::<Vec<_>>()}));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {RUN_ID_LABEL: input.run_id, STEP_LABEL: input.step_id},
            "annotations": {"contain.dev/purpose": "incident quarantine: deny all traffic except the allow-lists"}
        },
        "spec": {"podSelector": selector, "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress}
    })
}

/// The policy a step creates unless it names one: `contain-isolate-<step>-<run>`, where
/// `<run>` is the random end of the run id, so a second run isolating another suspect in the
/// same namespace has a policy of its own. (A ClusterNetworkPolicy's `<step>` is prefixed by
/// the namespace.)
pub fn default_policy_name(step: &str, run_id: &str) -> String {
    let run = run_id.rsplit('-').next().unwrap_or_default();
    format!("contain-isolate-{step}-{}", run.to_ascii_lowercase())
}

/// How a workload's pods were picked, and what its later pods will not have.
fn owner_notes(scope: &Scope) -> Vec<String> {
    if scope.owners.is_empty() {
        return Vec::new();
    }
    let mut notes: Vec<String> = scope
        .owners
        .iter()
        .map(|chain| format!("owned: {chain}"))
        .collect();
    notes.push("the policy selects these pods by the run's quarantine label, not by the workload's selector: a pod the workload starts later is not isolated (stop it with `workload.suspend`)".into());
    notes
}

/// The isolation as one ClusterNetworkPolicy in the Admin tier: it overrides every
/// NetworkPolicy of the namespace, so none is patched or relabelled around.
fn plan_cluster_policy(
    input: &StepInput,
    target: &ResolvedTarget,
    with: &IsolateWith,
    scope: Scope,
    seen: &Observed,
) -> Result<StepPlan, ActionError> {
    let name: String = with
        .policy_name
        .clone()
        .unwrap_or_else(|| {
            default_policy_name(
                &format!("{}-{}", scope.namespace, input.step_id),
                &input.run_id,
            )
        })
        .chars()
        .take(253)
        .collect();
    object::validate_object_name("ClusterNetworkPolicy", &name)
        .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
    let policy_ref = ObjectRef::new("ClusterNetworkPolicy", None, &name);
    if let Some(existing) = seen.get(&policy_ref)?
        && object::labels(existing).get(RUN_ID_LABEL) != Some(&input.run_id)
    {
        return Err(ActionError::Refused(format!(
            "{policy_ref} already exists and was not created by this run; set `policy_name`"
        )));
    }
    let mut ops = vec![Op::Create {
        object: cluster_policy_object(&name, &scope.namespace, &scope.selector, with, input),
    }];
    let mut undo_labels = Vec::new();
    let mut selected_by = serde_json::Map::new();
    for pod in &scope.pods {
        if scope.label_pods {
            let wanted = vec![(
                meta_path("labels", QUARANTINE_LABEL),
                Some(Value::from(input.run_id.clone())),
            )];
            if let Some((op, undo)) = common::patch_pair(pod, common::changes_for(pod, &wanted)) {
                ops.push(op);
                undo_labels.push(undo);
            }
        }
        selected_by.insert(
            object::name(pod).unwrap_or_default().to_string(),
            json!([name]),
        );
    }
    let overridden: Vec<String> = policies::of_namespace(seen, &scope.namespace)?
        .iter()
        .filter(|p| {
            scope
                .pods
                .iter()
                .any(|pod| policies::selects(p, pod) && policies::admits_traffic(p))
        })
        .filter_map(|p| object::name(p).map(str::to_string))
        .collect();
    let mut notes = owner_notes(&scope);
    notes.push(format!(
        "mechanism: ClusterNetworkPolicy {name} in the Admin tier at priority 0 (the cluster serves the network-policy-api): its Deny rules override every NetworkPolicy, so none is patched"
    ));
    if !with.deny_cidrs.is_empty() {
        notes.push(format!(
            "targeted: only egress to {} is denied; everything else the pods may do stays as it is",
            with.deny_cidrs.join(", ")
        ));
    }
    if !overridden.is_empty() {
        notes.push(format!(
            "overridden for these pods: {} (they keep applying to every other pod)",
            overridden.join(", ")
        ));
    }
    notes.push("a ClusterNetworkPolicy is enforced by the network plugin that implements the network-policy-api".into());
    let mut inverse: Vec<Op> = undo_labels.into_iter().rev().collect();
    inverse.push(Op::delete_created(policy_ref, &input.run_id));
    let mut outputs = serde_json::Map::new();
    outputs.insert("policy".into(), Value::from(name.clone()));
    outputs.insert("namespace".into(), Value::from(scope.namespace.clone()));
    outputs.insert("pods".into(), common::names(&scope.pods));
    outputs.insert("other_policies".into(), json!([]));
    outputs.insert("selected_by".into(), Value::Object(selected_by));
    outputs.insert("mechanism".into(), Value::from(CLUSTER_POLICY));
    Ok(StepPlan {
        step: input.step_id.clone(),
        action: INFO.name.to_string(),
        summary: format!(
            "isolate {} pod(s) of {target} with ClusterNetworkPolicy {name}",
            scope.pods.len()
        ),
        ops,
        inverse,
        reversibility: Reversibility::Reversible,
        notes,
        outputs,
    })
}

/// Verifies an isolation made of a ClusterNetworkPolicy: it exists in the Admin tier, selects
/// each pod, and ends both directions with a deny-all.
fn verify_cluster_policy(
    plan: &StepPlan,
    seen: &Observed,
    mut verification: Verification,
) -> Result<Verification, ActionError> {
    let text = |key: &str| {
        plan.outputs
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (name, namespace) = (text("policy"), text("namespace"));
    let Some(policy) = seen.get(&ObjectRef::new("ClusterNetworkPolicy", None, &name))? else {
        verification.check(format!("ClusterNetworkPolicy {name} exists"), false, None);
        return Ok(verification);
    };
    verification.check(
        format!("ClusterNetworkPolicy {name} is in the Admin tier at priority 0"),
        policy["spec"]["tier"] == "Admin" && policy["spec"]["priority"] == 0,
        None,
    );
    let targeted = policy["spec"]["egress"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|r| r["name"] == "deny-cidrs"));
    if targeted {
        let denied = &policy["spec"]["egress"][0];
        verification.check(
            format!("its egress denies {}", denied["to"][0]["networks"]),
            denied["action"] == "Deny",
            None,
        );
    } else {
        for direction in ["ingress", "egress"] {
            let last = policy["spec"][direction]
                .as_array()
                .and_then(|rules| rules.last());
            verification.check(
                format!("its {direction} rules end with a deny-all"),
                last.is_some_and(|r| r["action"] == "Deny" && r["name"] == "deny-all"),
                None,
            );
        }
    }
    let pod_selector = policy
        .pointer("/spec/subject/pods/podSelector")
        .and_then(Selector::from_value)
        .unwrap_or_default();
    let namespace_selector = policy
        .pointer("/spec/subject/pods/namespaceSelector")
        .and_then(Selector::from_value)
        .unwrap_or_default();
    let namespace_labels = seen
        .get(&ObjectRef::new("Namespace", None, &namespace))?
        .map(object::labels)
        .unwrap_or_default();
    let pods = plan
        .outputs
        .get("selected_by")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    for pod_name in pods {
        match seen.get(&ObjectRef::new("Pod", Some(&namespace), &pod_name))? {
            Some(pod) => verification.check(
                format!("pod {pod_name} is a subject of {name}"),
                namespace_selector.matches(&namespace_labels)
                    && pod_selector.matches(&object::labels(pod)),
                None,
            ),
            None => verification.not_checked(
                format!("pod {pod_name} is a subject of {name}"),
                "the pod is gone since the plan: nothing left to isolate",
            ),
        }
    }
    Ok(verification)
}

/// Why a namespace's isolation needs the namespace's name.
const NAMESPACE_NEEDS_A_NAME: &str = "a Namespace target needs a name";

/// Why exclusive isolation needs pods as its target.
const EXCLUSIVE_NEEDS_PODS: &str = "`exclusive` needs pods or a workload as its target (by name or selector): the quarantine label their pods get is what takes them out of the other policies";

/// `exclusive: true` on a Namespace target: the other policies can only be told to leave out
/// pods that carry the quarantine label, and a namespace's pods do not get it.
fn exclusive_without_pods(step: &StaticStep) -> bool {
    step.with.get("exclusive").and_then(Value::as_bool) == Some(true)
        && step.kind == Some("Namespace")
}

impl Action for Isolate {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<IsolateWith>()
    }

    fn check_static(&self, step: &StaticStep) -> Vec<StaticProblem> {
        let mut problems = Vec::new();
        if exclusive_without_pods(step) {
            problems.push(StaticProblem::at(
                StaticPlace::With("exclusive"),
                EXCLUSIVE_NEEDS_PODS,
            ));
        }
        if step.kind == Some("Namespace") && step.picks != Some(super::Picks::Named) {
            problems.push(StaticProblem::at(
                StaticPlace::Target,
                NAMESPACE_NEEDS_A_NAME,
            ));
        }
        for namespace in step.literals("allow_namespaces") {
            if let Err(e) = object::validate_namespace(namespace) {
                problems.push(StaticProblem::at(
                    StaticPlace::With("allow_namespaces"),
                    e.to_string(),
                ));
            }
        }
        if let Some(name) = step.literal("policy_name")
            && let Err(e) = object::validate_object_name("NetworkPolicy", name)
        {
            problems.push(StaticProblem::at(
                StaticPlace::With("policy_name"),
                e.to_string(),
            ));
        }
        problems
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let with: IsolateWith = decode_with(&input.with)?;
        for ns in &with.allow_namespaces {
            object::validate_namespace(ns)
                .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
        }
        let target = input.required_target()?;
        let scope = scope(target, &input.run_id, seen)?;
        let name = with
            .policy_name
            .clone()
            .unwrap_or_else(|| default_policy_name(&input.step_id, &input.run_id));
        object::validate_object_name("NetworkPolicy", &name)
            .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
        let served = seen.serves("ClusterNetworkPolicy")?;
        let cluster_policy = match with.mechanism {
            Mechanism::NetworkPolicy => false,
            Mechanism::Auto => served,
            Mechanism::ClusterPolicy if served => true,
            Mechanism::ClusterPolicy => {
                return Err(ActionError::Refused(
                    "`mechanism: cluster-policy`: the cluster does not serve ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1)".into(),
                ));
            }
        };
        if !with.deny_cidrs.is_empty() && !cluster_policy {
            return Err(ActionError::Refused(
                "`deny_cidrs` needs a cluster-scoped policy API (ClusterNetworkPolicy), which this cluster does not serve: a NetworkPolicy can only allow, never deny".into(),
            ));
        }
        if cluster_policy {
            return plan_cluster_policy(input, target, &with, scope, seen);
        }
        let policy_ref = ObjectRef::new("NetworkPolicy", Some(&scope.namespace), &name);
        if let Some(existing) = seen.get(&policy_ref)?
            && object::labels(existing).get(RUN_ID_LABEL) != Some(&input.run_id)
        {
            return Err(ActionError::Refused(format!(
                "{policy_ref} already exists and was not created by this run; set `policy_name`"
            )));
        }
        let others: Vec<Value> = policies::of_namespace(seen, &scope.namespace)?
            .iter()
            .filter(|p| object::name(p) != Some(name.as_str()))
            .cloned()
            .collect();
        let mut ops = Vec::new();
        let mut undo_labels = Vec::new();
        let mut notes = owner_notes(&scope);
        let mut still_admitting = std::collections::BTreeSet::new();
        let mut deny_only = std::collections::BTreeSet::new();
        let mut selected_by = serde_json::Map::new();
        let mut to_patch: BTreeMap<String, Value> = BTreeMap::new();
        for pod in &scope.pods {
            for policy in others
                .iter()
                .filter(|p| policies::selects(p, pod) && !policies::admits_traffic(p))
            {
                deny_only.insert(object::name(policy).unwrap_or_default().to_string());
            }
            let mut wanted = Vec::new();
            if scope.label_pods {
                wanted.push((
                    meta_path("labels", QUARANTINE_LABEL),
                    Some(Value::from(input.run_id.clone())),
                ));
            }
            let admitting: Vec<&Value> = others
                .iter()
                .filter(|p| policies::selects(p, pod) && policies::admits_traffic(p))
                .collect();
            let mut expected = vec![Value::from(name.clone())];
            if with.exclusive && !admitting.is_empty() && !scope.label_pods {
                return Err(ActionError::Refused(EXCLUSIVE_NEEDS_PODS.into()));
            }
            if with.exclusive
                && !admitting.is_empty()
                && with.exclusive_by == ExclusiveBy::PolicyPatch
            {
                for policy in admitting {
                    let policy_name = object::name(policy).unwrap_or_default().to_string();
                    to_patch
                        .entry(policy_name)
                        .or_insert_with(|| policy.clone());
                }
            } else if with.exclusive && !admitting.is_empty() {
                let mut removed = BTreeMap::new();
                for policy in &admitting {
                    let policy_name = object::name(policy).unwrap_or_default();
                    let keys = policies::escape_keys(policy).ok_or_else(|| {
                        ActionError::Refused(format!(
                            "`exclusive`: NetworkPolicy {}/{policy_name} selects every pod (or selects by absence of labels) and admits traffic; no relabelling can escape it",
                            scope.namespace
                        ))
                    })?;
                    for key in keys {
                        if let Some(value) = object::labels(pod).get(&key) {
                            removed.insert(key, value.clone());
                        }
                    }
                }
                for key in removed.keys() {
                    wanted.push((meta_path("labels", key), None));
                }
                wanted.push((
                    meta_path("annotations", REMOVED_LABELS),
                    Some(Value::from(
                        serde_json::to_string(&removed).unwrap_or_default(),
                    )),
                ));
                notes.push(format!(
                    "exclusive: {} loses labels {} (it leaves its controller's and Services' selectors too)",
                    object::name(pod).unwrap_or_default(),
                    removed.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            } else {
                for policy in admitting {
                    let policy_name = object::name(policy).unwrap_or_default().to_string();
                    expected.push(Value::from(policy_name.clone()));
                    still_admitting.insert(policy_name);
                }
            }
            selected_by.insert(
                object::name(pod).unwrap_or_default().to_string(),
                Value::Array(expected),
            );
            if let Some((op, undo)) = common::patch_pair(pod, common::changes_for(pod, &wanted)) {
                ops.push(op);
                undo_labels.push(undo);
            }
        }
        // Exclusive by policy patch: each other admitting policy stops selecting the
        // quarantined pods, and only them.
        let mut policy_patches = Vec::new();
        let mut policy_restores = Vec::new();
        if !to_patch.is_empty() {
            let suspects: std::collections::BTreeSet<&str> =
                scope.pods.iter().filter_map(object::name).collect();
            let everyone = seen
                .list("Pod", Some(&scope.namespace), &Selector::default())?
                .to_vec();
            for (policy_name, policy) in &to_patch {
                let Some(expressions) = excluding_quarantined(policy) else {
                    // Another run's isolation already excludes quarantined pods here. This run
                    // relies on it too, so its rollback takes the exclusion out once no other
                    // run's pod is quarantined (the executor keeps it while one still is).
                    if let Some(undo) = shared_exclusion_undo(policy) {
                        notes.push(format!(
                            "exclusive: NetworkPolicy {policy_name} already excludes quarantined pods (another run's isolation); a rollback removes that exclusion once no quarantined pod is left"
                        ));
                        policy_restores.push(undo);
                    }
                    continue;
                };
                let path: Vec<String> = ["spec", "podSelector", "matchExpressions"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let changes = common::changes_for(policy, &[(path, Some(expressions.clone()))]);
                let Some((op, undo)) = common::patch_pair(policy, changes) else {
                    continue;
                };
                // Whom the patched selector stops covering, judged with the quarantine
                // label on the target pods: it must be the suspects and nobody else.
                let mut patched = policy.clone();
                patched["spec"]["podSelector"]["matchExpressions"] = expressions;
                let dropped: Vec<&str> = everyone
                    .iter()
                    .filter(|p| {
                        let name = object::name(p).unwrap_or_default();
                        let mut labelled = (*p).clone();
                        if suspects.contains(name) {
                            labelled["metadata"]["labels"][QUARANTINE_LABEL] =
                                Value::from(input.run_id.clone());
                        }
                        policies::selects(policy, p) && !policies::selects(&patched, &labelled)
                    })
                    .filter_map(object::name)
                    .collect();
                if dropped.iter().any(|d| !suspects.contains(d)) {
                    return Err(ActionError::Refused(format!(
                        "`exclusive`: excluding the quarantine label from NetworkPolicy {}/{policy_name} would also drop {}; refusing",
                        scope.namespace,
                        dropped.join(", ")
                    )));
                }
                notes.push(format!(
                    "exclusive (policy patch): NetworkPolicy {policy_name} gets `{QUARANTINE_LABEL} DoesNotExist` in its podSelector: it stops covering {} and keeps every other pod exactly as before (restored by rollback)",
                    dropped.join(", ")
                ));
                policy_patches.push(op);
                policy_restores.push(undo);
            }
            notes.push("exclusive: by policy patch, so the pods keep their labels, their controller and their Services; `exclusive_by: relabel` relabels them instead".into());
        }
        if !still_admitting.is_empty() {
            notes.push(format!(
                "policies add up: {} still select{} these pods and admit traffic; use `exclusive: true` to take the pods out of them",
                still_admitting.iter().cloned().collect::<Vec<_>>().join(", "),
                if still_admitting.len() == 1 { "s" } else { "" }
            ));
        }
        if !deny_only.is_empty() {
            notes.push(format!(
                "also selected by deny-only {}: {} (they admit nothing, so they do not weaken the isolation)",
                if deny_only.len() == 1 { "policy" } else { "policies" },
                deny_only.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if !scope.label_pods {
            notes.push("the policy uses the target's own pod selector: pods created later are isolated too".into());
        }
        notes.push("NetworkPolicy is enforced by the cluster's network plugin; a cluster without one ignores it".into());
        let policy = policy_object(&name, &scope.namespace, &scope.selector, &with, input);
        // The policy first: its pod selector matches nothing until the pods are labelled,
        // and once they are, they are isolated at once.
        ops.insert(0, Op::Create { object: policy });
        // The other policies exclude the label before any pod carries it, so the moment a
        // pod is labelled it is under the quarantine alone.
        for (i, patch) in policy_patches.into_iter().enumerate() {
            ops.insert(1 + i, patch);
        }
        let mut inverse: Vec<Op> = undo_labels.into_iter().rev().collect();
        inverse.extend(policy_restores.into_iter().rev());
        inverse.push(Op::delete_created(policy_ref.clone(), &input.run_id));
        let mut outputs = serde_json::Map::new();
        outputs.insert("policy".into(), Value::from(name.clone()));
        outputs.insert("namespace".into(), Value::from(scope.namespace.clone()));
        outputs.insert("pods".into(), common::names(&scope.pods));
        outputs.insert(
            "other_policies".into(),
            Value::from(still_admitting.iter().cloned().collect::<Vec<_>>()),
        );
        outputs.insert("selected_by".into(), Value::Object(selected_by));
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: format!(
                "isolate {} pod(s) of {target} with NetworkPolicy {name}",
                scope.pods.len()
            ),
            ops,
            inverse,
            reversibility: Reversibility::Reversible,
            notes,
            outputs,
        })
    }

    fn verify_access(&self, input: &StepInput, plan: &StepPlan) -> Vec<Access> {
        let mut reads = super::common::reads_in_target_namespace(
            input,
            &[("list", "NetworkPolicy"), ("get", "Pod")],
        );
        reads.extend(super::reads_of_writes(plan));
        reads
    }

    fn verify(
        &self,
        _input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let mut verification = common::verify_patches(&plan.ops, seen)?;
        if plan.outputs.get("mechanism").and_then(Value::as_str) == Some(CLUSTER_POLICY) {
            return verify_cluster_policy(plan, seen, verification);
        }
        let namespace = plan
            .outputs
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = plan
            .outputs
            .get("policy")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let all = policies::of_namespace(seen, &namespace)?;
        if !all.iter().any(|p| object::name(p) == Some(name.as_str())) {
            verification.check(
                format!("NetworkPolicy {namespace}/{name} exists"),
                false,
                None,
            );
            return Ok(verification);
        }
        let expected = plan
            .outputs
            .get("selected_by")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let pod_refs: Vec<ObjectRef> = expected
            .keys()
            .map(|pod| ObjectRef::new("Pod", Some(&namespace), pod))
            .collect();
        let pods = seen.get_all(&pod_refs)?;
        for (pod_name, pod) in expected.keys().zip(pods) {
            let Some(pod) = pod else {
                verification.not_checked(
                    format!("pod {pod_name} is isolated"),
                    "the pod is gone since the plan: nothing left to isolate",
                );
                continue;
            };
            // The effective access, from every policy of the namespace and both directions:
            // the isolation holds only when the quarantine's own allow-list is all that
            // admits anything. Another policy that still admits traffic fails the check
            // (policies add up), whatever the plan warned.
            for direction in [Direction::Ingress, Direction::Egress] {
                let effective = netpol::effective(all, pod, direction);
                let mut extra: Vec<&str> = effective
                    .admitting
                    .iter()
                    .map(|a| a.policy.as_str())
                    .filter(|p| *p != name)
                    .collect();
                extra.sort();
                extra.dedup();
                let isolated = effective.isolating.iter().any(|p| p == &name);
                let word = match direction {
                    Direction::Ingress => "ingress",
                    Direction::Egress => "egress",
                };
                let detail = if !isolated {
                    Some(format!("{name} does not isolate its {word}"))
                } else if !extra.is_empty() {
                    Some(format!(
                        "{} also admit{} {word} traffic (policies add up; `exclusive: true` takes the pod out of them)",
                        extra.join(", "),
                        if extra.len() == 1 { "s" } else { "" }
                    ))
                } else {
                    None
                };
                let what = format!("pod {pod_name}: only {name}'s allow-list admits {word}");
                verification.check(what, detail.is_none(), detail);
            }
        }
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{cluster, input, named, namespace, plan, pod, shown};
    use super::*;

    fn allow_web() -> Value {
        json!({"kind": "NetworkPolicy", "metadata": {"name": "allow-web", "namespace": "shop"},
               "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}], "policyTypes": ["Ingress"]}})
    }

    fn objects() -> Vec<Value> {
        vec![
            namespace("shop"),
            allow_web(),
            pod("shop", "web-1", json!({"app": "web"}), None),
        ]
    }

    fn isolate(with: Value) -> Result<StepPlan, ActionError> {
        let step = input("cut", Some(named("Pod", Some("shop"), "web-1")), with);
        plan(&Isolate, &step, &cluster(objects()))
    }

    #[test]
    fn a_workload_is_isolated_by_the_pods_it_owns_never_a_bystander_matching_its_selector() {
        let daemon = |name: &str, uid: &str| {
            json!({"kind": "DaemonSet", "metadata": {"name": name, "namespace": "shop", "uid": uid},
                   "spec": {"selector": {"matchLabels": {"app": "agent"}}}})
        };
        let mut miner_pod = pod(
            "shop",
            "miner-a",
            json!({"app": "agent"}),
            Some(("DaemonSet", "miner")),
        );
        miner_pod["metadata"]["ownerReferences"][0]["uid"] = json!("ds-miner");
        let mut bystander = pod(
            "shop",
            "agent-a",
            json!({"app": "agent"}),
            Some(("DaemonSet", "agent")),
        );
        bystander["metadata"]["ownerReferences"][0]["uid"] = json!("ds-agent");
        let sim = cluster(vec![
            namespace("shop"),
            daemon("miner", "ds-miner"),
            daemon("agent", "ds-agent"),
            miner_pod,
            bystander,
        ]);
        let step = input(
            "cut",
            Some(named("DaemonSet", Some("shop"), "miner")),
            json!({}),
        );
        let planned = plan(&Isolate, &step, &sim).unwrap();
        let text = shown(&planned);
        assert!(
            text.contains(r#"podSelector: {"matchLabels":{"contain.dev/quarantine":"run-1"}}"#),
            "{text}"
        );
        assert!(text.contains("~ patch Pod shop/miner-a"), "{text}");
        assert!(
            !text.contains("agent-a"),
            "the bystander is never touched: {text}"
        );
        assert!(
            planned
                .notes
                .contains(&"owned: Pod shop/miner-a ← DaemonSet shop/miner".to_string()),
            "{:?}",
            planned.notes
        );
        assert_eq!(planned.outputs["pods"], json!(["miner-a"]));
    }

    #[test]
    fn an_exclusion_another_run_added_is_taken_out_by_this_run_s_rollback_too() {
        let mut shared = allow_web();
        shared["spec"]["podSelector"]["matchExpressions"] =
            json!([{"key": QUARANTINE_LABEL, "operator": "DoesNotExist"}]);
        let sim = cluster(vec![
            namespace("shop"),
            shared,
            pod("shop", "web-1", json!({"app": "web"}), None),
        ]);
        let step = input(
            "cut",
            Some(named("Pod", Some("shop"), "web-1")),
            json!({"exclusive": true}),
        );
        let planned = plan(&Isolate, &step, &sim).unwrap();
        let text = shown(&planned);
        assert!(
            !text.contains("~ patch NetworkPolicy shop/allow-web (1 field)\n        spec"),
            "no forward patch: {text}"
        );
        let undo = planned
            .inverse
            .iter()
            .find(|op| op.target().is_some_and(|t| t.name == "allow-web"))
            .unwrap_or_else(|| panic!("{text}"));
        let Op::Patch { changes, .. } = undo else {
            panic!("{undo:?}")
        };
        assert_eq!(changes[0].after, None, "the exclusion was all there was");
        assert!(
            planned
                .notes
                .iter()
                .any(|n| n.contains("already excludes quarantined pods")),
            "{:?}",
            planned.notes
        );
    }

    #[test]
    fn isolation_labels_the_pod_and_creates_a_deny_policy_keeping_dns_and_says_what_still_admits() {
        let planned = isolate(json!({})).unwrap();
        let text = shown(&planned);
        for line in [
            "+ create NetworkPolicy shop/contain-isolate-cut-1",
            r#"podSelector: {"matchLabels":{"contain.dev/quarantine":"run-1"}}"#,
            "ingress: deny all",
            r#""k8s-app":"kube-dns""#,
            r#"metadata.labels["contain.dev/quarantine"]: (none) → "run-1""#,
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // Policies add up: the plan names the one that still admits traffic.
        assert_eq!(planned.outputs["other_policies"], json!(["allow-web"]));
        assert!(
            planned
                .notes
                .iter()
                .any(|n| n.contains("allow-web still selects"))
        );
        // Undone in reverse: the label first, then the policy.
        assert!(matches!(
            &planned.inverse[..],
            [Op::Patch { .. }, Op::Delete { .. }]
        ));
    }

    #[test]
    fn exclusive_isolation_patches_every_admitting_policy_and_undoes_the_patch() {
        let planned = isolate(json!({"exclusive": true})).unwrap();
        let text = shown(&planned);
        assert!(
            text.contains(r#"spec.podSelector.matchExpressions: (none) → [{"key":"contain.dev/quarantine","operator":"DoesNotExist"}]"#),
            "{text}"
        );
        assert!(
            text.contains(r#"spec.podSelector.matchExpressions: [{"key":"contain.dev/quarantine","operator":"DoesNotExist"}] → (none)"#),
            "{text}"
        );
        assert_eq!(planned.outputs["other_policies"], json!([]));
        assert_eq!(
            planned.outputs["selected_by"],
            json!({"web-1": ["contain-isolate-cut-1"]})
        );
    }

    #[test]
    fn a_deny_rule_needs_a_cluster_policy_api_and_a_namespace_cannot_be_isolated_exclusively() {
        let refused = isolate(json!({"deny_cidrs": ["203.0.113.0/24"]}))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("`deny_cidrs` needs a cluster-scoped policy API"),
            "{refused}"
        );
        let step = input(
            "cut",
            Some(named("Namespace", None, "shop")),
            json!({"exclusive": true}),
        );
        let refused = plan(&Isolate, &step, &cluster(objects()))
            .unwrap_err()
            .to_string();
        assert!(refused.contains(EXCLUSIVE_NEEDS_PODS), "{refused}");
    }
}

#[cfg(test)]
mod verification {
    use serde_json::json;

    use super::super::fixture::{applied, cluster, input, named, namespace, plan, pod, verify};
    use super::*;
    use crate::outcome::CheckStatus;

    fn objects() -> Vec<Value> {
        vec![
            namespace("shop"),
            json!({"kind": "NetworkPolicy", "metadata": {"name": "allow-web", "namespace": "shop"},
                   "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}], "policyTypes": ["Ingress"]}}),
            pod("shop", "web-1", json!({"app": "web"}), None),
        ]
    }

    /// The checks isolation makes once its plan is applied, by what fails.
    fn failed_checks(with: Value) -> Vec<String> {
        let step = input("cut", Some(named("Pod", Some("shop"), "web-1")), with);
        let planned = plan(&Isolate, &step, &cluster(objects())).unwrap();
        let after = cluster(applied(objects(), &planned.ops));
        let found = verify(&Isolate, &step, &planned, &after).unwrap();
        assert!(!found.checks.is_empty());
        found
            .checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
            .map(|c| c.what.clone())
            .collect()
    }

    #[test]
    fn isolation_is_not_verified_while_another_policy_still_admits_traffic() {
        // Policies add up: the quarantine policy landed, but allow-web still lets traffic in.
        let failed = failed_checks(json!({}));
        assert_eq!(
            failed,
            ["pod web-1: only contain-isolate-cut-1's allow-list admits ingress"],
            "verified although allow-web still admits ingress"
        );
    }

    #[test]
    fn exclusive_isolation_is_verified_from_every_policy_of_the_namespace() {
        assert_eq!(
            failed_checks(json!({"exclusive": true})),
            Vec::<String>::new()
        );
    }
}
