//! A small builder for running the `contain` binary and looking at what it did.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Where the repository lives, for shipped playbooks and examples.
pub fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

pub struct Contain {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Contain {
    pub fn new() -> Self {
        Contain {
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts it in the background (no terminal on stdin), for tests that kill it.
    pub fn spawn(self) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_contain"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the contain binary starts")
    }

    /// Runs with no terminal on stdin, as in CI or a CronJob.
    pub fn run(self) -> Outcome {
        let output = Command::new(env!("CARGO_BIN_EXE_contain"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("the contain binary runs");
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Outcome {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A `contain` for live runs against the test control plane, with a journal and an evidence
/// directory of its own (the default ones belong to whoever runs the tests).
pub struct Live {
    pub journal: tempfile::TempDir,
    pub evidence: tempfile::TempDir,
}

impl Live {
    pub fn new() -> Self {
        Live {
            journal: tempfile::tempdir().unwrap(),
            evidence: tempfile::tempdir().unwrap(),
        }
    }

    pub fn contain(&self) -> Contain {
        self.contain_as(&crate::live::kubeconfig())
    }

    /// A `contain` that reaches the cluster through another kubeconfig (another identity, or
    /// a proxy in the way).
    pub fn contain_as(&self, kubeconfig: &std::path::Path) -> Contain {
        Contain::new()
            .args([
                "--no-progress",
                "--kubeconfig",
                &kubeconfig.display().to_string(),
            ])
            .args(["--journal", &self.journal.path().display().to_string()])
            .args(["--evidence", &self.evidence.path().display().to_string()])
    }

    /// The id of the newest run in the journal.
    pub fn last_run(&self) -> String {
        let runs = self
            .contain()
            .args(["-o", "json", "journal", "ls"])
            .run()
            .json();
        runs.as_array()
            .and_then(|r| r.last())
            .and_then(|r| r["run"].as_str())
            .expect("a run is journaled")
            .to_string()
    }
}

/// A playbook text in a file of its own.
pub fn playbook_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}
