//! The engine on SimCluster: plans, idempotent and guarded apply, failure policies, rollback.

use contain::cluster::object::{self, ObjectRef};
use contain::cluster::sim::SimCluster;
use contain::cluster::{Cluster, WriteMode};
use contain::event::{EventKind, Outcome, Recorder, RollbackOutcome};
use contain::execute::apply::{self, ApplyError, AutoApprove, Carry};
use contain::execute::{Executor, Mode, RunConfig};
use contain::plan::{FieldChange, Op};
use contain::playbook::load::{bind_params, load_bytes};
use contain::source::Source;
use serde_json::json;

use crate::harness::{Contain, repo};

const POD: &str = "web-fjejlcldef-x7k2p";

fn snapshot() -> SimCluster {
    let text = std::fs::read_to_string(repo("examples/snapshots/cluster.yaml")).unwrap();
    SimCluster::load(&Source::new("cluster.yaml", text)).unwrap()
}

fn pod_ref() -> ObjectRef {
    ObjectRef::new("Pod", Some("shop"), POD)
}

async fn run(sim: &SimCluster, playbook: &str, set: &[&str]) -> (Outcome, Vec<EventKind>) {
    run_as(Mode::Tabletop, sim, playbook, set).await
}

/// A run in `mode`; `Live` against a SimCluster really sleeps and times out (on a paused clock).
async fn run_as(
    mode: Mode,
    sim: &SimCluster,
    playbook: &str,
    set: &[&str],
) -> (Outcome, Vec<EventKind>) {
    let loaded =
        load_bytes("test.yaml", playbook.as_bytes().to_vec()).unwrap_or_else(|e| panic!("{e:?}"));
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let params = bind_params(&loaded, &set).unwrap_or_else(|e| panic!("{e:?}"));
    let mut recorder = Recorder::default();
    let config = RunConfig::new("test-run", mode, params, "test.yaml");
    let result = Executor::new(sim, &mut recorder, &mut AutoApprove)
        .run(&loaded, &config)
        .await
        .unwrap();
    (
        result.outcome,
        recorder.events.into_iter().map(|e| e.kind).collect(),
    )
}

const LABEL_THEN_FAIL: &str = r#"
apiVersion: contain/v1
kind: Playbook
metadata: {name: t}
on_failure: rollback
steps:
  - id: mark
    action: object.label
    target: {kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}
    with: {labels: {contain.dev/suspect: "true", app.kubernetes.io/name: quarantined}}
  - id: wait-never
    action: wait
    target: {kind: Deployment, name: web, namespace: shop}
    with: {field: status.phase, equals: Never, timeout: 1s}
"#;

#[tokio::test]
async fn rollback_restores_labels_after_a_failed_step() {
    let sim = snapshot();
    let before = sim.get(&pod_ref()).await.unwrap().unwrap();
    let (outcome, events) = run(&sim, LABEL_THEN_FAIL, &[]).await;
    assert!(
        matches!(outcome, Outcome::RolledBack { ref step, .. } if step == "wait-never"),
        "{outcome:?}"
    );
    assert!(events.iter().any(|e| matches!(e, EventKind::RollbackStep { step, outcome } if step == "mark" && *outcome == RollbackOutcome::Undone)));
    let after = sim.get(&pod_ref()).await.unwrap().unwrap();
    assert_eq!(
        object::labels(&after),
        object::labels(&before),
        "labels restored exactly"
    );
}

