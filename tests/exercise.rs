//! Tabletop exercises: the shipped scenario run unattended from its answers file (the
//! after-action report's objectives and latencies), a scenario with mistakes refused with each
//! one located, and the interactive mode driven through a real terminal (tmux), as a facilitator
//! would.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Contain, repo};

const SCENARIO: &str = "examples/exercises/cryptominer-in-shop.yaml";
const SNAPSHOT: &str = "examples/snapshots/cluster.yaml";

fn aar(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("aar.json")).unwrap()).unwrap()
}

fn objective<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .unwrap()
}

#[test]
fn the_shipped_scenario_runs_from_its_answers_and_reports_objectives_and_latencies() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Contain::new()
        .args(["exercise", &repo(SCENARIO), "--snapshot", &repo(SNAPSHOT)])
        .args([
            "--answers",
            &repo("examples/exercises/cryptominer-in-shop.answers.yaml"),
        ])
        .args(["--out", &out_dir.path().display().to_string()])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // A decision shows its step's plan against the snapshot at once.
    assert!(
        out.stdout.contains(
            "decision at 6:00: security engineer chose step isolate (answering egress-spike)"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("+ create NetworkPolicy shop/contain-isolate-isolate-"),
        "{}",
        out.stdout
    );

    let report = aar(out_dir.path());
    assert_eq!(report["schema"], "contain.dev/after-action/v1");
    assert_eq!(objective(&report, "evidence-first")["status"], "met");
    assert_eq!(objective(&report, "contain-fast")["status"], "met");
    // Revoked 7 minutes after the inject, 5 were allowed.
    let credentials = objective(&report, "credentials");
    assert_eq!(credentials["status"], "NOT MET");
    assert_eq!(credentials["expectations"][0]["latency"], "7:00");
    let node = objective(&report, "node");
    assert_eq!(node["expectations"][0]["status"], "NOT DECIDED");
    assert_eq!(node["notes"][0]["who"], "security lead");
    assert_eq!(report["summary"]["objectives_met"], 2);
    let latency: Vec<Value> = report["injects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["decision_latency"].clone())
        .collect();
    assert_eq!(
        latency,
        [
            Value::from("1:30"),
            Value::from("4:00"),
            Value::from("7:00"),
            Value::Null
        ]
    );
    // The inject due at 4m into module 2 (opened at 8:00) was given at 12:00, not when the
    // script next acted.
    assert_eq!(report["injects"][3]["given_at"], "12:00");
    assert_eq!(report["injects"][1]["early"], true);
    let isolate = &report["decisions"][1];
    assert_eq!(
        isolate["why"],
        "cut the mining pool off; forensics keeps access"
    );
    assert!(
        isolate["plan"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("+ create NetworkPolicy"))
    );
    assert_eq!(report["hotwash"].as_array().unwrap().len(), 3);
    let markdown = std::fs::read_to_string(out_dir.path().join("aar.md")).unwrap();
    for section in [
        "# After-action report: A cryptominer",
        "## Objectives",
        "### credentials: NOT MET",
        "## Injects and decision latency",
        "## Decisions",
        "## Hot wash",
    ] {
        assert!(markdown.contains(section), "{section}:\n{markdown}");
    }
}

#[test]
fn a_scenario_with_mistakes_is_refused_with_each_one_located() {
    let text = std::fs::read_to_string(repo(SCENARIO))
        .unwrap()
        .replace(
            "../../playbooks/compromised-pod.yaml",
            &repo("playbooks/compromised-pod.yaml"),
        )
        .replace(
            "{step: isolate, objective: contain-fast, within: 10m}",
            "{step: isolat, objective: contain-fast, within: 10 minutes}",
        )
        .replace(
            "{step: revoke, objective: credentials, within: 5m}",
            "{step: revoke, objective: credental, within: 5m}",
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, &text).unwrap();
    let out = Contain::new()
        .args([
            "-o",
            "json",
            "exercise",
            "validate",
            &path.display().to_string(),
        ])
        .run();
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let problems = out.json()["problems"].clone();
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() as u64 + 1;
    for (message, line) in [
        (
            "spec.modules[0].injects[1].expect[0].within: `10 minutes` is not a duration",
            line_of("within: 10 minutes"),
        ),
        (
            "spec.modules[1].injects[0].expect[0].objective: no objective `credental`; did you mean `credentials`?",
            line_of("objective: credental"),
        ),
        (
            "spec.modules[0].injects[1].expect[0].step: the playbook has no step `isolat`; did you mean `isolate`?",
            line_of("step: isolat"),
        ),
    ] {
        let found = problems
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["message"].as_str().unwrap_or_default().contains(message))
            .unwrap_or_else(|| panic!("a problem saying {message}: {problems}"));
        assert_eq!(found["line"].as_u64(), Some(line), "{found}");
    }
    let schema = Contain::new().args(["exercise", "schema"]).run();
    let shipped = std::fs::read_to_string(repo("playbooks/scenario.schema.json")).unwrap();
    assert_eq!(
        schema.stdout, shipped,
        "playbooks/scenario.schema.json is `contain exercise schema`"
    );
}

