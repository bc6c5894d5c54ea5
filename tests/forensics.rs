//! Forensic capture on the real control plane (KWOK serves logs from files and runs exec
//! commands on this machine): a bundle whose manifest verifies and matches the journal, one
//! edited byte detected, the unsupported-checkpoint path recorded, many pods at once, and a log
//! of hundreds of megabytes captured with bounded memory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use contain::cluster::{Cluster, object};
use serde_json::Value;

use crate::harness::{Contain, Live, playbook_file};
use crate::live::{self, Namespace};

/// A live contain whose evidence goes to a directory of the test's own.
struct Capture(Live);

impl Capture {
    fn new() -> Self {
        Capture(Live::new())
    }

    fn contain(&self) -> Contain {
        self.0.contain()
    }

    fn playbook(&self, text: &str) -> tempfile::NamedTempFile {
        playbook_file(text)
    }

    fn evidence(&self) -> &Path {
        self.0.evidence.path()
    }

    /// The sealed bundle of the only run: (directory, manifest).
    fn bundle(&self) -> (PathBuf, Value) {
        let run = std::fs::read_dir(self.evidence())
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| e.path().is_dir())
            .unwrap()
            .path();
        let dir = run.join("capture");
        let manifest =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        (dir, manifest)
    }
}

fn artifact<'a>(manifest: &'a Value, suffix: &str) -> &'a Value {
    manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no artifact {suffix}"))
}

const CAPTURE: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: capture-test}
params:
  namespace: {type: string, required: true}
steps:
  - id: capture
    action: forensics.capture
    target: {kind: Deployment, name: web, namespace: "{{ params.namespace }}"}
    with:
      archive: true
      exec:
        - {name: hello, command: [echo, hello]}
        - {name: missing, command: [no-such-binary-for-contain-tests]}
"#;

#[tokio::test]
async fn a_live_capture_verifies_and_one_edited_byte_is_detected() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "capture").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 3).await;
    let capture = Capture::new();
    let playbook = capture.playbook(CAPTURE);
    let out = capture
        .contain()
        .args([
            "run",
            "--yes",
            &playbook.path().display().to_string(),
            "--set",
            &format!("namespace={}", ns.name),
        ])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // Progress per artifact: three pods, each with its full set.
    assert!(
        out.stdout.matches("  captured ").count() >= 3 * 12,
        "{}",
        out.stdout
    );
    let (dir, manifest) = capture.bundle();
    assert_eq!(manifest["collector"], "contain-admin");
    let pod = object::name(&pods[0]).unwrap();
    for suffix in [
        "pod.json",
        "owners.json",
        "events.json",
        "node.json",
        "networkpolicies.json",
        "serviceaccount-bindings.json",
        "logs/web.log",
        "logs/web.previous.log",
    ] {
        let a = artifact(&manifest, &format!("{pod}/{suffix}"));
        assert!(a["source"].as_str().unwrap().starts_with("/api"), "{a}");
    }
    let log = std::fs::read_to_string(dir.join(format!("{}/{pod}/logs/web.log", ns.name))).unwrap();
    assert!(log.contains("simulated container log line 1"), "{log}");
    let previous =
        std::fs::read_to_string(dir.join(format!("{}/{pod}/logs/web.previous.log", ns.name)))
            .unwrap();
    assert!(previous.contains("segfault"), "{previous}");
    let hello: Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("{}/{pod}/exec/hello.json", ns.name))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (hello["stdout"].as_str(), hello["exit_code"].as_i64()),
        (Some("hello\n"), Some(0))
    );
    let missing: Value = serde_json::from_slice(
        &std::fs::read(dir.join(format!("{}/{pod}/exec/missing.json", ns.name))).unwrap(),
    )
    .unwrap();
    assert_ne!(missing["exit_code"].as_i64(), Some(0), "{missing}");
    assert!(
        missing["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-binary")),
        "a missing binary is a recorded result: {missing}"
    );
    assert_eq!(
        artifact(&manifest, &format!("{pod}/checkpoints/web.json"))["outcome"],
        "not supported by this cluster"
    );
    // The archive's recorded sha256 is its real one.
    let archive = dir.with_file_name("capture.tar.gz");
    let recorded = std::fs::read_to_string(dir.with_file_name("capture.tar.gz.sha256")).unwrap();
    let digest = sha256_file(&archive);
    assert!(recorded.starts_with(&digest));

    let evidence = capture.evidence().display().to_string();
    let verify = capture
        .contain()
        .args(["evidence", "verify", &evidence])
        .run();
    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    assert!(
        verify.stdout.contains("matches the journal"),
        "{}",
        verify.stdout
    );

    let log_path = dir.join(format!("{}/{pod}/logs/web.log", ns.name));
    let original = std::fs::read(&log_path).unwrap();
    let mut edited = original.clone();
    edited[5] ^= 0x01;
    std::fs::write(&log_path, &edited).unwrap();
    let tampered = capture
        .contain()
        .args(["evidence", "verify", &evidence])
        .run();
    assert_eq!(tampered.code, 6, "{}", tampered.stdout);
    assert!(
        tampered
            .stdout
            .contains(&format!("changed: {}/{pod}/logs/web.log", ns.name)),
        "{}",
        tampered.stdout
    );
    std::fs::write(&log_path, &original).unwrap();

    // Re-hashing a forged manifest passes on its own; the journal's copy of its hash does not.
    let manifest_path = dir.join("manifest.json");
    let forged = std::fs::read_to_string(&manifest_path)
        .unwrap()
        .replace("contain-admin", "someone-else");
    std::fs::write(&manifest_path, forged).unwrap();
    let forgery = capture
        .contain()
        .args(["evidence", "verify", &evidence])
        .run();
    assert_eq!(forgery.code, 6, "{}", forgery.stdout);
    assert!(
        forgery.stdout.contains("does NOT match the journal"),
        "{}",
        forgery.stdout
    );
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

