//! `wait`: pause for a duration, or until a field of the target object has a value.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Action, ActionError, ActionInfo, Observed, StaticPlace, StaticProblem, StaticStep, StepInput,
    TargetRule, Verification, decode_with, schema_of,
};
use crate::cluster::merge;
use crate::cluster::object::ObjectRef;
use crate::duration::parse_duration;
use crate::plan::{Op, Reversibility, StepPlan};

pub struct Wait;

static INFO: ActionInfo = ActionInfo {
    name: "wait",
    summary: "Pause for a duration, or until a field of the target has a value.",
    changes: "nothing",
    undo: "nothing to undo",
    reversible: true,
    destroys_evidence: false,
    target: TargetRule::Optional(&[]),
    outputs: &[],
};

/// `with` of `wait`: either `duration`, or `field` and `equals` on a named target.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitWith {
    /// How long to pause, e.g. `10s`.
    #[serde(default)]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub duration: Option<String>,
    /// Dotted path of the field to watch, e.g. `status.phase`.
    #[serde(default)]
    pub field: Option<String>,
    /// The value the field must reach.
    #[serde(default)]
    pub equals: Option<Value>,
    /// How long to wait for the field (default 5m).
    #[serde(default)]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

/// Why a wait that names neither kind of wait, or both, is refused.
const ONE_KIND_OF_WAIT: &str = "give either `duration`, or `field` and `equals`";
/// Why a wait for a field needs the object named.
const FIELD_NEEDS_A_NAME: &str = "waiting for a field needs a target with a name";

fn millis(text: &str, what: &str) -> Result<u64, ActionError> {
    parse_duration(text)
        .map(|d| d.as_millis() as u64)
        .ok_or_else(|| ActionError::InvalidParams(format!("`{what}` is not a duration: {text}")))
}

impl Action for Wait {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<WaitWith>()
    }

    fn check_static(&self, step: &StaticStep) -> Vec<StaticProblem> {
        let (duration, field, equals) = (
            step.has("duration"),
            step.has("field"),
            step.with.get("equals").is_some(),
        );
        let mut problems = Vec::new();
        if !matches!(
            (duration, field, equals),
            (true, false, false) | (false, true, true)
        ) {
            problems.push(StaticProblem::at(StaticPlace::Step, ONE_KIND_OF_WAIT));
        } else if field && step.picks != Some(super::Picks::Named) {
            problems.push(StaticProblem::at(
                match step.picks {
                    Some(_) => StaticPlace::Target,
                    None => StaticPlace::With("field"),
                },
                FIELD_NEEDS_A_NAME,
            ));
        }
        problems
    }

    fn plan(&self, input: &StepInput, _seen: &Observed) -> Result<StepPlan, ActionError> {
        let with: WaitWith = decode_with(&input.with)?;
        let op = match (&with.duration, &with.field, &with.equals) {
            (Some(duration), None, None) => Op::Sleep {
                millis: millis(duration, "duration")?,
            },
            (None, Some(field), Some(equals)) => {
                let target = input.target.as_ref().and_then(|t| {
                    Some(ObjectRef::new(
                        t.kind.kind,
                        t.namespace.as_deref(),
                        t.name.as_deref()?,
                    ))
                });
                let target =
                    target.ok_or_else(|| ActionError::InvalidParams(FIELD_NEEDS_A_NAME.into()))?;
                Op::WaitFor {
                    target,
                    path: field.split('.').map(str::to_string).collect(),
                    equals: equals.clone(),
                    timeout_millis: millis(with.timeout.as_deref().unwrap_or("5m"), "timeout")?,
                }
            }
            _ => return Err(ActionError::InvalidParams(ONE_KIND_OF_WAIT.into())),
        };
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: op.to_string(),
            ops: vec![op],
            inverse: Vec::new(),
            reversibility: Reversibility::Reversible,
            notes: Vec::new(),
            outputs: serde_json::Map::new(),
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
            if let Op::WaitFor {
                target,
                path,
                equals,
                ..
            } = op
            {
                let now = seen.get(target)?.cloned();
                let value = now.as_ref().and_then(|o| merge::get(o, path)).cloned();
                let ok = value.as_ref() == Some(equals);
                verification.check(
                    format!("{target} {} = {equals}", path.join(".")),
                    ok,
                    (!ok).then(|| {
                        format!("found {}", value.map_or("(none)".into(), |v| v.to_string()))
                    }),
                );
            }
        }
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{cluster, input, named, plan};
    use super::*;

    #[test]
    fn a_wait_sleeps_or_waits_for_a_field_and_changes_nothing() {
        let sim = cluster(vec![]);
        let slept = plan(&Wait, &input("w", None, json!({"duration": "1m30s"})), &sim).unwrap();
        assert!(matches!(&slept.ops[..], [Op::Sleep { millis: 90_000 }]));
        let target = Some(named("Pod", Some("shop"), "web-1"));
        let watched = plan(
            &Wait,
            &input(
                "w",
                target,
                json!({"field": "status.phase", "equals": "Running", "timeout": "10s"}),
            ),
            &sim,
        )
        .unwrap();
        let [
            Op::WaitFor {
                path,
                equals,
                timeout_millis,
                ..
            },
        ] = &watched.ops[..]
        else {
            panic!("{:?}", watched.ops);
        };
        assert_eq!(path, &["status", "phase"]);
        assert_eq!(equals, &json!("Running"));
        assert_eq!(*timeout_millis, 10_000);
        assert!(slept.inverse.is_empty() && watched.inverse.is_empty());
    }

    #[test]
    fn a_wait_that_is_neither_or_both_is_refused_with_the_words_validate_uses() {
        let sim = cluster(vec![]);
        let refused = plan(&Wait, &input("w", None, json!({})), &sim).unwrap_err();
        assert!(refused.to_string().contains(ONE_KIND_OF_WAIT));
        let refused = plan(
            &Wait,
            &input("w", None, json!({"field": "x", "equals": 1})),
            &sim,
        )
        .unwrap_err();
        assert!(refused.to_string().contains(FIELD_NEEDS_A_NAME));
    }
}
