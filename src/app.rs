//! Command dispatch: turns a parsed command line into stages, and every error into one of the
//! documented exit codes.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::action;
use crate::cli::{Cli, Command, Global, Output, PlaybookArgs, RunArgs, live_options};
use crate::cluster::Cluster;
use crate::cluster::kube::{Connect, KubeCluster};
use crate::cluster::overlay::Overlay;
use crate::cluster::sim::SimCluster;
use crate::diagnostics::Report;
use crate::event::{EventSink, Fanout, Outcome, Recorder};
use crate::execute::{Approver, AutoApprove, Executor, Mode, RunConfig, RunError};
use crate::exit;
use crate::plan::RunPlan;
use crate::playbook::load::{self, LoadError, Loaded};
use crate::playbook::validate::playbook_schema;
use crate::report::progress::ProgressPrinter;
use crate::report::summary::RunSummary;
use crate::source::Source;
use crate::yaml::node::Limits;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let matches = Cli::command().after_help(exit::help_text()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli)))
}

/// A closed standard output (`contain tabletop … | head`) ends the process quietly, as it does
/// other Unix tools, instead of a panic on the failed write.
fn quiet_on_closed_pipe() {
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts; no
    // handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

async fn dispatch(cli: Cli) -> u8 {
    let global = &cli.global;
    match &cli.command {
        Command::Validate { playbooks, set } => validate(playbooks, set, global),
        Command::Plan {
            playbook,
            snapshot,
            out,
        } => match snapshot_or_live(snapshot.as_deref(), global).await {
            Ok(cluster) => {
                run_playbook(
                    playbook,
                    global,
                    cluster.as_ref(),
                    Mode::Plan,
                    out.as_deref(),
                )
                .await
            }
            Err(code) => code,
        },
        Command::Tabletop { playbook, snapshot } => match load_snapshot(snapshot, global) {
            Ok(sim) => run_playbook(playbook, global, &sim, Mode::Tabletop, None).await,
            Err(code) => code,
        },
        Command::Run(args) => live(args, global).await,
        Command::Drill(args) => crate::drill::command(args, global).await,
        Command::Exercise(args) => crate::exercise::command(args, global).await,
        Command::Snapshot { file } => snapshot(file.as_deref(), global).await,
        Command::Rbac {
            playbook,
            snapshot,
            name,
        } => rbac(playbook, snapshot.as_deref(), name.as_deref(), global).await,
        Command::ExplainAccess { pod, snapshot } => {
            explain_access(pod, snapshot.as_deref(), global).await
        }
        Command::Resume {
            run,
            yes,
            lock,
            notify,
        } => crate::recover::resume(run, &live_options(*yes, lock, notify), global).await,
        Command::Rollback {
            run,
            to,
            yes,
            lock,
            notify,
        } => {
            let options = live_options(*yes, lock, notify);
            crate::recover::rollback(run, to.as_deref(), &options, global).await
        }
        Command::Report {
            run,
            format,
            out,
            templates,
        } => crate::recover::report(run, *format, out.as_deref(), templates.as_deref(), global),
        Command::Journal { command } => crate::recover::journal(command, global),
        Command::Evidence {
            command: crate::cli::EvidenceCommand::Verify { dir, trusted_key },
        } => crate::recover::verify_evidence(dir, trusted_key, global),
        Command::VerifyImage {
            image,
            keys,
            registry_config,
        } => verify_image(image, keys, registry_config.as_deref(), global).await,
        Command::Schema => print_schema(&playbook_schema(), global),
        Command::ExitCodes => {
            if global.output == Output::Text {
                print!("{}", exit::help_text());
            } else {
                let table: Vec<Value> = exit::TABLE
                    .iter()
                    .map(|(code, meaning)| json!({"code": code, "meaning": meaning}))
                    .collect();
                print_output(&Value::Array(table), global.output);
            }
            exit::SUCCESS
        }
        Command::Actions { name } => actions(name.as_deref(), global),
        Command::Man => {
            print!("{}", crate::man::page(Cli::command()));
            exit::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "contain",
                &mut std::io::stdout(),
            );
            exit::SUCCESS
        }
    }
}

pub(crate) fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub(crate) fn print_reports(reports: &[Report], global: &Global) {
    if global.output == Output::Text {
        for report in reports {
            eprint!("{}", report.render(color()));
        }
    } else {
        let all: Vec<Value> = reports
            .iter()
            .flat_map(|r| r.to_json().as_array().cloned().unwrap_or_default())
            .collect();
        print_output(&json!({"valid": false, "problems": all}), global.output);
    }
}

