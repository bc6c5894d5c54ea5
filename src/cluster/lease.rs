//! A Lease lock (coordination.k8s.io) so two runs never act on one target at once: taken by
//! compare-and-swap on the Lease's resourceVersion, renewed at a third of its duration, released
//! at the end. A holder that dies stops renewing; once its lease expires the next run takes it.
//! The run that holds it (resumed, or rolling back, from any machine) takes it over; anyone else
//! only by stealing it, with a reason the caller records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "Lease {namespace}/{name} is held by {holder} since {since} (renewed {renewed}, expires {expires}); wait for it, or stop that run"
    )]
    Held {
        namespace: String,
        name: String,
        holder: String,
        since: String,
        renewed: String,
        expires: String,
    },
    #[error("Lease {namespace}/{name}: {message}")]
    Api {
        namespace: String,
        name: String,
        message: String,
    },
}

/// Who asks for the lock: a readable identity (who, from where), the run it acts for, and the
/// runs it continues (a run started again after its predecessor was killed before it began),
/// whose locks it may take over too.
#[derive(Clone, Debug)]
pub struct Holder {
    pub identity: String,
    pub run: String,
    pub predecessors: Vec<String>,
}

/// The annotation naming the run that holds a Lease: the same run takes its lock over.
const RUN_ANNOTATION: &str = "contain.dev/run";

/// A lock taken from a live holder with `steal`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stolen {
    pub holder: String,
    pub since: String,
}

/// A held lock. [`HeldLock::lost`] turns true when a renewal failed: the holder must stop.
pub struct HeldLock {
    api: Api<Lease>,
    namespace: String,
    name: String,
    holder: String,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
    stolen: Option<Stolen>,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn api_error(namespace: &str, name: &str, e: impl std::fmt::Display) -> LockError {
    LockError::Api {
        namespace: namespace.to_string(),
        name: name.to_string(),
        message: e.to_string(),
    }
}

/// Who holds the Lease `name` in `namespace` now: `None` when it is free (released, expired,
/// or gone).
pub async fn holder_now(
    cluster: &super::kube::KubeCluster,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, LockError> {
    let api: Api<Lease> = Api::namespaced(cluster.client().clone(), namespace);
    let lease = api
        .get_opt(name)
        .await
        .map_err(|e| api_error(namespace, name, e))?;
    let Some(spec) = lease.and_then(|l| l.spec) else {
        return Ok(None);
    };
    let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let live = renewed.is_some_and(|at| {
        at.checked_add(jiff::SignedDuration::from_secs(seconds))
            .is_ok_and(|until| until > jiff::Timestamp::now())
    });
    Ok(spec.holder_identity.filter(|h| live && !h.is_empty()))
}

/// Takes the Lease `name` in `namespace` for `holder`. A lease held for the same run (resumed
/// after a crash, or rolled back) is taken over; one held by anyone else is refused until it
/// expires, or taken anyway with `steal` (the previous holder is then in [`HeldLock::stolen`]).
pub async fn acquire(
    cluster: &super::kube::KubeCluster,
    namespace: &str,
    name: &str,
    holder: &Holder,
    duration: Duration,
    steal: bool,
) -> Result<HeldLock, LockError> {
    let api: Api<Lease> = Api::namespaced(cluster.client().clone(), namespace);
    let seconds = duration.as_secs().max(1) as i32;
    let fresh = |resource_version: Option<String>| Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            resource_version,
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "contain".to_string(),
                )]
                .into(),
            ),
            annotations: Some([(RUN_ANNOTATION.to_string(), holder.run.clone())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            ..LeaseSpec::default()
        }),
    };
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| api_error(namespace, name, e))?;
    let mut stolen = None;
    let taken = match existing {
        None => api.create(&PostParams::default(), &fresh(None)).await,
        Some(lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let current = spec.holder_identity.clone().unwrap_or_default();
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            let lasts = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            let expires =
                renewed.map(|r| r + jiff::SignedDuration::try_from(lasts).unwrap_or_default());
            let expired = expires.is_none_or(|e| e < jiff::Timestamp::now());
            let same_run = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RUN_ANNOTATION))
                .is_some_and(|run| *run == holder.run || holder.predecessors.contains(run));
            let since = spec
                .acquire_time
                .map(|t| t.0.to_string())
                .unwrap_or_else(|| "an unknown time".into());
            if !current.is_empty() && !same_run && !expired {
                if !steal {
                    return Err(LockError::Held {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        holder: current,
                        since,
                        renewed: renewed.map(|t| t.to_string()).unwrap_or_default(),
                        expires: expires.map(|t| t.to_string()).unwrap_or_default(),
                    });
                }
                stolen = Some(Stolen {
                    holder: current,
                    since,
                });
            }
            // The resourceVersion makes this a compare-and-swap: if another run took the
            // expired lease between our read and this write, the API server answers 409.
            api.replace(
                name,
                &PostParams::default(),
                &fresh(lease.metadata.resource_version),
            )
            .await
        }
    };
    let lease = taken.map_err(|e| match &e {
        kube::Error::Api(status) if status.code == 409 => LockError::Api {
            namespace: namespace.to_string(),
            name: name.to_string(),
            message: "another run took it at the same moment (conflict); try again".into(),
        },
        _ => api_error(namespace, name, e),
    })?;
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = tokio::spawn(renew(api.clone(), lease, duration, lost.clone()));
    Ok(HeldLock {
        api,
        namespace: namespace.to_string(),
        name: name.to_string(),
        holder: holder.identity.clone(),
        lost,
        renewer,
        stolen,
    })
}

