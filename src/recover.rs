//! Journaled live runs and what the journal makes possible afterwards: `resume`, `rollback`
//! and `journal ls|show|export|verify`.

use std::io::IsTerminal;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::app::{
    Reporting, TerminalApprover, confirm, connect, load_playbook, load_with_params, playbook_path,
    print_output, run_error,
};
use crate::cli::{Global, JournalCommand, Output, PlaybookArgs, RunArgs};
use crate::cluster::Cluster;
use crate::cluster::kube::KubeCluster;
use crate::event::Outcome;
use crate::execute::{Approver, AutoApprove, Executor, Mode, RunConfig};
use crate::exit;
use crate::journal::{self, RunInfo, RunJournal, RunState};
use crate::notify::{Notice, Notifier, NotifyOptions, RunContext};
use crate::plan::{RunPlan, display};
use crate::playbook::load::Loaded;
use crate::run_lock::{self, LockOptions, TargetLocks};

fn journal_root(global: &Global) -> std::path::PathBuf {
    global
        .journal
        .clone()
        .unwrap_or_else(crate::paths::journal_root)
}

/// Whether the journal holds `run` at all (a run killed before its header was written does
/// not appear; it wrote nothing, though it may have taken its targets' locks).
pub fn run_recorded(global: &Global, run: &str) -> bool {
    journal::run_ids(&journal_root(global))
        .iter()
        .any(|id| id == run)
}

fn open_run(global: &Global, run: &str) -> Result<::journal::Journal, u8> {
    journal::open_run(
        &journal_root(global),
        run,
        std::time::Duration::from_secs(5),
    )
    .map_err(|e| {
        eprintln!("error: {e}");
        match e {
            ::journal::JournalError::UnknownRun(_) => exit::INVALID_INPUT,
            _ => exit::JOURNAL,
        }
    })
}

/// Where a live run's evidence goes (`--evidence`, else beside the journal), and whom it is
/// attributed to.
fn evidence_config(
    global: &Global,
    cluster_id: &str,
    collector: &str,
) -> crate::evidence::EvidenceConfig {
    crate::evidence::EvidenceConfig {
        root: global
            .evidence
            .clone()
            .unwrap_or_else(crate::paths::evidence_root),
        cluster_id: cluster_id.to_string(),
        collector: collector.to_string(),
        signing_key: global.evidence_key.clone(),
    }
}

/// The cluster's identity, or the exit code for not getting it.
async fn identity(cluster: &KubeCluster) -> Result<String, u8> {
    cluster.identity().await.map_err(|e| {
        eprintln!("error: cannot read the cluster's identity (the kube-system namespace uid): {e}");
        exit::CLUSTER
    })
}

/// A live run: the whole playbook planned and shown, approved (or `--yes`), then the approved
/// plan journaled (header and plan durable before the first write) and applied exactly.
///
/// The run id is the caller's: a drill journals it before the run starts, so its cleanup can
/// always find and roll back the run.
pub async fn journaled_live(
    run_id: &str,
    path: &Path,
    loaded: &Loaded,
    params: Map<String, Value>,
    global: &Global,
    cluster: &KubeCluster,
    options: &LiveOptions,
) -> u8 {
    let config = RunConfig::new(run_id, Mode::Live, params, &playbook_path(path));
    let mut reporting = Reporting::new(global, Mode::Live);
    let planned = {
        let mut sinks = reporting.sinks(None);
        let mut approve = AutoApprove;
        let mut executor = Executor::new(cluster, &mut sinks, &mut approve);
        match executor.plan(loaded, &config).await {
            Ok(Ok(plan)) => Ok(Ok(plan)),
            Ok(Err(refused)) => executor.finish(&refused).map(|()| Err(refused)),
            Err(e) => return run_error(&e),
        }
    };
    let plan = match planned {
        Ok(Ok(plan)) => plan,
        Ok(Err(_)) => return reporting.report(global, Mode::Live, None),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::JOURNAL;
        }
    };
    if !options.yes && !confirm(&format!("apply this plan to {}?", cluster.info().server)) {
        eprintln!("not confirmed; nothing was written");
        return exit::REFUSED;
    }
    apply_journaled(
        loaded,
        &plan,
        config,
        global,
        cluster,
        &mut reporting,
        options,
    )
    .await
}

