//! Unit and property tests of the journal.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use super::*;

/// sled releases its file lock asynchronously after a handle is dropped, so reopening in the
/// same process waits for it, as `contain` itself does.
fn open(dir: &Path) -> Journal {
    Journal::open(dir, Duration::from_secs(5)).expect("journal opens")
}

#[test]
fn records_come_back_in_order_with_a_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.create_run("r1", json!({"playbook": "p"})).unwrap();
    for i in 0..5 {
        journal.append("r1", json!({"step": i})).unwrap();
    }
    let records = journal.records("r1").unwrap();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(records.windows(2).all(|w| w[1].prev == w[0].hash));
    assert!(journal.verify("r1").unwrap().is_intact());
    assert!(matches!(
        journal.create_run("r1", json!({})),
        Err(JournalError::RunExists(_))
    ));
    assert!(matches!(
        journal.append("nope", json!({})),
        Err(JournalError::UnknownRun(_))
    ));
}

#[test]
fn a_group_commit_chains_like_single_appends() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.create_run("r", json!({})).unwrap();
    journal.append("r", json!({"n": 0})).unwrap();
    let group = journal
        .append_all("r", (1..4).map(|n| json!({"n": n})).collect())
        .unwrap();
    assert_eq!(group.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3, 4]);
    journal.append("r", json!({"n": 4})).unwrap();
    let records = journal.records("r").unwrap();
    assert_eq!(
        records
            .iter()
            .map(|r| r.body["n"].clone())
            .collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert!(records.windows(2).all(|w| w[1].prev == w[0].hash));
    assert!(journal.verify("r").unwrap().is_intact());
    assert!(journal.append_all("r", Vec::new()).unwrap().is_empty());
}

#[test]
fn an_imported_run_keeps_its_chain_and_takes_only_what_follows() {
    let from = tempfile::tempdir().unwrap();
    let to = tempfile::tempdir().unwrap();
    let (a, b) = (open(from.path()), open(to.path()));
    let header = a.create_run("r", json!({"who": "a"})).unwrap();
    for i in 0..4 {
        a.append("r", json!({"step": i})).unwrap();
    }
    let records = a.records("r").unwrap();
    assert_eq!(b.import(&header, &records[..2]).unwrap(), 2);
    // The rest, given with what is already there: only the missing two are added.
    assert_eq!(b.import(&header, &records).unwrap(), 2);
    assert_eq!(b.records("r").unwrap(), records);
    assert!(b.verify("r").unwrap().is_intact());
    assert_eq!(b.head("r").unwrap(), a.head("r").unwrap());
    // Appends go on from the imported head.
    b.append("r", json!({"step": 4})).unwrap();
    assert!(b.verify("r").unwrap().is_intact());

    let mut altered = a.records("r").unwrap();
    altered[1].body = json!({"step": "changed"});
    let fresh = tempfile::tempdir().unwrap();
    let c = open(fresh.path());
    assert!(matches!(
        c.import(&header, &altered),
        Err(JournalError::Corrupt { seq: 2, .. })
    ));
    assert!(
        c.records("r").unwrap().is_empty(),
        "nothing of a broken copy is stored"
    );
}

#[test]
fn records_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let journal = open(dir.path());
        journal.create_run("r", json!({})).unwrap();
        journal.append("r", json!({"a": 1})).unwrap();
    }
    let journal = open(dir.path());
    assert_eq!(journal.records("r").unwrap()[0].body, json!({"a": 1}));
    assert_eq!(journal.runs().unwrap().len(), 1);
}

#[test]
fn an_altered_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.create_run("r", json!({})).unwrap();
    for i in 0..3 {
        journal.append("r", json!({"op": "patch", "i": i})).unwrap();
    }
    let tree = journal.raw_tree("r").unwrap();
    let key = 2u64.to_be_bytes();
    let mut bytes = tree.get(key).unwrap().unwrap().to_vec();
    // Flip one byte inside the body: `"patch"` becomes `"patcH"`.
    let at = bytes.windows(5).position(|w| w == b"patch").unwrap() + 4;
    bytes[at] ^= 0x20;
    tree.insert(key, bytes).unwrap();
    let verification = journal.verify("r").unwrap();
    assert!(!verification.is_intact());
    assert!(
        verification
            .problems
            .iter()
            .any(|p| p.contains("record 2 was altered")),
        "{:?}",
        verification.problems
    );
}

#[test]
fn a_truncated_tail_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let journal = open(dir.path());
    journal.create_run("r", json!({})).unwrap();
    for i in 0..3 {
        journal.append("r", json!({"i": i})).unwrap();
    }
    journal
        .raw_tree("r")
        .unwrap()
        .remove(3u64.to_be_bytes())
        .unwrap();
    let verification = journal.verify("r").unwrap();
    assert!(
        verification
            .problems
            .iter()
            .any(|p| p.contains("truncated")),
        "{:?}",
        verification.problems
    );
}

#[test]
fn a_second_process_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    // sled's lock is per process: a child process is the honest test of "another process".
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::child_opens_a_busy_journal",
            "--nocapture",
            "--include-ignored",
        ])
        .env("JOURNAL_UNDER_TEST", dir.path())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("BUSY OK"),
        "{out}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// Runs only as the child of `a_second_process_gets_a_clear_error`.
#[test]
fn child_opens_a_busy_journal() {
    let Some(dir) = std::env::var_os("JOURNAL_UNDER_TEST") else {
        return;
    };
    match Journal::open(Path::new(&dir), Duration::from_millis(300)) {
        Err(e @ JournalError::Busy { .. }) => println!("BUSY OK: {e}"),
        Err(e) => println!("unexpected error: {e}"),
        Ok(_) => println!("opened a journal another process holds"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random appends with the handle dropped at random points: after reopening, every
    /// acknowledged record is there and the chain is valid.
    #[test]
    fn acknowledged_records_survive_dropped_handles(batches in prop::collection::vec(1usize..6, 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        let mut acknowledged = Vec::new();
        for (round, count) in batches.iter().enumerate() {
            let journal = open(dir.path());
            if round == 0 {
                journal.create_run("r", json!({})).unwrap();
            }
            for i in 0..*count {
                let record = journal.append("r", json!({"round": round, "i": i})).unwrap();
                acknowledged.push(record);
            }
            // The handle is dropped here without any explicit close.
        }
        let journal = open(dir.path());
        let records = journal.records("r").unwrap();
        prop_assert_eq!(&records, &acknowledged);
        prop_assert!(journal.verify("r").unwrap().is_intact());
    }
}
