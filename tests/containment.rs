//! The containment actions on the real control plane: each shows its effect, passes its own
//! verification (a run exits 0 only then), and a rollback restores the objects as they were.

use std::time::Duration;

use contain::cluster::kube::KubeCluster;
use contain::cluster::object::{self, ObjectRef, Selector};
use contain::cluster::{Cluster, Preconditions, WriteMode, kinds};
use serde_json::{Value, json};

use crate::harness::{Live, Outcome, playbook_file};
use crate::live::{self, DeleteOnDrop, Namespace, dedicated_node, delete_node};

/// Runs a playbook text live, journaled in its own directory; returns the outcome and run id.
struct Runner(Live);

impl Runner {
    fn new() -> Self {
        Runner(Live::new())
    }

    fn run(&self, playbook: &str, set: &[String]) -> (Outcome, String) {
        let file = playbook_file(playbook);
        let mut args = vec![
            "run".to_string(),
            "--yes".into(),
            file.path().display().to_string(),
        ];
        for s in set {
            args.push("--set".into());
            args.push(s.clone());
        }
        let out = self.0.contain().args(args).run();
        // A run refused before its first write records nothing: no id then.
        let run = contain::journal::run_ids(self.0.journal.path())
            .pop()
            .unwrap_or_default();
        (out, run)
    }

    fn rollback(&self, run: &str) -> Outcome {
        self.0.contain().args(["rollback", "--yes", run]).run()
    }
}

fn ok(out: &Outcome) {
    assert_eq!(
        out.code, 0,
        "exit {}\n{}\n{}",
        out.code, out.stdout, out.stderr
    );
}

async fn get(cluster: &KubeCluster, kind: &str, ns: Option<&str>, name: &str) -> Option<Value> {
    cluster.get(&ObjectRef::new(kind, ns, name)).await.unwrap()
}

const ISOLATE: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: isolate-test}
params:
  pod: {type: string, required: true}
  namespace: {type: string, required: true}
  exclusive: {type: bool, default: false}
  exclusive_by: {type: string, default: policy-patch}
  # Pinned, so a ClusterNetworkPolicy CRD another test installs meanwhile changes nothing here.
  mechanism: {type: string, default: network-policy}
steps:
  - id: isolate
    action: network.isolate
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with:
      allow_namespaces: [forensics]
      exclusive: "{{ params.exclusive }}"
      exclusive_by: "{{ params.exclusive_by }}"
      mechanism: "{{ params.mechanism }}"
"#;

/// Every NetworkPolicy of a namespace as the API serves it, without the fields the server
/// manages (so a restored policy compares equal to the original).
async fn policy_specs(cluster: &KubeCluster, ns: &str) -> Value {
    let mut out = serde_json::Map::new();
    for mut policy in cluster
        .list(
            kinds::lookup("NetworkPolicy").unwrap(),
            Some(ns),
            &Selector::default(),
        )
        .await
        .unwrap()
    {
        let name = object::name(&policy).unwrap().to_string();
        let meta = policy["metadata"].as_object_mut().unwrap();
        for field in ["resourceVersion", "managedFields", "generation"] {
            meta.remove(field);
        }
        out.insert(name, policy);
    }
    Value::Object(out)
}

async fn access(cluster: &KubeCluster, ns: &str, pod: &str) -> Value {
    contain::explain::explain(cluster, ns, pod).await.unwrap()
}

