//! The run journal as contain uses it: the records of a run, the sink that writes them durably
//! while the executor runs (before any cluster write), and the reading back of a run for
//! `resume`, `rollback` and `journal show`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use journal::{Journal, JournalError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::{Event, EventKind, EventSink, OpOutcome, Outcome, RollbackOutcome, SinkError};
use crate::outcome::Resume;
use crate::outcome::Verification;
use crate::plan::{PlannedState, RunPlan, StepPlan};

/// What the journal knows about a run before its first step.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub playbook_path: String,
    pub playbook_sha256: String,
    pub playbook_name: String,
    pub params: Map<String, Value>,
    /// The uid of the `kube-system` namespace: `resume` refuses any other cluster.
    pub cluster_id: String,
    pub server: String,
    pub context: Option<String>,
    pub user: String,
    /// The machine the run was started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub mode: String,
    pub started_at: String,
    /// The Leases the run took on its targets (and whom any was stolen from, and why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<crate::run_lock::LockRecord>,
    /// When what the run puts in place must be looked at again, and what happens then.
    #[serde(
        default,
        skip_serializing_if = "crate::outcome::ReviewPolicy::is_empty"
    )]
    pub review: crate::outcome::ReviewPolicy,
    /// What the playbook says whoever takes the incident over should do next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_steps: Vec<String>,
    /// The params the playbook marks `sensitive`: redacted in the run's copy in the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive_params: Vec<String>,
}

/// One journal record.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Entry {
    /// The whole approved plan: durable before the first write. A run without one never
    /// started, and nothing was written.
    Approved {
        plan: Box<RunPlan>,
    },
    /// A run stopped because the cluster moved under a step's plan.
    Stale {
        step: String,
        changes: Vec<String>,
    },
    /// Durable before the step's first cluster write.
    Intent {
        step: String,
    },
    Applied {
        step: String,
        index: usize,
        op: String,
        outcome: OpOutcome,
    },
    Done {
        step: String,
        outputs: Map<String, Value>,
    },
    /// One evidence artifact and its hash, as it was written.
    Captured {
        step: String,
        artifact: String,
        sha256: String,
        size: u64,
    },
    Verified {
        step: String,
        verification: Verification,
    },
    Failed {
        step: String,
        error: String,
    },
    Skipped {
        step: String,
        reason: String,
    },
    RollbackStarted {
        reason: String,
    },
    RollbackStep {
        step: String,
        outcome: RollbackOutcome,
    },
    Finished {
        outcome: Value,
    },
    /// Another responder (or the same one elsewhere) took the run over to resume or roll it
    /// back: who held it, who holds it now, and for what.
    TakenOver {
        from: String,
        to: String,
        #[serde(rename = "for")]
        purpose: String,
    },
    /// A notification and how it went (a failed one never failed the run).
    Notified {
        channel: String,
        about: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Each run has a store of its own under the journal directory, so runs started side by side
/// never wait for each other; two processes on the same run (a resume while the run still
/// goes on) get a clear "in use" error instead.
fn run_dir(root: &Path, run: &str) -> PathBuf {
    root.join(run)
}

/// Opens the store of a new run.
pub fn open_new(root: &Path, run: &str) -> Result<Journal, JournalError> {
    let dir = run_dir(root, run);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Err(JournalError::Storage {
            path: dir,
            source: e.into(),
        });
    }
    Journal::open(&dir, Duration::from_secs(5))
}

/// Opens the store of an existing run, waiting up to `wait` for another process to release it.
pub fn open_run(root: &Path, run: &str, wait: Duration) -> Result<Journal, JournalError> {
    let dir = run_dir(root, run);
    // Run ids are file names here: refuse anything that could walk out of the journal.
    if run.is_empty() || run.contains(['/', '\\']) || run.starts_with('.') || !dir.is_dir() {
        return Err(JournalError::UnknownRun(run.to_string()));
    }
    Journal::open(&dir, wait)
}

/// The ids of every run in the journal directory, oldest first (ids sort by time).
pub fn run_ids(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| !name.starts_with('.') && name != "drills")
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Writes a run's records as the executor emits events.
///
/// Records that say a write happened (`applied`) are held back and committed with the next
/// record, or once `GROUP` of them wait: one fsync for a batch of operations instead of one each.
/// The promise still holds (every write is journaled before it happens): the records that must
/// precede a write (the approved plan, a step's intent) are never held. A crash loses at most the
/// held `applied` records, and resume re-observes the step's objects, finding those writes done.
pub struct RunJournal<'a> {
    journal: &'a Journal,
    run: String,
    held: Vec<Value>,
    /// The run's copy in the cluster, handed each commit (following it, or write-ahead).
    mirror: Option<Box<dyn RecordCopy>>,
}

