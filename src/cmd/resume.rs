//! `contain resume RUN`: goes on applying an interrupted run's approved plan.

use super::session::{Recorded, Session, SessionOptions, refuse_unattended};
use super::{CommandResult, Ctx};

pub async fn run(ctx: &Ctx, run: &str, options: SessionOptions) -> CommandResult {
    refuse_unattended(options.yes, "resume a run")?;
    let (recorded, cluster) = Recorded::open_for_session(ctx, run).await?;
    Session::new(ctx, &cluster, options).resume(recorded).await
}