#[tokio::test]
async fn isolation_holds_against_the_policies_the_namespace_already_has() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "isolate").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 2).await;
    let policy = |name: &str, spec: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": ns.name}, "spec": spec})
    };
    // What real namespaces have: one that selects every pod, one by label admitting every
    // namespace, and an egress allow-list by address.
    for p in [
        policy(
            "allow-same-namespace",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ),
        policy(
            "allow-web-from-anywhere",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 8080}]}]}),
        ),
        policy(
            "allow-egress-internal",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}}]}]}),
        ),
    ] {
        cluster.create(&p, WriteMode::Apply).await.unwrap();
    }
    let suspect = object::name(&pods[0]).unwrap().to_string();
    let neighbour = object::name(&pods[1]).unwrap().to_string();
    let set = |exclusive: bool, by: &str| {
        vec![
            format!("pod={suspect}"),
            format!("namespace={}", ns.name),
            format!("exclusive={exclusive}"),
            format!("exclusive_by={by}"),
        ]
    };
    let policies_before = policy_specs(&cluster, &ns.name).await;
    let neighbour_before = access(&cluster, &ns.name, &neighbour).await;
    let pod_before = get(&cluster, "Pod", Some(&ns.name), &suspect)
        .await
        .unwrap();

    // A plain isolation does not hold: verification computes the effective access and fails.
    let runner = Runner::new();
    let (plain, run) = runner.run(ISOLATE, &set(false, "policy-patch"));
    assert_eq!(plain.code, 6, "{}\n{}", plain.stdout, plain.stderr);
    assert!(
        plain
            .stdout
            .contains("allow-same-namespace, allow-web-from-anywhere also admit ingress traffic"),
        "{}",
        plain.stdout
    );
    assert!(
        plain
            .stdout
            .contains("allow-egress-internal also admits egress traffic"),
        "{}",
        plain.stdout
    );
    ok(&runner.rollback(&run));
    assert_eq!(policy_specs(&cluster, &ns.name).await, policies_before);

    // Relabelling cannot escape a policy that selects every pod: refused before any write.
    let runner = Runner::new();
    let (relabel, _) = runner.run(ISOLATE, &set(true, "relabel"));
    assert_eq!(relabel.code, 5, "{}\n{}", relabel.stdout, relabel.stderr);
    assert!(
        relabel
            .stdout
            .contains("allow-same-namespace selects every pod"),
        "{}",
        relabel.stdout
    );
    assert_eq!(policy_specs(&cluster, &ns.name).await, policies_before);

    // Exclusive by policy patch: only the allow-list admits the suspect, both ways.
    let runner = Runner::new();
    let (exclusive, run) = runner.run(ISOLATE, &set(true, "policy-patch"));
    ok(&exclusive);
    let suspect_now = access(&cluster, &ns.name, &suspect).await;
    for direction in suspect_now["directions"].as_array().unwrap() {
        assert_eq!(direction["isolated"], true, "{direction}");
        let from: Vec<&str> = direction["admitting"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["policy"].as_str().unwrap())
            .collect();
        assert!(
            from.iter()
                .all(|p| *p == contain::action::isolate::default_policy_name("isolate", &run)),
            "only the quarantine admits: {direction}"
        );
    }
    assert_eq!(
        access(&cluster, &ns.name, &neighbour).await,
        neighbour_before,
        "the other replica's effective access is unchanged"
    );
    let now = get(&cluster, "Pod", Some(&ns.name), &suspect)
        .await
        .unwrap();
    assert_eq!(
        object::labels(&now).get("app").map(String::as_str),
        Some("web"),
        "a policy patch leaves the pod's labels (and its Service and controller) alone"
    );
    ok(&runner.rollback(&run));
    assert_eq!(
        policy_specs(&cluster, &ns.name).await,
        policies_before,
        "every policy restored as it was, the quarantine gone"
    );
    let after = get(&cluster, "Pod", Some(&ns.name), &suspect)
        .await
        .unwrap();
    assert_eq!(
        after["metadata"]["labels"],
        pod_before["metadata"]["labels"]
    );
    assert_eq!(after["spec"], pod_before["spec"]);
}

const DETACH: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: detach-test}
params:
  pod: {type: string, required: true}
  namespace: {type: string, required: true}
steps:
  - id: detach
    action: pod.detach
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
"#;

#[tokio::test]
async fn detach_gets_a_replacement_and_leaves_the_endpoints() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "detach").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 2).await;
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns.name},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    });
    cluster.create(&service, WriteMode::Apply).await.unwrap();
    let pod = object::name(&pods[0]).unwrap().to_string();
    let uid = object::uid(&pods[0]).unwrap().to_string();
    // The endpoints controller lists the pod before the detach.
    let slices =
        Selector::labels([("kubernetes.io/service-name".to_string(), "web".to_string())].into());
    let listed = |uid: String| {
        let cluster = cluster.clone();
        let ns = ns.name.clone();
        let slices = slices.clone();
        async move {
            cluster
                .list(kinds::lookup("EndpointSlice").unwrap(), Some(&ns), &slices)
                .await
                .unwrap()
                .iter()
                .any(|s| {
                    s["endpoints"].as_array().into_iter().flatten().any(|e| {
                        e.pointer("/targetRef/uid").and_then(Value::as_str) == Some(uid.as_str())
                    })
                })
        }
    };
    for _ in 0..120 {
        if listed(uid.clone()).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        listed(uid.clone()).await,
        "the Service's EndpointSlice lists the pod before the detach"
    );
    let before = get(&cluster, "Pod", Some(&ns.name), &pod).await.unwrap();
    let runner = Runner::new();
    let (out, run) = runner.run(
        DETACH,
        &[format!("pod={pod}"), format!("namespace={}", ns.name)],
    );
    ok(&out);
    let detached = get(&cluster, "Pod", Some(&ns.name), &pod).await.unwrap();
    assert_eq!(
        object::uid(&detached),
        Some(uid.as_str()),
        "the suspect keeps running"
    );
    assert_eq!(object::labels(&detached)["contain.dev/detached"], "true");
    assert!(!object::labels(&detached).contains_key("app"));
    assert!(
        contain::cluster::object::controller_of(&detached).is_none(),
        "the ReplicaSet released the pod"
    );
    assert_eq!(
        live::running_pods(&cluster, &ns.name, "web", 2).await.len(),
        2,
        "a clean replacement runs"
    );
    assert!(
        !listed(uid.clone()).await,
        "the EndpointSlices no longer list the suspect"
    );
    let rolled = runner.rollback(&run);
    ok(&rolled);
    assert!(
        rolled
            .stdout
            .contains("partly undone: the pod keeps controller.kubernetes.io/pod-deletion-cost"),
        "the rollback says what it leaves: {}",
        rolled.stdout
    );
    // With its labels back, the ReplicaSet adopts the pod again and scales back to two: it
    // must delete the replacement, never the suspect (the evidence).
    let survivors = live::running_pods(&cluster, &ns.name, "web", 2).await;
    assert!(
        survivors
            .iter()
            .any(|p| object::uid(p) == Some(uid.as_str())),
        "the suspect survived being handed back to its ReplicaSet"
    );
    let after = get(&cluster, "Pod", Some(&ns.name), &pod).await.unwrap();
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    assert!(
        contain::cluster::object::controller_of(&after).is_some(),
        "the ReplicaSet adopted the suspect again"
    );
}

