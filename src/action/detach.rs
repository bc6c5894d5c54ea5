//! `pod.detach`: take a suspect pod out of its controller's and Services' selectors, so the
//! controller starts a clean replacement and no traffic is routed to the suspect, which keeps
//! running for investigation. The removed labels are kept in an annotation and the journal.

use crate::cluster::Watch;
use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::common::{self, meta_path};
use super::{
    Action, ActionError, ActionInfo, Observed, StepInput, TargetRule, Verification, decode_with,
    schema_of,
};
use crate::cluster::Access;
use crate::cluster::kinds;
use crate::cluster::object::controller_of;
use crate::cluster::object::{self, ObjectRef, Selector};
use crate::plan::{Op, Reversibility, StepPlan};

pub struct Detach;

/// Marks a detached pod.
pub const DETACHED_LABEL: &str = "contain.dev/detached";
/// The labels taken off the pod, as JSON.
pub const DETACHED_LABELS: &str = "contain.dev/detached-labels";
/// Which pod a ReplicaSet deletes first when it has one too many: the lowest cost goes.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// The highest cost there is, so the suspect is the last pod its controller would delete.
const HIGHEST_COST: &str = "2147483647";

static INFO: ActionInfo = ActionInfo {
    name: "pod.detach",
    summary: "Relabel a pod out of its controller's and Services' selectors; a clean replica takes its place.",
    changes: "the pod's labels (the selector labels removed, contain.dev/detached added) and an annotation keeping the originals",
    undo: "restores the original labels; the pod keeps the highest pod-deletion-cost, so when its controller adopts it again and scales back to its replica count it deletes the replacement, not the suspect",
    reversible: true,
    destroys_evidence: false,
    target: TargetRule::Required(&["Pod"]),
    outputs: &[
        (
            "controller",
            "Kind/name of the controller that will replace the pod, if any",
        ),
        (
            "services",
            "names of the Services that stop routing to the pod",
        ),
        ("removed_labels", "the labels taken off the pod"),
    ],
};

/// `with` of `pod.detach`.
#[derive(Deserialize, serde::Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DetachWith {
    /// How long verification waits for the replacement and the endpoints (default 60s).
    #[serde(default)]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub wait: Option<String>,
}

fn selector_keys(selector: &Selector) -> Vec<String> {
    let mut keys: Vec<String> = selector.match_labels.keys().cloned().collect();
    keys.extend(
        selector
            .match_expressions
            .iter()
            .filter(|r| matches!(r.operator.as_str(), "In" | "Exists"))
            .map(|r| r.key.clone()),
    );
    keys
}

