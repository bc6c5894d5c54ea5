//! What a run's ContainmentRun says of it, computed from the journal as plain data: its phase,
//! each step's status, the containment still in force (with when it falls due for review), the
//! Leases, and who took the run over from whom. The same summary feeds `contain runs` and
//! `contain handover`.

use serde::Serialize;

use crate::journal::{RunState, StepState};
use crate::outcome::Outcome;

/// One step as the summary shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepLine {
    pub id: String,
    pub action: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// Something a step put in place that a rollback would undo.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InForce {
    pub step: String,
    pub action: String,
    pub summary: String,
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_due: Option<jiff::Timestamp>,
}

/// A run's summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    pub steps: Vec<StepLine>,
    pub in_force: Vec<InForce>,
    pub in_force_count: usize,
    /// The earliest review due of what is in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_due: Option<jiff::Timestamp>,
}

/// The run's phase, as `kubectl get containmentruns` shows it.
pub fn phase(state: &RunState) -> &'static str {
    if state.never_started() {
        return "Planned";
    }
    match state.outcome() {
        None if state.rolling_back() => "RollingBack",
        None => "Running",
        Some(Outcome::Succeeded | Outcome::SucceededUnchecked { .. }) => "Succeeded",
        Some(Outcome::RolledBack { .. } | Outcome::RolledBackOnRequest) => "RolledBack",
        Some(Outcome::RollbackIncomplete { .. }) => "RollbackIncomplete",
        Some(Outcome::Stale { .. }) => "Stale",
        Some(Outcome::Failed { .. } | Outcome::VerifyFailed { .. }) => "Failed",
        Some(Outcome::Declined { .. } | Outcome::Refused { .. }) => "Refused",
        Some(Outcome::Planned | Outcome::NeverStarted) => "Planned",
    }
}

fn status_of(step: &StepState) -> String {
    if let Some(outcome) = &step.rolled_back {
        format!("rolled back: {}", outcome.describe())
    } else if step.stale.is_some() {
        "stale, not written".into()
    } else if step.outputs.is_some() {
        "done".into()
    } else if let Some(error) = &step.failed {
        format!("failed: {error}")
    } else if step.skipped.is_some() {
        "skipped".into()
    } else if step.intent {
        format!("interrupted after {} write(s)", step.applied)
    } else {
        "pending".into()
    }
}

/// The steps whose writes a rollback would still undo, in plan order.
pub fn in_force(state: &RunState) -> Vec<InForce> {
    state
        .steps
        .iter()
        .filter(|s| s.outputs.is_some() || s.intent)
        .filter(|s| {
            s.rolled_back
                .as_ref()
                .is_none_or(crate::outcome::RollbackOutcome::is_pending)
        })
        .filter_map(|s| {
            let plan = s.plan.as_ref()?;
            if plan.inverse.is_empty() || !plan.ops.iter().any(|op| op.is_write()) {
                return None;
            }
            let since = s.done_at.clone().or_else(|| s.started_at.clone())?;
            Some(InForce {
                step: s.step.clone(),
                action: plan.action.clone(),
                summary: plan.summary.clone(),
                review_due: state.info.review.due(s.number, &since),
                since,
            })
        })
        .collect()
}

