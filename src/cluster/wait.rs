//! Waiting for a condition on the cluster: woken by a watch on the objects it reads, with the
//! same deadline as before, so a wait ends within milliseconds of its condition becoming true
//! (a fixed poll interval made every wait up to one interval late, and runs bimodal).

use std::time::Duration;

use futures::StreamExt;

use super::Changes;

/// Checks `check` until it is true or `wait` has passed; returns its last answer.
///
/// With `changes` (a watch on the objects the check reads) the check runs again as soon as one
/// of them changes, so the wait ends within milliseconds of its condition; a slow timer stays as
/// a safety net. Without (a condition no watch can see, like a token review, or a snapshot) it
/// polls, 50 ms at first and backing off to half a second.
pub async fn wait_until<F, Fut, E>(
    wait: std::time::Duration,
    mut changes: Option<Changes>,
    mut check: F,
) -> Result<bool, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
{
    const SAFETY_NET: Duration = Duration::from_secs(2);
    let deadline = tokio::time::Instant::now() + wait;
    let mut backoff = Duration::from_millis(50);
    loop {
        if check().await? {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        match changes.as_mut() {
            Some(stream) => {
                let timer = tokio::time::sleep_until(deadline.min(now + SAFETY_NET));
                tokio::select! {
                    next = stream.next() => if next.is_none() { changes = None },
                    () = timer => {}
                }
            }
            None => {
                tokio::time::sleep_until(deadline.min(now + backoff)).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterError;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A condition that becomes true 700 ms in, announced on a change stream.
    fn condition_with_notice() -> (Arc<AtomicBool>, Changes) {
        let flag = Arc::new(AtomicBool::new(false));
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let setter = flag.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            setter.store(true, Ordering::SeqCst);
            let _ = tx.unbounded_send(());
        });
        (flag, rx.boxed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_wakes_the_wait_at_once() {
        let (flag, changes) = condition_with_notice();
        let checks = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let met = wait_until(Duration::from_secs(60), Some(changes), || async {
            checks.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ClusterError>(flag.load(Ordering::SeqCst))
        })
        .await
        .unwrap();
        assert!(met);
        assert_eq!(started.elapsed(), Duration::from_millis(700));
        assert_eq!(
            checks.load(Ordering::SeqCst),
            2,
            "one check before, one on the change"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_watch_it_polls_and_gives_up_at_the_deadline() {
        let checks = AtomicUsize::new(0);
        let started = tokio::time::Instant::now();
        let met = wait_until(Duration::from_secs(3), None, || async {
            checks.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ClusterError>(false)
        })
        .await
        .unwrap();
        assert!(!met);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // At 0, 50, 150, 350 and 750 ms, then every 500 ms, the last at the deadline: 10 checks.
        assert_eq!(checks.load(Ordering::SeqCst), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_watch_still_meets_the_deadline() {
        let (_tx, rx) = futures::channel::mpsc::unbounded::<()>();
        let started = tokio::time::Instant::now();
        let met = wait_until(Duration::from_secs(5), Some(rx.boxed()), || async {
            Ok::<_, ClusterError>(false)
        })
        .await
        .unwrap();
        assert!(!met);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
