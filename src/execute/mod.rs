//! The executor: resolves facts, then for each step renders, plans, applies and verifies,
//! emitting events as it goes. Failure policies (stop, continue, rollback) live here too.

pub mod apply;
pub mod capture;

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

pub use apply::{ApplyError, Approver, AutoApprove, Carry};

use crate::action::{self, StepInput};
use crate::cluster::Cluster;
use crate::event::{Event, EventKind, EventSink, OpOutcome, Outcome, SinkError};
use crate::facts;
use crate::plan::{Op, StepPlan};
use crate::playbook::load::Loaded;
use crate::playbook::types::{RunFailurePolicy, Step, StepFailurePolicy, parse_duration};
use crate::render::{self, Renderer, Scope};

/// How many artifacts a capture collects at once.
pub const CAPTURE_CONCURRENCY: usize = 4;

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

    /// Whether later steps see the effects of earlier ones.
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
    /// What an interrupted run had done, when this run resumes it.
    pub resume: Option<Resume>,
    /// Where captured evidence goes; captures are skipped without it.
    pub evidence: Option<crate::evidence::EvidenceConfig>,
}

/// The state of an interrupted run, read back from its journal.
#[derive(Clone, Debug, Default)]
pub struct Resume {
    /// The facts as the interrupted run resolved them.
    pub facts: Map<String, Value>,
    pub steps: std::collections::HashMap<String, ResumedStep>,
}

/// How far an interrupted run got with one step.
#[derive(Clone, Debug)]
pub enum ResumedStep {
    /// Finished: its outputs feed later steps, its plan is kept for rollback.
    Done {
        plan: StepPlan,
        outputs: Map<String, Value>,
    },
    Skipped {
        reason: String,
    },
    /// Writing had started (an `Intent` is journaled): its journaled plan is applied again,
    /// idempotently, instead of planning anew against a half-changed cluster.
    Started {
        plan: StepPlan,
    },
}

/// Test-only crash injection: `CONTAIN_TEST_FAILPOINT=<point>:<step>` aborts the process at
/// that point, as `kill -9` would. Points: `before-intent`, `after-intent`, `after-write`,
/// `in-rollback`.
fn failpoint(point: &str, step: &str) {
    if let Ok(spec) = std::env::var("CONTAIN_TEST_FAILPOINT")
        && spec.split_once(':') == Some((point, step))
    {
        eprintln!("failpoint {spec}: aborting");
        std::process::abort();
    }
}

/// What a run left behind: the outcome, and each completed step's plan (for rollback).
#[derive(Debug)]
pub struct RunResult {
    pub outcome: Outcome,
    pub completed: Vec<StepPlan>,
}

/// Why a run could not even start or go on (as opposed to a step failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Fact(#[from] facts::FactError),
    #[error("cannot record the run: {0}")]
    Sink(#[from] SinkError),
}

