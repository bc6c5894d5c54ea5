//! `contain report RUN`: the incident report, from the journal (whose hash chain is checked
//! first) and the evidence manifests it names.

use std::path::Path;

use super::ui;
use super::{CommandError, CommandResult, Ctx, Finding, Status};
use crate::cli::Output;
use crate::journal::RunState;
use crate::report::incident::{self, Format};

pub fn run(
    ctx: &Ctx,
    run: &str,
    format: Option<Format>,
    out: Option<&Path>,
    templates: Option<&Path>,
) -> CommandResult {
    let journal = ctx.open_run(run)?;
    let (state, records, intact) = RunState::read(&journal, run)
        .and_then(|state| {
            let records = journal.records(run)?;
            let intact = journal.verify(run)?.is_intact();
            Ok((state, records, intact))
        })
        .map_err(|e| CommandError::Journal(format!("cannot read run {run}: {e}")))?;
    let explicit = format.is_some();
    let format = format.unwrap_or(match ctx.output {
        Output::Json => Format::Json,
        _ => Format::Markdown,
    });
    let view = incident::build(&state, &records, intact);
    let rendered = match (format, ctx.output) {
        // `-o yaml` without --format: the report as data, in YAML.
        (_, Output::Yaml) if !explicit => serde_saphyr::to_string(&view).map_err(|e| e.to_string()),
        _ => incident::render_as(&view, format, templates),
    };
    let text = rendered.map_err(CommandError::Input)?;
    match out {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| {
                CommandError::Input(format!("cannot write {}: {e}", path.display()))
            })?;
            ui::err_line(&format!(
                "report of run {run} written to {}",
                path.display()
            ));
        }
        None => ui::out(&text),
    }
    Ok(if intact {
        Status::Success
    } else {
        Status::Failed(Finding::ChainBroken)
    })
}
