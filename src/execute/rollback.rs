//! Rollback: the inverse operations of completed steps, newest first. Each step's result is
//! typed; a failed undo stays pending in the journal, so the next `rollback` retries it.

use super::apply::{self, ApplyError, AutoApprove};
use super::{Executor, RunConfig, failpoint};
use crate::cluster::ClusterError;
use crate::event::{EventKind, OpOutcome, SinkError};
use crate::outcome::RollbackOutcome;
use crate::plan::{Op, Reversibility, StepPlan};

impl Executor<'_> {
    /// Applies the inverses of `completed`, newest first. Returns the steps whose undo failed
    /// (still pending).
    pub async fn rollback(
        &mut self,
        completed: &mut Vec<StepPlan>,
        reason: &str,
        config: &RunConfig,
    ) -> Result<Vec<String>, SinkError> {
        self.emit(EventKind::RollbackStarted {
            reason: reason.to_string(),
        })?;
        let mut pending = Vec::new();
        while let Some(plan) = completed.pop() {
            let outcome = self.undo(&plan, config).await;
            if outcome.is_pending() {
                pending.push(plan.step.clone());
            }
            self.emit(EventKind::RollbackStep {
                step: plan.step.clone(),
                outcome,
            })?;
        }
        pending.reverse();
        Ok(pending)
    }

    async fn undo(&mut self, plan: &StepPlan, config: &RunConfig) -> RollbackOutcome {
        let partial = match &plan.reversibility {
            Reversibility::Irreversible { reason } => {
                return RollbackOutcome::Irreversible {
                    reason: reason.clone(),
                };
            }
            Reversibility::Partial { reason } => Some(reason.clone()),
            Reversibility::Reversible => None,
        };
        if plan.inverse.is_empty() {
            return RollbackOutcome::NothingToUndo;
        }
        let mut wrote = false;
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        for op in &plan.inverse {
            if let Some(why) = self.still_needed(op, &config.run_id).await {
                kept.push(why);
                continue;
            }
            let result = apply::apply(
                op,
                &plan.step,
                &config.run_id,
                config.mode.carry(),
                self.cluster,
                &mut AutoApprove,
            )
            .await;
            match result {
                Ok(OpOutcome::AlreadyDone) => {}
                Ok(_) => wrote = true,
                // The object the undo would restore is gone (the suspect pod deleted by its
                // controller, say): nothing to restore there, and the other undos still run.
                Err(ApplyError::Cluster(ClusterError::NotFound { object }))
                    if matches!(op, Op::Patch { .. }) =>
                {
                    gone.push(object);
                }
                Err(e) => {
                    return RollbackOutcome::Failed {
                        error: e.to_string(),
                    };
                }
            }
            failpoint("in-rollback", &plan.step);
        }
        let mut reasons: Vec<String> = partial.into_iter().collect();
        reasons.extend(kept);
        if !gone.is_empty() {
            reasons.push(format!("{} no longer exist(s)", gone.join(", ")));
        }
        match (reasons.is_empty(), wrote) {
            (true, true) => RollbackOutcome::Undone,
            (true, false) => RollbackOutcome::AlreadyUndone,
            (false, _) => RollbackOutcome::PartlyUndone {
                reason: reasons.join("; "),
            },
        }
    }

    /// Why an undo must not be applied yet, if it must not: an exclusive isolation's patch of
    /// another policy (`contain.dev/quarantine DoesNotExist`) is shared by every run that
    /// quarantines a pod in that namespace, so it stays while a pod of another run still
    /// carries the quarantine label.
    async fn still_needed(&self, op: &Op, run_id: &str) -> Option<String> {
        use crate::action::isolate::QUARANTINE_LABEL;
        let Op::Patch {
            target, changes, ..
        } = op
        else {
            return None;
        };
        let removes_exclusion = target.kind == "NetworkPolicy"
            && changes.iter().any(|c| {
                let excludes = |v: &Option<serde_json::Value>| {
                    v.as_ref()
                        .is_some_and(|v| v.to_string().contains(QUARANTINE_LABEL))
                };
                excludes(&c.before) && !excludes(&c.after)
            });
        if !removes_exclusion {
            return None;
        }
        let kind = crate::cluster::kinds::lookup("Pod")?;
        let pods = self
            .cluster
            .list(
                kind,
                target.namespace.as_deref(),
                &crate::cluster::Selector::default(),
            )
            .await
            .ok()?;
        let others: Vec<String> = pods
            .iter()
            .filter(|p| {
                crate::cluster::object::labels(p)
                    .get(QUARANTINE_LABEL)
                    .is_some_and(|run| run != run_id)
            })
            .filter_map(|p| crate::cluster::object::name(p).map(str::to_string))
            .collect();
        (!others.is_empty()).then(|| {
            format!(
                "{target} keeps its exclusion of quarantined pods: {} still quarantined by another run",
                others.join(", ")
            )
        })
    }
}
