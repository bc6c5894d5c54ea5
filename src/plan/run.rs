//! The plan of a whole run: every step planned in order against the state the earlier steps
//! leave behind, before anything is written. It is what the responder approves, what the
//! journal records before the first write, what `plan --out` saves and `run --plan` applies,
//! and what `resume` goes on applying. It holds no Secret data.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ResolvedTarget, StepPlan};

/// The format of saved plans; a file of another format is refused.
pub const FORMAT: u32 = 1;

/// Every step of one run, planned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunPlan {
    pub format: u32,
    pub run_id: String,
    pub created_at: String,
    pub playbook: PlaybookRef,
    pub params: Map<String, Value>,
    pub cluster: ClusterRef,
    /// Each fact's object (`Pod shop/web-1`), or null for an optional fact not found.
    #[serde(default)]
    pub facts: Map<String, Value>,
    pub steps: Vec<PlannedStep>,
    /// What the reader must know about how this plan was checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The playbook a plan was made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaybookRef {
    pub path: String,
    pub name: String,
    pub sha256: String,
}

/// The cluster a plan was made against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRef {
    /// The uid of the `kube-system` namespace, when the cluster has one.
    pub id: Option<String>,
    pub server: String,
    /// `live` or `simulated`.
    pub kind: String,
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub id: String,
    /// 1-based, as messages name steps.
    pub number: usize,
    pub action: String,
    /// The playbook step this is a part of, when a target spanning namespaces was planned in
    /// parts (the part's own id is `<step>@<namespace>` or `<step>@<namespace>/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_of: Option<String>,
    #[serde(flatten)]
    pub state: PlannedState,
}

/// What the plan says of one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlannedState {
    /// The step will run: its rendered inputs (kept for verification) and its operations.
    Planned {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<Box<ResolvedTarget>>,
        #[serde(default)]
        with: Value,
        plan: Box<StepPlan>,
        /// The collections its decision read: the step is stale once they change.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        depends_on: Vec<super::depends::Collection>,
    },
    /// `when:` was false when planned.
    Skipped { reason: String },
    /// Planning failed for a step whose failure the playbook tolerates (`on_failure:
    /// continue`); it is not applied.
    Unplannable { error: String },
}

impl PlannedStep {
    pub fn plan(&self) -> Option<&StepPlan> {
        match &self.state {
            PlannedState::Planned { plan, .. } => Some(plan),
            _ => None,
        }
    }

    /// `step 3 (isolate)`: how messages name a step.
    pub fn label(&self) -> String {
        format!("step {} ({})", self.number, self.id)
    }
}

impl PlannedStep {
    /// The id of the playbook step this plans (its own id, or the step it is a part of).
    pub fn playbook_step(&self) -> &str {
        self.part_of.as_deref().unwrap_or(&self.id)
    }
}

impl RunPlan {
    pub fn step(&self, id: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// The text that stands in a plan for a step output that exists only once an earlier step is
/// applied (a capture's manifest hash): resolved when the step that reads it is applied.
pub fn after_apply_marker(step: &str, output: &str) -> String {
    format!("(known after apply: steps.{step}.outputs.{output})")
}

const MARKER_START: &str = "(known after apply: steps.";

/// Every `(step, output)` a value still waits for.
pub fn pending_outputs(value: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    collect_markers(value, &mut found);
    found.sort();
    found.dedup();
    found
}

fn collect_markers(value: &Value, found: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(at) = rest.find(MARKER_START) {
                let tail = &rest[at + MARKER_START.len()..];
                let Some(end) = tail.find(')') else { break };
                if let Some((step, output)) = tail[..end].split_once(".outputs.") {
                    found.push((step.to_string(), output.to_string()));
                }
                rest = &tail[end..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_markers(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect_markers(v, found)),
        _ => {}
    }
}

/// Replaces every marker in `value` with the output it stands for. A marker whose output is
/// missing from `outputs` is an error naming it.
pub fn resolve_markers(
    value: &mut Value,
    outputs: &Map<String, Value>,
) -> Result<(), (String, String)> {
    match value {
        Value::String(s) => {
            for (step, output) in pending_outputs(&Value::String(s.clone())) {
                let found = outputs
                    .get(&step)
                    .and_then(|o| o.get(&output))
                    .ok_or_else(|| (step.clone(), output.clone()))?;
                let text = match found {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                *s = s.replace(&after_apply_marker(&step, &output), &text);
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| resolve_markers(v, outputs)),
        Value::Object(map) => map
            .values_mut()
            .try_for_each(|v| resolve_markers(v, outputs)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markers_are_found_and_resolved_in_place() {
        let marker = after_apply_marker("capture", "manifest_sha256");
        let mut value = json!({"annotations": {"evidence": format!("sha256:{marker}")}, "n": 1});
        assert_eq!(
            pending_outputs(&value),
            vec![("capture".to_string(), "manifest_sha256".to_string())]
        );
        let outputs = json!({"capture": {"manifest_sha256": "abc"}});
        resolve_markers(&mut value, outputs.as_object().unwrap()).unwrap();
        assert_eq!(value["annotations"]["evidence"], "sha256:abc");
        assert!(pending_outputs(&value).is_empty());
    }

    #[test]
    fn a_missing_output_is_named() {
        let mut value = json!(after_apply_marker("capture", "archive_sha256"));
        let err = resolve_markers(&mut value, &Map::new()).unwrap_err();
        assert_eq!(err, ("capture".to_string(), "archive_sha256".to_string()));
    }
}
