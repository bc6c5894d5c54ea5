//! SimCluster must not drift from the API server: the same playbook, run on a snapshot of a
//! live namespace and on the live namespace itself, must leave the objects it touched equal
//! (server-managed fields aside).

use contain::cluster::object::ObjectRef;
use contain::cluster::sim::SimCluster;
use contain::cluster::{Cluster, WriteMode};
use contain::event::{EventKind, Outcome, Recorder};
use contain::execute::{AutoApprove, Executor, Mode, RunConfig};
use contain::playbook::load::{bind_params, load_bytes};
use contain::snapshot;
use contain::source::Source;
use serde_json::{Value, json};

use crate::live::{self, Namespace};

const PLAYBOOK: &str = r#"
apiVersion: contain/v1
kind: Playbook
metadata: {name: differential}
params:
  namespace: {type: string, required: true}
  pod: {type: string, required: true}
facts:
  pod: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
steps:
  - id: mark
    action: object.label
    target: {kind: Pod, selector: {app: web}, namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/suspect: "true", app.kubernetes.io/name: null}}
  - id: note
    action: object.annotate
    target: {kind: Deployment, name: web, namespace: "{{ params.namespace }}"}
    with: {annotations: {contain.dev/node: "{{ facts.pod.spec.nodeName }}", contain.dev/count: "{{ steps.mark.outputs.count }}"}}
  - id: shrink
    action: workload.scale
    target: {kind: Deployment, name: web, namespace: "{{ params.namespace }}"}
    with: {replicas: 1}
    evidence: {waived: differential test}
  - id: relabel-account
    action: object.label
    target: {kind: ServiceAccount, name: worker, namespace: "{{ params.namespace }}"}
    with: {labels: {tier: frozen}}
  - id: missing
    action: object.label
    target: {kind: ServiceAccount, name: not-there, namespace: "{{ params.namespace }}"}
    with: {labels: {a: b}}
    on_failure: continue
"#;

async fn run(
    cluster: &dyn Cluster,
    mode: Mode,
    namespace: &str,
    pod: &str,
) -> (Outcome, Vec<ObjectRef>) {
    run_playbook(PLAYBOOK, cluster, mode, namespace, pod).await
}

/// Runs `playbook` (params `namespace`, `pod`) on `cluster`; returns the outcome and every
/// object its plan touches.
async fn run_playbook(
    playbook: &str,
    cluster: &dyn Cluster,
    mode: Mode,
    namespace: &str,
    pod: &str,
) -> (Outcome, Vec<ObjectRef>) {
    let loaded = load_bytes("differential.yaml", playbook.as_bytes().to_vec())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let params = bind_params(
        &loaded,
        &[format!("namespace={namespace}"), format!("pod={pod}")],
    )
    .unwrap();
    let mut recorder = Recorder::default();
    let config = RunConfig::new("differential", mode, params, "test.yaml");
    let result = Executor::new(cluster, &mut recorder, &mut AutoApprove)
        .run(&loaded, &config)
        .await
        .unwrap();
    let touched = recorder
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepPlanned { plan, .. } => Some(
                plan.ops
                    .iter()
                    .filter_map(|op| op.target())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    (result.outcome, touched)
}

/// The object without what only the server decides.
fn comparable(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        // The deletion fields appear when the ReplicaSet controller starts removing a pod the
        // scale-down chose: the controller's doing, which a simulation runs no controller for.
        for field in [
            "resourceVersion",
            "managedFields",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    // Set by the deployment controller whenever it gets to it: a controller's field, not ours.
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove("deployment.kubernetes.io/revision");
    }
    object
}

#[tokio::test]
async fn simcluster_and_the_api_server_end_with_the_same_objects() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "diff").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 3).await;
    let pod = contain::cluster::object::name(&pods[0])
        .unwrap()
        .to_string();
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "worker", "namespace": ns.name, "labels": {"tier": "hot"}}});
    cluster.create(&account, WriteMode::Apply).await.unwrap();

    let objects = snapshot::export(&cluster, Some(&ns.name)).await.unwrap();
    let text = snapshot::to_yaml(&objects, "live").unwrap();
    let sim = SimCluster::load(&Source::new("snapshot.yaml", text))
        .unwrap_or_else(|r| panic!("{}", r.render(false)));

    let (sim_outcome, sim_touched) = run(&sim, Mode::Tabletop, &ns.name, &pod).await;
    let (live_outcome, live_touched) = run(&cluster, Mode::Live, &ns.name, &pod).await;
    assert_eq!(sim_outcome, live_outcome);
    assert_eq!(
        sim_touched, live_touched,
        "both planned the same operations on the same objects"
    );
    assert!(sim_touched.len() >= 5, "{sim_touched:?}");
    for target in &live_touched {
        let live_object = cluster.get(target).await.unwrap();
        let sim_object = sim.get(target).await.unwrap();
        // The live ReplicaSet controller may already have removed a pod the scale-down chose;
        // a pod still there must match the simulation exactly.
        if target.kind == "Pod" && live_object.is_none() {
            continue;
        }
        let (live_object, sim_object) = (live_object.map(comparable), sim_object.map(comparable));
        assert_eq!(
            live_object, sim_object,
            "{target} differs between the API server and SimCluster"
        );
    }
}

