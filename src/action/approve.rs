//! `approve`: a human decision point. Live runs ask on the terminal (or take `--yes`); tabletop
//! runs print it as a discussion prompt and go on.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Action, ActionError, ActionInfo, Observed, StepInput, TargetRule, decode_with, schema_of,
};
use crate::plan::{Op, Reversibility, StepPlan};

pub struct Approve;

static INFO: ActionInfo = ActionInfo {
    name: "approve",
    summary: "Pause for a human decision before going on.",
    changes: "nothing",
    undo: "nothing to undo",
    reversible: true,
    destroys_evidence: false,
    target: TargetRule::None,
    outputs: &[("approved", "true once approved")],
};

/// `with` of `approve`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveWith {
    /// The question put to the responder.
    #[schemars(length(min = 1))]
    pub message: String,
}

impl Action for Approve {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<ApproveWith>()
    }

    fn plan(&self, input: &StepInput, _seen: &Observed) -> Result<StepPlan, ActionError> {
        let with: ApproveWith = decode_with(&input.with)?;
        let mut outputs = serde_json::Map::new();
        outputs.insert("approved".into(), Value::Bool(true));
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: "ask for approval".into(),
            ops: vec![Op::Approve {
                message: with.message,
            }],
            inverse: Vec::new(),
            reversibility: Reversibility::Reversible,
            notes: Vec::new(),
            outputs,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{cluster, input, plan};
    use super::*;

    #[test]
    fn an_approval_is_one_question_that_changes_nothing() {
        let step = input("ok", None, json!({"message": "isolate the pod?"}));
        let planned = plan(&Approve, &step, &cluster(vec![])).unwrap();
        assert!(
            matches!(&planned.ops[..], [Op::Approve { message }] if message == "isolate the pod?")
        );
        assert!(planned.inverse.is_empty());
        assert_eq!(planned.outputs["approved"], json!(true));
        assert!(matches!(
            plan(&Approve, &input("ok", None, json!({})), &cluster(vec![])),
            Err(ActionError::InvalidParams(_))
        ));
    }
}