pub(crate) fn print_output(value: &Value, output: Output) {
    let text = match output {
        Output::Yaml => serde_saphyr::to_string(value)
            .unwrap_or_else(|e| format!("# cannot render YAML: {e}\n")),
        _ => {
            crate::escape::inert_json(serde_json::to_string_pretty(value).unwrap_or_default())
                + "\n"
        }
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// A JSON schema: JSON (what the shipped schema files hold), or YAML with `-o yaml`.
pub(crate) fn print_schema(schema: &Value, global: &Global) -> u8 {
    let output = match global.output {
        Output::Yaml => Output::Yaml,
        _ => Output::Json,
    };
    print_output(schema, output);
    exit::SUCCESS
}

/// Loads a playbook, reporting problems; `Err` carries the exit code.
pub(crate) fn load_playbook(path: &Path, global: &Global) -> Result<Loaded, u8> {
    match load::load_file(path) {
        Ok(loaded) => Ok(loaded),
        Err(LoadError::Invalid(report)) => {
            print_reports(&[report], global);
            Err(exit::INVALID_INPUT)
        }
        Err(e @ LoadError::Io { .. }) => {
            eprintln!("error: {e}");
            Err(exit::INVALID_INPUT)
        }
    }
}

/// `--set` values, plus `-n` as the `namespace` param when the playbook has one.
fn assignments(loaded: &Loaded, args: &PlaybookArgs, global: &Global) -> Vec<String> {
    let mut set = args.set.clone();
    if let Some(ns) = &global.namespace
        && loaded.playbook.params.contains_key("namespace")
        && !set.iter().any(|s| s.starts_with("namespace="))
    {
        set.push(format!("namespace={ns}"));
    }
    set
}

fn validate(paths: &[std::path::PathBuf], set: &[String], global: &Global) -> u8 {
    let mut code = exit::SUCCESS;
    let mut results = Vec::new();
    for path in paths {
        let loaded = match load::load_file(path) {
            Ok(loaded) => loaded,
            Err(LoadError::Invalid(report)) => {
                if global.output == Output::Text {
                    eprint!("{}", report.render(color()));
                }
                results.push(json!({"file": path.display().to_string(), "valid": false, "problems": report.to_json()}));
                code = exit::INVALID_INPUT;
                continue;
            }
            Err(e) => {
                eprintln!("error: {e}");
                results.push(json!({"file": path.display().to_string(), "valid": false, "problems": [{"message": e.to_string()}]}));
                code = exit::INVALID_INPUT;
                continue;
            }
        };
        if !set.is_empty()
            && let Err(reports) = load::bind_params(&loaded, set)
        {
            if global.output == Output::Text {
                for report in &reports {
                    eprint!("{}", report.render(color()));
                }
            }
            let problems: Vec<Value> = reports
                .iter()
                .flat_map(|r| r.to_json().as_array().cloned().unwrap_or_default())
                .collect();
            results.push(
                json!({"file": path.display().to_string(), "valid": false, "problems": problems}),
            );
            code = exit::INVALID_INPUT;
            continue;
        }
        if global.output == Output::Text {
            println!(
                "{}: ok ({} steps)",
                path.display(),
                loaded.playbook.steps.len()
            );
        }
        results.push(json!({"file": path.display().to_string(), "valid": true, "steps": loaded.playbook.steps.len()}));
    }
    if global.output != Output::Text {
        print_output(&Value::Array(results), global.output);
    }
    code
}

pub(crate) fn load_snapshot(path: &Path, global: &Global) -> Result<SimCluster, u8> {
    let name = path.display().to_string();
    let bytes = crate::yaml::read_bounded(path, Limits::SNAPSHOT.max_bytes).map_err(|e| {
        eprintln!("error: cannot read snapshot {name}: {e}");
        exit::INVALID_INPUT
    })?;
    let text = crate::yaml::node::text_from_bytes(&name, bytes, Limits::SNAPSHOT).map_err(|e| {
        eprintln!("error: {e}");
        exit::INVALID_INPUT
    })?;
    SimCluster::load(&Source::new(name, text)).map_err(|report| {
        print_reports(&[report], global);
        exit::INVALID_INPUT
    })
}

/// The snapshot when one is given, else the live cluster; `Err` carries the exit code.
async fn snapshot_or_live(
    snapshot: Option<&Path>,
    global: &Global,
) -> Result<Box<dyn Cluster>, u8> {
    Ok(match snapshot {
        Some(path) => Box::new(load_snapshot(path, global)?),
        None => Box::new(connect(global).await?),
    })
}

pub(crate) async fn connect(global: &Global) -> Result<KubeCluster, u8> {
    connect_as(global, None).await
}

/// Connects with a User-Agent of our own (a drill's carries its run id).
pub(crate) async fn connect_as(
    global: &Global,
    user_agent: Option<String>,
) -> Result<KubeCluster, u8> {
    let options = Connect {
        kubeconfig: global.kubeconfig.clone(),
        context: global.context.clone(),
        call_timeout: Some(global.call_timeout),
        user_agent,
    };
    KubeCluster::connect(&options).await.map_err(|e| {
        eprintln!("error: {e}");
        exit::CLUSTER
    })
}

/// A time-sortable run id: UTC time to the millisecond, then 6 hex digits
/// (`20261127T031200123Z-4f2a1c`), so runs of the same second still list in order.
pub fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    let seed = format!(
        "{}-{}-{:?}",
        now.as_nanosecond(),
        std::process::id(),
        std::thread::current().id()
    );
    let digest = hex::encode(Sha256::digest(seed.as_bytes()));
    format!(
        "{}{:03}Z-{}",
        now.strftime("%Y%m%dT%H%M%S"),
        now.subsec_millisecond(),
        &digest[..6]
    )
}

/// Runs a playbook in one mode (plan, tabletop) and prints the outcome; returns the exit code.
async fn run_playbook(
    args: &PlaybookArgs,
    global: &Global,
    cluster: &dyn Cluster,
    mode: Mode,
    out: Option<&Path>,
) -> u8 {
    let (loaded, params) = match load_with_params(args, global) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let run_id = new_run_id();
    let config = RunConfig::new(&run_id, mode, params, &playbook_path(&args.playbook));
    let mut reporting = Reporting::new(global, mode);
    let result = {
        let mut sinks = reporting.sinks(None);
        Executor::new(cluster, &mut sinks, &mut AutoApprove)
            .run(&loaded, &config)
            .await
    };
    let result = match result {
        Ok(result) => result,
        Err(e) => return run_error(&e),
    };
    if let (Some(path), Some(plan)) = (out, &result.plan)
        && let Err(code) = save_plan(path, plan)
    {
        return code;
    }
    reporting.report(global, mode, result.plan.as_ref())
}

/// Loads the playbook and binds its params; `Err` carries the exit code (problems printed).
pub(crate) fn load_with_params(
    args: &PlaybookArgs,
    global: &Global,
) -> Result<(Loaded, Map<String, Value>), u8> {
    let loaded = load_playbook(&args.playbook, global)?;
    let params =
        load::bind_params(&loaded, &assignments(&loaded, args, global)).map_err(|reports| {
            print_reports(&reports, global);
            exit::INVALID_INPUT
        })?;
    Ok((loaded, params))
}

/// The playbook path a plan and the journal record: absolute, so `resume` finds it anywhere.
pub(crate) fn playbook_path(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The exit code of a run that could not start or go on, with its message printed.
pub(crate) fn run_error(error: &RunError) -> u8 {
    eprintln!("error: {error}");
    match error {
        RunError::Fact(crate::facts::FactError::Render(_)) => exit::INVALID_INPUT,
        RunError::Fact(_) | RunError::Preflight(_) => exit::CLUSTER,
        RunError::Sink(_) => exit::JOURNAL,
    }
}

/// The sinks every run reports through: a recorder (summary, JSON output) and, for text
/// output, the progress printer.
pub(crate) struct Reporting {
    recorder: Recorder,
    printer: ProgressPrinter,
    text: bool,
}

impl Reporting {
    pub(crate) fn new(global: &Global, mode: Mode) -> Self {
        let text = global.output == Output::Text;
        let animated = text && !global.no_progress && std::io::stderr().is_terminal();
        let mut printer = ProgressPrinter::new(animated);
        printer.verbose = global.verbose > 0;
        printer.show_inverse = mode != Mode::Live || global.verbose > 0;
        Reporting {
            recorder: Recorder::default(),
            printer,
            text,
        }
    }

    /// The sinks of one executor; `journal` first, so a record is durable before anything is
    /// shown.
    pub(crate) fn sinks<'s>(&'s mut self, journal: Option<&'s mut dyn EventSink>) -> Fanout<'s> {
        let mut sinks: Vec<&mut dyn EventSink> = Vec::new();
        if let Some(journal) = journal {
            sinks.push(journal);
        }
        sinks.push(&mut self.recorder);
        if self.text {
            sinks.push(&mut self.printer);
        }
        Fanout(sinks)
    }

    /// The outcome of the run so far, if it finished.
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        self.recorder
            .events
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                crate::event::EventKind::RunFinished { outcome } => Some(outcome.clone()),
                _ => None,
            })
    }

    /// Prints the summary (text) or the document (JSON/YAML); returns the outcome's exit code.
    pub(crate) fn report(&self, global: &Global, mode: Mode, plan: Option<&RunPlan>) -> u8 {
        let mut summary = RunSummary::from_events(&self.recorder.events);
        match mode {
            Mode::Tabletop => summary.notes.push(
                "tabletop: changes were applied to a simulated copy of the snapshot; no controllers ran there (no pods were replaced or rescheduled)".into(),
            ),
            Mode::Plan => summary.notes.push(
                "plan: nothing was written; each step was planned against the cluster as the steps before it leave it".into(),
            ),
            Mode::DryRun => summary.notes.push(
                "dry run: the API server validated each write to an object no earlier step changes (dryRun=All) and stored nothing; writes to objects an earlier step changes were checked against the planned state".into(),
            ),
            Mode::Live => {}
        }
        if let Some(plan) = plan {
            summary.notes.extend(plan.notes.iter().cloned());
        }
        if self.text {
            print!("{}", summary.render_text());
        } else {
            let mut document = serde_json::to_value(&summary).unwrap_or(Value::Null);
            if let Some(plan) = plan {
                document["plan"] = serde_json::to_value(plan).unwrap_or(Value::Null);
            }
            document["events"] = serde_json::to_value(&self.recorder.events).unwrap_or(Value::Null);
            print_output(&document, global.output);
        }
        self.outcome()
            .map_or(exit::INTERNAL, |outcome| outcome.exit_code())
    }
}

