//! `workload.suspend`: stop a workload that keeps running what was compromised, in the way its
//! kind allows, and reversibly: a DaemonSet gets a nodeSelector no node matches (its pods are
//! removed, its template kept); a Deployment, StatefulSet or ReplicaSet is scaled to zero (the
//! previous count journaled); a Job, a CronJob and the CronJob's running Jobs get
//! `spec.suspend: true`. Verified when none of its pods runs any more.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::common;
use super::owned;
use super::{
    Action, ActionError, ActionInfo, Observed, StepInput, TargetRule, Verification, decode_with,
    schema_of,
};
use crate::cluster::object::{self, ObjectRef, Selector};
use crate::cluster::{Watch, kinds};
use crate::plan::{Reversibility, StepPlan};

pub struct Suspend;

/// The nodeSelector key a suspended DaemonSet gets: no node carries it.
pub const SUSPENDED_LABEL: &str = "contain.dev/suspended";

static INFO: ActionInfo = ActionInfo {
    name: "workload.suspend",
    summary: "Stop a workload from running: a DaemonSet's pods removed, a Deployment/StatefulSet/ReplicaSet scaled to 0, a Job or CronJob (and its running Jobs) suspended.",
    changes: "DaemonSet: spec.template.spec.nodeSelector gets contain.dev/suspended (no node matches, so its pods are removed); Deployment/StatefulSet/ReplicaSet: spec.replicas 0; Job/CronJob: spec.suspend true, and each running Job of a CronJob",
    undo: "restores the nodeSelector, the replica count or spec.suspend; the pods that come back are new pods of the same template",
    reversible: true,
    // Its pods are deleted by their controller, and with them their evidence.
    destroys_evidence: true,
    target: TargetRule::Required(&[
        "DaemonSet",
        "Deployment",
        "StatefulSet",
        "ReplicaSet",
        "Job",
        "CronJob",
    ]),
    outputs: &[
        ("suspended", "what was suspended, as Kind namespace/name"),
        (
            "previous_replicas",
            "replica count before the step, for a scaled workload",
        ),
        ("pods", "the pods it ran when planned, as namespace/name"),
    ],
};

/// `with` of `workload.suspend`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendWith {
    /// How long verification waits for the workload's pods to be gone (default 2m).
    #[serde(default)]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub wait: Option<String>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

