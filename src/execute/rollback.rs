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
        for op in &plan.inverse {
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
}