/// Takes the targets' locks, records a new run (header, then the approved plan with the first
/// executor event) and applies the plan.
async fn apply_journaled(
    loaded: &Loaded,
    plan: &RunPlan,
    config: RunConfig,
    global: &Global,
    cluster: &KubeCluster,
    reporting: &mut Reporting,
    options: &LiveOptions,
) -> u8 {
    let lock = &options.lock;
    let cluster_id = match identity(cluster).await {
        Ok(id) => id,
        Err(code) => return code,
    };
    // Who ran it, as the API server sees it; a cluster that cannot say is still usable.
    let user = cluster
        .whoami()
        .await
        .map(|u| u.username)
        .unwrap_or_else(|_| "unknown".into());
    let locks = match take_locks(cluster, plan, &config.run_id, &user, lock).await {
        Ok(locks) => locks,
        Err(code) => return code,
    };
    let info = RunInfo {
        playbook_path: plan.playbook.path.clone(),
        playbook_sha256: loaded.sha256.clone(),
        playbook_name: loaded.playbook.metadata.name.clone(),
        params: config.params.clone(),
        cluster_id,
        server: cluster.info().server,
        context: global.context.clone(),
        user,
        mode: Mode::Live.as_str().to_string(),
        started_at: jiff::Timestamp::now().to_string(),
        locks: locks.records(lock.steal.as_deref()),
    };
    let config = RunConfig {
        halt: Some(locks.halt()),
        run_timeout: global.run_timeout,
        ..config
    };
    let code = apply_locked(
        loaded, plan, config, global, cluster, reporting, info, options,
    )
    .await;
    locks.release().await;
    say_throttled(cluster);
    code
}

/// Says when the API server throttled the run: a slow run then has a cause the responder sees.
fn say_throttled(cluster: &KubeCluster) {
    let throttled = cluster.throttled();
    if throttled > 0 {
        eprintln!(
            "note: the API server throttled {throttled} call(s) with 429 Too Many Requests (API Priority and Fairness); each was retried after the server's Retry-After"
        );
    }
}

/// How a live run (or its resume, or its rollback) goes: unattended or not, its locks, and who
/// hears about it.
#[derive(Clone, Debug, Default)]
pub struct LiveOptions {
    pub yes: bool,
    pub lock: LockOptions,
    pub notify: NotifyOptions,
}

fn notifier(options: &LiveOptions, info: &RunInfo, run_id: &str) -> Notifier {
    Notifier::new(
        options.notify.clone(),
        RunContext {
            run: run_id.to_string(),
            playbook: info.playbook_name.clone(),
            cluster: info.server.clone(),
            user: info.user.clone(),
        },
    )
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
            eprintln!(
                "warning: could not notify {} ({}): {error}",
                delivery.channel, delivery.about
            );
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
            eprintln!("warning: could not journal a notification: {e}");
        }
    }
}

/// Takes the Lease of every target the plan writes to; a refusal names the holder and since
/// when, and nothing is written.
async fn take_locks(
    cluster: &KubeCluster,
    plan: &RunPlan,
    run_id: &str,
    user: &str,
    options: &LockOptions,
) -> Result<TargetLocks, u8> {
    let holder = run_lock::holder(run_id, user, options);
    match run_lock::take(cluster, plan, &holder, options).await {
        Ok(locks) => {
            for record in locks.records(options.steal.as_deref()) {
                if let Some(previous) = &record.stolen_from {
                    eprintln!(
                        "warning: took the lock on {} (Lease {}) from {} (holding it since {}): {}",
                        record.target,
                        record.lease,
                        previous.holder,
                        previous.since,
                        options.steal.as_deref().unwrap_or_default()
                    );
                }
            }
            Ok(locks)
        }
        Err(e @ crate::cluster::lease::LockError::Held { .. }) => {
            eprintln!("error: {e}");
            eprintln!(
                "another run is acting on this target; nothing was written. `--steal REASON` takes the lock anyway (recorded in the journal)."
            );
            Err(exit::LOCKED)
        }
        Err(e) => {
            eprintln!("error: cannot take the target's lock, so nothing was written: {e}");
            Err(exit::CLUSTER)
        }
    }
}

