//! The end-of-run summary, built from the event stream: per step what happened, how long it
//! took and what it changed. Printed as text, or as the JSON/YAML document of `-o json|yaml`.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::event::{Event, EventKind, OpOutcome, Outcome};
use crate::plan::StepPlan;

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub playbook: String,
    pub mode: String,
    pub cluster: Value,
    pub outcome: Option<Outcome>,
    pub elapsed_ms: u64,
    pub steps: Vec<StepSummary>,
    /// Caveats the reader must know (for example: a simulated cluster runs no controllers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StepSummary {
    pub id: String,
    pub action: String,
    /// `done`, `skipped`, `failed` or `planned`.
    pub status: String,
    pub elapsed_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<StepPlan>,
    pub writes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

impl RunSummary {
    pub fn from_events(events: &[Event]) -> Self {
        let mut summary = RunSummary {
            run_id: String::new(),
            playbook: String::new(),
            mode: String::new(),
            cluster: Value::Null,
            outcome: None,
            elapsed_ms: 0,
            steps: Vec::new(),
            notes: Vec::new(),
        };
        for event in events {
            summary.elapsed_ms = event.elapsed_ms;
            match &event.kind {
                EventKind::RunStarted {
                    run_id,
                    playbook,
                    mode,
                    cluster,
                    ..
                } => {
                    summary.run_id = run_id.clone();
                    summary.playbook = playbook.clone();
                    summary.mode = mode.clone();
                    summary.cluster = serde_json::to_value(cluster).unwrap_or(Value::Null);
                }
                EventKind::StepStarted { step, action, .. } => summary.steps.push(StepSummary {
                    id: step.clone(),
                    action: action.clone(),
                    status: "started".into(),
                    elapsed_ms: 0,
                    plan: None,
                    writes: 0,
                    verified: None,
                    error: None,
                    rollback: None,
                }),
                EventKind::StepSkipped { step, .. } => {
                    summary.entry(step).status = "skipped".into()
                }
                EventKind::StepAlreadyDone { step } => {
                    summary.entry(step).status = "done before".into()
                }
                EventKind::StepPlanned { step, plan } => summary.step(step, |s| {
                    s.status = "planned".into();
                    s.plan = Some(plan.clone());
                }),
                EventKind::OpApplied {
                    step,
                    index,
                    outcome,
                    ..
                } => summary.step(step, |s| {
                    let write = s
                        .plan
                        .as_ref()
                        .and_then(|p| p.ops.get(*index))
                        .is_some_and(crate::plan::Op::is_write);
                    if write && matches!(outcome, OpOutcome::Applied | OpOutcome::DryRun) {
                        s.writes += 1;
                    }
                }),
                EventKind::StepVerified { step, verification } => summary.step(step, |s| {
                    // A step with nothing to check (approve, a plain wait) is not "verified".
                    s.verified = (!verification.checks.is_empty()).then(|| verification.passed());
                }),
                EventKind::StepDone {
                    step, elapsed_ms, ..
                } => summary.step(step, |s| {
                    if s.status != "planned" || s.writes > 0 || s.verified.is_some() {
                        s.status = "done".into();
                    }
                    s.elapsed_ms = *elapsed_ms;
                }),
                EventKind::StepFailed {
                    step,
                    error,
                    elapsed_ms,
                } => summary.step(step, |s| {
                    s.status = "failed".into();
                    s.error = Some(error.clone());
                    s.elapsed_ms = *elapsed_ms;
                }),
                EventKind::RollbackStep { step, outcome } => {
                    summary.step(step, |s| s.rollback = Some(outcome.clone()))
                }
                EventKind::RunFinished { outcome } => summary.outcome = Some(outcome.clone()),
                _ => {}
            }
        }
        summary
    }

    /// The summary of a step, created when a resumed run reports it without starting it.
    fn entry(&mut self, id: &str) -> &mut StepSummary {
        if !self.steps.iter().any(|s| s.id == id) {
            self.steps.push(StepSummary {
                id: id.to_string(),
                action: String::new(),
                status: String::new(),
                elapsed_ms: 0,
                plan: None,
                writes: 0,
                verified: None,
                error: None,
                rollback: None,
            });
        }
        self.steps
            .iter_mut()
            .rev()
            .find(|s| s.id == id)
            .expect("inserted above")
    }

    fn step(&mut self, id: &str, f: impl FnOnce(&mut StepSummary)) {
        if let Some(step) = self.steps.iter_mut().rev().find(|s| s.id == id) {
            f(step);
        }
    }

    /// The summary table printed after a run.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nsummary of run {} ({}, {} ms)",
            self.run_id, self.mode, self.elapsed_ms
        );
        let width = self
            .steps
            .iter()
            .map(|s| s.id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let action_width = self
            .steps
            .iter()
            .map(|s| s.action.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "  {:<width$}  {:<action_width$} {:<11} {:>6} {:>9}  verified",
            "step", "action", "status", "writes", "time"
        );
        for s in &self.steps {
            let verified = match s.verified {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            let _ = writeln!(
                out,
                "  {:<width$}  {:<action_width$} {:<11} {:>6} {:>7}ms  {verified}",
                s.id, s.action, s.status, s.writes, s.elapsed_ms
            );
            if let Some(rollback) = &s.rollback {
                let _ = writeln!(
                    out,
                    "  {:<width$}  rollback: {}",
                    "",
                    super::sanitize(rollback)
                );
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}
