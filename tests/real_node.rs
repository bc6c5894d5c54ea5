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

/// A live run of `playbook` against the pod `web` of `ns`, with `flags` before the command.
fn run_on_web(live: &Live, flags: &[&str], playbook: &std::path::Path, ns: &str) -> Outcome {
    live.contain()
        .args(flags.iter().copied())
        .args(["run", "--yes", &playbook.display().to_string()])
        .args(["--set", "pod=web", "--set", &format!("namespace={ns}")])
        .run()
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
    ok(&run_on_web(
        &live,
        &[],
        std::path::Path::new(&repo("playbooks/capture-evidence.yaml")),
        &ns.name,
    ));
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

/// What an attacker who controls a pod can put in front of a responder: a terminal-clearing and
/// title-setting escape, an OSC 8 hyperlink, a bell, a template, path separators, markup and a
/// right-to-left override (text that reads backwards on screen).
const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}\u{1b}]8;;http://evil.example/\u{7}click\u{1b}]8;;\u{7} {{ params.namespace }} ../../../etc/passwd <img src=x onerror=alert(1)> \u{202e}txt.exe";

/// Playbook: capture (with a command whose output is the attacker's), then copy the hostile
/// annotation into another one through a fact, then label.
const HOSTILE_RUN: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: hostile-data}
params:
  pod: {type: string, required: true}
  namespace: {type: string, required: true}
facts:
  pod: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
steps:
  - id: capture
    action: forensics.capture
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with:
      checkpoint: false
      exec:
        - {name: banner, command: [cat, /tmp/banner]}
  - id: copy
    action: object.annotate
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with:
      annotations:
        contain-test/copied: "{{ facts.pod.metadata.annotations['contain-test/hostile'] }}"
  - id: mark
    action: object.label
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {labels: {contain.dev/suspect: "true"}}
"#;

/// No byte a terminal would act on: ESC, BEL and the other C0 controls but newline and tab,
/// C1 controls, and bidirectional overrides.
fn assert_inert(sink: &str, text: &str) {
    let bad = text.chars().find(|&c| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    });
    assert!(
        bad.is_none(),
        "{sink} carries {:?} unescaped:\n{}",
        bad.unwrap(),
        text.chars().take(4000).collect::<String>()
    );
}

