//! A Kubernetes Event on a step's target: `kubectl describe` and `kubectl get events` then show
//! which run did what to the object, and when.

use serde_json::json;

use super::{Notice, RunContext};
use crate::cluster::object::{self, ObjectRef};
use crate::cluster::{Cluster, ClusterError, WriteMode};

/// Where Events about cluster-scoped objects (a Node) live, as the kubelet's own do.
const CLUSTER_SCOPED_EVENTS: &str = "default";

/// Posts one Event. Its name is derived from the run, step and status, so a resumed run does
/// not post the same Event twice (409 counts as delivered).
pub async fn post(
    cluster: &dyn Cluster,
    context: &RunContext,
    notice: &Notice,
    target: &ObjectRef,
) -> Result<(), String> {
    // `kubectl describe` matches Events by the object's uid too.
    let current = cluster
        .get(target)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{target} no longer exists"))?;
    let uid = object::uid(&current).unwrap_or_default().to_string();
    let api_version = current["apiVersion"].as_str().unwrap_or("v1").to_string();
    let namespace = target
        .namespace
        .clone()
        .unwrap_or_else(|| CLUSTER_SCOPED_EVENTS.to_string());
    let status = if notice.status == "failed" {
        "Failed"
    } else {
        "Done"
    };
    let step = notice.step.clone().unwrap_or_default();
    let name = event_name(&target.name, &context.run, &step, status);
    let now = jiff::Timestamp::now().to_string();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {crate::action::common::RUN_ID_LABEL: context.run}},
        "involvedObject": {"apiVersion": api_version, "kind": target.kind, "name": target.name,
                           "namespace": target.namespace, "uid": uid},
        "reason": format!("ContainStep{status}"),
        "message": format!("contain run {} step {step} ({}): {}", context.run,
                           notice.action.clone().unwrap_or_default(), notice.message),
        "type": if status == "Failed" { "Warning" } else { "Normal" },
        "source": {"component": "contain"},
        "reportingComponent": "contain.dev/contain",
        "reportingInstance": context.user,
        "action": notice.action,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    match cluster.create(&event, WriteMode::Apply).await {
        Ok(_) | Err(ClusterError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The permission posting the plan's Events needs: `create events` where each named target's
/// Events go (part of the role `contain rbac` prints; not asked in the preflight, since a
/// notification never stops a run).
pub fn access(plan: &crate::plan::RunPlan) -> Vec<crate::cluster::Access> {
    plan.steps
        .iter()
        .filter_map(|step| match &step.state {
            crate::plan::run::PlannedState::Planned {
                target: Some(target),
                ..
            } if target.name.is_some() => Some(crate::cluster::Access {
                verb: "create".into(),
                group: String::new(),
                resource: "events".into(),
                subresource: String::new(),
                namespace: Some(
                    target
                        .namespace
                        .clone()
                        .unwrap_or_else(|| CLUSTER_SCOPED_EVENTS.to_string()),
                ),
                name: None,
            }),
            _ => None,
        })
        .collect()
}

/// `<object>.<run>-<step>-<status>`, a valid name of at most 253 characters.
fn event_name(object: &str, run: &str, step: &str, status: &str) -> String {
    let clean = |s: &str| -> String {
        s.to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let mut name = format!(
        "{}.{}-{}-{}",
        clean(object),
        clean(run),
        clean(step),
        status.to_ascii_lowercase()
    );
    if name.len() > 253 {
        name = name[name.len() - 253..]
            .trim_start_matches(['-', '.'])
            .to_string();
    }
    name
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_valid_and_tell_run_step_and_status() {
        let name = super::event_name("web-1", "20261128T051234687Z-6a2e59", "isolate", "Done");
        assert_eq!(name, "web-1.20261128t051234687z-6a2e59-isolate-done");
        let long = super::event_name(&"a".repeat(300), "r", "s", "Done");
        assert!(long.len() <= 253 && long.ends_with("r-s-done"));
    }
}
