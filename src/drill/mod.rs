//! Scheduled chaos drills: preflight → warmup → arm → detonate → detect → contain → verify →
//! revert → cleanup → report, every phase journaled so `contain drill resume|cleanup RUN`
//! finishes a drill that crashed. The containment is the real playbook, run through the same
//! engine and journal as `contain run`, and reverted with the same rollback.

pub mod alerts;
pub mod detonate;
pub mod load;
pub mod progress;
pub mod receiver;
pub mod record;
pub mod report;
pub mod runner;
pub mod score;
pub mod spec;
pub mod stage;
pub mod types;
pub mod verify;
pub mod warmup;

pub use runner::command;
