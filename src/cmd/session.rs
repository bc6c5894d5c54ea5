//! [`Session`]: one journaled live session against a cluster, shared by `run`, `resume`,
//! `rollback` and the drill. It holds what such a session needs around the executor: who the
//! responder is, the targets' Leases, the journal sink, the notifier, the evidence settings,
//! and the stale-plan / re-plan loop. Each entry point ends with the run's outcome (a
//! [`Status`]) or a [`CommandError`]; nothing here picks an exit code.

use std::path::Path;

use serde_json::{Map, Value};

use super::cluster_copy;
use super::ctx::{Ctx, playbook_path};
use super::error::{CommandError, CommandResult, Status};
use super::ui::{self, Reporting, TerminalApprover};
use crate::cluster::Cluster;
use crate::cluster::kube::KubeCluster;
use crate::event::Outcome;
use crate::execute::{Approver, AutoApprove, Executor, Mode, RunConfig};
use crate::journal::{self, RunInfo, RunJournal, RunState};
use crate::notify::{Notice, Notifier, NotifyOptions, RunContext};
use crate::plan::{RunPlan, display};
use crate::playbook::load::Loaded;
use crate::run_lock::{self, LockOptions, TargetLocks};
use crate::runs::mirror::Mirror;

/// How a live session goes: unattended or not, its locks, and who hears about it.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Do not ask: approve the plan and every `approve` step.
    pub yes: bool,
    pub lock: LockOptions,
    pub notify: NotifyOptions,
}