/// Whether the API server rejects `token` within 30 s. It caches successful token
/// authentications for a few seconds, so a token reviewed just before a rotation may pass for
/// that long; it must not pass after it.
async fn rejected_within_30s(cluster: &KubeCluster, token: &str) -> bool {
    for _ in 0..60 {
        if !cluster.review_token(token).await.unwrap().authenticated {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

const REVOKE: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: revoke-test}
params:
  namespace: {type: string, required: true}
steps:
  - id: revoke
    action: serviceaccount.revoke
    target: {kind: ServiceAccount, name: suspect, namespace: "{{ params.namespace }}"}
    with: {modes: [unbind, legacy-secrets, rotate]}
"#;

#[tokio::test]
async fn revoke_kills_tokens_and_a_rollback_restores_only_the_bindings() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "revoke").await;
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "suspect", "namespace": ns.name}});
    let account = cluster.create(&account, WriteMode::Apply).await.unwrap();
    let account_ref = ObjectRef::of(&account).unwrap();
    let subject = json!({"kind": "ServiceAccount", "name": "suspect", "namespace": ns.name});
    let other = json!({"kind": "ServiceAccount", "name": "default", "namespace": ns.name});
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader", "namespace": ns.name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}, "subjects": [subject, other]
    });
    cluster.create(&binding, WriteMode::Apply).await.unwrap();
    let cluster_binding_name = format!("{}-suspect", ns.name);
    let cluster_binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": cluster_binding_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}, "subjects": [subject]
    });
    cluster
        .create(&cluster_binding, WriteMode::Apply)
        .await
        .unwrap();
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "suspect-token", "namespace": ns.name, "annotations": {"kubernetes.io/service-account.name": "suspect"}}
    });
    cluster.create(&secret, WriteMode::Apply).await.unwrap();
    // A pod running as the account, for the pod-bound canary.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker", "namespace": ns.name},
        "spec": {"serviceAccountName": "suspect", "containers": [{"name": "w", "image": "registry.example/w:1"}]}});
    cluster.create(&pod, WriteMode::Apply).await.unwrap();
    // A token minted before the run, held by the "attacker".
    let stolen = cluster
        .request_token(&account_ref, 600, None)
        .await
        .unwrap();
    assert!(cluster.review_token(&stolen).await.unwrap().authenticated);
    let bindings_before = get(&cluster, "RoleBinding", Some(&ns.name), "reader")
        .await
        .unwrap()["subjects"]
        .clone();

    let runner = Runner::new();
    let (out, run) = runner.run(REVOKE, &[format!("namespace={}", ns.name)]);
    ok(&out);
    assert!(
        out.stdout.contains(
            "blast radius: 1 pod(s) run as suspect (worker), 1 legacy token Secret(s), 2 binding(s) name it, 0 grant it through its groups"
        ),
        "{}",
        out.stdout
    );
    let rotated = get(&cluster, "ServiceAccount", Some(&ns.name), "suspect")
        .await
        .unwrap();
    assert_ne!(
        object::uid(&rotated),
        object::uid(&account),
        "rotate gives the account a new uid"
    );
    assert!(
        rejected_within_30s(&cluster, &stolen).await,
        "the stolen token is rejected within 30 s of the rotation"
    );
    assert!(
        get(&cluster, "Secret", Some(&ns.name), "suspect-token")
            .await
            .is_none()
    );
    assert_eq!(
        get(&cluster, "RoleBinding", Some(&ns.name), "reader")
            .await
            .unwrap()["subjects"],
        json!([other])
    );
    assert!(
        get(&cluster, "ClusterRoleBinding", None, &cluster_binding_name)
            .await
            .unwrap()
            .get("subjects")
            .is_none()
    );

    let rolled = runner.rollback(&run);
    ok(&rolled);
    assert!(
        rolled.stdout.contains("partly undone: "),
        "the rollback says what it cannot undo: {}",
        rolled.stdout
    );
    assert_eq!(
        get(&cluster, "RoleBinding", Some(&ns.name), "reader")
            .await
            .unwrap()["subjects"],
        bindings_before
    );
    assert_eq!(
        get(&cluster, "ClusterRoleBinding", None, &cluster_binding_name)
            .await
            .unwrap()["subjects"],
        json!([subject])
    );
    let after = get(&cluster, "ServiceAccount", Some(&ns.name), "suspect")
        .await
        .unwrap();
    assert_eq!(
        object::uid(&after),
        object::uid(&rotated),
        "the compromised account is never brought back"
    );
    assert!(
        get(&cluster, "Secret", Some(&ns.name), "suspect-token")
            .await
            .is_none(),
        "nor its legacy token"
    );
    assert!(!cluster.review_token(&stolen).await.unwrap().authenticated);
    let _ = cluster
        .delete(
            &ObjectRef::new("ClusterRoleBinding", None, &cluster_binding_name),
            &Preconditions::default(),
            None,
            WriteMode::Apply,
        )
        .await;
}