/// Where committed records go besides the local journal (the run's ContainmentRun).
pub trait RecordCopy: Send {
    /// Takes records just made durable here; `before_write`: they precede a cluster write.
    /// An error stops the run before that write.
    fn send(&self, records: Vec<::journal::Record>, before_write: bool) -> Result<(), String>;
}

/// How many `applied` records wait at most for one commit.
const GROUP: usize = 256;

impl<'a> RunJournal<'a> {
    /// Starts recording a new run.
    pub fn create(journal: &'a Journal, run: &str, info: &RunInfo) -> Result<Self, JournalError> {
        journal.create_run(
            run,
            serde_json::to_value(info).expect("run info serializes"),
        )?;
        Ok(RunJournal {
            journal,
            run: run.to_string(),
            held: Vec::new(),
            mirror: None,
        })
    }

    /// Goes on recording an existing run (resume, rollback).
    pub fn reopen(journal: &'a Journal, run: &str) -> Self {
        RunJournal {
            journal,
            run: run.to_string(),
            held: Vec::new(),
            mirror: None,
        }
    }

    /// Hands every commit to the run's cluster copy too.
    pub fn mirrored(mut self, mirror: Option<Box<dyn RecordCopy>>) -> Self {
        self.mirror = mirror;
        self
    }

    /// Appends a record (with any held ones before it) and returns once all are durable; an
    /// `applied` record may be held instead, for the next commit.
    pub fn append(&mut self, entry: &Entry) -> Result<(), SinkError> {
        self.held
            .push(serde_json::to_value(entry).expect("entries serialize"));
        if matches!(entry, Entry::Applied { .. }) && self.held.len() < GROUP {
            return Ok(());
        }
        let before_write = matches!(
            entry,
            Entry::Approved { .. }
                | Entry::Intent { .. }
                | Entry::RollbackStarted { .. }
                | Entry::TakenOver { .. }
        );
        self.commit(before_write)
    }

    /// Makes every held record durable.
    pub fn commit_held(&mut self) -> Result<(), SinkError> {
        self.commit(false)
    }

    /// Makes every held record durable, then hands them to the cluster copy (`before_write`:
    /// they precede a cluster write).
    fn commit(&mut self, before_write: bool) -> Result<(), SinkError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let records = self
            .journal
            .append_all(&self.run, held)
            .map_err(|e| SinkError(e.to_string()))?;
        match &self.mirror {
            Some(mirror) => mirror.send(records, before_write).map_err(|e| {
                SinkError(format!("the cluster journal did not take the record: {e}"))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for RunJournal<'_> {
    fn drop(&mut self) {
        // A run that ends without its last record (an error) still keeps what it applied.
        let _ = self.commit_held();
    }
}

impl EventSink for RunJournal<'_> {
    fn commit(&mut self) -> Result<(), SinkError> {
        self.commit_held()
    }

    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        let entry = match &event.kind {
            EventKind::PlanApproved { plan } => Entry::Approved {
                plan: Box::new(plan.clone()),
            },
            EventKind::StepStale { step, changes } => Entry::Stale {
                step: step.clone(),
                changes: changes.clone(),
            },
            EventKind::StepIntent { step } => Entry::Intent { step: step.clone() },
            EventKind::OpApplied {
                step,
                index,
                op,
                outcome,
            } => Entry::Applied {
                step: step.clone(),
                index: *index,
                op: op.clone(),
                outcome: *outcome,
            },
            EventKind::Captured {
                step,
                artifact,
                sha256,
                size,
                ..
            } => Entry::Captured {
                step: step.clone(),
                artifact: artifact.clone(),
                sha256: sha256.clone(),
                size: *size,
            },
            EventKind::StepVerified { step, verification } => Entry::Verified {
                step: step.clone(),
                verification: verification.clone(),
            },
            EventKind::StepDone { step, outputs, .. } => Entry::Done {
                step: step.clone(),
                outputs: outputs.clone(),
            },
            EventKind::StepFailed { step, error, .. } => Entry::Failed {
                step: step.clone(),
                error: error.clone(),
            },
            EventKind::StepSkipped { step, reason } => Entry::Skipped {
                step: step.clone(),
                reason: reason.clone(),
            },
            EventKind::RollbackStarted { reason } => Entry::RollbackStarted {
                reason: reason.clone(),
            },
            EventKind::RollbackStep { step, outcome } => Entry::RollbackStep {
                step: step.clone(),
                outcome: outcome.clone(),
            },
            EventKind::RunFinished { outcome } => Entry::Finished {
                outcome: serde_json::to_value(outcome).unwrap_or(Value::Null),
            },
            EventKind::Notified {
                channel,
                about,
                error,
            } => Entry::Notified {
                channel: channel.clone(),
                about: about.clone(),
                error: error.clone(),
            },
            // Planning events precede the journal (nothing is written before the approved plan
            // is); the others carry nothing resume or rollback needs.
            EventKind::RunStarted { .. }
            | EventKind::FactResolved { .. }
            | EventKind::GuardChecked { .. }
            | EventKind::Preflight { .. }
            | EventKind::ServerDryRun { .. }
            | EventKind::StepPlanned { .. }
            | EventKind::Resumed { .. }
            | EventKind::StepResumed { .. }
            | EventKind::StepStarted { .. }
            | EventKind::StepAlreadyDone { .. } => return Ok(()),
        };
        self.append(&entry)
    }
}

/// One step as the journal saw it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepState {
    pub step: String,
    /// The playbook step it plans (from 1; the parts of a `for_each` step share it).
    pub number: usize,
    pub plan: Option<StepPlan>,
    pub intent: bool,
    pub applied: usize,
    pub outputs: Option<Map<String, Value>>,
    pub failed: Option<String>,
    pub skipped: Option<String>,
    pub stale: Option<Vec<String>>,
    pub rolled_back: Option<RollbackOutcome>,
    /// When the step's writes began (its intent record) and when it finished.
    pub started_at: Option<String>,
    pub done_at: Option<String>,
}

