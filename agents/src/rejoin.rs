//! What every instance loop (stream, queue and exactly-once delivery) does before it can
//! serve: join a group or initialise a producer, and keep trying until that succeeds or
//! the instance is told to stop. One place, so that the three loops stop, log and back
//! off the same way.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// How long an instance waits before it tries to join (or initialise) again.
pub(crate) const REJOIN_AFTER: Duration = Duration::from_millis(500);

/// Runs `attempt` until it succeeds (`Some`) or `stop` turns true (`None`). A stop
/// cancels an attempt in flight; each failure is logged as `what` for `agent` and
/// retried after `retry_after`.
pub(crate) async fn until_stopped<T, E, F, Fut>(
    stop: &mut watch::Receiver<bool>,
    agent: &str,
    what: &str,
    retry_after: Duration,
    mut attempt: F,
) -> Option<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    while !*stop.borrow() {
        let outcome = tokio::select! {
            _ = stop.changed() => return None,
            outcome = attempt() => outcome,
        };
        match outcome {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(%agent, %error, "{what}; retrying");
                tokio::time::sleep(retry_after).await;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn retries_until_an_attempt_succeeds() {
        let (_tx, mut stop) = watch::channel(false);
        let tries = AtomicUsize::new(0);
        let joined = until_stopped(&mut stop, "a", "cannot join", Duration::ZERO, || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err("refused"),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(joined, Some(2));
    }

    #[tokio::test]
    async fn a_stop_cancels_the_attempt_in_flight() {
        let (tx, mut stop) = watch::channel(false);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send(true);
            tx
        });
        let joined: Option<()> =
            until_stopped(&mut stop, "a", "cannot join", Duration::ZERO, || {
                std::future::pending::<Result<(), &str>>()
            })
            .await;
        assert_eq!(joined, None);
        drop(stopper.await);
    }

    #[tokio::test]
    async fn nothing_is_tried_once_stopped() {
        let (_tx, mut stop) = watch::channel(true);
        let tries = AtomicUsize::new(0);
        let joined: Option<()> = until_stopped(&mut stop, "a", "x", Duration::ZERO, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Ok::<(), &str>(())
        })
        .await;
        assert_eq!((joined, tries.load(Ordering::SeqCst)), (None, 0));
    }
}
