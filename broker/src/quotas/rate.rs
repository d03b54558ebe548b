//! Kafka's windowed rate (`org.apache.kafka.common.metrics.stats.Rate` over a
//! `SampledStat`), as its client quotas measure it: `quota.window.num` samples of
//! `quota.window.size.seconds` each, the rate being the sum of the live samples over the
//! elapsed time (never less than all but one full window, so a quiet client's first
//! burst is measured over the whole window), and the throttle time Kafka's
//! `QuotaUtils.throttleTime` derives from a violation.

/// One sample window.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When the window began.
    start_ms: i64,
    /// What was recorded in it.
    value: f64,
}

/// The shape of the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// How many samples are kept (`quota.window.num`, Kafka's default 11).
    pub samples: usize,
    /// The length of one sample (`quota.window.size.seconds`, default one second).
    pub window_ms: i64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            samples: 11,
            window_ms: 1000,
        }
    }
}

/// A rate per second over sampled windows.
#[derive(Debug, Clone)]
pub struct Rate {
    config: RateConfig,
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    /// An empty rate.
    pub fn new(config: RateConfig) -> Rate {
        Rate {
            config: RateConfig {
                samples: config.samples.max(2),
                window_ms: config.window_ms.max(1),
            },
            samples: Vec::new(),
            current: 0,
        }
    }

    /// Adds `value` at `now_ms` (a negative value un-records, as Kafka does for a
    /// throttled fetch whose bytes are not returned).
    pub fn record(&mut self, value: f64, now_ms: i64) {
        if self.samples.is_empty() {
            self.samples.push(Sample {
                start_ms: now_ms,
                value: 0.0,
            });
            self.current = 0;
        }
        let window_ms = self.config.window_ms;
        let complete = self
            .samples
            .get(self.current)
            .is_some_and(|s| now_ms - s.start_ms >= window_ms);
        if complete {
            self.current = (self.current + 1) % self.config.samples;
            let fresh = Sample {
                start_ms: now_ms,
                value: 0.0,
            };
            match self.samples.get_mut(self.current) {
                Some(sample) => *sample = fresh,
                None => {
                    self.samples.push(fresh);
                    self.current = self.samples.len() - 1;
                }
            }
        }
        if let Some(sample) = self.samples.get_mut(self.current) {
            sample.value += value;
        }
    }

    /// Resets samples older than the whole window, as Kafka's `purgeObsoleteSamples`.
    fn purge(&mut self, now_ms: i64) {
        let expire = self.config.window_ms * self.config.samples as i64;
        for sample in &mut self.samples {
            if now_ms - sample.start_ms >= expire {
                *sample = Sample {
                    start_ms: now_ms,
                    value: 0.0,
                };
            }
        }
    }

    /// The time the rate is measured over, in ms (Kafka's `Rate.windowSize`).
    pub fn window_size_ms(&mut self, now_ms: i64) -> i64 {
        self.purge(now_ms);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms - oldest;
        let full = elapsed / self.config.window_ms;
        let min_full = self.config.samples as i64 - 1;
        if full < min_full {
            elapsed += (min_full - full) * self.config.window_ms;
        }
        elapsed
    }

    /// The rate per second at `now_ms`.
    pub fn measure(&mut self, now_ms: i64) -> f64 {
        let window = self.window_size_ms(now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total / (window as f64 / 1000.0)
    }

    /// Records `value` and, if the rate is then above `bound`, the time in ms until it
    /// would be back at the bound with nothing more recorded (Kafka's
    /// `(rate - bound) / bound * windowSize`, rounded).
    pub fn record_and_throttle(&mut self, value: f64, bound: f64, now_ms: i64) -> i64 {
        self.record(value, now_ms);
        let rate = self.measure(now_ms);
        if rate <= bound || bound <= 0.0 {
            return 0;
        }
        let window = self.window_size_ms(now_ms) as f64;
        ((rate - bound) / bound * window).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's figures: with 11 one-second samples a first burst is measured over ten
    /// seconds, so 2000 bytes against 100 B/s is a rate of 200 and a throttle of
    /// (200 - 100) / 100 * 10000 ms.
    #[test]
    fn a_burst_is_measured_over_the_whole_window() {
        let mut rate = Rate::new(RateConfig::default());
        assert_eq!(rate.record_and_throttle(500.0, 100.0, 1_000), 0);
        assert_eq!(rate.record_and_throttle(1500.0, 100.0, 1_000), 10_000);
        // Un-recording brings it back under.
        rate.record(-1500.0, 1_000);
        assert_eq!(rate.measure(1_000), 50.0);
        // Half a second on, the same bytes are measured over 10.5 s.
        assert_eq!(rate.record_and_throttle(1500.0, 100.0, 1_500), 9_500);
        // Twelve seconds later every sample has expired.
        assert_eq!(rate.record_and_throttle(0.0, 100.0, 13_600), 0);
        assert_eq!(rate.measure(13_600), 0.0);
    }
}