/// Records a new run (its header, `info`, names the locks held) and applies the plan.
#[allow(clippy::too_many_arguments)]
async fn apply_locked(
    loaded: &Loaded,
    plan: &RunPlan,
    config: RunConfig,
    global: &Global,
    cluster: &KubeCluster,
    reporting: &mut Reporting,
    info: RunInfo,
    options: &LiveOptions,
) -> u8 {
    let yes = options.yes;
    let notifier = notifier(options, &info, &config.run_id);
    let journal = match journal::open_new(&journal_root(global), &config.run_id) {
        Ok(journal) => journal,
        Err(e) => {
            eprintln!("error: cannot record the run: {e}");
            return exit::JOURNAL;
        }
    };
    let mut sink = match RunJournal::create(&journal, &config.run_id, &info) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("error: cannot record the run: {e}");
            return exit::JOURNAL;
        }
    };
    let config = RunConfig {
        evidence: Some(evidence_config(global, &info.cluster_id, &info.user)),
        ..config
    };
    let mut terminal = TerminalApprover;
    let mut plan = plan.clone();
    let mut config = config;
    loop {
        let approver: &mut dyn Approver = if yes { &mut AutoApprove } else { &mut terminal };
        let result = {
            let mut sinks = reporting.sinks(Some(&mut sink));
            Executor::new(cluster, &mut sinks, approver)
                .notifying(Some(&notifier))
                .apply(loaded, &plan, &config)
                .await
        };
        let result = match result {
            Ok(result) => result,
            Err(e) => return run_error(&e),
        };
        notify_run(&notifier, cluster, &mut sink, &result.outcome).await;
        let Outcome::Stale { step, .. } = &result.outcome else {
            return reporting.report(global, Mode::Live, Some(&plan));
        };
        // Interactively, the responder may re-plan the remaining steps against the cluster as
        // it is now, and approve again; unattended (`--yes`), a stale plan stops the run.
        let replanned = if yes {
            None
        } else {
            replan(loaded, &plan, step, &result, &config, cluster, reporting).await
        };
        let Some((new_plan, new_config)) = replanned else {
            let code = reporting.report(global, Mode::Live, Some(&plan));
            eprintln!(
                "the plan is stale: nothing of that step was written. Run the playbook again to plan against the cluster as it is now (`contain rollback {}` undoes the steps already applied).",
                config.run_id
            );
            return code;
        };
        let approved = {
            let mut sinks = reporting.sinks(Some(&mut sink));
            Executor::new(cluster, &mut sinks, &mut AutoApprove).approve(&new_plan)
        };
        if let Err(e) = approved {
            eprintln!("error: cannot record the run: {e}");
            return exit::JOURNAL;
        }
        plan = new_plan;
        config = new_config;
    }
}

