//! Record values and keys: built once and patched in place, so that generating load
//! costs far less than the client's own work and does not distort the measurement.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::options::KeyDistribution;

/// Bytes at the start of an e2e value holding the send time (u64 big-endian nanoseconds
/// since the Unix epoch): wall-clock, because producer and consumer are different
/// clients (on the same host the clock is shared).
pub const TIMESTAMP_LEN: usize = 8;

/// Wall-clock nanoseconds since the Unix epoch, the unit of embedded timestamps.
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A value of `size` bytes of printable, poorly compressible filler (like
/// kafka-producer-perf-test's random payload), so compression numbers are not flattered.
pub fn value(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift::new(seed);
    (0..size).map(|_| b'A' + (rng.next() % 26) as u8).collect()
}

/// Writes `nanos` into the first [`TIMESTAMP_LEN`] bytes of an e2e value.
pub fn stamp(value: &mut [u8], nanos: u64) {
    if let Some(head) = value.get_mut(..TIMESTAMP_LEN) {
        head.copy_from_slice(&nanos.to_be_bytes());
    }
}

/// The timestamp embedded by [`stamp`], if the value is long enough to hold one.
pub fn stamped(value: &[u8]) -> Option<u64> {
    let head = value.get(..TIMESTAMP_LEN)?;
    let mut bytes = [0u8; TIMESTAMP_LEN];
    bytes.copy_from_slice(head);
    Some(u64::from_be_bytes(bytes))
}

/// Produces the key for each record according to `--key-distribution`, reusing one
/// buffer (no allocation per record).
pub struct Keys {
    distribution: KeyDistribution,
    count: u64,
    next: u64,
    rng: XorShift,
    buf: Vec<u8>,
}

impl Keys {
    /// A key source; `seed` differs per producer thread so random keys differ too.
    pub fn new(distribution: KeyDistribution, count: u64, seed: u64) -> Keys {
        Keys {
            distribution,
            count: count.max(1),
            next: seed,
            rng: XorShift::new(seed),
            buf: Vec::with_capacity(24),
        }
    }

    /// The next key, or `None` for null keys.
    pub fn next_key(&mut self) -> Option<&[u8]> {
        let n = match self.distribution {
            KeyDistribution::None => return None,
            KeyDistribution::Sequential => {
                let n = self.next % self.count;
                self.next = self.next.wrapping_add(1);
                n
            }
            KeyDistribution::Random => self.rng.next() % self.count,
        };
        self.buf.clear();
        // Writing to a Vec cannot fail.
        let _ = write!(self.buf, "key-{n}");
        Some(&self.buf)
    }
}

/// xorshift64*: a few instructions per number, ample for filler and key choice (no
/// dependency on `rand` for something this small).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}
