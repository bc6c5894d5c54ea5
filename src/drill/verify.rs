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

/// Checks every post-condition against the cluster as it is now. `canaries`: the tokens minted
/// for decoys' accounts before containment (kept in memory only), by decoy.
pub async fn check_all(
    stage: &Stage<'_>,
    conditions: &[PostCondition],
    canaries: &BTreeMap<String, String>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    for condition in conditions {
        checks.push(check(stage, condition, canaries).await);
    }
    checks
}

async fn check(
    stage: &Stage<'_>,
    condition: &PostCondition,
    canaries: &BTreeMap<String, String>,
) -> Check {
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
        PostCondition::Revoked { .. } => (
            format!("{decoy}'s ServiceAccount revoked"),
            revoked(stage, decoy, canaries.get(decoy)).await,
        ),
        PostCondition::Suspended { .. } => {
            (format!("{decoy} suspended"), suspended(stage, decoy).await)
        }
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

/// Revoked: the API server says the decoy's account may do nothing sensitive beyond what
/// every authenticated identity may, and its pre-containment token no longer authenticates
/// (asked again for up to 30 s: the API server caches token authentications briefly).
async fn revoked(
    stage: &Stage<'_>,
    decoy: &str,
    canary: Option<&String>,
) -> Result<String, String> {
    use crate::action::reach;
    let account = stage.object_name(decoy);
    let identity = reach::service_account(&stage.namespace, &account);
    let checks = reach::sensitive(&stage.namespace);
    let review = |user: crate::cluster::UserInfo| {
        let checks = checks.clone();
        async move { stage.cluster.review_subject_access(&user, &checks).await }
    };
    let theirs = review(identity.clone()).await.map_err(|e| e.to_string())?;
    let everyone = review(reach::baseline()).await.map_err(|e| e.to_string())?;
    let left: Vec<String> = theirs
        .iter()
        .zip(&everyone)
        .filter(|(t, e)| t.allowed && !e.allowed)
        .map(|(t, _)| t.access.to_string())
        .collect();
    if !left.is_empty() {
        return Err(format!(
            "{} may still {}",
            identity.username,
            left.join("; ")
        ));
    }
    let Some(token) = canary else {
        return Err(
            "no canary token was minted before containment (the drill was resumed after it)".into(),
        );
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let verdict = stage
            .cluster
            .review_token(token)
            .await
            .map_err(|e| e.to_string())?;
        if !verdict.authenticated {
            return Ok(format!(
                "{} may do nothing sensitive ({} permissions asked); its token from before containment is rejected",
                identity.username,
                checks.len()
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "a token of {} minted before containment still authenticates",
                identity.username
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Suspended: no pod of the decoy's Deployment runs (one being deleted does not count).
async fn suspended(stage: &Stage<'_>, decoy: &str) -> Result<String, String> {
    let name = stage.object_name(decoy);
    let deployment = stage
        .cluster
        .get(&ObjectRef::new("Deployment", Some(&stage.namespace), &name))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("Deployment {name} is gone"))?;
    let owned = crate::cluster::observe::decide(stage.cluster, |seen| {
        crate::action::owned::pods_of(seen, &deployment).map_err(crate::action::ActionError::from)
    })
    .await
    .map_err(|e| e.to_string())?;
    let running: Vec<String> = owned
        .iter()
        .filter(|o| o.pod.pointer("/metadata/deletionTimestamp").is_none())
        .filter_map(|o| object::name(&o.pod).map(str::to_string))
        .collect();
    if running.is_empty() {
        Ok(format!("Deployment {name} runs no pod"))
    } else {
        Err(format!(
            "Deployment {name} still runs {}",
            running.join(", ")
        ))
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