/// The summary of a run read from its journal.
pub fn summarize(state: &RunState) -> Summary {
    let in_force = in_force(state);
    let review_due = in_force.iter().filter_map(|f| f.review_due).min();
    Summary {
        phase: phase(state).to_string(),
        outcome: state.outcome().map(|o| o.describe()),
        steps: state
            .steps
            .iter()
            .map(|s| StepLine {
                id: s.step.clone(),
                action: s
                    .plan
                    .as_ref()
                    .map(|p| p.action.clone())
                    .unwrap_or_default(),
                status: status_of(s),
                at: s.done_at.clone().or_else(|| s.started_at.clone()),
            })
            .collect(),
        in_force_count: in_force.len(),
        in_force,
        review_due,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A plan of two label steps, `mark` (step 1) and `note` (step 2).
    pub fn plan() -> Value {
        let step = |id: &str, number: usize, pod: &str| {
            let target = json!({"kind": "Pod", "namespace": "shop", "name": pod});
            let change = json!({"path": ["metadata", "labels", "contain.dev/suspect"], "before": null, "after": "true"});
            let undo = json!({"path": ["metadata", "labels", "contain.dev/suspect"], "before": "true", "after": null});
            json!({"id": id, "number": number, "action": "object.label", "state": "planned",
                "target": target, "with": {},
                "plan": {"step": id, "action": "object.label", "summary": format!("label Pod shop/{pod}"),
                    "ops": [{"op": "patch", "target": target, "uid": "u", "changes": [change]}],
                    "inverse": [{"op": "patch", "target": target, "uid": "u", "changes": [undo]}],
                    "reversible": "reversible", "outputs": {}}})
        };
        json!({"format": 1, "run_id": "R", "created_at": "2026-12-06T03:00:00Z",
            "playbook": {"path": "/p.yaml", "name": "p", "sha256": "0"}, "params": {},
            "cluster": {"id": "c", "server": "s", "kind": "live"},
            "steps": [step("mark", 1, "web-1"), step("note", 2, "web-2")]})
    }

    /// A run read from these records (bodies, each at the given time), with `review_after`.
    pub fn state(review: crate::outcome::ReviewPolicy, bodies: &[(&str, Value)]) -> RunState {
        let header = journal::RunHeader {
            run: "R".into(),
            format: journal::FORMAT_VERSION,
            created_at: "2026-12-06T03:00:00Z".into(),
            info: json!({"playbook_path": "/p.yaml", "playbook_sha256": "0", "playbook_name": "p",
                "params": {}, "cluster_id": "c", "server": "s", "user": "alice", "host": "laptop-7",
                "mode": "live", "started_at": "2026-12-06T03:00:00Z", "review": review}),
        };
        let mut state = RunState::from_header(&header).unwrap();
        for (i, (at, body)) in bodies.iter().enumerate() {
            state
                .apply(journal::Record {
                    seq: i as u64 + 1,
                    at: at.to_string(),
                    prev: String::new(),
                    hash: String::new(),
                    body: body.clone(),
                })
                .unwrap();
        }
        state
    }

    #[test]
    fn what_is_in_force_is_what_a_rollback_would_still_undo_with_its_review_due() {
        let review = crate::outcome::ReviewPolicy {
            after_seconds: Some(3600),
            steps: [(2, 60)].into(),
            ..Default::default()
        };
        let t = "2026-12-06T03:00:0";
        let mut records = vec![
            (
                format!("{t}1Z"),
                json!({"record": "approved", "plan": plan()}),
            ),
            (
                format!("{t}2Z"),
                json!({"record": "intent", "step": "mark"}),
            ),
            (
                format!("{t}3Z"),
                json!({"record": "done", "step": "mark", "outputs": {}}),
            ),
            (
                format!("{t}4Z"),
                json!({"record": "intent", "step": "note"}),
            ),
        ];
        let read = |r: &[(String, Value)]| {
            let pairs: Vec<(&str, Value)> =
                r.iter().map(|(a, b)| (a.as_str(), b.clone())).collect();
            state(review.clone(), &pairs)
        };
        // Killed while writing `note`: both are in force (the started one may have written).
        let summary = summarize(&read(&records));
        assert_eq!(summary.phase, "Running");
        assert_eq!(summary.in_force_count, 2);
        assert_eq!(summary.in_force[0].since, "2026-12-06T03:00:03Z");
        assert_eq!(
            summary.in_force[0]
                .review_due
                .map(|t| t.to_string())
                .as_deref(),
            Some("2026-12-06T04:00:03Z")
        );
        assert_eq!(
            summary.review_due.map(|t| t.to_string()).as_deref(),
            Some("2026-12-06T03:01:04Z"),
            "note's own review_after comes due first"
        );
        assert_eq!(summary.steps[1].status, "interrupted after 0 write(s)");
        // Finished, then `note` rolled back: only `mark` is in force.
        records.push((
            format!("{t}5Z"),
            json!({"record": "done", "step": "note", "outputs": {}}),
        ));
        records.push((
            format!("{t}6Z"),
            json!({"record": "finished", "outcome": {"status": "succeeded"}}),
        ));
        let done = summarize(&read(&records));
        assert_eq!(done.phase, "Succeeded");
        records.push((
            format!("{t}7Z"),
            json!({"record": "rollback_started", "reason": "r"}),
        ));
        records.push((
            format!("{t}8Z"),
            json!({"record": "rollback_step", "step": "note", "outcome": {"result": "undone"}}),
        ));
        let partly = summarize(&read(&records));
        assert_eq!(partly.phase, "RollingBack");
        let steps: Vec<&str> = partly.in_force.iter().map(|f| f.step.as_str()).collect();
        assert_eq!(steps, ["mark"]);
    }
}
