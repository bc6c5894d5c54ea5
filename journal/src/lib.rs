//! A durable, hash-chained journal of runs, on sled.
//!
//! A journal holds runs; a run holds records in append order. Each record carries the hash of
//! the one before it, so any change to a stored record, or a record missing at the tail, is
//! detected by [`Journal::verify`]. An append is durable when it returns: the record is written
//! and sled's log is flushed and fsynced before the call comes back.
//!
//! The journal knows nothing of Kubernetes: record bodies are JSON values owned by the caller.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The version of the record format; stored in every run header and in every record's hash.
pub const FORMAT_VERSION: u32 = 1;

const RUNS: &str = "runs";
const HEAD: &[u8] = b"head";

/// Why the journal could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another process holds the journal.
    #[error("the journal at {path} is in use by another process")]
    Busy { path: PathBuf },
    #[error("journal storage error at {path}: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("no run `{0}` in the journal")]
    UnknownRun(String),
    #[error("run `{0}` already exists in the journal")]
    RunExists(String),
    #[error("run `{run}`: record {seq} is unreadable: {message}")]
    Corrupt {
        run: String,
        seq: u64,
        message: String,
    },
    #[error(
        "run `{run}` was written by journal format {found}, this program reads format {FORMAT_VERSION}"
    )]
    Version { run: String, found: u32 },
}

pub type Result<T> = std::result::Result<T, JournalError>;

/// One record of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the run, from 1.
    pub seq: u64,
    /// RFC 3339 time of the append.
    pub at: String,
    /// Hash of the previous record (all zeros for the first).
    pub prev: String,
    /// Hash of this record: sha256 over the format version, seq, at, prev and body.
    pub hash: String,
    pub body: Value,
}

impl Record {
    fn compute_hash(seq: u64, at: &str, prev: &str, body: &Value) -> String {
        let mut hasher = Sha256::new();
        hasher.update(FORMAT_VERSION.to_be_bytes());
        hasher.update(seq.to_be_bytes());
        hasher.update(at.as_bytes());
        hasher.update([0]);
        hasher.update(prev.as_bytes());
        hasher.update([0]);
        hasher.update(serde_json::to_vec(body).unwrap_or_default());
        hex::encode(hasher.finalize())
    }

    /// True when the stored hash matches the record's content.
    pub fn is_intact(&self) -> bool {
        Record::compute_hash(self.seq, &self.at, &self.prev, &self.body) == self.hash
    }
}

/// What a run header says about the run's records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    pub run: String,
    pub format: u32,
    pub created_at: String,
    /// Caller's data about the run (playbook, cluster, user, mode…).
    pub info: Value,
}

/// The last record of a run, kept beside the records so a missing tail is detected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// The outcome of checking a run's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub run: String,
    pub records: u64,
    /// Every problem found, in record order; empty when the chain is intact.
    pub problems: Vec<String>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A journal directory.
