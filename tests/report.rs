//! `contain report RUN`, live: the incident report of a real run and its rollback, in JSON,
//! Markdown and HTML, with hostile cluster text escaped; the HTML rendered by headless Chromium
//! (its DOM and a screenshot, the screenshot compared with a blank page's rendered the same way).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::harness::{Live, playbook_file};
use crate::live::{self, Namespace};

/// Captures, annotates (with text an attacker could have put on the cluster) and isolates.
const PLAYBOOK: &str = r#"apiVersion: contain/v1
kind: Playbook
metadata: {name: report-test}
params:
  namespace: {type: string, required: true}
  pod: {type: string, required: true}
  note: {type: string, required: true}
steps:
  - id: capture
    action: forensics.capture
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {checkpoint: false}
  - id: note
    action: object.annotate
    target: {kind: Deployment, name: web, namespace: "{{ params.namespace }}"}
    with: {annotations: {contain.dev/note: "{{ params.note }}"}}
  - id: isolate
    action: network.isolate
    target: {kind: Pod, name: "{{ params.pod }}", namespace: "{{ params.namespace }}"}
    with: {mechanism: network-policy}
"#;

const HOSTILE: &str = "<img src=x onerror=alert(1)> | **bold** \u{1b}[31mred";

fn chromium() -> PathBuf {
    let path = std::env::var_os("CONTAIN_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "the HTML report test needs headless Chromium at {} (scripts/test installs Debian's chromium)",
        path.display()
    );
    path
}

/// Headless Chromium on a local file, as the README's flags say (no network, no first run).
fn headless(page: &Path, profile: &Path, extra: &[String]) -> std::process::Output {
    Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

/// (width, height) from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[tokio::test]
async fn the_incident_report_of_a_run_and_its_rollback_says_what_happened_in_every_format() {
    let cluster = live::connect(live::kubeconfig()).await;
    let ns = Namespace::new(&cluster, "report").await;
    let pods = live::deployment(&cluster, &ns.name, "web", 1).await;
    let pod = contain::cluster::object::name(&pods[0])
        .unwrap()
        .to_string();
    let live = Live::new();
    let playbook = playbook_file(PLAYBOOK);
    let out = live
        .contain()
        .args(["run", "--yes", &playbook.path().display().to_string()])
        .args([
            "--set",
            &format!("namespace={}", ns.name),
            "--set",
            &format!("pod={pod}"),
        ])
        .args(["--set", &format!("note={HOSTILE}")])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let run = live.last_run();
    let rolled = live.contain().args(["rollback", "--yes", &run]).run();
    assert_eq!(rolled.code, 0, "{}\n{}", rolled.stdout, rolled.stderr);

    // JSON: the report as data.
    let json = live
        .contain()
        .args(["report", &run, "--format", "json"])
        .run();
    assert_eq!(json.code, 0, "{}", json.stderr);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["schema"], "contain.dev/incident-report/v1");
    assert_eq!(report["user"], "contain-admin");
    assert_eq!(report["journal"]["chain"], "intact");
    assert_eq!(report["outcome"]["text"], "rolled back");
    assert_eq!(report["rollback"]["status"], "rolled back");
    assert_eq!(report["verification"]["failed"], 0);
    assert!(
        report["verification"]["passed"].as_u64().unwrap() >= 4,
        "{}",
        report["verification"]
    );
    let steps = report["steps"].as_array().unwrap();
    let note = steps.iter().find(|s| s["id"] == "note").unwrap();
    assert_eq!(note["status"], "done");
    assert_eq!(note["rollback"], "undone");
    let field = &note["changes"][0]["fields"][0];
    assert_eq!(field["path"], "metadata.annotations[\"contain.dev/note\"]");
    assert_eq!(field["before"], "(none)");
    assert!(
        field["after"].as_str().unwrap().contains("<img src=x"),
        "{field}"
    );
    assert!(
        !field["after"].as_str().unwrap().contains('\u{1b}'),
        "terminal escapes never pass: {field}"
    );
    let isolate = steps.iter().find(|s| s["id"] == "isolate").unwrap();
    assert!(
        isolate["changes"][0]["op"]
            .as_str()
            .unwrap()
            .starts_with("create NetworkPolicy"),
        "{isolate}"
    );
    assert!(
        isolate["verification"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "passed")
    );
    let evidence = &report["evidence"][0];
    assert_eq!(
        evidence["status"], "manifest matches the journal",
        "{evidence}"
    );
    let capture = steps.iter().find(|s| s["id"] == "capture").unwrap();
    let artifacts = capture["evidence"].as_array().unwrap();
    assert_eq!(
        artifacts.len() as u64,
        evidence["artifacts"].as_u64().unwrap()
    );
    assert!(
        artifacts
            .iter()
            .all(|a| a["sha256"].as_str().unwrap().len() == 64)
    );
    let timeline = report["timeline"].as_array().unwrap();
    let events: Vec<&str> = timeline
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let position = |text: &str| {
        events
            .iter()
            .position(|e| e.starts_with(text))
            .unwrap_or_else(|| panic!("{text} in {events:?}"))
    };
    assert!(position("plan approved") < position("note: about to write"));
    assert!(position("finished: succeeded") < position("rollback started"));
    assert_eq!(events.last(), Some(&"finished: rolled back"));

    // Markdown: the sections, and the hostile text as text.
    let md = live.contain().args(["report", &run]).run();
    assert_eq!(md.code, 0, "{}", md.stderr);
    for section in [
        "# Incident report: report-test",
        "## Timeline",
        "## Changes",
        "## Verification",
        "## Evidence",
        "## Rollback",
    ] {
        assert!(md.stdout.contains(section), "{section}:\n{}", md.stdout);
    }
    assert!(
        md.stdout
            .contains("\\<img src=x onerror=alert(1)\\> \\| \\*\\*bold\\*\\*"),
        "{}",
        md.stdout
    );
    assert!(!md.stdout.contains('\u{1b}'));

    // A template directory replaces the shipped template; one naming a field that does not
    // exist is an error (strict), never an empty string.
    let templates = tempfile::tempdir().unwrap();
    let with_template = |text: &str| {
        std::fs::write(templates.path().join("incident.md.hbs"), text).unwrap();
        let dir = templates.path().display().to_string();
        live.contain()
            .args(["report", &run, "--templates", &dir])
            .run()
    };
    let custom = with_template("run {{run}} by {{user}}: {{rollback.status}}\n");
    assert_eq!(
        custom.stdout,
        format!("run {run} by contain-admin: rolled back\n")
    );
    let strict = with_template("{{no_such_field}}");
    assert_eq!(strict.code, 3, "{}", strict.stderr);
    assert!(strict.stderr.contains("no_such_field"), "{}", strict.stderr);

    // HTML, rendered by a browser as a person would open it.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let written = live
        .contain()
        .args([
            "report",
            &run,
            "--format",
            "html",
            "--out",
            &html.display().to_string(),
        ])
        .run();
    assert_eq!(written.code, 0, "{}", written.stderr);
    let profile = dir.path().join("profile");
    let dom = headless(&html, &profile, &["--dump-dom".into()]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in [
        "summary",
        "timeline",
        "changes",
        "verification",
        "evidence",
        "rollback",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "section {id} in the rendered DOM"
        );
    }
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the hostile annotation is text"
    );
    assert!(!dom.contains("<img"), "no element came from cluster text");
    assert!(dom.contains("rolled back") && dom.contains(&pod) && dom.contains("contain-admin"));

    let shot = dir.path().join("report.png");
    let taken = headless(
        &html,
        &profile,
        &[format!("--screenshot={}", shot.display())],
    );
    assert!(shot.exists(), "{}", String::from_utf8_lossy(&taken.stderr));
    let blank_page = dir.path().join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank = dir.path().join("blank.png");
    headless(
        &blank_page,
        &profile,
        &[format!("--screenshot={}", blank.display())],
    );
    let (report_png, blank_png) = (
        std::fs::read(&shot).unwrap(),
        std::fs::read(&blank).unwrap(),
    );
    assert_eq!(png_size(&report_png), (1280, 2000));
    assert_eq!(png_size(&blank_png), (1280, 2000));
    // The same window, rendered the same way: a page full of tables and text compresses far
    // worse than an empty one.
    assert!(
        report_png.len() > 20 * blank_png.len(),
        "the screenshot shows the report ({} bytes) and not a blank page ({} bytes)",
        report_png.len(),
        blank_png.len()
    );
    if let Some(keep) = std::env::var_os("CONTAIN_TEST_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
