//! `contain drill FILE`, `contain drill resume RUN` and `contain drill cleanup RUN`: the phases
//! in order, each recorded before it acts, with the kill switch (the target namespace's
//! `contain.dev/drill-abort` annotation, SIGTERM, SIGINT, a lost lock) jumping to revert and
//! cleanup from anywhere.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::alerts::Alert;
use super::detonate;
use super::load::{DrillLoadError, LoadedDrill};
use super::progress::Progress;
use super::receiver::{self, AlertmanagerClient, Inbox};
use super::record::{self, DrillEntry, DrillInfo, DrillJournal};
use super::score::{self, Containment, DrillResult, ExpectationResult, Moment, Times, exit};
use super::spec::Drill;
use super::stage::Stage;
use super::types::{Check, Detonated, RunIdentity, TARGET_LABEL};
use super::warmup;
use crate::cli::{DrillArgs, DrillCommand, DrillOptions};
use crate::cluster::kube::{Connect, KubeCluster};
use crate::cluster::lease::{self as lock, HeldLock};
use crate::cluster::object::{self, ObjectRef};
use crate::cluster::{Cluster, ClusterError, WriteMode};
use crate::cmd::ctx::{new_run_id, playbook_path};
use crate::cmd::session::{Recorded, Session, SessionOptions};
use crate::cmd::{CommandError, Ctx, ui};

/// The annotation on the target namespace that stops a running drill (any value but "false").
pub const ABORT_ANNOTATION: &str = "contain.dev/drill-abort";
/// The Lease every drill on a target namespace takes.
pub const LOCK_NAME: &str = "contain-drill";

/// Entry point of `contain drill …`.
pub async fn command(args: &DrillArgs, ctx: &Ctx) -> u8 {
    match (&args.command, &args.file) {
        (Some(DrillCommand::Resume { run, options }), _) => {
            continue_run(run, options, ctx, false).await
        }
        (Some(DrillCommand::Cleanup { run, options }), _) => {
            continue_run(run, options, ctx, true).await
        }
        (Some(DrillCommand::Validate { files }), _) => validate(files, ctx),
        (Some(DrillCommand::Schema), _) => {
            ui::print_schema(&super::load::drill_schema(), ctx.output);
            exit::PASSED
        }
        (Some(DrillCommand::ExitCodes), _) => {
            ui::out(&crate::exit::drill_text());
            exit::PASSED
        }
        (None, Some(file)) => fresh(file, &args.options, ctx).await,
        (None, None) => {
            ui::err_line("error: name a drill file, or `resume RUN` / `cleanup RUN`");
            exit::ERROR
        }
    }
}

fn load_or_report(path: &Path, ctx: &Ctx) -> Result<LoadedDrill, u8> {
    super::load::load(path).map_err(|e| {
        match e {
            DrillLoadError::Invalid(reports) => {
                for report in reports {
                    ui::print_reports(std::slice::from_ref(&report), ctx.output);
                }
            }
            DrillLoadError::Io(message) => ui::err_line(&format!("error: {message}")),
        }
        exit::ERROR
    })
}

fn validate(files: &[PathBuf], ctx: &Ctx) -> u8 {
    let mut code = exit::PASSED;
    let mut results = Vec::new();
    for file in files {
        match load_or_report(file, ctx) {
            Ok(loaded) => {
                let detonations = loaded.drill.spec.detonations.len();
                let expectations: usize = loaded
                    .drill
                    .spec
                    .detonations
                    .iter()
                    .map(|d| d.expect.len())
                    .sum();
                if ctx.text() {
                    ui::out_line(&format!(
                        "{}: ok ({detonations} detonations, {expectations} expectations)",
                        file.display()
                    ));
                }
                results.push(json!({"file": file.display().to_string(), "valid": true,
                    "detonations": detonations, "expectations": expectations}));
            }
            Err(c) => {
                code = c;
                results.push(json!({"file": file.display().to_string(), "valid": false}));
            }
        }
    }
    if !ctx.text() && code == exit::PASSED {
        ui::print_output(&Value::Array(results), ctx.output);
    }
    code
}

fn journal_root(ctx: &Ctx) -> PathBuf {
    record::root(&ctx.journal_root)
}

/// The kubeconfig context in use (or `in-cluster`), for the allowlist.
fn context_name(ctx: &Ctx) -> String {
    if let Some(context) = &ctx.context {
        return context.clone();
    }
    crate::cluster::kube::current_context(ctx.kubeconfig.as_deref())
        .unwrap_or_else(|| "in-cluster".into())
}

/// The six hex digits that end a run id: the run's short name in object names.
fn short(run: &str) -> String {
    run.rsplit('-').next().unwrap_or(run).to_ascii_lowercase()
}

fn identity_of(drill: &Drill, run: &str) -> RunIdentity {
    let short = short(run);
    RunIdentity {
        run_id: run.to_string(),
        namespace: format!("{}-{short}", drill.spec.target.namespace),
        prefix: format!("drill-{short}"),
    }
}

async fn connect(ctx: &Ctx, run: &str) -> Result<KubeCluster, u8> {
    let options = Connect {
        kubeconfig: ctx.kubeconfig.clone(),
        context: ctx.context.clone(),
        call_timeout: Some(ctx.call_timeout),
        // Stamped on every request, so an audit-log detection can tie it to this run.
        user_agent: Some(format!(
            "contain-drill/{} (run {run})",
            env!("CARGO_PKG_VERSION")
        )),
    };
    KubeCluster::connect(&options)
        .await
        .map(|cluster| cluster.warning_to(ui::warn))
        .map_err(|e| {
            ui::err_line(&format!("error: {e}"));
            exit::ERROR
        })
}