/// A tmux session running one command in a terminal of its own.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(command: &str) -> Self {
        let name = format!("contain-exercise-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "220",
                "-y",
                "60",
                command,
            ])
            .status()
            .expect("tmux runs (scripts/test installs it)");
        assert!(status.success());
        Tmux { name }
    }

    fn send(&self, line: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", line])
            .status()
            .unwrap();
        assert!(status.success());
        Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "Enter"])
            .status()
            .unwrap();
    }

    /// A key as tmux names it (`C-c`), not typed text.
    fn keys(&self, key: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, key])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-J", "-S", "-2000", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (at most 20 s) until the terminal shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the terminal never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

#[test]
fn answers_that_name_no_step_or_objective_of_the_scenario_are_refused_with_their_place() {
    let answers =
        std::fs::read_to_string(repo("examples/exercises/cryptominer-in-shop.answers.yaml"))
            .unwrap()
            .replace("step: isolate,", "step: isloate,")
            .replace("objective: node,", "objective: nodes,");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answers.yaml");
    std::fs::write(&path, answers).unwrap();
    let out = Contain::new()
        .args(["exercise", &repo(SCENARIO), "--snapshot", &repo(SNAPSHOT)])
        .args(["--answers", &path.display().to_string()])
        .args(["--out", &dir.path().join("out").display().to_string()])
        .run();
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let said = out.stderr.replace("\n  │ ", " ");
    assert!(
        said.contains(
            "answers.yaml:9:56: actions[2].step: `isloate` is not a step of the scenario's playbook"
        ),
        "{said}"
    );
    assert!(said.contains("did you mean `isolate`?"), "{said}");
    assert!(
        said.contains("actions[8].objective: `nodes` is not an objective of the scenario"),
        "{said}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "no report of an exercise that never ran"
    );
}

#[test]
fn ctrl_c_at_the_terminal_ends_the_exercise_and_writes_the_report_so_far() {
    let out_dir = tempfile::tempdir().unwrap();
    let command = format!(
        "{} exercise {} --snapshot {} --out {}; echo EXITED=$?; sleep 60",
        env!("CARGO_BIN_EXE_contain"),
        repo(SCENARIO),
        repo(SNAPSHOT),
        out_dir.path().display()
    );
    let term = Tmux::start(&command);
    term.wait_for("> ");
    term.send("decide capture");
    term.wait_for("who? ");
    term.send("alice");
    term.wait_for("why? ");
    term.send("evidence first");
    term.wait_for("alice chose step capture");
    term.keys("C-c");
    // The shell around it dies of the same Ctrl-C; the exercise says so and writes its report.
    let screen = term.wait_for("after-action report:");
    assert!(
        screen.contains("interrupted: the exercise ends here"),
        "{screen}"
    );
    let report = aar(out_dir.path());
    assert_eq!(report["interrupted"], true);
    assert_eq!(report["decisions"][0]["step"], "capture");
    let markdown = std::fs::read_to_string(out_dir.path().join("aar.md")).unwrap();
    assert!(markdown.contains("interrupted with Ctrl-C"), "{markdown}");
}

