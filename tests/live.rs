//! Live tests on the real control plane that `scripts/test` starts (etcd, kube-apiserver,
//! controller-manager, scheduler, KWOK). Each test works in its own namespace and removes it.

use std::path::PathBuf;
use std::time::Duration;

use contain::cluster::kube::{Connect, KubeCluster};
use contain::cluster::object::{self, ObjectRef, Selector};
use contain::cluster::{Cluster, ClusterError, Preconditions, WriteMode, kinds};
use serde_json::{Value, json};

use crate::harness::{Contain, repo};

/// Held while a test depends on whether the ClusterNetworkPolicy CRD is installed: the test that
/// installs it, and the real-node traffic tests (their enforcer implements NetworkPolicies only).
pub static CLUSTER_POLICY_CRD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The admin kubeconfig of the test control plane.
pub fn kubeconfig() -> PathBuf {
    let path = std::env::var_os("CONTAIN_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(repo("target/cluster/admin.kubeconfig")));
    assert!(
        path.exists(),
        "live tests need the test control plane: run `scripts/test` (or `scripts/cluster up`); {} does not exist",
        path.display()
    );
    path
}

pub async fn connect(kubeconfig: PathBuf) -> KubeCluster {
    KubeCluster::connect(&Connect {
        kubeconfig: Some(kubeconfig),
        context: None,
        call_timeout: Some(Duration::from_secs(20)),
        user_agent: None,
    })
    .await
    .expect("the test control plane answers")
}

/// A namespace of its own for one test, deleted when the test ends.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub async fn new(cluster: &KubeCluster, test: &str) -> Self {
        let id = contain::cmd::ctx::new_run_id();
        let suffix = id.rsplit('-').next().unwrap();
        let name = format!("t-{test}-{suffix}");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        cluster
            .create(&ns, WriteMode::Apply)
            .await
            .expect("namespace created");
        // The service-account controller creates `default`; pods cannot be created before it.
        wait_until("the default service account", || async {
            cluster
                .get(&ObjectRef::new("ServiceAccount", Some(&name), "default"))
                .await
                .ok()
                .flatten()
                .is_some()
        })
        .await;
        Namespace { name }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        drop(DeleteOnDrop(vec![ObjectRef::new(
            "Namespace",
            None,
            &self.name,
        )]));
    }
}

/// Deletes objects when a test ends, passed or not (an admission policy left behind would
/// refuse pods for every later test), from a runtime of its own: a test's runtime may be gone.
pub struct DeleteOnDrop(pub Vec<ObjectRef>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let objects = std::mem::take(&mut self.0);
        on_own_runtime(async move {
            let cluster = connect(kubeconfig()).await;
            for object in &objects {
                let _ = cluster
                    .delete(object, &Preconditions::default(), None, WriteMode::Apply)
                    .await;
            }
        });
    }
}

/// Runs a cleanup to its end on a thread and runtime of its own: called from `drop`, where the
/// test's runtime may be gone or blocked.
pub fn on_own_runtime<F>(cleanup: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(cleanup)
    })
    .join();
}

/// Polls until `check` is true, for at most 60 s.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..240 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

pub async fn deployment(cluster: &KubeCluster, ns: &str, name: &str, replicas: u32) -> Vec<Value> {
    let labels = json!({"app": name});
    let object = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": name, "image": "registry.example/app:1"}]}}}
    });
    cluster
        .create(&object, WriteMode::Apply)
        .await
        .expect("deployment created");
    running_pods(cluster, ns, name, replicas as usize).await
}

