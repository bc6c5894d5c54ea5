//! Journaled live runs and what the journal makes possible afterwards: `resume`, `rollback`
//! and `journal ls|show|export|verify`.

use std::io::IsTerminal;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::app::{
    TerminalApprover, confirm, connect, execute_config, load_playbook, new_run_id, print_output,
};
use crate::cli::{Global, JournalCommand, Output};
use crate::cluster::Cluster;
use crate::cluster::kube::KubeCluster;
use crate::event::{EventSink, Fanout};
use crate::execute::{Approver, AutoApprove, Executor, Mode, RunConfig};
use crate::exit;
use crate::journal::{self, RunInfo, RunJournal, RunState};
use crate::plan::display;
use crate::playbook::load::Loaded;
use crate::report::progress::ProgressPrinter;

fn journal_root(global: &Global) -> std::path::PathBuf {
    global.journal.clone().unwrap_or_else(journal::default_dir)
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
            .unwrap_or_else(crate::evidence::default_root),
        cluster_id: cluster_id.to_string(),
        collector: collector.to_string(),
    }
}

/// The cluster's identity, or the exit code for not getting it.
async fn identity(cluster: &KubeCluster) -> Result<String, u8> {
    cluster.identity().await.map_err(|e| {
        eprintln!("error: cannot read the cluster's identity (the kube-system namespace uid): {e}");
        exit::CLUSTER
    })
}

/// A live run, journaled: the run record is durable before the first step.
pub async fn journaled_live(
    path: &Path,
    loaded: &Loaded,
    params: Map<String, Value>,
    global: &Global,
    cluster: &KubeCluster,
    approver: &mut dyn Approver,
) -> u8 {
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
    let run_id = new_run_id();
    let journal = match journal::open_new(&journal_root(global), &run_id) {
        Ok(journal) => journal,
        Err(e) => {
            eprintln!("error: cannot record the run: {e}");
            return exit::JOURNAL;
        }
    };
    let info = RunInfo {
        playbook_path: std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string(),
        playbook_sha256: loaded.sha256.clone(),
        playbook_name: loaded.playbook.metadata.name.clone(),
        params: params.clone(),
        cluster_id,
        server: cluster.info().server,
        context: global.context.clone(),
        user,
        mode: Mode::Live.as_str().to_string(),
        started_at: jiff::Timestamp::now().to_string(),
    };
    let mut sink = match RunJournal::create(&journal, &run_id, &info) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("error: cannot record the run: {e}");
            return exit::JOURNAL;
        }
    };
    let evidence = evidence_config(global, &info.cluster_id, &info.user);
    let config = RunConfig {
        run_id,
        mode: Mode::Live,
        params,
        resume: None,
        evidence: Some(evidence),
    };
    execute_config(loaded, &config, global, cluster, approver, Some(&mut sink))
        .await
        .0
}