impl Action for Detach {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<DetachWith>()
    }

    /// It acts on one object, named by the target.
    fn one_object(&self) -> bool {
        true
    }

    /// A detach works on one pod: a wide target detaches each match as its own part.
    fn fan_out(&self) -> super::FanOut {
        super::FanOut::PerObject
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let _: DetachWith = decode_with(&input.with)?;
        let target = input.required_target()?;
        let pod = common::observe_named(input, INFO.name, seen)?;
        let namespace = object::namespace(&pod).unwrap_or_default().to_string();
        let labels = object::labels(&pod);
        let mut keys = Vec::new();
        let mut notes = Vec::new();
        let mut controller = Value::Null;
        match controller_of(&pod) {
            Some((kind, name)) if kind == "StatefulSet" => {
                return Err(ActionError::Refused(format!(
                    "pod {} belongs to StatefulSet {name}, which keeps pods by name: a replacement cannot start while the suspect keeps its name; isolate it with network.isolate instead",
                    object::name(&pod).unwrap_or_default()
                )));
            }
            Some((kind, name)) => {
                let owner = match kinds::lookup(&kind) {
                    Some(k) => seen
                        .get(&ObjectRef::new(k.kind, Some(&namespace), &name))?
                        .cloned(),
                    None => None,
                };
                match owner
                    .as_ref()
                    .and_then(|o| o.pointer("/spec/selector"))
                    .and_then(Selector::from_value)
                {
                    Some(selector) if kind == "DaemonSet" => {
                        keys.extend(selector_keys(&selector));
                        notes.push(format!(
                            "DaemonSet {name} will no longer count this pod and will start a replacement on the same node ({}), from the same template: the same image and the same configuration that was compromised; to stop it, suspend the DaemonSet with `workload.suspend`",
                            pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("unscheduled")
                        ));
                    }
                    Some(selector) => {
                        keys.extend(selector_keys(&selector));
                        notes.push(format!("{kind} {name} will no longer count this pod and will start a replacement"));
                    }
                    None => notes.push(format!(
                        "{kind} {name} not found or has no selector: nothing will replace the pod"
                    )),
                }
                controller = Value::from(format!("{kind}/{name}"));
            }
            None => notes.push("the pod has no controller: nothing will replace it".into()),
        }
        let services = seen.list("Service", Some(&namespace), &Selector::default())?;
        let mut routed = Vec::new();
        for service in services {
            let selector = object::string_map(service.pointer("/spec/selector"));
            if !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                keys.extend(selector.keys().cloned());
                routed.push(object::name(service).unwrap_or_default().to_string());
            }
        }
        if !routed.is_empty() {
            notes.push(format!(
                "traffic from Service(s) {} no longer reaches the pod",
                routed.join(", ")
            ));
        }
        let removed: BTreeMap<String, String> = keys
            .iter()
            .filter_map(|k| Some((k.clone(), labels.get(k)?.clone())))
            .collect();
        let mut wanted: Vec<common::Wanted> = removed
            .keys()
            .map(|k| (meta_path("labels", k), None))
            .collect();
        // When a rollback hands the pod back, its controller has one pod too many and
        // deletes one: with the highest deletion cost, that is the replacement, never the
        // suspect (the evidence). The cost stays on the pod after the rollback.
        let protect = !controller.is_null() && !removed.is_empty();
        if protect {
            wanted.push((
                meta_path("annotations", DELETION_COST),
                Some(Value::from(HIGHEST_COST)),
            ));
            notes.push(format!(
                "the pod gets {DELETION_COST}={HIGHEST_COST} and keeps it after a rollback, so its controller scales down the replacement, not the suspect, when the labels come back"
            ));
        }
        wanted.push((
            meta_path("labels", DETACHED_LABEL),
            Some(Value::from("true")),
        ));
        wanted.push((
            meta_path("annotations", DETACHED_LABELS),
            Some(Value::from(
                serde_json::to_string(&removed).unwrap_or_default(),
            )),
        ));
        let (ops, inverse): (Vec<Op>, Vec<Op>) =
            match common::patch_pair(&pod, common::changes_for(&pod, &wanted)) {
                Some((op, mut undo)) => {
                    if let Op::Patch { changes, .. } = &mut undo {
                        changes.retain(|c| c.path != meta_path("annotations", DELETION_COST));
                    }
                    (vec![op], vec![undo])
                }
                None => (Vec::new(), Vec::new()),
            };
        let reversibility = if protect {
            Reversibility::Partial {
                reason: format!(
                    "the pod keeps {DELETION_COST}={HIGHEST_COST}, so its controller never picks it to scale down"
                ),
            }
        } else {
            Reversibility::Reversible
        };
        let mut outputs = serde_json::Map::new();
        outputs.insert("controller".into(), controller);
        outputs.insert("services".into(), Value::from(routed));
        outputs.insert(
            "removed_labels".into(),
            serde_json::to_value(&removed).unwrap_or_default(),
        );
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: format!("detach {target} from its controller and Services"),
            ops,
            inverse,
            reversibility,
            notes,
            outputs,
        })
    }

    fn verify_access(&self, input: &StepInput, plan: &StepPlan) -> Vec<Access> {
        let mut reads = super::common::reads_in_target_namespace(
            input,
            &[
                ("list", "Pod"),
                ("list", "EndpointSlice"),
                ("get", "ReplicaSet"),
            ],
        );
        reads.extend(super::reads_of_writes(plan));
        reads
    }

    fn verify(
        &self,
        input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let with: DetachWith = decode_with(&input.with)?;
        let mut verification = common::verify_patches(&plan.ops, seen)?;
        let Some(Op::Patch { target, uid, .. }) = plan.ops.first() else {
            return Ok(verification);
        };
        if seen.simulated() {
            verification.not_checked(
                "a replacement pod and updated endpoints",
                "a simulated cluster runs no controllers",
            );
            return Ok(verification);
        }
        let wait = with
            .wait
            .as_deref()
            .and_then(crate::duration::parse_duration)
            .unwrap_or(Duration::from_secs(60));
        let namespace = target.namespace.clone().unwrap_or_default();
        if let Some((kind, name)) = plan
            .outputs
            .get("controller")
            .and_then(Value::as_str)
            .and_then(|c| c.split_once('/'))
        {
            let owner_ref = ObjectRef::new(kind, Some(&namespace), name);
            // The check holds once the controller has its replicas without the suspect; until
            // then it is waited for, read again as the controller's pods change (its selector
            // does not change).
            let owner = seen.get(&owner_ref)?;
            let selector = owner
                .and_then(|o| o.pointer("/spec/selector"))
                .and_then(Selector::from_value)
                .unwrap_or_default();
            let replaced = match owner {
                None => false,
                Some(owner) => {
                    let want = owner
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1) as usize;
                    let pods = seen.list("Pod", Some(&namespace), &selector)?;
                    let running = pods
                        .iter()
                        .filter(|p| {
                            object::uid(p) != Some(uid.as_str())
                                && p.pointer("/metadata/deletionTimestamp").is_none()
                        })
                        .count();
                    running >= want && !pods.iter().any(|p| object::uid(p) == Some(uid.as_str()))
                }
            };
            verification.check_within(
                format!("{kind} {name} has its replicas without the detached pod"),
                replaced,
                None,
                wait,
                Some(Watch::matching("Pod", Some(&namespace), selector)),
            );
        }
        for service in plan
            .outputs
            .get("services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let selector = Selector::labels(
                [(
                    "kubernetes.io/service-name".to_string(),
                    service.to_string(),
                )]
                .into(),
            );
            let slices = seen.list("EndpointSlice", Some(&namespace), &selector)?;
            verification.check_within(
                format!("Service {service}'s EndpointSlices no longer list the pod"),
                !slices_list_pod(slices, uid),
                None,
                wait,
                Some(Watch::matching("EndpointSlice", Some(&namespace), selector)),
            );
        }
        Ok(verification)
    }
}