pub async fn running_pods(cluster: &KubeCluster, ns: &str, app: &str, count: usize) -> Vec<Value> {
    let pods = kinds::lookup("Pod").unwrap();
    let selector = Selector::labels([("app".to_string(), app.to_string())].into());
    for _ in 0..240 {
        let mut found = cluster.list(pods, Some(ns), &selector).await.unwrap();
        found.retain(|p| {
            p["status"]["phase"] == "Running" && p.pointer("/metadata/deletionTimestamp").is_none()
        });
        let all = cluster.list(pods, Some(ns), &selector).await.unwrap();
        if found.len() == count && all.len() == count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {count} running pod(s) of {app}");
}

#[tokio::test]
async fn kube_cluster_answers_with_preconditions_like_the_api_server() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "crud").await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns.name, "labels": {"x": "1"}}, "data": {"k": "v"}});
    let created = cluster.create(&cm, WriteMode::Apply).await.unwrap();
    let r = ObjectRef::of(&created).unwrap();
    assert!(matches!(
        cluster.create(&cm, WriteMode::Apply).await,
        Err(ClusterError::AlreadyExists { .. })
    ));
    let listed = cluster
        .list(
            kinds::lookup("ConfigMap").unwrap(),
            Some(&ns.name),
            &Selector::labels([("x".into(), "1".into())].into()),
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]["kind"], "ConfigMap",
        "list items carry their kind"
    );
    let stale = json!({"metadata": {"resourceVersion": "1", "labels": {"y": "2"}}});
    assert!(matches!(
        cluster.patch(&r, &stale, WriteMode::Apply).await,
        Err(ClusterError::Conflict { .. })
    ));
    let wrong_uid =
        json!({"metadata": {"uid": "00000000-0000-0000-0000-000000000000", "labels": {"y": "2"}}});
    // A uid in a merge patch that does not match is refused as an immutable-field change.
    assert!(matches!(
        cluster.patch(&r, &wrong_uid, WriteMode::Apply).await,
        Err(ClusterError::Invalid { .. })
    ));
    let rv = object::resource_version(&created).unwrap();
    let fresh = json!({"metadata": {"resourceVersion": rv, "labels": {"y": "2"}}});
    let dry = cluster.patch(&r, &fresh, WriteMode::DryRun).await.unwrap();
    assert_eq!(object::labels(&dry)["y"], "2");
    assert!(
        !object::labels(&cluster.get(&r).await.unwrap().unwrap()).contains_key("y"),
        "dry run stored nothing"
    );
    cluster.patch(&r, &fresh, WriteMode::Apply).await.unwrap();
    let bad_label = json!({"metadata": {"labels": {"bad key": "v"}}});
    assert!(matches!(
        cluster.patch(&r, &bad_label, WriteMode::Apply).await,
        Err(ClusterError::Invalid { .. })
    ));
    let wrong = Preconditions {
        uid: Some("00000000-0000-0000-0000-000000000000".into()),
        resource_version: None,
    };
    assert!(matches!(
        cluster.delete(&r, &wrong, None, WriteMode::Apply).await,
        Err(ClusterError::Conflict { .. })
    ));
    let right = Preconditions {
        uid: object::uid(&created).map(str::to_string),
        resource_version: None,
    };
    cluster
        .delete(&r, &right, None, WriteMode::Apply)
        .await
        .unwrap();
    assert!(cluster.get(&r).await.unwrap().is_none());
    assert!(
        cluster
            .delete(&r, &right, None, WriteMode::Apply)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let identity = cluster.identity().await.unwrap();
    let kube_system = cluster
        .get(&ObjectRef::new("Namespace", None, "kube-system"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Some(identity.as_str()), object::uid(&kube_system));
}

fn run_live(kubeconfig: &std::path::Path, args: &[&str]) -> crate::harness::Outcome {
    // A journal of the test's own: the default one belongs to whoever runs the tests.
    let journal = tempfile::tempdir().unwrap();
    Contain::new()
        .args([
            "run",
            "--yes",
            "--no-progress",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
        ])
        .args(["--journal", &journal.path().display().to_string()])
        .args(args.iter().copied())
        .run()
}

#[tokio::test]
async fn label_playbook_runs_live_with_least_privilege() {
    let admin = connect(kubeconfig()).await;
    let ns = Namespace::new(&admin, "label").await;
    let pods = deployment(&admin, &ns.name, "web", 1).await;
    let pod = object::name(&pods[0]).unwrap().to_string();
    // The restricted identity (scripts/kwok/restricted-rbac.yaml) is enough for this playbook.
    let restricted = kubeconfig().with_file_name("restricted.kubeconfig");
    let out = run_live(
        &restricted,
        &[
            &repo("playbooks/label-suspect-pod.yaml"),
            "--set",
            &format!("pod={pod}"),
            "--set",
            &format!("namespace={}", ns.name),
            "--set",
            "ticket=INC-42",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let now = admin
        .get(&ObjectRef::new("Pod", Some(&ns.name), &pod))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(object::labels(&now)["contain.dev/suspect"], "true");
    assert_eq!(object::labels(&now)["contain.dev/ticket"], "INC-42");
    assert_eq!(
        now["metadata"]["annotations"]["contain.dev/node"],
        now["spec"]["nodeName"]
    );
}

#[tokio::test]
async fn scale_down_playbook_takes_the_workload_offline() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "scale").await;
    deployment(&cluster, &ns.name, "api", 2).await;
    let out = run_live(
        &kubeconfig(),
        &[
            &repo("playbooks/scale-down-workload.yaml"),
            "--set",
            "deployment=api",
            "--set",
            &format!("namespace={}", ns.name),
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let deploy = cluster
        .get(&ObjectRef::new("Deployment", Some(&ns.name), "api"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 0);
    assert_eq!(
        deploy["metadata"]["annotations"]["contain.dev/replicas-before"],
        "2"
    );
    // The controller-manager removes the pods.
    running_pods(&cluster, &ns.name, "api", 0).await;
}

#[tokio::test]
async fn restart_playbook_deletes_the_pod_and_the_controller_replaces_it() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "restart").await;
    let pods = deployment(&cluster, &ns.name, "cart", 1).await;
    let pod = object::name(&pods[0]).unwrap().to_string();
    let out = run_live(
        &kubeconfig(),
        &[
            &repo("playbooks/restart-pod.yaml"),
            "--set",
            &format!("pod={pod}"),
            "--set",
            &format!("namespace={}", ns.name),
            "--set",
            "grace_seconds=0",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let replacement = running_pods(&cluster, &ns.name, "cart", 1).await;
    assert_ne!(object::name(&replacement[0]), Some(pod.as_str()));
}

#[tokio::test]
async fn server_side_dry_run_writes_nothing() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "dryrun").await;
    deployment(&cluster, &ns.name, "web", 1).await;
    let out = Contain::new()
        .args([
            "run",
            "--dry-run",
            "--no-progress",
            "--kubeconfig",
            &kubeconfig().display().to_string(),
        ])
        .args([
            repo("playbooks/scale-down-workload.yaml"),
            "--set".into(),
            "deployment=web".into(),
            "--set".into(),
            format!("namespace={}", ns.name),
        ])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("accepted by server dry-run"),
        "{}",
        out.stdout
    );
    let deploy = cluster
        .get(&ObjectRef::new("Deployment", Some(&ns.name), "web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert!(
        deploy["metadata"]["annotations"]
            .get("contain.dev/ticket")
            .is_none()
    );
}

#[tokio::test]
async fn eviction_is_refused_while_a_disruption_budget_allows_none() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "evict").await;
    let pods = deployment(&cluster, &ns.name, "db", 2).await;
    let pdb = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "db", "namespace": ns.name},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}
    });
    cluster.create(&pdb, WriteMode::Apply).await.unwrap();
    let pdb_ref = ObjectRef::new("PodDisruptionBudget", Some(&ns.name), "db");
    // The disruption controller fills in the status once it has seen the pods.
    wait_until("the budget's status", || async {
        let pdb = cluster.get(&pdb_ref).await.unwrap().unwrap();
        pdb.pointer("/status/currentHealthy")
            .and_then(Value::as_i64)
            == Some(2)
    })
    .await;
    let victim = ObjectRef::of(&pods[0]).unwrap();
    let refused = cluster
        .evict(&victim, object::uid(&pods[0]), WriteMode::Apply)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ClusterError::TooManyRequests { .. }),
        "{refused}"
    );
    cluster
        .patch(
            &pdb_ref,
            &json!({"spec": {"minAvailable": 1}}),
            WriteMode::Apply,
        )
        .await
        .unwrap();
    wait_until("the budget to allow one disruption", || async {
        let pdb = cluster.get(&pdb_ref).await.unwrap().unwrap();
        pdb.pointer("/status/disruptionsAllowed")
            .and_then(Value::as_i64)
            == Some(1)
    })
    .await;
    cluster
        .evict(&victim, object::uid(&pods[0]), WriteMode::Apply)
        .await
        .unwrap();
    wait_until("the evicted pod to go", || async {
        let now = cluster.get(&victim).await.unwrap();
        now.is_none_or(|p| {
            object::uid(&p) != object::uid(&pods[0])
                || p.pointer("/metadata/deletionTimestamp").is_some()
        })
    })
    .await;
}