/// Offers to re-plan the steps from the stale one on; `Some` with the new plan and the config
/// to apply it with once the responder approved it.
async fn replan(
    loaded: &Loaded,
    plan: &RunPlan,
    stale_step: &str,
    result: &crate::execute::RunResult,
    config: &RunConfig,
    cluster: &KubeCluster,
    reporting: &mut Reporting,
) -> Option<(RunPlan, RunConfig)> {
    if !confirm(&format!(
        "re-plan the steps from {stale_step} on against the cluster as it is now?"
    )) {
        return None;
    }
    // Re-planned from the playbook step the stale one plans (all of its parts, if it has any).
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
        Executor::new(cluster, &mut sinks, &mut approve)
            .plan(loaded, &replan_config)
            .await
    };
    let new_plan = match planned {
        Ok(Ok(new_plan)) => new_plan,
        Ok(Err(refused)) => {
            eprintln!("the re-plan was refused: {}", refused.describe());
            return None;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    if !confirm(&format!("apply the new plan from {stale_step} on?")) {
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

/// `contain run --plan FILE`: applies a saved plan exactly, after checking it was made from
/// this playbook, these params and this cluster.
pub async fn apply_saved_plan(path: &Path, args: &RunArgs, global: &Global) -> u8 {
    let plan: RunPlan = match std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {} is not a saved plan: {e}", path.display());
            return exit::INVALID_INPUT;
        }
    };
    if plan.format != crate::plan::run::FORMAT {
        eprintln!(
            "error: {} has plan format {}, this contain reads format {}",
            path.display(),
            plan.format,
            crate::plan::run::FORMAT
        );
        return exit::INVALID_INPUT;
    }
    let playbook = args
        .playbook
        .clone()
        .unwrap_or_else(|| plan.playbook.path.clone().into());
    let loaded = match load_playbook(&playbook, global) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if loaded.sha256 != plan.playbook.sha256 {
        eprintln!(
            "error: {} changed since the plan was made (sha256 {} then, {} now); refusing the saved plan",
            playbook.display(),
            plan.playbook.sha256,
            loaded.sha256
        );
        return exit::REFUSED;
    }
    if !args.set.is_empty() {
        let given = PlaybookArgs {
            playbook: playbook.clone(),
            set: args.set.clone(),
        };
        let params = match load_with_params(&given, global) {
            Ok((_, params)) => params,
            Err(code) => return code,
        };
        if params != plan.params {
            eprintln!(
                "error: the params given ({}) are not the plan's ({}); refusing the saved plan",
                Value::Object(params),
                Value::Object(plan.params.clone())
            );
            return exit::REFUSED;
        }
    }
    let cluster = match connect(global).await {
        Ok(cluster) => cluster,
        Err(code) => return code,
    };
    let id = match identity(&cluster).await {
        Ok(id) => id,
        Err(code) => return code,
    };
    if plan.cluster.id.as_deref() != Some(id.as_str()) {
        eprintln!(
            "error: the plan was made against another cluster ({}, kube-system uid {}); this cluster's is {id}. Refusing.",
            plan.cluster.server,
            plan.cluster.id.as_deref().unwrap_or("unknown")
        );
        return exit::REFUSED;
    }
    if journal::run_ids(&journal_root(global)).contains(&plan.run_id) {
        eprintln!(
            "error: this plan was already applied as run {} (see `contain journal show {}`); make a new plan",
            plan.run_id, plan.run_id
        );
        return exit::REFUSED;
    }
    print!("{}", crate::plan::display::render_run(&plan));
    if !args.yes
        && !confirm(&format!(
            "apply this saved plan to {}?",
            cluster.info().server
        ))
    {
        eprintln!("not confirmed; nothing was written");
        return exit::REFUSED;
    }
    let config = RunConfig::new(
        &plan.run_id,
        Mode::Live,
        plan.params.clone(),
        &plan.playbook.path,
    );
    let mut reporting = Reporting::new(global, Mode::Live);
    apply_journaled(
        &loaded,
        &plan,
        config,
        global,
        &cluster,
        &mut reporting,
        &crate::cli::live_options(args.yes, &args.lock, &args.notify),
    )
    .await
}

/// Reads a run and checks it belongs to the cluster we are connected to. A run with no
/// approved plan never started: `Err(NEVER_STARTED)`, said plainly.
async fn checked_run(
    run: &str,
    global: &Global,
    journal: &::journal::Journal,
) -> Result<(RunState, KubeCluster), u8> {
    let state = read_run(run, journal)?;
    if state.never_started() {
        println!("run {run} never started: no plan was approved, nothing was written");
        return Err(exit::NEVER_STARTED);
    }
    let cluster = connect(global).await?;
    let id = identity(&cluster).await?;
    if id != state.info.cluster_id {
        eprintln!(
            "error: run {run} was made on another cluster ({}, kube-system uid {}); this cluster's kube-system uid is {id}. Refusing.",
            state.info.server, state.info.cluster_id
        );
        return Err(exit::REFUSED);
    }
    Ok((state, cluster))
}

/// Reads a run's records; a run whose header never became durable never started.
fn read_run(run: &str, journal: &::journal::Journal) -> Result<RunState, u8> {
    RunState::read(journal, run).map_err(|e| match e {
        ::journal::JournalError::UnknownRun(_) => {
            println!("run {run} never started: nothing was recorded, nothing was written");
            exit::NEVER_STARTED
        }
        e => {
            eprintln!("error: {e}");
            exit::JOURNAL
        }
    })
}

fn refuse_unattended(yes: bool, what: &str) -> Option<u8> {
    if !yes && !std::io::stdin().is_terminal() {
        eprintln!("error: refusing to {what} without a terminal to confirm on; pass --yes");
        return Some(exit::REFUSED);
    }
    None
}

/// `contain resume RUN`: goes on applying the run's approved plan.
pub async fn resume(run: &str, options: &LiveOptions, global: &Global) -> u8 {
    let (yes, lock) = (options.yes, &options.lock);
    if let Some(code) = refuse_unattended(yes, "resume a run") {
        return code;
    }
    let journal = match open_run(global, run) {
        Ok(journal) => journal,
        Err(code) => return code,
    };
    let (state, cluster) = match checked_run(run, global, &journal).await {
        Ok(found) => found,
        Err(code) => return code,
    };
    if state.rolling_back() {
        eprintln!(
            "error: a rollback of run {run} has started; finish it with `contain rollback {run}`"
        );
        return exit::REFUSED;
    }
    if state.outcome().is_some_and(|o| o.is_success()) {
        println!("run {run} already finished successfully: nothing to resume");
        return exit::SUCCESS;
    }
    let Some(plan) = state.plan.clone() else {
        return exit::NEVER_STARTED;
    };
    let loaded = match load_playbook(Path::new(&state.info.playbook_path), global) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if loaded.sha256 != state.info.playbook_sha256 {
        eprintln!(
            "error: {} changed since run {run} started (sha256 {} then, {} now); refusing to resume with a different playbook",
            state.info.playbook_path, state.info.playbook_sha256, loaded.sha256
        );
        return exit::REFUSED;
    }
    let resume = state.resume();
    let next = plan
        .steps
        .iter()
        .filter(|s| s.plan().is_some())
        .find(|s| !resume.done.contains_key(&s.id))
        .map(|s| s.label());
    let Some(next) = next else {
        println!("run {run}: every step is done");
        return exit::SUCCESS;
    };
    if !yes
        && !confirm(&format!(
            "resume run {run} from {next} on {}?",
            cluster.info().server
        ))
    {
        eprintln!("not confirmed; nothing was written");
        return exit::REFUSED;
    }
    // The run's own Leases are taken over (a crash left them held); anyone else's refuse.
    let locks = match take_locks(&cluster, &plan, run, &state.info.user, lock).await {
        Ok(locks) => locks,
        Err(code) => return code,
    };
    let mut sink = RunJournal::reopen(&journal, run);
    let config = RunConfig {
        resume: Some(resume),
        halt: Some(locks.halt()),
        run_timeout: global.run_timeout,
        evidence: Some(evidence_config(
            global,
            &state.info.cluster_id,
            &state.info.user,
        )),
        ..RunConfig::new(
            run,
            Mode::Live,
            state.info.params.clone(),
            &state.info.playbook_path,
        )
    };
    let mut terminal = TerminalApprover;
    let approver: &mut dyn Approver = if yes { &mut AutoApprove } else { &mut terminal };
    let mut reporting = Reporting::new(global, Mode::Live);
    let notifier = notifier(options, &state.info, run);
    let result = {
        let mut sinks = reporting.sinks(Some(&mut sink));
        Executor::new(&cluster, &mut sinks, approver)
            .notifying(Some(&notifier))
            .apply(&loaded, &plan, &config)
            .await
    };
    let code = match result {
        Ok(result) => {
            notify_run(&notifier, &cluster, &mut sink, &result.outcome).await;
            reporting.report(global, Mode::Live, Some(&plan))
        }
        Err(e) => run_error(&e),
    };
    locks.release().await;
    say_throttled(&cluster);
    code
}

/// `contain report RUN`: the incident report, from the journal (whose hash chain is checked
/// first) and the evidence manifests it names.
pub fn report(
    run: &str,
    format: Option<crate::report::incident::Format>,
    out: Option<&Path>,
    templates: Option<&Path>,
    global: &Global,
) -> u8 {
    use crate::report::incident::{self, Format};
    let journal = match open_run(global, run) {
        Ok(journal) => journal,
        Err(code) => return code,
    };
    let read = RunState::read(&journal, run).and_then(|state| {
        let records = journal.records(run)?;
        let intact = journal.verify(run)?.is_intact();
        Ok((state, records, intact))
    });
    let (state, records, intact) = match read {
        Ok(read) => read,
        Err(e) => {
            eprintln!("error: cannot read run {run}: {e}");
            return exit::JOURNAL;
        }
    };
    let explicit = format.is_some();
    let format = format.unwrap_or(match global.output {
        Output::Json => Format::Json,
        _ => Format::Markdown,
    });
    let view = incident::build(&state, &records, intact);
    let rendered = match (format, global.output) {
        // `-o yaml` without --format: the report as data, in YAML.
        (_, Output::Yaml) if !explicit => serde_saphyr::to_string(&view).map_err(|e| e.to_string()),
        _ => incident::render_as(&view, format, templates),
    };
    let text = match rendered {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return exit::INVALID_INPUT;
            }
            eprintln!("report of run {run} written to {}", path.display());
        }
        None => print!("{text}"),
    }
    if intact { exit::SUCCESS } else { exit::JOURNAL }
}

