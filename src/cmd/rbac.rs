//! `contain rbac PLAYBOOK`: plans the playbook through a recording of its reads, then prints
//! the ClusterRole that grants those reads and what the plan's operations, verifications,
//! locks, Events, the run's ContainmentRun and rollback need.

use std::path::Path;

use super::ctx::{new_run_id, playbook_path};
use super::ui;
use super::{CommandResult, Ctx, Status};
use crate::cli::{Output, PlaybookArgs};
use crate::event::Recorder;
use crate::execute::{AutoApprove, Executor, Mode, RunConfig};

pub async fn run(
    ctx: &Ctx,
    args: &PlaybookArgs,
    snapshot: Option<&Path>,
    name: Option<&str>,
) -> CommandResult {
    let (loaded, params) = ctx.load_with_params(&args.playbook, &args.set)?;
    let cluster = ctx.snapshot_or_live(snapshot).await?;
    let recording = crate::cluster::recording::Recording::new(cluster.as_ref());
    let run_id = new_run_id();
    let config = RunConfig::new(&run_id, Mode::Plan, params, &playbook_path(&args.playbook));
    let mut recorder = Recorder::default();
    let planned = Executor::new(&recording, &mut recorder, &mut AutoApprove)
        .plan(&loaded, &config)
        .await?;
    let plan = match planned {
        Ok(plan) => plan,
        Err(refused) => {
            ui::err_line(&format!(
                "error: the playbook cannot be planned here, so its needs are unknown: {}",
                refused.describe()
            ));
            return Ok(Status::Finished(refused));
        }
    };
    let mut needed = recording.reads();
    needed.extend(crate::execute::planning::needed_access(&plan));
    needed.extend(crate::run_lock::access(&plan));
    needed.extend(crate::notify::events::access(&plan));
    needed.extend(crate::runs::access(&plan));
    // A responder must be able to roll the run back too.
    for step in plan.steps.iter().filter_map(|s| s.plan()) {
        needed.extend(step.inverse.iter().flat_map(crate::plan::Op::access));
    }
    let role_name = name
        .map(str::to_string)
        .unwrap_or_else(|| format!("contain-{}", loaded.playbook.metadata.name));
    let role = crate::rbac::cluster_role(&role_name, &needed);
    let output = if ctx.text() { Output::Yaml } else { ctx.output };
    ui::print_output(&role, output);
    Ok(Status::Success)
}