/// Reads a run and checks it belongs to the cluster we are connected to.
async fn checked_run(
    run: &str,
    global: &Global,
    journal: &::journal::Journal,
) -> Result<(RunState, KubeCluster), u8> {
    let state = RunState::read(journal, run).map_err(|e| {
        eprintln!("error: {e}");
        exit::INVALID_INPUT
    })?;
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

fn refuse_unattended(yes: bool, what: &str) -> Option<u8> {
    if !yes && !std::io::stdin().is_terminal() {
        eprintln!("error: refusing to {what} without a terminal to confirm on; pass --yes");
        return Some(exit::REFUSED);
    }
    None
}

/// `contain resume RUN`.
pub async fn resume(run: &str, yes: bool, global: &Global) -> u8 {
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
    if state
        .finished
        .as_ref()
        .and_then(|o| o.get("status"))
        .and_then(Value::as_str)
        == Some("succeeded")
    {
        println!("run {run} already finished successfully: nothing to resume");
        return exit::SUCCESS;
    }
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
    let next = loaded
        .playbook
        .steps
        .iter()
        .find(|s| {
            !matches!(
                resume.steps.get(&s.id),
                Some(
                    crate::execute::ResumedStep::Done { .. }
                        | crate::execute::ResumedStep::Skipped { .. }
                )
            )
        })
        .map(|s| s.id.clone());
    let Some(next) = next else {
        println!("run {run}: every step is done");
        return exit::SUCCESS;
    };
    if !yes
        && !confirm(&format!(
            "resume run {run} from step {next} on {}?",
            cluster.info().server
        ))
    {
        eprintln!("not confirmed; nothing was written");
        return exit::REFUSED;
    }
    let mut sink = RunJournal::reopen(&journal, run);
    let config = RunConfig {
        run_id: run.to_string(),
        mode: Mode::Live,
        params: state.info.params.clone(),
        resume: Some(resume),
        evidence: Some(evidence_config(
            global,
            &state.info.cluster_id,
            &state.info.user,
        )),
    };
    let mut terminal = TerminalApprover;
    let approver: &mut dyn Approver = if yes { &mut AutoApprove } else { &mut terminal };
    execute_config(
        &loaded,
        &config,
        global,
        &cluster,
        approver,
        Some(&mut sink),
    )
    .await
    .0
}

/// `contain rollback RUN [--to STEP]`.
pub async fn rollback(run: &str, to: Option<&str>, yes: bool, global: &Global) -> u8 {
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
        eprintln!("error: run {run} has no step `{step}`");
        return exit::INVALID_INPUT;
    }
    let mut plans = state.to_undo(to);
    if plans.is_empty() {
        println!("run {run}: nothing to roll back");
        return exit::SUCCESS;
    }
    println!("rollback of run {run} on {}:", cluster.info().server);
    for plan in plans.iter().rev() {
        println!("{}: {}", plan.step, crate::report::sanitize(&plan.summary));
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
    let config = RunConfig {
        run_id: run.to_string(),
        mode: Mode::Live,
        params: state.info.params.clone(),
        resume: None,
        evidence: None,
    };
    let mut sink = RunJournal::reopen(&journal, run);
    let mut recorder = crate::event::Recorder::default();
    let mut printer = ProgressPrinter::new(false);
    let result = {
        let mut sinks: Vec<&mut dyn EventSink> = vec![&mut sink, &mut recorder];
        if global.output == Output::Text {
            sinks.push(&mut printer);
        }
        let mut fanout = Fanout(sinks);
        let reason = match to {
            Some(step) => format!("rollback of run {run} to step {step}"),
            None => format!("rollback of run {run}"),
        };
        Executor::new(&cluster, &mut fanout, &mut AutoApprove)
            .rollback(&mut plans, &reason, &config)
            .await
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        return exit::JOURNAL;
    }
    let failed = recorder.events.iter().any(|e| {
        matches!(&e.kind, crate::event::EventKind::RollbackStep { outcome, .. } if outcome.starts_with("failed"))
    });
    if global.output != Output::Text {
        print_output(
            &serde_json::to_value(&recorder.events).unwrap_or(Value::Null),
            global.output,
        );
    }
    if failed {
        exit::STEP_FAILED
    } else {
        exit::SUCCESS
    }
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
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        match e {
            ::journal::JournalError::UnknownRun(_) => exit::INVALID_INPUT,
            _ => exit::JOURNAL,
        }
    })
}

fn status_of(state: &RunState) -> String {
    if state.rolling_back() {
        return "rolled back".into();
    }
    match state
        .finished
        .as_ref()
        .and_then(|o| o.get("status"))
        .and_then(Value::as_str)
    {
        Some(status) => status.replace('_', " "),
        None => "incomplete".into(),
    }
}

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
            format!("rolled back: {outcome}")
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
        println!("\n{}: {}", step.step, crate::report::sanitize(&status));
        if let Some(plan) = &step.plan {
            print!("{}", display::render_step(plan, true));
        }
    }
    Ok(exit::SUCCESS)
}

fn export(journal: &::journal::Journal, run: &str) -> Result<u8, ::journal::JournalError> {
    let header = journal.run(run)?;
    println!("{}", serde_json::to_string(&header).unwrap_or_default());
    for record in journal.records(run)? {
        println!("{}", serde_json::to_string(&record).unwrap_or_default());
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
    Ok(if verification.is_intact() {
        exit::SUCCESS
    } else {
        exit::JOURNAL
    })
}

/// `contain evidence verify DIR`: every bundle at or below DIR, re-hashed; each manifest's
/// sha256 compared with the one the journal recorded when the run is in the journal.
pub fn verify_evidence(dir: &Path, global: &Global) -> u8 {
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
        let check = match crate::evidence::verify(&bundle) {
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
                    println!("  {what}: {}", crate::report::sanitize(file));
                }
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