/// Refuses a target namespace without the drill label, and a context outside the allowlist.
async fn preflight_checks(
    drill: &Drill,
    cluster: &KubeCluster,
    context: &str,
) -> Result<(), String> {
    let allowed = &drill.spec.contexts;
    let server = cluster.info().server;
    if !allowed.iter().any(|c| {
        c == context || *c == server || c.trim_end_matches('/') == server.trim_end_matches('/')
    }) {
        return Err(format!(
            "context `{context}` (server {server}) is not in the drill's allowlist ({})",
            allowed.join(", ")
        ));
    }
    let target = &drill.spec.target.namespace;
    let found = cluster
        .get(&ObjectRef::new("Namespace", None, target))
        .await
        .map_err(|e| format!("cannot read namespace {target}: {e}"))?
        .ok_or_else(|| format!("the target namespace {target} does not exist"))?;
    let label = object::labels(&found).get(TARGET_LABEL).cloned();
    if label.as_deref() != Some("true") {
        return Err(format!(
            "namespace {target} is not a drill target: it needs the label {TARGET_LABEL}=true"
        ));
    }
    Ok(())
}

/// The kill switch: set by SIGTERM, SIGINT, the abort annotation or a lost lock.
#[derive(Clone, Default)]
struct Abort {
    flag: Arc<AtomicBool>,
    reason: Arc<std::sync::Mutex<Option<String>>>,
}

impl Abort {
    fn trip(&self, reason: String) {
        let mut held = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some(reason);
        }
        self.flag.store(true, Ordering::SeqCst);
    }

    fn tripped(&self) -> Option<String> {
        self.flag
            .load(Ordering::SeqCst)
            .then(|| {
                self.reason
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            })
            .flatten()
    }

    /// Watches the signals and the target namespace's annotation until dropped.
    fn watch(&self, cluster: KubeCluster, target: String) -> tokio::task::JoinHandle<()> {
        let abort = self.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            let namespace = ObjectRef::new("Namespace", None, &target);
            loop {
                tokio::select! {
                    _ = term.recv() => abort.trip("SIGTERM".into()),
                    _ = int.recv() => abort.trip("SIGINT".into()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {
                        if let Ok(Some(ns)) = cluster.get(&namespace).await
                            && let Some(value) = ns.pointer("/metadata/annotations").and_then(|a| a.get(ABORT_ANNOTATION)).and_then(Value::as_str)
                            && value != "false"
                        {
                            abort.trip(format!("the kill switch: annotation {ABORT_ANNOTATION}={value} on namespace {target}"));
                        }
                    }
                }
            }
        })
    }
}

/// Everything a drill run knows, rebuilt from the journal on resume.
#[derive(Default)]
struct State {
    phases: Vec<String>,
    armed: bool,
    preexisting: HashSet<String>,
    detonations: Vec<Detonated>,
    alerts: Vec<Alert>,
    contain_run: Option<String>,
    contain_code: Option<u8>,
    contain_started: Option<Timestamp>,
    verification: Vec<Check>,
    contained_at: Option<Timestamp>,
    baseline: Option<std::collections::BTreeMap<String, Value>>,
    revert_code: Option<u8>,
    restore_differences: Vec<String>,
    revert_started: Option<Timestamp>,
    reverted_at: Option<Timestamp>,
    cleaned: Option<Vec<String>>,
    aborted: Option<String>,
    errors: Vec<String>,
    timeline: Vec<Moment>,
    result: Option<DrillResult>,
}

impl State {
    fn from_entries(entries: Vec<DrillEntry>) -> Self {
        let mut state = State::default();
        for entry in entries {
            state.apply(entry);
        }
        state
    }

    fn apply(&mut self, entry: DrillEntry) {
        match entry {
            DrillEntry::Phase { phase, at } => {
                self.timeline.push(Moment {
                    at,
                    what: format!("phase {phase}"),
                });
                self.phases.push(phase);
            }
            DrillEntry::Create { .. } => {}
            DrillEntry::Armed { preexisting, at } => {
                self.timeline.push(Moment {
                    at,
                    what: format!(
                        "armed ({} alerts already firing, not counted)",
                        preexisting.len()
                    ),
                });
                self.preexisting.extend(preexisting);
                self.armed = true;
            }
            DrillEntry::Detonated(d) => {
                let what = format!(
                    "detonation {} ({}) {}",
                    d.id,
                    d.pattern,
                    d.effect.describe()
                );
                self.timeline.push(Moment { at: d.at, what });
                self.detonations.push(d);
            }
            DrillEntry::Alert(a) => {
                self.timeline.push(Moment {
                    at: a.received_at,
                    what: format!("alert {} received from {}", a.name, a.source),
                });
                self.alerts.push(a);
            }
            DrillEntry::Contain { run, at } => {
                self.timeline.push(Moment {
                    at,
                    what: format!("containment run {run} started"),
                });
                self.contain_run = Some(run);
                self.contain_started = Some(at);
            }
            DrillEntry::Contained { code, at } => {
                self.timeline.push(Moment {
                    at,
                    what: format!("containment run finished (exit {code})"),
                });
                self.contain_code = Some(code);
            }
            DrillEntry::Verified { checks, at } => {
                let passed = checks.iter().all(|c| c.passed);
                self.timeline.push(Moment {
                    at,
                    what: format!("post-conditions {}", if passed { "hold" } else { "FAILED" }),
                });
                if passed && !checks.is_empty() {
                    self.contained_at = Some(at);
                }
                self.verification = checks;
            }
            DrillEntry::Baseline { objects } => {
                // The first baseline stands: a resumed drill may read another after its
                // containment began.
                self.baseline.get_or_insert(objects);
            }
            DrillEntry::Reverted {
                code,
                started,
                at,
                differences,
            } => {
                self.timeline.push(Moment {
                    at,
                    what: if differences.is_empty() {
                        format!("reverted (rollback exit {code}), every object as before")
                    } else {
                        format!(
                            "rollback exit {code}, NOT restored: {}",
                            differences.join("; ")
                        )
                    },
                });
                self.restore_differences = differences;
                self.revert_code = Some(code);
                self.revert_started = Some(started);
                self.reverted_at = Some(at);
            }
            DrillEntry::Cleaned { leftovers, at } => {
                self.timeline.push(Moment {
                    at,
                    what: if leftovers.is_empty() {
                        "cleaned: nothing left".into()
                    } else {
                        format!("cleanup left {}", leftovers.join(", "))
                    },
                });
                self.cleaned = Some(leftovers);
            }
            DrillEntry::Aborted { reason, at } => {
                self.timeline.push(Moment {
                    at,
                    what: format!("aborted: {reason}"),
                });
                self.aborted = Some(reason);
            }
            DrillEntry::Result(result) => self.result = Some(*result),
        }
    }

