//! The abuse patterns a drill detonates, each stamped with the run id (the User-Agent of every
//! request, and the name of every object it creates), and how the cluster answered: executed,
//! refused by admission (the control PREVENTED it), or failed for another reason.

use jiff::Timestamp;

use serde_json::{Value, json};

use super::spec::{Detonation, Pattern};
use super::stage::{Stage, decoy_pod, toleration_all};
use super::types::{Detonated, Effect};
use crate::cluster::object::ObjectRef;
use crate::cluster::{Cluster, ClusterError, WriteMode, kinds};

/// Detonates one pattern.
pub async fn detonate(stage: &Stage<'_>, detonation: &Detonation) -> Detonated {
    let at = Timestamp::now();
    let effect = match &detonation.abuse {
        Pattern::PrivilegedPod {
            image,
            node_selector,
            tolerate_all,
        }
        | Pattern::ForeignRegistryPod {
            image,
            node_selector,
            tolerate_all,
        } => {
            // The privileged pod asks for the host's processes and every capability; the
            // foreign one is harmless but for where its image comes from.
            let privileged = matches!(detonation.abuse, Pattern::PrivilegedPod { .. });
            let security = if privileged {
                json!({"privileged": true})
            } else {
                json!({"allowPrivilegeEscalation": false})
            };
            let pod = pod_spec(
                stage,
                &detonation.id,
                image,
                node_selector,
                *tolerate_all,
                security,
                privileged,
            );
            create_pod(stage, pod).await
        }
        Pattern::ExecBurst {
            decoy,
            count,
            command,
        } => exec_burst(stage, decoy, *count, command).await,
        Pattern::TokenMisuse {
            decoy,
            against_namespace,
        } => {
            let against = against_namespace
                .clone()
                .unwrap_or_else(|| stage.target_namespace.clone());
            token_misuse(stage, decoy, &against).await
        }
    };
    Detonated {
        id: detonation.id.clone(),
        pattern: detonation.abuse.name().into(),
        phase: detonation.phase,
        at,
        effect,
    }
}

fn pod_spec(
    stage: &Stage<'_>,
    id: &str,
    image: &str,
    node_selector: &indexmap::IndexMap<String, String>,
    tolerate_all: bool,
    security: Value,
    host_pid: bool,
) -> Value {
    let mut spec = json!({
        "containers": [{"name": "app", "image": image, "securityContext": security}],
        "hostPID": host_pid,
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": 0,
    });
    if !node_selector.is_empty() {
        spec["nodeSelector"] = json!(node_selector);
    }
    if tolerate_all {
        spec["tolerations"] = json!([toleration_all()]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": stage.object_name(id),
            "namespace": stage.namespace,
            "labels": stage.labels(),
        },
        "spec": spec,
    })
}

/// A create refused by admission is prevention; one refused by RBAC is the drill's own
/// misconfiguration, not a control.
fn refusal(error: &ClusterError) -> Effect {
    match error {
        ClusterError::Forbidden { message, .. } | ClusterError::Invalid { message, .. }
            if !message.contains("cannot create resource") =>
        {
            Effect::Refused {
                message: message.clone(),
            }
        }
        other => Effect::Failed {
            message: other.to_string(),
        },
    }
}

async fn create_pod(stage: &Stage<'_>, mut pod: Value) -> Effect {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    if let Err(e) = stage.journal_create("Pod", &name) {
        return Effect::Failed { message: e };
    }
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
    pod["metadata"]["namespace"] = json!(stage.namespace);
    match stage.cluster.create(&pod, WriteMode::Apply).await {
        Ok(_) => Effect::Executed {
            detail: format!("created pod {}/{name}", stage.namespace),
        },
        // A resumed drill detonates again what it had not recorded: the pod made it in then.
        Err(ClusterError::AlreadyExists { .. }) => Effect::Executed {
            detail: format!(
                "created pod {}/{name} (before the drill was resumed)",
                stage.namespace
            ),
        },
        Err(e) => refusal(&e),
    }
}

async fn exec_burst(stage: &Stage<'_>, decoy: &str, count: u32, command: &[String]) -> Effect {
    let pod = match decoy_pod(stage, decoy).await {
        Ok(pod) => pod,
        Err(message) => return Effect::Failed { message },
    };
    let target = ObjectRef::new("Pod", Some(&stage.namespace), &pod);
    let mut done = 0;
    let mut last_error = None;
    for _ in 0..count {
        match stage.cluster.exec(&target, "app", command).await {
            Ok(_) => done += 1,
            Err(e) => last_error = Some(e.to_string()),
        }
    }
    match (done, last_error) {
        (0, Some(error)) if error.contains("forbidden") || error.contains("denied") => {
            Effect::Refused { message: error }
        }
        (0, error) => Effect::Failed {
            message: error.unwrap_or_else(|| "no exec ran".into()),
        },
        (done, _) => Effect::Executed {
            detail: format!(
                "{done} of {count} exec calls into {}/{pod}",
                stage.namespace
            ),
        },
    }
}

/// Mints a token for the decoy's ServiceAccount and lists Secrets with it in another
/// namespace, as an intruder who read the token from the pod would.
async fn token_misuse(stage: &Stage<'_>, decoy: &str, against: &str) -> Effect {
    let account = ObjectRef::new(
        "ServiceAccount",
        Some(&stage.namespace),
        &stage.object_name(decoy),
    );
    let token = match stage.cluster.request_token(&account, 600, None).await {
        Ok(token) => token,
        Err(e) => {
            return Effect::Failed {
                message: e.to_string(),
            };
        }
    };
    let intruder = match stage.cluster_with_token(&token) {
        Ok(intruder) => intruder,
        Err(message) => return Effect::Failed { message },
    };
    let secrets = kinds::lookup("Secret").expect("a known kind");
    match intruder.probe_list(secrets, Some(against)).await {
        Ok(_) => Effect::Executed {
            detail: format!(
                "the token of {account} listed Secrets in {against}: it should not be able to (RBAC gap)"
            ),
        },
        Err(ClusterError::Forbidden { .. }) => Effect::Executed {
            detail: format!(
                "the token of {account} was used against {against} and refused by RBAC (403), as it should be"
            ),
        },
        Err(e) => Effect::Failed {
            message: format!("the stolen token's request to {against} got no answer: {e}"),
        },
    }
}
