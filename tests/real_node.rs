//! Live tests on the real node (`scripts/cluster up --real-node`): containers run in containerd
//! and runc, pods get addresses on a bridge, and kube-router enforces NetworkPolicies with
//! iptables. Isolation is judged by whether a TCP connection gets through, and evidence by what
//! the real container says. Every connection attempt is one `nc -w 2` on the node's pod network.
//!
//! These tests fail (never skip) when the real node is absent: the test command starts it.

use std::time::{Duration, Instant};

use contain::cluster::kube::KubeCluster;
use contain::cluster::object::ObjectRef;
use contain::cluster::{Cluster, WriteMode};
use serde_json::{Value, json};

use crate::harness::{Live, Outcome, repo};
use crate::live::{self, CLUSTER_POLICY_CRD, DeleteOnDrop, Namespace};

/// The real node's name and the busybox image it pulls from the local registry.
fn real_node() -> (String, String) {
    let node = std::env::var("CONTAIN_TEST_REAL_NODE").expect(
        "CONTAIN_TEST_REAL_NODE is unset: these tests need the real node (scripts/test starts it; \
         by hand: scripts/cluster up --real-node && eval \"$(scripts/node env)\")",
    );
    let image = std::env::var("CONTAIN_TEST_BUSYBOX_IMAGE")
        .expect("CONTAIN_TEST_BUSYBOX_IMAGE is unset (scripts/node env prints it)");
    (node, image)
}

/// A pod on the real node serving HTTP on 0.0.0.0:`port` with busybox httpd (which logs each
/// request to stderr), running and with its address.
async fn serving_pod(
    cluster: &KubeCluster,
    ns: &str,
    name: &str,
    labels: Value,
    port: u16,
) -> (Value, String) {
    let (node, image) = real_node();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": "contain.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": false,
            "containers": [{"name": "web", "image": image,
                            "command": ["httpd", "-f", "-v", "-p", format!("0.0.0.0:{port}"), "-h", "/www"]}]}});
    cluster.create(&pod, WriteMode::Apply).await.unwrap();
    let r = ObjectRef::new("Pod", Some(ns), name);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let current = cluster.get(&r).await.unwrap().unwrap();
        let ip = current["status"]["podIP"].as_str().unwrap_or_default();
        if current["status"]["phase"] == "Running" && !ip.is_empty() {
            let ip = ip.to_string();
            return (current, ip);
        }
        assert!(
            Instant::now() < deadline,
            "{ns}/{name} is not running on the real node after 90 s: {}",
            current["status"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One TCP connection from `from` to ip:port, bounded to 2 s: `Ok(status line)` when an HTTP
/// answer came back, `Err(what nc said)` otherwise.
async fn connect(
    cluster: &KubeCluster,
    from: &ObjectRef,
    ip: &str,
    port: u16,
) -> Result<String, String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port}");
    let command = ["sh".to_string(), "-c".to_string(), script];
    let out = cluster.exec(from, "web", &command).await.unwrap();
    match out.stdout.lines().next() {
        Some(line) if out.exit_code == Some(0) && line.starts_with("HTTP/1.") => {
            Ok(line.to_string())
        }
        _ => Err(format!(
            "exit {:?}: {}{}",
            out.exit_code,
            out.stderr.trim(),
            out.error.unwrap_or_default()
        )),
    }
}