    fn reached(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }
}

/// One drill run in progress.
struct Runner<'a> {
    loaded: &'a LoadedDrill,
    ctx: &'a Ctx,
    options: &'a DrillOptions,
    stage: Stage<'a>,
    journal: &'a DrillJournal,
    info: DrillInfo,
    state: State,
    inbox: Inbox,
    alertmanager: Option<AlertmanagerClient>,
    abort: Abort,
    progress: Progress,
    lock: Option<HeldLock>,
    receiver: Option<receiver::Receiver>,
    last_pull: Option<std::time::Instant>,
    /// Tokens minted for the decoys' accounts before containment, for the `revoked`
    /// post-condition: held in memory only, never journaled.
    canaries: std::collections::BTreeMap<String, String>,
}

async fn fresh(file: &Path, options: &DrillOptions, ctx: &Ctx) -> u8 {
    let loaded = match load_or_report(file, ctx) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let run = new_run_id();
    let cluster = match connect(ctx, &run).await {
        Ok(found) => found,
        Err(code) => return code,
    };
    let mut progress = Progress::new(ctx.no_progress);
    progress.phase(
        "preflight",
        &format!("drill {} run {run}", loaded.drill.metadata.name),
    );
    let context = context_name(ctx);
    if let Err(refusal) = preflight_checks(&loaded.drill, &cluster, &context).await {
        progress.finish();
        ui::err_line(&format!("refused: {refusal}; nothing was written"));
        return exit::ERROR;
    }
    let cluster_id = match cluster.identity().await {
        Ok(id) => id,
        Err(e) => {
            ui::err_line(&format!("error: cannot read the cluster's identity: {e}"));
            return exit::ERROR;
        }
    };
    let user = cluster
        .whoami()
        .await
        .map(|u| u.username)
        .unwrap_or_else(|_| "unknown".into());
    let identity = identity_of(&loaded.drill, &run);
    let info = DrillInfo {
        drill_path: playbook_path(file),
        drill_sha256: loaded.sha256.clone(),
        drill_name: loaded.drill.metadata.name.clone(),
        cluster_id,
        server: cluster.info().server,
        context,
        user,
        target_namespace: loaded.drill.spec.target.namespace.clone(),
        namespace: identity.namespace.clone(),
        prefix: identity.prefix.clone(),
        started_at: Timestamp::now(),
    };
    let journal = match DrillJournal::create(&journal_root(ctx), &run, &info) {
        Ok(journal) => journal,
        Err(e) => {
            ui::err_line(&format!("error: cannot record the drill: {e}"));
            return exit::ERROR;
        }
    };
    progress.note(&format!(
        "journal {}",
        journal_root(ctx).join(&run).display()
    ));
    let mut runner = Runner::new(
        &loaded,
        ctx,
        options,
        &cluster,
        &journal,
        info,
        State::default(),
        progress,
    );
    runner.go(false).await
}

/// `resume` (go on from where the drill stood) or `cleanup` (revert, clean, report).
async fn continue_run(run: &str, options: &DrillOptions, ctx: &Ctx, cleanup: bool) -> u8 {
    let journal = match DrillJournal::open(&journal_root(ctx), run) {
        Ok(journal) => journal,
        Err(e) => {
            ui::err_line(&format!("error: drill run {run}: {e}"));
            return exit::ERROR;
        }
    };
    let (info, entries) = match journal.info().and_then(|i| Ok((i, journal.entries()?))) {
        Ok(found) => found,
        Err(e) => {
            ui::err_line(&format!("error: {e}"));
            return exit::ERROR;
        }
    };
    let loaded = match load_or_report(Path::new(&info.drill_path), ctx) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if loaded.sha256 != info.drill_sha256 && !cleanup {
        ui::err_line(&format!(
            "error: {} changed since drill run {run} started; `contain drill cleanup {run}` still reverts and cleans it",
            info.drill_path
        ));
        return exit::ERROR;
    }
    let cluster = match connect(ctx, run).await {
        Ok(found) => found,
        Err(code) => return code,
    };
    match cluster.identity().await {
        Ok(id) if id == info.cluster_id => {}
        Ok(id) => {
            ui::err_line(&format!(
                "error: drill run {run} was made on another cluster ({}, kube-system uid {}); this one's is {id}",
                info.server, info.cluster_id
            ));
            return exit::ERROR;
        }
        Err(e) => {
            ui::err_line(&format!("error: cannot read the cluster's identity: {e}"));
            return exit::ERROR;
        }
    }
    let state = State::from_entries(entries);
    if let Some(result) = &state.result {
        ui::out_line(&format!(
            "drill run {run} already finished: {} (exit {})",
            result.status, result.exit_code
        ));
        return result.exit_code;
    }
    let progress = Progress::new(ctx.no_progress);
    let mut runner = Runner::new(
        &loaded, ctx, options, &cluster, &journal, info, state, progress,
    );
    runner.go(cleanup).await
}

