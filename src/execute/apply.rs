//! Applying one planned operation, safely and idempotently.
//!
//! A patch re-reads its object and compares each field with what the plan observed: a field
//! already at its new value is skipped (so a resumed step does nothing twice), a field at its
//! old value is written with the fresh resourceVersion as a precondition, and a field someone
//! else changed in between stops the step instead of overwriting their change.

use std::time::Duration;

use serde_json::{Value, json};

use crate::action::common::RUN_ID_LABEL;
use crate::cluster::object::{self, ObjectRef};
use crate::cluster::wait::wait_until;
use crate::cluster::{Cluster, ClusterError, Preconditions, Watch, WriteMode, merge};
use crate::event::OpOutcome;
use crate::outcome::Canary;
use crate::plan::{FieldChange, Op};

/// Asks a human to approve an `approve` step.
pub trait Approver: Send {
    fn approve(&mut self, step: &str, message: &str) -> bool;
}

/// Approves everything: `--yes`, and tabletop runs (where `approve` is a discussion prompt).
pub struct AutoApprove;

impl Approver for AutoApprove {
    fn approve(&mut self, _step: &str, _message: &str) -> bool {
        true
    }
}

/// Why an operation could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(
        "{object} was replaced since the plan (uid {planned} is now {found}); not touching the new object"
    )]
    Replaced {
        object: String,
        planned: String,
        found: String,
    },
    #[error(
        "{object}: {field} was changed by someone else since the plan (planned {planned}, found {found}); not overwriting it"
    )]
    ChangedMeanwhile {
        object: String,
        field: String,
        planned: String,
        found: String,
    },
    #[error("{object} already exists and was not created by this run")]
    NotOurs { object: String },
    #[error("{object}: timed out waiting for {field} = {expected} (last seen {found})")]
    WaitTimeout {
        object: String,
        field: String,
        expected: String,
        found: String,
    },
    #[error("not approved: {0}")]
    Declined(String),
    #[error("evidence: {0}")]
    Evidence(String),
    #[error("image refused: {0}")]
    Signature(String),
    #[error("{object}: the rollout did not complete within {seconds} s ({detail})")]
    Rollout {
        object: String,
        seconds: u64,
        detail: String,
    },
    #[error("{object}: eviction still refused after {waited_millis} ms: {message}")]
    DisruptionBudget {
        object: String,
        message: String,
        waited_millis: u64,
    },
}

/// How operations are carried out in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carry {
    /// Only plan: nothing is sent.
    Nothing,
    /// Send writes with `dryRun=All`; do not sleep or wait.
    ServerDryRun,
    /// Write to a simulated cluster; do not sleep, check waits once.
    Simulated,
    /// Write for real.
    Live,
}

const CONFLICT_RETRIES: usize = 5;

/// What applying operations produced besides cluster changes.
#[derive(Debug, Default)]
pub struct Effects {
    pub canaries: Vec<Canary>,
}

/// Applies one operation.
pub async fn apply(
    op: &Op,
    step: &str,
    run_id: &str,
    carry: Carry,
    cluster: &dyn Cluster,
    approver: &mut dyn Approver,
) -> Result<OpOutcome, ApplyError> {
    apply_with(
        op,
        step,
        run_id,
        carry,
        cluster,
        approver,
        &mut Effects::default(),
    )
    .await
}

