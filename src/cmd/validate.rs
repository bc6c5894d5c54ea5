//! `contain validate PLAYBOOK…`: every problem of every playbook, with its place.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::ui;
use super::{CommandError, CommandResult, Ctx, Finding, Status};
use crate::playbook::load::{self, LoadError};

pub fn run(ctx: &Ctx, paths: &[PathBuf], set: &[String]) -> CommandResult {
    let mut all_valid = true;
    let mut results = Vec::new();
    for path in &playbooks(paths)? {
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
        // Param values are checked when given: with --set (all the params a run needs), or
        // the namespace alone with -n.
        let checked = if set.is_empty() {
            load::check_given_params(&loaded, &ctx.assignments(&loaded, set))
        } else {
            load::bind_params(&loaded, &ctx.assignments(&loaded, set)).map(|_| ())
        };
        if let Err(reports) = checked {
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

/// The files to validate: each file named, and every playbook in a directory named (its
/// `.yaml` and `.yml` files whose `kind` is `Playbook`, in name order, subdirectories too).
fn playbooks(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CommandError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let found = playbooks_in(path)
            .map_err(|e| CommandError::Input(format!("{}: {e}", path.display())))?;
        if found.is_empty() {
            return Err(CommandError::Input(format!(
                "{}: no playbook in this directory (a `.yaml` or `.yml` file of `kind: Playbook`)",
                path.display()
            )));
        }
        files.extend(found);
    }
    Ok(files)
}

fn playbooks_in(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    let mut found = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            found.extend(playbooks_in(&entry)?);
        } else if entry.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && is_playbook(&entry)
        {
            found.push(entry);
        }
    }
    Ok(found)
}

/// Whether a file says `kind: Playbook` at its top level (drills, scenarios and snapshots live
/// beside playbooks).
fn is_playbook(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .is_ok_and(|text| text.lines().any(|line| line.trim_end() == "kind: Playbook"))
}
