//! The types that cross stages: what a verification check found, how a run ended (and each
//! step's rollback), how far an interrupted run got, the canary tokens a revocation is proven
//! with, and the one mapping from a run's outcome to its exit code. Actions produce checks, the executor produces
//! outcomes, and every report (progress, summary, JSON, journal) reads them from here, so no
//! stage has to import another for them.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::exit;

/// What one verification check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The post-condition was checked against the cluster and holds.
    Passed,
    /// The post-condition was checked and does not hold.
    Failed,
    /// The post-condition could not be checked here (the detail says why). Never counted as
    /// passed.
    NotChecked,
}

/// One post-condition check of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub what: String,
    pub status: CheckStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The result of checking a step's post-conditions against the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub checks: Vec<Check>,
    /// Checks that do not hold yet but may soon (a controller starting a replacement, a policy
    /// reaching admission): the executor reads again until they hold or their time is up, then
    /// records them failed. Never part of a recorded verification.
    #[serde(skip)]
    pub waiting: Vec<Waiting>,
}

/// A check that does not hold yet.
#[derive(Clone, Debug)]
pub struct Waiting {
    pub what: String,
    /// What was found the last time it was checked.
    pub detail: Option<String>,
    /// How long it may take, from the start of verification.
    pub within: std::time::Duration,
    /// The objects whose change may make it hold; `None`: no watch sees it (polled).
    pub watch: Option<crate::cluster::Watch>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (&self.what, &self.detail, self.within) == (&other.what, &other.detail, other.within)
    }
}

/// How many checks ended each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCounts {
    pub passed: usize,
    pub failed: usize,
    pub not_checked: usize,
}

impl CheckCounts {
    pub fn add(&mut self, other: CheckCounts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.not_checked += other.not_checked;
    }

    pub fn total(&self) -> usize {
        self.passed + self.failed + self.not_checked
    }
}

impl Verification {
    /// True when no check failed. Unchecked post-conditions do not fail a step, but they are
    /// counted apart and never reported as verified.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Failed)
    }

    /// A check that was performed: `ok` decides passed or failed.
    pub fn check(&mut self, what: impl Into<String>, ok: bool, detail: Option<String>) {
        self.checks.push(Check {
            what: what.into(),
            status: if ok {
                CheckStatus::Passed
            } else {
                CheckStatus::Failed
            },
            detail,
        });
    }

    /// A check that holds now, or is waited for: `ok` passes it; otherwise the executor reads
    /// again (when `watch` sees a change, else on a backoff) for up to `within`.
    pub fn check_within(
        &mut self,
        what: impl Into<String>,
        ok: bool,
        detail: Option<String>,
        within: std::time::Duration,
        watch: Option<crate::cluster::Watch>,
    ) {
        if ok {
            self.check(what, true, detail);
        } else {
            self.waiting.push(Waiting {
                what: what.into(),
                detail,
                within,
                watch,
            });
        }
    }

    /// The checks still waited for, recorded failed: their time is up.
    pub fn give_up_waiting(&mut self) {
        for waiting in std::mem::take(&mut self.waiting) {
            self.check(waiting.what, false, waiting.detail);
        }
    }

    /// A check that could not be performed, and why.
    pub fn not_checked(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            status: CheckStatus::NotChecked,
            detail: Some(why.into()),
        });
    }

    pub fn counts(&self) -> CheckCounts {
        let mut counts = CheckCounts::default();
        for check in &self.checks {
            match check.status {
                CheckStatus::Passed => counts.passed += 1,
                CheckStatus::Failed => counts.failed += 1,
                CheckStatus::NotChecked => counts.not_checked += 1,
            }
        }
        counts
    }

    /// `yes` only when every check was performed and passed.
    pub fn verdict(&self) -> Verdict {
        let counts = self.counts();
        if counts.total() == 0 {
            Verdict::NothingToCheck
        } else if counts.failed > 0 {
            Verdict::Failed
        } else if counts.not_checked > 0 {
            Verdict::Partly
        } else {
            Verdict::Verified
        }
    }
}

/// A step's verification in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every check was performed and passed.
    Verified,
    /// No check failed, but some could not be performed.
    Partly,
    Failed,
    /// The step has no post-condition (approve, a plain wait, a plan).
    NothingToCheck,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Verified => "yes",
            Verdict::Partly => "partly",
            Verdict::Failed => "NO",
            Verdict::NothingToCheck => "-",
        }
    }
}