/// Waits (at most 30 s) until a connection's outcome is `open`, then checks it stays so for three
/// more attempts; returns how long the enforcer took. Policy enforcement is asynchronous on every
/// real enforcer: the lag is measured, and one flip back would fail the test.
async fn settles(
    cluster: &KubeCluster,
    from: &ObjectRef,
    ip: &str,
    port: u16,
    open: bool,
) -> Duration {
    let started = Instant::now();
    let mut last;
    loop {
        last = connect(cluster, from, ip, port).await;
        if last.is_ok() == open {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{from} -> {ip}:{port} should be {} within 30 s; last attempt: {last:?}",
            if open { "open" } else { "refused" }
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lag = started.elapsed();
    for _ in 0..3 {
        let again = connect(cluster, from, ip, port).await;
        assert_eq!(
            again.is_ok(),
            open,
            "{from} -> {ip}:{port} flipped back: {again:?} (first settled: {last:?})"
        );
    }
    lag
}

fn ok(out: &Outcome) {
    assert_eq!(
        out.code, 0,
        "exit {}\n{}\n{}",
        out.code, out.stdout, out.stderr
    );
}

#[tokio::test]
async fn isolation_cuts_real_tcp_traffic_keeps_forensics_and_dns_and_rollback_restores_it() {
    // No ClusterNetworkPolicy CRD while this runs: kube-router enforces NetworkPolicies only.
    let _crd = CLUSTER_POLICY_CRD.lock().await;
    let cluster = live::connect(live::kubeconfig()).await;
    let suspect_ns = Namespace::new(&cluster, "rn-suspect").await;
    let client_ns = Namespace::new(&cluster, "rn-client").await;
    let forensics_ns = Namespace::new(&cluster, "rn-forensics").await;
    // The namespace already admits everything to its web pods: isolation has to hold anyway.
    let allow = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web-from-anywhere", "namespace": suspect_ns.name},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}], "egress": [{}],
                 "policyTypes": ["Ingress", "Egress"]}});
    cluster.create(&allow, WriteMode::Apply).await.unwrap();

    let (_, suspect_ip) = serving_pod(
        &cluster,
        &suspect_ns.name,
        "web",
        json!({"app": "web"}),
        8080,
    )
    .await;
    let (_, client_ip) = serving_pod(
        &cluster,
        &client_ns.name,
        "client",
        json!({"app": "client"}),
        8080,
    )
    .await;
    let (_, forensics_ip) = serving_pod(
        &cluster,
        &forensics_ns.name,
        "analyst",
        json!({"app": "analyst"}),
        8080,
    )
    .await;
    // A stand-in for cluster DNS (kube-system, k8s-app=kube-dns), answering on TCP 53.
    let dns_name = format!("dns-{}", suspect_ns.name.rsplit('-').next().unwrap());
    let _dns = DeleteOnDrop(vec![ObjectRef::new("Pod", Some("kube-system"), &dns_name)]);
    let (_, dns_ip) = serving_pod(
        &cluster,
        "kube-system",
        &dns_name,
        json!({"k8s-app": "kube-dns"}),
        53,
    )
    .await;

    let suspect = ObjectRef::new("Pod", Some(&suspect_ns.name), "web");
    let client = ObjectRef::new("Pod", Some(&client_ns.name), "client");
    let analyst = ObjectRef::new("Pod", Some(&forensics_ns.name), "analyst");

    // Before: every path is open.
    for (from, ip, port) in [
        (&client, &suspect_ip, 8080),
        (&analyst, &suspect_ip, 8080),
        (&suspect, &client_ip, 8080),
        (&suspect, &dns_ip, 53),
    ] {
        let reached = connect(&cluster, from, ip, port).await;
        assert!(
            reached.is_ok(),
            "before isolation {from} -> {ip}:{port}: {reached:?}"
        );
    }

    let live = Live::new();
    let out = live
        .contain()
        .args(["run", "--yes", &repo("playbooks/isolate-pod.yaml")])
        .args([
            "--set",
            "pod=web",
            "--set",
            &format!("namespace={}", suspect_ns.name),
        ])
        .args([
            "--set",
            &format!("forensics_namespace={}", forensics_ns.name),
        ])
        .run();
    ok(&out);
    assert!(
        out.stdout.contains("+ create NetworkPolicy"),
        "isolation by NetworkPolicy, which this node enforces: {}",
        out.stdout
    );
    let run = live.last_run();

    // After: the client is refused, the suspect reaches nothing but DNS and forensics.
    let lag = settles(&cluster, &client, &suspect_ip, 8080, false).await;
    eprintln!(
        "kube-router enforced the isolation {} ms after the run ended",
        lag.as_millis()
    );
    settles(&cluster, &suspect, &client_ip, 8080, false).await;
    let forensics_in = connect(&cluster, &analyst, &suspect_ip, 8080).await;
    assert!(
        forensics_in.is_ok(),
        "the forensics namespace still reaches the suspect: {forensics_in:?}"
    );
    let forensics_out = connect(&cluster, &suspect, &forensics_ip, 8080).await;
    assert!(
        forensics_out.is_ok(),
        "the suspect still reaches forensics: {forensics_out:?}"
    );
    let dns = connect(&cluster, &suspect, &dns_ip, 53).await;
    assert!(
        dns.is_ok(),
        "DNS (kube-system/k8s-app=kube-dns, port 53) stays reachable: {dns:?}"
    );
    let dns_other_port = connect(&cluster, &suspect, &client_ip, 53).await;
    assert!(
        dns_other_port.is_err(),
        "port 53 elsewhere is not DNS: {dns_other_port:?}"
    );

    // Rollback: the namespace's own policy is back as it was, and so is the traffic.
    ok(&live.contain().args(["rollback", "--yes", &run]).run());
    let lag = settles(&cluster, &client, &suspect_ip, 8080, true).await;
    eprintln!(
        "kube-router lifted the isolation {} ms after the rollback ended",
        lag.as_millis()
    );
    settles(&cluster, &suspect, &client_ip, 8080, true).await;
    let restored = cluster
        .get(&ObjectRef::new(
            "NetworkPolicy",
            Some(&suspect_ns.name),
            "allow-web-from-anywhere",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        restored["spec"], allow["spec"],
        "the namespace's policy is restored"
    );
}

