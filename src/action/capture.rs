//! `forensics.capture`: collect the evidence about pods before anything destroys it. The plan
//! lists every artifact; a live run streams each one into the step's bundle and seals it with a
//! manifest whose sha256 goes into the journal. Secret values are never collected: Secrets
//! appear by name only (in pod specs and bindings), and `secretKeyRef` values are not resolved.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::common;
use super::{
    Action, ActionError, ActionInfo, Observed, StepInput, TargetRule, Verification, decode_with,
    schema_of,
};
use crate::cluster::object::ObjectRef;
use crate::plan::op::CaptureSource;
use crate::plan::{Op, Reversibility, StepPlan};

pub struct Capture;

static INFO: ActionInfo = ActionInfo {
    name: "forensics.capture",
    summary: "Capture pods' specs, owners, events, logs, node, policies, bindings, exec output and checkpoints into a hashed evidence bundle.",
    changes: "nothing in the cluster (read-only); writes the evidence bundle on the local disk",
    undo: "nothing to undo",
    reversible: true,
    destroys_evidence: false,
    target: TargetRule::Required(&[
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
    ]),
    outputs: &[
        ("bundle", "directory of the evidence bundle"),
        ("manifest_sha256", "sha256 of the bundle's manifest.json"),
        ("artifacts", "how many artifacts were collected"),
        ("pods", "the pods captured, as namespace/name"),
        ("archive", "the .tar.gz, with `archive: true`"),
        ("archive_sha256", "its sha256"),
    ],
};

/// A command to run in each captured pod.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// Short name, used for the artifact's file name.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    pub command: Vec<String>,
    /// Container to run in (default: the pod's first container).
    #[serde(default)]
    pub container: Option<String>,
    /// How long the command may take (default 10s).
    #[serde(default)]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

fn yes() -> bool {
    true
}

/// `with` of `forensics.capture`.
#[derive(Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureWith {
    /// Logs of every container, init and ephemeral container (default true).
    #[serde(default = "yes")]
    pub logs: bool,
    /// Also the logs of the previous instance of each container (default true).
    #[serde(default = "yes")]
    pub previous_logs: bool,
    /// Ask the kubelet for a checkpoint of each container (default true; recorded as not
    /// supported where the cluster does not offer it).
    #[serde(default = "yes")]
    pub checkpoint: bool,
    /// Commands to run in each pod; a missing binary is a recorded result, not a failure.
    #[serde(default)]
    pub exec: Vec<ExecSpec>,
    /// Also pack the bundle as `.tar.gz`, with its sha256 beside it.
    #[serde(default)]
    pub archive: bool,
}

