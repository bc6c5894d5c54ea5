//! `object.label` and `object.annotate`: set or remove metadata keys on the target objects.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::common::{self, meta_path};
use super::{
    Action, ActionError, ActionInfo, Observed, StaticPlace, StaticProblem, StaticStep, StepInput,
    TargetRule, decode_with, schema_of,
};
use crate::cluster::object;
use crate::plan::{Reversibility, StepPlan};

/// Which metadata map the action edits.
pub struct MetadataAction {
    info: &'static ActionInfo,
    field: &'static str,
}

pub static LABEL: MetadataAction = MetadataAction {
    field: "labels",
    info: &ActionInfo {
        name: "object.label",
        summary: "Set or remove labels on the target objects.",
        changes: "metadata.labels of each target object",
        undo: "restores each label to its previous value (or removes it)",
        reversible: true,
        destroys_evidence: false,
        target: TargetRule::Required(&[]),
        outputs: &[
            ("objects", "names of the labelled objects"),
            ("count", "how many objects"),
        ],
    },
};

pub static ANNOTATE: MetadataAction = MetadataAction {
    field: "annotations",
    info: &ActionInfo {
        name: "object.annotate",
        summary: "Set or remove annotations on the target objects.",
        changes: "metadata.annotations of each target object",
        undo: "restores each annotation to its previous value (or removes it)",
        reversible: true,
        destroys_evidence: false,
        target: TargetRule::Required(&[]),
        outputs: &[
            ("objects", "names of the annotated objects"),
            ("count", "how many objects"),
        ],
    },
};

/// `with` of `object.label`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelWith {
    /// Label key → value; `null` removes the label.
    pub labels: IndexMap<String, Option<String>>,
}

/// `with` of `object.annotate`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnotateWith {
    /// Annotation key → value; `null` removes the annotation.
    pub annotations: IndexMap<String, Option<String>>,
}

impl MetadataAction {
    fn wanted(&self, with: &Value) -> Result<Vec<common::Wanted>, ActionError> {
        let entries = if self.field == "labels" {
            decode_with::<LabelWith>(with)?.labels
        } else {
            decode_with::<AnnotateWith>(with)?.annotations
        };
        let mut wanted = Vec::new();
        for (key, value) in entries {
            // Label keys and values reach the API server's selectors: validate them here, so a
            // rendered value can never smuggle anything into a selector.
            object::validate_label_key(&key)
                .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
            if self.field == "labels"
                && let Some(value) = &value
            {
                object::validate_label_value(&key, value)
                    .map_err(|e| ActionError::InvalidParams(e.to_string()))?;
            }
            wanted.push((meta_path(self.field, &key), value.map(Value::String)));
        }
        Ok(wanted)
    }
}

