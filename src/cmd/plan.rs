//! `contain plan` and `contain tabletop`: the whole playbook planned (against the cluster, a
//! snapshot, or a snapshot's simulated copy), shown, and optionally saved; nothing written.

use std::path::Path;

use super::ctx::{new_run_id, playbook_path};
use super::ui::{self, Reporting};
use super::{CommandError, CommandResult, Ctx};
use crate::cli::PlaybookArgs;
use crate::cluster::Cluster;
use crate::execute::{AutoApprove, Executor, Mode, RunConfig};
use crate::plan::RunPlan;

/// `contain plan PLAYBOOK [--snapshot FILE] [--out FILE]`.
pub async fn plan(
    ctx: &Ctx,
    args: &PlaybookArgs,
    snapshot: Option<&Path>,
    out: Option<&Path>,
) -> CommandResult {
    let cluster = ctx.snapshot_or_live(snapshot).await?;
    walk(ctx, args, cluster.as_ref(), Mode::Plan, out).await
}

/// `contain tabletop PLAYBOOK --snapshot FILE`.
pub async fn tabletop(ctx: &Ctx, args: &PlaybookArgs, snapshot: &Path) -> CommandResult {
    let sim = ctx.load_snapshot(snapshot)?;
    walk(ctx, args, &sim, Mode::Tabletop, None).await
}

/// Runs a playbook in a mode that writes nothing (plan, tabletop, dry run) and reports it.
pub async fn walk(
    ctx: &Ctx,
    args: &PlaybookArgs,
    cluster: &dyn Cluster,
    mode: Mode,
    out: Option<&Path>,
) -> CommandResult {
    let (loaded, params) = ctx.load_with_params(&args.playbook, &args.set)?;
    let run_id = new_run_id();
    let config = RunConfig::new(&run_id, mode, params, &playbook_path(&args.playbook));
    let mut reporting = Reporting::new(ctx.output, ctx.no_progress, ctx.verbose, mode);
    let result = {
        let mut sinks = reporting.sinks(None);
        Executor::new(cluster, &mut sinks, &mut AutoApprove)
            .run(&loaded, &config)
            .await?
    };
    if let (Some(path), Some(plan)) = (out, &result.plan) {
        save_plan(path, plan)?;
    }
    reporting.report(mode, result.plan.as_ref())
}

/// Writes a saved plan (`plan --out`).
fn save_plan(path: &Path, plan: &RunPlan) -> Result<(), CommandError> {
    let text = serde_json::to_string_pretty(plan)
        .map_err(|e| CommandError::Internal(format!("cannot serialize the plan: {e}")))?
        + "\n";
    std::fs::write(path, text).map_err(|e| {
        CommandError::Input(format!("cannot write the plan to {}: {e}", path.display()))
    })?;
    ui::err_line(&format!("wrote the plan to {}", path.display()));
    Ok(())
}
