//! The plan/apply contract on the real control plane: what runs is what was approved (a change
//! after approval stops the run before that step; a stale saved plan is refused), the preflight
//! names a missing permission before any write, guards refuse, and a failed undo stays pending
//! until a rollback succeeds.

use std::time::Duration;

use contain::cluster::kube::KubeCluster;
use contain::cluster::object::{self, ObjectRef};
use contain::cluster::{Cluster, WriteMode};
use serde_json::{Value, json};

use crate::harness::{Live, Outcome, playbook_file, repo};
use crate::live::{self, Namespace};

const LABEL_AFTER_PAUSE: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: pause-then-label}
params:
  namespace: {type: string, required: true}
  pod: {type: string, required: true}
steps:
  - id: pause
    action: wait
    with: {duration: 3s}
  - id: mark
    action: object.label
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/suspect: "true"}}
"#;

const LABEL: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: label}
params:
  namespace: {type: string, required: true}
  pod: {type: string, required: true}
steps:
  - id: mark
    action: object.label
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/suspect: "{{ run.id }}"}}
  - id: note
    action: object.annotate
    target: {kind: Deployment, name: web, namespace: "{{ params.namespace }}"}
    with: {annotations: {contain.dev/suspect-pod: "{{ params.pod }}"}}
"#;

async fn pod_of(cluster: &KubeCluster, ns: &str) -> Value {
    live::deployment(cluster, ns, "web", 1).await.remove(0)
}

async fn label_of(cluster: &KubeCluster, ns: &str, pod: &str, key: &str) -> Option<String> {
    let now = cluster
        .get(&ObjectRef::new("Pod", Some(ns), pod))
        .await
        .unwrap()
        .unwrap();
    object::labels(&now).get(key).cloned()
}

async fn set_label(cluster: &KubeCluster, ns: &str, pod: &str, key: &str, value: &str) {
    let patch = json!({"metadata": {"labels": {key: value}}});
    cluster
        .patch(
            &ObjectRef::new("Pod", Some(ns), pod),
            &patch,
            WriteMode::Apply,
        )
        .await
        .unwrap();
}

/// The journal records of a run, as `journal export` prints them (header first).
fn records(runner: &Live, run: &str) -> Vec<Value> {
    let out = runner.contain().args(["journal", "export", run]).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wrote(records: &[Value], step: &str) -> bool {
    records.iter().any(|r| {
        (r["body"]["record"] == "intent" || r["body"]["record"] == "applied")
            && r["body"]["step"] == step
    })
}

/// Waits until a run in `journal` has its approved plan recorded (its store appears then), so a
/// change made afterwards is a change after approval, however slow the machine.
async fn approved(journal: &std::path::Path) {
    for _ in 0..240 {
        if !contain::journal::run_ids(journal).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(125)).await;
    }
    panic!("no run was approved in {}", journal.display());
}

fn ok(out: &Outcome) {
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}

#[tokio::test]
async fn a_change_after_approval_stops_the_run_before_that_step() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "stale").await;
    let pod = pod_of(&cluster, &ns.name).await;
    let pod = object::name(&pod).unwrap().to_string();
    let playbook = playbook_file(LABEL_AFTER_PAUSE);
    let runner = Live::new();
    let command = runner.contain().args([
        "run",
        "--yes",
        &playbook.path().display().to_string(),
        "--set",
        &format!("namespace={}", ns.name),
        "--set",
        &format!("pod={pod}"),
    ]);
    // The plan is approved (--yes) and the run pauses in step 1; meanwhile a human labels the
    // pod the way step 2 was about to.
    let run = std::thread::spawn(move || command.run());
    approved(runner.journal.path()).await;
    set_label(&cluster, &ns.name, &pod, "contain.dev/suspect", "by-hand").await;
    let out = run.join().unwrap();
    assert_eq!(out.code, 8, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("STALE")
            && out
                .stdout
                .contains(r#"metadata.labels["contain.dev/suspect"] is "by-hand""#),
        "the change is named: {}",
        out.stdout
    );
    assert_eq!(
        label_of(&cluster, &ns.name, &pod, "contain.dev/suspect")
            .await
            .as_deref(),
        Some("by-hand"),
        "the human's change is not overwritten"
    );
    let run_id = runner.last_run();
    let journal = records(&runner, &run_id);
    assert!(
        !wrote(&journal, "mark"),
        "no intent or write of the stale step"
    );
    assert!(
        journal
            .iter()
            .any(|r| r["body"]["record"] == "stale" && r["body"]["step"] == "mark")
    );
}