#[tokio::test]
async fn continue_policy_goes_on_and_when_skips() {
    let playbook = r#"
apiVersion: contain/v1
kind: Playbook
metadata: {name: t}
params:
  scale: {type: bool, default: false}
steps:
  - id: missing
    action: object.label
    target: {kind: Pod, name: nope, namespace: shop}
    with: {labels: {a: b}}
    on_failure: continue
  - id: maybe-scale
    action: workload.scale
    when: params.scale
    target: {kind: Deployment, name: web, namespace: shop}
    with: {replicas: 0}
    evidence: {waived: test}
  - id: mark
    action: object.annotate
    target: {kind: Deployment, name: web, namespace: shop}
    with: {annotations: {note: "{{ steps.missing.status }}"}}
"#;
    let sim = snapshot();
    let (outcome, events) = run(&sim, playbook, &[]).await;
    // The run went on past the failed step, and still ends failed: never "succeeded".
    assert!(
        matches!(&outcome, Outcome::Failed { step, continued: true, .. } if step == "missing"),
        "{outcome:?}"
    );
    assert_eq!(outcome.exit_code(), contain::exit::STEP_FAILED);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::StepFailed { step, .. } if step == "missing"))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::StepSkipped { step, .. } if step == "maybe-scale"))
    );
    let deploy = sim
        .get(&ObjectRef::new("Deployment", Some("shop"), "web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deploy["spec"]["replicas"], json!(3));
    assert_eq!(deploy["metadata"]["annotations"]["note"], json!("failed"));
}

#[tokio::test]
async fn scale_outputs_feed_later_steps_and_undo_restores() {
    let playbook = r#"
apiVersion: contain/v1
kind: Playbook
metadata: {name: t}
steps:
  - id: scale
    action: workload.scale
    target: {kind: Deployment, name: web, namespace: shop}
    with: {replicas: "{{ 1 - 1 }}"}
    evidence: {waived: test}
  - id: note
    action: object.annotate
    target: {kind: Deployment, name: web, namespace: shop}
    with: {annotations: {before: "{{ steps.scale.outputs.previous_replicas.web }}"}}
"#;
    let sim = snapshot();
    let (outcome, events) = run(&sim, playbook, &[]).await;
    assert_eq!(outcome, Outcome::Succeeded);
    let deploy_ref = ObjectRef::new("Deployment", Some("shop"), "web");
    let deploy = sim.get(&deploy_ref).await.unwrap().unwrap();
    assert_eq!(deploy["spec"]["replicas"], json!(0));
    assert_eq!(deploy["metadata"]["annotations"]["before"], json!("3"));
    let plan = events
        .iter()
        .find_map(|e| match e {
            EventKind::StepPlanned { step, plan } if step == "scale" => Some(plan.clone()),
            _ => None,
        })
        .unwrap();
    for op in &plan.inverse {
        apply::apply(
            op,
            "scale",
            "test-run",
            Carry::Simulated,
            &sim,
            &mut AutoApprove,
        )
        .await
        .unwrap();
    }
    let restored = sim.get(&deploy_ref).await.unwrap().unwrap();
    assert_eq!(restored["spec"]["replicas"], json!(3));
}

#[tokio::test]
async fn applying_twice_writes_once() {
    let sim = snapshot();
    let pod = sim.get(&pod_ref()).await.unwrap().unwrap();
    let op = Op::Patch {
        target: pod_ref(),
        uid: object::uid(&pod).unwrap().to_string(),
        changes: vec![FieldChange {
            path: vec![
                "metadata".into(),
                "labels".into(),
                "contain.dev/suspect".into(),
            ],
            before: None,
            after: Some(json!("true")),
        }],
    };
    let first = apply::apply(&op, "s", "r", Carry::Simulated, &sim, &mut AutoApprove)
        .await
        .unwrap();
    let rv = object::resource_version(&sim.get(&pod_ref()).await.unwrap().unwrap())
        .unwrap()
        .to_string();
    let second = apply::apply(&op, "s", "r", Carry::Simulated, &sim, &mut AutoApprove)
        .await
        .unwrap();
    assert_eq!(format!("{first:?}/{second:?}"), "Applied/AlreadyDone");
    let rv_after = object::resource_version(&sim.get(&pod_ref()).await.unwrap().unwrap())
        .unwrap()
        .to_string();
    assert_eq!(rv, rv_after, "the second apply wrote nothing");
}

#[tokio::test]
async fn a_human_change_in_between_is_not_overwritten() {
    let sim = snapshot();
    let pod = sim.get(&pod_ref()).await.unwrap().unwrap();
    let op = Op::Patch {
        target: pod_ref(),
        uid: object::uid(&pod).unwrap().to_string(),
        changes: vec![FieldChange {
            path: vec!["metadata".into(), "labels".into(), "tier".into()],
            before: None,
            after: Some(json!("quarantine")),
        }],
    };
    // Someone sets the label to something else between plan and apply.
    sim.patch(
        &pod_ref(),
        &json!({"metadata": {"labels": {"tier": "human"}}}),
        WriteMode::Apply,
    )
    .await
    .unwrap();
    let err = apply::apply(&op, "s", "r", Carry::Simulated, &sim, &mut AutoApprove)
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::ChangedMeanwhile { .. }), "{err}");
    let now = sim.get(&pod_ref()).await.unwrap().unwrap();
    assert_eq!(object::labels(&now)["tier"], "human");
}

