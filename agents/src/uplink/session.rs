//! The loop both uplink directions share: make a remote client, run one *session* with
//! it until it fails or the uplink stops, retire the client, back off, start again.
//! What a session does (forward up in transactions, mirror down) is the direction's;
//! how failures turn into link states, backoff and stopping is the same for both, so
//! it is written once here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::remote::RemoteError;
use super::status::{LinkState, UplinkStatus};

/// First wait after a failed session; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between sessions: a link back after a long outage is used within it.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The wait before the next session: doubles after each failure, back to the minimum
/// as soon as a session makes progress (a flapping link is retried quickly, a dead one
/// is not hammered).
#[derive(Debug)]
pub struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(MIN_BACKOFF)
    }

    /// A session made progress: the next failure is retried after the minimum wait.
    pub fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }

    fn grow(&mut self) {
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
    }
}

/// One uplink direction, as the shared loop drives it.
pub trait Sessions {
    /// The remote client one session uses (a transactional producer, a consumer).
    type Client;
    /// Why a session ended early.
    type Error: From<RemoteError>;

    /// Where the link state is reported.
    fn status(&self) -> &Arc<UplinkStatus>;

    /// The uplink's stop signal.
    fn stop(&self) -> watch::Receiver<bool>;

    /// The link state a failed session leaves the uplink in (refusals are errors that
    /// need a person, everything else is a link that is down for now).
    fn state_after(error: &Self::Error) -> LinkState;

    /// A new remote client; an error is a configuration the client library refuses.
    fn connect(&mut self) -> Result<Self::Client, RemoteError>;

    /// One client's life: returns `Ok` only when the uplink was asked to stop.
    fn session(
        &mut self,
        client: &Self::Client,
        backoff: &mut Backoff,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Releases a client without blocking the async workers.
    fn retire(client: Self::Client) -> impl Future<Output = ()> + Send;

    /// Waits `wait` (or until stopped) between sessions; a direction may keep doing
    /// local work meanwhile.
    fn pause(&mut self, wait: Duration) -> impl Future<Output = ()> + Send;
}

/// Runs sessions until the uplink is stopped, backing off after each failure.
pub async fn run<S: Sessions>(mut sessions: S) {
    let mut backoff = Backoff::new();
    let stop = sessions.stop();
    // `connecting` only until the first outcome: a retry of a link that is down stays
    // `down: <why>` until it is up again, so a days-long outage is one state (and one
    // log line), not a flicker every backoff.
    sessions.status().set_state(LinkState::Connecting);
    while !*stop.borrow() {
        let client = match sessions.connect() {
            Ok(client) => client,
            Err(error) => {
                // A configuration the client library refuses does not get better:
                // report it and wait for a restart with a fixed file.
                let state = S::state_after(&S::Error::from(error));
                sessions.status().set_state(state);
                let _ = stop.clone().changed().await;
                return;
            }
        };
        let mut stopped = stop.clone();
        // Stopping does not wait out a remote call in progress (up to the remote
        // timeout over a dead link): whatever it was doing, the remote aborts.
        let outcome = tokio::select! {
            outcome = sessions.session(&client, &mut backoff) => Some(outcome),
            _ = stopped.wait_for(|stopped| *stopped) => None,
        };
        S::retire(client).await;
        match outcome {
            None | Some(Ok(())) => return,
            Some(Err(error)) => sessions.status().set_state(S::state_after(&error)),
        }
        sessions.pause(backoff.0).await;
        backoff.grow();
    }
}

/// Sleeps `wait`, or less if `stop` is set meanwhile.
pub async fn sleep_unless_stopped(wait: Duration, mut stop: watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stop.changed() => {}
    }
}