impl<'a> Runner<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        loaded: &'a LoadedDrill,
        ctx: &'a Ctx,
        options: &'a DrillOptions,
        cluster: &'a KubeCluster,
        journal: &'a DrillJournal,
        info: DrillInfo,
        state: State,
        progress: Progress,
    ) -> Self {
        let identity = identity_of(&loaded.drill, &journal.run);
        let inbox = Inbox::default();
        inbox.add(state.alerts.clone());
        Runner {
            loaded,
            ctx,
            options,
            stage: Stage {
                cluster,
                namespace: identity.namespace.clone(),
                target_namespace: loaded.drill.spec.target.namespace.clone(),
                run: identity,
                journal,
            },
            journal,
            info,
            state,
            inbox,
            alertmanager: loaded
                .drill
                .spec
                .alertmanager
                .as_ref()
                .map(|a| AlertmanagerClient::new(&a.url)),
            abort: Abort::default(),
            progress,
            lock: None,
            receiver: None,
            last_pull: None,
            canaries: Default::default(),
        }
    }

    fn drill(&self) -> &'a Drill {
        &self.loaded.drill
    }

    fn record(&mut self, entry: DrillEntry) -> Result<(), String> {
        self.journal.append(&entry)?;
        self.state.apply(entry);
        Ok(())
    }

    fn enter(&mut self, phase: &str, what: &str) -> Result<(), String> {
        self.progress.phase(phase, what);
        self.record(DrillEntry::Phase {
            phase: phase.into(),
            at: Timestamp::now(),
        })
    }

    /// Runs the phases from where the journal stands; `cleanup` skips to revert.
    async fn go(&mut self, cleanup: bool) -> u8 {
        let watcher = self.abort.watch(
            self.stage.cluster.clone(),
            self.stage.target_namespace.clone(),
        );
        if let Err(e) = self.take_lock().await {
            watcher.abort();
            self.progress.finish();
            // Nothing is recorded: a fresh drill wrote nothing yet, and a resumed or cleaned-up
            // one stays as it was, to be finished once the lock is free.
            ui::err_line(&format!("refused: {e}"));
            if self.state.reached("warmup") {
                ui::err_line(&format!(
                    "drill run {} is unfinished; `contain drill cleanup {}` finishes it once the lock is free",
                    self.journal.run, self.journal.run
                ));
            }
            return exit::ERROR;
        }
        if cleanup {
            self.abort
                .trip("cleanup requested (contain drill cleanup)".into());
        } else if let Some(reason) = self.state.aborted.clone() {
            // An aborted drill only winds down, even when resumed.
            self.abort.trip(reason);
        }
        let outcome = self.phases().await;
        if let Err(e) = outcome {
            self.state.errors.push(e);
        }
        let code = self.wind_down().await;
        watcher.abort();
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
        code
    }

    async fn take_lock(&mut self) -> Result<(), String> {
        let holder = lock::Holder {
            identity: self.journal.run.clone(),
            run: self.journal.run.clone(),
            predecessors: Vec::new(),
        };
        let lock = lock::acquire(
            self.stage.cluster,
            &self.stage.target_namespace,
            LOCK_NAME,
            &holder,
            Duration::from_secs(self.drill().spec.timing.lease_seconds),
            false,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.lock = Some(lock);
        Ok(())
    }

    fn check_abort(&mut self) -> Result<(), Stop> {
        if let Some(lock) = &self.lock
            && lock.lost()
        {
            self.abort.trip(
                "the Lease lock could not be renewed: another run may hold the target".into(),
            );
        }
        match self.abort.tripped() {
            Some(reason) => Err(Stop(reason)),
            None => Ok(()),
        }
    }

    /// warmup → arm → detonate → detect → contain → verify; an abort or error stops early.
    async fn phases(&mut self) -> Result<(), String> {
        match self.forward().await {
            Ok(()) => Ok(()),
            Err(Failure::Stopped(Stop(reason))) => {
                self.progress.note(&format!("aborted: {reason}"));
                if self.state.aborted.is_none() {
                    self.record(DrillEntry::Aborted {
                        reason,
                        at: Timestamp::now(),
                    })?;
                }
                Ok(())
            }
            Err(Failure::Error(e)) => Err(e),
        }
    }

    async fn forward(&mut self) -> Result<(), Failure> {
        self.check_abort()?;
        // Warmup is idempotent (what exists is kept): redone until the drill is armed.
        if !self.state.armed {
            self.enter(
                "warmup",
                &format!(
                    "namespace {} and {} decoys",
                    self.stage.namespace,
                    self.drill().spec.decoys.len()
                ),
            )?;
            self.stage
                .create_namespace(&self.drill().spec.target.run_namespace_labels)
                .await?;
            for decoy in &self.drill().spec.decoys {
                self.stage.create_decoy(decoy).await?;
            }
            let wait = Duration::from_secs(self.drill().spec.timing.decoys_ready_seconds);
            self.progress
                .phase("warmup", "waiting for the decoys to run");
            warmup::wait_ready(&self.stage, &self.drill().spec.decoys, wait).await?;
        }
        self.check_abort()?;
        self.start_receiver().await?;
        if !self.state.armed {
            self.enter(
                "arm",
                &format!("receiver on {}", self.drill().spec.receiver.listen),
            )?;
            self.arm().await?;
        }
        if self.state.detonations.len() < self.drill().spec.detonations.len() {
            self.enter(
                "detonate",
                &format!("{} detonations", self.drill().spec.detonations.len()),
            )?;
            for detonation in &self.drill().spec.detonations {
                self.check_abort()?;
                if self.state.detonations.iter().any(|d| d.id == detonation.id) {
                    continue;
                }
                let done = detonate::detonate(&self.stage, detonation).await;
                self.progress
                    .note(&format!("{}: {}", done.id, done.effect.describe()));
                self.record(DrillEntry::Detonated(done))?;
            }
        }
        let contains = self.drill().spec.contain.is_some();
        if !self.state.reached("contain") {
            self.enter("detect", "waiting for the expected alerts")?;
            self.detect(contains).await?;
        }
        self.check_abort()?;
        self.contain().await?;
        self.check_abort()?;
        if contains {
            // The other detonations' alerts still count, until their own windows close.
            self.progress
                .note("waiting for the rest of the expected alerts");
            self.detect(false).await?;
        }
        if self.state.contain_run.is_some() || !self.drill().spec.verify.is_empty() {
            self.enter(
                "verify",
                &format!("{} post-conditions", self.drill().spec.verify.len()),
            )?;
            let checks =
                super::verify::check_all(&self.stage, &self.drill().spec.verify, &self.canaries)
                    .await;
            for check in &checks {
                self.progress.note(&format!(
                    "{}: {}: {}",
                    if check.passed { "holds" } else { "FAILED" },
                    check.condition,
                    check.detail
                ));
            }
            self.record(DrillEntry::Verified {
                checks,
                at: Timestamp::now(),
            })?;
        }
        Ok(())
    }

    async fn start_receiver(&mut self) -> Result<(), String> {
        if self.receiver.is_some() {
            return Ok(());
        }
        let spec = &self.drill().spec.receiver;
        let token = std::env::var(&spec.token_env)
            .ok()
            .filter(|t| !t.is_empty());
        if token.is_none() {
            self.progress.note(&format!(
                "${} is not set: pushed alerts will be refused",
                spec.token_env
            ));
        }
        let started = receiver::start(
            &spec.listen,
            token,
            spec.generic.clone(),
            self.inbox.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        self.receiver = Some(started);
        Ok(())
    }

    /// Records the alerts already firing (they do not count), and waits a bounded time for an
    /// expected one that fires already to resolve.
    async fn arm(&mut self) -> Result<(), Failure> {
        let expected: HashSet<&str> = self
            .drill()
            .spec
            .detonations
            .iter()
            .flat_map(|d| d.expect.iter().map(|e| e.alert()))
            .collect();
        let quiet = Duration::from_secs(self.drill().spec.timing.quiet_seconds);
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            self.check_abort()?;
            self.pull().await;
            let firing: Vec<Alert> = self
                .inbox
                .snapshot()
                .into_iter()
                .filter(|a| a.firing)
                .collect();
            let busy: Vec<&str> = firing
                .iter()
                .filter(|a| expected.contains(a.name.as_str()))
                .map(|a| a.name.as_str())
                .collect();
            if busy.is_empty() || tokio::time::Instant::now() >= deadline {
                if !busy.is_empty() {
                    self.progress.note(&format!(
                        "still firing after {} s, not counted: {}",
                        quiet.as_secs(),
                        busy.join(", ")
                    ));
                }
                let preexisting = self
                    .inbox
                    .snapshot()
                    .into_iter()
                    .map(|a| format!("{}/{}", a.source, a.fingerprint))
                    .collect();
                self.record(DrillEntry::Armed {
                    preexisting,
                    at: Timestamp::now(),
                })?;
                return Ok(());
            }
            self.progress.phase(
                "arm",
                &format!(
                    "waiting for {} to resolve before detonating",
                    busy.join(", ")
                ),
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            // Look afresh: Alertmanager's API drops a resolved alert rather than marking it,
            // so only what it still lists may count as firing. (Pushed resolves update the
            // inbox themselves.)
            if self.alertmanager.is_some() {
                self.inbox.clear();
                self.last_pull = None;
            }
        }
    }

    /// Polls Alertmanager, at most every `alertmanager.poll_seconds`.
    async fn pull(&mut self) {
        let Some(spec) = &self.drill().spec.alertmanager else {
            return;
        };
        let every = Duration::from_secs(spec.poll_seconds);
        if self.last_pull.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.last_pull = Some(std::time::Instant::now());
        if let Some(client) = &self.alertmanager {
            match client.alerts().await {
                Ok(alerts) => {
                    self.inbox.add(alerts);
                }
                Err(e) => self.progress.note(&format!("pull: {e}")),
            }
        }
    }

    /// Counts new alerts into the journal; returns them.
    fn take_new_alerts(&mut self) -> Result<(), String> {
        let known: HashSet<String> = self
            .state
            .alerts
            .iter()
            .map(|a| format!("{}/{}", a.source, a.fingerprint))
            .collect();
        for alert in self.inbox.snapshot() {
            let key = format!("{}/{}", alert.source, alert.fingerprint);
            if self.state.preexisting.contains(&key) || known.contains(&key) {
                continue;
            }
            self.progress
                .note(&format!("alert {} from {}", alert.name, alert.source));
            self.record(DrillEntry::Alert(alert))?;
        }
        Ok(())
    }

    fn results(&self, until: Timestamp) -> Vec<ExpectationResult> {
        let mut results = Vec::new();
        for detonation in &self.drill().spec.detonations {
            let detonated = self
                .state
                .detonations
                .iter()
                .find(|d| d.id == detonation.id);
            for expectation in &detonation.expect {
                let (verdict, matched, detail) = score::classify(
                    expectation,
                    detonated,
                    &self.state.alerts,
                    &self.stage.run,
                    until,
                );
                let (detect, notify) = match (&matched, detonated) {
                    (Some(alert), Some(d))
                        if verdict.passed() || verdict == score::Verdict::Late =>
                    {
                        (
                            alert.event_time.map(|t| score::seconds(d.at, t)),
                            Some(score::seconds(d.at, alert.received_at)),
                        )
                    }
                    _ => (None, None),
                };
                results.push(ExpectationResult {
                    detonation: detonation.id.clone(),
                    pattern: detonation.abuse.name().into(),
                    phase: detonation.phase,
                    alert: expectation.alert().into(),
                    within_seconds: expectation.within_seconds,
                    weight: expectation.weight,
                    verdict,
                    time_to_detect_seconds: detect,
                    time_to_notify_seconds: notify,
                    matched,
                    detail,
                    guardrail: score::guardrail(detonation.abuse.name(), verdict),
                });
            }
        }
        results
    }

    /// Waits until every expectation is met or past its deadline; with `first`, only until
    /// the first expected alert arrives (containment starts then: its time is not spent
    /// waiting for the other detonations' windows).
    async fn detect(&mut self, first: bool) -> Result<(), Failure> {
        let deadline = self
            .drill()
            .spec
            .detonations
            .iter()
            .filter_map(|d| {
                let at = self.state.detonations.iter().find(|x| x.id == d.id)?.at;
                let longest = d.expect.iter().map(|e| e.within_seconds).max()?;
                Some(at + jiff::SignedDuration::from_secs(longest as i64))
            })
            .max();
        loop {
            self.check_abort()?;
            self.pull().await;
            self.take_new_alerts()?;
            let now = Timestamp::now();
            let results = self.results(now);
            let pending = results
                .iter()
                .filter(|r| {
                    matches!(
                        r.verdict,
                        score::Verdict::Missed | score::Verdict::Unattributed
                    )
                })
                .count();
            let arrived = results.iter().any(|r| r.matched.is_some());
            if pending == 0 || (first && arrived) || deadline.is_none_or(|d| now >= d) {
                return Ok(());
            }
            // Pushed alerts are looked at four times a second; pulls keep their own pace.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A token for each decoy whose account a `revoked` post-condition judges, minted before
    /// containment: what an attacker would hold. A decoy whose token cannot be minted is
    /// judged without one (the check then says so).
    async fn mint_canaries(&mut self) {
        for condition in &self.drill().spec.verify {
            let super::spec::PostCondition::Revoked { decoy } = condition else {
                continue;
            };
            let account = ObjectRef::new(
                "ServiceAccount",
                Some(&self.stage.namespace),
                &self.stage.object_name(decoy),
            );
            if let Ok(token) = self.stage.cluster.request_token(&account, 3600, None).await {
                self.canaries.insert(decoy.clone(), token);
            }
        }
    }

    /// The containment playbook through the same engine and journal as `contain run`.
    async fn contain(&mut self) -> Result<(), Failure> {
        let Some(spec) = &self.drill().spec.contain else {
            return Ok(());
        };
        if self.state.contain_code.is_some() {
            return Ok(());
        }
        let inner = self.ctx.inner();
        let mut options = SessionOptions::unattended();
        if let Some(run) = self.state.contain_run.clone() {
            // Killed before its journal existed, or before its plan was journaled, the run
            // wrote nothing: start a new one, which takes over the locks the killed one may
            // already have taken.
            let resumed = if inner.run_recorded(&run) {
                self.enter("contain", &format!("resuming containment run {run}"))?;
                self.progress.settle();
                let session =
                    Session::new(&inner, self.stage.cluster, SessionOptions::unattended());
                match Recorded::open(&inner, &run) {
                    Ok(recorded) => Some(session.resume(recorded).await),
                    Err(e) => Some(Err(e)),
                }
            } else {
                None
            };
            let resumed = resumed.filter(|r| !matches!(r, Err(CommandError::NeverStarted(_))));
            if let Some(result) = resumed {
                let code = ended(result);
                self.record(DrillEntry::Contained {
                    code,
                    at: Timestamp::now(),
                })?;
                return Ok(());
            }
            options.lock.take_over_from.push(run);
        }
        if spec.after_detection
            && !self
                .results(Timestamp::now())
                .iter()
                .any(|r| r.verdict.passed() || r.verdict == score::Verdict::Late)
        {
            self.progress.note(
                "containment skipped: it waits for a detection (after_detection), and none came",
            );
            return Ok(());
        }
        let Some(playbook) = &self.loaded.playbook else {
            return Ok(());
        };
        let params = self.playbook_params(&spec.params).await?;
        if self.state.baseline.is_none() {
            let objects = super::verify::baseline(&self.stage).await?;
            self.record(DrillEntry::Baseline { objects })?;
        }
        self.mint_canaries().await;
        let run = new_run_id();
        self.enter(
            "contain",
            &format!("{} as run {run}", playbook.playbook.metadata.name),
        )?;
        self.progress.settle();
        self.record(DrillEntry::Contain {
            run: run.clone(),
            at: Timestamp::now(),
        })?;
        let bound = crate::playbook::load::bind_params(playbook, &params).map_err(|reports| {
            let text: Vec<String> = reports.iter().map(|r| r.render(false)).collect();
            Failure::Error(format!(
                "the containment playbook's params: {}",
                text.join("; ")
            ))
        })?;
        let path = self.drill_dir().join(&spec.playbook);
        let result = Session::new(&inner, self.stage.cluster, options)
            .run(&run, &path, playbook, bound)
            .await;
        let code = ended(result);
        self.record(DrillEntry::Contained {
            code,
            at: Timestamp::now(),
        })?;
        Ok(())
    }

    fn drill_dir(&self) -> PathBuf {
        self.loaded
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }

    /// `--set` assignments from the drill's params, their templates filled in from the run.
    async fn playbook_params(
        &self,
        params: &indexmap::IndexMap<String, Value>,
    ) -> Result<Vec<String>, String> {
        let mut decoys = Map::new();
        for decoy in &self.drill().spec.decoys {
            let pod = super::stage::decoy_pod(&self.stage, &decoy.name)
                .await
                .unwrap_or_default();
            let name = self.stage.object_name(&decoy.name);
            decoys.insert(
                decoy.name.clone(),
                json!({"pod": pod, "deployment": name, "service_account": name}),
            );
        }
        let context = json!({
            "run": {"id": self.stage.run.run_id, "namespace": self.stage.namespace, "prefix": self.stage.run.prefix},
            "decoys": decoys,
        });
        params
            .iter()
            .map(|(name, value)| {
                let text = match value {
                    Value::String(s) => fill(s, &context)?,
                    Value::Array(items) => items
                        .iter()
                        .map(|i| match i {
                            Value::String(s) => fill(s, &context),
                            other => Ok(other.to_string()),
                        })
                        .collect::<Result<Vec<_>, _>>()?
                        .join(","),
                    other => other.to_string(),
                };
                Ok(format!("{name}={text}"))
            })
            .collect()
    }

    /// revert → cleanup → report, whatever happened before.
    async fn wind_down(&mut self) -> u8 {
        if let Err(e) = self.revert().await {
            self.state.errors.push(e);
        }
        if self.state.cleaned.is_none() {
            let _ = self.enter(
                "cleanup",
                &format!(
                    "deleting everything labelled {}={}",
                    super::types::RUN_LABEL,
                    self.stage.run.run_id
                ),
            );
            let leftovers = self
                .stage
                .tear_down(Duration::from_secs(
                    self.drill().spec.timing.cleanup_seconds,
                ))
                .await;
            for left in &leftovers {
                self.progress.note(&format!("left behind: {left}"));
            }
            if let Err(e) = self.record(DrillEntry::Cleaned {
                leftovers,
                at: Timestamp::now(),
            }) {
                self.state.errors.push(e);
            }
        }
        self.finish_report().await
    }

    async fn revert(&mut self) -> Result<(), String> {
        let Some(run) = self.state.contain_run.clone() else {
            return Ok(());
        };
        if self.state.revert_code.is_some() {
            return Ok(());
        }
        self.enter("revert", &format!("rolling back containment run {run}"))?;
        self.progress.settle();
        let started = Timestamp::now();
        let inner = self.ctx.inner();
        // A run that never started (killed before its journal, or its plan, was written) has
        // nothing to undo.
        let code = if inner.run_recorded(&run) {
            let session = Session::new(&inner, self.stage.cluster, SessionOptions::unattended());
            match Recorded::open(&inner, &run) {
                Ok(recorded) => ended(session.rollback(recorded, None).await),
                Err(CommandError::NeverStarted(_)) => 0,
                Err(e) => ended(Err(e)),
            }
        } else {
            0
        };
        // Restored is read from the cluster, not taken from the rollback's exit code.
        let differences = match &self.state.baseline {
            Some(before) => match super::verify::baseline(&self.stage).await {
                Ok(after) => super::verify::differences(before, &after),
                Err(e) => vec![format!("cannot tell: {e}")],
            },
            None => vec!["no baseline was read before containment: cannot tell".into()],
        };
        for difference in &differences {
            self.progress.note(&format!("not restored: {difference}"));
        }
        self.record(DrillEntry::Reverted {
            code,
            started,
            at: Timestamp::now(),
            differences,
        })
    }

    async fn finish_report(&mut self) -> u8 {
        let _ = self.enter("report", "scoring and writing the reports");
        let now = Timestamp::now();
        // Alerts count until the report: containment starts at the first expected alert, and
        // the others are still awaited within their own windows after it.
        let detection_end = now;
        let expectations = self.results(detection_end);
        let (score_value, coverage) = score::score(&expectations);
        let matched: Vec<Alert> = expectations
            .iter()
            .filter_map(|e| e.matched.clone())
            .collect();
        let noise = score::noise(self.drill(), &self.state.alerts, &matched, &self.stage.run);
        let first = |f: fn(&ExpectationResult) -> Option<f64>| {
            expectations.iter().filter_map(f).reduce(f64::min)
        };
        let first_receipt = expectations
            .iter()
            .filter(|e| e.verdict.passed() || e.verdict == score::Verdict::Late)
            .filter_map(|e| e.matched.as_ref().map(|a| a.received_at))
            .min();
        let times = Times {
            time_to_detect_seconds: first(|e| e.time_to_detect_seconds),
            time_to_notify_seconds: first(|e| e.time_to_notify_seconds),
            time_to_contain_seconds: match (first_receipt, self.state.contained_at) {
                (Some(receipt), Some(contained)) => Some(score::seconds(receipt, contained)),
                _ => None,
            },
            time_to_restore_seconds: match (self.state.revert_started, self.state.reverted_at) {
                (Some(s), Some(e)) => Some(score::seconds(s, e)),
                _ => None,
            },
        };
        let slo = &self.drill().spec.slo;
        let mut breaches = Vec::new();
        let mut breach = |name: &str, limit: Option<f64>, value: Option<f64>| {
            if let (Some(limit), Some(value)) = (limit, value)
                && value > limit
            {
                breaches.push(format!("{name} {value:.1} s exceeds the SLO of {limit} s"));
            }
        };
        breach(
            "time to detect",
            slo.time_to_detect_seconds,
            times.time_to_detect_seconds,
        );
        breach(
            "time to contain",
            slo.time_to_contain_seconds,
            times.time_to_contain_seconds,
        );
        breach(
            "time to restore",
            slo.time_to_restore_seconds,
            times.time_to_restore_seconds,
        );
        if let Some(min) = slo.min_score
            && score_value < min
        {
            breaches.push(format!("score {score_value} is below the SLO of {min}"));
        }
        let leftovers = self
            .state
            .cleaned
            .clone()
            .unwrap_or_else(|| vec!["cleanup did not run".into()]);
        let revert_failed = self.state.contain_run.is_some()
            && (self.state.revert_code != Some(0) || !self.state.restore_differences.is_empty());
        let any_error = expectations
            .iter()
            .any(|e| e.verdict == score::Verdict::Error)
            || !self.state.errors.is_empty();
        let failed = expectations.iter().any(|e| !e.verdict.passed())
            || self.state.verification.iter().any(|c| !c.passed)
            || self.state.contain_code.is_some_and(|c| c != 0)
            || !breaches.is_empty();
        let (status, code) = if !leftovers.is_empty() || revert_failed {
            ("CLEANUP_INCOMPLETE", exit::CLEANUP_INCOMPLETE)
        } else if self.state.aborted.is_some() {
            ("ABORTED", exit::ERROR)
        } else if any_error {
            ("ERROR", exit::ERROR)
        } else if failed {
            ("FAILED", exit::FAILED)
        } else {
            ("PASSED", exit::PASSED)
        };
        let result = DrillResult {
            schema: score::REPORT_SCHEMA.into(),
            drill: self.drill().metadata.name.clone(),
            run: self.journal.run.clone(),
            namespace: self.stage.namespace.clone(),
            cluster: self.info.server.clone(),
            context: self.info.context.clone(),
            user: self.info.user.clone(),
            started_at: self.info.started_at,
            finished_at: now,
            status: status.into(),
            exit_code: code,
            score: score_value,
            times,
            detonations: self.state.detonations.clone(),
            expectations,
            coverage,
            noise,
            containment: Containment {
                playbook: self.drill().spec.contain.as_ref().map(|c| c.playbook.clone()),
                run: self.state.contain_run.clone(),
                exit_code: self.state.contain_code,
                rollback_exit_code: self.state.revert_code,
                restore_differences: self.state.restore_differences.clone(),
                skipped: (self.drill().spec.contain.is_some() && self.state.contain_run.is_none())
                    .then(|| "no detection came, and containment waits for one (after_detection), or the drill stopped first".to_string()),
            },
            verification: self.state.verification.clone(),
            slo_breaches: breaches,
            leftovers,
            aborted: self.state.aborted.clone(),
            errors: self.state.errors.clone(),
            timeline: self.state.timeline.clone(),
            refused_requests: self.inbox.refused(),
        };
        let root = journal_root(self.ctx);
        let previous = record::previous_results(&root, &result.drill, &result.run);
        let dir = self
            .options
            .report_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("drill-reports").join(&result.run));
        match super::report::write_all(&dir, &result, &previous, self.options.templates.as_deref())
        {
            Ok(written) => self.progress.note(&format!(
                "reports: {}, {}, {}",
                written.json.display(),
                written.markdown.display(),
                written.junit.display()
            )),
            Err(e) => {
                self.progress
                    .note(&format!("cannot write the reports: {e}"));
            }
        }
        if let Err(e) = self.publish(&result).await {
            self.progress
                .note(&format!("cannot publish the result to the cluster: {e}"));
        }
        if let Err(e) = self
            .journal
            .append(&DrillEntry::Result(Box::new(result.clone())))
        {
            ui::err_line(&format!("error: {e}"));
        }
        self.progress.finish();
        self.print_summary(&result);
        code
    }

    /// The result as a ConfigMap in the target namespace and an Event on it, so a scheduled
    /// drill's outcome is visible with kubectl.
    async fn publish(&self, result: &DrillResult) -> Result<(), String> {
        let namespace = &self.stage.target_namespace;
        let mut json = serde_json::to_string_pretty(result).map_err(|e| e.to_string())?;
        // A ConfigMap holds 1 MiB; the report rarely nears it, the file report is whole.
        json.truncate(crate::source::floor_char_boundary(&json, 900 * 1024));
        let name = format!("contain-drill-{}", short(&result.run));
        let config_map = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": {
                "app.kubernetes.io/managed-by": "contain-drill",
                "contain.dev/drill": result.drill,
                "contain.dev/drill-status": result.status.to_ascii_lowercase(),
            }},
            "data": {"report.json": json, "status": result.status, "score": result.score.to_string()},
        });
        let cluster = self.stage.cluster;
        match cluster.create(&config_map, WriteMode::Apply).await {
            Ok(_) | Err(ClusterError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        let passed = result.status == "PASSED";
        let now = Timestamp::now();
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            // Named after the run and the moment, as `generateName` would be (the run's Event
            // is written once; a resumed report writes its own).
            "metadata": {"name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Namespace", "name": namespace, "namespace": namespace},
            "reason": if passed { "DrillPassed" } else { "DrillFailed" },
            "message": format!("drill {} run {}: {} (score {}, exit {}); details in ConfigMap {name}", result.drill, result.run, result.status, result.score, result.exit_code),
            "type": if passed { "Normal" } else { "Warning" },
            "source": {"component": "contain-drill"},
            "firstTimestamp": now.to_string(),
            "lastTimestamp": now.to_string(),
            "count": 1,
        });
        cluster
            .create(&event, WriteMode::Apply)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn print_summary(&self, result: &DrillResult) {
        if !self.ctx.text() {
            ui::print_output(
                &serde_json::to_value(result).unwrap_or(Value::Null),
                self.ctx.output,
            );
            return;
        }
        let secs = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1} s"));
        ui::out_line(&format!(
            "drill {} run {}: {} (score {})",
            result.drill, result.run, result.status, result.score
        ));
        for e in &result.expectations {
            ui::out_line(&format!(
                "  {:<13} {} {} → {}",
                format!("{:?}", e.verdict).to_uppercase(),
                e.detonation,
                e.alert,
                crate::escape::sanitize(&e.detail)
            ));
        }
        ui::out_line(&format!(
            "  detect {}  notify {}  contain {}  restore {}",
            secs(result.times.time_to_detect_seconds),
            secs(result.times.time_to_notify_seconds),
            secs(result.times.time_to_contain_seconds),
            secs(result.times.time_to_restore_seconds)
        ));
        for left in &result.leftovers {
            ui::out_line(&format!("  LEFT BEHIND {}", crate::escape::sanitize(left)));
        }
    }
}