/// `contain rollback RUN [--to STEP]`.
pub async fn rollback(run: &str, to: Option<&str>, options: &LiveOptions, global: &Global) -> u8 {
    let (yes, lock) = (options.yes, &options.lock);
    if let Some(code) = refuse_unattended(yes, "roll back a run") {
        return code;
    }
    let journal = match open_run(global, run) {
        Ok(journal) => journal,
        Err(code) => return code,
    };
    let (state, cluster) = match checked_run(run, global, &journal).await {
        Ok(found) => found,
        Err(code) => return code,
    };
    if let Some(step) = to
        && !state.steps.iter().any(|s| s.step == step)
    {
        let ids: Vec<&str> = state.steps.iter().map(|s| s.step.as_str()).collect();
        let hint = crate::diagnostics::did_you_mean(step, ids.iter().copied())
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_else(|| format!("; its steps: {}", ids.join(", ")));
        eprintln!("error: run {run} has no step `{step}`{hint}");
        return exit::INVALID_INPUT;
    }
    let mut plans = state.to_undo(to);
    if plans.is_empty() {
        println!("run {run}: nothing to roll back");
        return exit::SUCCESS;
    }
    println!("rollback of run {run} on {}:", cluster.info().server);
    for plan in plans.iter().rev() {
        println!("{}: {}", plan.step, crate::escape::sanitize(&plan.summary));
        match &plan.reversibility {
            crate::plan::Reversibility::Irreversible { reason } => {
                println!("    skipped: irreversible ({reason})")
            }
            crate::plan::Reversibility::Reversible | crate::plan::Reversibility::Partial { .. } => {
                if let crate::plan::Reversibility::Partial { reason } = &plan.reversibility {
                    println!("    partly: {reason}");
                }
                let mut text = String::new();
                for op in &plan.inverse {
                    display::render_op(&mut text, op, "    ");
                }
                print!("{text}");
            }
        }
    }
    if !yes && !confirm("apply this rollback?") {
        eprintln!("not confirmed; nothing was written");
        return exit::REFUSED;
    }
    // A rollback writes to the run's targets too: it takes (or takes over) their locks.
    let locks = match &state.plan {
        Some(plan) => match take_locks(&cluster, plan, run, &state.info.user, lock).await {
            Ok(locks) => Some(locks),
            Err(code) => return code,
        },
        None => None,
    };
    let config = RunConfig::new(
        run,
        Mode::Live,
        state.info.params.clone(),
        &state.info.playbook_path,
    );
    let mut sink = RunJournal::reopen(&journal, run);
    let mut reporting = Reporting::new(global, Mode::Live);
    let result = {
        let mut sinks = reporting.sinks(Some(&mut sink));
        let reason = match to {
            Some(step) => format!("rollback of run {run} to step {step}"),
            None => format!("rollback of run {run}"),
        };
        let mut approve = AutoApprove;
        let mut executor = Executor::new(&cluster, &mut sinks, &mut approve);
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
        let notifier = notifier(options, &state.info, run);
        notify_run(&notifier, &cluster, &mut sink, outcome).await;
    }
    if let Some(locks) = locks {
        locks.release().await;
    }
    if let Err(e) = result {
        eprintln!("error: {e}");
        return exit::JOURNAL;
    }
    reporting.report(global, Mode::Live, None)
}

