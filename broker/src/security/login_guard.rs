//! Failed SASL logins rate-limited per source address: after
//! `connection.failed.authentication.limit` failures within
//! `connection.failed.authentication.window.ms` from one IP, that address's logins are
//! refused without checking credentials for `connection.failed.authentication.backoff.ms`.
//! Kafka's per-connection delay slows one connection's guesses; this stops a peer that
//! opens many connections. A refusal is cheap (no PBKDF2), and the block is logged once.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BrokerConfig;

/// Above this many tracked addresses, stale ones are dropped on the next failure.
const PRUNE_ABOVE: usize = 4096;
/// Never track more addresses than this (a flood from many addresses is not what this
/// guards against, and memory stays bounded).
const MAX_TRACKED: usize = 65_536;

/// Whether an address may try to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check its credentials.
    Allowed,
    /// Refuse it for this much longer.
    Blocked(Duration),
}

/// A block that has just begun, for the one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStarted {
    /// Failures counted within the window.
    pub failures: usize,
    /// How long the address is refused.
    pub backoff: Duration,
}

#[derive(Debug, Default)]
struct Address {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl Address {
    fn stale(&self, now: Instant, window: Duration) -> bool {
        self.blocked_until.is_none_or(|until| until <= now)
            && self
                .failures
                .back()
                .is_none_or(|last| now.duration_since(*last) >= window)
    }
}

/// Failures per source address.
#[derive(Debug)]
pub struct LoginGuard {
    limit: usize,
    window: Duration,
    backoff: Duration,
    addresses: Mutex<HashMap<IpAddr, Address>>,
}

impl LoginGuard {
    /// `limit` failures within `window` block an address for `backoff`; a limit of 0
    /// turns the guard off.
    pub fn new(limit: usize, window: Duration, backoff: Duration) -> Self {
        LoginGuard {
            limit,
            window,
            backoff,
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// From the `connection.failed.authentication.*` settings.
    pub fn from_config(config: &BrokerConfig) -> Self {
        let millis = |name: &str, default: u64| Duration::from_millis(config.get_or(name, default));
        LoginGuard::new(
            config.get_or("connection.failed.authentication.limit", 10usize),
            millis("connection.failed.authentication.window.ms", 60_000),
            millis("connection.failed.authentication.backoff.ms", 60_000),
        )
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<IpAddr, Address>) -> T) -> T {
        match self.addresses.lock() {
            Ok(mut map) => f(&mut map),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Whether `ip` may log in at `now`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        if self.limit == 0 {
            return Verdict::Allowed;
        }
        self.with(|map| match map.get(&ip).and_then(|a| a.blocked_until) {
            Some(until) if until > now => Verdict::Blocked(until - now),
            _ => Verdict::Allowed,
        })
    }

    /// Counts a failed login from `ip`; `Some` when it starts a block.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> Option<BlockStarted> {
        if self.limit == 0 {
            return None;
        }
        let (limit, window, backoff) = (self.limit, self.window, self.backoff);
        self.with(|map| {
            if map.len() > PRUNE_ABOVE && !map.contains_key(&ip) {
                map.retain(|_, address| !address.stale(now, window));
            }
            if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
                return None;
            }
            let address = map.entry(ip).or_default();
            if address.blocked_until.is_some_and(|until| until > now) {
                return None;
            }
            address.blocked_until = None;
            while address
                .failures
                .front()
                .is_some_and(|first| now.duration_since(*first) >= window)
            {
                address.failures.pop_front();
            }
            address.failures.push_back(now);
            if address.failures.len() < limit {
                return None;
            }
            let failures = address.failures.len();
            address.failures.clear();
            address.blocked_until = Some(now + backoff);
            Some(BlockStarted { failures, backoff })
        })
    }

    /// Addresses tracked now (for tests).
    pub fn tracked(&self) -> usize {
        self.with(|map| map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn blocks_after_the_limit_within_the_window_then_lets_go() {
        let guard = LoginGuard::new(3, 10 * SECOND, 30 * SECOND);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(guard.record_failure(ip, t0), None);
        assert_eq!(guard.record_failure(ip, t0 + SECOND), None);
        assert_eq!(guard.check(ip, t0 + SECOND), Verdict::Allowed);
        let started = guard.record_failure(ip, t0 + 2 * SECOND).unwrap();
        assert_eq!(started.failures, 3);
        assert_eq!(started.backoff, 30 * SECOND);
        assert_eq!(
            guard.check(ip, t0 + 2 * SECOND),
            Verdict::Blocked(30 * SECOND)
        );
        assert_eq!(guard.check(other, t0 + 2 * SECOND), Verdict::Allowed);
        // Failures during the block do not extend it or log again.
        assert_eq!(guard.record_failure(ip, t0 + 3 * SECOND), None);
        assert_eq!(guard.check(ip, t0 + 31 * SECOND), Verdict::Blocked(SECOND));
        assert_eq!(guard.check(ip, t0 + 32 * SECOND), Verdict::Allowed);
        // Counting starts afresh.
        assert_eq!(guard.record_failure(ip, t0 + 33 * SECOND), None);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let guard = LoginGuard::new(2, 10 * SECOND, 30 * SECOND);
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(guard.record_failure(ip, t0), None);
        assert_eq!(guard.record_failure(ip, t0 + 10 * SECOND), None);
        assert!(guard.record_failure(ip, t0 + 11 * SECOND).is_some());
    }

    #[test]
    fn a_zero_limit_is_off_and_stale_addresses_are_pruned() {
        let off = LoginGuard::new(0, SECOND, SECOND);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(off.record_failure(ip, t0), None);
        }
        assert_eq!(off.check(ip, t0), Verdict::Allowed);

        let guard = LoginGuard::new(5, SECOND, SECOND);
        for i in 0..=PRUNE_ABOVE as u32 {
            guard.record_failure(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(guard.tracked(), PRUNE_ABOVE + 1);
        guard.record_failure(ip, t0 + 2 * SECOND);
        assert_eq!(guard.tracked(), 1);
    }
}