const QUARANTINE: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: quarantine-test}
params:
  node: {type: string, required: true}
steps:
  - id: quarantine
    action: node.quarantine
    target: {kind: Node, name: "{{ params.node }}"}
    with: {drain: true, timeout: 60s}
    evidence: {waived: test}
"#;

#[tokio::test]
async fn quarantine_drains_around_a_budget_keeps_the_suspect_and_rolls_back() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "quarantine").await;
    let suffix = &ns.name[ns.name.len() - 6..];
    let (node, spare) = (format!("q-node-{suffix}"), format!("q-spare-{suffix}"));
    dedicated_node(&cluster, &node, false).await;
    let _cleanup = DeleteOnDrop::guard_of(&node);
    // The spare starts cordoned, so the workload lands on `node`; it takes the evicted pods later.
    dedicated_node(&cluster, &spare, true).await;
    let affinity = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node, spare]}]}]}}});
    let tolerations =
        json!([{"key": "test-dedicated", "operator": "Exists", "effect": "NoSchedule"}]);
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": ns.name},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "app"}}, "template": {"metadata": {"labels": {"app": "app"}},
            "spec": {"affinity": affinity, "tolerations": tolerations, "containers": [{"name": "app", "image": "registry.example/app:1"}]}}}
    });
    cluster.create(&deployment, WriteMode::Apply).await.unwrap();
    let pods = live::running_pods(&cluster, &ns.name, "app", 3).await;
    assert!(pods.iter().all(|p| p["spec"]["nodeName"] == json!(node)));
    let suspect = object::name(&pods[0]).unwrap().to_string();
    let mark = json!({"metadata": {"labels": {"contain.dev/suspect": "true"}}});
    cluster
        .patch(
            &ObjectRef::new("Pod", Some(&ns.name), &suspect),
            &mark,
            WriteMode::Apply,
        )
        .await
        .unwrap();
    // Two of three must stay available: the second eviction waits for a replacement.
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "app", "namespace": ns.name},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "app"}}}});
    cluster.create(&pdb, WriteMode::Apply).await.unwrap();
    for _ in 0..120 {
        let pdb = get(&cluster, "PodDisruptionBudget", Some(&ns.name), "app")
            .await
            .unwrap();
        if pdb
            .pointer("/status/disruptionsAllowed")
            .and_then(Value::as_i64)
            == Some(1)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let uncordon = json!({"spec": {"unschedulable": false}});
    cluster
        .patch(
            &ObjectRef::new("Node", None, &spare),
            &uncordon,
            WriteMode::Apply,
        )
        .await
        .unwrap();
    let before = get(&cluster, "Node", None, &node).await.unwrap();

    let runner = Runner::new();
    let (out, run) = runner.run(QUARANTINE, &[format!("node={node}")]);
    ok(&out);
    let quarantined = get(&cluster, "Node", None, &node).await.unwrap();
    assert_eq!(quarantined["spec"]["unschedulable"], json!(true));
    let taints = quarantined["spec"]["taints"].as_array().unwrap();
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "contain.dev/quarantine" && t["effect"] == "NoSchedule")
    );
    assert!(
        !taints
            .iter()
            .any(|t| t["effect"] == "NoExecute" && t["key"] == "contain.dev/quarantine")
    );
    assert_eq!(object::labels(&quarantined)["contain.dev/quarantine"], run);
    let now = live::running_pods(&cluster, &ns.name, "app", 3).await;
    let on_node: Vec<&str> = now
        .iter()
        .filter(|p| p["spec"]["nodeName"] == json!(node))
        .filter_map(object::name)
        .collect();
    assert_eq!(
        on_node,
        [suspect.as_str()],
        "only the suspect stays on the quarantined node"
    );
    // A new pod that could only go to the quarantined node is not scheduled there.
    let probe = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns.name},
        "spec": {"tolerations": tolerations, "nodeSelector": {"kubernetes.io/hostname": node}, "containers": [{"name": "p", "image": "registry.example/p:1"}]}});
    cluster.create(&probe, WriteMode::Apply).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probe = get(&cluster, "Pod", Some(&ns.name), "probe").await.unwrap();
    assert!(
        probe["spec"].get("nodeName").is_none(),
        "the scheduler placed a pod on a quarantined node"
    );
    let pdb = get(&cluster, "PodDisruptionBudget", Some(&ns.name), "app")
        .await
        .unwrap();
    assert!(
        pdb["status"]["currentHealthy"].as_i64() >= pdb["status"]["desiredHealthy"].as_i64(),
        "{pdb}"
    );

    let rolled = runner.rollback(&run);
    ok(&rolled);
    assert!(
        rolled
            .stdout
            .contains("partly undone: evicted pods are not brought back"),
        "{}",
        rolled.stdout
    );
    // The controller removes its own unschedulable taint once the node is uncordoned.
    let mut after = Value::Null;
    for _ in 0..120 {
        after = get(&cluster, "Node", None, &node).await.unwrap();
        if after["spec"]["taints"] == before["spec"]["taints"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        after["spec"], before["spec"],
        "the node's spec is restored exactly"
    );
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    delete_node(&cluster, &node).await;
    delete_node(&cluster, &spare).await;
}