/// A drill phase stopped: by the kill switch, or by an error.
enum Failure {
    Stopped(Stop),
    Error(String),
}

struct Stop(String);

impl From<Stop> for Failure {
    fn from(stop: Stop) -> Self {
        Failure::Stopped(stop)
    }
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Failure::Error(error)
    }
}

/// Fills `{{ a.b.c }}` in a param from the run's values; an unknown name is an error.
fn fill(text: &str, context: &Value) -> Result<String, String> {
    let pattern = regex::Regex::new(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}").expect("pattern compiles");
    let mut missing = None;
    let filled = pattern.replace_all(text, |caps: &regex::Captures| {
        let path = format!("/{}", caps[1].replace('.', "/"));
        match context.pointer(&path) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => {
                missing = Some(caps[1].to_string());
                String::new()
            }
        }
    });
    match missing {
        Some(name) => Err(format!(
            "`{name}` in a containment param is not a run value (run.id, run.namespace, run.prefix, decoys.<name>.pod|deployment|service_account)"
        )),
        None => Ok(filled.into_owned()),
    }
}

/// The code a containment run (or its rollback) ended with, as the drill's journal records it;
/// an error is shown first, in the drill's output, as the command would have shown it.
fn ended(result: crate::cmd::CommandResult) -> u8 {
    match result {
        Ok(status) => status.exit_code(),
        Err(error) => {
            ui::print_error(&error, crate::cli::Output::Text);
            error.exit_code()
        }
    }
}
