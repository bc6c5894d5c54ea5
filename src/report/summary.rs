//! The end-of-run summary, built from the event stream: per step what happened, how long it
//! took and what it changed. Printed as text, or as the JSON/YAML document of `-o json|yaml`.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::event::{Event, EventKind, OpOutcome, Outcome, RollbackOutcome};
use crate::outcome::{CheckCounts, Verdict};
use crate::plan::StepPlan;

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub playbook: String,
    pub mode: String,
    pub cluster: Value,
    pub outcome: Option<Outcome>,
    /// The exit code the outcome maps to.
    pub exit_code: Option<u8>,
    /// Every check of the run, counted apart: passed, failed, not checked.
    pub checks: CheckCounts,
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
    /// `yes` only when every check was performed and passed; `partly` when some could not be.
    pub verified: Verdict,
    /// How the step's checks ended, counted apart.
    pub checks: CheckCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackOutcome>,
    /// What moved since the plan, when the run stopped before this step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<String>,
}

impl RunSummary {
    pub fn from_events(events: &[Event]) -> Self {
        let mut summary = RunSummary {
            run_id: String::new(),
            playbook: String::new(),
            mode: String::new(),
            cluster: Value::Null,
            outcome: None,
            exit_code: None,
            checks: CheckCounts::default(),
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
                EventKind::StepStarted { step, action, .. } => {
                    let entry = summary.entry(step);
                    entry.action = action.clone();
                    if entry.status.is_empty() {
                        entry.status = "started".into();
                    }
                }
                EventKind::StepSkipped { step, .. } => {
                    summary.entry(step).status = "skipped".into()
                }
                EventKind::StepAlreadyDone { step } => {
                    summary.entry(step).status = "done before".into()
                }
                EventKind::StepPlanned { step, plan } => {
                    if let Some((whole, _)) = step.split_once('@') {
                        summary.part(whole, step);
                    }
                    summary.step(step, |s| {
                        s.status = "planned".into();
                        s.plan = Some(plan.clone());
                    })
                }
                // A saved plan applied (`run --plan`) was planned by another process: its
                // steps' plans come with the approval, so their writes are counted too.
                EventKind::PlanApproved { plan } => {
                    for planned in &plan.steps {
                        let Some(step_plan) = planned.plan() else {
                            continue;
                        };
                        if let Some((whole, _)) = planned.id.split_once('@') {
                            summary.part(whole, &planned.id);
                        }
                        let entry = summary.entry(&planned.id);
                        if entry.plan.is_none() {
                            entry.plan = Some(step_plan.clone());
                        }
                        if entry.status.is_empty() {
                            entry.status = "planned".into();
                        }
                        if entry.action.is_empty() {
                            entry.action = planned.action.clone();
                        }
                    }
                }
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
                EventKind::StepVerified { step, verification } => {
                    summary.checks.add(verification.counts());
                    summary.step(step, |s| {
                        // A step with nothing to check (approve, a plain wait) is not "verified".
                        s.verified = verification.verdict();
                        s.checks = verification.counts();
                    })
                }
                EventKind::StepStale { step, changes } => summary.step(step, |s| {
                    s.status = "stale".into();
                    s.stale = changes.clone();
                }),
                EventKind::StepDone {
                    step, elapsed_ms, ..
                } => summary.step(step, |s| {
                    s.status = "done".into();
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
                EventKind::RunFinished { outcome } => {
                    summary.exit_code = Some(outcome.exit_code());
                    summary.outcome = Some(outcome.clone());
                }
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
                verified: Verdict::NothingToCheck,
                checks: CheckCounts::default(),
                error: None,
                rollback: None,
                stale: Vec::new(),
            });
        }
        self.steps
            .iter_mut()
            .rev()
            .find(|s| s.id == id)
            .expect("inserted above")
    }

    /// A part of a step planned in parts (`<step>@<namespace>`) gets its own row, which takes the
    /// place of the step's (a step in parts is only ever reported by its parts).
    fn part(&mut self, whole: &str, part: &str) {
        if self.steps.iter().any(|s| s.id == part) {
            return;
        }
        let action = self
            .steps
            .iter()
            .find(|s| s.id == whole)
            .map(|s| s.action.clone())
            .unwrap_or_default();
        self.steps.retain(|s| s.id != whole || s.plan.is_some());
        self.entry(part).action = action;
    }

    fn step(&mut self, id: &str, f: impl FnOnce(&mut StepSummary)) {
        if let Some(step) = self.steps.iter_mut().rev().find(|s| s.id == id) {
            f(step);
        }
    }

    /// The summary table printed after a run.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        if self.run_id.is_empty() {
            // No run started here: a rollback, whose steps were shown as they were undone.
            let _ = writeln!(out, "\nsummary ({} ms)", self.elapsed_ms);
        } else {
            let _ = writeln!(
                out,
                "\nsummary of run {} ({}, {} ms)",
                self.run_id, self.mode, self.elapsed_ms
            );
        }
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
        if !self.steps.is_empty() {
            let _ = writeln!(
                out,
                "  {:<width$}  {:<action_width$} {:<11} {:>6} {:>9}  verified",
                "step", "action", "status", "writes", "time"
            );
        }
        for s in &self.steps {
            let verified = match s.verified {
                Verdict::Partly => format!("partly ({} not checked)", s.checks.not_checked),
                other => other.as_str().to_string(),
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
                    crate::escape::sanitize(&rollback.describe())
                );
            }
        }
        if self.checks.total() > 0 {
            let _ = writeln!(
                out,
                "checks: {} passed, {} failed, {} not checked",
                self.checks.passed, self.checks.failed, self.checks.not_checked
            );
        }
        if let Some(outcome) = &self.outcome {
            let _ = writeln!(
                out,
                "outcome: {} (exit {})",
                crate::escape::sanitize(&outcome.describe()),
                outcome.exit_code()
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}