const CORDON: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: cordon-test}
params:
  node: {type: string, required: true}
steps:
  - id: cordon
    action: node.cordon
    target: {kind: Node, name: "{{ params.node }}"}
  - id: taint
    action: node.taint
    target: {kind: Node, name: "{{ params.node }}"}
"#;

#[tokio::test]
async fn a_node_cordoned_before_stays_cordoned_after_rollback() {
    let cluster = live::connect(live::kubeconfig()).await;
    let id = contain::cmd::ctx::new_run_id();
    let suffix = id.rsplit('-').next().unwrap();
    let node = format!("c-node-{suffix}");
    let before = dedicated_node(&cluster, &node, true).await;
    let _cleanup = DeleteOnDrop::guard_of(&node);
    let runner = Runner::new();
    let (out, run) = runner.run(CORDON, &[format!("node={node}")]);
    ok(&out);
    assert!(out.stdout.contains("already cordoned"), "{}", out.stdout);
    ok(&runner.rollback(&run));
    let after = get(&cluster, "Node", None, &node).await.unwrap();
    assert_eq!(
        after["spec"]["unschedulable"],
        json!(true),
        "still cordoned"
    );
    let ours = |n: &Value| {
        n["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["key"] == "contain.dev/quarantine")
    };
    assert!(!ours(&after) && !ours(&before));
    delete_node(&cluster, &node).await;
}

const GUARDED: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: guard-test}
params:
  node: {type: string, required: true}
  forensics: {type: string, required: true}
steps:
  - id: quarantine
    action: node.quarantine
    target: {kind: Node, name: "{{ params.node }}"}
    with: {guard_exempt_namespaces: ["{{ params.forensics }}"]}
"#;

/// A pod that tolerates every taint (cordon included) and asks for `node` by its hostname.
fn tolerant_pod(ns: &str, name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
           "spec": {"tolerations": [{"operator": "Exists"}],
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "containers": [{"name": "c", "image": "registry.example/x:1"}]}})
}

impl DeleteOnDrop {
    /// A node's admission guard: its binding and its policy.
    fn guard_of(node: &str) -> Self {
        Self::admission(&format!("contain-quarantine-{node}"))
    }

    /// A ValidatingAdmissionPolicy and its binding of the same name.
    fn admission(name: &str) -> Self {
        DeleteOnDrop(vec![
            ObjectRef::new("ValidatingAdmissionPolicyBinding", None, name),
            ObjectRef::new("ValidatingAdmissionPolicy", None, name),
        ])
    }
}

async fn bound_node(cluster: &KubeCluster, ns: &str, name: &str) -> Option<String> {
    get(cluster, "Pod", Some(ns), name).await.unwrap()["spec"]["nodeName"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn a_quarantined_node_refuses_pods_that_tolerate_every_taint_until_rollback() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "guard").await;
    let forensics = Namespace::new(&cluster, "guard-forensics").await;
    let suffix = &ns.name[ns.name.len() - 6..];
    let node = format!("g-node-{suffix}");
    dedicated_node(&cluster, &node, false).await;
    let _cleanup = DeleteOnDrop::guard_of(&node);

    let runner = Runner::new();
    let (out, run) = runner.run(
        GUARDED,
        &[
            format!("node={node}"),
            format!("forensics={}", forensics.name),
        ],
    );
    ok(&out);
    // The guard was checked by a server-side dry run, and passed: the journal records it.
    let export = runner.0.contain().args(["journal", "export", &run]).run();
    let guard_check = export
        .stdout
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["body"]["record"] == "verified")
        .flat_map(|r| {
            r["body"]["verification"]["checks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|c| {
            c["what"]
                .as_str()
                .is_some_and(|w| w.contains("refuses a new pod pinned to"))
        })
        .expect("the guard's check is journaled");
    assert_eq!(guard_check["status"], "passed", "{guard_check}");
    // Cordon and taint alone do not stop this pod; the admission guard refuses its binding.
    cluster
        .create(&tolerant_pod(&ns.name, "intruder", &node), WriteMode::Apply)
        .await
        .unwrap();
    // A pod created straight onto the node is refused at once.
    let mut pinned = tolerant_pod(&ns.name, "pinned", &node);
    pinned["spec"]["nodeName"] = json!(node);
    let refused = cluster.create(&pinned, WriteMode::Apply).await.unwrap_err();
    assert!(refused.to_string().contains("is quarantined"), "{refused}");
    // The forensics namespace is exempt: its pod lands on the node.
    cluster
        .create(
            &tolerant_pod(&forensics.name, "examiner", &node),
            WriteMode::Apply,
        )
        .await
        .unwrap();
    let mut examiner = None;
    for _ in 0..120 {
        examiner = bound_node(&cluster, &forensics.name, "examiner").await;
        if examiner.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        examiner.as_deref(),
        Some(node.as_str()),
        "the forensics pod lands"
    );
    assert_eq!(
        bound_node(&cluster, &ns.name, "intruder").await,
        None,
        "the tolerant pod stays unscheduled while the node is quarantined"
    );

    ok(&runner.rollback(&run));
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(
            get(&cluster, kind, None, &format!("contain-quarantine-{node}"))
                .await
                .is_none(),
            "rollback removes the {kind}"
        );
    }
    let mut intruder = None;
    for _ in 0..240 {
        intruder = bound_node(&cluster, &ns.name, "intruder").await;
        if intruder.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        intruder.as_deref(),
        Some(node.as_str()),
        "after rollback the scheduler binds the pod"
    );
    delete_node(&cluster, &node).await;
}