pub struct Journal {
    db: sled::Db,
    path: PathBuf,
}

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl Journal {
    /// Opens (or creates) the journal in `dir`. When another process holds it, waits up to
    /// `wait` for it to be released, then fails with [`JournalError::Busy`].
    pub fn open(dir: &Path, wait: Duration) -> Result<Self> {
        let started = Instant::now();
        loop {
            match sled::Config::new()
                .path(dir)
                .mode(sled::Mode::HighThroughput)
                .open()
            {
                Ok(db) => {
                    return Ok(Journal {
                        db,
                        path: dir.to_path_buf(),
                    });
                }
                Err(sled::Error::Io(e)) if is_lock_error(&e) => {
                    if started.elapsed() >= wait {
                        return Err(JournalError::Busy {
                            path: dir.to_path_buf(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(source) => {
                    return Err(JournalError::Storage {
                        path: dir.to_path_buf(),
                        source,
                    });
                }
            }
        }
    }

    fn storage(&self, source: sled::Error) -> JournalError {
        JournalError::Storage {
            path: self.path.clone(),
            source,
        }
    }

    fn run_tree(&self, run: &str) -> Result<sled::Tree> {
        self.db
            .open_tree(format!("run:{run}"))
            .map_err(|e| self.storage(e))
    }

    /// Flushes sled's log and fsyncs it: after this, everything written so far survives a crash.
    fn sync(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| self.storage(e))
    }

    /// Starts a run. Run ids should sort by time.
    pub fn create_run(&self, run: &str, info: Value) -> Result<RunHeader> {
        let runs = self.db.open_tree(RUNS).map_err(|e| self.storage(e))?;
        let header = RunHeader {
            run: run.to_string(),
            format: FORMAT_VERSION,
            created_at: now(),
            info,
        };
        let bytes = serde_json::to_vec(&header).expect("headers serialize");
        let created = runs
            .compare_and_swap(run.as_bytes(), None as Option<&[u8]>, Some(bytes))
            .map_err(|e| self.storage(e))?;
        if created.is_err() {
            return Err(JournalError::RunExists(run.to_string()));
        }
        self.sync()?;
        Ok(header)
    }

    /// The header of a run.
    pub fn run(&self, run: &str) -> Result<RunHeader> {
        let runs = self.db.open_tree(RUNS).map_err(|e| self.storage(e))?;
        let bytes = runs
            .get(run.as_bytes())
            .map_err(|e| self.storage(e))?
            .ok_or_else(|| JournalError::UnknownRun(run.to_string()))?;
        let header: RunHeader =
            serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                run: run.to_string(),
                seq: 0,
                message: e.to_string(),
            })?;
        if header.format != FORMAT_VERSION {
            return Err(JournalError::Version {
                run: run.to_string(),
                found: header.format,
            });
        }
        Ok(header)
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunHeader>> {
        let runs = self.db.open_tree(RUNS).map_err(|e| self.storage(e))?;
        runs.iter()
            .map(|entry| {
                let (key, bytes) = entry.map_err(|e| self.storage(e))?;
                serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                    run: String::from_utf8_lossy(&key).into_owned(),
                    seq: 0,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Appends a record and returns once it is durable.
    pub fn append(&self, run: &str, body: Value) -> Result<Record> {
        let mut records = self.append_all(run, vec![body])?;
        Ok(records.remove(0))
    }

    /// Appends records in order, chained as one append each would chain them, in one batch and
    /// one fsync (group commit): all of them are durable when the call returns, or none is.
    pub fn append_all(&self, run: &str, bodies: Vec<Value>) -> Result<Vec<Record>> {
        self.run(run)?;
        let tree = self.run_tree(run)?;
        let head = read_head(&tree, run)?;
        let (mut seq, mut prev) = match head {
            Some(head) => (head.seq, head.hash),
            None => (0, ZERO_HASH.to_string()),
        };
        let mut batch = sled::Batch::default();
        let mut records = Vec::with_capacity(bodies.len());
        for body in bodies {
            seq += 1;
            let at = now();
            let hash = Record::compute_hash(seq, &at, &prev, &body);
            let record = Record {
                seq,
                at,
                prev,
                hash: hash.clone(),
                body,
            };
            batch.insert(
                &seq.to_be_bytes(),
                serde_json::to_vec(&record).expect("records serialize"),
            );
            prev = hash;
            records.push(record);
        }
        let Some(last) = records.last() else {
            return Ok(records);
        };
        batch.insert(
            HEAD,
            serde_json::to_vec(&Head {
                seq,
                hash: last.hash.clone(),
            })
            .expect("heads serialize"),
        );
        tree.apply_batch(batch).map_err(|e| self.storage(e))?;
        self.sync()?;
        Ok(records)
    }

    /// The last record of a run (`None` before its first): its seq and hash.
    pub fn head(&self, run: &str) -> Result<Option<(u64, String)>> {
        self.run(run)?;
        let tree = self.run_tree(run)?;
        Ok(read_head(&tree, run)?.map(|h| (h.seq, h.hash)))
    }

    /// Stores a run copied from elsewhere (its header and records as they were written there),
    /// or the records of it this journal lacks: each must be intact and follow the one before
    /// it, or nothing is stored. A run already here keeps its own header.
    pub fn import(&self, header: &RunHeader, records: &[Record]) -> Result<usize> {
        if header.format != FORMAT_VERSION {
            return Err(JournalError::Version {
                run: header.run.clone(),
                found: header.format,
            });
        }
        let run = header.run.as_str();
        let runs = self.db.open_tree(RUNS).map_err(|e| self.storage(e))?;
        if runs
            .get(run.as_bytes())
            .map_err(|e| self.storage(e))?
            .is_none()
        {
            let bytes = serde_json::to_vec(header).expect("headers serialize");
            runs.insert(run.as_bytes(), bytes)
                .map_err(|e| self.storage(e))?;
        }
        let tree = self.run_tree(run)?;
        let (mut seq, mut prev) = match read_head(&tree, run)? {
            Some(head) => (head.seq, head.hash),
            None => (0, ZERO_HASH.to_string()),
        };
        let mut batch = sled::Batch::default();
        let mut added = 0;
        let known = seq;
        for record in records.iter().filter(|r| r.seq > known) {
            let problem = if record.seq != seq + 1 {
                Some(format!("expected record {} here", seq + 1))
            } else if record.prev != prev {
                Some("it does not follow the record before it".to_string())
            } else if !record.is_intact() {
                Some("its content does not match its hash".to_string())
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(JournalError::Corrupt {
                    run: run.to_string(),
                    seq: record.seq,
                    message,
                });
            }
            batch.insert(
                &record.seq.to_be_bytes(),
                serde_json::to_vec(record).expect("records serialize"),
            );
            seq = record.seq;
            prev = record.hash.clone();
            added += 1;
        }
        if added > 0 {
            batch.insert(
                HEAD,
                serde_json::to_vec(&Head { seq, hash: prev }).expect("heads serialize"),
            );
            tree.apply_batch(batch).map_err(|e| self.storage(e))?;
        }
        self.sync()?;
        Ok(added)
    }

    /// Every record of a run, in order. Unreadable records are errors; use [`Journal::verify`]
    /// to list every problem instead.
    pub fn records(&self, run: &str) -> Result<Vec<Record>> {
        self.run(run)?;
        let tree = self.run_tree(run)?;
        let mut records = Vec::new();
        for entry in tree.range(0u64.to_be_bytes()..) {
            let (key, bytes) = entry.map_err(|e| self.storage(e))?;
            if key.as_ref() == HEAD {
                continue;
            }
            let seq = seq_of(&key);
            let record: Record =
                serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                    run: run.to_string(),
                    seq,
                    message: e.to_string(),
                })?;
            records.push(record);
        }
        Ok(records)
    }

    /// Checks a run's chain: every record intact, each pointing at the one before, numbered
    /// without gaps, and ending where the head says it ends.
    pub fn verify(&self, run: &str) -> Result<Verification> {
        self.run(run)?;
        let tree = self.run_tree(run)?;
        let mut raw = Vec::new();
        for entry in tree.range(0u64.to_be_bytes()..) {
            let (key, bytes) = entry.map_err(|e| self.storage(e))?;
            if key.as_ref() != HEAD {
                raw.push((seq_of(&key), bytes.to_vec()));
            }
        }
        let head = read_head(&tree, run).unwrap_or(None);
        Ok(verify_chain(run, raw, head.map(|h| (h.seq, h.hash))))
    }

    /// The raw store, for tests that tamper with it.
    #[doc(hidden)]
    pub fn raw_tree(&self, run: &str) -> Result<sled::Tree> {
        self.run_tree(run)
    }
}

/// Checks a chain given as raw stored records (seq, bytes) and the expected last record.
pub fn verify_chain(
    run: &str,
    raw: Vec<(u64, Vec<u8>)>,
    head: Option<(u64, String)>,
) -> Verification {
    let mut problems = Vec::new();
    let mut prev = ZERO_HASH.to_string();
    let mut expected_seq = 1;
    let mut count = 0;
    for (seq, bytes) in raw {
        count += 1;
        let record: Record = match serde_json::from_slice(&bytes) {
            Ok(record) => record,
            Err(e) => {
                problems.push(format!("record {seq} is unreadable: {e}"));
                expected_seq = seq + 1;
                prev = String::new();
                continue;
            }
        };
        if record.seq != seq || seq != expected_seq {
            problems.push(format!(
                "record {seq}: expected record {expected_seq} here (a record is missing or moved)"
            ));
        }
        if !prev.is_empty() && record.prev != prev {
            problems.push(format!(
                "record {seq} does not follow the record before it (chain broken)"
            ));
        }
        if !record.is_intact() {
            problems.push(format!(
                "record {seq} was altered: its content does not match its hash"
            ));
        }
        prev = record.hash.clone();
        expected_seq = seq + 1;
    }
    match head {
        Some((seq, _)) if seq != expected_seq - 1 => problems.push(format!(
            "the run ends at record {} but its head says {seq}: the tail is truncated",
            expected_seq - 1
        )),
        Some((_, hash)) if !prev.is_empty() && hash != prev => {
            problems.push("the last record is not the one the head recorded".to_string())
        }
        None if count > 0 => problems.push("the run has records but no head".to_string()),
        _ => {}
    }
    Verification {
        run: run.to_string(),
        records: count,
        problems,
    }
}

fn read_head(tree: &sled::Tree, run: &str) -> Result<Option<Head>> {
    match tree.get(HEAD) {
        Ok(Some(bytes)) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| JournalError::Corrupt {
                    run: run.to_string(),
                    seq: 0,
                    message: format!("head: {e}"),
                })
        }
        Ok(None) => Ok(None),
        Err(source) => Err(JournalError::Storage {
            path: PathBuf::new(),
            source,
        }),
    }
}

fn seq_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn is_lock_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.raw_os_error() == Some(11)
        || e.to_string().contains("lock")
}

fn now() -> String {
    // RFC 3339 in UTC, from the system clock; no dependency needed for this one format.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests;