/// Writes a saved plan (`plan --out`).
fn save_plan(path: &Path, plan: &RunPlan) -> Result<(), u8> {
    let text = serde_json::to_string_pretty(plan).expect("plans serialize") + "\n";
    std::fs::write(path, text).map_err(|e| {
        eprintln!("error: cannot write the plan to {}: {e}", path.display());
        exit::INVALID_INPUT
    })?;
    eprintln!("wrote the plan to {}", path.display());
    Ok(())
}

/// Asks on the terminal.
pub(crate) struct TerminalApprover;

impl Approver for TerminalApprover {
    fn approve(&mut self, step: &str, message: &str) -> bool {
        confirm(&format!(
            "step {step}: {}",
            crate::escape::sanitize(message)
        ))
    }
}

pub(crate) fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES")
}

async fn live(args: &RunArgs, global: &Global) -> u8 {
    let interactive = std::io::stdin().is_terminal();
    if !args.dry_run && !args.yes && !interactive {
        eprintln!(
            "error: refusing a live run without a terminal to confirm on; pass --yes to run unattended, or --dry-run"
        );
        return exit::REFUSED;
    }
    // A signing key that cannot sign is found now, before anything is written.
    if let Some(key) = &global.evidence_key
        && let Err(e) = crate::sshsig::read_key(key)
    {
        eprintln!("error: --evidence-key {e}");
        return exit::INVALID_INPUT;
    }
    if let Some(saved) = &args.plan {
        return crate::recover::apply_saved_plan(saved, args, global).await;
    }
    let Some(playbook) = &args.playbook else {
        eprintln!("error: name a playbook, or a saved plan with --plan FILE");
        return exit::USAGE;
    };
    let playbook_args = PlaybookArgs {
        playbook: playbook.clone(),
        set: args.set.clone(),
    };
    let (loaded, params) = match load_with_params(&playbook_args, global) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let cluster = match connect(global).await {
        Ok(cluster) => cluster,
        Err(code) => return code,
    };
    if args.dry_run {
        let forwarding = Overlay::forwarding_dry_run(&cluster);
        let run_id = new_run_id();
        let config = RunConfig::new(&run_id, Mode::DryRun, params, &playbook_path(playbook));
        let mut reporting = Reporting::new(global, Mode::DryRun);
        let result = {
            let mut sinks = reporting.sinks(None);
            Executor::new(&forwarding, &mut sinks, &mut AutoApprove)
                .run(&loaded, &config)
                .await
        };
        return match result {
            Ok(result) => reporting.report(global, Mode::DryRun, result.plan.as_ref()),
            Err(e) => run_error(&e),
        };
    }
    crate::recover::journaled_live(
        &new_run_id(),
        playbook,
        &loaded,
        params,
        global,
        &cluster,
        &live_options(args.yes, &args.lock, &args.notify),
    )
    .await
}