#[tokio::test]
async fn a_policy_admission_refuses_to_patch_fails_the_run_before_any_write() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "refuse").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 1).await;
    let suspect = object::name(&pods[0]).unwrap().to_string();
    let allow = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all-in", "namespace": ns.name, "labels": {"owner": "platform"}},
        "spec": {"podSelector": {}, "ingress": [{}]}});
    cluster.create(&allow, WriteMode::Apply).await.unwrap();
    // The platform team's admission policy: nobody else may change its NetworkPolicies.
    let name = format!("protect-{}", ns.name);
    let policy = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["networkpolicies"]}]},
                 "validations": [{"expression": "!has(oldObject.metadata.labels) || !('owner' in oldObject.metadata.labels) || oldObject.metadata.labels['owner'] != 'platform'",
                                  "message": "platform NetworkPolicies are changed through the platform repository"}]}});
    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}}}}});
    cluster.create(&policy, WriteMode::Apply).await.unwrap();
    cluster.create(&binding, WriteMode::Apply).await.unwrap();
    let _remove = DeleteOnDrop::admission(&name);
    let policies_before = policy_specs(&cluster, &ns.name).await;
    let pod_before = get(&cluster, "Pod", Some(&ns.name), &suspect)
        .await
        .unwrap();
    // Wait until the admission policy is active: a dry-run change of the policy is refused.
    let allow_ref = ObjectRef::new("NetworkPolicy", Some(&ns.name), "allow-all-in");
    let probe = json!({"metadata": {"annotations": {"probe": "1"}}});
    let mut active = false;
    for _ in 0..60 {
        if cluster
            .patch(&allow_ref, &probe, WriteMode::DryRun)
            .await
            .is_err()
        {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(active, "the admission policy became active");
    let runner = Runner::new();
    let (attempt, _) = runner.run(
        ISOLATE,
        &[
            format!("pod={suspect}"),
            format!("namespace={}", ns.name),
            "exclusive=true".into(),
            "exclusive_by=policy-patch".into(),
        ],
    );
    assert_eq!(attempt.code, 5, "{}\n{}", attempt.stdout, attempt.stderr);
    let out = attempt;
    assert!(
        out.stdout.contains("the API server refuses")
            && out.stdout.contains("allow-all-in")
            && out
                .stdout
                .contains("platform NetworkPolicies are changed through the platform repository"),
        "the refusal names the policy and the reason: {}",
        out.stdout
    );
    assert_eq!(
        policy_specs(&cluster, &ns.name).await,
        policies_before,
        "nothing was written"
    );
    let pod_after = get(&cluster, "Pod", Some(&ns.name), &suspect)
        .await
        .unwrap();
    assert_eq!(
        pod_after["metadata"]["labels"],
        pod_before["metadata"]["labels"]
    );
}

async fn wait_served(cluster: &KubeCluster, served: bool) {
    let kind = kinds::lookup("ClusterNetworkPolicy").unwrap();
    for _ in 0..120 {
        if cluster.serves(kind).await.unwrap() == served {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("ClusterNetworkPolicy served: expected {served}");
}

#[tokio::test]
async fn isolation_uses_a_cluster_network_policy_where_served_and_network_policies_elsewhere() {
    let _crd = live::CLUSTER_POLICY_CRD.lock().await;
    let crd = std::env::var("CONTAIN_TEST_CNP_CRD")
        .expect("CONTAIN_TEST_CNP_CRD names the ClusterNetworkPolicy CRD (scripts/test sets it)");
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "cnp").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 1).await;
    let suspect = object::name(&pods[0]).unwrap().to_string();
    let allow = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-all-in", "namespace": ns.name},
        "spec": {"podSelector": {}, "ingress": [{}]}});
    cluster.create(&allow, WriteMode::Apply).await.unwrap();
    let policies_before = policy_specs(&cluster, &ns.name).await;
    let set = [
        format!("pod={suspect}"),
        format!("namespace={}", ns.name),
        "exclusive=true".into(),
        "mechanism=auto".into(),
    ];

    let applied = live::kubectl(&["apply", "-f", &crd]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    struct RemoveCrd;
    impl Drop for RemoveCrd {
        fn drop(&mut self) {
            let _ = live::kubectl(&[
                "delete",
                "crd",
                "clusternetworkpolicies.policy.networking.k8s.io",
                "--wait=true",
            ]);
        }
    }
    let remove = RemoveCrd;
    wait_served(&cluster, true).await;
    let runner = Runner::new();
    let (out, run) = runner.run(ISOLATE, &set);
    ok(&out);
    assert!(
        out.stdout
            .contains("+ create ClusterNetworkPolicy contain-isolate-")
            && out
                .stdout
                .contains("its Deny rules override every NetworkPolicy"),
        "the plan names the mechanism: {}",
        out.stdout
    );
    let name = contain::action::isolate::default_policy_name(&format!("{}-isolate", ns.name), &run);
    let cnp = get(&cluster, "ClusterNetworkPolicy", None, &name)
        .await
        .unwrap();
    assert_eq!(cnp["spec"]["tier"], "Admin");
    assert_eq!(
        cnp["spec"]["subject"]["pods"]["podSelector"]["matchLabels"]["contain.dev/quarantine"],
        json!(run)
    );
    assert_eq!(
        policy_specs(&cluster, &ns.name).await,
        policies_before,
        "no NetworkPolicy is created or patched"
    );
    ok(&runner.rollback(&run));
    assert!(
        get(&cluster, "ClusterNetworkPolicy", None, &name)
            .await
            .is_none()
    );

    // Targeted egress blocking: only the named networks are denied.
    let targeted = playbook_file(&format!(
        "apiVersion: contain/v1\nkind: Playbook\nmetadata: {{name: deny}}\nsteps:\n  - id: block\n    action: network.isolate\n    target: {{kind: Pod, name: {suspect}, namespace: {}}}\n    with: {{deny_cidrs: [203.0.113.0/24]}}\n",
        ns.name
    ));
    let blocker = Runner::new();
    let blocked = blocker
        .0
        .contain()
        .args(["run", "--yes", &targeted.path().display().to_string()])
        .run();
    ok(&blocked);
    let block_run = contain::journal::run_ids(blocker.0.journal.path())
        .pop()
        .unwrap();
    let cnp = get(
        &cluster,
        "ClusterNetworkPolicy",
        None,
        &contain::action::isolate::default_policy_name(&format!("{}-block", ns.name), &block_run),
    )
    .await
    .unwrap();
    assert_eq!(
        cnp["spec"]["egress"][0]["to"][0]["networks"],
        json!(["203.0.113.0/24"])
    );
    assert_eq!(
        cnp["spec"]["ingress"],
        json!([]),
        "ingress is left alone: {cnp}"
    );
    ok(&blocker.rollback(&block_run));
    drop(remove);
    wait_served(&cluster, false).await;

    // Without the CRD, the same playbook isolates with NetworkPolicies.
    let runner = Runner::new();
    let (out, run) = runner.run(ISOLATE, &set);
    ok(&out);
    assert!(
        out.stdout.contains("+ create NetworkPolicy")
            && out.stdout.contains("exclusive (policy patch)"),
        "{}",
        out.stdout
    );
    ok(&runner.rollback(&run));
    assert_eq!(policy_specs(&cluster, &ns.name).await, policies_before);
    // And a targeted block is refused there: a NetworkPolicy cannot deny.
    let refused = Runner::new()
        .0
        .contain()
        .args(["run", "--yes", &targeted.path().display().to_string()])
        .run();
    assert_eq!(refused.code, 5, "{}", refused.stdout);
    assert!(
        refused.stdout.contains("a NetworkPolicy can only allow"),
        "{}",
        refused.stdout
    );
}

