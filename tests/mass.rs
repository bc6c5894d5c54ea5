//! Mass containment on the live control plane: one image digest running in several namespaces
//! (eight pods in each, beside a clean one),
//! contained by the shipped `contain-image` playbook in one run (a part per namespace), killed
//! in the middle, resumed to the uninterrupted result, then rolled back to what was there.

use contain::cluster::kube::KubeCluster;
use contain::cluster::object::{self, ObjectRef, Selector};
use contain::cluster::{Cluster, WriteMode, kinds};
use serde_json::{Value, json};

use crate::harness::{Live, repo};
use crate::live::{self, Namespace};

/// The pods running the digest in each namespace: eight, so re-reading them before and after the
/// writes goes by one list per namespace (the path a mass run takes), not a GET each.
const BAD: [&str; 8] = [
    "bad-a", "bad-b", "bad-c", "bad-d", "bad-e", "bad-f", "bad-g", "bad-h",
];

/// A digest no other test runs: the playbook selects across every namespace of the cluster.
fn fresh_digest() -> String {
    use sha2::Digest;
    let seed = contain::cmd::ctx::new_run_id();
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(seed.as_bytes()))
    )
}

async fn bare_pod(cluster: &KubeCluster, ns: &str, name: &str, image: &str) {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": image}]}});
    cluster.create(&pod, WriteMode::Apply).await.unwrap();
}

/// For each pod: its suspect and quarantine labels; for each namespace: whether the run's
/// isolation policy is there.
async fn state(cluster: &KubeCluster, namespaces: &[Namespace]) -> Value {
    let mut out = serde_json::Map::new();
    for ns in namespaces {
        for pod in BAD.iter().copied().chain(["clean"]) {
            let found = cluster
                .get(&ObjectRef::new("Pod", Some(&ns.name), pod))
                .await
                .unwrap()
                .expect("the pod is still there");
            let labels = object::labels(&found);
            out.insert(
                format!("{}/{pod}", ns.name),
                json!({
                    "suspect": labels.get("contain.dev/suspect"),
                    "quarantined": labels.contains_key("contain.dev/quarantine"),
                    "uid": object::uid(&found),
                }),
            );
        }
        // The run's policy carries the run in its name.
        let policy = cluster
            .list(
                kinds::lookup("NetworkPolicy").unwrap(),
                Some(&ns.name),
                &Selector::default(),
            )
            .await
            .unwrap()
            .iter()
            .any(|p| object::name(p).is_some_and(|n| n.starts_with("contain-isolate-isolate-")));
        out.insert(format!("{}/policy", ns.name), json!(policy));
    }
    Value::Object(out)
}

#[tokio::test]
async fn one_digest_across_namespaces_is_contained_resumed_after_a_kill_and_rolled_back() {
    let cluster = live::connect(live::kubeconfig()).await;
    let digest = fresh_digest();
    let bad = format!("registry.example/app@{digest}");
    let mut namespaces = Vec::new();
    for _ in 0..3 {
        let ns = Namespace::new(&cluster, "mass").await;
        for pod in BAD {
            bare_pod(&cluster, &ns.name, pod, &bad).await;
        }
        bare_pod(&cluster, &ns.name, "clean", "registry.example/app:1").await;
        namespaces.push(ns);
    }
    namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    let before = state(&cluster, &namespaces).await;

    let live = Live::new();
    let run = |extra: &[(&str, String)]| {
        let mut contain = live.contain().args([
            "run".to_string(),
            "--yes".to_string(),
            repo("playbooks/contain-image.yaml"),
            "--set".to_string(),
            format!("digest={digest}"),
        ]);
        for (key, value) in extra {
            contain = contain.env(key, value);
        }
        contain.run()
    };
    // Killed once the second namespace's isolation is written, before that part is done.
    let second = format!("isolate@{}", namespaces[1].name);
    let killed = run(&[("CONTAIN_TEST_FAILPOINT", format!("after-write:{second}"))]);
    assert!(
        killed.code == -1 && killed.stderr.contains("failpoint"),
        "the run was not killed: {}\n{}",
        killed.stdout,
        killed.stderr
    );
    let run_id = live.last_run();
    let partial = state(&cluster, &namespaces).await;
    assert_eq!(partial[format!("{}/policy", namespaces[0].name)], true);
    assert_eq!(partial[format!("{}/policy", namespaces[2].name)], false);

    let resumed = live.contain().args(["resume", "--yes", &run_id]).run();
    assert_eq!(
        resumed.code, 0,
        "resume\n{}\n{}",
        resumed.stdout, resumed.stderr
    );
    let after = state(&cluster, &namespaces).await;
    for ns in &namespaces {
        assert_eq!(after[format!("{}/policy", ns.name)], true, "{}", ns.name);
        for pod in BAD {
            let seen = &after[format!("{}/{pod}", ns.name)];
            assert_eq!(seen["suspect"], "true", "{}/{pod}", ns.name);
            assert_eq!(seen["quarantined"], true, "{}/{pod}", ns.name);
        }
        let clean = &after[format!("{}/clean", ns.name)];
        assert_eq!(
            clean["suspect"],
            Value::Null,
            "{}/clean was marked",
            ns.name
        );
        assert_eq!(
            clean["quarantined"], false,
            "{}/clean was isolated",
            ns.name
        );
    }
    // Each namespace is its own part of the plan, applied once.
    let shown = live
        .contain()
        .args(["-o", "json", "journal", "show", &run_id])
        .run()
        .json();
    let parts: Vec<&str> = shown["plan"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["part_of"] == "isolate")
        .filter_map(|s| s["id"].as_str())
        .collect();
    let expected: Vec<String> = namespaces
        .iter()
        .map(|ns| format!("isolate@{}", ns.name))
        .collect();
    assert_eq!(parts, expected);

    let rolled = live.contain().args(["rollback", "--yes", &run_id]).run();
    assert_eq!(
        rolled.code, 0,
        "rollback\n{}\n{}",
        rolled.stdout, rolled.stderr
    );
    assert_eq!(state(&cluster, &namespaces).await, before);
}
