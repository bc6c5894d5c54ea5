//! Verification: each action's pure check, its reads made here through the cluster, and the
//! checks that may take time to hold (a controller starting a replacement, a policy reaching
//! admission) read again as the objects they watch change, until they hold or their time is up.

use crate::action::{Action, ActionError, Answer, Read, StepInput};
use crate::cluster::Cluster;
use crate::cluster::observe::decide_with;
use crate::outcome::Verification;
use crate::plan::StepPlan;

/// The verification of `plan`, its waited-for checks given the time they ask for.
pub async fn verify_step(
    action: &dyn Action,
    input: &StepInput,
    plan: &StepPlan,
    cluster: &dyn Cluster,
) -> Result<Verification, ActionError> {
    let once = || {
        decide_with(cluster, &local_answer, |seen| {
            action.verify(input, plan, seen)
        })
    };
    let verification = once().await?;
    if verification.waiting.is_empty() {
        return Ok(verification);
    }
    let within = verification
        .waiting
        .iter()
        .map(|w| w.within)
        .max()
        .unwrap_or_default();
    // Woken by a change to any watched object; a check no watch sees makes it a poll.
    let watches: Option<Vec<_>> = verification
        .waiting
        .iter()
        .map(|w| w.watch.as_ref().and_then(|watch| cluster.changes(watch)))
        .collect();
    let changes: Option<crate::cluster::Changes> =
        watches.map(|streams| Box::pin(futures::stream::select_all(streams)) as _);
    let latest = std::sync::Mutex::new(verification);
    // The wait checks at once; that first answer is the one just read: no second round.
    let first = std::sync::atomic::AtomicBool::new(true);
    crate::cluster::wait::wait_until(within, changes, || async {
        if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        let again = once().await?;
        let holds = again.waiting.is_empty();
        *latest.lock().expect("verification lock") = again;
        Ok::<bool, ActionError>(holds)
    })
    .await?;
    let mut verification = latest.into_inner().expect("verification lock");
    verification.give_up_waiting();
    Ok(verification)
}

/// The reads the executor answers itself: an evidence bundle, re-hashed against its manifest.
fn local_answer(read: &Read) -> Option<Answer> {
    let Read::Bundle(path) = read else {
        return None;
    };
    Some(Answer::Bundle(
        crate::evidence::verify(std::path::Path::new(path), None)
            .map(|check| serde_json::to_value(check).unwrap_or_default())
            .map_err(|e| e.to_string()),
    ))
}