/// The shipped revocation playbook, from the repository.
fn shipped(name: &str) -> String {
    std::fs::read_to_string(crate::harness::repo(&format!("playbooks/{name}"))).unwrap()
}

#[tokio::test]
async fn a_revocation_is_judged_by_what_the_api_server_still_allows() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "reach").await;
    let rbac = "rbac.authorization.k8s.io/v1";
    let role = format!("{}-secret-lister", ns.name);
    let by_group = format!("{}-accounts", ns.name);
    let _cluster_scoped = DeleteOnDrop(vec![
        ObjectRef::new("ClusterRoleBinding", None, &by_group),
        ObjectRef::new("ClusterRole", None, &role),
    ]);
    let objects = [
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": ns.name}}),
        json!({"apiVersion": rbac, "kind": "Role", "metadata": {"name": "secrets", "namespace": ns.name},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]}),
        // The account named as a User, not as a ServiceAccount subject.
        json!({"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "web-as-user", "namespace": ns.name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secrets"},
               "subjects": [{"kind": "User", "name": format!("system:serviceaccount:{}:web", ns.name)}]}),
        json!({"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": role},
               "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]}),
        // And through the group of every account of its namespace.
        json!({"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": by_group},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": [{"kind": "Group", "name": format!("system:serviceaccounts:{}", ns.name)}]}),
    ];
    for object in &objects {
        cluster.create(object, WriteMode::Apply).await.unwrap();
    }
    let account_ref = ObjectRef::new("ServiceAccount", Some(&ns.name), "web");
    let stolen = cluster
        .request_token(&account_ref, 600, None)
        .await
        .unwrap();
    let identity = contain::action::reach::service_account(&ns.name, "web");
    let list_secrets = [contain::cluster::Access::on(
        "list",
        kinds::lookup("Secret").unwrap(),
        None,
        None,
    )];
    let can_list = || async {
        cluster
            .review_subject_access(&identity, &list_secrets)
            .await
            .unwrap()[0]
            .allowed
    };
    assert!(can_list().await, "granted before the run");

    let runner = Runner::new();
    let params = [
        format!("namespace={}", ns.name),
        "account=web".to_string(),
        "rotate=false".to_string(),
    ];
    let (out, _) = runner.run(&shipped("revoke-serviceaccount.yaml"), &params);
    assert_eq!(out.code, 6, "{}\n{}", out.stdout, out.stderr);
    let user = format!("system:serviceaccount:{}:web", ns.name);
    for path in [
        format!(
            "reach: RoleBinding {}/web-as-user grants Role secrets to User {user}: removed by `unbind`",
            ns.name
        ),
        format!(
            "reach: ClusterRoleBinding {by_group} grants ClusterRole {role} to Group system:serviceaccounts:{}, shared with every ServiceAccount of namespace {} (2): kept",
            ns.name, ns.name
        ),
    ] {
        assert!(
            out.stdout.contains(&path),
            "the plan names {path}:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains(&format!(
            "FAILED: {user} can no longer list secrets (cluster-wide) (RBAC: allowed by ClusterRoleBinding \"{by_group}\""
        )),
        "{}",
        out.stdout
    );
    // Judged from outside: the User binding is emptied, the group's grant stands.
    assert!(
        get(&cluster, "RoleBinding", Some(&ns.name), "web-as-user")
            .await
            .unwrap()
            .get("subjects")
            .is_none()
    );
    assert!(can_list().await);

    let params = [format!("namespace={}", ns.name), "account=web".to_string()];
    let (out, _) = runner.run(&shipped("revoke-serviceaccount.yaml"), &params);
    ok(&out);
    assert!(
        rejected_within_30s(&cluster, &stolen).await,
        "the stolen token is dead after the rotation"
    );
    // The name still holds what its group grants: the recreated account is a member too.
    assert!(can_list().await);
}