#[tokio::test]
async fn a_saved_plan_applies_exactly_and_a_stale_or_mismatched_one_is_refused() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "saved").await;
    let pod = pod_of(&cluster, &ns.name).await;
    let pod = object::name(&pod).unwrap().to_string();
    let playbook = playbook_file(LABEL);
    let path = playbook.path().display().to_string();
    let runner = Live::new();
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        "--set".to_string(),
        format!("namespace={}", ns.name),
        "--set".to_string(),
        format!("pod={pod}"),
    ];
    let plan_to = |file: &str| {
        let out = runner
            .contain()
            .args(["plan", &path, "--out", file])
            .args(sets.clone())
            .run();
        ok(&out);
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        saved
    };

    // Applied exactly: the label carries the saved plan's run id, not a new one.
    let first = dir.path().join("first.json").display().to_string();
    let saved = plan_to(&first);
    assert!(
        !std::fs::read_to_string(&first).unwrap().contains("token"),
        "a saved plan holds no credentials"
    );
    let applied = runner
        .contain()
        .args(["run", "--yes", "--plan", &first])
        .run();
    ok(&applied);
    let planned_id = saved["run_id"].as_str().unwrap();
    assert_eq!(
        label_of(&cluster, &ns.name, &pod, "contain.dev/suspect")
            .await
            .as_deref(),
        Some(planned_id)
    );
    let again = runner
        .contain()
        .args(["run", "--yes", "--plan", &first])
        .run();
    assert_eq!(again.code, 5, "a plan is applied once: {}", again.stderr);
    assert!(again.stderr.contains("already applied"), "{}", again.stderr);

    // Stale: the pod's label moved after the plan was saved.
    let second = dir.path().join("second.json").display().to_string();
    set_label(&cluster, &ns.name, &pod, "contain.dev/suspect", "cleared").await;
    plan_to(&second);
    set_label(
        &cluster,
        &ns.name,
        &pod,
        "contain.dev/suspect",
        "moved-again",
    )
    .await;
    let deploy = ObjectRef::new("Deployment", Some(&ns.name), "web");
    let deploy_before = cluster.get(&deploy).await.unwrap().unwrap();
    let stale = runner
        .contain()
        .args(["run", "--yes", "--plan", &second])
        .run();
    assert_eq!(stale.code, 8, "{}\n{}", stale.stdout, stale.stderr);
    assert!(
        stale
            .stdout
            .contains(r#"is "moved-again" (the plan saw "cleared")"#),
        "{}",
        stale.stdout
    );
    let deploy_after = cluster.get(&deploy).await.unwrap().unwrap();
    assert_eq!(
        deploy_after["metadata"]["annotations"], deploy_before["metadata"]["annotations"],
        "the run stopped at the stale step: the later step wrote nothing either"
    );

    // Other params, or a changed playbook: refused before connecting to write anything.
    let third = dir.path().join("third.json").display().to_string();
    plan_to(&third);
    let other = runner
        .contain()
        .args([
            "run",
            "--yes",
            "--plan",
            &third,
            "--set",
            &format!("namespace={}", ns.name),
        ])
        .args(["--set", "pod=someone-else"])
        .run();
    assert_eq!(other.code, 5, "{}", other.stderr);
    assert!(
        other.stderr.contains("are not the plan's"),
        "{}",
        other.stderr
    );
    std::fs::write(playbook.path(), format!("{LABEL}\n# edited\n")).unwrap();
    let edited = runner
        .contain()
        .args(["run", "--yes", "--plan", &third])
        .run();
    assert_eq!(edited.code, 5, "{}", edited.stderr);
    assert!(
        edited.stderr.contains("changed since the plan was made"),
        "{}",
        edited.stderr
    );
    assert_eq!(
        label_of(&cluster, &ns.name, &pod, "contain.dev/suspect")
            .await
            .as_deref(),
        Some("moved-again")
    );
}