/// Whether any of these EndpointSlices still lists the pod with `uid` as an endpoint.
pub fn slices_list_pod(slices: &[Value], uid: &str) -> bool {
    slices.iter().any(|slice| {
        slice["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e.pointer("/targetRef/uid").and_then(Value::as_str) == Some(uid))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{
        cluster, input, named, namespace, plan, pod, replica_set, service, shown,
    };
    use super::*;

    #[test]
    fn a_detach_takes_the_pod_out_of_its_controller_and_services_and_undoes_the_labels() {
        let sim = cluster(vec![
            namespace("shop"),
            replica_set(),
            service(),
            pod(
                "shop",
                "web-1",
                json!({"app": "web"}),
                Some(("ReplicaSet", "web-5d9")),
            ),
        ]);
        let step = input(
            "detach",
            Some(named("Pod", Some("shop"), "web-1")),
            json!({}),
        );
        let planned = plan(&Detach, &step, &sim).unwrap();
        let text = shown(&planned);
        assert!(
            text.contains(r#"metadata.labels.app: "web" → (none)"#),
            "{text}"
        );
        assert!(
            text.contains(r#"metadata.labels["contain.dev/detached"]: (none) → "true""#),
            "{text}"
        );
        assert!(
            text.contains(r#"metadata.labels.app: (none) → "web""#),
            "the undo relabels: {text}"
        );
        assert_eq!(planned.outputs["controller"], json!("ReplicaSet/web-5d9"));
        assert_eq!(planned.outputs["services"], json!(["web"]));
        assert_eq!(planned.outputs["removed_labels"], json!({"app": "web"}));
        // The deletion cost stays after a rollback, so the suspect is never the one scaled away.
        assert!(matches!(
            planned.reversibility,
            Reversibility::Partial { .. }
        ));
        assert!(
            planned
                .notes
                .iter()
                .any(|n| n.contains("will start a replacement"))
        );
    }

    #[test]
    fn a_daemon_set_pod_s_replacement_is_said_to_run_the_same_template_on_the_same_node() {
        let sim = cluster(vec![
            namespace("shop"),
            json!({"kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "shop", "uid": "uid-agent"},
                   "spec": {"selector": {"matchLabels": {"app": "agent"}}}}),
            pod(
                "shop",
                "agent-x",
                json!({"app": "agent"}),
                Some(("DaemonSet", "agent")),
            ),
        ]);
        let step = input(
            "detach",
            Some(named("Pod", Some("shop"), "agent-x")),
            json!({}),
        );
        let planned = plan(&Detach, &step, &sim).unwrap();
        let note = planned
            .notes
            .iter()
            .find(|n| n.starts_with("DaemonSet agent"))
            .unwrap_or_else(|| panic!("{:?}", planned.notes));
        assert!(
            note.contains("on the same node (node-a), from the same template"),
            "{note}"
        );
        assert!(note.contains("`workload.suspend`"), "{note}");
    }

    #[test]
    fn a_pod_a_statefulset_keeps_by_name_is_refused() {
        let sim = cluster(vec![
            namespace("shop"),
            pod(
                "shop",
                "db-0",
                json!({"app": "db"}),
                Some(("StatefulSet", "db")),
            ),
        ]);
        let step = input(
            "detach",
            Some(named("Pod", Some("shop"), "db-0")),
            json!({}),
        );
        let refused = plan(&Detach, &step, &sim).unwrap_err().to_string();
        assert!(
            refused.contains("StatefulSet db, which keeps pods by name"),
            "{refused}"
        );
    }
}
