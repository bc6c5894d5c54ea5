//! Post-conditions, read from the cluster by the drill itself rather than taken from the
//! engine's own verification: the decoy's effective network access computed from every
//! NetworkPolicy of its namespace, and its labels as the API server returns them; and, around
//! containment, the baseline its rollback must restore.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::spec::PostCondition;
use super::stage::{Stage, decoy_pod};
use super::types::{Check, RUN_LABEL};
use crate::cluster::Cluster;
use crate::cluster::kinds;
use crate::cluster::object::{self, ObjectRef, Selector};

/// Checks every post-condition against the cluster as it is now.
pub async fn check_all(stage: &Stage<'_>, conditions: &[PostCondition]) -> Vec<Check> {
    let mut checks = Vec::new();
    for condition in conditions {
        checks.push(check(stage, condition).await);
    }
    checks
}

async fn check(stage: &Stage<'_>, condition: &PostCondition) -> Check {
    let decoy = condition.decoy();
    let (name, result) = match condition {
        PostCondition::Isolated { .. } => {
            (format!("{decoy} isolated"), isolated(stage, decoy).await)
        }
        PostCondition::Labelled { label, value, .. } => (
            format!(
                "{decoy} labelled {label}{}",
                value
                    .as_deref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default()
            ),
            labelled(stage, decoy, label, value.as_deref()).await,
        ),
    };
    match result {
        Ok(detail) => Check {
            condition: name,
            passed: true,
            detail,
        },
        Err(detail) => Check {
            condition: name,
            passed: false,
            detail,
        },
    }
}

/// Isolated: both directions are isolated by some policy, and nothing admits ingress from any
/// peer at all.
async fn isolated(stage: &Stage<'_>, decoy: &str) -> Result<String, String> {
    let pod = decoy_pod(stage, decoy).await?;
    let access = crate::explain::explain(stage.cluster, &stage.namespace, &pod)
        .await
        .map_err(|e| e.to_string())?;
    let directions = access["directions"].as_array().cloned().unwrap_or_default();
    let mut words = Vec::new();
    for direction in &directions {
        let name = direction["direction"].as_str().unwrap_or("?");
        if direction["isolated"] != Value::Bool(true) {
            return Err(format!("{name} of pod {pod} is not isolated by any policy"));
        }
        let admitting = direction["admitting"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if name == "ingress"
            && let Some(open) = admitting.iter().find(|a| a["peers"] == "any peer")
        {
            return Err(format!(
                "ingress of pod {pod} is open to any peer through {}",
                open["policy"].as_str().unwrap_or("?")
            ));
        }
        let peers: Vec<&str> = admitting
            .iter()
            .filter_map(|a| a["peers"].as_str())
            .collect();
        words.push(format!(
            "{name}: only {}",
            if peers.is_empty() {
                "nothing".to_string()
            } else {
                peers.join("; ")
            }
        ));
    }
    Ok(format!("pod {pod}: {}", words.join(", ")))
}

async fn labelled(
    stage: &Stage<'_>,
    decoy: &str,
    label: &str,
    value: Option<&str>,
) -> Result<String, String> {
    let pod = decoy_pod(stage, decoy).await?;
    let object = stage
        .cluster
        .get(&ObjectRef::new("Pod", Some(&stage.namespace), &pod))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("pod {pod} is gone"))?;
    let found = crate::cluster::object::labels(&object).get(label).cloned();
    match (found, value) {
        (Some(v), Some(want)) if v == want => Ok(format!("pod {pod} has {label}={v}")),
        (Some(v), Some(want)) => Err(format!("pod {pod} has {label}={v}, not {want}")),
        (Some(v), None) => Ok(format!("pod {pod} has {label}={v}")),
        (None, _) => Err(format!("pod {pod} has no label {label}")),
    }
}

/// What containment may change and its rollback must put back, read before containment: the
/// labels of every pod of the run and every NetworkPolicy of the run namespace (its spec).
pub async fn baseline(stage: &Stage<'_>) -> Result<BTreeMap<String, Value>, String> {
    let mut state = BTreeMap::new();
    let kind = |name| kinds::lookup(name).expect("a known kind");
    let run = Selector::labels([(RUN_LABEL.to_string(), stage.run.run_id.clone())].into());
    let pods = stage
        .cluster
        .list(kind("Pod"), Some(&stage.namespace), &run)
        .await
        .map_err(|e| format!("cannot list the run's pods: {e}"))?;
    for pod in pods {
        let name = object::name(&pod).unwrap_or_default();
        state.insert(
            format!("pod {name} labels"),
            pod.pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({})),
        );
    }
    let policies = stage
        .cluster
        .list(
            kind("NetworkPolicy"),
            Some(&stage.namespace),
            &Selector::default(),
        )
        .await
        .map_err(|e| format!("cannot list the run namespace's NetworkPolicies: {e}"))?;
    for policy in policies {
        let name = object::name(&policy).unwrap_or_default();
        state.insert(
            format!("networkpolicy {name}"),
            policy.get("spec").cloned().unwrap_or(Value::Null),
        );
    }
    Ok(state)
}

/// How `after` differs from `before`: what changed or went, and policies that appeared. Pods
/// that appeared are a controller's replicas, not containment's doing.
pub fn differences(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (key, was) in before {
        match after.get(key) {
            None => found.push(format!("{key}: gone")),
            Some(now) if now != was => found.push(format!("{key}: {was} before, {now} now")),
            Some(_) => {}
        }
    }
    for key in after.keys() {
        if key.starts_with("networkpolicy ") && !before.contains_key(key) {
            found.push(format!("{key}: added, still there"));
        }
    }
    found
}