/// Applies one operation, collecting its side effects (canary tokens) into `effects`.
pub async fn apply_with(
    op: &Op,
    step: &str,
    run_id: &str,
    carry: Carry,
    cluster: &dyn Cluster,
    approver: &mut dyn Approver,
    effects: &mut Effects,
) -> Result<OpOutcome, ApplyError> {
    let mode = match carry {
        Carry::Nothing => return Ok(OpOutcome::Skipped),
        Carry::ServerDryRun => WriteMode::DryRun,
        Carry::Simulated | Carry::Live => WriteMode::Apply,
    };
    let written = if mode == WriteMode::DryRun {
        OpOutcome::DryRun
    } else {
        OpOutcome::Applied
    };
    match op {
        Op::Create { object } => create(object, run_id, mode, cluster).await.map(|fresh| {
            if fresh {
                written
            } else {
                OpOutcome::AlreadyDone
            }
        }),
        Op::Patch {
            target,
            uid,
            changes,
        } => patch(target, uid, changes, mode, cluster)
            .await
            .map(|wrote| {
                if wrote {
                    written
                } else {
                    OpOutcome::AlreadyDone
                }
            }),
        Op::Delete {
            target,
            uid,
            run_id: owner,
            grace_period_seconds,
        } => delete(
            target,
            uid.as_deref(),
            owner.as_deref(),
            *grace_period_seconds,
            mode,
            cluster,
        )
        .await
        .map(|wrote| {
            if wrote {
                written
            } else {
                OpOutcome::AlreadyDone
            }
        }),
        Op::Evict {
            target,
            uid,
            timeout_millis,
        } => {
            // Only a live run waits out a disruption budget; elsewhere one answer is the answer.
            let wait = if carry == Carry::Live {
                *timeout_millis
            } else {
                0
            };
            evict(target, uid, wait, mode, cluster).await.map(|wrote| {
                if wrote {
                    written
                } else {
                    OpOutcome::AlreadyDone
                }
            })
        }
        Op::MintCanary {
            account,
            uid,
            bound_pod,
        } => {
            if carry != Carry::Live {
                return Ok(OpOutcome::Skipped);
            }
            let current = cluster.get(account).await?;
            if current.as_ref().and_then(object::uid) != Some(uid.as_str()) {
                // Already rotated or deleted (a resumed step): there is nothing left to mint for.
                return Ok(OpOutcome::AlreadyDone);
            }
            let token = match cluster
                .request_token(account, 600, bound_pod.as_ref())
                .await
            {
                Ok(token) => token,
                // The pod went away since the plan: no pod-bound canary, nothing else is wrong.
                Err(ClusterError::NotFound { .. }) if bound_pod.is_some() => {
                    return Ok(OpOutcome::AlreadyDone);
                }
                Err(e) => return Err(e.into()),
            };
            effects.canaries.push(Canary {
                account: account.clone(),
                bound_pod: bound_pod.as_ref().map(|p| p.name.clone()),
                token,
            });
            Ok(OpOutcome::Applied)
        }
        Op::VerifyImage {
            image,
            keys,
            registry_config,
        } => {
            if !matches!(carry, Carry::Live | Carry::ServerDryRun) {
                return Ok(OpOutcome::Skipped);
            }
            verify_image(image, keys, registry_config.as_deref()).await?;
            Ok(OpOutcome::Applied)
        }
        Op::WaitRollout {
            target,
            timeout_millis,
        } => {
            if carry != Carry::Live {
                return Ok(OpOutcome::Skipped);
            }
            wait_rollout(target, *timeout_millis, cluster).await?;
            Ok(OpOutcome::Applied)
        }
        // The executor carries these out itself: they need the run's evidence directory.
        Op::Capture { .. } | Op::Seal { .. } => Ok(OpOutcome::Skipped),
        Op::Sleep { millis } => {
            if carry != Carry::Live {
                return Ok(OpOutcome::Skipped);
            }
            tokio::time::sleep(Duration::from_millis(*millis)).await;
            Ok(OpOutcome::Applied)
        }
        Op::WaitFor {
            target,
            path,
            equals,
            timeout_millis,
        } => {
            let once = carry != Carry::Live;
            wait_for(target, path, equals, *timeout_millis, once, cluster)
                .await
                .map(|()| OpOutcome::Applied)
        }
        Op::Approve { message } => {
            if approver.approve(step, message) {
                Ok(OpOutcome::Approved)
            } else {
                Err(ApplyError::Declined(message.clone()))
            }
        }
    }
}