#[tokio::test]
async fn a_replaced_object_is_not_deleted() {
    let sim = snapshot();
    let op = Op::Delete {
        target: pod_ref(),
        uid: Some("some-older-uid".into()),
        run_id: None,
        grace_period_seconds: None,
    };
    let outcome = apply::apply(&op, "s", "r", Carry::Simulated, &sim, &mut AutoApprove)
        .await
        .unwrap();
    assert_eq!(format!("{outcome:?}"), "AlreadyDone");
    assert!(
        sim.get(&pod_ref()).await.unwrap().is_some(),
        "the pod holding the name now was left alone"
    );
}

#[test]
fn tabletop_of_a_shipped_playbook_prints_plan_changes_and_summary() {
    let out = Contain::new()
        .args([
            "tabletop",
            &repo("playbooks/scale-down-workload.yaml"),
            "--snapshot",
            &repo("examples/snapshots/cluster.yaml"),
        ])
        .args([
            "--set",
            "deployment=web",
            "--set",
            "namespace=shop",
            "--set",
            "ticket=INC-7",
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("spec.replicas: 3 → 0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("metadata.annotations[\"contain.dev/ticket\"]: (none) → \"INC-7\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("summary of run"), "{}", out.stdout);
}

#[test]
fn tabletop_json_output_parses() {
    let out = Contain::new()
        .args([
            "-o",
            "json",
            "tabletop",
            &repo("playbooks/restart-pod.yaml"),
            "--snapshot",
            &repo("examples/snapshots/cluster.yaml"),
        ])
        .args(["--set", &format!("pod={POD}"), "--set", "namespace=shop"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["outcome"]["status"], "succeeded");
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[2]["plan"]["reversible"], "irreversible");
    assert!(doc["events"].as_array().unwrap().len() > 6);
}

#[test]
fn a_live_run_without_a_terminal_or_yes_is_refused() {
    let out = Contain::new()
        .args([
            "run",
            &repo("playbooks/label-suspect-pod.yaml"),
            "--set",
            "pod=x",
            "--set",
            "namespace=y",
        ])
        .run();
    assert_eq!(out.code, 5);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
}

#[test]
fn an_unreachable_cluster_exits_4_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n").unwrap();
    let out = Contain::new()
        .args([
            "run",
            "--yes",
            &repo("playbooks/label-suspect-pod.yaml"),
            "--set",
            "pod=x",
            "--set",
            "namespace=y",
        ])
        .args(["--kubeconfig", &kubeconfig.display().to_string()])
        .args(["--call-timeout", "2s"])
        .run();
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach the API server")
            && out
                .stderr
                .contains("retrying until the call timeout of 2 s"),
        "{}",
        out.stderr
    );
}

#[test]
fn tabletop_of_the_compromised_pod_playbook_shows_every_containment_step() {
    let out = Contain::new()
        .args([
            "-o",
            "json",
            "tabletop",
            &repo("playbooks/compromised-pod.yaml"),
            "--snapshot",
            &repo("examples/snapshots/cluster.yaml"),
        ])
        .args([
            "--set",
            &format!("pod={POD}"),
            "--set",
            "namespace=shop",
            "--set",
            "ticket=INC-4211",
        ])
        .args([
            "--set",
            "clean_image=ghcr.io/example/shop-web:1.8.3",
            "--set",
            "container=web",
        ])
        .args([
            "--set",
            &format!("signing_key={}", repo("examples/keys/cosign.pub")),
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc = out.json();
    let steps: Vec<(&str, &str, usize)> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
                s["plan"]["ops"].as_array().map_or(0, Vec::len),
            )
        })
        .collect();
    let ids: Vec<&str> = steps.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        ids,
        [
            "capture",
            "mark",
            "isolate",
            "detach",
            "revoke",
            "rotate",
            "quarantine-node",
            "redeploy"
        ]
    );
    for (id, status, ops) in steps {
        if id == "rotate" {
            assert_eq!(status, "skipped");
        } else {
            assert_eq!(status, "done", "{id}");
            assert!(ops > 0, "{id} shows its changes");
        }
    }
}

