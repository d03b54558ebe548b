//! Micro-batching: concurrent callers (the `handle` calls of an agent's instances and
//! in-flight events) submit one row each; a dedicated thread gathers up to `batch_size`
//! rows, waiting at most `max_wait` after the first, runs the model once for all of
//! them and answers each caller with its own row's result. The thread owns the model,
//! so a swap to a new version takes effect between two batches: every row is scored by
//! exactly one version, and that version is part of its answer.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::oneshot;

/// What a batcher thread runs: one call per batch.
pub trait BatchRunner: Send + 'static {
    /// One caller's input.
    type Row: Send + 'static;
    /// One caller's result.
    type Out: Send + 'static;
    /// A replacement model, applied between batches.
    type Swap: Send + 'static;

    /// Scores `rows`, returning exactly one result per row, in order. A row-level
    /// error fails only that row.
    fn run(&mut self, rows: Vec<Self::Row>) -> Vec<Result<Self::Out, String>>;

    /// Replaces the model; the next batch uses the new one.
    fn swap(&mut self, swap: Self::Swap);
}

/// A row could not be scored.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BatchError {
    /// The model rejected the batch or this row.
    #[error("{0}")]
    Failed(String),
    /// The batcher thread is gone (the agent is stopping).
    #[error("the batcher has stopped")]
    Stopped,
}

enum Message<R: BatchRunner> {
    Row(R::Row, oneshot::Sender<Result<R::Out, String>>),
    Swap(R::Swap),
}

/// The submitting side of a batcher thread; cheap to share behind an `Arc`.
pub struct Batcher<R: BatchRunner> {
    sender: mpsc::Sender<Message<R>>,
}

impl<R: BatchRunner> std::fmt::Debug for Batcher<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<R: BatchRunner> Batcher<R> {
    /// Starts the thread. It ends when the last `Batcher` handle is dropped.
    ///
    /// `callers` is how many rows can be outstanding at once (instances times events in
    /// flight per instance): a batch that has them all runs without waiting out
    /// `max_wait`, since no other row can arrive before one of them is answered.
    pub fn start(
        name: &str,
        runner: R,
        batch_size: usize,
        max_wait: Duration,
        callers: usize,
    ) -> std::io::Result<Batcher<R>> {
        let (sender, receiver) = mpsc::channel();
        let full = batch_size.clamp(1, callers.max(1));
        std::thread::Builder::new()
            .name(format!("batch-{name}"))
            .spawn(move || run_thread(runner, receiver, batch_size.max(1), full, max_wait))?;
        Ok(Batcher { sender })
    }

    /// Scores one row with whichever model version the thread holds when its batch
    /// runs.
    pub async fn submit(&self, row: R::Row) -> Result<R::Out, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Message::Row(row, reply))
            .map_err(|_| BatchError::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(BatchError::Failed),
            Err(_) => Err(BatchError::Stopped),
        }
    }

    /// Hands the thread a new model, used from the next batch on.
    pub fn swap(&self, swap: R::Swap) -> Result<(), BatchError> {
        self.sender
            .send(Message::Swap(swap))
            .map_err(|_| BatchError::Stopped)
    }
}

