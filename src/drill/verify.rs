//! Post-conditions, read from the cluster by the drill itself rather than taken from the
//! engine's own verification: the decoy's effective network access computed from every
//! NetworkPolicy of its namespace, and its labels as the API server returns them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::spec::PostCondition;
use super::warmup::Stage;
use crate::cluster::Cluster;
use crate::cluster::object::ObjectRef;

/// One post-condition's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub condition: String,
    pub passed: bool,
    pub detail: String,
}

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
    let pod = super::detonate::decoy_pod(stage, decoy).await?;
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
    let pod = super::detonate::decoy_pod(stage, decoy).await;
    // A detached pod leaves its Deployment's selector: look for it by the run label as well.
    let pod = match pod {
        Ok(pod) => pod,
        Err(e) => return Err(e),
    };
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