#[tokio::test]
async fn logs_and_exec_reach_the_pod_through_kwok() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "debug").await;
    let pods = deployment(&cluster, &ns.name, "shell", 1).await;
    let pod = ObjectRef::of(&pods[0]).unwrap();
    let logs = cluster.logs(&pod, "shell", false).await.unwrap();
    assert!(logs.contains("simulated container log line 1"), "{logs}");
    // KWOK runs exec commands on this machine: keep them harmless.
    let ok = cluster
        .exec(&pod, "shell", &["echo".into(), "contain-exec-ok".into()])
        .await
        .unwrap();
    assert_eq!(ok.stdout.trim(), "contain-exec-ok");
    assert_eq!(ok.exit_code, Some(0));
    let failed = cluster
        .exec(
            &pod,
            "shell",
            &["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()],
        )
        .await
        .unwrap();
    assert_eq!(failed.stderr.trim(), "oops");
    assert_eq!(failed.exit_code, Some(3));
}

#[tokio::test]
async fn tokens_are_minted_and_reviewed_by_the_api_server() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "token").await;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "suspect", "namespace": ns.name}});
    let created = cluster.create(&sa, WriteMode::Apply).await.unwrap();
    let account = ObjectRef::of(&created).unwrap();
    let token = cluster.request_token(&account, 600, None).await.unwrap();
    let verdict = cluster.review_token(&token).await.unwrap();
    assert!(verdict.authenticated, "{verdict:?}");
    assert_eq!(
        verdict.username.as_deref(),
        Some(format!("system:serviceaccount:{}:suspect", ns.name).as_str())
    );
    // Deleting the account kills every token bound to it.
    let pre = Preconditions {
        uid: object::uid(&created).map(str::to_string),
        resource_version: None,
    };
    cluster
        .delete(&account, &pre, None, WriteMode::Apply)
        .await
        .unwrap();
    wait_until("the token to be rejected", || async {
        !cluster.review_token(&token).await.unwrap().authenticated
    })
    .await;
    assert!(
        !cluster
            .review_token("not-a-token")
            .await
            .unwrap()
            .authenticated
    );
}

