//! A circuit breaker per model endpoint: after `threshold` consecutive failed attempts
//! it opens for a cool-down, during which calls fail at once (the agent keeps its
//! place and waits) instead of piling timeouts onto a server that is down; then one
//! trial call is let through, which closes it on success or re-opens it on failure.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls flow; `failures` consecutive attempts have failed so far.
    Closed { failures: u32 },
    /// Calls fail fast until `until`.
    Open { until: Instant },
    /// One trial call is in flight; others fail fast until it reports or until
    /// `until` (a trial whose caller went away must not keep the breaker shut).
    HalfOpen { until: Instant },
}

/// See the module documentation. Times are passed in so the state machine is tested
/// without sleeping.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures, for
    /// `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an attempt may go out now; `Err` carries how long the breaker stays
    /// open.
    pub fn allow(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { until } if now < until => Err(until - now),
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen {
                    until: now + self.cooldown,
                };
                Ok(())
            }
        }
    }

    /// The endpoint answered (even with a refusal: it is up).
    pub fn record_success(&self) {
        *self.state() = State::Closed { failures: 0 };
    }

    /// An attempt failed in a way that says the endpoint is unhealthy.
    pub fn record_failure(&self, now: Instant) {
        let mut state = self.state();
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: now + self.cooldown,
            },
        };
    }

    /// Whether calls currently fail fast (for logs and tests).
    pub fn is_open(&self, now: Instant) -> bool {
        match *self.state() {
            State::Closed { .. } => false,
            State::Open { until } | State::HalfOpen { until } => now < until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_for_one_trial() {
        let cooldown = Duration::from_secs(10);
        let breaker = CircuitBreaker::new(3, cooldown);
        let t0 = Instant::now();
        breaker.record_failure(t0);
        breaker.record_failure(t0);
        breaker.record_success(); // resets the run
        breaker.record_failure(t0);
        breaker.record_failure(t0);
        assert!(breaker.allow(t0).is_ok(), "2 consecutive failures < 3");
        breaker.record_failure(t0);
        assert_eq!(breaker.allow(t0), Err(cooldown));
        assert!(breaker.is_open(t0 + Duration::from_secs(9)));

        let later = t0 + cooldown;
        assert!(
            breaker.allow(later).is_ok(),
            "one trial after the cool-down"
        );
        assert!(breaker.allow(later).is_err(), "only one trial at a time");
        breaker.record_failure(later);
        assert!(
            breaker.allow(later + Duration::from_secs(1)).is_err(),
            "re-opened"
        );

        let again = later + cooldown;
        assert!(breaker.allow(again).is_ok());
        breaker.record_success();
        assert!(breaker.allow(again).is_ok() && breaker.allow(again).is_ok());
        assert!(!breaker.is_open(again));
    }

    #[test]
    fn an_abandoned_trial_does_not_keep_the_breaker_shut() {
        let cooldown = Duration::from_secs(1);
        let breaker = CircuitBreaker::new(1, cooldown);
        let t0 = Instant::now();
        breaker.record_failure(t0);
        assert!(breaker.allow(t0 + cooldown).is_ok()); // trial whose caller vanishes
        assert!(
            breaker.allow(t0 + cooldown * 2).is_ok(),
            "next trial allowed"
        );
    }
}
