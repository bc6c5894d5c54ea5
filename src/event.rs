//! Events: the one way out of the executor. Progress output, JSON output, summaries (and the
//! journal) all consume the same stream.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::cluster::ClusterInfo;
pub use crate::outcome::Outcome;
pub use crate::outcome::RollbackOutcome;
use crate::outcome::Verification;
use crate::plan::{RunPlan, StepPlan};

/// Something that happened during a run, and when.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// RFC 3339 wall-clock time.
    pub at: String,
    /// Milliseconds since the run started.
    pub elapsed_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        run_id: String,
        playbook: String,
        mode: String,
        cluster: ClusterInfo,
        steps: usize,
    },
    FactResolved {
        fact: String,
        /// The object found, or `None` for an optional fact that was not there.
        object: Option<String>,
    },
    /// A `require:` guard was evaluated; a false one refuses the run.
    GuardChecked {
        that: String,
        holds: bool,
        message: String,
    },
    /// The permissions the plan needs were asked of the API server.
    Preflight {
        checked: usize,
        /// Every permission denied (the run is refused when any is).
        denied: Vec<String>,
        /// Why permissions could not be checked (a snapshot has no authorizer).
        #[serde(skip_serializing_if = "Option::is_none")]
        not_checked: Option<String>,
    },
    /// Every planned write was sent once with `dryRun=All` (live clusters); what was refused.
    ServerDryRun {
        refused: Vec<String>,
    },
    /// The whole plan, approved: journaled (durable) before the first write.
    PlanApproved {
        plan: RunPlan,
    },
    /// An interrupted run goes on applying its approved plan.
    Resumed {
        run_id: String,
    },
    /// A step whose writes had started before the interruption is applied again.
    StepResumed {
        step: String,
    },
    /// What a step depends on moved since the plan was approved: the run stops before it.
    StepStale {
        step: String,
        changes: Vec<String>,
    },
    /// A resumed run found this step finished in the interrupted run.
    StepAlreadyDone {
        step: String,
    },
    StepStarted {
        step: String,
        action: String,
        index: usize,
    },
    StepSkipped {
        step: String,
        reason: String,
    },
    StepPlanned {
        step: String,
        plan: StepPlan,
    },
    /// Emitted right before the first write of a step; a sink that fails here stops the run
    /// before anything is written.
    StepIntent {
        step: String,
    },
    OpApplied {
        step: String,
        index: usize,
        op: String,
        outcome: OpOutcome,
    },
    /// One artifact of an evidence capture is on disk (progress per artifact).
    Captured {
        step: String,
        index: usize,
        artifact: String,
        size: u64,
        sha256: String,
        outcome: String,
    },
    StepVerified {
        step: String,
        verification: Verification,
    },
    StepDone {
        step: String,
        outputs: Map<String, Value>,
        elapsed_ms: u64,
    },
    StepFailed {
        step: String,
        error: String,
        elapsed_ms: u64,
    },
    RollbackStarted {
        reason: String,
    },
    RollbackStep {
        step: String,
        outcome: RollbackOutcome,
    },
    RunFinished {
        outcome: Outcome,
    },
    /// A notification (a Kubernetes Event, a webhook) was sent, or could not be: a failure
    /// never fails the run.
    Notified {
        channel: String,
        about: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// What applying one operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpOutcome {
    Applied,
    /// Already as planned (a resumed step, or a no-op): nothing written.
    AlreadyDone,
    /// Sent with `dryRun=All`: the server accepted it and stored nothing.
    DryRun,
    /// Not carried out because the run only plans, or a tabletop run does not sleep.
    Skipped,
    Approved,
}

/// Why a sink could not take an event.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Consumes events. Returning an error stops the run.
pub trait EventSink: Send {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError>;

    /// Makes every event emitted so far durable (a sink may hold some back to commit them as a
    /// group). Called at the end of each step's batch of operations.
    fn commit(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Sends each event to several sinks, in order.
pub struct Fanout<'a>(pub Vec<&'a mut dyn EventSink>);

impl EventSink for Fanout<'_> {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        for sink in &mut self.0 {
            sink.emit(event)?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), SinkError> {
        for sink in &mut self.0 {
            sink.commit()?;
        }
        Ok(())
    }
}

/// Keeps every event, for JSON output and tests.
#[derive(Default)]
pub struct Recorder {
    pub events: Vec<Event>,
}

impl EventSink for Recorder {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        self.events.push(event.clone());
        Ok(())
    }
}