const BIG: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: big-log}
params:
  namespace: {type: string, required: true}
steps:
  - id: capture
    action: forensics.capture
    target: {kind: Deployment, name: big, namespace: "{{ params.namespace }}"}
    with: {previous_logs: false, checkpoint: false}
"#;

/// Writes a CRI-format log of about `bytes` to the file KWOK serves for `big-logger` containers.
fn write_big_log(bytes: usize) -> u64 {
    let path = live::kubeconfig()
        .with_file_name("kwok-logs")
        .join("big.log");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let payload = "x".repeat(180);
    let mut written = 0;
    let mut line = 0u64;
    while written < bytes {
        let text = format!("2026-01-01T00:00:00.000000000Z stdout F line {line:09} {payload}\n");
        file.write_all(text.as_bytes()).unwrap();
        written += text.len();
        line += 1;
    }
    file.flush().unwrap();
    line
}

/// The peak resident memory (VmHWM, in KiB) of a running process, as last seen.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[tokio::test]
async fn a_log_of_200_mb_is_captured_with_bounded_memory() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "biglog").await;
    let lines = write_big_log(260 << 20);
    let object = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big", "namespace": ns.name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "big"}}, "template": {"metadata": {"labels": {"app": "big"}},
            "spec": {"containers": [{"name": "big-logger", "image": "registry.example/big:1"}]}}}
    });
    cluster
        .create(&object, contain::cluster::WriteMode::Apply)
        .await
        .unwrap();
    live::running_pods(&cluster, &ns.name, "big", 1).await;
    let capture = Capture::new();
    let playbook = capture.playbook(BIG);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_contain"))
        .args([
            "--no-progress",
            "--kubeconfig",
            &live::kubeconfig().display().to_string(),
        ])
        .args([
            "--journal",
            &capture.0.journal.path().display().to_string(),
            "--evidence",
            &capture.evidence().display().to_string(),
        ])
        .args([
            "run",
            "--yes",
            &playbook.path().display().to_string(),
            "--set",
            &format!("namespace={}", ns.name),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let (_, manifest) = capture.bundle();
    let log = artifact(&manifest, "logs/big-logger.log");
    let size = log["size"].as_u64().unwrap();
    println!(
        "captured a {} MiB log ({lines} lines) with a peak RSS of {} MiB",
        size >> 20,
        peak >> 10
    );
    assert!(size >= 200 << 20, "the log is {size} bytes");
    assert!(
        peak > 0 && peak < 128 << 10,
        "peak RSS {peak} KiB: memory must not grow with the log"
    );
    let verify = capture
        .contain()
        .args([
            "evidence",
            "verify",
            &capture.evidence().display().to_string(),
        ])
        .run();
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    let _ = std::fs::remove_file(
        live::kubeconfig()
            .with_file_name("kwok-logs")
            .join("big.log"),
    );
}

#[tokio::test]
async fn secret_values_never_reach_the_bundle() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "nosecret").await;
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": ns.name},
        "stringData": {"password": "hunter2-in-a-secret"}});
    cluster
        .create(&secret, contain::cluster::WriteMode::Apply)
        .await
        .unwrap();
    // A pod that reads the Secret through env, and carries a kubectl last-applied annotation
    // holding a value (as `kubectl apply` of a manifest with inline values would).
    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": ns.name,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"hunter2-in-annotation\"}}"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
            "env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}]}});
    cluster
        .create(&pod, contain::cluster::WriteMode::Apply)
        .await
        .unwrap();
    let capture = Capture::new();
    let playbook = capture.playbook(&format!(
        "apiVersion: contain/v1\nkind: Playbook\nmetadata: {{name: s}}\nsteps:\n  - id: capture\n    action: forensics.capture\n    target: {{kind: Pod, name: app, namespace: {}}}\n    with: {{checkpoint: false}}\n",
        ns.name
    ));
    let out = capture
        .contain()
        .args(["run", "--yes", &playbook.path().display().to_string()])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let (dir, _) = capture.bundle();
    let mut pending = vec![dir];
    let mut files = 0;
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            files += 1;
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            assert!(
                !text.contains("hunter2"),
                "{} holds a secret value",
                path.display()
            );
        }
    }
    assert!(files > 5);
    // The reference itself (which Secret, which key) is evidence, and is kept.
    let pod_json =
        std::fs::read_to_string(capture.bundle().0.join(format!("{}/app/pod.json", ns.name)))
            .unwrap();
    assert!(pod_json.contains("secretKeyRef"));
}