/// `contain verify-image`: exit 0 when signed by one of the keys, 6 when not, 4 when the
/// registry cannot be reached, 3 for a bad reference or key.
async fn verify_image(
    image: &str,
    keys: &[std::path::PathBuf],
    registry_config: Option<&Path>,
    global: &Global,
) -> u8 {
    use crate::registry::{ImageRef, Registry, RegistryError, cosign};
    let reference = match ImageRef::parse(image) {
        Ok(reference) => reference,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    let keys: Vec<cosign::Key> = match keys.iter().map(|k| cosign::Key::from_file(k)).collect() {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    let registry = match Registry::new(registry_config) {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    let registry_code = |e: &RegistryError| match e {
        RegistryError::Unreachable { .. } => exit::CLUSTER,
        _ => exit::VERIFY_FAILED,
    };
    let digest = match registry.resolve(&reference).await {
        Ok(digest) => digest,
        Err(e) => {
            eprintln!("error: {e}");
            return registry_code(&e);
        }
    };
    match cosign::verify(&registry, &reference, &digest, &keys).await {
        Ok(verified) => {
            if global.output == Output::Text {
                println!(
                    "{image} → {}: signed, verified with {}",
                    verified.image, verified.key
                );
            } else {
                print_output(
                    &serde_json::to_value(&verified).unwrap_or(Value::Null),
                    global.output,
                );
            }
            exit::SUCCESS
        }
        Err(cosign::SignatureError::Registry(e)) => {
            eprintln!("error: {e}");
            registry_code(&e)
        }
        Err(e) => {
            eprintln!("refused: {e}");
            exit::VERIFY_FAILED
        }
    }
}

/// `contain rbac PLAYBOOK`: plans the playbook through a recording of its reads, then prints
/// the ClusterRole that grants those reads and what the plan's operations and verifications
/// need.
async fn rbac(
    args: &PlaybookArgs,
    snapshot: Option<&Path>,
    name: Option<&str>,
    global: &Global,
) -> u8 {
    let (loaded, params) = match load_with_params(args, global) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let cluster = match snapshot_or_live(snapshot, global).await {
        Ok(cluster) => cluster,
        Err(code) => return code,
    };
    let recording = crate::cluster::recording::Recording::new(cluster.as_ref());
    let run_id = new_run_id();
    let config = RunConfig::new(&run_id, Mode::Plan, params, &playbook_path(&args.playbook));
    let mut recorder = Recorder::default();
    let planned = Executor::new(&recording, &mut recorder, &mut AutoApprove)
        .plan(&loaded, &config)
        .await;
    let plan = match planned {
        Ok(Ok(plan)) => plan,
        Ok(Err(refused)) => {
            eprintln!(
                "error: the playbook cannot be planned here, so its needs are unknown: {}",
                refused.describe()
            );
            return refused.exit_code();
        }
        Err(e) => return run_error(&e),
    };
    let mut needed = recording.reads();
    needed.extend(crate::execute::planning::needed_access(&plan));
    needed.extend(crate::run_lock::access(&plan));
    needed.extend(crate::notify::events::access(&plan));
    // A responder must be able to roll the run back too.
    for step in plan.steps.iter().filter_map(|s| s.plan()) {
        needed.extend(step.inverse.iter().flat_map(crate::plan::Op::access));
    }
    let role_name = name
        .map(str::to_string)
        .unwrap_or_else(|| format!("contain-{}", loaded.playbook.metadata.name));
    let role = crate::rbac::cluster_role(&role_name, &needed);
    let output = if global.output == Output::Text {
        Output::Yaml
    } else {
        global.output
    };
    print_output(&role, output);
    exit::SUCCESS
}

/// `contain explain-access POD`.
async fn explain_access(pod: &str, snapshot: Option<&Path>, global: &Global) -> u8 {
    let cluster = match snapshot_or_live(snapshot, global).await {
        Ok(cluster) => cluster,
        Err(code) => return code,
    };
    let namespace = global.namespace.clone().unwrap_or_else(|| "default".into());
    match crate::explain::explain(cluster.as_ref(), &namespace, pod).await {
        Ok(document) => {
            if global.output == Output::Text {
                print!("{}", crate::explain::render_text(&document));
            } else {
                print_output(&document, global.output);
            }
            exit::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::CLUSTER
        }
    }
}

async fn snapshot(file: Option<&Path>, global: &Global) -> u8 {
    let cluster = match connect(global).await {
        Ok(cluster) => cluster,
        Err(code) => return code,
    };
    let objects = match crate::snapshot::export(&cluster, global.namespace.as_deref()).await {
        Ok(objects) => objects,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CLUSTER;
        }
    };
    let written = match global.output {
        Output::Json => crate::snapshot::to_json(&objects),
        Output::Text | Output::Yaml => crate::snapshot::to_yaml(&objects, &cluster.info().server),
    };
    let text = match written {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot write the snapshot: {e}");
            return exit::INTERNAL;
        }
    };
    match file {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!("wrote {} objects to {}", objects.len(), path.display());
                exit::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                exit::INVALID_INPUT
            }
        },
        None => {
            print!("{text}");
            exit::SUCCESS
        }
    }
}

