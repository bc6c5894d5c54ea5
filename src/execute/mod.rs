//! The executor: plans the whole run first (`planning`), then applies exactly the approved
//! plan, step by step: a stale-plan check, the intent journaled, the operations, the
//! verification. Events are its only way out. Failure policies (stop, continue, rollback) and
//! rollback live here too.

pub mod apply;
pub mod blast;
pub mod capture;
pub mod planning;
pub mod rollback;
pub mod stale;
pub mod verify;

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

pub use apply::{ApplyError, Approver, AutoApprove, Carry};

use crate::action::{self, StepInput};
use crate::cluster::{Cluster, ClusterError};
use crate::duration::parse_duration;
use crate::event::{Event, EventKind, EventSink, OpOutcome, SinkError};
use crate::facts;
use crate::outcome::{CheckCounts, Outcome, Resume};
use crate::plan::run::resolve_markers;
use crate::plan::{Op, PlannedState, PlannedStep, RunPlan, StepPlan};
use crate::playbook::load::Loaded;
use crate::playbook::types::StepFailurePolicy;

/// How many artifacts a capture collects at once.
pub const CAPTURE_CONCURRENCY: usize = 4;
/// How many patches of one step are in flight at once: enough to keep the API server busy
/// with a connection per request in flight, few enough to stay inside one client's fair share (APF).
pub const WRITE_CONCURRENCY: usize = 16;

/// The default time a step may take when it sets no `timeout`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// How a run treats the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Observe and plan every step; write nothing.
    Plan,
    /// Plan, and send every write with `dryRun=All` so the API server validates it.
    DryRun,
    /// Plan and apply against a simulated cluster.
    Tabletop,
    /// Plan and apply for real.
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plan => "plan",
            Mode::DryRun => "dry-run",
            Mode::Tabletop => "tabletop",
            Mode::Live => "live",
        }
    }

    fn carry(self) -> Carry {
        match self {
            Mode::Plan => Carry::Nothing,
            Mode::DryRun => Carry::ServerDryRun,
            Mode::Tabletop => Carry::Simulated,
            Mode::Live => Carry::Live,
        }
    }

    /// Whether applying changes the cluster the run is about (so a rollback can undo it).
    fn writes(self) -> bool {
        matches!(self, Mode::Tabletop | Mode::Live)
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub run_id: String,
    pub mode: Mode,
    pub params: Map<String, Value>,
    /// The playbook's path, as the plan records it.
    pub playbook_path: String,
    /// What an interrupted run had done, when this run resumes it.
    pub resume: Option<Resume>,
    /// Where captured evidence goes; captures are skipped without it.
    pub evidence: Option<crate::evidence::EvidenceConfig>,
    /// Re-plan only the steps from `from` on (the earlier ones are applied already).
    pub replan: Option<Replan>,
    /// Says when the run must stop before its next write (a target's lock was lost).
    pub halt: Option<crate::run_lock::Halt>,
    /// How long this run may take once approved (`--run-timeout`), instead of the playbook's
    /// own `timeout`.
    pub run_timeout: Option<Duration>,
    /// The plan was made earlier (`plan --out`, then `run --plan`): its permission preflight
    /// and server dry run are repeated before its first write, against the cluster as it is.
    pub saved_plan: bool,
}

/// What re-planning the rest of a run after a stale step keeps: the steps before `from`, as
/// approved and applied, and their outputs.
#[derive(Clone, Debug)]
pub struct Replan {
    pub from: usize,
    pub previous: RunPlan,
    pub outputs: Map<String, Value>,
}

impl RunConfig {
    /// A fresh run of `mode` with these params.
    pub fn new(run_id: &str, mode: Mode, params: Map<String, Value>, playbook_path: &str) -> Self {
        RunConfig {
            run_id: run_id.to_string(),
            mode,
            params,
            playbook_path: playbook_path.to_string(),
            resume: None,
            evidence: None,
            replan: None,
            halt: None,
            run_timeout: None,
            saved_plan: false,
        }
    }
}