/// Runs one playbook.
pub struct Executor<'a> {
    cluster: &'a dyn Cluster,
    sink: &'a mut dyn EventSink,
    approver: &'a mut dyn Approver,
    started: Instant,
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Action(#[from] action::ActionError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("the step took longer than its timeout of {0:?}")]
    Timeout(Duration),
    #[error("verification failed: {0}")]
    Verify(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
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
        }
    }

    fn emit(&mut self, kind: EventKind) -> Result<(), SinkError> {
        let event = Event {
            at: jiff::Timestamp::now().to_string(),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            kind,
        };
        self.sink.emit(&event)
    }

    /// Runs the playbook to its end, or to the first step whose failure stops it.
    pub async fn run(
        &mut self,
        loaded: &Loaded,
        config: &RunConfig,
    ) -> Result<RunResult, RunError> {
        let playbook = &loaded.playbook;
        self.emit(EventKind::RunStarted {
            run_id: config.run_id.clone(),
            playbook: playbook.metadata.name.clone(),
            mode: config.mode.as_str().into(),
            cluster: self.cluster.info(),
            steps: playbook.steps.len(),
        })?;
        let mut scope = Scope {
            params: config.params.clone(),
            ..Scope::default()
        };
        scope.run = json!({
            "id": config.run_id,
            "mode": config.mode.as_str(),
            "playbook": playbook.metadata.name,
            "started_at": jiff::Timestamp::now().to_string(),
            "cluster": self.cluster.info().server,
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        match &config.resume {
            Some(resume) => scope.facts = resume.facts.clone(),
            None => {
                for (name, spec) in &playbook.facts {
                    let (value, found) = facts::resolve(name, spec, &scope, self.cluster).await?;
                    scope.facts.insert(name.clone(), value.clone());
                    self.emit(EventKind::FactResolved {
                        fact: name.clone(),
                        object: found.map(|r| r.to_string()),
                        value,
                    })?;
                }
            }
        }
        let mut completed: Vec<StepPlan> = Vec::new();
        let mut outcome = Outcome::Succeeded;
        for (index, step) in playbook.steps.iter().enumerate() {
            let step_started = Instant::now();
            let resumed = config.resume.as_ref().and_then(|r| r.steps.get(&step.id));
            match resumed {
                Some(ResumedStep::Done { plan, outputs }) => {
                    self.emit(EventKind::StepAlreadyDone {
                        step: step.id.clone(),
                    })?;
                    scope.steps.insert(
                        step.id.clone(),
                        json!({"status": "done", "outputs": outputs}),
                    );
                    completed.push(plan.clone());
                    continue;
                }
                Some(ResumedStep::Skipped { reason }) => {
                    self.emit(EventKind::StepSkipped {
                        step: step.id.clone(),
                        reason: reason.clone(),
                    })?;
                    scope
                        .steps
                        .insert(step.id.clone(), json!({"status": "skipped", "outputs": {}}));
                    continue;
                }
                _ => {}
            }
            let journaled_plan = match resumed {
                Some(ResumedStep::Started { plan }) => Some(plan),
                _ => None,
            };
            self.emit(EventKind::StepStarted {
                step: step.id.clone(),
                action: step.action.clone(),
                index,
            })?;
            let renderer = Renderer::new(&scope);
            if let Some(when) = &step.when {
                match renderer.condition(&format!("steps[{index}].when"), when) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.emit(EventKind::StepSkipped {
                            step: step.id.clone(),
                            reason: format!("`when: {when}` is false"),
                        })?;
                        scope
                            .steps
                            .insert(step.id.clone(), json!({"status": "skipped", "outputs": {}}));
                        continue;
                    }
                    Err(e) => {
                        let error = StepError::from(e);
                        if let Some(stop) = self
                            .fail(
                                step,
                                playbook.on_failure,
                                &error,
                                step_started,
                                &mut completed,
                                config,
                            )
                            .await?
                        {
                            outcome = stop;
                            break;
                        }
                        continue;
                    }
                }
            }
            let timeout = step
                .timeout
                .as_deref()
                .and_then(parse_duration)
                .unwrap_or(DEFAULT_STEP_TIMEOUT);
            let result = tokio::time::timeout(
                timeout,
                self.step(index, step, &renderer, config, journaled_plan),
            )
            .await;
            let result = match result {
                Ok(result) => result,
                Err(_) => Err(StepError::Timeout(timeout)),
            };
            match result {
                Ok(plan) => {
                    scope.steps.insert(
                        step.id.clone(),
                        json!({"status": "done", "outputs": plan.outputs}),
                    );
                    self.emit(EventKind::StepDone {
                        step: step.id.clone(),
                        outputs: plan.outputs.clone(),
                        elapsed_ms: step_started.elapsed().as_millis() as u64,
                    })?;
                    completed.push(plan);
                }
                Err(StepError::Sink(e)) => return Err(e.into()),
                Err(error) => {
                    scope
                        .steps
                        .insert(step.id.clone(), json!({"status": "failed", "outputs": {}}));
                    if let Some(stop) = self
                        .fail(
                            step,
                            playbook.on_failure,
                            &error,
                            step_started,
                            &mut completed,
                            config,
                        )
                        .await?
                    {
                        outcome = stop;
                        break;
                    }
                }
            }
        }
        self.emit(EventKind::RunFinished {
            outcome: outcome.clone(),
        })?;
        Ok(RunResult { outcome, completed })
    }

    /// Records a failed step and applies the failure policy. Returns the run's outcome when the
    /// run stops here.
    async fn fail(
        &mut self,
        step: &Step,
        run_policy: RunFailurePolicy,
        error: &StepError,
        started: Instant,
        completed: &mut Vec<StepPlan>,
        config: &RunConfig,
    ) -> Result<Option<Outcome>, SinkError> {
        self.emit(EventKind::StepFailed {
            step: step.id.clone(),
            error: error.to_string(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })?;
        // Planning keeps going so the whole playbook is shown, failures included.
        if config.mode == Mode::Plan {
            return Ok(None);
        }
        let policy = match (step.on_failure, run_policy) {
            (Some(p), _) => p,
            (None, RunFailurePolicy::Stop) => StepFailurePolicy::Stop,
            (None, RunFailurePolicy::Rollback) => StepFailurePolicy::Rollback,
        };
        let declined = matches!(error, StepError::Apply(ApplyError::Declined(_)));
        let failed = |error: &StepError| match error {
            StepError::Verify(_) => Outcome::VerifyFailed {
                step: step.id.clone(),
            },
            _ if declined => Outcome::Declined {
                step: step.id.clone(),
            },
            other => Outcome::Failed {
                step: step.id.clone(),
                error: other.to_string(),
            },
        };
        match policy {
            StepFailurePolicy::Continue if !declined => Ok(None),
            StepFailurePolicy::Rollback if config.mode.writes() => {
                self.rollback(completed, &format!("step `{}` failed", step.id), config)
                    .await?;
                Ok(Some(Outcome::RolledBack {
                    step: step.id.clone(),
                    error: error.to_string(),
                }))
            }
            _ => Ok(Some(failed(error))),
        }
    }

    async fn step(
        &mut self,
        index: usize,
        step: &Step,
        renderer: &Renderer,
        config: &RunConfig,
        journaled_plan: Option<&StepPlan>,
    ) -> Result<StepPlan, StepError> {
        let action = action::lookup(&step.action).expect("validation checked the action");
        let field = format!("steps[{index}]");
        let target = match &step.target {
            Some(t) => Some(renderer.target(&format!("{field}.target"), t)?),
            None => None,
        };
        let with_schema = action.with_schema();
        let with =
            renderer.render_value(&format!("{field}.with"), &Value::Object(step.with.clone()))?;
        let with = render::coerce(with, &with_schema, &with_schema);
        let input = StepInput {
            step_id: step.id.clone(),
            run_id: config.run_id.clone(),
            target,
            with,
            canaries: Vec::new(),
        };
        let plan = match journaled_plan {
            Some(plan) => plan.clone(),
            None => action.plan(&input, self.cluster).await?,
        };
        self.emit(EventKind::StepPlanned {
            step: step.id.clone(),
            plan: plan.clone(),
        })?;
        let carry = config.mode.carry();
        if carry == Carry::Nothing {
            return Ok(plan);
        }
        if plan.ops.iter().any(Op::is_write) {
            failpoint("before-intent", &step.id);
            self.emit(EventKind::StepIntent {
                step: step.id.clone(),
            })?;
            failpoint("after-intent", &step.id);
        }
        let mut effects = apply::Effects::default();
        let mut artifacts: Vec<crate::evidence::Artifact> = Vec::new();
        let mut plan = plan;
        let mut i = 0;
        while i < plan.ops.len() {
            if matches!(plan.ops[i], Op::Capture { .. }) {
                // A run of captures: read-only on the cluster, so several at once, bounded.
                let end = plan.ops[i..]
                    .iter()
                    .position(|op| !matches!(op, Op::Capture { .. }))
                    .map_or(plan.ops.len(), |n| i + n);
                artifacts.extend(
                    self.captures(&plan.ops[i..end], i, &step.id, config, carry)
                        .await?,
                );
                i = end;
                continue;
            }
            let op = &plan.ops[i];
            let outcome = match op {
                Op::Seal { archive } => self.seal(
                    *archive,
                    &step.id,
                    config,
                    carry,
                    &artifacts,
                    &mut plan.outputs,
                )?,
                _ => {
                    apply::apply_with(
                        op,
                        &step.id,
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
                step: step.id.clone(),
                index: i,
                op: plan.ops[i].to_string(),
                outcome,
            })?;
            i += 1;
        }
        failpoint("after-write", &step.id);
        // A server-side dry run stored nothing, so there is nothing to verify.
        if carry == Carry::ServerDryRun {
            return Ok(plan);
        }
        let input = StepInput {
            canaries: effects.canaries,
            ..input
        };
        let verification = action.verify(&input, &plan, self.cluster).await?;
        let passed = verification.passed();
        let failures: Vec<String> = verification
            .checks
            .iter()
            .filter(|c| !c.ok)
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
            step: step.id.clone(),
            verification,
        })?;
        if !passed {
            return Err(StepError::Verify(failures.join("; ")));
        }
        Ok(plan)
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
        let sha256 = crate::evidence::seal(&dir, &manifest).map_err(evidence_error)?;
        outputs.insert("bundle".into(), Value::from(dir.display().to_string()));
        outputs.insert("manifest_sha256".into(), Value::from(sha256));
        outputs.insert("artifacts".into(), Value::from(artifacts.len()));
        if archive {
            let (path, sha) = crate::evidence::archive(&dir).map_err(evidence_error)?;
            outputs.insert("archive".into(), Value::from(path.display().to_string()));
            outputs.insert("archive_sha256".into(), Value::from(sha));
        }
        Ok(OpOutcome::Applied)
    }

    /// Applies the inverses of completed steps, newest first. Irreversible steps are skipped
    /// with a line saying why.
    pub async fn rollback(
        &mut self,
        completed: &mut Vec<StepPlan>,
        reason: &str,
        config: &RunConfig,
    ) -> Result<(), SinkError> {
        self.emit(EventKind::RollbackStarted {
            reason: reason.to_string(),
        })?;
        while let Some(plan) = completed.pop() {
            if let crate::plan::Reversibility::Irreversible { reason } = &plan.reversibility {
                self.emit(EventKind::RollbackStep {
                    step: plan.step.clone(),
                    outcome: format!("skipped: irreversible ({reason})"),
                })?;
                continue;
            }
            let partly = match &plan.reversibility {
                crate::plan::Reversibility::Partial { reason } => {
                    format!(" (not undone: {reason})")
                }
                _ => String::new(),
            };
            let mut outcome = if plan.inverse.is_empty() {
                "nothing to undo".to_string()
            } else {
                "undone".to_string()
            };
            for op in &plan.inverse {
                match apply::apply(
                    op,
                    &plan.step,
                    &config.run_id,
                    config.mode.carry(),
                    self.cluster,
                    &mut AutoApprove,
                )
                .await
                {
                    Ok(OpOutcome::AlreadyDone) if outcome == "undone" => {
                        outcome = "already undone".into()
                    }
                    Ok(_) => {}
                    Err(e) => {
                        outcome = format!("failed: {e}");
                        break;
                    }
                }
                failpoint("in-rollback", &plan.step);
            }
            if !outcome.starts_with("failed") {
                outcome.push_str(&partly);
            }
            self.emit(EventKind::RollbackStep {
                step: plan.step.clone(),
                outcome,
            })?;
        }
        Ok(())
    }
}