impl Action for MetadataAction {
    fn info(&self) -> &'static ActionInfo {
        self.info
    }

    fn with_schema(&self) -> Value {
        if self.field == "labels" {
            schema_of::<LabelWith>()
        } else {
            schema_of::<AnnotateWith>()
        }
    }

    /// Labels are patched object by object: one plan covers every namespace.
    fn fan_out(&self) -> super::FanOut {
        super::FanOut::Whole
    }

    fn check_static(&self, step: &StaticStep) -> Vec<StaticProblem> {
        let field = self.field;
        let Some(entries) = step.with.get(field).and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        for (key, value) in entries {
            let problem = if crate::yaml::schema_check::is_template(key) {
                None
            } else if let Err(e) = object::validate_label_key(key) {
                Some(e.to_string())
            } else if field == "labels"
                && let Some(value) = super::literal(value)
                && let Err(e) = object::validate_label_value(key, value)
            {
                Some(e.to_string())
            } else {
                None
            };
            if let Some(message) = problem {
                problems.push(StaticProblem::at(StaticPlace::With(field), message));
            }
        }
        problems
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let wanted = self.wanted(&input.with)?;
        let target = input.required_target()?;
        let objects = common::observe(target, seen)?;
        let mut ops = Vec::new();
        let mut inverse = Vec::new();
        for object in &objects {
            if let Some((op, undo)) =
                common::patch_pair(object, common::changes_for(object, &wanted))
            {
                ops.push(op);
                inverse.push(undo);
            }
        }
        inverse.reverse();
        let mut outputs = serde_json::Map::new();
        outputs.insert("objects".into(), common::names(&objects));
        outputs.insert("count".into(), Value::from(objects.len()));
        let verb = if self.field == "labels" {
            "label"
        } else {
            "annotate"
        };
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: self.info.name.to_string(),
            summary: format!("{verb} {} object(s): {target}", objects.len()),
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

    use super::super::fixture::{cluster, input, plan, pod, selected, shown};
    use super::*;

    #[test]
    fn labels_are_set_and_removed_on_every_match_and_undone_to_what_was_there() {
        let sim = cluster(vec![
            pod(
                "shop",
                "web-1",
                json!({"app": "web", "tier": "front"}),
                None,
            ),
            pod("shop", "web-2", json!({"app": "web"}), None),
            pod("shop", "db-1", json!({"app": "db"}), None),
        ]);
        let step = input(
            "mark",
            Some(selected("Pod", "shop", &[("app", "web")])),
            json!({"labels": {"contain.dev/suspect": "true", "tier": null}}),
        );
        let planned = plan(&LABEL, &step, &sim).unwrap();
        let text = shown(&planned);
        assert_eq!(planned.ops.len(), 2, "{text}");
        assert!(
            text.contains(r#"metadata.labels.tier: "front" → (none)"#),
            "{text}"
        );
        assert!(
            text.contains(r#"metadata.labels.tier: (none) → "front""#),
            "the undo puts it back: {text}"
        );
        assert_eq!(planned.outputs["count"], json!(2));
        assert_eq!(planned.outputs["objects"], json!(["web-1", "web-2"]));
    }

    #[test]
    fn annotations_take_free_text_and_a_bad_label_is_refused() {
        let sim = cluster(vec![pod("shop", "web-1", json!({"app": "web"}), None)]);
        let target = Some(selected("Pod", "shop", &[("app", "web")]));
        let noted = plan(
            &ANNOTATE,
            &input(
                "note",
                target.clone(),
                json!({"annotations": {"contain.dev/why": "beacon to 203.0.113.7!"}}),
            ),
            &sim,
        )
        .unwrap();
        assert!(shown(&noted).contains("metadata.annotations[\"contain.dev/why\"]"));
        let refused = plan(
            &LABEL,
            &input(
                "mark",
                target,
                json!({"labels": {"ok": "not a label value!"}}),
            ),
            &sim,
        )
        .unwrap_err();
        assert!(
            refused.to_string().contains("not a label value!"),
            "{refused}"
        );
    }
}

#[cfg(test)]
mod verification {
    use serde_json::json;

    use super::super::fixture::{applied, cluster, input, plan, pod, selected, verify};
    use super::*;
    use crate::outcome::CheckStatus;

    #[test]
    fn a_label_is_verified_on_the_object_as_it_is_now_and_a_lost_write_fails() {
        let objects = vec![pod("shop", "web-1", json!({"app": "web"}), None)];
        let step = input(
            "mark",
            Some(selected("Pod", "shop", &[("app", "web")])),
            json!({"labels": {"contain.dev/suspect": "true"}}),
        );
        let planned = plan(&LABEL, &step, &cluster(objects.clone())).unwrap();
        let statuses = |objects: Vec<Value>| -> Vec<CheckStatus> {
            verify(&LABEL, &step, &planned, &cluster(objects))
                .unwrap()
                .checks
                .iter()
                .map(|c| c.status)
                .collect()
        };
        assert_eq!(
            statuses(applied(objects.clone(), &planned.ops)),
            [CheckStatus::Passed]
        );
        // Someone (a controller, a GitOps agent) put the label back off: not verified.
        assert_eq!(statuses(objects), [CheckStatus::Failed]);
        // The pod was replaced under the same name: what was planned is not what is there.
        let mut replaced = pod(
            "shop",
            "web-1",
            json!({"app": "web", "contain.dev/suspect": "true"}),
            None,
        );
        replaced["metadata"]["uid"] = json!("a-new-pod");
        let checks = verify(&LABEL, &step, &planned, &cluster(vec![replaced]))
            .unwrap()
            .checks;
        assert_eq!(checks[0].status, CheckStatus::Failed);
        assert!(checks[0].what.ends_with("still exists"), "{:?}", checks[0]);
    }
}