#[tokio::test]
async fn identities_and_permissions_come_from_the_api_server() {
    let admin = connect(kubeconfig()).await;
    let me = admin.whoami().await.unwrap();
    assert_eq!(me.username, "contain-admin");
    assert!(me.groups.iter().any(|g| g == "system:masters"), "{me:?}");
    let restricted = connect(kubeconfig().with_file_name("restricted.kubeconfig")).await;
    assert_eq!(
        restricted.whoami().await.unwrap().username,
        "contain-restricted"
    );
    let ns = Namespace::new(&admin, "rbac").await;
    let r = ObjectRef::new("Namespace", None, &ns.name);
    let denied = restricted
        .delete(&r, &Preconditions::default(), None, WriteMode::Apply)
        .await
        .unwrap_err();
    assert!(matches!(denied, ClusterError::Forbidden { .. }), "{denied}");
    assert!(
        denied.to_string().contains(&ns.name),
        "the message names the object: {denied}"
    );
}

#[tokio::test]
async fn server_side_apply_creates_then_updates_with_our_field_manager() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "ssa").await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": ns.name}, "data": {"a": "1"}});
    let first = cluster.apply(&cm, WriteMode::Apply).await.unwrap();
    let updated = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": ns.name}, "data": {"a": "2"}});
    let second = cluster.apply(&updated, WriteMode::Apply).await.unwrap();
    assert_eq!(object::uid(&first), object::uid(&second));
    assert_eq!(second["data"]["a"], "2");
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(cluster.client().clone(), &ns.name);
    let raw = api.get("applied").await.unwrap();
    let managers = raw.metadata.managed_fields.unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m.manager.as_deref() == Some("contain")
                && m.operation.as_deref() == Some("Apply")),
        "{managers:?}"
    );
}