fn run_thread<R: BatchRunner>(
    mut runner: R,
    receiver: mpsc::Receiver<Message<R>>,
    batch_size: usize,
    full: usize,
    max_wait: Duration,
) {
    let mut rows = Vec::with_capacity(batch_size);
    let mut replies = Vec::with_capacity(batch_size);
    // A swap that arrived while a batch was being gathered waits for that batch.
    let mut pending_swap = None;
    loop {
        let first = match receiver.recv() {
            Ok(message) => message,
            Err(_) => return,
        };
        match first {
            Message::Swap(swap) => {
                runner.swap(swap);
                continue;
            }
            Message::Row(row, reply) => {
                rows.push(row);
                replies.push(reply);
            }
        }
        let deadline = Instant::now() + max_wait;
        let mut disconnected = false;
        while rows.len() < batch_size && pending_swap.is_none() {
            // Whatever is queued already joins the batch; then, unless every possible
            // caller is in it, wait up to the deadline.
            let next = match receiver.try_recv() {
                Ok(message) => Some(message),
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    None
                }
                Err(mpsc::TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || rows.len() >= full {
                        None
                    } else {
                        match receiver.recv_timeout(left) {
                            Ok(message) => Some(message),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => {
                                disconnected = true;
                                None
                            }
                        }
                    }
                }
            };
            match next {
                None => break,
                Some(Message::Row(row, reply)) => {
                    rows.push(row);
                    replies.push(reply);
                }
                Some(Message::Swap(swap)) => pending_swap = Some(swap),
            }
        }
        let count = rows.len();
        let mut results = runner.run(std::mem::take(&mut rows));
        // A runner that broke its contract fails the rows it did not answer.
        results.resize_with(count, || Err("the model returned too few rows".to_string()));
        for (reply, result) in replies.drain(..).zip(results) {
            // A caller that gave up (its instance stopped) no longer listens.
            let _ = reply.send(result);
        }
        if let Some(swap) = pending_swap.take() {
            runner.swap(swap);
        }
        if disconnected {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Doubles rows; fails negative ones; tags each result with its batch and version.
    struct Doubler {
        version: u32,
        batches: Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl BatchRunner for Doubler {
        type Row = i64;
        type Out = (i64, u32);
        type Swap = u32;

        fn run(&mut self, rows: Vec<i64>) -> Vec<Result<(i64, u32), String>> {
            self.batches.lock().unwrap().push(rows.len());
            rows.into_iter()
                .map(|r| {
                    if r < 0 {
                        Err(format!("negative {r}"))
                    } else {
                        Ok((r * 2, self.version))
                    }
                })
                .collect()
        }

        fn swap(&mut self, swap: u32) {
            self.version = swap;
        }
    }

    #[tokio::test]
    async fn concurrent_rows_share_a_batch_and_a_bad_row_fails_alone() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let batcher = Arc::new(
            Batcher::start(
                "t",
                Doubler {
                    version: 1,
                    batches: batches.clone(),
                },
                64,
                Duration::from_millis(200),
                64,
            )
            .unwrap(),
        );
        let tasks: Vec<_> = (-1..31)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(i).await })
            })
            .collect();
        let mut ok = 0;
        for (i, task) in (-1..31).zip(tasks) {
            match task.await.unwrap() {
                Ok((v, 1)) => {
                    assert_eq!(v, i * 2);
                    ok += 1;
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(BatchError::Failed(reason)) => assert_eq!(reason, "negative -1"),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 31);
        let batches = batches.lock().unwrap();
        assert_eq!(batches.iter().sum::<usize>(), 32);
        assert!(batches.len() < 32, "rows were batched: {batches:?}");
    }

    #[tokio::test]
    async fn a_swap_applies_between_batches() {
        let batcher = Batcher::start(
            "t",
            Doubler {
                version: 1,
                batches: Default::default(),
            },
            8,
            Duration::from_millis(1),
            8,
        )
        .unwrap();
        assert_eq!(batcher.submit(1).await.unwrap(), (2, 1));
        batcher.swap(2).unwrap();
        assert_eq!(batcher.submit(1).await.unwrap(), (2, 2));
    }
}

#[cfg(test)]
mod waiting {
    use super::*;

    struct Echo;

    impl BatchRunner for Echo {
        type Row = ();
        type Out = ();
        type Swap = ();

        fn run(&mut self, rows: Vec<()>) -> Vec<Result<(), String>> {
            rows.into_iter().map(Ok).collect()
        }

        fn swap(&mut self, _: ()) {}
    }

    /// With every possible caller in the batch, it runs without waiting out
    /// `max_wait` (an hour here: the test would hang otherwise).
    #[tokio::test]
    async fn a_batch_of_every_caller_does_not_wait() {
        let batcher = Batcher::start("w", Echo, 64, Duration::from_secs(3600), 1).unwrap();
        batcher.submit(()).await.unwrap();
        batcher.submit(()).await.unwrap();
    }
}