/// Test-only crash injection: `CONTAIN_TEST_FAILPOINT=<point>:<step>` aborts the process at
/// that point, as `kill -9` would. Points: `before-intent`, `after-intent`, `after-write`,
/// `in-rollback`, and `after-approve:-` (the approved plan is durable, no step has started).
pub(crate) fn failpoint(point: &str, step: &str) {
    if let Ok(spec) = std::env::var("CONTAIN_TEST_FAILPOINT")
        && spec.split_once(':') == Some((point, step))
    {
        // The one line printed outside the ui: the crash tests tell from it that the process
        // died where they asked, not somewhere else.
        eprintln!("failpoint {spec}: aborting");
        std::process::abort();
    }
}

/// What a run left behind: the outcome, and each completed step's plan (for rollback).
#[derive(Debug)]
pub struct RunResult {
    pub outcome: Outcome,
    pub completed: Vec<StepPlan>,
    /// The plan, when one was made.
    pub plan: Option<RunPlan>,
}

/// Why a run could not even start or go on (as opposed to a step failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fact(#[from] facts::FactError),
    #[error("cannot record the run: {0}")]
    Sink(#[from] SinkError),
    #[error("cannot check the plan's permissions: {0}")]
    Preflight(ClusterError),
    #[error("cannot measure the plan's blast radius: {0}")]
    Radius(ClusterError),
}

/// Runs one playbook.
pub struct Executor<'a> {
    cluster: &'a dyn Cluster,
    sink: &'a mut dyn EventSink,
    approver: &'a mut dyn Approver,
    started: Instant,
    notifier: Option<&'a crate::notify::Notifier>,
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Action(#[from] action::ActionError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("the step took longer than its timeout of {0:?}")]
    Timeout(Duration),
    #[error("verification failed: {0}")]
    Verify(String),
    #[error("it needs steps.{0}.outputs.{1}, which step {0} did not produce")]
    MissingOutput(String, String),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{0}")]
    Halted(String),
    #[error(
        "the run passed its deadline of {0:?} (the playbook's `timeout` or --run-timeout); finish it with `contain resume` or undo it with `contain rollback`"
    )]
    RunDeadline(Duration),
}

/// How one step ended while applying.
enum Applied {
    Done(Box<StepPlan>, CheckCounts),
    Stale(Vec<String>),
}

impl<'a> Executor<'a> {
    pub fn new(
        cluster: &'a dyn Cluster,
        sink: &'a mut dyn EventSink,
        approver: &'a mut dyn Approver,
    ) -> Self {
        Executor {
            cluster,
            sink,
            approver,
            started: Instant::now(),
            notifier: None,
        }
    }

