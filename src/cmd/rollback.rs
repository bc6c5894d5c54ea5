//! `contain rollback RUN [--to STEP]`: undoes a run's completed steps, newest first.

use super::session::{Recorded, Session, SessionOptions, refuse_unattended};
use super::{CommandResult, Ctx};

pub async fn run(ctx: &Ctx, run: &str, to: Option<&str>, options: SessionOptions) -> CommandResult {
    refuse_unattended(options.yes, "roll back a run")?;
    let (recorded, cluster) = Recorded::open_for_session(ctx, run).await?;
    Session::new(ctx, &cluster, options)
        .rollback(recorded, to)
        .await
}