#[tokio::test]
async fn snapshot_exports_a_namespace_that_tabletop_accepts_without_secret_values() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "snap").await;
    let pods = deployment(&cluster, &ns.name, "web", 1).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": ns.name},
        "stringData": {"password": "hunter2-never-exported"}});
    cluster.create(&secret, WriteMode::Apply).await.unwrap();
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let out = Contain::new()
        .args([
            "--kubeconfig",
            &kubeconfig().display().to_string(),
            "-n",
            &ns.name,
            "snapshot",
            "-f",
            &file.path().display().to_string(),
        ])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(file.path()).unwrap();
    assert!(
        text.contains("kind: Secret") && text.contains("name: db"),
        "Secrets are listed by name"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVyMi"),
        "Secret values never leave the cluster"
    );
    let pod = object::name(&pods[0]).unwrap();
    let tabletop = Contain::new()
        .args([
            "tabletop",
            &repo("playbooks/label-suspect-pod.yaml"),
            "--snapshot",
            &file.path().display().to_string(),
        ])
        .args([
            "--set",
            &format!("pod={pod}"),
            "--set",
            &format!("namespace={}", ns.name),
        ])
        .run();
    assert_eq!(tabletop.code, 0, "{}\n{}", tabletop.stdout, tabletop.stderr);
}

#[tokio::test]
async fn guarded_writes_respect_a_human_change_and_a_replaced_object() {
    use contain::execute::apply::{self, ApplyError, AutoApprove, Carry};
    use contain::plan::{FieldChange, Op};
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "guard").await;
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "worker", "namespace": ns.name}});
    let created = cluster.create(&account, WriteMode::Apply).await.unwrap();
    let r = ObjectRef::of(&created).unwrap();
    let planned = Op::Patch {
        target: r.clone(),
        uid: object::uid(&created).unwrap().to_string(),
        changes: vec![FieldChange {
            path: vec!["metadata".into(), "labels".into(), "tier".into()],
            before: None,
            after: Some(json!("quarantine")),
        }],
    };
    // Someone labels the account between the plan and the apply.
    cluster
        .patch(
            &r,
            &json!({"metadata": {"labels": {"tier": "human"}}}),
            WriteMode::Apply,
        )
        .await
        .unwrap();
    let err = apply::apply(&planned, "s", "r", Carry::Live, &cluster, &mut AutoApprove)
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::ChangedMeanwhile { .. }), "{err}");
    assert_eq!(
        object::labels(&cluster.get(&r).await.unwrap().unwrap())["tier"],
        "human"
    );

    // The account is deleted and recreated under the same name: a delete planned for the old
    // one leaves the new one alone.
    let old_uid = object::uid(&created).unwrap().to_string();
    let pre = Preconditions {
        uid: Some(old_uid.clone()),
        resource_version: None,
    };
    cluster
        .delete(&r, &pre, None, WriteMode::Apply)
        .await
        .unwrap();
    let fresh = cluster.create(&account, WriteMode::Apply).await.unwrap();
    let delete = Op::Delete {
        target: r.clone(),
        uid: Some(old_uid),
        run_id: None,
        grace_period_seconds: None,
    };
    let outcome = apply::apply(&delete, "s", "r", Carry::Live, &cluster, &mut AutoApprove)
        .await
        .unwrap();
    assert_eq!(format!("{outcome:?}"), "AlreadyDone");
    let now = cluster
        .get(&r)
        .await
        .unwrap()
        .expect("the new account is still there");
    assert_eq!(object::uid(&now), object::uid(&fresh));
}