/// One take-over of a run, as journaled.
#[derive(Clone, Debug, Serialize)]
pub struct Handover {
    pub from: String,
    pub to: String,
    pub purpose: String,
    pub at: String,
}

/// A run read back from the journal.
#[derive(Clone, Debug, Serialize)]
pub struct RunState {
    pub run: String,
    pub info: RunInfo,
    /// The approved plan; `None` when the run never got that far (nothing was written).
    pub plan: Option<RunPlan>,
    /// Steps in plan order.
    pub steps: Vec<StepState>,
    pub finished: Option<Value>,
    pub records: usize,
    /// Who took the run over from whom, oldest first.
    pub handovers: Vec<Handover>,
    /// Each step's position in `steps`, rebuilt with every approved plan.
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl RunInfo {
    /// Who started the run, and from where: `user on host`.
    pub fn started_by(&self) -> String {
        format!(
            "{} on {}",
            self.user,
            self.host.as_deref().unwrap_or("an unknown host")
        )
    }
}

impl RunState {
    pub fn read(journal: &Journal, run: &str) -> Result<Self, JournalError> {
        RunState::from_records(&journal.run(run)?, &journal.records(run)?)
    }

    /// A run from its header and records, wherever they were read (a journal, the cluster).
    pub fn from_records(
        header: &::journal::RunHeader,
        records: &[::journal::Record],
    ) -> Result<Self, JournalError> {
        let mut state = RunState::from_header(header)?;
        for record in records {
            state.apply(record.clone())?;
        }
        Ok(state)
    }

    /// A run with its header read and no record yet: records follow with [`RunState::apply`].
    pub fn from_header(header: &::journal::RunHeader) -> Result<Self, JournalError> {
        let info: RunInfo =
            serde_json::from_value(header.info.clone()).map_err(|e| JournalError::Corrupt {
                run: header.run.clone(),
                seq: 0,
                message: format!("run header: {e}"),
            })?;
        Ok(RunState {
            run: header.run.clone(),
            info,
            plan: None,
            steps: Vec::new(),
            finished: None,
            records: 0,
            handovers: Vec::new(),
            index: HashMap::new(),
        })
    }