/// How a run (or a plan, a tabletop, a resume, a rollback) ended. It alone decides the exit
/// code, through [`Outcome::exit_code`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Every step ran and every check was performed and passed.
    Succeeded,
    /// Every step ran and no check failed, but some checks could not be performed.
    SucceededUnchecked { not_checked: usize },
    /// A plan (or a dry run) was made and every step planned; nothing was written.
    Planned,
    /// A step failed. With `continued`, the run went on past it (`on_failure: continue`).
    Failed {
        step: String,
        error: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        continued: bool,
    },
    /// Every step ran but a post-condition check failed.
    VerifyFailed { step: String },
    /// A step failed and the completed steps were undone.
    RolledBack { step: String, error: String },
    /// A human did not approve an `approve` step.
    Declined { step: String },
    /// A guard (`require:`), the preflight, or the responder refused the run before any write.
    Refused { reason: String },
    /// The cluster moved since the plan was approved: the run stopped before this step.
    Stale { step: String, changes: Vec<String> },
    /// A run with no durable record of an approved plan: nothing was written.
    NeverStarted,
    /// A rollback undid everything it was asked to.
    RolledBackOnRequest,
    /// A rollback left some undo pending (retried by the next `rollback`).
    RollbackIncomplete { pending: Vec<String> },
}

impl Outcome {
    /// The documented exit code of this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Succeeded
            | Outcome::SucceededUnchecked { .. }
            | Outcome::Planned
            | Outcome::RolledBackOnRequest => exit::SUCCESS,
            Outcome::Failed { .. }
            | Outcome::RolledBack { .. }
            | Outcome::RollbackIncomplete { .. } => exit::STEP_FAILED,
            Outcome::VerifyFailed { .. } => exit::VERIFY_FAILED,
            Outcome::Declined { .. } | Outcome::Refused { .. } => exit::REFUSED,
            Outcome::Stale { .. } => exit::STALE_PLAN,
            Outcome::NeverStarted => exit::NEVER_STARTED,
        }
    }

    /// The outcome in a few words, the same in every mode and output.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Succeeded => "succeeded".into(),
            Outcome::SucceededUnchecked { not_checked } => {
                format!("succeeded, with {not_checked} check(s) not performed")
            }
            Outcome::Planned => "planned: nothing was written".into(),
            Outcome::Failed {
                step,
                continued: false,
                ..
            } => format!("failed at step {step}"),
            Outcome::Failed { step, .. } => {
                format!("failed: step {step} failed and the run went on")
            }
            Outcome::VerifyFailed { step } => format!("verification failed at step {step}"),
            Outcome::RolledBack { step, .. } => format!("rolled back after step {step} failed"),
            Outcome::Declined { step } => format!("stopped: step {step} was not approved"),
            Outcome::Refused { reason } => format!("refused: {reason}"),
            Outcome::Stale { step, .. } => {
                format!("stopped before step {step}: the plan is stale")
            }
            Outcome::NeverStarted => "never started: nothing was written".into(),
            Outcome::RolledBackOnRequest => "rolled back".into(),
            Outcome::RollbackIncomplete { pending } => {
                format!("rollback incomplete: {} still pending", pending.join(", "))
            }
        }
    }

    /// True when the outcome exits 0 (nothing left to resume).
    pub fn is_success(&self) -> bool {
        self.exit_code() == exit::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchecked_check_is_never_verified() {
        let mut v = Verification::default();
        v.check("a", true, None);
        v.not_checked("b", "simulated");
        assert!(v.passed(), "an unchecked check does not fail the step");
        assert_eq!(v.verdict(), Verdict::Partly);
        assert_eq!(
            v.counts(),
            CheckCounts {
                passed: 1,
                failed: 0,
                not_checked: 1
            }
        );
        v.check("c", false, None);
        assert_eq!(v.verdict(), Verdict::Failed);
        assert!(!v.passed());
    }

    #[test]
    fn every_outcome_maps_to_a_documented_code() {
        let outcomes = [
            Outcome::Succeeded,
            Outcome::SucceededUnchecked { not_checked: 1 },
            Outcome::Planned,
            Outcome::Failed {
                step: "s".into(),
                error: "e".into(),
                continued: true,
            },
            Outcome::VerifyFailed { step: "s".into() },
            Outcome::RolledBack {
                step: "s".into(),
                error: "e".into(),
            },
            Outcome::Declined { step: "s".into() },
            Outcome::Refused { reason: "r".into() },
            Outcome::Stale {
                step: "s".into(),
                changes: vec![],
            },
            Outcome::NeverStarted,
            Outcome::RolledBackOnRequest,
            Outcome::RollbackIncomplete { pending: vec![] },
        ];
        for outcome in outcomes {
            let code = outcome.exit_code();
            assert!(
                exit::TABLE.iter().any(|(c, _)| *c == code),
                "{outcome:?} → {code} is not in the table"
            );
            let failed_word = outcome.describe().starts_with("failed");
            assert_eq!(
                failed_word,
                code == exit::STEP_FAILED && matches!(outcome, Outcome::Failed { .. }),
                "{outcome:?}"
            );
        }
    }
}