/// Every container name of a pod: init, regular and ephemeral.
fn containers(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| {
            pod.pointer(&format!("/spec/{field}"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

impl Action for Capture {
    fn info(&self) -> &'static ActionInfo {
        &INFO
    }

    fn with_schema(&self) -> Value {
        schema_of::<CaptureWith>()
    }

    fn plan(&self, input: &StepInput, seen: &Observed) -> Result<StepPlan, ActionError> {
        let with: CaptureWith = decode_with(&input.with)?;
        let target = input.required_target()?;
        let mut owners = Vec::new();
        let pods = if target.kind.kind == "Pod" {
            common::observe(target, seen)?
        } else {
            let workload = common::observe(target, seen)?.remove(0);
            let owned = super::owned::pods_of(seen, &workload)?;
            if owned.is_empty() {
                return Err(ActionError::NoMatch(format!("pods owned by {target}")));
            }
            owners = owned
                .iter()
                .map(|o| format!("owned: {}", o.describe()))
                .collect();
            owned.into_iter().map(|o| o.pod).collect()
        };
        let mut ops = Vec::new();
        let mut captured = Vec::new();
        for pod in &pods {
            let pod_ref = ObjectRef::of(pod).expect("observed objects have names");
            let namespace = pod_ref.namespace.clone().unwrap_or_default();
            let base = format!("{namespace}/{}", pod_ref.name);
            captured.push(Value::from(base.clone()));
            let mut add = |artifact: String, source: CaptureSource| {
                ops.push(Op::Capture {
                    artifact: format!("{base}/{artifact}"),
                    source,
                })
            };
            add(
                "pod.json".into(),
                CaptureSource::Object {
                    target: pod_ref.clone(),
                },
            );
            add(
                "owners.json".into(),
                CaptureSource::Owners {
                    pod: pod_ref.clone(),
                },
            );
            add(
                "events.json".into(),
                CaptureSource::Events {
                    namespace: Some(namespace.clone()),
                    kind: "Pod".into(),
                    name: pod_ref.name.clone(),
                },
            );
            add(
                "networkpolicies.json".into(),
                CaptureSource::Policies {
                    pod: pod_ref.clone(),
                },
            );
            let account = pod
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            let account_ref = ObjectRef::new("ServiceAccount", Some(&namespace), account);
            add(
                "serviceaccount.json".into(),
                CaptureSource::Object {
                    target: account_ref.clone(),
                },
            );
            add(
                "serviceaccount-bindings.json".into(),
                CaptureSource::Bindings {
                    account: account_ref,
                },
            );
            let node = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(node) = &node {
                add(
                    "node.json".into(),
                    CaptureSource::Object {
                        target: ObjectRef::new("Node", None, node),
                    },
                );
                add(
                    "node-events.json".into(),
                    CaptureSource::Events {
                        namespace: None,
                        kind: "Node".into(),
                        name: node.clone(),
                    },
                );
            }
            let names = containers(pod);
            for container in &names {
                if with.logs {
                    add(
                        format!("logs/{container}.log"),
                        CaptureSource::Logs {
                            pod: pod_ref.clone(),
                            container: container.clone(),
                            previous: false,
                        },
                    );
                    if with.previous_logs {
                        add(
                            format!("logs/{container}.previous.log"),
                            CaptureSource::Logs {
                                pod: pod_ref.clone(),
                                container: container.clone(),
                                previous: true,
                            },
                        );
                    }
                }
                if with.checkpoint
                    && let Some(node) = &node
                {
                    add(
                        format!("checkpoints/{container}.json"),
                        CaptureSource::Checkpoint {
                            node: node.clone(),
                            pod: pod_ref.clone(),
                            container: container.clone(),
                        },
                    );
                }
            }
            let default_container = pod
                .pointer("/spec/containers/0/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            for exec in &with.exec {
                let timeout = exec
                    .timeout
                    .as_deref()
                    .and_then(crate::duration::parse_duration)
                    .unwrap_or(std::time::Duration::from_secs(10));
                add(
                    format!("exec/{}.json", exec.name),
                    CaptureSource::Exec {
                        pod: pod_ref.clone(),
                        container: exec
                            .container
                            .clone()
                            .unwrap_or_else(|| default_container.clone()),
                        command: exec.command.clone(),
                        timeout_millis: timeout.as_millis() as u64,
                    },
                );
            }
        }
        let artifacts = ops.len();
        ops.push(Op::Seal {
            archive: with.archive,
        });
        let mut outputs = serde_json::Map::new();
        outputs.insert("pods".into(), Value::Array(captured));
        Ok(StepPlan {
            step: input.step_id.clone(),
            action: INFO.name.to_string(),
            summary: format!(
                "capture {artifacts} artifact(s) from {} pod(s) of {target}",
                pods.len()
            ),
            ops,
            inverse: Vec::new(),
            reversibility: Reversibility::Reversible,
            notes: std::iter::once(
                "read-only: nothing in the cluster changes; Secret values are never collected"
                    .to_string(),
            )
            .chain(owners)
            .collect(),
            outputs,
        })
    }

    fn verify(
        &self,
        _input: &StepInput,
        plan: &StepPlan,
        seen: &Observed,
    ) -> Result<Verification, ActionError> {
        let mut verification = Verification::default();
        let Some(bundle) = plan.outputs.get("bundle").and_then(Value::as_str) else {
            verification.not_checked(
                "the evidence bundle matches its manifest",
                "no bundle: only live runs capture evidence",
            );
            return Ok(verification);
        };
        // The bundle is re-hashed by the executor, which owns the evidence store.
        match seen.bundle(bundle)? {
            Ok(check) => {
                let recorded = plan.outputs.get("manifest_sha256").and_then(Value::as_str);
                let empty = |field: &str| check[field].as_array().is_none_or(Vec::is_empty);
                verification.check(
                    format!(
                        "the bundle's {} artifacts match their manifest",
                        check["artifacts"]
                    ),
                    empty("changed") && empty("vanished") && empty("appeared"),
                    None,
                );
                if let Some(signature) = check.get("signature").filter(|s| !s.is_null()) {
                    verification.check(
                        "the manifest's signature holds",
                        signature["valid"] == true,
                        signature["detail"].as_str().map(str::to_string),
                    );
                }
                verification.check(
                    "the manifest is the one sealed",
                    recorded.is_some() && recorded == check["manifest_sha256"].as_str(),
                    None,
                );
            }
            Err(e) => verification.check("the evidence bundle verifies", false, Some(e.clone())),
        }
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fixture::{
        cluster, input, named, namespace, plan, pod, replica_set, selected, shown,
    };
    use super::*;

    #[test]
    fn a_capture_collects_the_pod_its_context_and_every_container_and_seals_the_bundle() {
        let sim = cluster(vec![
            namespace("shop"),
            pod("shop", "web-1", json!({"app": "web"}), None),
        ]);
        let step = input(
            "evidence",
            Some(named("Pod", Some("shop"), "web-1")),
            json!({}),
        );
        let planned = plan(&Capture, &step, &sim).unwrap();
        let text = shown(&planned);
        for line in [
            "> capture Pod shop/web-1 → shop/web-1/pod.json",
            "> capture controller chain of Pod shop/web-1 → shop/web-1/owners.json",
            "> capture ServiceAccount shop/web → shop/web-1/serviceaccount.json",
            "> capture logs of Pod shop/web-1 container app → shop/web-1/logs/app.log",
            "> capture previous logs of Pod shop/web-1 container app",
            "> capture checkpoint of Pod shop/web-1 container app",
            "> seal the bundle: manifest.json, its sha256 into the journal",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert!(matches!(
            planned.ops.last(),
            Some(Op::Seal { archive: false })
        ));
        assert!(
            planned.ops.iter().all(|op| !op.is_write()),
            "read-only: {text}"
        );
        assert_eq!(planned.outputs["pods"], json!(["shop/web-1"]));
    }

    #[test]
    fn the_options_leave_out_what_they_turn_off_and_a_workload_captures_its_pods() {
        let sim = cluster(vec![
            namespace("shop"),
            super::super::fixture::deployment(),
            replica_set(),
            pod(
                "shop",
                "web-1",
                json!({"app": "web"}),
                Some(("ReplicaSet", "web-5d9")),
            ),
            pod(
                "shop",
                "web-2",
                json!({"app": "web"}),
                Some(("ReplicaSet", "web-5d9")),
            ),
        ]);
        let step = input(
            "evidence",
            Some(named("Deployment", Some("shop"), "web")),
            json!({"logs": false, "previous_logs": false, "checkpoint": false, "archive": true}),
        );
        let planned = plan(&Capture, &step, &sim).unwrap();
        let text = shown(&planned);
        assert!(
            !text.contains("logs of") && !text.contains("checkpoint of"),
            "{text}"
        );
        assert_eq!(planned.outputs["pods"], json!(["shop/web-1", "shop/web-2"]));
        assert!(matches!(
            planned.ops.last(),
            Some(Op::Seal { archive: true })
        ));
        // A selector that matches nothing leaves nothing to capture.
        let none = input(
            "evidence",
            Some(selected("Pod", "shop", &[("app", "none")])),
            json!({}),
        );
        assert!(matches!(
            plan(&Capture, &none, &sim),
            Err(ActionError::NoMatch(_))
        ));
    }
}