#[tokio::test]
async fn the_preflight_names_exactly_the_missing_permission_and_writes_nothing() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "preflight").await;
    let pod = pod_of(&cluster, &ns.name).await;
    let pod = object::name(&pod).unwrap().to_string();
    // A responder that may label pods, read Deployments and lock its targets, but not annotate
    // Deployments.
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "responder", "namespace": ns.name}});
    let account = cluster.create(&account, WriteMode::Apply).await.unwrap();
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "responder", "namespace": ns.name},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "patch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
        ]
    });
    cluster.create(&role, WriteMode::Apply).await.unwrap();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "responder", "namespace": ns.name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "responder"},
        "subjects": [{"kind": "ServiceAccount", "name": "responder", "namespace": ns.name}]
    });
    cluster.create(&binding, WriteMode::Apply).await.unwrap();
    let token = cluster
        .request_token(&ObjectRef::of(&account).unwrap(), 600, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = live::token_kubeconfig(&token, dir.path());
    let playbook = playbook_file(LABEL);
    let journal = tempfile::tempdir().unwrap();
    let out = crate::harness::Contain::new()
        .args([
            "--no-progress",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
        ])
        .args(["--journal", &journal.path().display().to_string()])
        .args(["run", "--yes", &playbook.path().display().to_string()])
        .args([
            "--set",
            &format!("namespace={}", ns.name),
            "--set",
            &format!("pod={pod}"),
        ])
        .run();
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    let missing: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("missing: "))
        .collect();
    assert_eq!(
        missing,
        [format!(
            "patch deployments.apps web in namespace {}",
            ns.name
        )],
        "{}",
        out.stdout
    );
    assert_eq!(
        label_of(&cluster, &ns.name, &pod, "contain.dev/suspect").await,
        None,
        "step 1, which the identity may do, was not written either"
    );
    assert!(
        contain::journal::run_ids(journal.path()).is_empty(),
        "a refused run records nothing"
    );
}

#[tokio::test]
async fn the_kube_system_guard_refuses_a_live_run_before_reading_the_cluster() {
    let runner = Live::new();
    let out = runner
        .contain()
        .args(["run", "--yes", &repo("playbooks/compromised-pod.yaml")])
        .args(["--set", "pod=coredns-0", "-n", "kube-system"])
        .run();
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("refusing to run in kube-system"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("fact suspect"),
        "the guard on params is checked before any fact is read: {}",
        out.stdout
    );
    assert!(contain::journal::run_ids(runner.journal.path()).is_empty());
}

#[tokio::test]
async fn an_invalid_label_after_an_irreversible_step_is_refused_before_step_one() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "invalid").await;
    let pod = pod_of(&cluster, &ns.name).await;
    let pod = object::name(&pod).unwrap().to_string();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "default-token-legacy", "namespace": ns.name, "annotations": {"kubernetes.io/service-account.name": "default"}}
    });
    cluster.create(&secret, WriteMode::Apply).await.unwrap();
    let playbook = playbook_file(
        r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: t}
params:
  namespace: {type: string, required: true}
  pod: {type: string, required: true}
  ticket: {type: string, default: "INC 42 / urgent!"}
steps:
  - id: capture
    action: forensics.capture
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
  - id: mark
    action: object.label
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/suspect: "true"}}
  - id: revoke
    action: serviceaccount.revoke
    target: {kind: ServiceAccount, name: default, namespace: "{{ params.namespace }}"}
    with: {modes: [legacy-secrets]}
  - id: ticket
    action: object.label
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/ticket: "{{ params.ticket }}"}}
"#,
    );
    let runner = Live::new();
    let out = runner
        .contain()
        .args(["run", "--yes", &playbook.path().display().to_string()])
        .args([
            "--set",
            &format!("namespace={}", ns.name),
            "--set",
            &format!("pod={pod}"),
        ])
        .run();
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("step 4 (ticket)") && out.stdout.contains("nothing is written"),
        "{}",
        out.stdout
    );
    let secret_ref = ObjectRef::new("Secret", Some(&ns.name), "default-token-legacy");
    assert!(
        cluster.get(&secret_ref).await.unwrap().is_some(),
        "the irreversible step 3 did not run"
    );
    assert_eq!(
        label_of(&cluster, &ns.name, &pod, "contain.dev/suspect").await,
        None
    );
    assert!(contain::journal::run_ids(runner.journal.path()).is_empty());
    assert!(
        std::fs::read_dir(runner.evidence.path())
            .unwrap()
            .next()
            .is_none(),
        "no evidence was collected either"
    );
}