/// `contain journal ls|show|export|verify`.
pub fn journal(command: &JournalCommand, global: &Global) -> u8 {
    let result = match command {
        JournalCommand::Ls => list(&journal_root(global), global),
        JournalCommand::Show { run }
        | JournalCommand::Export { run }
        | JournalCommand::Verify { run } => {
            let journal = match open_run(global, run) {
                Ok(journal) => journal,
                Err(code) => return code,
            };
            match command {
                JournalCommand::Show { .. } => show(&journal, run, global),
                JournalCommand::Export { .. } => export(&journal, run),
                _ => verify(&journal, run, global),
            }
        }
    };
    result.unwrap_or_else(|e| match e {
        // The run's store exists (open_run checked) but its header never became durable.
        ::journal::JournalError::UnknownRun(run) => {
            println!("run {run} never started: nothing was recorded, nothing was written");
            exit::NEVER_STARTED
        }
        e => {
            eprintln!("error: {e}");
            exit::JOURNAL
        }
    })
}

fn status_of(state: &RunState) -> String {
    if state.never_started() {
        return NEVER_STARTED.into();
    }
    match state.outcome() {
        Some(outcome) => outcome.describe(),
        None if state.rolling_back() => "rollback interrupted".into(),
        None => "interrupted".into(),
    }
}