#[test]
fn an_unmet_objective_fails_the_command_when_asked_and_the_report_is_written() {
    let run = |flags: &[&str]| {
        let out_dir = tempfile::tempdir().unwrap();
        let out = Contain::new()
            .args(["exercise", &repo(SCENARIO), "--snapshot", &repo(SNAPSHOT)])
            .args([
                "--answers",
                &repo("examples/exercises/cryptominer-in-shop.answers.yaml"),
            ])
            .args(["--out", &out_dir.path().display().to_string()])
            .args(flags.iter().copied())
            .run();
        let report = aar(out_dir.path());
        (out.code, report)
    };
    let (plain, report) = run(&[]);
    let met = report["summary"]["objectives_met"].as_u64().unwrap();
    let all = report["summary"]["objectives"].as_u64().unwrap();
    assert!(
        met < all,
        "the shipped rehearsal leaves an objective unmet: {report}"
    );
    assert_eq!(plain, 0);
    let (strict, report) = run(&["--fail-on-unmet"]);
    assert_eq!(strict, 14, "exit 14 with --fail-on-unmet");
    assert_eq!(report["summary"]["objectives_met"].as_u64(), Some(met));
}

#[test]
fn a_facilitator_runs_the_exercise_at_a_terminal() {
    let out_dir = tempfile::tempdir().unwrap();
    let command = format!(
        "{} exercise {} --snapshot {} --out {}; echo EXITED=$?; sleep 60",
        env!("CARGO_BIN_EXE_contain"),
        repo(SCENARIO),
        repo(SNAPSHOT),
        out_dir.path().display()
    );
    let term = Tmux::start(&command);
    term.wait_for("-- inject falco-shell (0:00)");
    term.wait_for("> ");
    term.send("decide capture");
    term.wait_for("who? ");
    term.send("alice");
    term.wait_for("why? ");
    term.send("evidence before anything changes");
    let screen = term.wait_for("alice chose step capture (answering falco-shell)");
    assert!(
        screen.contains("capture 13 artifact(s) from 1 pod(s) of Pod shop/web-fjejlcldef-x7k2p"),
        "{screen}"
    );
    term.send("inject");
    term.wait_for(", given early): Network: web-fjejlcldef-x7k2p opened 40 connections");
    term.send("pause");
    term.wait_for("paused at");
    term.send("status");
    term.wait_for("2 inject(s) given · 1 decision(s) · 0 note(s) · PAUSED");
    term.send("resume");
    term.wait_for("resumed at");
    term.send("decide isolat");
    term.wait_for("who? ");
    term.send("bob");
    term.wait_for("why? ");
    term.send("typo");
    term.wait_for("the playbook has no step `isolat`; did you mean `isolate`?");
    term.send("note contain-fast");
    term.wait_for("who? ");
    term.send("carol");
    term.wait_for("note? ");
    term.send("they checked the existing policies first");
    term.wait_for("note on contain-fast by carol recorded");
    term.send("next");
    term.wait_for("== module 2 of 2");
    term.send("end");
    term.wait_for("hot wash 1/3: What went well?");
    term.send("the plan was on screen at once");
    term.wait_for("hot wash 2/3");
    term.send("finding the node owner");
    term.wait_for("hot wash 3/3");
    term.send("add the node owner to the escalation list");
    let screen = term.wait_for("EXITED=");
    assert!(screen.contains("EXITED=0"), "{screen}");
    assert!(screen.contains("after-action report:"), "{screen}");

    let report = aar(out_dir.path());
    let decisions = report["decisions"].as_array().unwrap();
    assert_eq!(
        decisions.len(),
        1,
        "the mistyped step was not recorded: {decisions:?}"
    );
    assert_eq!(decisions[0]["who"], "alice");
    assert_eq!(decisions[0]["step"], "capture");
    assert_eq!(objective(&report, "evidence-first")["status"], "met");
    assert_eq!(
        objective(&report, "contain-fast")["notes"][0]["text"],
        "they checked the existing policies first"
    );
    assert_eq!(report["injects"][1]["early"], true);
    assert_eq!(
        report["hotwash"][2]["answer"],
        "add the node owner to the escalation list"
    );
}