fn ssh_keygen(args: &[&str], stdin: Option<&Path>) -> std::process::Output {
    let mut command = std::process::Command::new("ssh-keygen");
    command.args(args);
    if let Some(path) = stdin {
        command.stdin(std::fs::File::open(path).unwrap());
    }
    command
        .output()
        .expect("ssh-keygen runs (Debian's openssh-client)")
}

#[tokio::test]
async fn a_signed_manifest_verifies_with_stock_ssh_keygen_and_with_contain() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "signed").await;
    live::deployment(&cluster, &ns.name, "web", 1).await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("responder");
    let other = keys.path().join("other");
    for (path, comment) in [(&key, "responder@contain"), (&other, "someone@else")] {
        let made = ssh_keygen(
            &[
                "-q",
                "-t",
                "ecdsa",
                "-b",
                "256",
                "-m",
                "PKCS8",
                "-N",
                "",
                "-C",
                comment,
                "-f",
                &path.display().to_string(),
            ],
            None,
        );
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let capture = Capture::new();
    let playbook = capture.playbook(CAPTURE);
    let run = |key_file: &Path| {
        capture
            .contain()
            .args(["--evidence-key", &key_file.display().to_string()])
            .args(["run", "--yes", &playbook.path().display().to_string()])
            .args(["--set", &format!("namespace={}", ns.name)])
            .run()
    };
    // A file that is no signing key is refused before anything is written.
    let refused = run(&key.with_extension("pub"));
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("not a PKCS#8 PEM P-256 private key"),
        "{}",
        refused.stderr
    );
    assert!(
        std::fs::read_dir(capture.evidence())
            .unwrap()
            .next()
            .is_none(),
        "nothing captured"
    );

    let out = run(&key);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let (dir, _) = capture.bundle();
    let manifest = dir.join("manifest.json");
    let signature = dir.join("manifest.json.sig");
    assert!(signature.is_file());

    // The stock tool: ssh-keygen -Y verify with an allowed_signers file.
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!(
            "responder@contain namespaces=\"contain-evidence\" {}\n",
            public.join(" ")
        ),
    )
    .unwrap();
    let verify = |namespace: &str| {
        ssh_keygen(
            &[
                "-Y",
                "verify",
                "-f",
                &allowed.display().to_string(),
                "-I",
                "responder@contain",
                "-n",
                namespace,
                "-s",
                &signature.display().to_string(),
            ],
            Some(&manifest),
        )
    };
    let good = verify("contain-evidence");
    assert!(
        good.status.success(),
        "{}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        String::from_utf8_lossy(&good.stdout)
            .contains("Good \"contain-evidence\" signature for responder@contain")
    );
    assert!(
        !verify("file").status.success(),
        "a signature is only good in its namespace"
    );

    // contain's own check, with the signer's fingerprint as ssh-keygen -l prints it.
    let fingerprint = ssh_keygen(
        &["-l", "-f", &key.with_extension("pub").display().to_string()],
        None,
    );
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let verify_trusting = |public: &Path| {
        capture
            .contain()
            .args(["evidence", "verify", &dir.display().to_string()])
            .args(["--trusted-key", &public.display().to_string()])
            .run()
    };
    let trusted = verify_trusting(&key.with_extension("pub"));
    assert_eq!(trusted.code, 0, "{}{}", trusted.stdout, trusted.stderr);
    assert!(
        trusted
            .stdout
            .contains(&format!("signed by {fingerprint}, a trusted key")),
        "{}",
        trusted.stdout
    );
    let untrusted = verify_trusting(&other.with_extension("pub"));
    assert_eq!(untrusted.code, 6, "{}", untrusted.stdout);
    assert!(
        untrusted.stdout.contains("NOT a trusted key"),
        "{}",
        untrusted.stdout
    );

    // One edited byte of the manifest (who collected it), still valid JSON: both tools say no.
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"contain-admin\""), "{text}");
    std::fs::write(
        &manifest,
        text.replacen("\"contain-admin\"", "\"contain-admiN\"", 1),
    )
    .unwrap();
    assert!(
        !verify("contain-evidence").status.success(),
        "ssh-keygen refuses an edited manifest"
    );
    let edited = capture
        .contain()
        .args(["evidence", "verify", &dir.display().to_string()])
        .run();
    assert_eq!(edited.code, 6, "{}", edited.stdout);
    assert!(
        edited.stdout.contains("signature: INVALID"),
        "{}",
        edited.stdout
    );
}