/// How the journal names a run with no approved plan.
const NEVER_STARTED: &str = "never started, nothing written";

fn list(root: &Path, global: &Global) -> Result<u8, ::journal::JournalError> {
    let mut rows = Vec::new();
    for run in journal::run_ids(root) {
        // A run another process is writing right now cannot be opened: say so and go on.
        let state = journal::open_run(root, &run, std::time::Duration::ZERO)
            .and_then(|j| RunState::read(&j, &run));
        rows.push(match state {
            Ok(state) => json!({
                "run": run,
                "playbook": state.info.playbook_name,
                "status": status_of(&state),
                "user": state.info.user,
                "server": state.info.server,
                "started_at": state.info.started_at,
                "records": state.records,
            }),
            // The header of a run killed before it became durable: nothing was written.
            Err(::journal::JournalError::UnknownRun(_)) => {
                json!({"run": run, "playbook": "", "status": NEVER_STARTED, "user": "", "server": ""})
            }
            Err(e) => json!({"run": run, "playbook": "", "status": format!("unreadable: {e}"), "user": "", "server": ""}),
        });
    }
    if global.output != Output::Text {
        print_output(&Value::Array(rows), global.output);
        return Ok(exit::SUCCESS);
    }
    println!(
        "{:<26} {:<24} {:<14} {:<20} server",
        "run", "playbook", "status", "user"
    );
    for row in rows {
        println!(
            "{:<26} {:<24} {:<14} {:<20} {}",
            row["run"].as_str().unwrap_or_default(),
            row["playbook"].as_str().unwrap_or_default(),
            row["status"].as_str().unwrap_or_default(),
            row["user"].as_str().unwrap_or_default(),
            row["server"].as_str().unwrap_or_default()
        );
    }
    Ok(exit::SUCCESS)
}

fn show(
    journal: &::journal::Journal,
    run: &str,
    global: &Global,
) -> Result<u8, ::journal::JournalError> {
    let state = RunState::read(journal, run)?;
    if state.never_started() {
        println!("run {run} never started: no plan was approved, nothing was written");
        return Ok(exit::NEVER_STARTED);
    }
    if global.output != Output::Text {
        print_output(
            &serde_json::to_value(&state).unwrap_or(Value::Null),
            global.output,
        );
        return Ok(exit::SUCCESS);
    }
    println!(
        "run {run}: {} ({})",
        state.info.playbook_name,
        status_of(&state)
    );
    println!(
        "  playbook {} (sha256 {})",
        state.info.playbook_path, state.info.playbook_sha256
    );
    println!(
        "  cluster {} (kube-system uid {}), user {}",
        state.info.server, state.info.cluster_id, state.info.user
    );
    for step in &state.steps {
        let status = if let Some(outcome) = &step.rolled_back {
            format!("rollback: {}", outcome.describe())
        } else if let Some(changes) = &step.stale {
            format!("stale, not written: {}", changes.join("; "))
        } else if step.outputs.is_some() {
            "done".to_string()
        } else if let Some(error) = &step.failed {
            format!("failed: {error}")
        } else if let Some(reason) = &step.skipped {
            format!("skipped: {reason}")
        } else if step.intent {
            format!("interrupted after {} write(s)", step.applied)
        } else {
            "planned".to_string()
        };
        println!("\n{}: {}", step.step, crate::escape::sanitize(&status));
        if let Some(plan) = &step.plan {
            print!("{}", display::render_step(plan, true));
        }
    }
    Ok(exit::SUCCESS)
}

