//! When a workload's rollout is complete, read from its status the way `kubectl rollout
//! status` does.

use serde_json::Value;

/// Whether the rollout of a Deployment, StatefulSet or DaemonSet is complete, and where it is.
pub fn status(workload: &Value) -> (bool, String) {
    let int = |pointer: &str| {
        workload
            .pointer(pointer)
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let generation = int("/metadata/generation");
    let observed = int("/status/observedGeneration");
    if observed < generation {
        return (
            false,
            format!("the controller has not seen generation {generation} yet"),
        );
    }
    match workload
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "Deployment" => {
            let want = workload
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let (updated, total, available) = (
                int("/status/updatedReplicas"),
                int("/status/replicas"),
                int("/status/availableReplicas"),
            );
            let done = updated == want && total == want && available == want;
            (
                done,
                format!("{updated}/{want} updated, {available} available, {total} in all"),
            )
        }
        "StatefulSet" => {
            let want = workload
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let (updated, ready) = (int("/status/updatedReplicas"), int("/status/readyReplicas"));
            let same_revision = workload.pointer("/status/currentRevision")
                == workload.pointer("/status/updateRevision");
            (
                updated == want && ready == want && same_revision,
                format!("{updated}/{want} updated, {ready} ready"),
            )
        }
        "DaemonSet" => {
            let want = int("/status/desiredNumberScheduled");
            let (updated, available) = (
                int("/status/updatedNumberScheduled"),
                int("/status/numberAvailable"),
            );
            (
                updated == want && available == want,
                format!("{updated}/{want} updated, {available} available"),
            )
        }
        other => (false, format!("{other} has no rollout")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_deployment_is_done_when_every_replica_is_new_and_available() {
        let mut d = json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3, "availableReplicas": 2}});
        assert!(!status(&d).0, "an old pod is still there");
        d["status"]["replicas"] = json!(2);
        assert!(status(&d).0);
        d["metadata"]["generation"] = json!(3);
        assert!(!status(&d).0, "the controller has not caught up");
    }
}