#[tokio::test]
async fn a_failed_undo_stays_pending_and_the_next_rollback_retries_it() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "pending").await;
    let pod = pod_of(&cluster, &ns.name).await;
    let pod = object::name(&pod).unwrap().to_string();
    let playbook = playbook_file(LABEL);
    let runner = Live::new();
    ok(&runner
        .contain()
        .args(["run", "--yes", &playbook.path().display().to_string()])
        .args([
            "--set",
            &format!("namespace={}", ns.name),
            "--set",
            &format!("pod={pod}"),
        ])
        .run());
    let run = runner.last_run();
    // A human changes the label the run set: the undo must not overwrite it.
    set_label(&cluster, &ns.name, &pod, "contain.dev/suspect", "by-hand").await;
    let first = runner.contain().args(["rollback", "--yes", &run]).run();
    assert_eq!(first.code, 1, "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("mark: FAILED, still pending"),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("note: undone"), "{}", first.stdout);
    let wrong = runner
        .contain()
        .args(["rollback", "--yes", "--to", "nope", &run])
        .run();
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("has no step `nope`"),
        "{}",
        wrong.stderr
    );

    // Put back what the run wrote: the next rollback retries the pending undo, and only it.
    set_label(&cluster, &ns.name, &pod, "contain.dev/suspect", &run).await;
    let second = runner.contain().args(["rollback", "--yes", &run]).run();
    ok(&second);
    assert!(second.stdout.contains("mark: undone"), "{}", second.stdout);
    assert!(
        !second.stdout.contains("note:"),
        "note was undone already: {}",
        second.stdout
    );
    assert_eq!(
        label_of(&cluster, &ns.name, &pod, "contain.dev/suspect").await,
        None
    );
    let third = runner.contain().args(["rollback", "--yes", &run]).run();
    ok(&third);
    assert!(
        third.stdout.contains("nothing to roll back"),
        "{}",
        third.stdout
    );
}

