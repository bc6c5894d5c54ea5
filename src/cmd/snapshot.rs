//! `contain snapshot [-f FILE]`: the objects actions read, exported from the live cluster for
//! tabletop runs (Secret values never exported).

use std::path::Path;

use super::ui;
use super::{CommandError, CommandResult, Ctx, Status};
use crate::cli::Output;
use crate::cluster::Cluster;

pub async fn run(ctx: &Ctx, file: Option<&Path>) -> CommandResult {
    let cluster = ctx.connect().await?;
    let objects = crate::snapshot::export(&cluster, ctx.namespace.as_deref())
        .await
        .map_err(|e| CommandError::Cluster(e.to_string()))?;
    let written = match ctx.output {
        Output::Json => crate::snapshot::to_json(&objects),
        Output::Text | Output::Yaml => crate::snapshot::to_yaml(&objects, &cluster.info().server),
    };
    let text =
        written.map_err(|e| CommandError::Internal(format!("cannot write the snapshot: {e}")))?;
    match file {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| {
                CommandError::Input(format!("cannot write {}: {e}", path.display()))
            })?;
            ui::err_line(&format!(
                "wrote {} objects to {}",
                objects.len(),
                path.display()
            ));
        }
        None => ui::out(&text),
    }
    Ok(Status::Success)
}
