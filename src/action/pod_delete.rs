//! `pod.delete`: delete the target pods (their controller, if any, replaces them).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::common;
use super::{
    Action, ActionError, ActionInfo, Observed, StepInput, TargetRule, Verification, decode_with,
    schema_of,
};
use crate::cluster::object;
use crate::plan::{Op, Reversibility, StepPlan};

pub struct PodDelete;

static INFO: ActionInfo = ActionInfo {
    name: "pod.delete",
    summary: "Delete the target pods, each guarded by the uid observed at plan time.",
    changes: "deletes each target pod",
    undo: "none: a deleted pod cannot be brought back (its controller may create a new one)",
    reversible: false,
    destroys_evidence: true,
    target: TargetRule::Required(&["Pod"]),
    outputs: &[
        ("deleted", "names of the deleted pods"),
        ("uids", "uids of the deleted pods"),
    ],
};

/// `with` of `pod.delete`.
#[derive(Deserialize, serde::Serialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DeleteWith {
    /// Seconds the pod gets to stop; the pod's own setting when omitted.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub grace_period_seconds: Option<i64>,
}

impl Action for PodDelete {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<DeleteWith>()
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let with: DeleteWith = decode_with(&input.with)?;
        let target = input.required_target()?;
        let pods = common::observe(target, seen)?;
        let ops: Vec<Op> = pods
            .iter()
            .map(|pod| Op::delete_read(pod).with_grace_period(with.grace_period_seconds))
            .collect();
        let mut outputs = serde_json::Map::new();
        outputs.insert("deleted".into(), common::names(&pods));
        outputs.insert(
            "uids".into(),
            Value::Array(
                pods.iter()
                    .filter_map(object::uid)
                    .map(|u| Value::String(u.into()))
                    .collect(),
            ),
        );
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: format!("delete {} pod(s): {target}", pods.len()),
            ops,
            inverse: Vec::new(),
            reversibility: Reversibility::Irreversible {
                reason: "a deleted pod cannot be restored".into(),
            },
            notes: Vec::new(),
            outputs,
        })
    }

    fn verify(
        &self,
        _input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let mut verification = Verification::default();
        for op in &plan.ops {
            let Op::Delete { target, uid, .. } = op else {
                continue;
            };
            let (ok, detail) = match common::deletion(seen, target, uid.as_deref())? {
                Some(how) => (true, how.map(str::to_string)),
                None => (
                    false,
                    Some("the pod still exists and is not terminating".to_string()),
                ),
            };
            verification.check(format!("{target} is deleted"), ok, detail);
        }
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{cluster, input, named, plan, pod, selected, shown, verify};
    use super::*;

    #[test]
    fn each_pod_is_deleted_by_its_uid_and_nothing_can_undo_it() {
        let sim = cluster(vec![
            pod("shop", "web-1", json!({"app": "web"}), None),
            pod("shop", "web-2", json!({"app": "web"}), None),
            pod("shop", "db-1", json!({"app": "db"}), None),
        ]);
        let step = input(
            "kill",
            Some(selected("Pod", "shop", &[("app", "web")])),
            json!({"grace_period_seconds": 0}),
        );
        let planned = plan(&PodDelete, &step, &sim).unwrap();
        assert_eq!(planned.ops.len(), 2, "{}", shown(&planned));
        for op in &planned.ops {
            let Op::Delete {
                uid,
                grace_period_seconds,
                ..
            } = op
            else {
                panic!("{op:?}");
            };
            assert!(uid.is_some(), "a delete carries the observed uid");
            assert_eq!(*grace_period_seconds, Some(0));
        }
        assert!(planned.inverse.is_empty());
        assert!(matches!(
            planned.reversibility,
            Reversibility::Irreversible { .. }
        ));
        assert_eq!(planned.outputs["deleted"], json!(["web-1", "web-2"]));
        assert_eq!(planned.outputs["uids"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_delete_is_verified_gone_replaced_or_terminating_and_fails_otherwise() {
        let before = cluster(vec![pod("shop", "web-1", json!({}), None)]);
        let step = input("kill", Some(named("Pod", Some("shop"), "web-1")), json!({}));
        let planned = plan(&PodDelete, &step, &before).unwrap();
        let checked = |objects: Vec<Value>| {
            let found = verify(&PodDelete, &step, &planned, &cluster(objects)).unwrap();
            (found.checks[0].status, found.checks[0].detail.clone())
        };
        assert_eq!(checked(vec![]).0, crate::outcome::CheckStatus::Passed);
        let mut replaced = pod("shop", "web-1", json!({}), None);
        replaced["metadata"]["uid"] = json!("another-uid");
        assert_eq!(
            checked(vec![replaced]).1.as_deref(),
            Some("replaced by a new object of the same name")
        );
        // The same pod, still there: the delete did not happen.
        let still = before
            .objects()
            .into_iter()
            .filter(|o| o["kind"] == "Pod")
            .collect();
        assert_eq!(checked(still).0, crate::outcome::CheckStatus::Failed);
    }
}
