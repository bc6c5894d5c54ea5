//! Command dispatch: turns a parsed command line into stages, and every error into one of the
//! documented exit codes.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::action;
use crate::cli::{Cli, Command, Global, Output, PlaybookArgs};
use crate::cluster::Cluster;
use crate::cluster::kube::{Connect, KubeCluster};
use crate::cluster::sim::SimCluster;
use crate::diagnostics::Report;
use crate::event::{EventSink, Fanout, Outcome, Recorder};
use crate::execute::{Approver, AutoApprove, Executor, Mode, RunConfig, RunError};
use crate::exit;
use crate::playbook::load::{self, LoadError, Loaded};
use crate::playbook::node::Limits;
use crate::playbook::validate::playbook_schema;
use crate::report::progress::ProgressPrinter;
use crate::report::summary::RunSummary;
use crate::source::Source;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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

async fn dispatch(cli: Cli) -> u8 {
    let global = &cli.global;
    match &cli.command {
        Command::Validate { playbooks, set } => validate(playbooks, set, global),
        Command::Plan { playbook, snapshot } => {
            let cluster = match snapshot {
                Some(path) => load_snapshot(path, global).map(|s| Box::new(s) as Box<dyn Cluster>),
                None => connect(global)
                    .await
                    .map(|k| Box::new(k) as Box<dyn Cluster>),
            };
            match cluster {
                Ok(cluster) => {
                    run_playbook(
                        playbook,
                        global,
                        cluster.as_ref(),
                        Mode::Plan,
                        &mut AutoApprove,
                    )
                    .await
                }
                Err(code) => code,
            }
        }
        Command::Tabletop { playbook, snapshot } => match load_snapshot(snapshot, global) {
            Ok(sim) => run_playbook(playbook, global, &sim, Mode::Tabletop, &mut AutoApprove).await,
            Err(code) => code,
        },
        Command::Run {
            playbook,
            dry_run,
            yes,
        } => live(playbook, global, *dry_run, *yes).await,
        Command::Snapshot { file } => snapshot(file.as_deref(), global).await,
        Command::Resume { run, yes } => crate::recover::resume(run, *yes, global).await,
        Command::Rollback { run, to, yes } => {
            crate::recover::rollback(run, to.as_deref(), *yes, global).await
        }
        Command::Journal { command } => crate::recover::journal(command, global),
        Command::Evidence {
            command: crate::cli::EvidenceCommand::Verify { dir },
        } => crate::recover::verify_evidence(dir, global),
        Command::VerifyImage {
            image,
            keys,
            registry_config,
        } => verify_image(image, keys, registry_config.as_deref(), global).await,
        Command::Schema => print_json(&playbook_schema()),
        Command::Actions { name } => actions(name.as_deref(), global),
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

fn print_reports(reports: &[Report], global: &Global) {
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
        _ => serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn print_json(value: &Value) -> u8 {
    print_output(value, Output::Json);
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

fn load_snapshot(path: &Path, global: &Global) -> Result<SimCluster, u8> {
    let name = path.display().to_string();
    let bytes = load::read_bounded(path, Limits::SNAPSHOT.max_bytes).map_err(|e| {
        eprintln!("error: cannot read snapshot {name}: {e}");
        exit::INVALID_INPUT
    })?;
    let text =
        crate::playbook::node::text_from_bytes(&name, bytes, Limits::SNAPSHOT).map_err(|e| {
            eprintln!("error: {e}");
            exit::INVALID_INPUT
        })?;
    SimCluster::load(&Source::new(name, text)).map_err(|report| {
        print_reports(&[report], global);
        exit::INVALID_INPUT
    })
}

pub(crate) async fn connect(global: &Global) -> Result<KubeCluster, u8> {
    let options = Connect {
        kubeconfig: global.kubeconfig.clone(),
        context: global.context.clone(),
        call_timeout: None,
    };
    KubeCluster::connect(&options).await.map_err(|e| {
        eprintln!("error: {e}");
        exit::CLUSTER
    })
}

/// A time-sortable run id: UTC time, then 6 hex digits.
pub fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    let seed = format!(
        "{}-{}-{:?}",
        now.as_nanosecond(),
        std::process::id(),
        std::thread::current().id()
    );
    let digest = hex::encode(Sha256::digest(seed.as_bytes()));
    format!("{}-{}", now.strftime("%Y%m%dT%H%M%SZ"), &digest[..6])
}

/// Runs a playbook in one mode and prints the outcome; returns the exit code.
async fn run_playbook(
    args: &PlaybookArgs,
    global: &Global,
    cluster: &dyn Cluster,
    mode: Mode,
    approver: &mut dyn Approver,
) -> u8 {
    let loaded = match load_playbook(&args.playbook, global) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let params = match load::bind_params(&loaded, &assignments(&loaded, args, global)) {
        Ok(params) => params,
        Err(reports) => {
            print_reports(&reports, global);
            return exit::INVALID_INPUT;
        }
    };
    execute_run(&loaded, params, global, cluster, mode, approver)
        .await
        .0
}

/// Executes and reports; returns the exit code and the run's outcome.
pub(crate) async fn execute_run(
    loaded: &Loaded,
    params: Map<String, Value>,
    global: &Global,
    cluster: &dyn Cluster,
    mode: Mode,
    approver: &mut dyn Approver,
) -> (u8, Option<Outcome>) {
    let config = RunConfig {
        run_id: new_run_id(),
        mode,
        params,
        resume: None,
        evidence: None,
    };
    execute_config(loaded, &config, global, cluster, approver, None).await
}

/// Executes a run with a given configuration, recording it in `journal` when given (first, so a
/// record is durable before anything is shown or written).
pub(crate) async fn execute_config(
    loaded: &Loaded,
    config: &RunConfig,
    global: &Global,
    cluster: &dyn Cluster,
    approver: &mut dyn Approver,
    journal: Option<&mut dyn EventSink>,
) -> (u8, Option<Outcome>) {
    let mode = config.mode;
    let mut recorder = Recorder::default();
    let text = global.output == Output::Text;
    let animated = text && !global.no_progress && std::io::stderr().is_terminal();
    let mut printer = ProgressPrinter::new(animated);
    printer.verbose = global.verbose > 0;
    printer.show_inverse = mode != Mode::Live || global.verbose > 0;
    let result = {
        let mut sinks: Vec<&mut dyn EventSink> = Vec::new();
        if let Some(journal) = journal {
            sinks.push(journal);
        }
        sinks.push(&mut recorder);
        if text {
            sinks.push(&mut printer);
        }
        let mut fanout = Fanout(sinks);
        Executor::new(cluster, &mut fanout, approver)
            .run(loaded, config)
            .await
    };
    let mut summary = RunSummary::from_events(&recorder.events);
    if mode == Mode::Tabletop {
        summary
            .notes
            .push("tabletop: changes were applied to a simulated copy of the snapshot; no controllers ran there (no pods were replaced or rescheduled)".into());
    }
    if mode == Mode::Plan {
        summary.notes.push(
            "plan: nothing was written; each step was planned against the cluster as it is now"
                .into(),
        );
    }
    match result {
        Ok(run) => {
            if text {
                print!("{}", summary.render_text());
            } else {
                let mut document = serde_json::to_value(&summary).unwrap_or(Value::Null);
                document["events"] = serde_json::to_value(&recorder.events).unwrap_or(Value::Null);
                print_output(&document, global.output);
            }
            let code = match &run.outcome {
                Outcome::Succeeded => {
                    let planning_failed =
                        mode == Mode::Plan && summary.steps.iter().any(|s| s.status == "failed");
                    if planning_failed {
                        exit::STEP_FAILED
                    } else {
                        exit::SUCCESS
                    }
                }
                Outcome::Failed { .. } | Outcome::RolledBack { .. } => exit::STEP_FAILED,
                Outcome::VerifyFailed { .. } => exit::VERIFY_FAILED,
                Outcome::Declined { .. } => exit::REFUSED,
            };
            (code, Some(run.outcome))
        }
        Err(RunError::Fact(e)) => {
            eprintln!("error: {e}");
            let code = match e {
                crate::facts::FactError::Render(_) => exit::INVALID_INPUT,
                _ => exit::CLUSTER,
            };
            (code, None)
        }
        Err(RunError::Sink(e)) => {
            eprintln!("error: {e}");
            (exit::JOURNAL, None)
        }
    }
}

/// Asks on the terminal.
pub(crate) struct TerminalApprover;

impl Approver for TerminalApprover {
    fn approve(&mut self, step: &str, message: &str) -> bool {
        confirm(&format!(
            "step {step}: {}",
            crate::report::sanitize(message)
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

async fn live(args: &PlaybookArgs, global: &Global, dry_run: bool, yes: bool) -> u8 {
    let interactive = std::io::stdin().is_terminal();
    if !dry_run && !yes && !interactive {
        eprintln!(
            "error: refusing a live run without a terminal to confirm on; pass --yes to run unattended, or --dry-run"
        );
        return exit::REFUSED;
    }
    let loaded = match load_playbook(&args.playbook, global) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let params = match load::bind_params(&loaded, &assignments(&loaded, args, global)) {
        Ok(params) => params,
        Err(reports) => {
            print_reports(&reports, global);
            return exit::INVALID_INPUT;
        }
    };
    let cluster = match connect(global).await {
        Ok(cluster) => cluster,
        Err(code) => return code,
    };
    if dry_run {
        return execute_run(
            &loaded,
            params,
            global,
            &cluster,
            Mode::DryRun,
            &mut AutoApprove,
        )
        .await
        .0;
    }
    if !yes {
        let (code, _) = execute_run(
            &loaded,
            params.clone(),
            global,
            &cluster,
            Mode::Plan,
            &mut AutoApprove,
        )
        .await;
        if code != exit::SUCCESS {
            eprintln!("error: the plan has failures; nothing was written");
            return code;
        }
        if !confirm(&format!("apply this plan to {}?", cluster.info().server)) {
            eprintln!("not confirmed; nothing was written");
            return exit::REFUSED;
        }
        return crate::recover::journaled_live(
            &args.playbook,
            &loaded,
            params,
            global,
            &cluster,
            &mut TerminalApprover,
        )
        .await;
    }
    crate::recover::journaled_live(
        &args.playbook,
        &loaded,
        params,
        global,
        &cluster,
        &mut AutoApprove,
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
    let text = match crate::snapshot::to_yaml(&objects, &cluster.info().server) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot write the snapshot as YAML: {e}");
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
            for (field, spec) in props {
                let doc = spec
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let req = if required.contains(&field.as_str()) {
                    " (required)"
                } else {
                    ""
                };
                out.push_str(&format!("  with.{field}{req}: {doc}\n"));
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