#[tokio::test]
async fn interactively_a_stale_run_is_replanned_from_the_stale_step_and_approved_again() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "replan").await;
    let pod = pod_of(&cluster, &ns.name).await;
    let pod = object::name(&pod).unwrap().to_string();
    let playbook = playbook_file(LABEL_AFTER_PAUSE);
    let journal = tempfile::tempdir().unwrap();
    let command = format!(
        "{} --no-progress --kubeconfig {} --journal {} run {} --set namespace={} --set pod={pod}",
        env!("CARGO_BIN_EXE_contain"),
        live::kubeconfig().display(),
        journal.path().display(),
        playbook.path().display(),
        ns.name
    );
    // A real terminal (script's pseudo-terminal): approve, then after the stale stop accept
    // the re-plan and approve the new plan.
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    use std::io::Write;
    tokio::time::sleep(Duration::from_millis(700)).await;
    input.write_all(b"y\n").unwrap();
    approved(journal.path()).await;
    set_label(&cluster, &ns.name, &pod, "contain.dev/suspect", "by-hand").await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    input.write_all(b"y\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    input.write_all(b"y\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(input);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the plan is stale"), "{stdout}");
    assert!(
        stdout.contains(r#"metadata.labels["contain.dev/suspect"]: "by-hand" → "true""#),
        "the new plan starts from the cluster as it is now: {stdout}"
    );
    assert!(stdout.contains("outcome: succeeded (exit 0)"), "{stdout}");
    assert_eq!(
        label_of(&cluster, &ns.name, &pod, "contain.dev/suspect")
            .await
            .as_deref(),
        Some("true")
    );
    let run = contain::journal::run_ids(journal.path()).pop().unwrap();
    let runner = Live {
        journal,
        evidence: tempfile::tempdir().unwrap(),
    };
    let journal = records(&runner, &run);
    let approvals = journal
        .iter()
        .filter(|r| r["body"]["record"] == "approved")
        .count();
    assert_eq!(
        approvals, 2,
        "the re-plan was approved and journaled before its write"
    );
}

#[tokio::test]
async fn the_compromised_pod_playbook_runs_with_only_the_role_contain_rbac_prints() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "rbac").await;
    let suffix = ns.name.rsplit('-').next().unwrap().to_string();
    // A node of its own: the quarantine's admission guard must not touch other tests' nodes.
    let node = format!("rbac-node-{suffix}");
    live::dedicated_node(&cluster, &node, false).await;
    let pod = live::web_on_node(&cluster, &ns.name, &node).await;
    let playbook = repo("playbooks/compromised-pod.yaml");
    let sets = [
        "--set".to_string(),
        format!("pod={pod}"),
        "-n".to_string(),
        ns.name.clone(),
    ];

    // The role, as `contain rbac` prints it (planned with the admin identity).
    let printed = crate::harness::Contain::new()
        .args(["--kubeconfig", &live::kubeconfig().display().to_string()])
        .args(["-o", "json", "rbac", &playbook])
        .args(sets.clone())
        .args(["--name", &format!("contain-rbac-{suffix}")])
        .run();
    assert_eq!(printed.code, 0, "{}", printed.stderr);
    let mut role = printed.json();
    let role_name = format!("contain-rbac-{suffix}");
    cluster.create(&role, WriteMode::Apply).await.unwrap();
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "responder", "namespace": ns.name}});
    let account = cluster.create(&account, WriteMode::Apply).await.unwrap();
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": role_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": "responder", "namespace": ns.name}]});
    cluster.create(&binding, WriteMode::Apply).await.unwrap();
    struct Cleanup(String, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let (role, node) = (self.0.clone(), self.1.clone());
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        let cluster = live::connect(live::kubeconfig()).await;
                        let guard = format!("contain-quarantine-{node}");
                        for (kind, name) in [
                            ("ClusterRoleBinding", role.as_str()),
                            ("ClusterRole", role.as_str()),
                            ("ValidatingAdmissionPolicyBinding", guard.as_str()),
                            ("ValidatingAdmissionPolicy", guard.as_str()),
                        ] {
                            let _ = cluster
                                .delete(
                                    &ObjectRef::new(kind, None, name),
                                    &contain::cluster::Preconditions::default(),
                                    None,
                                    WriteMode::Apply,
                                )
                                .await;
                        }
                        live::delete_node(&cluster, &node).await;
                    });
            })
            .join();
        }
    }
    let _cleanup = Cleanup(role_name.clone(), node.clone());
    let token = cluster
        .request_token(&ObjectRef::of(&account).unwrap(), 600, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = live::token_kubeconfig(&token, dir.path());
    let journal = tempfile::tempdir().unwrap();
    let evidence = tempfile::tempdir().unwrap();
    let responder = || {
        crate::harness::Contain::new()
            .args([
                "--no-progress",
                "--kubeconfig",
                &kubeconfig.display().to_string(),
            ])
            .args(["--journal", &journal.path().display().to_string()])
            .args(["--evidence", &evidence.path().display().to_string()])
    };
    let out = responder()
        .args(["run", "--yes", &playbook])
        .args(sets.clone())
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains("forbidden"),
            "a 403 with the printed role: {text}"
        );
    }
    let run = contain::journal::run_ids(journal.path()).pop().unwrap();
    let rolled = responder().args(["rollback", "--yes", &run]).run();
    assert_eq!(
        rolled.code, 0,
        "the role covers the rollback: {}\n{}",
        rolled.stdout, rolled.stderr
    );

    // One verb fewer: the preflight names exactly that permission, and nothing is written.
    let rules = role["rules"].as_array_mut().unwrap();
    let policies = rules
        .iter_mut()
        .find(|r| r["resources"] == json!(["networkpolicies"]))
        .expect("the role grants NetworkPolicy writes");
    let verbs: Vec<Value> = policies["verbs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| *v != "create")
        .cloned()
        .collect();
    policies["verbs"] = Value::Array(verbs);
    let patch = json!({"rules": role["rules"]});
    cluster
        .patch(
            &ObjectRef::new("ClusterRole", None, &role_name),
            &patch,
            WriteMode::Apply,
        )
        .await
        .unwrap();
    let mut missing = Vec::new();
    for _ in 0..40 {
        let refused = responder()
            .args(["run", "--yes", &playbook])
            .args(sets.clone())
            .run();
        missing = refused
            .stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("missing: "))
            .map(str::to_string)
            .collect();
        if refused.code == 5 && !missing.is_empty() {
            break;
        }
        // RBAC changes reach the authorizer within moments; a run that got through is undone.
        if refused.code == 0 {
            let run = contain::journal::run_ids(journal.path()).pop().unwrap();
            responder().args(["rollback", "--yes", &run]).run();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The policy's name ends with the run's: only its start is known here.
    assert_eq!(missing.len(), 1, "{missing:?}");
    let (start, end) = missing[0]
        .split_once(" in namespace ")
        .unwrap_or_else(|| panic!("{missing:?}"));
    assert!(
        start.starts_with("create networkpolicies.networking.k8s.io contain-isolate-isolate-"),
        "{missing:?}"
    );
    assert_eq!(end, ns.name);
}

/// The shipped isolation, planned and saved; then a policy that admits everything appears in the
/// namespace. The plan decided its policy patches without it: refused as stale before the
/// first write, naming the policy. Planned again, it applies, and the summary counts what
/// `run --plan` wrote.
#[tokio::test]
async fn a_saved_plan_made_stale_by_a_new_allowing_policy_is_refused_before_any_write() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "saved-policy").await;
    let pod = pod_of(&cluster, &ns.name).await;
    let pod = object::name(&pod).unwrap().to_string();
    let runner = Live::new();
    let dir = tempfile::tempdir().unwrap();
    let playbook = repo("playbooks/isolate-pod.yaml");
    let sets = [
        "--set".to_string(),
        format!("namespace={}", ns.name),
        "--set".to_string(),
        format!("pod={pod}"),
    ];
    let saved = dir.path().join("isolate.json").display().to_string();
    let plan_to = |file: &str| {
        ok(&runner
            .contain()
            .args(["plan", &playbook, "--out", file])
            .args(sets.clone())
            .run())
    };
    plan_to(&saved);
    let allow_all = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all", "namespace": ns.name},
        "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}});
    cluster.create(&allow_all, WriteMode::Apply).await.unwrap();
    let stale = runner
        .contain()
        .args(["run", "--yes", "--plan", &saved])
        .run();
    assert_eq!(stale.code, 8, "{}\n{}", stale.stdout, stale.stderr);
    assert!(
        stale.stdout.contains(&format!(
            "NetworkPolicy {}/allow-all appeared since the plan, which was decided without it (step isolate was planned from it)",
            ns.name
        )),
        "{}",
        stale.stdout
    );
    assert_eq!(
        label_of(&cluster, &ns.name, &pod, "contain.dev/suspect").await,
        None,
        "nothing was written, not even the first step's label"
    );
    let policies = live::list(&cluster, "NetworkPolicy", &ns.name).await;
    assert_eq!(policies.len(), 1, "only allow-all: {policies:?}");
    assert!(
        policies[0]["spec"]["podSelector"]
            .get("matchExpressions")
            .is_none()
    );

    // Planned again with the policy in place: it is patched too, and the writes are counted.
    let fresh = dir.path().join("fresh.json").display().to_string();
    plan_to(&fresh);
    let applied = runner
        .contain()
        .args(["run", "--yes", "--plan", &fresh])
        .run();
    ok(&applied);
    assert!(
        applied.stdout.contains("preflight: ") && applied.stdout.contains("server dry run: "),
        "run --plan repeats the preflight and the dry run: {}",
        applied.stdout
    );
    let isolate_writes: usize = applied
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("isolate ") && l.contains("network.isolate"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{}", applied.stdout));
    assert!(
        isolate_writes >= 3,
        "the label, the policy and the patch: {}",
        applied.stdout
    );
    let run = saved_run_id(&fresh);
    ok(&runner.contain().args(["rollback", "--yes", &run]).run());
}

fn saved_run_id(file: &str) -> String {
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    saved["run_id"].as_str().unwrap().to_string()
}
