//! Secrets never leak: canary values in a Secret, a ConfigMap, a literal environment variable
//! of the suspect's containers and kubectl's last-applied annotation are planted; after the
//! whole compromised-pod playbook, its rollback and its incident report (every format), no
//! journal file, evidence artifact, report, line printed on the terminal, or the run's
//! ContainmentRun in the cluster holds any of them.

use std::path::Path;

use contain::cluster::object;
use contain::cluster::{Cluster, WriteMode};
use serde_json::json;

use crate::harness::{Live, repo};
use crate::live::{self, DeleteOnDrop, Namespace};

/// Every file below `dir`, read as bytes (the journal's files are binary).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    found
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn canaries_never_leave_the_cluster_through_a_run_its_rollback_or_its_report() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "canary").await;
    let suffix = ns.name.rsplit('-').next().unwrap().to_string();
    let canaries = [
        format!("canary-secret-{suffix}"),
        format!("canary-configmap-{suffix}"),
        format!("canary-env-{suffix}"),
        format!("canary-annotation-{suffix}"),
    ];
    // A node of its own: the quarantine's admission guard must not touch other tests' nodes.
    let node = format!("canary-node-{suffix}");
    live::dedicated_node(&cluster, &node, false).await;
    let guard = format!("contain-quarantine-{node}");
    let _cleanup = DeleteOnDrop(vec![
        contain::cluster::object::ObjectRef::new("ValidatingAdmissionPolicyBinding", None, &guard),
        contain::cluster::object::ObjectRef::new("ValidatingAdmissionPolicy", None, &guard),
        contain::cluster::object::ObjectRef::new("Node", None, &node),
    ]);
    let last_applied = json!({"kubectl.kubernetes.io/last-applied-configuration":
        format!("{{\"stringData\":{{\"password\":\"{}\"}}}}", canaries[3])});
    for object in [
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": ns.name,
               "annotations": last_applied}, "stringData": {"password": canaries[0]}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns.name},
               "data": {"api_key": canaries[1]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": ns.name, "annotations": last_applied},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}, "annotations": last_applied},
                                     "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                                              "tolerations": [{"key": "test-dedicated", "operator": "Exists"}],
                                              "containers": [{"name": "app", "image": "registry.example/app:1", "env": [
                                                  {"name": "API_TOKEN", "value": canaries[2]},
                                                  {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                                                  {"name": "API_KEY", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "api_key"}}}]}]}}}}),
    ] {
        cluster.create(&object, WriteMode::Apply).await.unwrap();
    }
    let pod = live::running_pods(&cluster, &ns.name, "web", 1)
        .await
        .remove(0);
    let pod = object::name(&pod).unwrap().to_string();

    let live = Live::new();
    let mut printed = String::new();
    let run = live
        .contain()
        .args([
            "-v",
            "run",
            "--yes",
            &repo("playbooks/compromised-pod.yaml"),
        ])
        .args([
            "--set",
            &format!("pod={pod}"),
            "-n",
            &ns.name,
            "--set",
            "container=app",
        ])
        .run();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    printed.push_str(&run.stdout);
    printed.push_str(&run.stderr);
    let id = live.last_run();
    let rolled = live.contain().args(["-v", "rollback", "--yes", &id]).run();
    assert_eq!(rolled.code, 0, "{}\n{}", rolled.stdout, rolled.stderr);
    printed.push_str(&rolled.stdout);
    printed.push_str(&rolled.stderr);
    for format in ["markdown", "html", "json"] {
        let report = live
            .contain()
            .args(["report", &id, "--format", format])
            .run();
        assert_eq!(report.code, 0, "{}", report.stderr);
        printed.push_str(&report.stdout);
    }
    let exported = live.contain().args(["journal", "export", &id]).run();
    printed.push_str(&exported.stdout);

    // The evidence was captured (the suspect's spec is there, with its env names).
    let evidence = files(live.evidence.path());
    assert!(
        evidence
            .iter()
            .any(|(path, bytes)| path.ends_with("pod.json") && holds(bytes, "API_TOKEN")),
        "the pod's spec is evidence"
    );
    let journal = files(live.journal.path());
    assert!(!journal.is_empty());
    // The run's copy in the cluster is its journal too.
    let copy = live::kubectl(&[
        "get",
        "containmentruns,containmentrunjournals",
        "-n",
        &ns.name,
        "-o",
        "json",
    ]);
    assert!(
        copy.status.success(),
        "{}",
        String::from_utf8_lossy(&copy.stderr)
    );
    assert!(
        holds(&copy.stdout, &id),
        "the run's ContainmentRun is there to be checked"
    );
    printed.push_str(&String::from_utf8_lossy(&copy.stdout));
    for canary in &canaries {
        assert!(!printed.contains(canary.as_str()), "{canary} was printed");
        for (path, bytes) in evidence.iter().chain(journal.iter()) {
            assert!(!holds(bytes, canary), "{canary} is in {path}");
        }
    }
}
