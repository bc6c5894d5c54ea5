//! `contain verify-image IMAGE --key FILE…`: resolves an image to its digest and verifies its
//! cosign signature: success when one of the keys signed it, 6 when none did, 4 when the
//! registry cannot be reached, 3 for a bad reference or key.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ui;
use super::{CommandError, CommandResult, Ctx, Status};
use crate::registry::{ImageRef, Registry, RegistryError, cosign};

pub async fn run(
    ctx: &Ctx,
    image: &str,
    keys: &[PathBuf],
    registry_config: Option<&Path>,
) -> CommandResult {
    let input = |e: &dyn std::fmt::Display| CommandError::Input(e.to_string());
    let reference = ImageRef::parse(image).map_err(|e| input(&e))?;
    let keys: Vec<cosign::Key> = keys
        .iter()
        .map(|k| cosign::Key::from_file(k))
        .collect::<Result<_, _>>()
        .map_err(|e| input(&e))?;
    let registry = Registry::new(registry_config).map_err(|e| input(&e))?;
    let digest = registry.resolve(&reference).await.map_err(registry_error)?;
    let verified = cosign::verify(&registry, &reference, &digest, &keys)
        .await
        .map_err(|e| match e {
            cosign::SignatureError::Registry(e) => registry_error(e),
            e => CommandError::SignatureRefused(e.to_string()),
        })?;
    if ctx.text() {
        ui::out_line(&format!(
            "{image} → {}: signed, verified with {}",
            verified.image, verified.key
        ));
    } else {
        ui::print_output(
            &serde_json::to_value(&verified).unwrap_or(Value::Null),
            ctx.output,
        );
    }
    Ok(Status::Success)
}

/// An unreachable registry is a connection problem; any other registry answer leaves the
/// signature unverified.
fn registry_error(error: RegistryError) -> CommandError {
    match error {
        RegistryError::Unreachable { .. } => CommandError::Cluster(error.to_string()),
        e => CommandError::Unverified(e.to_string()),
    }
}