#[tokio::test]
async fn hostile_cluster_data_reaches_no_sink_unescaped() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "rn-hostile").await;
    let (node, image) = real_node();
    // The container logs the hostile text, and keeps it in a file an exec reads back.
    let script = "printf '%s\\n' \"$HOSTILE\"; printf '%s' \"$HOSTILE\" > /tmp/banner; exec httpd -f -v -p 0.0.0.0:8080 -h /www";
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": ns.name,
                     "annotations": {"contain-test/hostile": HOSTILE,
                                     "contain-test/huge": "A".repeat(200_000)}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [{"key": "contain.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": false,
            "containers": [{"name": "web", "image": image, "command": ["sh", "-c", script],
                            "env": [{"name": "HOSTILE", "value": HOSTILE}]}]}});
    cluster.create(&pod, WriteMode::Apply).await.unwrap();
    let r = ObjectRef::new("Pod", Some(&ns.name), "web");
    let deadline = Instant::now() + Duration::from_secs(90);
    while cluster.get(&r).await.unwrap().unwrap()["status"]["phase"] != "Running" {
        assert!(Instant::now() < deadline, "the hostile pod is not running");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let playbook = crate::harness::playbook_file(HOSTILE_RUN);
    let live = Live::new();
    let out = run_on_web(&live, &["-v"], playbook.path(), &ns.name);
    ok(&out);
    // Terminal: escaped, never acted on, and a huge value is not dumped on the screen.
    assert_inert("the run's terminal output", &out.stdout);
    assert_inert("the run's terminal output", &out.stderr);
    assert!(
        out.stdout.contains("\\u{1b}[2J"),
        "the copied value is shown, escaped:\n{}",
        out.stdout
    );
    assert!(out.stdout.len() < 100_000, "{} bytes", out.stdout.len());

    // Template: the hostile text was copied as data; its `{{ }}` was never evaluated.
    let current = cluster.get(&r).await.unwrap().unwrap();
    assert_eq!(
        current["metadata"]["annotations"]["contain-test/copied"],
        HOSTILE
    );

    // Evidence: every path stays inside the run's bundle, with plain names; the attacker's
    // bytes are kept exactly (evidence is never "cleaned").
    let evidence = live.evidence.path();
    let mut dirs = vec![evidence.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(evidence).unwrap();
            for part in relative.components() {
                let std::path::Component::Normal(name) = part else {
                    panic!("{} leaves the bundle", path.display());
                };
                let name = name.to_str().expect("file names are UTF-8");
                assert_inert("an evidence file name", name);
                assert!(!name.contains("passwd") && !name.contains("evil"), "{name}");
            }
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    let (_, banner) = artifact(evidence, "exec/banner.json");
    let banner: Value = serde_json::from_str(&banner).unwrap();
    assert_eq!(banner["stdout"], HOSTILE, "exec output kept byte for byte");
    let (_, log) = artifact(evidence, "web.log");
    assert!(log.contains(HOSTILE), "the log kept byte for byte: {log:?}");

    // Reports: Markdown and HTML escape it, JSON carries it exactly.
    let run = live.last_run();
    for format in ["markdown", "html"] {
        let report = live
            .contain()
            .args(["report", &run, "--format", format])
            .run();
        assert_eq!(report.code, 0, "{}", report.stderr);
        assert_inert(&format!("the {format} report"), &report.stdout);
        // Markdown escapes markup with a backslash (`\<img` is text); HTML with entities.
        let unescaped = report.stdout.replace("\\<img", "");
        assert!(
            !unescaped.contains("<img src=x"),
            "the {format} report escapes markup:\n{}",
            report.stdout
        );
    }
    let json = live
        .contain()
        .args(["report", &run, "--format", "json"])
        .run();
    assert_eq!(json.code, 0, "{}", json.stderr);
    assert_inert("the JSON report", &json.stdout);
    assert!(
        json.stdout.contains("\\u001b[2J"),
        "JSON escapes control characters"
    );
    let parsed: Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(
        parsed.to_string().contains("\\u001b]0;pwned"),
        "and carries the value whole once parsed"
    );
    // The journal's own terminal views.
    for args in [vec!["journal", "show", &run], vec!["journal", "ls"]] {
        let shown = live.contain().args(args.iter().copied()).run();
        assert_eq!(shown.code, 0, "{:?}: {}", args, shown.stderr);
        assert_inert(&format!("`contain {}`", args.join(" ")), &shown.stdout);
    }
}

/// Every pod the DaemonSet `miner` owns in `ns`, with its node, once one runs on each node.
async fn daemon_pods(cluster: &KubeCluster, ns: &str, uid: &str, nodes: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pods: Vec<Value> = live::list(cluster, "Pod", ns)
            .await
            .into_iter()
            .filter(|p| contain::action::owned::controller_uid(p) == Some(uid))
            .filter(|p| p["status"]["phase"] == "Running")
            .collect();
        if pods.len() == nodes {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "the DaemonSet runs {} of {nodes} pods after 120 s",
            pods.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a bystander is, judged from outside: its pods' names, uids, labels, nodes and phases.
async fn bystander_state(cluster: &KubeCluster, ns: &str) -> Value {
    let mut pods: Vec<Value> = cluster
        .list(
            contain::cluster::kinds::lookup("Pod").unwrap(),
            Some(ns),
            &contain::cluster::Selector::labels([("role".to_string(), "bystander".to_string())].into()),
        )
        .await
        .unwrap()
        .iter()
        .map(|p| {
            json!({"name": p["metadata"]["name"], "uid": p["metadata"]["uid"], "labels": p["metadata"]["labels"],
                   "node": p["spec"]["nodeName"], "phase": p["status"]["phase"]})
        })
        .collect();
    pods.sort_by_key(|p| p["name"].to_string());
    json!(pods)
}

/// The shipped compromised-workload playbook against a DaemonSet on two KWOK nodes and the
/// real node, next to a bystander Deployment whose pods match the DaemonSet's selector: the
/// DaemonSet's own pods are captured, isolated and stopped, its account rotated, each of its
/// nodes quarantined; the bystander is untouched, judged from outside; the rollback restores
/// the nodes, the DaemonSet and the namespace's policies.
#[tokio::test]
#[ignore = "quarantines the real node under the other real-node tests: scripts/test runs it alone"]
async fn a_compromised_daemon_set_is_contained_by_ownership_and_a_bystander_is_untouched() {
    let cluster = live::connect(live::kubeconfig()).await;
    let (real, image) = real_node();
    let ns = Namespace::new(&cluster, "daemon").await;
    let kwok = [format!("{}-a", ns.name), format!("{}-b", ns.name)];
    for node in &kwok {
        live::dedicated_node(&cluster, node, false).await;
    }
    let _nodes = DeleteOnDrop(
        kwok.iter()
            .map(|n| ObjectRef::new("Node", None, n))
            .collect(),
    );
    let nodes = [kwok[0].clone(), kwok[1].clone(), real.clone()];
    let tolerations = json!([
        {"key": "test-dedicated", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "contain.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}]);
    let account = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "miner", "namespace": ns.name}});
    cluster.create(&account, WriteMode::Apply).await.unwrap();
    let daemon = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "miner", "namespace": ns.name},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"serviceAccountName": "miner", "terminationGracePeriodSeconds": 1,
                    "tolerations": tolerations,
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}}},
                    "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}}}});
    let daemon = cluster.create(&daemon, WriteMode::Apply).await.unwrap();
    let uid = contain::cluster::object::uid(&daemon).unwrap().to_string();
    // The bystander: another workload whose pods carry the same `app: agent`, on the same node.
    let bystander = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "agent", "namespace": ns.name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "agent", "role": "bystander"}},
            "template": {"metadata": {"labels": {"app": "agent", "role": "bystander"}},
                "spec": {"tolerations": tolerations, "nodeSelector": {"kubernetes.io/hostname": kwok[0]},
                    "containers": [{"name": "main", "image": "registry.example/agent:2"}]}}}});
    cluster.create(&bystander, WriteMode::Apply).await.unwrap();
    let miners = daemon_pods(&cluster, &ns.name, &uid, 3).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while bystander_state(&cluster, &ns.name)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["phase"] == "Running")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "the bystander does not run");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let bystander_before = bystander_state(&cluster, &ns.name).await;
    let nodes_before: Vec<Value> = {
        let mut out = Vec::new();
        for node in &nodes {
            let now = cluster
                .get(&ObjectRef::new("Node", None, node))
                .await
                .unwrap()
                .unwrap();
            out.push(json!({"labels": now["metadata"]["labels"], "taints": now["spec"]["taints"], "unschedulable": now["spec"]["unschedulable"]}));
        }
        out
    };

    let live = Live::new();
    let out = live
        .contain()
        .args(["run", "--yes", &repo("playbooks/compromised-workload.yaml")])
        .args(["--set", "kind=DaemonSet", "--set", "name=miner"])
        .args(["--set", &format!("namespace={}", ns.name)])
        .run();
    ok(&out);
    for pod in &miners {
        let chain = format!(
            "owned: Pod {}/{} ← DaemonSet {}/miner",
            ns.name,
            pod["metadata"]["name"].as_str().unwrap(),
            ns.name
        );
        assert!(out.stdout.contains(&chain), "{chain}\n{}", out.stdout);
    }
    for node in &nodes {
        assert!(
            out.stdout.contains(&format!("quarantine@{node}")),
            "{}",
            out.stdout
        );
        let now = cluster
            .get(&ObjectRef::new("Node", None, node))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now["spec"]["unschedulable"], true, "{node} is cordoned");
    }
    // The DaemonSet runs nothing any more; the bystander is exactly as it was.
    let left: Vec<Value> = live::list(&cluster, "Pod", &ns.name)
        .await
        .into_iter()
        .filter(|p| contain::action::owned::controller_uid(p) == Some(uid.as_str()))
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert!(left.is_empty(), "no pod of the DaemonSet runs: {left:?}");
    assert_eq!(bystander_state(&cluster, &ns.name).await, bystander_before);
    let seen = live::kubectl(&[
        "get",
        "pods",
        "-n",
        &ns.name,
        "-l",
        "role=bystander",
        "-o",
        "json",
    ]);
    assert!(seen.status.success());
    let seen: Value = serde_json::from_slice(&seen.stdout).unwrap();
    for pod in seen["items"].as_array().unwrap() {
        let labels = &pod["metadata"]["labels"];
        assert!(
            labels.get("contain.dev/quarantine").is_none(),
            "kubectl: {labels}"
        );
        assert!(
            labels.get("contain.dev/suspect").is_none(),
            "kubectl: {labels}"
        );
    }

    let run = contain::journal::run_ids(live.journal.path())
        .pop()
        .unwrap();
    let rolled = live.contain().args(["rollback", "--yes", &run]).run();
    ok(&rolled);
    for (node, before) in nodes.iter().zip(&nodes_before) {
        let now = cluster
            .get(&ObjectRef::new("Node", None, node))
            .await
            .unwrap()
            .unwrap();
        let now = json!({"labels": now["metadata"]["labels"], "taints": now["spec"]["taints"], "unschedulable": now["spec"]["unschedulable"]});
        assert_eq!(&now, before, "{node} is restored");
    }
    let restored = cluster
        .get(&ObjectRef::new("DaemonSet", Some(&ns.name), "miner"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        restored["spec"]["template"]["spec"]["nodeSelector"].is_null(),
        "{}",
        restored["spec"]["template"]["spec"]
    );
    let policies = live::list(&cluster, "NetworkPolicy", &ns.name).await;
    assert!(policies.is_empty(), "{policies:?}");
    // The DaemonSet starts its pods again on its three nodes.
    daemon_pods(&cluster, &ns.name, &uid, 3).await;
    assert_eq!(bystander_state(&cluster, &ns.name).await, bystander_before);
}