/// The artifact of `suffix` in a sealed bundle: (manifest entry, file content).
fn artifact(evidence: &std::path::Path, suffix: &str) -> (Value, String) {
    let run = std::fs::read_dir(evidence)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().is_dir())
        .expect("a run directory in the evidence store")
        .path();
    let dir = run.join("capture");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no artifact {suffix} in {manifest}"))
        .clone();
    let text = std::fs::read_to_string(dir.join(entry["path"].as_str().unwrap())).unwrap();
    (entry, text)
}

#[tokio::test]
async fn capture_on_the_real_node_records_the_container_itself() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "rn-capture").await;
    let (_, ip) = serving_pod(&cluster, &ns.name, "web", json!({"app": "web"}), 8080).await;
    let (_, _) = serving_pod(
        &cluster,
        &ns.name,
        "visitor",
        json!({"app": "visitor"}),
        8081,
    )
    .await;
    // One request, so the suspect's real process writes a log line naming its visitor.
    let visitor = ObjectRef::new("Pod", Some(&ns.name), "visitor");
    connect(&cluster, &visitor, &ip, 8080)
        .await
        .expect("the visitor reaches the suspect");

    let live = Live::new();
    let out = live
        .contain()
        .args(["run", "--yes", &repo("playbooks/capture-evidence.yaml")])
        .args([
            "--set",
            "pod=web",
            "--set",
            &format!("namespace={}", ns.name),
        ])
        .run();
    ok(&out);
    let evidence = live.evidence.path();

    // The process list is the container's: httpd is PID 1, and this machine's processes are not
    // there (a host-side exec would list the test binary itself).
    let (entry, processes) = artifact(evidence, "exec/processes.json");
    assert!(
        entry["source"]
            .as_str()
            .unwrap()
            .starts_with("/api/v1/namespaces/"),
        "{entry}"
    );
    let processes: Value = serde_json::from_str(&processes).unwrap();
    let stdout = processes["stdout"].as_str().unwrap();
    let first = stdout.lines().nth(1).unwrap_or_default();
    assert!(
        first.split_whitespace().next() == Some("1") && first.contains("httpd -f"),
        "PID 1 is the container's httpd: {stdout}"
    );
    let this_test = std::env::current_exe().unwrap();
    let this_test = this_test.file_name().unwrap().to_string_lossy();
    assert!(
        !stdout.contains(&*this_test),
        "no process of this machine: {stdout}"
    );
    assert!(
        stdout.lines().count() <= 4,
        "a container's few processes: {stdout}"
    );

    // Its sockets: the listener on 0.0.0.0:8080 (1F90), and none of this machine's listeners
    // (the API server's among them).
    let (_, connections) = artifact(evidence, "exec/connections.json");
    let connections: Value = serde_json::from_str(&connections).unwrap();
    let tcp = connections["stdout"].as_str().unwrap();
    assert!(
        tcp.contains("00000000:1F90 00000000:0000 0A"),
        "httpd listens on 8080: {tcp}"
    );
    let host = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let host_listeners: Vec<&str> = host
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        !host_listeners.is_empty(),
        "this machine listens somewhere: {host}"
    );
    for listener in host_listeners {
        assert!(
            !tcp.contains(listener),
            "{listener} is this machine's socket, not the container's: {tcp}"
        );
    }
    let (_, hostname) = artifact(evidence, "exec/hostname.json");
    let hostname: Value = serde_json::from_str(&hostname).unwrap();
    assert_eq!(hostname["stdout"].as_str().unwrap().trim(), "web");

    // The log is the real process's: its line for the visitor's request.
    let (_, log) = artifact(evidence, "logs/web.log");
    assert!(log.contains("response:200"), "httpd's own log line: {log}");

    // The checkpoint: the kubelet's own answer, recorded whether supported or not.
    let (entry, checkpoint) = artifact(evidence, "checkpoints/web.json");
    let checkpoint: Value = serde_json::from_str(&checkpoint).unwrap();
    match checkpoint.get("response") {
        Some(response) => assert!(!response.is_null(), "{checkpoint}"),
        None => {
            let error = checkpoint["error"].as_str().unwrap();
            assert!(
                error.contains("checkpointing of")
                    && error.contains(&format!("{}/web/web", ns.name)),
                "the kubelet's own message is recorded: {error} ({entry})"
            );
        }
    }
}
