//! `contain validate PLAYBOOK…`: every problem of every playbook, with its place.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::ui;
use super::{CommandResult, Ctx, Finding, Status};
use crate::playbook::load::{self, LoadError};

pub fn run(ctx: &Ctx, paths: &[PathBuf], set: &[String]) -> CommandResult {
    let mut all_valid = true;
    let mut results = Vec::new();
    for path in paths {
        let file = path.display().to_string();
        let loaded = match load::load_file(path) {
            Ok(loaded) => loaded,
            Err(LoadError::Invalid(report)) => {
                if ctx.text() {
                    ui::print_reports(std::slice::from_ref(&report), ctx.output);
                }
                results.push(json!({"file": file, "valid": false, "problems": report.to_json()}));
                all_valid = false;
                continue;
            }
            Err(e) => {
                ui::err_line(&format!("error: {e}"));
                results.push(
                    json!({"file": file, "valid": false, "problems": [{"message": e.to_string()}]}),
                );
                all_valid = false;
                continue;
            }
        };
        if !set.is_empty()
            && let Err(reports) = load::bind_params(&loaded, set)
        {
            if ctx.text() {
                ui::print_reports(&reports, ctx.output);
            }
            results.push(json!({"file": file, "valid": false, "problems": ui::problems(&reports)}));
            all_valid = false;
            continue;
        }
        let steps = loaded.playbook.steps.len();
        if ctx.text() {
            ui::out_line(&format!("{file}: ok ({steps} steps)"));
        }
        results.push(json!({"file": file, "valid": true, "steps": steps}));
    }
    if !ctx.text() {
        ui::print_output(&Value::Array(results), ctx.output);
    }
    Ok(if all_valid {
        Status::Success
    } else {
        Status::Failed(Finding::Invalid)
    })
}