fn export(journal: &::journal::Journal, run: &str) -> Result<u8, ::journal::JournalError> {
    let header = journal.run(run)?;
    println!(
        "{}",
        crate::escape::inert_json(serde_json::to_string(&header).unwrap_or_default())
    );
    for record in journal.records(run)? {
        println!(
            "{}",
            crate::escape::inert_json(serde_json::to_string(&record).unwrap_or_default())
        );
    }
    Ok(exit::SUCCESS)
}

fn verify(
    journal: &::journal::Journal,
    run: &str,
    global: &Global,
) -> Result<u8, ::journal::JournalError> {
    let verification = journal.verify(run)?;
    if global.output != Output::Text {
        print_output(
            &serde_json::to_value(&verification).unwrap_or(Value::Null),
            global.output,
        );
    } else if verification.is_intact() {
        println!("run {run}: {} records, chain intact", verification.records);
    } else {
        for problem in &verification.problems {
            println!("run {run}: {problem}");
        }
    }
    if !verification.is_intact() {
        return Ok(exit::JOURNAL);
    }
    // An intact chain without an approved plan is a run that never started.
    if RunState::read(journal, run)?.never_started() {
        println!("run {run} never started: no plan was approved, nothing was written");
        return Ok(exit::NEVER_STARTED);
    }
    Ok(exit::SUCCESS)
}

/// `contain evidence verify DIR`: every bundle at or below DIR, re-hashed; each manifest's
/// sha256 compared with the one the journal recorded when the run is in the journal.
pub fn verify_evidence(dir: &Path, trusted_keys: &[std::path::PathBuf], global: &Global) -> u8 {
    let mut trusted = Vec::new();
    for path in trusted_keys {
        match crate::sshsig::read_public_keys(path) {
            Ok(keys) => trusted.extend(keys),
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INVALID_INPUT;
            }
        }
    }
    let trusted = (!trusted_keys.is_empty()).then_some(trusted.as_slice());
    let bundles = match crate::evidence::bundles(dir) {
        Ok(bundles) => bundles,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    let mut intact = true;
    let mut reports = Vec::new();
    for bundle in bundles {
        let check = match crate::evidence::verify(&bundle, trusted) {
            Ok(check) => check,
            Err(e) => {
                eprintln!("error: {e}");
                intact = false;
                continue;
            }
        };
        let journal = journal_manifest_hash(&bundle, global);
        let journal_matches = journal
            .as_ref()
            .map(|recorded| recorded == &check.manifest_sha256);
        intact &= check.intact() && journal_matches != Some(false);
        if global.output == Output::Text {
            let verdict = if check.intact() { "intact" } else { "ALTERED" };
            println!("{}: {} artifacts, {verdict}", check.dir, check.artifacts);
            for (what, files) in [
                ("changed", &check.changed),
                ("vanished", &check.vanished),
                ("appeared", &check.appeared),
            ] {
                for file in files {
                    println!("  {what}: {}", crate::escape::sanitize(file));
                }
            }
            if let Some(signature) = &check.signature {
                println!("  signature: {}", signature.detail);
            }
            match journal_matches {
                Some(true) => println!(
                    "  manifest sha256 {} matches the journal",
                    check.manifest_sha256
                ),
                Some(false) => println!(
                    "  manifest sha256 {} does NOT match the journal ({})",
                    check.manifest_sha256,
                    journal.clone().unwrap_or_default()
                ),
                None => println!(
                    "  manifest sha256 {} (run not in this journal: not cross-checked)",
                    check.manifest_sha256
                ),
            }
        }
        reports.push(json!({"bundle": check, "journal_manifest_sha256": journal, "matches_journal": journal_matches}));
    }
    if global.output != Output::Text {
        print_output(&Value::Array(reports), global.output);
    }
    if intact {
        exit::SUCCESS
    } else {
        exit::VERIFY_FAILED
    }
}

/// The manifest sha256 the journal recorded for a bundle's step, if the run is there.
fn journal_manifest_hash(bundle: &Path, global: &Global) -> Option<String> {
    let (manifest, _) = crate::evidence::read_manifest(bundle).ok()?;
    let journal = journal::open_run(
        &journal_root(global),
        &manifest.run_id,
        std::time::Duration::from_secs(5),
    )
    .ok()?;
    let state = RunState::read(&journal, &manifest.run_id).ok()?;
    let step = state.steps.iter().find(|s| s.step == manifest.step)?;
    step.outputs
        .as_ref()?
        .get("manifest_sha256")?
        .as_str()
        .map(str::to_string)
}