#[tokio::test]
async fn a_list_longer_than_a_page_comes_back_whole_and_once_and_node_pods_by_field_selector() {
    let cluster = connect(kubeconfig()).await;
    let ns = Namespace::new(&cluster, "pages").await;
    // More objects than one page (500) holds.
    let creates = (0..520).map(|i| {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "namespace": ns.name}});
        let cluster = &cluster;
        async move { cluster.create(&cm, WriteMode::Apply).await.map(|_| ()) }
    });
    for result in futures::future::join_all(creates).await {
        result.unwrap();
    }
    let all = cluster
        .list(
            kinds::lookup("ConfigMap").unwrap(),
            Some(&ns.name),
            &Selector::default(),
        )
        .await
        .unwrap();
    // Paged (500 a request): every object once, none twice across the page boundary. The
    // namespace's own kube-root-ca.crt is there too.
    let mut names: Vec<&str> = all.iter().filter_map(object::name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len(), "an object came back twice");
    assert_eq!(
        all.iter()
            .filter(|o| object::name(o).is_some_and(|n| n.starts_with("cm-")))
            .count(),
        520
    );
    let pods = deployment(&cluster, &ns.name, "web", 2).await;
    let node = pods[0]["spec"]["nodeName"].as_str().unwrap().to_string();
    let on_node = cluster.pods_on_node(&node).await.unwrap();
    assert!(!on_node.is_empty());
    assert!(
        on_node.iter().all(|p| p["spec"]["nodeName"] == json!(node)),
        "only the node's pods come back"
    );
    assert!(
        on_node
            .iter()
            .any(|p| object::name(p) == object::name(&pods[0])),
        "the node's pods include ours"
    );
}

/// A KWOK node of a test's own, tainted `test-dedicated=<name>:NoSchedule` so only pods that
/// tolerate it land there; `cordoned` to start it unschedulable.
pub async fn dedicated_node(cluster: &KubeCluster, name: &str, cordoned: bool) -> Value {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"}, "labels": {"kubernetes.io/hostname": name, "type": "kwok"}},
        "spec": {"taints": [{"key": "test-dedicated", "value": name, "effect": "NoSchedule"}], "unschedulable": cordoned},
        "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"}, "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}}
    });
    cluster.create(&node, WriteMode::Apply).await.unwrap();
    for _ in 0..120 {
        let now = cluster
            .get(&ObjectRef::new("Node", None, name))
            .await
            .unwrap()
            .unwrap();
        let ready = now["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("node {name} did not become Ready");
}

/// Removes a node `dedicated_node` made.
pub async fn delete_node(cluster: &KubeCluster, name: &str) {
    let _ = cluster
        .delete(
            &ObjectRef::new("Node", None, name),
            &Preconditions::default(),
            None,
            WriteMode::Apply,
        )
        .await;
}

/// `kubectl` of the test control plane, with the admin kubeconfig: how a person would judge
/// what a run did, from outside.
pub fn kubectl(args: &[&str]) -> std::process::Output {
    let bin = std::process::Command::new(crate::harness::repo("scripts/build-control-plane"))
        .output()
        .expect("the control plane's binaries are cached");
    let dir = String::from_utf8_lossy(&bin.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    std::process::Command::new(format!("{dir}/kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// Every object of `kind` in `namespace`, as the API server lists them.
pub async fn list(cluster: &KubeCluster, kind: &str, namespace: &str) -> Vec<Value> {
    cluster
        .list(
            kinds::lookup(kind).expect("a known kind"),
            Some(namespace),
            &Selector::default(),
        )
        .await
        .unwrap()
}

/// A kubeconfig for a ServiceAccount's token, against the test control plane.
pub fn token_kubeconfig(token: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let admin = std::fs::read_to_string(kubeconfig()).unwrap();
    let field = |name: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in the admin kubeconfig"))
            .to_string()
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: responder\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: responder}}\ncurrent-context: test\n",
        field("server"),
        field("certificate-authority")
    );
    let path = dir.join("responder.kubeconfig");
    std::fs::write(&path, text).unwrap();
    path
}

/// A Deployment `web` of one pod pinned to a node `dedicated_node` made (tolerating its taint):
/// the name of its running pod.
pub async fn web_on_node(cluster: &KubeCluster, ns: &str, node: &str) -> String {
    let labels = json!({"app": "web"});
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                                       "tolerations": [{"key": "test-dedicated", "operator": "Exists"}],
                                       "containers": [{"name": "app", "image": "registry.example/app:1"}]}}}});
    cluster.create(&deploy, WriteMode::Apply).await.unwrap();
    let pod = running_pods(cluster, ns, "web", 1).await.remove(0);
    object::name(&pod).unwrap().to_string()
}
