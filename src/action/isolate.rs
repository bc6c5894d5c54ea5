//! `network.isolate`: cut pods off the network with a deny-all NetworkPolicy (Ingress and
//! Egress), with optional allow-lists. The target is a pod (by name or selector), a workload
//! (its pod selector, so replacement pods are isolated too) or a whole namespace.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::common::{self, RUN_ID_LABEL, STEP_LABEL, meta_path};
use super::policies;
use super::{
    Action, ActionError, ActionInfo, ResolvedTarget, StepInput, TargetRule, Verification,
    decode_with, schema_of,
};
use crate::cluster::Access;
use crate::cluster::object::{self, ObjectRef, Selector};
use crate::cluster::{BoxFuture, Cluster, kinds};
use crate::plan::{Op, Reversibility, StepPlan};

pub struct Isolate;

/// The label that puts a pod under a quarantine policy; its value is the run id.
pub const QUARANTINE_LABEL: &str = "contain.dev/quarantine";
/// Where `exclusive` keeps the labels it removed.
pub const REMOVED_LABELS: &str = "contain.dev/isolation-removed-labels";

static INFO: ActionInfo = ActionInfo {
    name: "network.isolate",
    summary: "Deny all ingress and egress of the target pods, except what the allow-lists name.",
    changes: "creates a NetworkPolicy; labels target pods (by name or selector) so the policy selects them",
    undo: "deletes the policy and restores the pods' labels",
    reversible: true,
    destroys_evidence: false,
    target: TargetRule::Required(&[
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
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
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IsolateWith {
    /// Name of the NetworkPolicy (default `contain-isolate-<step id>`).
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
    /// Relabel the pods so that no other policy that admits traffic still selects them.
    #[serde(default)]
    pub exclusive: bool,
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
}

async fn scope(
    target: &ResolvedTarget,
    run_id: &str,
    cluster: &dyn Cluster,
) -> Result<Scope, ActionError> {
    let pods_kind = kinds::lookup("Pod").expect("known kind");
    match target.kind.kind {
        "Namespace" => {
            let name = target.name.clone().ok_or_else(|| {
                ActionError::InvalidParams("a Namespace target needs a name".into())
            })?;
            common::observe(target, cluster).await?;
            let pods = cluster
                .list(pods_kind, Some(&name), &Selector::default())
                .await?;
            Ok(Scope {
                namespace: name,
                selector: json!({}),
                pods,
                label_pods: false,
            })
        }
        "Pod" => {
            let pods = common::observe(target, cluster).await?;
            let namespace = target.namespace.clone().unwrap_or_default();
            Ok(Scope {
                namespace,
                selector: json!({"matchLabels": {QUARANTINE_LABEL: run_id}}),
                pods,
                label_pods: true,
            })
        }
        _ => {
            let workloads = common::observe(target, cluster).await?;
            let workload = workloads
                .first()
                .ok_or_else(|| ActionError::NoMatch(target.to_string()))?;
            let selector_value = workload
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or(json!({}));
            let selector = Selector::from_value(&selector_value).unwrap_or_default();
            if selector.is_empty() {
                return Err(ActionError::Refused(format!(
                    "{target} has no pod selector to isolate by"
                )));
            }
            let namespace = object::namespace(workload).unwrap_or_default().to_string();
            let pods = cluster.list(pods_kind, Some(&namespace), &selector).await?;
            Ok(Scope {
                namespace,
                selector: selector_value,
                pods,
                label_pods: false,
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

impl Action for Isolate {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<IsolateWith>()
    }

    fn plan<'a>(
        &'a self,
        input: &'a StepInput,
        cluster: &'a dyn Cluster,
    ) -> BoxFuture<'a, Result<StepPlan, ActionError>> {
        Box::pin(async move {
            let with: IsolateWith = decode_with(&input.with)?;
            for ns in &with.allow_namespaces {
                object::validate_namespace(ns)
                    .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
            }
            let target = input.required_target()?;
            let scope = scope(target, &input.run_id, cluster).await?;
            let name = with
                .policy_name
                .clone()
                .unwrap_or_else(|| format!("contain-isolate-{}", input.step_id));
            object::validate_object_name("NetworkPolicy", &name)
                .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
            let policy_ref = ObjectRef::new("NetworkPolicy", Some(&scope.namespace), &name);
            if let Some(existing) = cluster.get(&policy_ref).await?
                && object::labels(&existing).get(RUN_ID_LABEL) != Some(&input.run_id)
            {
                return Err(ActionError::Refused(format!(
                    "{policy_ref} already exists and was not created by this run; set `policy_name`"
                )));
            }
            let others: Vec<Value> = cluster
                .list(
                    kinds::lookup("NetworkPolicy").expect("known kind"),
                    Some(&scope.namespace),
                    &Selector::default(),
                )
                .await?
                .into_iter()
                .filter(|p| object::name(p) != Some(name.as_str()))
                .collect();
            let mut ops = Vec::new();
            let mut undo_labels = Vec::new();
            let mut notes = Vec::new();
            let mut still_admitting = std::collections::BTreeSet::new();
            let mut deny_only = std::collections::BTreeSet::new();
            let mut selected_by = serde_json::Map::new();
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
                if with.exclusive && !admitting.is_empty() {
                    if !scope.label_pods {
                        return Err(ActionError::Refused("`exclusive` needs pod targets (by name or selector): a workload's or namespace's pods cannot be relabelled out of other policies".into()));
                    }
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
                if let Some((op, undo)) = common::patch_pair(pod, common::changes_for(pod, &wanted))
                {
                    ops.push(op);
                    undo_labels.push(undo);
                }
            }
            if !still_admitting.is_empty() {
                notes.push(format!(
                    "policies add up: {} still select{} these pods and admit traffic; use `exclusive: true` to relabel the pods out of them",
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
            let mut inverse: Vec<Op> = undo_labels.into_iter().rev().collect();
            inverse.push(Op::Delete {
                target: policy_ref.clone(),
                uid: None,
                run_id: Some(input.run_id.clone()),
                grace_period_seconds: None,
            });
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
        })
    }

    fn verify_access(&self, input: &StepInput, plan: &StepPlan) -> Vec<Access> {
        let mut reads = super::common::reads_in_target_namespace(
            input,
            &[("list", "NetworkPolicy"), ("get", "Pod")],
        );
        reads.extend(
            plan.ops
                .iter()
                .filter(|op| op.is_write())
                .flat_map(|op| op.access())
                .filter(|a| a.verb == "get"),
        );
        reads
    }

    fn verify<'a>(
        &'a self,
        _input: &'a StepInput,
        plan: &'a StepPlan,
        cluster: &'a dyn Cluster,
    ) -> BoxFuture<'a, Result<Verification, ActionError>> {
        Box::pin(async move {
            let mut verification = common::verify_patches(&plan.ops, cluster).await?;
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
            let all = cluster
                .list(
                    kinds::lookup("NetworkPolicy").expect("known kind"),
                    Some(&namespace),
                    &Selector::default(),
                )
                .await?;
            let Some(ours) = all.iter().find(|p| object::name(p) == Some(name.as_str())) else {
                verification.check(
                    format!("NetworkPolicy {namespace}/{name} exists"),
                    false,
                    None,
                );
                return Ok(verification);
            };
            let expected = plan
                .outputs
                .get("selected_by")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (pod_name, wanted) in expected {
                let Some(pod) = cluster
                    .get(&ObjectRef::new("Pod", Some(&namespace), &pod_name))
                    .await?
                else {
                    verification.not_checked(
                        format!("pod {pod_name} is isolated"),
                        "the pod is gone since the plan: nothing left to isolate",
                    );
                    continue;
                };
                let mut selecting: Vec<String> = all
                    .iter()
                    .filter(|p| {
                        policies::selects(p, &pod) && (policies::admits_traffic(p) || *p == ours)
                    })
                    .filter_map(|p| object::name(p).map(str::to_string))
                    .collect();
                let mut wanted: Vec<String> = wanted
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                selecting.sort();
                wanted.sort();
                verification.check(
                    format!(
                        "pod {pod_name} is selected by exactly {}",
                        wanted.join(", ")
                    ),
                    selecting == wanted,
                    (selecting != wanted).then(|| format!("selected by {}", selecting.join(", "))),
                );
            }
            Ok(verification)
        })
    }
}
