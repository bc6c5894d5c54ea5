//! `workload.redeploy`: bring a workload back clean, from images pinned by digest whose cosign
//! signature is verified before any pod template changes. A tag is resolved to its digest
//! through the registry; the plan shows old → new image per container; the apply verifies the
//! signature again right before the patch, then waits for the rollout.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::common;
use super::{
    Action, ActionError, ActionInfo, Observed, StaticPlace, StaticProblem, StaticStep, StepInput,
    TargetRule, Verification, decode_with, schema_of,
};
use crate::cluster::merge;
use crate::cluster::object::ObjectRef;
use crate::plan::{Op, Reversibility, StepPlan};
use crate::registry::ImageRef;

pub struct Redeploy;

static INFO: ActionInfo = ActionInfo {
    name: "workload.redeploy",
    summary: "Redeploy a workload from images pinned by digest, after verifying their cosign signatures.",
    changes: "the image of the named containers in the pod template (repo@sha256:…); the controller rolls the pods",
    undo: "restores the previous images in the pod template and waits for that rollout",
    reversible: true,
    // A redeploy replaces every pod of the workload, and with them their evidence.
    destroys_evidence: true,
    target: TargetRule::Required(&["Deployment", "StatefulSet", "DaemonSet"]),
    outputs: &[
        ("images", "container → the pinned image deployed"),
        ("previous", "container → the image it replaced"),
        (
            "verified_by",
            "container → the key that verified its signature",
        ),
    ],
};

/// One container and the image to run in it.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerImage {
    pub name: String,
    /// `repo:tag` is resolved to its digest; `repo@sha256:…` is kept.
    pub image: String,
}

/// `with` of `workload.redeploy`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeployWith {
    /// The containers to redeploy (a list, so that names can come from params).
    #[schemars(length(min = 1))]
    pub containers: Vec<ContainerImage>,
    /// Files holding the ECDSA P-256 public keys (PEM) that may have signed the images; any one
    /// suffices. Relative paths are relative to the working directory.
    #[schemars(length(min = 1))]
    pub keys: Vec<String>,
    /// Docker config.json with registry credentials (default: $DOCKER_CONFIG or ~/.docker).
    #[serde(default)]
    pub registry_config: Option<String>,
    /// How long to wait for the rollout (default 5m).
    #[serde(default)]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub rollout_timeout: Option<String>,
}

fn named_twice(container: &str) -> String {
    format!("container `{container}` is named twice")
}

fn image_path(container: &str) -> Vec<String> {
    ["spec", "template", "spec", "containers"]
        .iter()
        .map(|s| s.to_string())
        .chain([merge::keyed("name", container), "image".to_string()])
        .collect()
}