impl Action for Suspend {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<SuspendWith>()
    }

    fn one_object(&self) -> bool {
        true
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let _: SuspendWith = decode_with(&input.with)?;
        let workload = common::observe_named(input, INFO.name, seen)?;
        let workload_ref = ObjectRef::of(&workload).expect("observed objects have names");
        let pods = owned::pods_of(seen, &workload)?;
        let mut ops = Vec::new();
        let mut inverse = Vec::new();
        let mut notes: Vec<String> = pods
            .iter()
            .map(|p| format!("running now: {}", p.describe()))
            .collect();
        let mut suspended = vec![workload_ref.to_string()];
        let mut outputs = serde_json::Map::new();
        let mut patch = |object: &Value, wanted: &[(Vec<String>, Option<Value>)]| {
            let changes = common::changes_for(object, wanted);
            if let Some((op, undo)) = common::patch_pair(object, changes) {
                ops.push(op);
                inverse.push(undo);
            }
        };
        match workload_ref.kind.as_str() {
            "DaemonSet" => {
                patch(
                    &workload,
                    &[(
                        [
                            path(&["spec", "template", "spec", "nodeSelector"]),
                            vec![SUSPENDED_LABEL.into()],
                        ]
                        .concat(),
                        Some(Value::from(input.run_id.clone())),
                    )],
                );
                notes.push(format!(
                    "no node carries {SUSPENDED_LABEL}={}: the DaemonSet controller removes every pod of it and starts none; the template changes, so a rollback starts new pods (a new revision of the same template)",
                    input.run_id
                ));
            }
            "Deployment" | "StatefulSet" | "ReplicaSet" => {
                // An absent spec.replicas means 1 to the API server; recorded as such so the
                // undo restores the same count.
                let mut observed = workload.clone();
                let before = workload
                    .pointer("/spec/replicas")
                    .cloned()
                    .unwrap_or(Value::from(1));
                observed["spec"]["replicas"] = before.clone();
                patch(
                    &observed,
                    &[(path(&["spec", "replicas"]), Some(Value::from(0)))],
                );
                outputs.insert("previous_replicas".into(), before.clone());
                notes.push(format!(
                    "scaled from {before} to 0; a rollback scales it back to {before}"
                ));
                if workload_ref.kind == "ReplicaSet" && object::controller_of(&workload).is_some() {
                    notes.push("this ReplicaSet has a controller (a Deployment), which sets its replicas again: suspend the Deployment instead".into());
                }
            }
            "Job" => {
                patch(
                    &workload,
                    &[(path(&["spec", "suspend"]), Some(Value::Bool(true)))],
                );
                notes.push("a suspended Job's running pods are terminated by the Job controller; its completions so far are kept".into());
            }
            "CronJob" => {
                patch(
                    &workload,
                    &[(path(&["spec", "suspend"]), Some(Value::Bool(true)))],
                );
                let uid = object::uid(&workload).unwrap_or_default();
                let jobs = seen.list(
                    "Job",
                    workload_ref.namespace.as_deref(),
                    &Selector::default(),
                )?;
                for job in jobs.iter().filter(|j| {
                    owned::controller_uid(j) == Some(uid)
                        && j.pointer("/status/active")
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                            > 0
                }) {
                    patch(
                        job,
                        &[(path(&["spec", "suspend"]), Some(Value::Bool(true)))],
                    );
                    if let Some(r) = ObjectRef::of(job) {
                        suspended.push(r.to_string());
                    }
                }
                notes.push("a suspended CronJob starts no new Job; its running Jobs are suspended too, which terminates their pods".into());
            }
            other => {
                return Err(ActionError::InvalidParams(format!(
                    "{other} cannot be suspended"
                )));
            }
        }
        inverse.reverse();
        outputs.insert("suspended".into(), Value::from(suspended));
        outputs.insert(
            "pods".into(),
            Value::from(
                pods.iter()
                    .filter_map(|p| ObjectRef::of(&p.pod))
                    .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
                    .collect::<Vec<_>>(),
            ),
        );
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: format!("suspend {workload_ref} ({} pod(s) running)", pods.len()),
            ops,
            inverse,
            reversibility: Reversibility::Reversible,
            notes,
            outputs,
        })
    }

    fn verify(
        &self,
        input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let with: SuspendWith = decode_with(&input.with)?;
        let mut verification = common::verify_patches(&plan.ops, seen)?;
        let target = input.required_target()?;
        let workload_ref = ObjectRef::new(
            target.kind.kind,
            target.namespace.as_deref(),
            target.name.as_deref().unwrap_or_default(),
        );
        let what = format!("no pod of {workload_ref} runs");
        let Some(workload) = seen.get(&workload_ref)? else {
            verification.check(what, false, Some(format!("{workload_ref} is gone")));
            return Ok(verification);
        };
        if seen.simulated() {
            verification.not_checked(what, "no controller runs in a snapshot to remove the pods");
            return Ok(verification);
        }
        // A pod being deleted (its grace period running) no longer counts as running.
        let running: Vec<String> = owned::pods_of(seen, workload)?
            .iter()
            .filter(|p| p.pod.pointer("/metadata/deletionTimestamp").is_none())
            .filter_map(|p| object::name(&p.pod).map(str::to_string))
            .collect();
        let kind = kinds::lookup("Pod").expect("known kind");
        verification.check_within(
            what,
            running.is_empty(),
            (!running.is_empty()).then(|| format!("still running: {}", running.join(", "))),
            with.wait
                .as_deref()
                .and_then(crate::duration::parse_duration)
                .unwrap_or(DEFAULT_TIMEOUT),
            Some(Watch::matching(
                kind.kind,
                workload_ref.namespace.as_deref(),
                Selector::default(),
            )),
        );
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{applied, cluster, input, named, plan, pod, shown, verify};
    use super::*;
    use crate::outcome::CheckStatus;

    fn miner() -> Vec<Value> {
        let mut miner_pod = pod(
            "shop",
            "miner-a",
            json!({"app": "agent"}),
            Some(("DaemonSet", "miner")),
        );
        miner_pod["metadata"]["ownerReferences"][0]["uid"] = json!("ds-miner");
        vec![
            super::super::fixture::namespace("shop"),
            json!({"kind": "DaemonSet", "metadata": {"name": "miner", "namespace": "shop", "uid": "ds-miner"},
                   "spec": {"selector": {"matchLabels": {"app": "agent"}},
                            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}}}}}),
            miner_pod,
        ]
    }

    #[test]
    fn a_daemon_set_gets_a_node_selector_no_node_matches_and_the_undo_removes_it() {
        let step = input(
            "stop",
            Some(named("DaemonSet", Some("shop"), "miner")),
            json!({}),
        );
        let planned = plan(&Suspend, &step, &cluster(miner())).unwrap();
        let text = shown(&planned);
        assert!(
            text.contains(
                r#"spec.template.spec.nodeSelector["contain.dev/suspended"]: (none) → "run-1""#
            ),
            "{text}"
        );
        assert!(
            text.contains("running now: Pod shop/miner-a ← DaemonSet shop/miner"),
            "{text}"
        );
        assert_eq!(planned.inverse.len(), 1);
        assert_eq!(planned.reversibility, Reversibility::Reversible);
        assert!(Suspend.destroys_evidence(&json!({})), "evidence first");
    }

    #[test]
    fn a_deployment_is_scaled_to_zero_and_a_cron_job_suspended_with_its_running_jobs() {
        let sim = cluster(vec![
            super::super::fixture::namespace("shop"),
            json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop", "uid": "d"}, "spec": {"replicas": 3}}),
            json!({"kind": "CronJob", "metadata": {"name": "sync", "namespace": "shop", "uid": "cj"}, "spec": {"schedule": "* * * * *"}}),
            json!({"kind": "Job", "metadata": {"name": "sync-1", "namespace": "shop", "uid": "j1",
                   "ownerReferences": [{"kind": "CronJob", "name": "sync", "uid": "cj", "controller": true}]},
                   "spec": {}, "status": {"active": 1}}),
            json!({"kind": "Job", "metadata": {"name": "sync-0", "namespace": "shop", "uid": "j0",
                   "ownerReferences": [{"kind": "CronJob", "name": "sync", "uid": "cj", "controller": true}]},
                   "spec": {}, "status": {"succeeded": 1}}),
        ]);
        let scaled = plan(
            &Suspend,
            &input(
                "stop",
                Some(named("Deployment", Some("shop"), "web")),
                json!({}),
            ),
            &sim,
        )
        .unwrap();
        assert!(
            shown(&scaled).contains("spec.replicas: 3 → 0"),
            "{}",
            shown(&scaled)
        );
        assert_eq!(scaled.outputs["previous_replicas"], json!(3));
        let cron = plan(
            &Suspend,
            &input(
                "stop",
                Some(named("CronJob", Some("shop"), "sync")),
                json!({}),
            ),
            &sim,
        )
        .unwrap();
        assert_eq!(
            cron.outputs["suspended"],
            json!(["CronJob shop/sync", "Job shop/sync-1"])
        );
        assert_eq!(cron.inverse.len(), 2);
    }

    #[test]
    fn verification_waits_while_a_pod_of_the_workload_still_runs() {
        let step = input(
            "stop",
            Some(named("DaemonSet", Some("shop"), "miner")),
            json!({}),
        );
        let planned = plan(&Suspend, &step, &cluster(miner())).unwrap();
        // A snapshot runs no controller: the pods' end cannot be seen there.
        let after = applied(miner(), &planned.ops);
        let simulated = verify(&Suspend, &step, &planned, &cluster(after)).unwrap();
        assert!(
            simulated
                .checks
                .iter()
                .any(|c| c.what == "no pod of DaemonSet shop/miner runs"
                    && c.status == CheckStatus::NotChecked)
        );
        assert!(
            simulated
                .checks
                .iter()
                .all(|c| c.status != CheckStatus::Failed),
            "{simulated:?}"
        );
    }
}