    /// Who holds the run now: the last to take it over, else who started it.
    pub fn holder(&self) -> String {
        self.handovers
            .last()
            .map_or_else(|| self.info.started_by(), |h| h.to.clone())
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut StepState> {
        let i = *self.index.get(id)?;
        self.steps.get_mut(i)
    }

    /// Reads the next record of the run into the state.
    pub fn apply(&mut self, record: ::journal::Record) -> Result<(), JournalError> {
        self.records += 1;
        let at = record.at;
        let entry: Entry =
            serde_json::from_value(record.body).map_err(|e| JournalError::Corrupt {
                run: self.run.clone(),
                seq: record.seq,
                message: e.to_string(),
            })?;
        if let Entry::Approved { plan } = &entry {
            // A later approval (a re-plan after a stale step) replaces the plans of the
            // steps not applied yet; what the journal says of the others stays.
            let mut before: HashMap<String, StepState> =
                self.steps.drain(..).map(|s| (s.step.clone(), s)).collect();
            self.steps = plan
                .steps
                .iter()
                .map(|s| {
                    let fresh = StepState {
                        step: s.id.clone(),
                        number: s.number,
                        plan: s.plan().cloned(),
                        skipped: match &s.state {
                            PlannedState::Skipped { reason } => Some(reason.clone()),
                            _ => None,
                        },
                        ..StepState::default()
                    };
                    match before.remove(&s.id) {
                        Some(old) if old.intent || old.outputs.is_some() => old,
                        _ => fresh,
                    }
                })
                .collect();
            self.index = self
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| (s.step.clone(), i))
                .collect();
            self.plan = Some((**plan).clone());
            return Ok(());
        }
        match entry {
            Entry::Approved { .. } => {}
            Entry::Intent { step } => {
                // A run written to again (resumed) has no outcome until it finishes again.
                self.finished = None;
                if let Some(s) = self.step_mut(&step) {
                    s.intent = true;
                    s.started_at.get_or_insert(at);
                }
            }
            Entry::Applied { step, .. } => {
                if let Some(s) = self.step_mut(&step) {
                    s.applied += 1;
                }
            }
            Entry::Done { step, outputs } => {
                if let Some(s) = self.step_mut(&step) {
                    s.started_at.get_or_insert(at.clone());
                    s.done_at = Some(at);
                    s.outputs = Some(outputs);
                    s.failed = None;
                    s.stale = None;
                }
            }
            // A rollback started after the run finished: no outcome until it ends.
            Entry::RollbackStarted { .. } => self.finished = None,
            Entry::Verified { .. } | Entry::Captured { .. } => {}
            Entry::Failed { step, error } => {
                if let Some(s) = self.step_mut(&step) {
                    s.failed = Some(error);
                }
            }
            Entry::Skipped { step, reason } => {
                if let Some(s) = self.step_mut(&step) {
                    s.skipped = Some(reason);
                }
            }
            Entry::Stale { step, changes } => {
                if let Some(s) = self.step_mut(&step) {
                    s.stale = Some(changes);
                }
            }
            Entry::RollbackStep { step, outcome } => {
                if let Some(s) = self.step_mut(&step) {
                    s.rolled_back = Some(outcome);
                }
            }
            Entry::Finished { outcome } => self.finished = Some(outcome),
            Entry::TakenOver { from, to, purpose } => self.handovers.push(Handover {
                from,
                to,
                purpose,
                at,
            }),
            // Notifications are for the report; resume and rollback need nothing of them.
            Entry::Notified { .. } => {}
        }
        Ok(())
    }

    /// True when no approved plan was recorded: the run wrote nothing.
    pub fn never_started(&self) -> bool {
        self.plan.is_none()
    }

    /// True once any rollback of this run has started.
    pub fn rolling_back(&self) -> bool {
        self.steps.iter().any(|s| s.rolled_back.is_some())
    }

    /// The outcome the run finished with, if it finished.
    pub fn outcome(&self) -> Option<Outcome> {
        self.finished
            .clone()
            .and_then(|o| serde_json::from_value(o).ok())
    }

    /// What `resume` needs: finished steps keep their outputs; a step whose writes had
    /// started is applied again from the approved plan, idempotently.
    pub fn resume(&self) -> Resume {
        let mut resume = Resume::default();
        for s in &self.steps {
            match &s.outputs {
                Some(outputs) => {
                    resume.done.insert(s.step.clone(), outputs.clone());
                }
                None if s.intent => {
                    resume.started.insert(s.step.clone());
                }
                None => {}
            }
        }
        resume
    }

    /// The plans a rollback undoes, oldest first: steps that finished or started writing and
    /// are not undone yet (a failed undo is still pending). With `to`, only the steps after
    /// that one.
    pub fn to_undo(&self, to: Option<&str>) -> Vec<StepPlan> {
        let start = match to {
            Some(id) => self
                .steps
                .iter()
                .position(|s| s.step == id)
                .map_or(self.steps.len(), |i| i + 1),
            None => 0,
        };
        self.steps[start..]
            .iter()
            .filter(|s| {
                s.rolled_back
                    .as_ref()
                    .is_none_or(RollbackOutcome::is_pending)
            })
            .filter(|s| s.outputs.is_some() || s.intent)
            .filter_map(|s| {
                let mut plan = s.plan.clone()?;
                if let Some(outputs) = &s.outputs {
                    plan.outputs = outputs.clone();
                }
                Some(plan)
            })
            .collect()
    }
}
