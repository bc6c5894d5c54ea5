//! `contain journal ls|show|export|verify|pull`: the journal of live runs, read, and a run
//! brought into it from its copy in the cluster.

use std::path::Path;

use serde_json::{Value, json};

use super::ctx::journal_error;
use super::ui;
use super::{CommandError, CommandResult, Ctx, Finding, Status};
use crate::cli::JournalCommand;
use crate::journal::{self, RunState};
use crate::plan::display;

pub async fn run(ctx: &Ctx, command: &JournalCommand) -> CommandResult {
    match command {
        JournalCommand::Ls => list(ctx, &ctx.journal_root),
        JournalCommand::Pull { run } => pull(ctx, run).await,
        JournalCommand::Show { run }
        | JournalCommand::Export { run }
        | JournalCommand::Verify { run } => {
            let journal = ctx.open_run(run)?;
            // The run's store exists (open_run checked), but its header may never have
            // become durable: that run never started.
            let answer = match command {
                JournalCommand::Show { .. } => show(ctx, &journal, run),
                JournalCommand::Export { .. } => export(&journal, run),
                _ => verify(ctx, &journal, run),
            };
            answer.map_err(|e| match e {
                Read::Journal(e) => journal_error(run, e),
                Read::Command(e) => e,
            })
        }
    }
}

/// A journal read that failed, or the command's own answer that the run never started.
enum Read {
    Journal(::journal::JournalError),
    Command(CommandError),
}

impl From<::journal::JournalError> for Read {
    fn from(e: ::journal::JournalError) -> Self {
        Read::Journal(e)
    }
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

fn never_started(run: &str) -> Read {
    Read::Command(CommandError::NeverStarted(format!(
        "run {run} never started: no plan was approved, nothing was written"
    )))
}

fn list(ctx: &Ctx, root: &Path) -> CommandResult {
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
    if !ctx.text() {
        ui::print_output(&Value::Array(rows), ctx.output);
        return Ok(Status::Success);
    }
    let mut out = format!(
        "{:<26} {:<24} {:<14} {:<20} server\n",
        "run", "playbook", "status", "user"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<26} {:<24} {:<14} {:<20} {}\n",
            row["run"].as_str().unwrap_or_default(),
            row["playbook"].as_str().unwrap_or_default(),
            row["status"].as_str().unwrap_or_default(),
            row["user"].as_str().unwrap_or_default(),
            row["server"].as_str().unwrap_or_default()
        ));
    }
    ui::out(&out);
    Ok(Status::Success)
}

fn show(ctx: &Ctx, journal: &::journal::Journal, run: &str) -> Result<Status, Read> {
    let state = RunState::read(journal, run)?;
    if state.never_started() {
        return Err(never_started(run));
    }
    if !ctx.text() {
        ui::print_output(
            &serde_json::to_value(&state).unwrap_or(Value::Null),
            ctx.output,
        );
        return Ok(Status::Success);
    }
    let mut out = format!(
        "run {run}: {} ({})\n",
        state.info.playbook_name,
        status_of(&state)
    );
    out.push_str(&format!(
        "  playbook {} (sha256 {})\n",
        state.info.playbook_path, state.info.playbook_sha256
    ));
    out.push_str(&format!(
        "  cluster {} (kube-system uid {}), user {}\n",
        state.info.server, state.info.cluster_id, state.info.user
    ));
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
        out.push_str(&format!(
            "\n{}: {}\n",
            step.step,
            crate::escape::sanitize(&status)
        ));
        if let Some(plan) = &step.plan {
            out.push_str(&display::render_step(plan, true));
        }
    }
    ui::out(&out);
    Ok(Status::Success)
}

fn export(journal: &::journal::Journal, run: &str) -> Result<Status, Read> {
    let header = journal.run(run)?;
    let line = |value: String| ui::out_line(&crate::escape::inert_json(value));
    line(serde_json::to_string(&header).unwrap_or_default());
    for record in journal.records(run)? {
        line(serde_json::to_string(&record).unwrap_or_default());
    }
    Ok(Status::Success)
}

fn verify(ctx: &Ctx, journal: &::journal::Journal, run: &str) -> Result<Status, Read> {
    let verification = journal.verify(run)?;
    if !ctx.text() {
        ui::print_output(
            &serde_json::to_value(&verification).unwrap_or(Value::Null),
            ctx.output,
        );
    } else if verification.is_intact() {
        ui::out_line(&format!(
            "run {run}: {} records, chain intact",
            verification.records
        ));
    } else {
        for problem in &verification.problems {
            ui::out_line(&format!("run {run}: {problem}"));
        }
    }
    if !verification.is_intact() {
        return Ok(Status::Failed(Finding::ChainBroken));
    }
    // An intact chain without an approved plan is a run that never started.
    if RunState::read(journal, run)?.never_started() {
        return Err(never_started(run));
    }
    Ok(Status::Success)
}

/// `contain journal pull RUN`: the run's copy in the cluster, verified, into this journal.
async fn pull(ctx: &Ctx, run: &str) -> CommandResult {
    let cluster = ctx.connect().await?;
    let pulled = super::cluster_copy::pull(ctx, &cluster, run).await?;
    if ctx.text() {
        ui::out_line(&format!(
            "run {run}: {} record(s) in ContainmentRun {}, chain intact; {} new here (journal {})",
            pulled.records,
            pulled.object,
            pulled.added,
            ctx.journal_root.display()
        ));
    } else {
        ui::print_output(
            &json!({"run": run, "object": pulled.object, "records": pulled.records,
                    "added": pulled.added, "playbook": pulled.playbook}),
            ctx.output,
        );
    }
    Ok(Status::Success)
}