/// What rolling back one step did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RollbackOutcome {
    /// Every inverse operation was applied.
    Undone,
    /// Everything was already as it was before the step.
    AlreadyUndone,
    /// The step changed nothing that needs undoing.
    NothingToUndo,
    /// The inverse operations were applied, but part of the step cannot be undone.
    PartlyUndone { reason: String },
    /// Irreversible by design (a rotated credential is never revived).
    Irreversible { reason: String },
    /// An inverse operation failed: the step stays pending for the next rollback.
    Failed { error: String },
}

impl RollbackOutcome {
    /// True while the step still needs undoing.
    pub fn is_pending(&self) -> bool {
        matches!(self, RollbackOutcome::Failed { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            RollbackOutcome::Undone => "undone".into(),
            RollbackOutcome::AlreadyUndone => "already undone".into(),
            RollbackOutcome::NothingToUndo => "nothing to undo".into(),
            RollbackOutcome::PartlyUndone { reason } => format!("partly undone: {reason}"),
            RollbackOutcome::Irreversible { reason } => {
                format!("skipped: irreversible ({reason})")
            }
            RollbackOutcome::Failed { error } => {
                format!("FAILED, still pending (run rollback again): {error}")
            }
        }
    }
}

/// How far an interrupted run got, read back from its journal.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    /// Steps that finished, with their outputs (later steps' markers resolve from them).
    pub done: HashMap<String, Map<String, Value>>,
    /// Steps whose writes had started (an `Intent` is journaled) but that did not finish: their
    /// approved plan is applied again, idempotently.
    pub started: HashSet<String>,
}

/// A token minted before a revocation, to prove it afterwards. Held in memory only.
#[derive(Clone)]
pub struct Canary {
    pub account: crate::cluster::object::ObjectRef,
    /// The pod the token is bound to, if any.
    pub bound_pod: Option<String>,
    pub token: String,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Canary({}, token redacted)", self.account)
    }
}

/// What happens to a run whose review fell due (a playbook's `on_review_due`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnReviewDue {
    /// Say so (an Event on the run and its notifications); undo nothing.
    #[default]
    Notify,
    /// Roll the run back through the journal, as `contain rollback` would.
    Rollback,
}

/// The review rules a run was started with (kept in its journal header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewPolicy {
    /// The playbook's `review_after`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_seconds: Option<u64>,
    /// Steps' own `review_after`, in seconds, by playbook step number (from 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<usize, u64>,
    #[serde(default, skip_serializing_if = "is_notify")]
    pub on_due: OnReviewDue,
}

fn is_notify(on_due: &OnReviewDue) -> bool {
    *on_due == OnReviewDue::Notify
}

impl ReviewPolicy {
    pub fn is_empty(&self) -> bool {
        self.after_seconds.is_none() && self.steps.is_empty() && is_notify(&self.on_due)
    }

    /// How long what the step numbered `number` puts in place may stay before a review.
    pub fn after(&self, number: usize) -> Option<u64> {
        self.steps.get(&number).copied().or(self.after_seconds)
    }

    /// When what a step put in place at `since` (RFC 3339) falls due, if it ever does.
    pub fn due(&self, number: usize, since: &str) -> Option<jiff::Timestamp> {
        let since: jiff::Timestamp = since.parse().ok()?;
        let after = i64::try_from(self.after(number)?).ok()?;
        since
            .checked_add(jiff::SignedDuration::from_secs(after))
            .ok()
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;

    #[test]
    fn a_step_review_overrides_the_playbook_one_and_due_adds_it_to_since() {
        let policy = ReviewPolicy {
            after_seconds: Some(3600),
            steps: [(2, 60)].into(),
            on_due: OnReviewDue::Notify,
        };
        assert_eq!(policy.after(1), Some(3600));
        assert_eq!(policy.after(2), Some(60));
        assert_eq!(
            policy.due(2, "2026-12-06T03:00:00Z").unwrap().to_string(),
            "2026-12-06T03:01:00Z"
        );
        assert_eq!(ReviewPolicy::default().due(1, "2026-12-06T03:00:00Z"), None);
        assert!(ReviewPolicy::default().is_empty());
    }
}
