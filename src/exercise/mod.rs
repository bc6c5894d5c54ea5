//! `contain exercise`: tabletop exercises people run together. A scenario (`kind: Scenario`)
//! walks the room through modules and timed injects; each decision names a playbook step, whose
//! plan against a snapshot (or the live cluster, read-only) is shown at once; evaluators note
//! the objectives; a hot wash closes it; the after-action report says which objectives were
//! met and how long each decision took. At a terminal, or from a scripted answers file.

pub mod aar;
pub mod interactive;
pub mod load;
pub mod script;
pub mod session;
pub mod spec;

use std::path::{Path, PathBuf};

use crate::cli::{ExerciseArgs, ExerciseCommand};
use crate::cluster::Cluster;
use crate::cmd::ctx::new_run_id;
use crate::cmd::{CommandError, CommandResult, Ctx, Finding, Status, ui};
use crate::document::DocumentError;
use crate::event::Recorder;
use crate::execute::apply::AutoApprove;
use crate::execute::{Executor, Mode, RunConfig};

pub async fn command(ctx: &Ctx, args: &ExerciseArgs) -> CommandResult {
    match &args.command {
        Some(ExerciseCommand::Schema) => {
            ui::print_schema(&load::scenario_schema(), ctx.output);
            Ok(Status::Success)
        }
        Some(ExerciseCommand::Validate { files }) => {
            let mut status = Status::Success;
            let mut results = Vec::new();
            for file in files {
                match load::load(file) {
                    Ok(loaded) => {
                        let (modules, objectives) = (
                            loaded.scenario.spec.modules.len(),
                            loaded.scenario.spec.objectives.len(),
                        );
                        if ctx.text() {
                            ui::out_line(&format!(
                                "{}: valid ({modules} module(s), {objectives} objective(s))",
                                file.display()
                            ));
                        }
                        results.push(serde_json::json!({"file": file.display().to_string(),
                            "valid": true, "modules": modules, "objectives": objectives}));
                    }
                    Err(e) => {
                        ui::print_error(&document_error(e), ctx.output);
                        status = Status::Failed(Finding::Invalid);
                    }
                }
            }
            if !ctx.text() && matches!(status, Status::Success) {
                ui::print_output(&serde_json::Value::Array(results), ctx.output);
            }
            Ok(status)
        }
        None => match &args.scenario {
            Some(scenario) => run(ctx, scenario, args).await,
            None => Err(CommandError::Usage(
                "give a scenario file (contain exercise SCENARIO --snapshot FILE)".into(),
            )),
        },
    }
}

fn document_error(error: DocumentError) -> CommandError {
    match error {
        DocumentError::Invalid(reports) => CommandError::Invalid(reports),
        DocumentError::Io(message) => CommandError::Input(message),
    }
}

async fn run(ctx: &Ctx, path: &Path, args: &ExerciseArgs) -> CommandResult {
    let loaded = load::load(path).map_err(document_error)?;
    let answers = match &args.answers {
        Some(file) => Some(script::load(file, &loaded).map_err(document_error)?),
        None if !ui::interactive() => {
            return Err(CommandError::Usage(
                "an exercise needs a terminal, or --answers FILE to run unattended".into(),
            ));
        }
        None => None,
    };
    // The plan every decision shows: the playbook planned once, writing nothing.
    let (cluster, against): (Box<dyn Cluster>, String) = match &args.snapshot {
        Some(snapshot) => (
            Box::new(ctx.load_snapshot(snapshot)?),
            format!("snapshot {}", snapshot.display()),
        ),
        None => {
            let live = ctx.connect().await?;
            let server = live.info().server;
            (
                Box::new(live),
                format!("the live cluster {server} (read-only)"),
            )
        }
    };
    let config = RunConfig::new(
        &new_run_id(),
        Mode::Plan,
        loaded.params.clone(),
        &path.display().to_string(),
    );
    let mut recorder = Recorder::default();
    let result = Executor::new(cluster.as_ref(), &mut recorder, &mut AutoApprove)
        .run(&loaded.playbook, &config)
        .await
        .map_err(|e| CommandError::Internal(e.to_string()))?;
    let Some(plan) = result.plan else {
        return Err(CommandError::Refused(format!(
            "the scenario's playbook cannot be planned against {against}: {}",
            result.outcome.describe()
        )));
    };
    let started_at = jiff::Timestamp::now().to_string();
    let mut session = session::Session::new(&loaded, plan, against);
    match &answers {
        Some(answers) => script::play(&mut session, answers, &mut |line| {
            ui::out_line(&crate::escape::sanitize(line))
        }),
        None => interactive::run(&mut session).await,
    }
    let view = aar::build(&session, &started_at);
    write_reports(&view, &loaded, args)
}

fn write_reports(
    view: &serde_json::Value,
    loaded: &load::LoadedScenario,
    args: &ExerciseArgs,
) -> CommandResult {
    let markdown = aar::markdown(view, args.templates.as_deref()).map_err(CommandError::Input)?;
    let dir = args.out.clone().unwrap_or_else(|| {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        PathBuf::from("exercise-reports").join(format!("{}-{stamp}", loaded.scenario.metadata.name))
    });
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("aar.md"), &markdown))
        .and_then(|()| {
            std::fs::write(
                dir.join("aar.json"),
                serde_json::to_string_pretty(view).unwrap_or_default() + "\n",
            )
        })
        .map_err(|e| {
            CommandError::Input(format!("cannot write the report to {}: {e}", dir.display()))
        })?;
    ui::out_line(&format!(
        "\nafter-action report: {} ({} of {} objective(s) met)",
        dir.join("aar.md").display(),
        view["summary"]["objectives_met"],
        view["summary"]["objectives"]
    ));
    let unmet = view["summary"]["objectives_met"] != view["summary"]["objectives"];
    Ok(if unmet && args.fail_on_unmet {
        Status::Failed(Finding::ObjectivesUnmet)
    } else {
        Status::Success
    })
}