#[tokio::test]
async fn a_run_whose_lock_was_lost_stops_before_its_next_write() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let sim = snapshot();
    let before = sim.get(&pod_ref()).await.unwrap().unwrap();
    let loaded = load_bytes("test.yaml", LABEL_THEN_FAIL.as_bytes().to_vec()).unwrap();
    let params = bind_params(&loaded, &[]).unwrap();
    let lost = Arc::new(AtomicBool::new(true));
    let config = RunConfig {
        halt: Some(contain::run_lock::Halt::new(vec![(
            "shop/contain-pod-web".into(),
            lost,
        )])),
        ..RunConfig::new("test-run", Mode::Tabletop, params, "test.yaml")
    };
    let mut recorder = Recorder::default();
    let result = Executor::new(&sim, &mut recorder, &mut AutoApprove)
        .run(&loaded, &config)
        .await
        .unwrap();
    // Stopped where it was, although the playbook says `on_failure: rollback`: a rollback
    // would write to a target another run may hold now.
    match &result.outcome {
        Outcome::Failed { step, error, .. } => {
            assert_eq!(step, "mark");
            assert!(
                error.contains("(Lease shop/contain-pod-web) could not be renewed"),
                "{error}"
            );
        }
        other => panic!("the run stops at its first write: {other:?}"),
    }
    let after = sim.get(&pod_ref()).await.unwrap().unwrap();
    assert_eq!(
        object::labels(&after),
        object::labels(&before),
        "nothing written"
    );
}

/// Labels the pod, then waits longer than the step's or the run's time allows.
fn label_then_wait(run_timeout: &str, step_timeout: &str) -> String {
    format!(
        r#"
apiVersion: contain/v1
kind: Playbook
metadata: {{name: t}}
on_failure: rollback
{run_timeout}
steps:
  - id: mark
    action: object.label
    target: {{kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}}
    with: {{labels: {{contain.dev/suspect: "true"}}}}
  - id: pause
    action: wait
    {step_timeout}
    with: {{duration: 10m}}
  - id: after
    action: object.label
    target: {{kind: Pod, name: web-fjejlcldef-x7k2p, namespace: shop}}
    with: {{labels: {{contain.dev/after: "true"}}}}
"#
    )
}

#[tokio::test(start_paused = true)]
async fn a_step_past_its_timeout_fails_under_its_failure_policy() {
    let sim = snapshot();
    let before = sim.get(&pod_ref()).await.unwrap().unwrap();
    let (outcome, events) =
        run_as(Mode::Live, &sim, &label_then_wait("", "timeout: 2s"), &[]).await;
    match &outcome {
        Outcome::RolledBack { step, error } => {
            assert_eq!(step, "pause");
            assert!(
                error.contains("took longer than its timeout of 2s"),
                "{error}"
            );
        }
        other => panic!("the step's timeout fails it, and on_failure: rollback undoes: {other:?}"),
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::StepFailed { step, .. } if step == "pause"))
    );
    let after = sim.get(&pod_ref()).await.unwrap().unwrap();
    assert_eq!(object::labels(&after), object::labels(&before));
}

#[tokio::test(start_paused = true)]
async fn a_run_past_its_deadline_stops_where_it_is_for_resume_without_rolling_back() {
    let sim = snapshot();
    let (outcome, events) =
        run_as(Mode::Live, &sim, &label_then_wait("timeout: 30s", ""), &[]).await;
    match &outcome {
        Outcome::Failed { step, error, .. } => {
            assert_eq!(step, "pause", "the step in flight is the one cut");
            assert!(
                error.contains("passed its deadline of 30s") && error.contains("contain resume"),
                "{error}"
            );
        }
        other => panic!("the run stops at its deadline: {other:?}"),
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, EventKind::RollbackStep { .. })),
        "no automatic rollback past the deadline, whatever on_failure says"
    );
    assert!(
        !events.iter().any(|e| matches!(e, EventKind::StepDone { step, .. } | EventKind::StepFailed { step, .. } if step == "after")),
        "nothing runs past the deadline"
    );
    let labels = object::labels(&sim.get(&pod_ref()).await.unwrap().unwrap());
    assert_eq!(
        labels["contain.dev/suspect"], "true",
        "the done step stays done"
    );
    assert!(!labels.contains_key("contain.dev/after"), "{labels:?}");
}