/// A `with` field's type as a reader wants it: `string`, `bool`, `string[]`, `map`, or the values
/// of an enum (`auto|network-policy|cluster-policy`).
fn field_type(spec: &Value, defs: &Value) -> String {
    if let Some(reference) = spec.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return field_type(&defs[name], defs);
    }
    if let Some(values) = spec.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect();
        return values.join("|");
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = spec.get(key).and_then(Value::as_array) {
            let kinds: Vec<String> = options
                .iter()
                .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
                .map(|o| match o.get("const") {
                    Some(value) => value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_string),
                    None => field_type(o, defs),
                })
                .collect();
            return kinds.join("|");
        }
    }
    let kind = match spec.get("type") {
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("any")
            .to_string(),
        Some(Value::String(kind)) => kind.clone(),
        _ => "any".to_string(),
    };
    match kind.as_str() {
        "boolean" => "bool".into(),
        "array" => format!("{}[]", field_type(&spec["items"], defs)),
        "object" => "map".into(),
        _ => kind,
    }
}

fn actions(name: Option<&str>, global: &Global) -> u8 {
    let catalogue = action::catalogue();
    let selected: Vec<_> = match name {
        Some(name) => match action::lookup(name) {
            Some(a) => vec![a],
            None => {
                let hint =
                    crate::diagnostics::did_you_mean(name, catalogue.iter().map(|a| a.info().name))
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                eprintln!("error: unknown action `{name}`{hint}");
                return exit::INVALID_INPUT;
            }
        },
        None => catalogue.to_vec(),
    };
    if global.output != Output::Text {
        let list: Vec<Value> = selected
            .iter()
            .map(|a| {
                let mut info = serde_json::to_value(a.info()).unwrap_or(Value::Null);
                info["with"] = a.with_schema();
                info
            })
            .collect();
        print_output(&Value::Array(list), global.output);
        return exit::SUCCESS;
    }
    let mut out = String::new();
    for a in selected {
        let info = a.info();
        let kinds = info.target.kinds();
        let target = match &info.target {
            action::TargetRule::None => "none".to_string(),
            _ if kinds.is_empty() => "any kind".to_string(),
            _ => kinds.join(", "),
        };
        out.push_str(&format!("{}\n  {}\n", info.name, info.summary));
        out.push_str(&format!(
            "  target:     {target}\n  changes:    {}\n",
            info.changes
        ));
        out.push_str(&format!(
            "  reversible: {} ({})\n",
            if info.reversible { "yes" } else { "no" },
            info.undo
        ));
        if info.destroys_evidence {
            out.push_str("  evidence:   can destroy evidence: needs a forensics.capture first, or a waiver\n");
        }
        let schema = a.with_schema();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
            for (field, spec) in props {
                let doc = spec
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                let kind = field_type(spec, &defs);
                let default = match spec.get("default") {
                    _ if required.contains(&field.as_str()) => "required".to_string(),
                    Some(Value::Null) | None => "optional".to_string(),
                    Some(value) => format!("default {value}"),
                };
                out.push_str(&format!("  with.{field} ({kind}, {default}): {doc}\n"));
            }
        }
        for (output, doc) in info.outputs {
            out.push_str(&format!("  outputs.{output}: {doc}\n"));
        }
        out.push('\n');
    }
    print!("{out}");
    exit::SUCCESS
}
