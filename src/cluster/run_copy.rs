//! A run's journal as its ContainmentRun keeps it, as plain data: records as JSON lines (each record
//! exactly as the local journal stored it, so hashes check byte for byte), a tail in the
//! ContainmentRun's status until it fills, then sealed ContainmentRunJournal chunks. A record
//! can span chunks; a reader joins the chunks in order, then the tail. And how a local journal
//! stands against that copy: in step, ahead (the mirror fell behind), or behind (someone else
//! went on with the run).

use journal::Record;

/// The tail is sealed into chunks once it holds this much: each commit then writes one small
/// status (the approved plan, usually the largest record, is sealed at once), which is what a
/// write-ahead commit waits for.
pub const SEAL_BYTES: usize = 32 * 1024;

/// The largest text of one chunk, well below the API server's object size limit (about 1.5 MiB
/// in etcd) even escaped as JSON.
pub const CHUNK_BYTES: usize = 512 * 1024;

/// Where the cluster copy of a run stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyState {
    /// Sealed chunks, numbered from 0.
    pub chunks: usize,
    /// Records not sealed yet, as JSON lines.
    pub tail: String,
    /// The last record copied: its seq and hash.
    pub head: Option<(u64, String)>,
}

impl CopyState {
    pub fn seq(&self) -> u64 {
        self.head.as_ref().map_or(0, |(seq, _)| *seq)
    }
}

/// A record as one line of the copy.
pub fn line(record: &Record) -> String {
    let mut line = serde_json::to_string(record).expect("records serialize");
    line.push('\n');
    line
}

/// Appends records to the copy: the new state, and the texts of the chunks to seal first (in
/// order, numbered from `state.chunks`).
pub fn append(state: &CopyState, records: &[Record]) -> (CopyState, Vec<String>) {
    let mut tail = state.tail.clone();
    for record in records {
        tail.push_str(&line(record));
    }
    let head = records
        .last()
        .map(|r| (r.seq, r.hash.clone()))
        .or_else(|| state.head.clone());
    if tail.len() < SEAL_BYTES {
        let next = CopyState {
            chunks: state.chunks,
            tail,
            head,
        };
        return (next, Vec::new());
    }
    let sealed = split(&tail, CHUNK_BYTES);
    let next = CopyState {
        chunks: state.chunks + sealed.len(),
        tail: String::new(),
        head,
    };
    (next, sealed)
}

/// Splits text into pieces of at most `max` bytes, on character boundaries.
fn split(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        pieces.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    pieces
}

/// The records of a copy, from its chunks' texts in order and its tail.
pub fn parse<'a>(
    chunks: impl IntoIterator<Item = &'a str>,
    tail: &str,
) -> Result<Vec<Record>, String> {
    let mut text = String::new();
    for chunk in chunks {
        text.push_str(chunk);
    }
    text.push_str(tail);
    text.lines()
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| format!("record line {} is unreadable: {e}", i + 1))
        })
        .collect()
}

/// How a local journal stands against the cluster's copy of the same run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Both end at the same record.
    InStep,
    /// The local journal has records the copy lacks, from this position of `local` on.
    Ahead { from: usize },
    /// The copy has records the local journal lacks: someone else went on with the run.
    Behind { local: u64, cluster: u64 },
    /// Both have a record at `seq` and they differ: two writers went on from one point.
    Diverged { seq: u64 },
}

/// Compares a local journal's records with the copy's head.
pub fn standing(local: &[Record], cluster: Option<&(u64, String)>) -> Standing {
    let local_seq = local.last().map_or(0, |r| r.seq);
    let Some((seq, hash)) = cluster else {
        return if local.is_empty() {
            Standing::InStep
        } else {
            Standing::Ahead { from: 0 }
        };
    };
    if *seq > local_seq {
        return Standing::Behind {
            local: local_seq,
            cluster: *seq,
        };
    }
    match local.iter().position(|r| r.seq == *seq) {
        Some(i) if local[i].hash == *hash => {
            if i + 1 == local.len() {
                Standing::InStep
            } else {
                Standing::Ahead { from: i + 1 }
            }
        }
        _ => Standing::Diverged { seq: *seq },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: u64, body_bytes: usize) -> Vec<Record> {
        let dir = tempfile::tempdir().unwrap();
        let journal =
            journal::Journal::open(dir.path(), std::time::Duration::from_secs(5)).unwrap();
        journal.create_run("r", json!({})).unwrap();
        for i in 0..n {
            journal
                .append("r", json!({"i": i, "pad": "é".repeat(body_bytes / 2)}))
                .unwrap();
        }
        journal.records("r").unwrap()
    }

    #[test]
    fn small_appends_stay_in_the_tail_and_read_back_exactly() {
        let records = chain(5, 10);
        let (first, sealed) = append(&CopyState::default(), &records[..3]);
        assert!(sealed.is_empty());
        let (second, sealed) = append(&first, &records[3..]);
        assert!(sealed.is_empty());
        assert_eq!(second.chunks, 0);
        assert_eq!(second.seq(), 5);
        assert_eq!(parse([], &second.tail).unwrap(), records);
    }

    #[test]
    fn a_full_tail_is_sealed_in_bounded_chunks_and_a_record_may_span_them() {
        // One record larger than a chunk, then small ones.
        let mut records = chain(1, CHUNK_BYTES * 2);
        let state = CopyState::default();
        let (state, sealed) = append(&state, &records);
        assert!(sealed.len() >= 3, "{} chunks", sealed.len());
        assert!(sealed.iter().all(|c| c.len() <= CHUNK_BYTES));
        assert_eq!(state.chunks, sealed.len());
        assert!(state.tail.is_empty());
        records.extend(chain(2, 10).into_iter().skip(1));
        let (state, more) = append(&state, &records[1..]);
        assert!(more.is_empty());
        let texts: Vec<&str> = sealed.iter().map(String::as_str).collect();
        let back = parse(texts, &state.tail).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], records[0]);
        assert!(back.iter().all(Record::is_intact));
    }

    #[test]
    fn standing_says_in_step_ahead_behind_or_diverged() {
        let records = chain(4, 1);
        let head = |i: usize| (records[i].seq, records[i].hash.clone());
        assert_eq!(standing(&records, Some(&head(3))), Standing::InStep);
        assert_eq!(
            standing(&records, Some(&head(1))),
            Standing::Ahead { from: 2 }
        );
        assert_eq!(standing(&records, None), Standing::Ahead { from: 0 });
        assert_eq!(
            standing(&records[..2], Some(&head(3))),
            Standing::Behind {
                local: 2,
                cluster: 4
            }
        );
        assert_eq!(
            standing(&records, Some(&(2, "other".into()))),
            Standing::Diverged { seq: 2 }
        );
        assert_eq!(standing(&[], None), Standing::InStep);
    }
}
