//! Costs that grow with the input: snapshots of 1k, 10k and 50k objects (YAML, and JSON as
//! `contain snapshot -o json` and `kubectl get -o json` write them) loaded by a tabletop run,
//! playbooks of 100, 1,000 and 2,000 steps validated, and a 500-step plan against a 10k-object
//! snapshot. Each case runs the release binary five times; the median wall time and the peak
//! resident memory of the process are printed, with the time per 1,000 objects or steps so the
//! curve's shape shows. No cluster is needed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn main() {
    let bin = PathBuf::from(std::env::var("CONTAIN_BENCH_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/contain").to_string()
    }));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    let at = |name: &str| dir.path().join(name);

    // Every input is written before anything is measured, and the memory that generated them is
    // handed back: a child starts as a copy of this process, and its peak RSS would count ours.
    let cases = [
        (1_000, false),
        (10_000, false),
        (50_000, false),
        (10_000, true),
        (50_000, true),
    ];
    for (objects, json) in cases {
        let file = at(&format!(
            "snapshot-{objects}.{}",
            if json { "json" } else { "yaml" }
        ));
        std::fs::write(&file, snapshot(objects, json)).expect("snapshot written");
    }
    for steps in [100, 500, 1_000, 2_000] {
        std::fs::write(at(&format!("steps-{steps}.yaml")), playbook(steps))
            .expect("playbook written");
    }
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe { libc::malloc_trim(0) };

    println!("tabletop of isolate-pod against a snapshot (load + plan + simulated apply):");
    println!(
        "  {:<22} {:>9} {:>10} {:>14}",
        "snapshot", "median", "peak RSS", "per 1k objects"
    );
    for (objects, json) in cases {
        let file = at(&format!(
            "snapshot-{objects}.{}",
            if json { "json" } else { "yaml" }
        ));
        let (ms, rss) = measure(
            &bin,
            &[
                "tabletop",
                &root
                    .join("playbooks/isolate-pod.yaml")
                    .display()
                    .to_string(),
                "--snapshot",
                &file.display().to_string(),
                "--set",
                "pod=pod-5",
                "--set",
                "namespace=ns-5",
            ],
        );
        let label = format!("{objects} objects {}", if json { "JSON" } else { "YAML" });
        println!(
            "  {label:<22} {ms:>7.0} ms {rss:>7.0} MB {:>11.1} ms",
            ms / (objects as f64 / 1000.0)
        );
    }

    println!("\nvalidate:");
    println!(
        "  {:<22} {:>9} {:>10} {:>14}",
        "playbook", "median", "peak RSS", "per 1k steps"
    );
    for steps in [100, 1_000, 2_000] {
        let file = at(&format!("steps-{steps}.yaml"));
        let (ms, rss) = measure(&bin, &["validate", &file.display().to_string()]);
        println!(
            "  {:<22} {ms:>7.0} ms {rss:>7.0} MB {:>11.1} ms",
            format!("{steps} steps"),
            ms / (steps as f64 / 1000.0)
        );
    }
    let (ms, rss) = measure(
        &bin,
        &[
            "validate",
            &root
                .join("playbooks/compromised-pod.yaml")
                .display()
                .to_string(),
        ],
    );
    println!(
        "  {:<22} {ms:>7.0} ms {rss:>7.0} MB",
        "compromised-pod.yaml"
    );

    println!("\nplan of 500 steps against a 10k-object snapshot:");
    let file = at("steps-500.yaml");
    for format in ["yaml", "json"] {
        let (ms, rss) = measure(
            &bin,
            &[
                "plan",
                &file.display().to_string(),
                "--snapshot",
                &at(&format!("snapshot-10000.{format}"))
                    .display()
                    .to_string(),
            ],
        );
        println!(
            "  {:<22} {ms:>7.0} ms {rss:>7.0} MB",
            format!("snapshot in {}", format.to_uppercase())
        );
    }
}

/// Median wall time (ms) of five runs, and the largest peak resident set (MB) among them.
// The child is reaped by wait4 (for its rusage), which clippy does not know of.
#[allow(clippy::zombie_processes)]
fn measure(bin: &Path, args: &[&str]) -> (f64, f64) {
    let mut times = Vec::new();
    let mut peak = 0i64;
    for _ in 0..5 {
        let started = Instant::now();
        let child = Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("contain starts");
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the pid is our own child's, waited for exactly once.
        let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(
            waited > 0 && libc::WIFEXITED(status),
            "contain {args:?} did not exit"
        );
        assert_eq!(libc::WEXITSTATUS(status), 0, "contain {args:?} failed");
        peak = peak.max(usage.ru_maxrss);
    }
    times.sort_by(f64::total_cmp);
    (times[2], peak as f64 / 1024.0)
}

/// `objects` objects: one namespace per 20, pods spread over them, each with an image digest.
fn snapshot(objects: usize, json: bool) -> String {
    let namespaces = (objects / 20).max(1);
    let mut items = Vec::with_capacity(objects);
    for i in 0..namespaces {
        items.push(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": format!("ns-{i}"), "labels": {"kubernetes.io/metadata.name": format!("ns-{i}")}}}));
    }
    for j in 0..objects - namespaces {
        items.push(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod-{j}"), "namespace": format!("ns-{}", j % namespaces), "labels": {"app": format!("app-{}", j % 7)}},
            "spec": {"nodeName": format!("node-{}", j % 10), "serviceAccountName": "default",
                     "containers": [{"name": "main", "image": format!("registry.example/app@sha256:{:064x}", j % 3), "ports": [{"containerPort": 8080}]}]},
            "status": {"phase": "Running"}}));
    }
    if json {
        return serde_json::to_string(
            &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
        )
        .expect("serializes");
    }
    items
        .iter()
        .map(|item| {
            format!(
                "---\n{}",
                serde_saphyr::to_string(item).expect("serializes")
            )
        })
        .collect()
}

/// A legal playbook of `steps` label steps, each on its own pod of the generated snapshots.
fn playbook(steps: usize) -> String {
    let mut text = String::from(
        "apiVersion: contain/v1\nkind: Playbook\nmetadata:\n  name: many-steps\n  title: Many steps\n  severity: low\nparams:\n  value: {type: string, default: x}\nsteps:\n",
    );
    for i in 0..steps {
        text.push_str(&format!(
            "  - id: label-{i}\n    action: object.label\n    target: {{kind: Pod, name: \"pod-{i}\", namespace: \"ns-{}\"}}\n    with:\n      labels:\n        contain.dev/step: \"{{{{ params.value }}}}-{i}\"\n",
            i % 500
        ));
    }
    text
}
