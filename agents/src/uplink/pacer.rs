//! The bandwidth cap (`max_bytes_per_second`), shared by both directions.

use std::time::Duration;

use tokio::time::Instant;

/// Spaces batches so that, averaged over batches, at most `cap` bytes go per second: a
/// link shared with voice or control traffic is never saturated for long.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    cap: Option<u64>,
    until: Option<Instant>,
}

impl Pacer {
    /// A pacer for `cap` bytes per second (`None` or 0: no cap).
    pub fn new(cap: Option<u64>) -> Pacer {
        Pacer {
            cap: cap.filter(|cap| *cap > 0),
            until: None,
        }
    }

    /// When the next batch may go (`None`: now).
    pub fn next_at(&self) -> Option<Instant> {
        self.until
    }

    /// Delays the next batch by this one's share of the cap.
    pub fn sent(&mut self, bytes: usize) {
        let Some(cap) = self.cap else {
            return;
        };
        let now = Instant::now();
        let from = self.until.map_or(now, |until| until.max(now));
        self.until = Some(from + Duration::from_secs_f64(bytes as f64 / cap as f64));
    }
}