impl Action for Redeploy {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<RedeployWith>()
    }

    /// It acts on one object, named by the target.
    fn one_object(&self) -> bool {
        true
    }

    fn check_static(&self, step: &StaticStep) -> Vec<StaticProblem> {
        let literal = super::literal;
        let mut problems = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        let containers = step.with.get("containers").and_then(Value::as_array);
        for container in containers.into_iter().flatten() {
            if let Some(name) = container.get("name").and_then(literal)
                && !names.insert(name)
            {
                problems.push(StaticProblem::at(
                    StaticPlace::With("containers"),
                    named_twice(name),
                ));
            }
            if let Some(image) = container.get("image").and_then(literal)
                && let Err(e) = ImageRef::parse(image)
            {
                problems.push(StaticProblem::at(
                    StaticPlace::With("containers"),
                    e.to_string(),
                ));
            }
        }
        problems
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let with: RedeployWith = decode_with(&input.with)?;
        let mut requested = BTreeMap::new();
        for c in &with.containers {
            if requested.insert(c.name.clone(), c.image.clone()).is_some() {
                return Err(ActionError::InvalidParams(named_twice(&c.name)));
            }
        }
        if requested.is_empty() {
            return Err(ActionError::InvalidParams(
                "`containers` names no container".into(),
            ));
        }
        let keys = seen
            .key_files(&with.keys)?
            .clone()
            .map_err(ActionError::InvalidParams)?;
        let workload = common::observe_named(input, INFO.name, seen)?;
        let workload_ref = ObjectRef::of(&workload).expect("observed objects have names");
        // A snapshot has no registry: the signature is checked when the run is live.
        let live = !seen.simulated();
        let mut wanted = Vec::new();
        let mut ops = Vec::new();
        let mut notes = Vec::new();
        let (mut images, mut previous, mut verified_by) = (
            serde_json::Map::new(),
            serde_json::Map::new(),
            serde_json::Map::new(),
        );
        for (container, image) in &requested {
            let current = merge::get(&workload, &image_path(container))
                .cloned()
                .ok_or_else(|| {
                    ActionError::InvalidParams(format!(
                        "{workload_ref} has no container `{container}`"
                    ))
                })?;
            let reference =
                ImageRef::parse(image).map_err(|e| ActionError::InvalidParams(e.to_string()))?;
            let pinned = match live {
                // Resolve, then verify before anything is planned: an unsigned or wrongly
                // signed image stops the plan, so nothing is ever written for it.
                true => {
                    let verified = seen
                        .signature(image, &keys, with.registry_config.as_deref())?
                        .clone()
                        .map_err(ActionError::Refused)?;
                    let digest = verified.digest;
                    notes.push(format!(
                        "{container}: {image} is {digest}, signed (verified with {})",
                        verified.key
                    ));
                    verified_by.insert(container.clone(), Value::from(verified.key));
                    reference.pinned(&digest)
                }
                false => {
                    notes.push(format!("{container}: tabletop: {image} would be resolved to its digest and its signature verified"));
                    match &reference.digest {
                        Some(digest) => reference.pinned(digest),
                        None => format!("{reference}@sha256:<resolved at run time>"),
                    }
                }
            };
            previous.insert(container.clone(), current.clone());
            images.insert(container.clone(), Value::from(pinned.clone()));
            if current.as_str() != Some(pinned.as_str()) {
                if live {
                    ops.push(Op::VerifyImage {
                        image: pinned.clone(),
                        keys: keys.iter().map(|(_, pem)| pem.clone()).collect(),
                        registry_config: with.registry_config.clone(),
                    });
                }
                wanted.push((image_path(container), Some(Value::from(pinned))));
            }
        }
        let timeout = with
            .rollout_timeout
            .as_deref()
            .and_then(crate::duration::parse_duration)
            .unwrap_or(Duration::from_secs(300));
        let mut inverse = Vec::new();
        if let Some((patch, undo)) =
            common::patch_pair(&workload, common::changes_for(&workload, &wanted))
        {
            ops.push(patch);
            ops.push(Op::WaitRollout {
                target: workload_ref.clone(),
                timeout_millis: timeout.as_millis() as u64,
            });
            inverse.push(undo);
            inverse.push(Op::WaitRollout {
                target: workload_ref.clone(),
                timeout_millis: timeout.as_millis() as u64,
            });
        } else {
            notes.push("every container already runs the pinned image".into());
        }
        let mut outputs = serde_json::Map::new();
        outputs.insert("images".into(), Value::Object(images));
        outputs.insert("previous".into(), Value::Object(previous));
        outputs.insert("verified_by".into(), Value::Object(verified_by));
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: format!("redeploy {workload_ref} from signed digests"),
            ops,
            inverse,
            reversibility: Reversibility::Reversible,
            notes,
            outputs,
        })
    }

    fn verify(
        &self,
        _input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let mut verification = common::verify_patches(&plan.ops, seen)?;
        let Some(target) = plan.ops.iter().find_map(|op| match op {
            Op::WaitRollout { target, .. } => Some(target.clone()),
            _ => None,
        }) else {
            return Ok(verification);
        };
        if seen.simulated() {
            verification.not_checked(
                "the rollout completes",
                "a simulated cluster runs no controllers",
            );
            return Ok(verification);
        }
        let workload = seen.get(&target)?.cloned().unwrap_or(Value::Null);
        let (done, detail) = super::rollout::status(&workload);
        verification.check(
            format!("the rollout of {target} is complete"),
            done,
            Some(detail),
        );
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{cluster, input, named, namespace, plan, shown};
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A cosign public key, written where the step can read it.
    fn key_file(dir: &std::path::Path) -> String {
        use p256::pkcs8::EncodePublicKey;
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = key
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        let path = dir.join("cosign.pub");
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    }

    fn deployment() -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}}})
    }

    fn redeploy(containers: Value) -> Result<StepPlan, ActionError> {
        let dir = tempfile::tempdir().unwrap();
        let step = input(
            "redeploy",
            Some(named("Deployment", Some("shop"), "web")),
            json!({"containers": containers, "keys": [key_file(dir.path())]}),
        );
        plan(
            &Redeploy,
            &step,
            &cluster(vec![namespace("shop"), deployment()]),
        )
    }

    #[test]
    fn a_redeploy_pins_each_container_to_its_digest_and_the_undo_restores_the_template() {
        let image = format!("registry.example/app@{DIGEST}");
        let planned = redeploy(json!([{"name": "app", "image": image}])).unwrap();
        let text = shown(&planned);
        assert!(
            text.contains(&format!(
                r#"spec.template.spec.containers[name=app].image: "registry.example/app:1" → "{image}""#
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                r#"spec.template.spec.containers[name=app].image: "{image}" → "registry.example/app:1""#
            )),
            "{text}"
        );
        assert_eq!(
            planned.outputs["previous"],
            json!({"app": "registry.example/app:1"})
        );
    }

    #[test]
    fn a_container_the_workload_does_not_have_is_refused() {
        let refused =
            redeploy(json!([{"name": "sidecar", "image": format!("registry.example/s@{DIGEST}")}]))
                .unwrap_err()
                .to_string();
        assert!(refused.contains("has no container `sidecar`"), "{refused}");
    }
}
