//! `contain evidence verify DIR`: every bundle at or below DIR re-hashed, each manifest's
//! signature checked, and its sha256 compared with the one the journal recorded when the run
//! is in the journal.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::ui;
use super::{CommandError, CommandResult, Ctx, Finding, Status};
use crate::journal::{self, RunState};

pub fn verify(ctx: &Ctx, dir: &Path, trusted_keys: &[PathBuf]) -> CommandResult {
    let mut trusted = Vec::new();
    for path in trusted_keys {
        let keys = crate::sshsig::read_public_keys(path)
            .map_err(|e| CommandError::Input(e.to_string()))?;
        trusted.extend(keys);
    }
    let trusted = (!trusted_keys.is_empty()).then_some(trusted.as_slice());
    let bundles = crate::evidence::bundles(dir).map_err(|e| CommandError::Input(e.to_string()))?;
    let mut intact = true;
    let mut reports = Vec::new();
    for bundle in bundles {
        let check = match crate::evidence::verify(&bundle, trusted) {
            Ok(check) => check,
            Err(e) => {
                ui::err_line(&format!("error: {e}"));
                intact = false;
                continue;
            }
        };
        let journal = journal_manifest_hash(ctx, &bundle);
        let journal_matches = journal
            .as_ref()
            .map(|recorded| recorded == &check.manifest_sha256);
        intact &= check.intact() && journal_matches != Some(false);
        if ctx.text() {
            let verdict = if check.intact() { "intact" } else { "ALTERED" };
            let mut out = format!("{}: {} artifacts, {verdict}\n", check.dir, check.artifacts);
            for (what, files) in [
                ("changed", &check.changed),
                ("vanished", &check.vanished),
                ("appeared", &check.appeared),
            ] {
                for file in files {
                    out.push_str(&format!("  {what}: {}\n", crate::escape::sanitize(file)));
                }
            }
            if let Some(signature) = &check.signature {
                out.push_str(&format!("  signature: {}\n", signature.detail));
            }
            out.push_str(&match journal_matches {
                Some(true) => format!(
                    "  manifest sha256 {} matches the journal\n",
                    check.manifest_sha256
                ),
                Some(false) => format!(
                    "  manifest sha256 {} does NOT match the journal ({})\n",
                    check.manifest_sha256,
                    journal.clone().unwrap_or_default()
                ),
                None => format!(
                    "  manifest sha256 {} (run not in this journal: not cross-checked)\n",
                    check.manifest_sha256
                ),
            });
            ui::out(&out);
        }
        reports.push(json!({"bundle": check, "journal_manifest_sha256": journal, "matches_journal": journal_matches}));
    }
    if !ctx.text() {
        ui::print_output(&Value::Array(reports), ctx.output);
    }
    Ok(if intact {
        Status::Success
    } else {
        Status::Failed(Finding::EvidenceAltered)
    })
}

/// The manifest sha256 the journal recorded for a bundle's step, if the run is there.
fn journal_manifest_hash(ctx: &Ctx, bundle: &Path) -> Option<String> {
    let (manifest, _) = crate::evidence::read_manifest(bundle).ok()?;
    let journal = journal::open_run(
        &ctx.journal_root,
        &manifest.run_id,
        std::time::Duration::from_secs(5),
    )
    .ok()?;
    let state = RunState::read(&journal, &manifest.run_id).ok()?;
    let step = state.steps.iter().find(|s| s.step == manifest.step)?;
    step.outputs
        .as_ref()?
        .get("manifest_sha256")?
        .as_str()
        .map(str::to_string)
}
