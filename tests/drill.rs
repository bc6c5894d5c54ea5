//! Live drills on the real control plane with the real detection chain `scripts/test` starts:
//! Prometheus scraping the API server's metrics, firing `DrillExecBurst`, and Alertmanager
//! delivering it to the drill's receiver. The drills share that chain (and the receiver's
//! port), so they run one at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Contain, Outcome, repo};
use crate::live::kubeconfig;

static CHAIN: Mutex<()> = Mutex::new(());

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn token() -> String {
    let file = env(
        "CONTAIN_TEST_RECEIVER_TOKEN_FILE",
        &repo("target/detection/token"),
    );
    std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!("the drill tests need the detection chain (scripts/detection up): {file}: {e}")
    })
}

fn kubectl() -> String {
    let out = std::process::Command::new(repo("scripts/build-control-plane"))
        .output()
        .expect("build-control-plane runs");
    let bin = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    format!("{bin}/kubectl")
}

fn kubectl_run(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .output()
        .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A labelled drill target namespace, removed at the end.
struct Target(String);

impl Target {
    fn new(test: &str) -> Self {
        let id = contain::cmd::ctx::new_run_id();
        let name = format!("dt-{test}-{}", id.rsplit('-').next().unwrap());
        assert!(kubectl_run(&["create", "namespace", &name]).0);
        assert!(kubectl_run(&["label", "namespace", &name, "contain.dev/drill-target=true"]).0);
        Target(name)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = kubectl_run(&["delete", "namespace", &self.0, "--wait=false"]);
    }
}

struct Drill {
    dir: tempfile::TempDir,
    file: PathBuf,
}

/// The exec-burst drill, expecting `alertname` within `within` seconds.
fn drill(name: &str, target: &Target, alertname: &str, within: u64) -> Drill {
    drill_from(
        "exec-burst.yaml",
        name,
        target,
        &[
            ("@ALERTNAME@", alertname),
            ("@WITHIN@", &within.to_string()),
        ],
    )
}

/// A drill fixture with its placeholders filled in, in a directory of its own.
fn drill_from(fixture: &str, name: &str, target: &Target, more: &[(&str, &str)]) -> Drill {
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(repo(&format!("tests/fixtures/drills/{fixture}")))
        .unwrap()
        .replace("@NAME@", name)
        .replace("@NAMESPACE@", &target.0)
        .replace("@PLAYBOOK@", &repo("playbooks/isolate-pod.yaml"))
        .replace("@REVOKE@", &repo("playbooks/revoke-serviceaccount.yaml"))
        .replace(
            "@RECEIVER@",
            &env("CONTAIN_TEST_RECEIVER", "127.0.0.1:29095"),
        )
        .replace(
            "@ALERTMANAGER@",
            &env("CONTAIN_TEST_ALERTMANAGER", "http://127.0.0.1:29093"),
        );
    for (placeholder, value) in more {
        text = text.replace(placeholder, value);
    }
    let unfilled = text
        .match_indices('@')
        .any(|(at, _)| text[at + 1..].starts_with(|c: char| c.is_ascii_uppercase()));
    assert!(!unfilled, "every placeholder of {fixture} is filled");
    let file = dir.path().join("drill.yaml");
    std::fs::write(&file, text).unwrap();
    Drill { dir, file }
}

impl Drill {
    fn contain(&self) -> Contain {
        Contain::new()
            .args([
                "--no-progress",
                "--kubeconfig",
                &kubeconfig().display().to_string(),
            ])
            .args([
                "--journal",
                &self.dir.path().join("journal").display().to_string(),
            ])
            .args([
                "--evidence",
                &self.dir.path().join("evidence").display().to_string(),
            ])
            .env("CONTAIN_DRILL_TOKEN", token().trim())
    }

    fn reports(&self) -> PathBuf {
        self.dir.path().join("reports")
    }

    fn run(&self) -> Outcome {
        self.contain()
            .args(["drill", &self.file.display().to_string()])
            .args(["--report-dir", &self.reports().display().to_string()])
            .run()
    }

    fn report(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.reports().join("report.json")).unwrap())
            .unwrap()
    }

    /// The drill runs in the journal, oldest first.
    fn runs(&self) -> Vec<String> {
        let mut runs: Vec<String> = std::fs::read_dir(self.dir.path().join("journal/drills"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        runs
    }
}

fn namespace_gone(name: &str) -> bool {
    let (found, _) = kubectl_run(&["get", "namespace", name]);
    !found
}

/// Parses the JUnit file with a JUnit consumer (Python's junitparser) and returns its verdicts.
fn junit_cases(path: &Path) -> String {
    let script = "import sys, junitparser\n\
        xml = junitparser.JUnitXml.fromfile(sys.argv[1])\n\
        for suite in xml:\n\
        \x20   for case in suite:\n\
        \x20       kinds = [type(r).__name__ for r in case.result]\n\
        \x20       print(suite.name, case.name, ','.join(kinds) or 'passed')\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script, &path.display().to_string()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "junitparser rejects the report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The promises every finished drill keeps: its containment rolled back with every object as
/// before, nothing of the run left, its lock released.
fn assert_reverted_and_cleaned(target: &Target, report: &Value) {
    if !report["containment"]["run"].is_null() {
        assert_eq!(report["containment"]["rollback_exit_code"], 0, "{report}");
        assert_eq!(
            report["containment"]["restore_differences"],
            serde_json::json!([]),
            "every object of the run as before containment"
        );
    }
    assert_eq!(report["leftovers"], serde_json::json!([]));
    assert!(namespace_gone(report["namespace"].as_str().unwrap()));
    let (_, holder) = kubectl_run(&[
        "get",
        "lease",
        "-n",
        &target.0,
        "contain-drill",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "", "the drill released its lock");
}

fn assert_four_times(drill: &Drill, report: &Value) {
    let times = &report["times"];
    for time in [
        "time_to_detect_seconds",
        "time_to_notify_seconds",
        "time_to_contain_seconds",
        "time_to_restore_seconds",
    ] {
        let value = times[time]
            .as_f64()
            .unwrap_or_else(|| panic!("{time} measured: {times}"));
        assert!((0.0..120.0).contains(&value), "{time} = {value}");
    }
    let markdown = std::fs::read_to_string(drill.reports().join("report.md")).unwrap();
    for label in [
        "time to detect",
        "time to notify",
        "time to contain",
        "time to restore",
    ] {
        assert!(markdown.contains(label), "{label} in the Markdown report");
    }
    let detect = format!("{}", times["time_to_detect_seconds"].as_f64().unwrap());
    assert!(
        markdown.contains(&detect),
        "the measured detect time {detect} is in the Markdown report"
    );
    let junit = std::fs::read_to_string(drill.reports().join("junit.xml")).unwrap();
    let notify = format!("{}", times["time_to_notify_seconds"].as_f64().unwrap());
    let restore = format!("{}", times["time_to_restore_seconds"].as_f64().unwrap());
    assert!(
        junit.contains(&notify) && junit.contains(&restore),
        "notify and restore times in the JUnit file"
    );
}

#[test]
fn a_detected_drill_is_contained_verified_reverted_and_cleaned() {
    let _chain = CHAIN.lock().unwrap_or_else(|e| e.into_inner());
    let target = Target::new("detected");
    let drill = drill("exec-burst", &target, "DrillExecBurst", 90);
    let outcome = drill.run();
    assert_eq!(
        outcome.code, 0,
        "drill passes: {}\n{}",
        outcome.stdout, outcome.stderr
    );
    let report = drill.report();
    assert_eq!(report["schema"], "contain.dev/drill-report/v1");
    assert_eq!(report["status"], "PASSED");
    assert_eq!(report["expectations"][0]["verdict"], "DETECTED", "{report}");
    assert_eq!(
        report["expectations"][0]["matched"]["source"],
        "alertmanager"
    );
    assert_eq!(report["containment"]["exit_code"], 0);
    assert!(
        report["verification"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true)
    );
    assert_reverted_and_cleaned(&target, &report);
    assert_four_times(&drill, &report);
    let cases = junit_cases(&drill.reports().join("junit.xml"));
    assert!(
        cases.contains("exec-burst.burst DrillExecBurst within 90s passed"),
        "{cases}"
    );
    // The containment was really rolled back: no policy of the run is left anywhere.
    let (_, policies) = kubectl_run(&["get", "networkpolicies", "-A", "-l", "contain.dev/run-id"]);
    assert!(!policies.contains(report["containment"]["run"].as_str().unwrap()));
    // The result is published in the cluster: a ConfigMap and an Event in the target namespace.
    let short = report["run"]
        .as_str()
        .unwrap()
        .rsplit('-')
        .next()
        .unwrap()
        .to_string();
    let (found, status) = kubectl_run(&[
        "get",
        "configmap",
        "-n",
        &target.0,
        &format!("contain-drill-{short}"),
        "-o",
        "jsonpath={.data.status}",
    ]);
    assert!(found && status == "PASSED", "{status}");
    let (_, events) = kubectl_run(&[
        "get",
        "events",
        "-n",
        &target.0,
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("DrillPassed"), "{events}");
}

#[test]
fn a_drill_judges_a_revocation_by_the_api_server_and_the_token_it_minted() {
    let _chain = CHAIN.lock().unwrap_or_else(|e| e.into_inner());
    let target = Target::new("revoked");
    let drill = drill_from(
        "exec-burst-revoke.yaml",
        "exec-burst-revoke",
        &target,
        &[("@ALERTNAME@", "DrillExecBurst"), ("@WITHIN@", "90")],
    );
    let outcome = drill.run();
    assert_eq!(
        outcome.code, 0,
        "drill passes: {}\n{}",
        outcome.stdout, outcome.stderr
    );
    let report = drill.report();
    let checks = report["verification"].as_array().unwrap();
    let revoked = checks
        .iter()
        .find(|c| c["condition"] == "web's ServiceAccount revoked")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(revoked["passed"], true, "{revoked}");
    assert!(
        revoked["detail"]
            .as_str()
            .unwrap()
            .contains("its token from before containment is rejected"),
        "{revoked}"
    );
    // Containment is timed from the alert, not from the end of every detection window.
    let contain = report["times"]["time_to_contain_seconds"].as_f64().unwrap();
    assert!(contain < 60.0, "time to contain {contain} s: {report}");
}

#[test]
fn a_drill_without_its_alert_ends_missed_and_still_reverts_and_cleans() {
    let _chain = CHAIN.lock().unwrap_or_else(|e| e.into_inner());
    let target = Target::new("missed");
    // The rule this drill expects does not exist in Prometheus (as if it had been removed).
    let drill = drill("rule-removed", &target, "DrillRuleRemoved", 10);
    let outcome = drill.run();
    assert_eq!(
        outcome.code, 11,
        "an expectation failed: {}\n{}",
        outcome.stdout, outcome.stderr
    );
    let report = drill.report();
    assert_eq!(report["status"], "FAILED");
    assert_eq!(report["expectations"][0]["verdict"], "MISSED", "{report}");
    assert!(
        report["expectations"][0]["guardrail"]
            .as_str()
            .unwrap()
            .contains("exec")
    );
    assert!(
        !report["containment"]["run"].is_null(),
        "containment ran though nothing was detected"
    );
    assert_reverted_and_cleaned(&target, &report);
    let cases = junit_cases(&drill.reports().join("junit.xml"));
    assert!(
        cases.contains("DrillRuleRemoved within 10s Failure"),
        "MISSED is a JUnit failure: {cases}"
    );
    let markdown = std::fs::read_to_string(drill.reports().join("report.md")).unwrap();
    assert!(
        markdown.contains("**runtime**: burst"),
        "control failures by phase: {markdown}"
    );
}

#[test]
fn a_drill_killed_mid_detect_is_finished_by_cleanup_and_holds_its_lock_until_then() {
    let _chain = CHAIN.lock().unwrap_or_else(|e| e.into_inner());
    let target = Target::new("killed");
    let drill = drill("killed", &target, "DrillNeverFires", 300);
    let mut child = drill
        .contain()
        .args(["drill", &drill.file.display().to_string()])
        .spawn();
    // Wait until the drill journaled its detect phase, then kill it without warning.
    let started = Instant::now();
    let run = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the drill reached detect"
        );
        if let Some(run) = drill.runs().first()
            && detect_reached(&drill, run)
        {
            break run.clone();
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let namespace = format!(
        "{}-{}",
        target.0,
        run.rsplit('-').next().unwrap().to_ascii_lowercase()
    );
    assert!(
        !namespace_gone(&namespace),
        "the killed drill left its namespace"
    );
    // A second drill on the same target is refused while the dead one's lease lasts.
    let second = drill.run();
    assert_eq!(second.code, 12, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains(&run),
        "the refusal names the holder: {}",
        second.stderr
    );
    let cleanup = drill
        .contain()
        .args([
            "drill",
            "cleanup",
            &run,
            "--report-dir",
            &drill.reports().display().to_string(),
        ])
        .run();
    assert_eq!(
        cleanup.code, 12,
        "an aborted drill exits 12: {}\n{}",
        cleanup.stdout, cleanup.stderr
    );
    let report = drill.report();
    assert_eq!(report["status"], "ABORTED");
    assert_eq!(report["namespace"], namespace.as_str());
    assert_reverted_and_cleaned(&target, &report);
}

/// Whether the drill run's journal has reached its detect phase. The live drill holds its
/// store's lock, so the record is looked for in the store's files, where each durable record's
/// JSON lies as written.
fn detect_reached(drill: &Drill, run: &str) -> bool {
    let dir = drill.dir.path().join("journal/drills").join(run);
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .any(|e| {
            std::fs::read(e.path())
                .map(|bytes| bytes.windows(16).any(|w| w == b"\"phase\":\"detect\""))
                .unwrap_or(false)
        })
}

#[test]
fn a_bad_drill_file_is_refused_with_every_problem_located_and_exit_12() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: contain/v1\nkind: Drill\nmetadata: {name: bad}\nspec:\n  target: {namespace: drill}\n  contexts: [x]\n  decoys: [{name: web, image: x}]\n  detonations:\n    - id: burst\n      abuse:\n        exec_burst: {decoy: wbe}\n      expect:\n        - {alertname: A, rule: B, within_seconds: 10}\n    - id: burst\n      abuse: {exec_burst: {decoy: web}}\n",
    )
    .unwrap();
    let outcome = Contain::new()
        .args(["-o", "json", "drill", &file.display().to_string()])
        .run();
    assert_eq!(outcome.code, 12, "{}", outcome.stderr);
    let problems = outcome.json()["problems"].clone();
    let line_of = |needle: &str| {
        problems
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["message"].as_str().unwrap_or("").contains(needle))
            .unwrap_or_else(|| panic!("a problem saying {needle}: {problems}"))["line"]
            .as_u64()
    };
    assert_eq!(line_of("no decoy `wbe`"), Some(11));
    assert_eq!(line_of("exactly one of `rule`"), Some(13));
    assert_eq!(line_of("`burst` is used twice"), Some(14));
    let schema = Contain::new().args(["drill", "schema"]).run();
    let shipped = std::fs::read_to_string(repo("playbooks/drill.schema.json")).unwrap();
    assert_eq!(
        schema.stdout, shipped,
        "playbooks/drill.schema.json is `contain drill schema`"
    );
}

#[test]
fn the_shipped_drill_cronjob_applies_to_a_fresh_cluster_as_it_is() {
    let _chain = CHAIN.lock().unwrap_or_else(|e| e.into_inner());
    let manifest = repo("examples/kubernetes/drill-cronjob.yaml");
    let (applied, out) = kubectl_run(&["apply", "-f", &manifest]);
    let (checked, dry) = kubectl_run(&["apply", "--dry-run=server", "-f", &manifest]);
    let (deleted, gone) = kubectl_run(&["delete", "-f", &manifest, "--timeout=90s"]);
    assert!(applied, "{out}");
    assert!(checked, "{dry}");
    assert!(deleted, "{gone}");
    assert!(out.contains("cronjob.batch/contain-drill created"), "{out}");
    assert!(out.contains("validatingadmissionpolicy.admissionregistration.k8s.io/contain-drill-labelled-namespaces created"), "{out}");
}

/// The verdicts of a report, in order: what a resumed drill must reproduce.
fn verdicts(report: &Value) -> Vec<String> {
    report["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["detonation"].as_str().unwrap(),
                e["verdict"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn admission_prevents_the_privileged_pod_and_the_other_detonations_run_and_are_missed() {
    let _chain = CHAIN.lock().unwrap_or_else(|e| e.into_inner());
    let target = Target::new("admission");
    let drill = drill_from("admission.yaml", "admission", &target, &[]);
    let outcome = drill.run();
    assert_eq!(outcome.code, 11, "{}\n{}", outcome.stdout, outcome.stderr);
    let report = drill.report();
    assert_eq!(
        verdicts(&report),
        ["privileged PREVENTED", "foreign MISSED", "token MISSED"],
        "{report}"
    );
    let detail = |id: &str| {
        report["expectations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["detonation"] == id)
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        detail("privileged").contains("PodSecurity"),
        "Pod Security refused it: {}",
        detail("privileged")
    );
    let token = report["detonations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "token")
        .unwrap();
    assert_eq!(token["effect"], "executed");
    assert!(
        token["detail"]
            .as_str()
            .unwrap()
            .contains("refused by RBAC (403)"),
        "{token}"
    );
    let foreign = report["detonations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "foreign")
        .unwrap();
    assert_eq!(foreign["effect"], "executed", "{foreign}");
    assert_eq!(report["coverage"]["deploy"]["percent"], 100.0);
    assert_eq!(report["coverage"]["build"]["percent"], 0.0);
    assert_reverted_and_cleaned(&target, &report);
}

/// Kill -9 at a moment drawn at random, resume, and compare with the uninterrupted drill.
#[test]
fn a_drill_killed_at_random_instants_resumes_to_the_uninterrupted_result() {
    let _chain = CHAIN.lock().unwrap_or_else(|e| e.into_inner());
    let target = Target::new("crash");
    let uninterrupted = drill_from("admission.yaml", "crash", &target, &[]);
    assert_eq!(uninterrupted.run().code, 11);
    let expected = verdicts(&uninterrupted.report());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for trial in 0..3u64 {
        // A spread over the whole drill: preflight and warmup, detonations, detect,
        // containment, verify, revert and cleanup (an uninterrupted drill takes about 15 s).
        let delay = Duration::from_millis(200 + splitmix(seed + trial) % 16_000);
        let drill = drill_from("admission.yaml", "crash", &target, &[]);
        let reports = drill.reports().display().to_string();
        let mut child = drill
            .contain()
            .args(["drill", &drill.file.display().to_string()])
            .args(["--report-dir", &reports])
            .spawn();
        std::thread::sleep(delay);
        child.kill().unwrap();
        eprintln!("crash trial {trial}: killed after {delay:?}");
        child.wait().unwrap();
        let Some(run) = drill.runs().first().cloned() else {
            // Killed before its journal existed: it wrote nothing.
            let (_, namespaces) = kubectl_run(&["get", "namespaces", "-o", "name"]);
            assert!(
                !namespaces.contains(&format!("namespace/{}-", target.0)),
                "trial {trial} ({delay:?}): {namespaces}"
            );
            continue;
        };
        let resumed = drill
            .contain()
            .args([
                "drill",
                "resume",
                &run,
                "--report-dir",
                &drill.reports().display().to_string(),
            ])
            .run();
        assert_eq!(
            resumed.code, 11,
            "trial {trial} killed after {delay:?}: {}\n{}",
            resumed.stdout, resumed.stderr
        );
        // Killed after its result was journaled, resume only says so: the report is the one
        // the killed drill wrote.
        let report = drill.report();
        assert_eq!(
            verdicts(&report),
            expected,
            "trial {trial} killed after {delay:?}"
        );
        assert_eq!(report["status"], "FAILED");
        assert_reverted_and_cleaned(&target, &report);
    }
}

/// SplitMix64: independent-looking draws from consecutive seeds.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
