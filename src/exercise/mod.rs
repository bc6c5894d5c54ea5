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

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use crate::cli::{ExerciseArgs, ExerciseCommand, Global};
use crate::cluster::Cluster;
use crate::document::DocumentError;
use crate::event::Recorder;
use crate::execute::apply::AutoApprove;
use crate::execute::{Executor, Mode, RunConfig};
use crate::exit;

pub async fn command(args: &ExerciseArgs, global: &Global) -> u8 {
    match &args.command {
        Some(ExerciseCommand::Schema) => crate::app::print_schema(&load::scenario_schema(), global),
        Some(ExerciseCommand::Validate { files }) => {
            let mut code = exit::SUCCESS;
            for file in files {
                match load::load(file) {
                    Ok(loaded) => println!(
                        "{}: valid ({} module(s), {} objective(s))",
                        file.display(),
                        loaded.scenario.spec.modules.len(),
                        loaded.scenario.spec.objectives.len()
                    ),
                    Err(e) => code = report_error(e, global),
                }
            }
            code
        }
        None => match &args.scenario {
            Some(scenario) => run(scenario, args, global).await,
            None => {
                eprintln!(
                    "error: give a scenario file (contain exercise SCENARIO --snapshot FILE)"
                );
                exit::USAGE
            }
        },
    }
}

fn report_error(error: DocumentError, global: &Global) -> u8 {
    match error {
        DocumentError::Invalid(reports) => {
            crate::app::print_reports(&reports, global);
            exit::INVALID_INPUT
        }
        DocumentError::Io(message) => {
            eprintln!("error: {message}");
            exit::INVALID_INPUT
        }
    }
}

async fn run(path: &Path, args: &ExerciseArgs, global: &Global) -> u8 {
    let loaded = match load::load(path) {
        Ok(loaded) => loaded,
        Err(e) => return report_error(e, global),
    };
    let answers = match &args.answers {
        Some(file) => match script::load(file) {
            Ok(answers) => Some(answers),
            Err(e) => return report_error(e, global),
        },
        None if !std::io::stdin().is_terminal() => {
            eprintln!("error: an exercise needs a terminal, or --answers FILE to run unattended");
            return exit::USAGE;
        }
        None => None,
    };
    // The plan every decision shows: the playbook planned once, writing nothing.
    let (cluster, against): (Box<dyn Cluster>, String) = match &args.snapshot {
        Some(snapshot) => match crate::app::load_snapshot(snapshot, global) {
            Ok(sim) => (Box::new(sim), format!("snapshot {}", snapshot.display())),
            Err(code) => return code,
        },
        None => match crate::app::connect(global).await {
            Ok(live) => {
                let server = live.info().server;
                (
                    Box::new(live),
                    format!("the live cluster {server} (read-only)"),
                )
            }
            Err(code) => return code,
        },
    };
    let config = RunConfig::new(
        &crate::app::new_run_id(),
        Mode::Plan,
        loaded.params.clone(),
        &path.display().to_string(),
    );
    let mut recorder = Recorder::default();
    let planned = Executor::new(cluster.as_ref(), &mut recorder, &mut AutoApprove)
        .run(&loaded.playbook, &config)
        .await;
    let plan = match planned {
        Ok(result) => match result.plan {
            Some(plan) => plan,
            None => {
                eprintln!(
                    "error: the scenario's playbook cannot be planned against {against}: {}",
                    result.outcome.describe()
                );
                return exit::REFUSED;
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INTERNAL;
        }
    };
    let started_at = jiff::Timestamp::now().to_string();
    let mut session = session::Session::new(&loaded, plan, against);
    match &answers {
        Some(answers) => script::play(&mut session, answers, &mut |line| {
            println!("{}", crate::escape::sanitize(line))
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
) -> u8 {
    let markdown = match aar::markdown(view, args.templates.as_deref()) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    let dir = args.out.clone().unwrap_or_else(|| {
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        PathBuf::from("exercise-reports").join(format!("{}-{stamp}", loaded.scenario.metadata.name))
    });
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("aar.md"), &markdown))
        .and_then(|()| {
            std::fs::write(
                dir.join("aar.json"),
                serde_json::to_string_pretty(view).unwrap_or_default() + "\n",
            )
        });
    if let Err(e) = written {
        eprintln!("error: cannot write the report to {}: {e}", dir.display());
        return exit::INVALID_INPUT;
    }
    println!(
        "\nafter-action report: {} ({} of {} objective(s) met)",
        dir.join("aar.md").display(),
        view["summary"]["objectives_met"],
        view["summary"]["objectives"]
    );
    exit::SUCCESS
}
