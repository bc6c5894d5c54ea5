//! `workload.scale`: set the replica count of a Deployment, StatefulSet or ReplicaSet.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::common;
use super::{
    Action, ActionError, ActionInfo, Observed, StepInput, TargetRule, decode_with, schema_of,
};
use crate::plan::{Reversibility, StepPlan};

pub struct Scale;

static INFO: ActionInfo = ActionInfo {
    name: "workload.scale",
    summary: "Set the replica count of a workload.",
    changes: "spec.replicas of each target workload (its controller then adds or removes pods)",
    undo: "restores the previous replica count",
    reversible: true,
    // Scaling down deletes pods, and with them their evidence.
    destroys_evidence: true,
    target: TargetRule::Required(&["Deployment", "StatefulSet", "ReplicaSet"]),
    outputs: &[(
        "previous_replicas",
        "replica count before the step, per workload name",
    )],
};

/// `with` of `workload.scale`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleWith {
    /// The new replica count (the API's int32: at most 2147483647).
    #[schemars(range(min = 0, max = 2147483647))]
    pub replicas: u32,
}

fn replicas_path() -> Vec<String> {
    vec!["spec".to_string(), "replicas".to_string()]
}

impl Action for Scale {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<ScaleWith>()
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let with: ScaleWith = decode_with(&input.with)?;
        if with.replicas > i32::MAX as u32 {
            return Err(ActionError::InvalidParams(format!(
                "replicas: {} is more than the API's int32 allows (2147483647)",
                with.replicas
            )));
        }
        let target = input.required_target()?;
        let objects = common::observe(target, seen)?;
        let mut ops = Vec::new();
        let mut inverse = Vec::new();
        let mut previous = serde_json::Map::new();
        for object in &objects {
            // An absent spec.replicas means 1 to the API server; record it as such so the
            // undo restores the same count.
            let before = object
                .pointer("/spec/replicas")
                .cloned()
                .unwrap_or(Value::from(1));
            if let Some(name) = crate::cluster::object::name(object) {
                previous.insert(name.to_string(), before.clone());
            }
            let mut observed = object.clone();
            observed["spec"]["replicas"] = before;
            let changes = common::changes_for(
                &observed,
                &[(replicas_path(), Some(Value::from(with.replicas)))],
            );
            if let Some((op, undo)) = common::patch_pair(&observed, changes) {
                ops.push(op);
                inverse.push(undo);
            }
        }
        inverse.reverse();
        let mut outputs = serde_json::Map::new();
        outputs.insert("previous_replicas".into(), Value::Object(previous));
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: format!("scale {target} to {} replica(s)", with.replicas),
            ops,
            inverse,
            reversibility: Reversibility::Reversible,
            notes: Vec::new(),
            outputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{cluster, input, named, plan, selected, shown};
    use super::*;

    fn deployment(name: &str, replicas: Option<u32>) -> Value {
        let mut d = json!({"kind": "Deployment", "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
                           "spec": {"selector": {"matchLabels": {"app": name}}}});
        if let Some(n) = replicas {
            d["spec"]["replicas"] = json!(n);
        }
        d
    }

    #[test]
    fn scaling_patches_the_replicas_and_its_undo_restores_them() {
        let sim = cluster(vec![deployment("web", Some(3))]);
        let step = input(
            "stop",
            Some(named("Deployment", Some("shop"), "web")),
            json!({"replicas": 0}),
        );
        let planned = plan(&Scale, &step, &sim).unwrap();
        let text = shown(&planned);
        assert!(text.contains("spec.replicas: 3 → 0"), "{text}");
        assert!(
            text.contains("undo:") && text.contains("spec.replicas: 0 → 3"),
            "{text}"
        );
        assert_eq!(planned.outputs["previous_replicas"], json!({"web": 3}));
        assert_eq!(planned.reversibility, Reversibility::Reversible);
    }

    #[test]
    fn an_unset_replica_count_is_taken_as_one_and_restored_as_one() {
        let sim = cluster(vec![deployment("web", None), deployment("api", Some(0))]);
        let step = input(
            "stop",
            Some(selected("Deployment", "shop", &[("app", "web")])),
            json!({"replicas": 0}),
        );
        let planned = plan(&Scale, &step, &sim).unwrap();
        assert_eq!(
            planned.outputs["previous_replicas"],
            json!({"api": 0, "web": 1})
        );
        // `api` is already at 0: nothing to write for it.
        assert_eq!(planned.ops.len(), 1, "{}", shown(&planned));
        assert!(shown(&planned).contains("spec.replicas: 1 → 0"));
    }

    #[test]
    fn a_missing_workload_is_refused() {
        let sim = cluster(vec![]);
        let step = input(
            "stop",
            Some(named("Deployment", Some("shop"), "web")),
            json!({"replicas": 0}),
        );
        let refused = plan(&Scale, &step, &sim).unwrap_err().to_string();
        assert!(refused.contains("not found"), "{refused}");
    }
}