/// Returns true when the object was created now, false when an object of this run was adopted.
async fn create(
    object: &Value,
    run_id: &str,
    mode: WriteMode,
    cluster: &dyn Cluster,
) -> Result<bool, ApplyError> {
    match cluster.create(object, mode).await {
        Ok(_) => Ok(true),
        Err(ClusterError::AlreadyExists { object: name }) => {
            let r = ObjectRef::of(object).ok_or(ApplyError::NotOurs {
                object: name.clone(),
            })?;
            let existing = cluster.get(&r).await?;
            let ours = existing.as_ref().is_some_and(|e| {
                object::labels(e).get(RUN_ID_LABEL).map(String::as_str) == Some(run_id)
            });
            if ours {
                Ok(false)
            } else {
                Err(ApplyError::NotOurs { object: name })
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Returns true when something was written.
async fn patch(
    target: &ObjectRef,
    uid: &str,
    changes: &[FieldChange],
    mode: WriteMode,
    cluster: &dyn Cluster,
) -> Result<bool, ApplyError> {
    for attempt in 0.. {
        let current = cluster
            .get(target)
            .await?
            .ok_or_else(|| ClusterError::NotFound {
                object: target.to_string(),
            })?;
        let found_uid = object::uid(&current).unwrap_or_default();
        if !uid.is_empty() && found_uid != uid {
            return Err(ApplyError::Replaced {
                object: target.to_string(),
                planned: uid.to_string(),
                found: found_uid.to_string(),
            });
        }
        let mut document = json!({});
        // Lists touched through keyed segments, rebuilt from the object as read just now.
        let mut lists: Vec<(Vec<String>, Value)> = Vec::new();
        let mut pending = 0;
        for change in changes {
            let now = merge::get(&current, &change.path).cloned();
            if now == change.after {
                continue;
            }
            if now != change.before {
                return Err(ApplyError::ChangedMeanwhile {
                    object: target.to_string(),
                    field: change.display_path(),
                    planned: show(change.before.as_ref()),
                    found: show(now.as_ref()),
                });
            }
            match change
                .path
                .iter()
                .position(|s| merge::parse_keyed(s).is_some())
            {
                Some(at) => {
                    let list_path = change.path[..at].to_vec();
                    let index = match lists.iter().position(|(p, _)| *p == list_path) {
                        Some(index) => index,
                        None => {
                            let list = merge::get(&current, &list_path)
                                .cloned()
                                .unwrap_or(json!([]));
                            lists.push((list_path.clone(), list));
                            lists.len() - 1
                        }
                    };
                    merge::set(
                        &mut lists[index].1,
                        &change.path[at..],
                        change.after.clone(),
                    );
                }
                None => merge::combine(
                    &mut document,
                    &merge::patch_for(&change.path, change.after.as_ref()),
                ),
            }
            pending += 1;
        }
        if pending == 0 {
            return Ok(false);
        }
        for (path, list) in lists {
            merge::combine(&mut document, &merge::patch_for(&path, Some(&list)));
        }
        document["metadata"]["uid"] = json!(found_uid);
        document["metadata"]["resourceVersion"] =
            json!(object::resource_version(&current).unwrap_or_default());
        match cluster.patch(target, &document, mode).await {
            Ok(_) => return Ok(true),
            // A stale resourceVersion: someone wrote in between. Re-read and re-check.
            Err(ClusterError::Conflict { .. }) if attempt + 1 < CONFLICT_RETRIES => {
                // Controllers update status often; give them a moment before re-reading.
                tokio::time::sleep(Duration::from_millis(50 * (attempt as u64 + 1))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns")
}

async fn delete(
    target: &ObjectRef,
    uid: Option<&str>,
    owner: Option<&str>,
    grace: Option<i64>,
    mode: WriteMode,
    cluster: &dyn Cluster,
) -> Result<bool, ApplyError> {
    let Some(current) = cluster.get(target).await? else {
        return Ok(false);
    };
    let found_uid = object::uid(&current).unwrap_or_default().to_string();
    if let Some(uid) = uid
        && uid != found_uid
    {
        // The planned object is gone already; whatever holds the name now is not ours to delete.
        return Ok(false);
    }
    if let Some(run_id) = owner
        && object::labels(&current)
            .get(RUN_ID_LABEL)
            .map(String::as_str)
            != Some(run_id)
    {
        return Err(ApplyError::NotOurs {
            object: target.to_string(),
        });
    }
    let preconditions = Preconditions {
        uid: Some(found_uid),
        resource_version: None,
    };
    match cluster.delete(target, &preconditions, grace, mode).await {
        Ok(()) => Ok(true),
        Err(ClusterError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Checks a pinned image's signature again, just before the write that deploys it.
async fn verify_image(
    image: &str,
    keys: &[String],
    registry_config: Option<&str>,
) -> Result<(), ApplyError> {
    use crate::registry::{ImageRef, Registry, cosign};
    let refused = |e: String| ApplyError::Signature(e);
    let reference = ImageRef::parse(image).map_err(|e| refused(e.to_string()))?;
    let digest = reference
        .digest
        .clone()
        .ok_or_else(|| refused(format!("{image} is not pinned by digest")))?;
    let keys: Vec<cosign::Key> = keys
        .iter()
        .enumerate()
        .map(|(i, pem)| cosign::Key::from_pem(&format!("key {}", i + 1), pem))
        .collect::<Result<_, _>>()
        .map_err(refused)?;
    let registry = Registry::new(registry_config.map(std::path::Path::new))
        .map_err(|e| refused(e.to_string()))?;
    cosign::verify(&registry, &reference, &digest, &keys)
        .await
        .map_err(|e| refused(e.to_string()))?;
    Ok(())
}

/// Waits until a workload's rollout is complete, woken by a watch on the workload.
async fn wait_rollout(
    target: &ObjectRef,
    timeout_millis: u64,
    cluster: &dyn Cluster,
) -> Result<(), ApplyError> {
    let wait = Some(Duration::from_millis(timeout_millis));
    let (done, detail) = wait_on_object(target, wait, cluster, |current| {
        let current = current.ok_or_else(|| ClusterError::NotFound {
            object: target.to_string(),
        })?;
        Ok(crate::action::rollout::status(current))
    })
    .await?;
    if done {
        return Ok(());
    }
    Err(ApplyError::Rollout {
        object: target.to_string(),
        seconds: timeout_millis / 1000,
        detail,
    })
}

/// Evicts a pod, retrying a PodDisruptionBudget's 429 with backoff until `wait_millis` pass.
/// Returns false when the pod was already gone (or replaced).
async fn evict(
    target: &ObjectRef,
    uid: &str,
    wait_millis: u64,
    mode: WriteMode,
    cluster: &dyn Cluster,
) -> Result<bool, ApplyError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_millis);
    let mut backoff = Duration::from_millis(500);
    loop {
        match cluster.evict(target, Some(uid), mode).await {
            Ok(()) => return Ok(true),
            Err(ClusterError::NotFound { .. }) => return Ok(false),
            // The uid precondition failed: the pod we planned to evict is already gone.
            Err(ClusterError::Conflict { .. }) => return Ok(false),
            Err(ClusterError::TooManyRequests {
                object, message, ..
            }) => {
                if tokio::time::Instant::now() + backoff > deadline {
                    return Err(ApplyError::DisruptionBudget {
                        object,
                        message,
                        waited_millis: wait_millis,
                    });
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until a field of an object has a value, woken by a watch on the object. `once` checks
/// a single time (a simulated cluster, where nothing changes by itself).
async fn wait_for(
    target: &ObjectRef,
    path: &[String],
    equals: &Value,
    timeout_millis: u64,
    once: bool,
    cluster: &dyn Cluster,
) -> Result<(), ApplyError> {
    let wait = (!once).then(|| Duration::from_millis(timeout_millis));
    let (matched, found) = wait_on_object(target, wait, cluster, |current| {
        let value = current.and_then(|o| merge::get(o, path)).cloned();
        Ok((value.as_ref() == Some(equals), value))
    })
    .await?;
    if matched {
        return Ok(());
    }
    Err(ApplyError::WaitTimeout {
        object: target.to_string(),
        field: path.join("."),
        expected: equals.to_string(),
        found: show(found.as_ref()),
    })
}

/// Reads `target` until `judge` says it is as wanted, again on every change a watch on it sees,
/// for up to `wait` (`None`: one reading). Returns the last verdict and what `judge` said with it.
async fn wait_on_object<T: Default>(
    target: &ObjectRef,
    wait: Option<Duration>,
    cluster: &dyn Cluster,
    judge: impl Fn(Option<&Value>) -> Result<(bool, T), ClusterError>,
) -> Result<(bool, T), ClusterError> {
    let last = std::sync::Mutex::new(T::default());
    let changes = wait.and_then(|_| cluster.changes(&Watch::object(target)));
    let met = wait_until(wait.unwrap_or(Duration::ZERO), changes, || async {
        let current = cluster.get(target).await?;
        let (met, said) = judge(current.as_ref())?;
        *last.lock().expect("wait lock") = said;
        Ok(met)
    })
    .await?;
    Ok((met, last.into_inner().expect("wait lock")))
}

fn show(value: Option<&Value>) -> String {
    value.map_or("(none)".into(), Value::to_string)
}