/// Renews every third of `ttl`. A renewal the server did not answer (restarting, unreachable,
/// 429, 5xx) is tried again every second while the lease is surely still ours; the lock is
/// flagged `lost` when the server refuses the renewal (someone else wrote the Lease: a steal) or
/// when no renewal got through by then, since another run may take an expired lease.
async fn renew(api: Api<Lease>, mut lease: Lease, ttl: Duration, lost: Arc<AtomicBool>) {
    let every = ttl / 3;
    // Flag the loss before the lease can expire for others: a write after that moment could
    // race the next holder's.
    let safe = ttl.saturating_sub(every / 2);
    let name = lease.metadata.name.clone().unwrap_or_default();
    let mut renewed_at = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        loop {
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(now());
            }
            // An unanswered call must not outlive the lease either.
            let answer =
                tokio::time::timeout(every, api.replace(&name, &PostParams::default(), &lease))
                    .await
                    .unwrap_or_else(|_| Err(kube::Error::Service("no answer".into())));
            match answer {
                Ok(renewed) => {
                    lease = renewed;
                    renewed_at = tokio::time::Instant::now();
                    break;
                }
                Err(kube::Error::Api(status))
                    if matches!(status.code, 404 | 409 | 403 | 401 | 422) =>
                {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(_) if renewed_at.elapsed() + RENEW_RETRY < safe => {
                    tokio::time::sleep(RENEW_RETRY).await;
                }
                Err(_) => {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// How soon an unanswered renewal is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(1);

impl HeldLock {
    /// True once a renewal failed: someone else may hold the target now.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The flag [`HeldLock::lost`] reads, for a caller that checks it elsewhere.
    pub fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// `namespace/name` of the Lease.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whom the lock was taken from, when it was stolen from a live holder.
    pub fn stolen(&self) -> Option<&Stolen> {
        self.stolen.as_ref()
    }

    /// Stops renewing and clears the holder, so the next run need not wait for the expiry.
    pub async fn release(self) {
        self.renewer.abort();
        if let Ok(mut lease) = self.api.get(&self.name).await
            && lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.holder.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = Some(now());
            }
            let _ = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await;
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