impl SessionOptions {
    /// A session nobody watches (a drill's containment and its rollback): no questions, the
    /// default locks, and Kubernetes Events on the targets.
    pub fn unattended() -> Self {
        SessionOptions {
            yes: true,
            notify: NotifyOptions {
                events: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// One journaled live session on a connected cluster.
pub struct Session<'a> {
    ctx: &'a Ctx,
    cluster: &'a KubeCluster,
    options: SessionOptions,
}

impl<'a> Session<'a> {
    pub fn new(ctx: &'a Ctx, cluster: &'a KubeCluster, options: SessionOptions) -> Self {
        Session {
            ctx,
            cluster,
            options,
        }
    }

    fn reporting(&self) -> Reporting {
        Reporting::new(
            self.ctx.output,
            self.ctx.no_progress,
            self.ctx.verbose,
            Mode::Live,
        )
    }

    /// A live run: the whole playbook planned and shown, approved (or `--yes`), then the
    /// approved plan journaled (header and plan durable before the first write) and applied
    /// exactly.
    ///
    /// The run id is the caller's: a drill journals it before the run starts, so its cleanup
    /// can always find and roll back the run.
    pub async fn run(
        &self,
        run_id: &str,
        path: &Path,
        loaded: &Loaded,
        params: Map<String, Value>,
    ) -> CommandResult {
        let config = RunConfig::new(run_id, Mode::Live, params, &playbook_path(path));
        let mut reporting = self.reporting();
        let planned = {
            let mut sinks = reporting.sinks(None);
            let mut approve = AutoApprove;
            let mut executor = Executor::new(self.cluster, &mut sinks, &mut approve);
            match executor.plan(loaded, &config).await? {
                Ok(plan) => Ok(Ok(plan)),
                Err(refused) => executor.finish(&refused).map(|()| Err(refused)),
            }
        };
        let plan = match planned {
            Ok(Ok(plan)) => plan,
            Ok(Err(_)) => return reporting.report(Mode::Live, None),
            Err(e) => return Err(CommandError::Journal(e.to_string())),
        };
        if !self.options.yes
            && !ui::confirm(&format!(
                "apply this plan to {}?",
                self.cluster.info().server
            ))
        {
            return Err(CommandError::NotConfirmed);
        }
        self.apply_new(loaded, &plan, config, &mut reporting).await
    }

    /// Applies a saved plan (`run --plan`), already checked against its playbook, params and
    /// cluster, as a new journaled run.
    pub async fn run_saved(&self, loaded: &Loaded, plan: &RunPlan) -> CommandResult {
        let config = RunConfig {
            saved_plan: true,
            ..RunConfig::new(
                &plan.run_id,
                Mode::Live,
                plan.params.clone(),
                &plan.playbook.path,
            )
        };
        let mut reporting = self.reporting();
        self.apply_new(loaded, plan, config, &mut reporting).await
    }

    /// Takes the targets' locks, records a new run (header, then the approved plan with the
    /// first executor event) and applies the plan.
    async fn apply_new(
        &self,
        loaded: &Loaded,
        plan: &RunPlan,
        config: RunConfig,
        reporting: &mut Reporting,
    ) -> CommandResult {
        let cluster = self.cluster;
        let cluster_id = identity(cluster).await?;
        let user = current_user(cluster).await;
        let locks = self.take_locks(plan, &config.run_id, &user).await?;
        let info = RunInfo {
            playbook_path: plan.playbook.path.clone(),
            playbook_sha256: loaded.sha256.clone(),
            playbook_name: loaded.playbook.metadata.name.clone(),
            params: config.params.clone(),
            cluster_id,
            server: cluster.info().server,
            context: self.ctx.context.clone(),
            user,
            host: Some(crate::run_lock::host()),
            mode: Mode::Live.as_str().to_string(),
            started_at: jiff::Timestamp::now().to_string(),
            locks: locks.records(self.options.lock.steal.as_deref()),
            review: loaded.playbook.review_policy(),
            next_steps: loaded.playbook.next_steps.clone(),
            sensitive_params: loaded
                .playbook
                .params
                .iter()
                .filter(|(_, spec)| spec.sensitive)
                .map(|(name, _)| name.clone())
                .collect(),
        };
        let config = RunConfig {
            halt: Some(locks.halt()),
            run_timeout: self.ctx.run_timeout,
            ..config
        };
        let result = self
            .apply_locked(loaded, plan, config, reporting, info)
            .await;
        locks.release().await;
        say_throttled(cluster);
        result
    }

    /// Records a new run (its header, `info`, names the locks held) and applies the plan; a
    /// stale plan may be re-planned and approved again, interactively.
    async fn apply_locked(
        &self,
        loaded: &Loaded,
        plan: &RunPlan,
        config: RunConfig,
        reporting: &mut Reporting,
        info: RunInfo,
    ) -> CommandResult {
        let notifier = self.notifier(&info, &config.run_id);
        let cannot_record = |e: &dyn std::fmt::Display| {
            CommandError::Journal(format!("cannot record the run: {e}"))
        };
        let journal = journal::open_new(&self.ctx.journal_root, &config.run_id)
            .map_err(|e| cannot_record(&e))?;
        let sink =
            RunJournal::create(&journal, &config.run_id, &info).map_err(|e| cannot_record(&e))?;
        let mirror = cluster_copy::start_new(
            self.ctx,
            self.cluster,
            &journal,
            &config.run_id,
            plan,
            loaded,
            &info,
        )
        .await?;
        let mut sink = sink.mirrored(mirror.as_ref().map(Mirror::handle));
        let config = RunConfig {
            evidence: Some(self.ctx.evidence_config(&info.cluster_id, &info.user)),
            ..config
        };
        let result = self
            .apply_journaled(loaded, plan, config, reporting, &notifier, &mut sink)
            .await;
        drop(sink);
        cluster_copy::finish(mirror).await;
        result
    }

    /// Applies the plan into the run's journal; a stale plan may be re-planned and approved
    /// again, interactively.
    async fn apply_journaled(
        &self,
        loaded: &Loaded,
        plan: &RunPlan,
        mut config: RunConfig,
        reporting: &mut Reporting,
        notifier: &Notifier,
        sink: &mut RunJournal<'_>,
    ) -> CommandResult {
        let yes = self.options.yes;
        let cannot_record = |e: &dyn std::fmt::Display| {
            CommandError::Journal(format!("cannot record the run: {e}"))
        };
        let mut terminal = TerminalApprover;
        let mut plan = plan.clone();
        loop {
            let approver: &mut dyn Approver = if yes { &mut AutoApprove } else { &mut terminal };
            let result = {
                let mut sinks = reporting.sinks(Some(&mut *sink));
                Executor::new(self.cluster, &mut sinks, approver)
                    .notifying(Some(notifier))
                    .apply(loaded, &plan, &config)
                    .await?
            };
            notify_run(notifier, self.cluster, sink, &result.outcome).await;
            let Outcome::Stale { step, .. } = &result.outcome else {
                return reporting.report(Mode::Live, Some(&plan));
            };
            // Interactively, the responder may re-plan the remaining steps against the cluster
            // as it is now, and approve again; unattended (`--yes`), a stale plan stops the run.
            let replanned = if yes {
                None
            } else {
                self.replan(loaded, &plan, step, &result, &config, reporting)
                    .await
            };
            let Some((new_plan, new_config)) = replanned else {
                let status = reporting.report(Mode::Live, Some(&plan));
                ui::err_line(&format!(
                    "the plan is stale: nothing of that step was written. Run the playbook again to plan against the cluster as it is now (`contain rollback {}` undoes the steps already applied).",
                    config.run_id
                ));
                return status;
            };
            {
                let mut sinks = reporting.sinks(Some(&mut *sink));
                Executor::new(self.cluster, &mut sinks, &mut AutoApprove)
                    .approve(&new_plan)
                    .map_err(|e| cannot_record(&e))?;
            }
            plan = new_plan;
            config = new_config;
        }
    }

    /// Offers to re-plan the steps from the stale one on; `Some` with the new plan and the
    /// config to apply it with once the responder approved it.
    async fn replan(
        &self,
        loaded: &Loaded,
        plan: &RunPlan,
        stale_step: &str,
        result: &crate::execute::RunResult,
        config: &RunConfig,
        reporting: &mut Reporting,
    ) -> Option<(RunPlan, RunConfig)> {
        if !ui::confirm(&format!(
            "re-plan the steps from {stale_step} on against the cluster as it is now?"
        )) {
            return None;
        }
        // Re-planned from the playbook step the stale one plans (all of its parts, if any).
        let from = plan.step(stale_step)?.number - 1;
        let outputs: Map<String, Value> = result
            .completed
            .iter()
            .map(|p| (p.step.clone(), Value::Object(p.outputs.clone())))
            .chain(
                config
                    .resume
                    .iter()
                    .flat_map(|r| r.done.iter())
                    .map(|(id, o)| (id.clone(), Value::Object(o.clone()))),
            )
            .collect();
        let replan_config = RunConfig {
            replan: Some(crate::execute::Replan {
                from,
                previous: plan.clone(),
                outputs: outputs.clone(),
            }),
            ..config.clone()
        };
        let planned = {
            let mut sinks = reporting.sinks(None);
            let mut approve = AutoApprove;
            Executor::new(self.cluster, &mut sinks, &mut approve)
                .plan(loaded, &replan_config)
                .await
        };
        let new_plan = match planned {
            Ok(Ok(new_plan)) => new_plan,
            Ok(Err(refused)) => {
                ui::err_line(&format!("the re-plan was refused: {}", refused.describe()));
                return None;
            }
            Err(e) => {
                ui::err_line(&format!("error: {e}"));
                return None;
            }
        };
        if !ui::confirm(&format!("apply the new plan from {stale_step} on?")) {
            return None;
        }
        let resume = crate::outcome::Resume {
            done: outputs
                .into_iter()
                .filter_map(|(id, o)| Some((id, o.as_object()?.clone())))
                .collect(),
            started: Default::default(),
        };
        let apply_config = RunConfig {
            resume: Some(resume),
            replan: None,
            ..config.clone()
        };
        Some((new_plan, apply_config))
    }

    /// Goes on applying a recorded run's approved plan from its first unfinished step.
    pub async fn resume(&self, recorded: Recorded) -> CommandResult {
        let yes = self.options.yes;
        let Recorded {
            run,
            journal,
            state,
        } = self.on_this_cluster(recorded).await?;
        let (run, cluster) = (run.as_str(), self.cluster);
        if state.rolling_back() {
            return Err(CommandError::Refused(format!(
                "a rollback of run {run} has started; finish it with `contain rollback {run}`"
            )));
        }
        if state.outcome().is_some_and(|o| o.is_success()) {
            // Whoever took it over last is named: a responder coming back to a run another
            // finished learns who did.
            let by = state
                .handovers
                .last()
                .map(|h| {
                    format!(
                        " (by {}, who took it over from {} at {})",
                        h.to, h.from, h.at
                    )
                })
                .unwrap_or_default();
            ui::out_line(&format!(
                "run {run} already finished successfully{by}: nothing to resume"
            ));
            return Ok(Status::Success);
        }
        let Some(plan) = state.plan.clone() else {
            return Err(never_started(run));
        };
        let loaded = self.recorded_playbook(run, &state)?;
        for name in &state.info.sensitive_params {
            if state.info.params.get(name) == Some(&Value::String("(redacted)".into())) {
                ui::warn(&format!(
                    "param {name} is sensitive: the cluster's copy does not carry its value (the approved plan holds what was rendered from it)"
                ));
            }
        }
        let resume = state.resume();
        let next = plan
            .steps
            .iter()
            .filter(|s| s.plan().is_some())
            .find(|s| !resume.done.contains_key(&s.id))
            .map(|s| s.label());
        let Some(next) = next else {
            ui::out_line(&format!("run {run}: every step is done"));
            return Ok(Status::Success);
        };
        if !yes
            && !ui::confirm(&format!(
                "resume run {run} from {next} on {}?",
                cluster.info().server
            ))
        {
            return Err(CommandError::NotConfirmed);
        }
        let user = current_user(cluster).await;
        let me = cluster_copy::responder(&user);
        let mirror = cluster_copy::start_existing(self.ctx, cluster, &journal, &state).await?;
        // The run's own Leases are taken over (a crash left them held); anyone else's refuse.
        let locks = self.take_locks(&plan, run, &user).await?;
        let mut sink =
            RunJournal::reopen(&journal, run).mirrored(mirror.as_ref().map(Mirror::handle));
        take_over(&mut sink, &state, &me, "resume")?;
        let config = RunConfig {
            resume: Some(resume),
            halt: Some(locks.halt()),
            run_timeout: self.ctx.run_timeout,
            evidence: Some(
                self.ctx
                    .evidence_config(&state.info.cluster_id, &state.info.user),
            ),
            ..RunConfig::new(
                run,
                Mode::Live,
                state.info.params.clone(),
                &state.info.playbook_path,
            )
        };
        let mut terminal = TerminalApprover;
        let approver: &mut dyn Approver = if yes { &mut AutoApprove } else { &mut terminal };
        let mut reporting = self.reporting();
        let notifier = self.notifier(&state.info, run);
        let result = {
            let mut sinks = reporting.sinks(Some(&mut sink));
            Executor::new(cluster, &mut sinks, approver)
                .notifying(Some(&notifier))
                .apply(&loaded, &plan, &config)
                .await
        };
        let status = match result {
            Ok(result) => {
                notify_run(&notifier, cluster, &mut sink, &result.outcome).await;
                reporting.report(Mode::Live, Some(&plan))
            }
            Err(e) => Err(e.into()),
        };
        drop(sink);
        cluster_copy::finish(mirror).await;
        locks.release().await;
        say_throttled(cluster);
        status
    }

    /// The playbook a recorded run was started with: the file it was read from, or else the
    /// copy a pull brought from the cluster; either must still hash as the run recorded.
    fn recorded_playbook(&self, run: &str, state: &RunState) -> Result<Loaded, CommandError> {
        let recorded = &state.info.playbook_sha256;
        let at_path = self.ctx.load_playbook(Path::new(&state.info.playbook_path));
        if let Ok(loaded) = &at_path
            && loaded.sha256 == *recorded
        {
            return at_path;
        }
        let pulled = cluster_copy::pulled_playbook(self.ctx, run);
        if pulled.is_file()
            && let Ok(loaded) = self.ctx.load_playbook(&pulled)
            && loaded.sha256 == *recorded
        {
            return Ok(loaded);
        }
        match at_path {
            Ok(loaded) => Err(CommandError::Refused(format!(
                "{} changed since run {run} started (sha256 {recorded} then, {} now); refusing to resume with a different playbook",
                state.info.playbook_path, loaded.sha256
            ))),
            Err(e) => Err(e),
        }
    }

    /// Undoes a recorded run's completed steps, newest first, down to (not including) `to`.
    pub async fn rollback(&self, recorded: Recorded, to: Option<&str>) -> CommandResult {
        let yes = self.options.yes;
        let Recorded {
            run,
            journal,
            state,
        } = self.on_this_cluster(recorded).await?;
        let (run, cluster) = (run.as_str(), self.cluster);
        if let Some(step) = to
            && !state.steps.iter().any(|s| s.step == step)
        {
            let ids: Vec<&str> = state.steps.iter().map(|s| s.step.as_str()).collect();
            let hint = crate::diagnostics::did_you_mean(step, ids.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_else(|| format!("; its steps: {}", ids.join(", ")));
            return Err(CommandError::Input(format!(
                "run {run} has no step `{step}`{hint}"
            )));
        }
        let mut plans = state.to_undo(to);
        if plans.is_empty() {
            ui::out_line(&format!("run {run}: nothing to roll back"));
            return Ok(Status::Success);
        }
        ui::out(&display::render_rollback(
            run,
            &cluster.info().server,
            &plans,
        ));
        if !yes && !ui::confirm("apply this rollback?") {
            return Err(CommandError::NotConfirmed);
        }
        let user = current_user(cluster).await;
        let me = cluster_copy::responder(&user);
        let mirror = cluster_copy::start_existing(self.ctx, cluster, &journal, &state).await?;
        // A rollback writes to the run's targets too: it takes (or takes over) their locks.
        let locks = match &state.plan {
            Some(plan) => Some(self.take_locks(plan, run, &user).await?),
            None => None,
        };
        let config = RunConfig::new(
            run,
            Mode::Live,
            state.info.params.clone(),
            &state.info.playbook_path,
        );
        let mut sink =
            RunJournal::reopen(&journal, run).mirrored(mirror.as_ref().map(Mirror::handle));
        take_over(&mut sink, &state, &me, "rollback")?;
        let mut reporting = self.reporting();
        let result = {
            let mut sinks = reporting.sinks(Some(&mut sink));
            let reason = match to {
                Some(step) => format!("rollback of run {run} to step {step}"),
                None => format!("rollback of run {run}"),
            };
            let mut approve = AutoApprove;
            let mut executor = Executor::new(cluster, &mut sinks, &mut approve);
            match executor.rollback(&mut plans, &reason, &config).await {
                Ok(pending) => {
                    let outcome = if pending.is_empty() {
                        Outcome::RolledBackOnRequest
                    } else {
                        Outcome::RollbackIncomplete { pending }
                    };
                    executor.finish(&outcome).map(|()| outcome)
                }
                Err(e) => Err(e),
            }
        };
        if let Ok(outcome) = &result {
            let notifier = self.notifier(&state.info, run);
            notify_run(&notifier, cluster, &mut sink, outcome).await;
        }
        drop(sink);
        cluster_copy::finish(mirror).await;
        if let Some(locks) = locks {
            locks.release().await;
        }
        result.map_err(|e| CommandError::Journal(e.to_string()))?;
        reporting.report(Mode::Live, None)
    }

    /// The recorded run, refused when it was made on another cluster than the one connected.
    async fn on_this_cluster(&self, recorded: Recorded) -> Result<Recorded, CommandError> {
        let id = identity(self.cluster).await?;
        let info = &recorded.state.info;
        if id != info.cluster_id {
            return Err(CommandError::Refused(format!(
                "run {} was made on another cluster ({}, kube-system uid {}); this cluster's kube-system uid is {id}. Refusing.",
                recorded.run, info.server, info.cluster_id
            )));
        }
        Ok(recorded)
    }

    fn notifier(&self, info: &RunInfo, run_id: &str) -> Notifier {
        Notifier::new(
            self.options.notify.clone(),
            RunContext {
                run: run_id.to_string(),
                playbook: info.playbook_name.clone(),
                cluster: info.server.clone(),
                user: info.user.clone(),
            },
        )
    }

    /// Takes the Lease of every target the plan writes to; a refusal names the holder and
    /// since when, and nothing is written.
    async fn take_locks(
        &self,
        plan: &RunPlan,
        run_id: &str,
        user: &str,
    ) -> Result<TargetLocks, CommandError> {
        let options = &self.options.lock;
        let holder = run_lock::holder(run_id, user, options);
        match run_lock::take(self.cluster, plan, &holder, options).await {
            Ok(locks) => {
                for record in locks.records(options.steal.as_deref()) {
                    if let Some(previous) = &record.stolen_from {
                        ui::warn(&format!(
                            "took the lock on {} (Lease {}) from {} (holding it since {}): {}",
                            record.target,
                            record.lease,
                            previous.holder,
                            previous.since,
                            options.steal.as_deref().unwrap_or_default()
                        ));
                    }
                }
                Ok(locks)
            }
            Err(e @ crate::cluster::lease::LockError::Held { .. }) => {
                Err(CommandError::Locked(e.to_string()))
            }
            Err(e) => Err(CommandError::Cluster(format!(
                "cannot take the target's lock, so nothing was written: {e}"
            ))),
        }
    }
}

/// Who the API server says is connected; a cluster that cannot say is still usable.
async fn current_user(cluster: &KubeCluster) -> String {
    cluster
        .whoami()
        .await
        .map(|u| u.username)
        .unwrap_or_else(|_| "unknown".into())
}

/// Journals that another responder (or the same one elsewhere) takes the run over, before
/// anything of theirs is written.
fn take_over(
    sink: &mut RunJournal<'_>,
    state: &RunState,
    me: &str,
    purpose: &str,
) -> Result<(), CommandError> {
    let from = state.holder();
    if from == me {
        return Ok(());
    }
    sink.append(&journal::Entry::TakenOver {
        from,
        to: me.to_string(),
        purpose: purpose.to_string(),
    })
    .map_err(|e| CommandError::Journal(format!("cannot record the take-over: {e}")))
}

/// The cluster's identity (the kube-system namespace uid).
pub async fn identity(cluster: &KubeCluster) -> Result<String, CommandError> {
    cluster.identity().await.map_err(|e| {
        CommandError::Cluster(format!(
            "cannot read the cluster's identity (the kube-system namespace uid): {e}"
        ))
    })
}

/// A recorded run that started (its plan was approved), opened and read: what `resume` and
/// `rollback` go on from. Opened before connecting, so a run that never started, or is not in
/// the journal at all, is said without a cluster.
pub struct Recorded {
    pub run: String,
    pub journal: ::journal::Journal,
    pub state: RunState,
}

impl Recorded {
    pub fn open(ctx: &Ctx, run: &str) -> Result<Recorded, CommandError> {
        let journal = ctx.open_run(run)?;
        let state = ctx.read_run(run, &journal)?;
        if state.never_started() {
            return Err(never_started(run));
        }
        Ok(Recorded {
            run: run.to_string(),
            journal,
            state,
        })
    }
}

impl Recorded {
    /// The run as `resume` and `rollback` go on from it, and the connected cluster. With
    /// `--journal cluster` the run is pulled from the cluster first (there is no local
    /// journal); otherwise a run not in the journal is said before connecting.
    pub async fn open_for_session(
        ctx: &Ctx,
        run: &str,
    ) -> Result<(Recorded, KubeCluster), CommandError> {
        if ctx.journal_mode != super::ctx::JournalMode::Cluster {
            let recorded = Recorded::open(ctx, run)?;
            return Ok((recorded, ctx.connect().await?));
        }
        let cluster = ctx.connect().await?;
        Ok((Recorded::pulled(ctx, &cluster, run).await?, cluster))
    }

    /// The run as its copy in the cluster holds it, pulled into the journal first.
    pub async fn pulled(
        ctx: &Ctx,
        cluster: &KubeCluster,
        run: &str,
    ) -> Result<Recorded, CommandError> {
        cluster_copy::pull(ctx, cluster, run).await?;
        Recorded::open(ctx, run)
    }
}

fn never_started(run: &str) -> CommandError {
    CommandError::NeverStarted(format!(
        "run {run} never started: no plan was approved, nothing was written"
    ))
}

/// Refuses to write without a terminal to confirm on, unless told not to ask.
pub fn refuse_unattended(yes: bool, what: &str) -> Result<(), CommandError> {
    if !yes && !ui::interactive() {
        return Err(CommandError::Refused(format!(
            "refusing to {what} without a terminal to confirm on; pass --yes"
        )));
    }
    Ok(())
}

/// Says when the API server throttled the run: a slow run then has a cause the responder sees.
fn say_throttled(cluster: &KubeCluster) {
    let throttled = cluster.throttled();
    if throttled > 0 {
        ui::err_line(&format!(
            "note: the API server throttled {throttled} call(s) with 429 Too Many Requests (API Priority and Fairness); each was retried after the server's Retry-After"
        ));
    }
}

/// Tells every channel how the run ended; each delivery is journaled, and one that failed is
/// also said on stderr (the run's outcome stands either way).
async fn notify_run(
    notifier: &Notifier,
    cluster: &KubeCluster,
    sink: &mut RunJournal<'_>,
    outcome: &Outcome,
) {
    let notice = Notice {
        event: "run",
        step: None,
        action: None,
        target: None,
        status: if outcome.is_success() {
            "succeeded"
        } else {
            "failed"
        }
        .to_string(),
        message: outcome.describe(),
    };
    for delivery in notifier.send(cluster, &notice).await {
        if let Some(error) = &delivery.error {
            ui::warn(&format!(
                "could not notify {} ({}): {error}",
                delivery.channel, delivery.about
            ));
        }
        let event = crate::event::Event {
            at: jiff::Timestamp::now().to_string(),
            elapsed_ms: 0,
            kind: crate::event::EventKind::Notified {
                channel: delivery.channel,
                about: delivery.about,
                error: delivery.error,
            },
        };
        if let Err(e) = crate::event::EventSink::emit(sink, &event) {
            ui::warn(&format!("could not journal a notification: {e}"));
        }
    }
}
