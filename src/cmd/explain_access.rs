//! `contain explain-access POD`: what can reach a pod and what it can reach, from every
//! NetworkPolicy of its namespace, in both directions.

use std::path::Path;

use super::ui;
use super::{CommandError, CommandResult, Ctx, Status};

pub async fn run(ctx: &Ctx, pod: &str, snapshot: Option<&Path>) -> CommandResult {
    let cluster = ctx.snapshot_or_live(snapshot).await?;
    let namespace = ctx.namespace.clone().unwrap_or_else(|| "default".into());
    let document = crate::explain::explain(cluster.as_ref(), &namespace, pod)
        .await
        .map_err(|e| CommandError::Cluster(e.to_string()))?;
    if ctx.text() {
        ui::out(&crate::explain::render_text(&document));
    } else {
        ui::print_output(&document, ctx.output);
    }
    Ok(Status::Success)
}