/// SimCluster answers a snapshot's access reviews with its own RBAC evaluation; the API server
/// must give the same verdict on every permission, for an account reached by name, as a User
/// and through its namespace's group.
#[tokio::test]
async fn simcluster_and_the_api_server_agree_on_what_an_account_may_do() {
    use contain::action::reach;
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "diff-rbac").await;
    let rbac = "rbac.authorization.k8s.io/v1";
    let cluster_role = format!("{}-lister", ns.name);
    let by_group = format!("{}-group", ns.name);
    let _cleanup = live::DeleteOnDrop(vec![
        ObjectRef::new("ClusterRoleBinding", None, &by_group),
        ObjectRef::new("ClusterRole", None, &cluster_role),
    ]);
    let role_ref = |kind: &str, name: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name});
    for object in [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": ns.name}}),
        json!({"apiVersion": rbac, "kind": "Role", "metadata": {"name": "ops", "namespace": ns.name},
               "rules": [{"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["get", "create"]},
                         {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["db"]}]}),
        json!({"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "as-user", "namespace": ns.name},
               "roleRef": role_ref("Role", "ops"),
               "subjects": [{"kind": "User", "name": format!("system:serviceaccount:{}:web", ns.name)}]}),
        json!({"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": cluster_role},
               "rules": [{"apiGroups": ["*"], "resources": ["*/log", "secrets"], "verbs": ["list"]}]}),
        json!({"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": by_group},
               "roleRef": role_ref("ClusterRole", &cluster_role),
               "subjects": [{"kind": "Group", "name": format!("system:serviceaccounts:{}", ns.name)}]}),
    ] {
        cluster.create(&object, WriteMode::Apply).await.unwrap();
    }
    let objects = snapshot::export(&cluster, Some(&ns.name)).await.unwrap();
    let text = snapshot::to_yaml(&objects, "live").unwrap();
    let sim = SimCluster::load(&Source::new("snapshot.yaml", text))
        .unwrap_or_else(|r| panic!("{}", r.render(false)));
    let mut checks = reach::sensitive(&ns.name);
    let access = |verb: &str, resource: &str, sub: &str, name: Option<&str>, ns: Option<&str>| {
        contain::cluster::Access {
            verb: verb.into(),
            group: String::new(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
        }
    };
    checks.extend([
        access("get", "secrets", "", Some("db"), Some(&ns.name)),
        access("get", "secrets", "", Some("other"), Some(&ns.name)),
        access("list", "pods", "log", None, None),
        access("get", "pods", "exec", None, Some(&ns.name)),
        access("create", "pods", "exec", None, Some("default")),
        access("*", "pods", "", None, Some(&ns.name)),
    ]);
    for user in [
        reach::service_account(&ns.name, "web"),
        reach::service_account(&ns.name, "other"),
        reach::baseline(),
    ] {
        let live_verdicts = cluster.review_subject_access(&user, &checks).await.unwrap();
        let sim_verdicts = sim.review_subject_access(&user, &checks).await.unwrap();
        for (live, sim) in live_verdicts.iter().zip(&sim_verdicts) {
            assert_eq!(
                live.allowed, sim.allowed,
                "{} {}: the API server says {:?}, SimCluster {:?}",
                user.username, live.access, live.reason, sim.reason
            );
        }
        if user.username.ends_with(":web") {
            assert!(live_verdicts.iter().filter(|v| v.allowed).count() >= 5);
        }
    }
}

/// A workload target picks the pods it owns: on SimCluster and on the API server alike, a
/// bystander whose pods match the workload's selector is in neither plan.
const BY_OWNER: &str = r#"
apiVersion: contain/v1
kind: Playbook
metadata: {name: by-owner}
params:
  namespace: {type: string, required: true}
  pod: {type: string, default: unused}
steps:
  - id: isolate
    action: network.isolate
    target: {kind: Deployment, name: web, namespace: "{{ params.namespace }}"}
"#;

#[tokio::test]
async fn simcluster_and_the_api_server_pick_a_workload_s_pods_by_owner_alike() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "diff-owner").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 2).await;
    // A bystander pod carrying the Deployment's labels, owned by nobody.
    let mut labels = pods[0]["metadata"]["labels"].clone();
    labels.as_object_mut().unwrap().remove("pod-template-hash");
    let bystander = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bystander", "namespace": ns.name, "labels": labels},
        "spec": {"nodeSelector": {"type": "kwok"},
                 "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "main", "image": "registry.example/other:1"}]}});
    cluster.create(&bystander, WriteMode::Apply).await.unwrap();
    let objects = snapshot::export(&cluster, Some(&ns.name)).await.unwrap();
    let text = snapshot::to_yaml(&objects, "live").unwrap();
    let sim = SimCluster::load(&Source::new("snapshot.yaml", text))
        .unwrap_or_else(|r| panic!("{}", r.render(false)));
    let (sim_outcome, sim_touched) =
        run_playbook(BY_OWNER, &sim, Mode::Tabletop, &ns.name, "unused").await;
    let (live_outcome, live_touched) =
        run_playbook(BY_OWNER, &cluster, Mode::Live, &ns.name, "unused").await;
    assert_eq!(sim_outcome, live_outcome);
    let names = |touched: &[ObjectRef]| -> Vec<String> {
        let mut names: Vec<String> = touched
            .iter()
            .filter(|r| r.kind == "Pod")
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names
    };
    let mut owned: Vec<String> = pods
        .iter()
        .map(|p| contain::cluster::object::name(p).unwrap().to_string())
        .collect();
    owned.sort();
    assert_eq!(names(&sim_touched), owned);
    assert_eq!(names(&live_touched), owned);
    let after = cluster
        .get(&ObjectRef::new("Pod", Some(&ns.name), "bystander"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !contain::cluster::object::labels(&after).contains_key("contain.dev/quarantine"),
        "the bystander is never labelled"
    );
}
