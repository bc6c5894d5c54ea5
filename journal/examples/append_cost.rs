//! Measures what durability costs per record: `Journal::append` (write, flush, fsync) against
//! the same records written to sled without the flush, side by side in the same directory
//! kind. Run: `cargo run --release -p contain-journal --example append_cost [-- RECORDS]`.

use std::time::{Duration, Instant};

use journal::Journal;
use serde_json::json;

fn main() {
    let records: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500);
    let body = |i: usize| json!({"record": "applied", "step": "isolate", "index": i, "op": "patch Pod shop/web-1 (2 fields)", "outcome": "applied"});

    let durable_dir = tempfile::tempdir().expect("temp dir");
    let journal = Journal::open(durable_dir.path(), Duration::ZERO).expect("journal opens");
    journal.create_run("bench", json!({})).expect("run created");
    let started = Instant::now();
    for i in 0..records {
        journal.append("bench", body(i)).expect("append");
    }
    let durable = started.elapsed();

    // Group commit: the same records in batches of 256, one fsync each (what a run does with
    // the `applied` records of one step's operations).
    let grouped_dir = tempfile::tempdir().expect("temp dir");
    let grouped_journal = Journal::open(grouped_dir.path(), Duration::ZERO).expect("journal opens");
    grouped_journal
        .create_run("bench", json!({}))
        .expect("run created");
    let started = Instant::now();
    let all: Vec<_> = (0..records).map(body).collect();
    for batch in all.chunks(256) {
        grouped_journal
            .append_all("bench", batch.to_vec())
            .expect("append");
    }
    let grouped = started.elapsed();
    let bytes = serde_json::to_vec(&grouped_journal.records("bench").expect("records")[0])
        .expect("serializes")
        .len();

    let baseline_dir = tempfile::tempdir().expect("temp dir");
    let db = sled::open(baseline_dir.path()).expect("sled opens");
    let tree = db.open_tree("bench").expect("tree");
    let started = Instant::now();
    for i in 0..records {
        tree.insert(
            (i as u64).to_be_bytes(),
            serde_json::to_vec(&body(i)).unwrap(),
        )
        .expect("insert");
    }
    let buffered = started.elapsed();
    db.flush().expect("final flush");

    let per = |d: Duration| d.as_secs_f64() * 1e6 / records as f64;
    println!("records: {records}");
    println!(
        "durable append (flush + fsync each): {:>10.1} µs/record",
        per(durable)
    );
    println!(
        "group commit (256 per fsync):         {:>10.1} µs/record",
        per(grouped)
    );
    println!(
        "buffered insert (no flush):           {:>10.1} µs/record",
        per(buffered)
    );
    println!("bytes per `applied` record:           {bytes:>10}");
    println!(
        "durable appends per second: {:.0} one by one, {:.0} grouped ({:.0}x)",
        records as f64 / durable.as_secs_f64(),
        records as f64 / grouped.as_secs_f64(),
        durable.as_secs_f64() / grouped.as_secs_f64().max(1e-9)
    );
    println!(
        "durability costs {:.0}x the buffered write",
        durable.as_secs_f64() / buffered.as_secs_f64().max(1e-9)
    );
}