    /// Tells each step's end to `notifier` (Kubernetes Events, webhooks) on a live run.
    pub fn notifying(mut self, notifier: Option<&'a crate::notify::Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Sends a step's end to every channel and journals how each delivery went; a failed
    /// delivery never fails the step.
    async fn notify_step(
        &mut self,
        planned: &PlannedStep,
        config: &RunConfig,
        status: &str,
        message: String,
    ) -> Result<(), SinkError> {
        let Some(notifier) = self.notifier else {
            return Ok(());
        };
        if config.mode != Mode::Live {
            return Ok(());
        }
        let target = match &planned.state {
            PlannedState::Planned {
                target: Some(target),
                ..
            } => target.name.as_ref().map(|name| {
                crate::cluster::object::ObjectRef::new(
                    target.kind.kind,
                    target.namespace.as_deref(),
                    name,
                )
            }),
            _ => None,
        };
        let notice = crate::notify::Notice {
            event: "step",
            step: Some(planned.id.clone()),
            action: Some(planned.action.clone()),
            target,
            status: status.to_string(),
            message,
        };
        for delivery in notifier.send(self.cluster, &notice).await {
            self.emit(EventKind::Notified {
                channel: delivery.channel,
                about: delivery.about,
                error: delivery.error,
            })?;
        }
        Ok(())
    }

    fn emit(&mut self, kind: EventKind) -> Result<(), SinkError> {
        let event = Event {
            at: jiff::Timestamp::now().to_string(),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            kind,
        };
        self.sink.emit(&event)
    }

    /// Records a plan as approved (journaled before any write of it): a re-plan after a stale
    /// step is approved this way before `apply` resumes with it.
    pub fn approve(&mut self, plan: &RunPlan) -> Result<(), SinkError> {
        self.emit(EventKind::PlanApproved { plan: plan.clone() })
    }

    /// Ends the run with `outcome` (the last event of every run).
    pub fn finish(&mut self, outcome: &Outcome) -> Result<(), SinkError> {
        self.emit(EventKind::RunFinished {
            outcome: outcome.clone(),
        })
    }

    /// Plans the whole playbook, then (unless the mode only plans) applies the plan.
    pub async fn run(
        &mut self,
        loaded: &Loaded,
        config: &RunConfig,
    ) -> Result<RunResult, RunError> {
        let plan = match self.plan(loaded, config).await? {
            Ok(plan) => plan,
            Err(refused) => {
                self.finish(&refused)?;
                return Ok(RunResult {
                    outcome: refused,
                    completed: Vec::new(),
                    plan: None,
                });
            }
        };
        if config.mode == Mode::Plan {
            self.finish(&Outcome::Planned)?;
            return Ok(RunResult {
                outcome: Outcome::Planned,
                completed: Vec::new(),
                plan: Some(plan),
            });
        }
        let mut result = self.apply(loaded, &plan, config).await?;
        result.plan = Some(plan);
        Ok(result)
    }

    /// Applies an approved plan, exactly: each step's journaled operations, after checking that
    /// what they depend on has not moved. Stops before a stale step.
    pub async fn apply(
        &mut self,
        loaded: &Loaded,
        plan: &RunPlan,
        config: &RunConfig,
    ) -> Result<RunResult, RunError> {
        if config.resume.is_none() && config.mode.writes() {
            // Before the first write, what can be judged now: the collections every step was
            // planned from and, for a saved plan, the objects it writes (an approved plan was
            // checked a moment ago; a saved one may be a day old).
            let mut changes =
                stale::collections_before_first_write(plan, &config.run_id, self.cluster)
                    .await
                    .map_err(RunError::Preflight)?;
            if config.saved_plan {
                changes.extend(
                    stale::objects_before_first_write(plan, &config.run_id, self.cluster)
                        .await
                        .map_err(RunError::Preflight)?,
                );
            }
            if let Some(first) = plan.steps.first().filter(|_| !changes.is_empty()) {
                self.emit(EventKind::StepStale {
                    step: first.id.clone(),
                    changes: changes.clone(),
                })?;
                let stale = Outcome::Stale {
                    step: first.id.clone(),
                    changes,
                };
                self.finish(&stale)?;
                return Ok(RunResult {
                    outcome: stale,
                    completed: Vec::new(),
                    plan: None,
                });
            }
        }
        if config.saved_plan && config.resume.is_none() {
            let mut checked = plan.clone();
            if let Some(refused) = self.check_before_writes(&mut checked, config).await? {
                self.finish(&refused)?;
                return Ok(RunResult {
                    outcome: refused,
                    completed: Vec::new(),
                    plan: None,
                });
            }
        }
        if config.resume.is_none() {
            // Durable in the journal before the first write: what resume and rollback read.
            self.emit(EventKind::PlanApproved { plan: plan.clone() })?;
        } else {
            self.emit(EventKind::Resumed {
                run_id: config.run_id.clone(),
            })?;
        }
        failpoint("after-approve", "-");
        let resume = config.resume.clone().unwrap_or_default();
        let mut outputs: Map<String, Value> = resume
            .done
            .iter()
            .map(|(id, o)| (id.clone(), Value::Object(o.clone())))
            .collect();
        let mut completed: Vec<StepPlan> = Vec::new();
        let mut checks = CheckCounts::default();
        let mut first_failure: Option<(String, String)> = None;
        let mut outcome = None;
        // The run's deadline counts from approval: time a responder spent reading the plan is
        // not the run's.
        let run_timeout = config
            .run_timeout
            .or_else(|| loaded.playbook.timeout.as_deref().and_then(parse_duration));
        let deadline = run_timeout.map(|t| tokio::time::Instant::now() + t);
        for (index, planned) in plan.steps.iter().enumerate() {
            let step = loaded
                .playbook
                .steps
                .iter()
                .find(|s| s.id == planned.playbook_step());
            let (policy, timeout) = match step {
                Some(step) => (
                    planning::effective_policy(step, loaded.playbook.on_failure),
                    step.timeout
                        .as_deref()
                        .and_then(parse_duration)
                        .unwrap_or(DEFAULT_STEP_TIMEOUT),
                ),
                None => (StepFailurePolicy::Stop, DEFAULT_STEP_TIMEOUT),
            };
            if let Some(done) = resume.done.get(&planned.id) {
                self.emit(EventKind::StepAlreadyDone {
                    step: planned.id.clone(),
                })?;
                if let Some(step_plan) = planned.plan() {
                    let mut step_plan = step_plan.clone();
                    step_plan.outputs = done.clone();
                    completed.push(step_plan);
                }
                continue;
            }
            match &planned.state {
                PlannedState::Skipped { reason } => {
                    self.emit(EventKind::StepStarted {
                        step: planned.id.clone(),
                        action: planned.action.clone(),
                        index,
                    })?;
                    self.emit(EventKind::StepSkipped {
                        step: planned.id.clone(),
                        reason: reason.clone(),
                    })?;
                    continue;
                }
                PlannedState::Unplannable { error } => {
                    self.emit(EventKind::StepFailed {
                        step: planned.id.clone(),
                        error: error.clone(),
                        elapsed_ms: 0,
                    })?;
                    first_failure.get_or_insert((planned.id.clone(), error.clone()));
                    continue;
                }
                PlannedState::Planned { .. } => {}
            }
            let step_started = Instant::now();
            self.emit(EventKind::StepStarted {
                step: planned.id.clone(),
                action: planned.action.clone(),
                index,
            })?;
            let started_before = resume.started.contains(&planned.id);
            let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            let result = match (left, run_timeout) {
                // Out of time before it began: the step is not started at all.
                (Some(left), Some(run_timeout)) if left.is_zero() => {
                    Err(StepError::RunDeadline(run_timeout))
                }
                (Some(left), Some(run_timeout)) if left < timeout => tokio::time::timeout(
                    left,
                    self.apply_step(planned, config, &outputs, started_before),
                )
                .await
                .unwrap_or(Err(StepError::RunDeadline(run_timeout))),
                _ => tokio::time::timeout(
                    timeout,
                    self.apply_step(planned, config, &outputs, started_before),
                )
                .await
                .unwrap_or(Err(StepError::Timeout(timeout))),
            };
            match result {
                Ok(Applied::Done(step_plan, counts)) => {
                    checks.add(counts);
                    outputs.insert(planned.id.clone(), Value::Object(step_plan.outputs.clone()));
                    self.emit(EventKind::StepDone {
                        step: planned.id.clone(),
                        outputs: step_plan.outputs.clone(),
                        elapsed_ms: step_started.elapsed().as_millis() as u64,
                    })?;
                    let summary = step_plan.summary.clone();
                    completed.push(*step_plan);
                    self.notify_step(planned, config, "done", summary).await?;
                }
                Ok(Applied::Stale(changes)) => {
                    self.emit(EventKind::StepStale {
                        step: planned.id.clone(),
                        changes: changes.clone(),
                    })?;
                    outcome = Some(Outcome::Stale {
                        step: planned.id.clone(),
                        changes,
                    });
                    break;
                }
                Err(StepError::Sink(e)) => return Err(e.into()),
                Err(error) => {
                    let message = format!("{}: {error}", planned.label());
                    self.emit(EventKind::StepFailed {
                        step: planned.id.clone(),
                        error: message.clone(),
                        elapsed_ms: step_started.elapsed().as_millis() as u64,
                    })?;
                    self.notify_step(planned, config, "failed", message.clone())
                        .await?;
                    let declined = matches!(error, StepError::Apply(ApplyError::Declined(_)));
                    // A lost lock stops the run where it is, whatever the step's policy: going
                    // on or rolling back would write to targets another run may hold now.
                    // So does a run out of time: its rollback would run past the deadline too.
                    let halted = matches!(error, StepError::Halted(_) | StepError::RunDeadline(_));
                    if policy == StepFailurePolicy::Continue && !declined && !halted {
                        first_failure.get_or_insert((planned.id.clone(), message));
                        continue;
                    }
                    if policy == StepFailurePolicy::Rollback && config.mode.writes() && !halted {
                        self.rollback(
                            &mut completed,
                            &format!("{} failed", planned.label()),
                            config,
                        )
                        .await?;
                        outcome = Some(Outcome::RolledBack {
                            step: planned.id.clone(),
                            error: message,
                        });
                        break;
                    }
                    outcome = Some(match error {
                        StepError::Verify(_) => Outcome::VerifyFailed {
                            step: planned.id.clone(),
                        },
                        _ if declined => Outcome::Declined {
                            step: planned.id.clone(),
                        },
                        _ => Outcome::Failed {
                            step: planned.id.clone(),
                            error: message,
                            continued: false,
                        },
                    });
                    break;
                }
            }
        }
        let outcome = outcome.unwrap_or_else(|| match first_failure {
            Some((step, error)) => Outcome::Failed {
                step,
                error,
                continued: true,
            },
            None if config.mode == Mode::DryRun => Outcome::Planned,
            None if checks.not_checked > 0 => Outcome::SucceededUnchecked {
                not_checked: checks.not_checked,
            },
            None => Outcome::Succeeded,
        });
        self.finish(&outcome)?;
        Ok(RunResult {
            outcome,
            completed,
            plan: None,
        })
    }

    /// Applies one planned step: markers resolved, the stale check, the intent, the operations
    /// in order, then the verification.
    async fn apply_step(
        &mut self,
        planned: &PlannedStep,
        config: &RunConfig,
        outputs: &Map<String, Value>,
        started_before: bool,
    ) -> Result<Applied, StepError> {
        let PlannedState::Planned {
            target,
            with,
            plan,
            depends_on,
        } = &planned.state
        else {
            unreachable!("only planned steps are applied")
        };
        let step_id = planned.id.as_str();
        let (mut plan, with) = resolve_pending(plan, with, outputs)?;
        let carry = config.mode.carry();
        let writes = plan.ops.iter().any(Op::is_write);
        if writes && let Some(reason) = config.halt.as_ref().and_then(|h| h.reason()) {
            return Err(StepError::Halted(reason));
        }
        if writes {
            let mut changes = stale::changes_since_plan(&plan.ops, &config.run_id, self.cluster)
                .await
                .map_err(ApplyError::from)?;
            changes.extend(
                stale::collections_since_plan(depends_on, &plan.ops, &config.run_id, self.cluster)
                    .await
                    .map_err(ApplyError::from)?,
            );
            if !changes.is_empty() {
                return Ok(Applied::Stale(changes));
            }
            if started_before {
                self.emit(EventKind::StepResumed {
                    step: step_id.to_string(),
                })?;
            }
            failpoint("before-intent", step_id);
            self.emit(EventKind::StepIntent {
                step: step_id.to_string(),
            })?;
            failpoint("after-intent", step_id);
        }
        let mut effects = apply::Effects::default();
        let mut artifacts: Vec<crate::evidence::Artifact> = Vec::new();
        let mut i = 0;
        while i < plan.ops.len() {
            if matches!(plan.ops[i], Op::Capture { .. }) {
                // A run of captures: read-only on the cluster, so several at once, bounded.
                let end = plan.ops[i..]
                    .iter()
                    .position(|op| !matches!(op, Op::Capture { .. }))
                    .map_or(plan.ops.len(), |n| i + n);
                artifacts.extend(
                    self.captures(&plan.ops[i..end], i, step_id, config, carry)
                        .await?,
                );
                i = end;
                continue;
            }
            if carry == Carry::Live {
                // A run of patches of distinct objects (one label per pod across a namespace or
                // the cluster) goes out side by side, bounded, each journaled as it lands.
                let end = crate::plan::op::patch_run(&plan.ops, i);
                if end - i > 1 {
                    if let Some(reason) = config.halt.as_ref().and_then(|h| h.reason()) {
                        return Err(StepError::Halted(reason));
                    }
                    self.patches(&plan.ops[i..end], i, step_id, config).await?;
                    i = end;
                    continue;
                }
            }
            let op = &plan.ops[i];
            if op.is_write()
                && let Some(reason) = config.halt.as_ref().and_then(|h| h.reason())
            {
                return Err(StepError::Halted(reason));
            }
            let outcome = match op {
                Op::Seal { archive } => self.seal(
                    *archive,
                    step_id,
                    config,
                    carry,
                    &artifacts,
                    &mut plan.outputs,
                )?,
                _ => {
                    apply::apply_with(
                        op,
                        step_id,
                        &config.run_id,
                        carry,
                        self.cluster,
                        self.approver,
                        &mut effects,
                    )
                    .await?
                }
            };
            self.emit(EventKind::OpApplied {
                step: step_id.to_string(),
                index: i,
                op: plan.ops[i].to_string(),
                outcome,
            })?;
            i += 1;
        }
        // The step's `applied` records, one commit for the whole batch of operations.
        self.sink.commit()?;
        if writes {
            failpoint("after-write", step_id);
        }
        // A server-side dry run stored nothing, so there is nothing to verify.
        if carry == Carry::ServerDryRun {
            return Ok(Applied::Done(Box::new(plan), CheckCounts::default()));
        }
        let input = StepInput {
            step_id: planned.playbook_step().to_string(),
            run_id: config.run_id.clone(),
            target: target.as_deref().cloned(),
            with,
            canaries: effects.canaries,
        };
        let action = action::lookup(&planned.action).expect("validation checked the action");
        let verification = verify::verify_step(action, &input, &plan, self.cluster).await?;
        let counts = verification.counts();
        let failures: Vec<String> = verification
            .checks
            .iter()
            .filter(|c| c.status == crate::outcome::CheckStatus::Failed)
            .map(|c| {
                format!(
                    "{}{}",
                    c.what,
                    c.detail
                        .as_ref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                )
            })
            .collect();
        self.emit(EventKind::StepVerified {
            step: step_id.to_string(),
            verification,
        })?;
        if !failures.is_empty() {
            return Err(StepError::Verify(failures.join("; ")));
        }
        Ok(Applied::Done(Box::new(plan), counts))
    }

    /// Applies consecutive `Patch` operations, `WRITE_CONCURRENCY` at a time, journaling each as
    /// it lands. The intent is already journaled, so a crash here resumes the step: patches
    /// already in place are found done, and the rest are applied.
    async fn patches(
        &mut self,
        ops: &[Op],
        first_index: usize,
        step: &str,
        config: &RunConfig,
    ) -> Result<(), StepError> {
        use futures::StreamExt;
        let cluster = self.cluster;
        let run_id = config.run_id.as_str();
        let mut pending = futures::stream::iter(ops.iter().enumerate().map(|(n, op)| async move {
            let outcome =
                apply::apply(op, step, run_id, Carry::Live, cluster, &mut AutoApprove).await;
            (n, op, outcome)
        }))
        .buffer_unordered(WRITE_CONCURRENCY);
        while let Some((n, op, outcome)) = pending.next().await {
            self.emit(EventKind::OpApplied {
                step: step.to_string(),
                index: first_index + n,
                op: op.to_string(),
                outcome: outcome?,
            })?;
        }
        Ok(())
    }

    /// Carries out consecutive `Capture` operations, `CAPTURE_CONCURRENCY` at a time, emitting an
    /// event for each artifact as it lands.
    async fn captures(
        &mut self,
        ops: &[Op],
        first_index: usize,
        step: &str,
        config: &RunConfig,
        carry: Carry,
    ) -> Result<Vec<crate::evidence::Artifact>, StepError> {
        use futures::StreamExt;
        let dir = match (&config.evidence, carry) {
            (Some(evidence), Carry::Live) => evidence.step_dir(&config.run_id, step),
            _ => {
                // Only a live run collects evidence; elsewhere the plan says what would be.
                for (n, op) in ops.iter().enumerate() {
                    self.emit(EventKind::OpApplied {
                        step: step.to_string(),
                        index: first_index + n,
                        op: op.to_string(),
                        outcome: OpOutcome::Skipped,
                    })?;
                }
                return Ok(Vec::new());
            }
        };
        let cluster = self.cluster;
        let dir_ref = &dir;
        let mut pending = futures::stream::iter(ops.iter().enumerate().map(|(n, op)| async move {
            let Op::Capture { artifact, source } = op else {
                unreachable!("only captures are passed")
            };
            (
                n,
                op,
                capture::capture(artifact, source, dir_ref, cluster).await,
            )
        }))
        .buffer_unordered(CAPTURE_CONCURRENCY);
        let mut artifacts = Vec::new();
        while let Some((n, op, result)) = pending.next().await {
            let artifact = result?;
            self.emit(EventKind::Captured {
                step: step.to_string(),
                index: first_index + n,
                artifact: artifact.path.clone(),
                size: artifact.size,
                sha256: artifact.sha256.clone(),
                outcome: artifact.outcome.clone(),
            })?;
            self.emit(EventKind::OpApplied {
                step: step.to_string(),
                index: first_index + n,
                op: op.to_string(),
                outcome: OpOutcome::Applied,
            })?;
            artifacts.push(artifact);
        }
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(artifacts)
    }

    /// Writes the step's manifest; its sha256 and place become step outputs (and so go into the
    /// journal with the step's `Done` record).
    fn seal(
        &mut self,
        archive: bool,
        step: &str,
        config: &RunConfig,
        carry: Carry,
        artifacts: &[crate::evidence::Artifact],
        outputs: &mut Map<String, Value>,
    ) -> Result<OpOutcome, StepError> {
        let Some(evidence) = config.evidence.as_ref().filter(|_| carry == Carry::Live) else {
            return Ok(OpOutcome::Skipped);
        };
        let dir = evidence.step_dir(&config.run_id, step);
        let manifest = crate::evidence::Manifest {
            format: 1,
            run_id: config.run_id.clone(),
            step: step.to_string(),
            cluster_id: evidence.cluster_id.clone(),
            collector: evidence.collector.clone(),
            sealed_at: jiff::Timestamp::now().to_string(),
            artifacts: artifacts.to_vec(),
        };
        let evidence_error = |e: std::io::Error| {
            StepError::Apply(ApplyError::Evidence(format!("{}: {e}", dir.display())))
        };
        let (sha256, signer) =
            crate::evidence::seal(&dir, &manifest, evidence.signing_key.as_deref())
                .map_err(evidence_error)?;
        outputs.insert("bundle".into(), Value::from(dir.display().to_string()));
        outputs.insert("manifest_sha256".into(), Value::from(sha256));
        if let Some(signer) = signer {
            outputs.insert("manifest_signer".into(), Value::from(signer));
        }
        outputs.insert("artifacts".into(), Value::from(artifacts.len()));
        if archive {
            let (path, sha) = crate::evidence::archive(&dir).map_err(evidence_error)?;
            outputs.insert("archive".into(), Value::from(path.display().to_string()));
            outputs.insert("archive_sha256".into(), Value::from(sha));
        }
        Ok(OpOutcome::Applied)
    }
}

/// A step's plan and inputs with every known-after-apply marker replaced by the output it
/// stands for.
fn resolve_pending(
    plan: &StepPlan,
    with: &Value,
    outputs: &Map<String, Value>,
) -> Result<(StepPlan, Value), StepError> {
    let mut plan_value = serde_json::to_value(plan).expect("plans serialize");
    let mut with = with.clone();
    resolve_markers(&mut plan_value, outputs)
        .and_then(|()| resolve_markers(&mut with, outputs))
        .map_err(|(step, output)| StepError::MissingOutput(step, output))?;
    let plan = serde_json::from_value(plan_value).expect("a resolved plan is still a plan");
    Ok((plan, with))
}
