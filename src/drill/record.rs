//! A drill's journal: one store per drill run under `<journal>/drills/<run>`, with the same
//! hash-chained records as playbook runs. Every phase is recorded as it starts, every object
//! before it is created, every detonation and counted alert as it happens, so
//! `contain drill resume|cleanup RUN` knows where a crashed drill stood.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use journal::{Journal, JournalError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alerts::Alert;
use super::score::DrillResult;
use super::types::{Check, Detonated};

/// What the journal knows about a drill run before its first write.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrillInfo {
    pub drill_path: String,
    pub drill_sha256: String,
    pub drill_name: String,
    pub cluster_id: String,
    pub server: String,
    pub context: String,
    pub user: String,
    pub target_namespace: String,
    pub namespace: String,
    pub prefix: String,
    pub started_at: Timestamp,
}

/// One record of a drill run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum DrillEntry {
    Phase {
        phase: String,
        at: Timestamp,
    },
    /// Durable before the object is created, so cleanup knows it may exist.
    Create {
        kind: String,
        namespace: String,
        name: String,
    },
    Armed {
        preexisting: Vec<String>,
        at: Timestamp,
    },
    Detonated(Detonated),
    /// An alert received after the first detonation (pre-existing ones are not recorded).
    Alert(Alert),
    /// What containment may change, read before it starts; the revert must restore it.
    Baseline {
        objects: std::collections::BTreeMap<String, Value>,
    },
    /// Durable before the containment playbook's run starts.
    Contain {
        run: String,
        at: Timestamp,
    },
    Contained {
        code: u8,
        at: Timestamp,
    },
    Verified {
        checks: Vec<Check>,
        at: Timestamp,
    },
    /// The rollback's exit code, and how the run's objects still differ from the baseline.
    Reverted {
        code: u8,
        started: Timestamp,
        at: Timestamp,
        #[serde(default)]
        differences: Vec<String>,
    },
    Cleaned {
        leftovers: Vec<String>,
        at: Timestamp,
    },
    Aborted {
        reason: String,
        at: Timestamp,
    },
    Result(Box<DrillResult>),
}

/// Where drill journals live: beside the playbook runs, in a directory of their own.
pub fn root(journal_root: &Path) -> PathBuf {
    journal_root.join("drills")
}

/// A drill run's journal.
pub struct DrillJournal {
    journal: Journal,
    pub run: String,
}

impl DrillJournal {
    pub fn create(root: &Path, run: &str, info: &DrillInfo) -> Result<Self, JournalError> {
        let dir = root.join(run);
        std::fs::create_dir_all(&dir).map_err(|e| JournalError::Storage {
            path: dir.clone(),
            source: e.into(),
        })?;
        let journal = Journal::open(&dir, Duration::from_secs(5))?;
        journal.create_run(run, serde_json::to_value(info).unwrap_or(Value::Null))?;
        Ok(DrillJournal {
            journal,
            run: run.to_string(),
        })
    }

    pub fn open(root: &Path, run: &str) -> Result<Self, JournalError> {
        let dir = root.join(run);
        if run.is_empty() || run.contains(['/', '\\']) || run.starts_with('.') || !dir.is_dir() {
            return Err(JournalError::UnknownRun(run.to_string()));
        }
        Ok(DrillJournal {
            journal: Journal::open(&dir, Duration::from_secs(5))?,
            run: run.to_string(),
        })
    }

    /// Appends a record durably.
    pub fn append(&self, entry: &DrillEntry) -> Result<(), String> {
        let body = serde_json::to_value(entry).map_err(|e| e.to_string())?;
        self.journal
            .append(&self.run, body)
            .map(|_| ())
            .map_err(|e| format!("cannot record the drill: {e}"))
    }

    pub fn info(&self) -> Result<DrillInfo, String> {
        let header = self.journal.run(&self.run).map_err(|e| e.to_string())?;
        serde_json::from_value(header.info).map_err(|e| format!("drill header: {e}"))
    }

    /// Every record, in order; a record this version cannot read is an error, not skipped.
    pub fn entries(&self) -> Result<Vec<DrillEntry>, String> {
        let verification = self.journal.verify(&self.run).map_err(|e| e.to_string())?;
        if !verification.is_intact() {
            return Err(format!(
                "the journal of drill {} fails verification: {verification:?}",
                self.run
            ));
        }
        self.journal
            .records(&self.run)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|r| serde_json::from_value(r.body).map_err(|e| format!("drill record: {e}")))
            .collect()
    }
}

/// The results of earlier runs of the drill named `name`, oldest first (for the trend).
pub fn previous_results(root: &Path, name: &str, before: &str) -> Vec<DrillResult> {
    let mut runs: Vec<String> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|run| run.as_str() < before && !run.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs.into_iter()
        .filter_map(|run| DrillJournal::open(root, &run).ok())
        .filter_map(|journal| journal.entries().ok())
        .filter_map(|entries| {
            entries.into_iter().rev().find_map(|e| match e {
                DrillEntry::Result(result) => Some(*result),
                _ => None,
            })
        })
        .filter(|result| result.drill == name)
        .collect()
}
