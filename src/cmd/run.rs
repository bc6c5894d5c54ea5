//! `contain run`: a live run (planned, shown, approved, journaled, applied exactly), its dry
//! run (every write sent with dryRun=All), or a saved plan applied exactly.

use std::path::Path;

use serde_json::Value;

use super::ctx::{new_run_id, playbook_path};
use super::session::{Session, identity};
use super::ui::{self, Reporting};
use super::{CommandError, CommandResult, Ctx, session_options};
use crate::cli::RunArgs;
use crate::cluster::Cluster;
use crate::cluster::overlay::Overlay;
use crate::execute::{AutoApprove, Executor, Mode, RunConfig};
use crate::plan::RunPlan;

pub async fn run(ctx: &Ctx, args: &RunArgs) -> CommandResult {
    if !args.dry_run && !args.yes && !ui::interactive() {
        return Err(CommandError::Refused(
            "refusing a live run without a terminal to confirm on; pass --yes to run unattended, or --dry-run".into(),
        ));
    }
    // A signing key that cannot sign is found now, before anything is written.
    if let Some(key) = &ctx.evidence_key
        && let Err(e) = crate::sshsig::read_key(key)
    {
        return Err(CommandError::Input(format!("--evidence-key {e}")));
    }
    if let Some(saved) = &args.plan {
        return apply_saved_plan(ctx, saved, args).await;
    }
    let Some(playbook) = &args.playbook else {
        return Err(CommandError::Usage(
            "name a playbook, or a saved plan with --plan FILE".into(),
        ));
    };
    let (loaded, params) = ctx.load_with_params(playbook, &args.set)?;
    let cluster = ctx.connect().await?;
    if args.dry_run {
        let forwarding = Overlay::forwarding_dry_run(&cluster);
        let run_id = new_run_id();
        let config = RunConfig::new(&run_id, Mode::DryRun, params, &playbook_path(playbook));
        let mut reporting = Reporting::new(ctx.output, ctx.no_progress, ctx.verbose, Mode::DryRun);
        let result = {
            let mut sinks = reporting.sinks(None);
            Executor::new(&forwarding, &mut sinks, &mut AutoApprove)
                .run(&loaded, &config)
                .await?
        };
        return reporting.report(Mode::DryRun, result.plan.as_ref());
    }
    let options = session_options(args.yes, &args.lock, &args.notify);
    Session::new(ctx, &cluster, options)
        .run(&new_run_id(), playbook, &loaded, params)
        .await
}

/// `contain run --plan FILE`: applies a saved plan exactly, after checking it was made from
/// this playbook, these params and this cluster.
async fn apply_saved_plan(ctx: &Ctx, path: &Path, args: &RunArgs) -> CommandResult {
    let plan: RunPlan = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| CommandError::Input(format!("{} is not a saved plan: {e}", path.display())))?;
    if plan.format != crate::plan::run::FORMAT {
        return Err(CommandError::Input(format!(
            "{} has plan format {}, this contain reads format {}",
            path.display(),
            plan.format,
            crate::plan::run::FORMAT
        )));
    }
    let playbook = args
        .playbook
        .clone()
        .unwrap_or_else(|| plan.playbook.path.clone().into());
    let loaded = ctx.load_playbook(&playbook)?;
    if loaded.sha256 != plan.playbook.sha256 {
        return Err(CommandError::Refused(format!(
            "{} changed since the plan was made (sha256 {} then, {} now); refusing the saved plan",
            playbook.display(),
            plan.playbook.sha256,
            loaded.sha256
        )));
    }
    if !args.set.is_empty() {
        let (_, params) = ctx.load_with_params(&playbook, &args.set)?;
        if params != plan.params {
            return Err(CommandError::Refused(format!(
                "the params given ({}) are not the plan's ({}); refusing the saved plan",
                Value::Object(params),
                Value::Object(plan.params.clone())
            )));
        }
    }
    let cluster = ctx.connect().await?;
    let id = identity(&cluster).await?;
    if plan.cluster.id.as_deref() != Some(id.as_str()) {
        return Err(CommandError::Refused(format!(
            "the plan was made against another cluster ({}, kube-system uid {}); this cluster's is {id}. Refusing.",
            plan.cluster.server,
            plan.cluster.id.as_deref().unwrap_or("unknown")
        )));
    }
    if ctx.run_recorded(&plan.run_id) {
        return Err(CommandError::Refused(format!(
            "this plan was already applied as run {} (see `contain journal show {}`); make a new plan",
            plan.run_id, plan.run_id
        )));
    }
    ui::out(&crate::plan::display::render_run(&plan));
    if !args.yes
        && !ui::confirm(&format!(
            "apply this saved plan to {}?",
            cluster.info().server
        ))
    {
        return Err(CommandError::NotConfirmed);
    }
    let options = session_options(args.yes, &args.lock, &args.notify);
    Session::new(ctx, &cluster, options)
        .run_saved(&loaded, &plan)
        .await
}