/// Whether every direction of the pod's effective access is isolated.
async fn isolated(cluster: &KubeCluster, ns: &str, pod: &str) -> bool {
    access(cluster, ns, pod).await["directions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["isolated"] == true)
}

#[tokio::test]
async fn two_suspects_in_one_namespace_are_isolated_by_two_runs_and_rolled_back_alone() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "two").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 3).await;
    let allow_web = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": ns.name},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"], "ingress": [{}]}});
    cluster.create(&allow_web, WriteMode::Apply).await.unwrap();
    let names: Vec<String> = pods
        .iter()
        .map(|p| object::name(p).unwrap().to_string())
        .collect();
    let (first, second, bystander) = (&names[0], &names[1], &names[2]);
    let policies_before = policy_specs(&cluster, &ns.name).await;
    let isolate = shipped("isolate-pod.yaml");
    let runner = Runner::new();
    let params = |pod: &str| [format!("pod={pod}"), format!("namespace={}", ns.name)];
    let (out, run_one) = runner.run(&isolate, &params(first));
    ok(&out);
    let (out, run_two) = runner.run(&isolate, &params(second));
    ok(&out);
    assert_ne!(run_one, run_two);
    for policy in [
        contain::action::isolate::default_policy_name("isolate", &run_one),
        contain::action::isolate::default_policy_name("isolate", &run_two),
    ] {
        assert!(
            get(&cluster, "NetworkPolicy", Some(&ns.name), &policy)
                .await
                .is_some(),
            "each run has its own policy: {policy}"
        );
    }
    assert!(isolated(&cluster, &ns.name, first).await);
    assert!(isolated(&cluster, &ns.name, second).await);
    assert!(!isolated(&cluster, &ns.name, bystander).await);

    // The first run, rolled back alone: its suspect is free again, the second stays cut off
    // (the other policy keeps excluding quarantined pods, which the second run needs).
    let rolled = runner.rollback(&run_one);
    ok(&rolled);
    assert!(
        rolled
            .stdout
            .contains("keeps its exclusion of quarantined pods"),
        "{}",
        rolled.stdout
    );
    assert!(!isolated(&cluster, &ns.name, first).await);
    assert!(isolated(&cluster, &ns.name, second).await);
    let first_pod = get(&cluster, "Pod", Some(&ns.name), first).await.unwrap();
    assert!(!object::labels(&first_pod).contains_key("contain.dev/quarantine"));

    // The second run, rolled back last, takes the shared exclusion out: the namespace's
    // policies are exactly as they were before either run.
    ok(&runner.rollback(&run_two));
    assert!(!isolated(&cluster, &ns.name, second).await);
    assert_eq!(policy_specs(&cluster, &ns.name).await, policies_before);
}
