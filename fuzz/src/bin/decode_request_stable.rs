//! A stable-toolchain stand-in for `cargo fuzz run decode_request`, for machines with no
//! nightly: mutates the seed corpus with a deterministic PRNG for a fixed time and feeds
//! every mutant to the same [`agentlog_fuzz::decode_one`].
//!
//! Any single allocation over 256 MiB aborts with a message (a decode bomb would be
//! far larger), and a panic saves the input under `artifacts/decode_request/`.
//!
//! usage: decode_request_stable [SECONDS] [CORPUS_DIR] [SEED]

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Refuses (aborts on) any allocation bigger than this.
const MAX_ALLOC: usize = 256 << 20;

/// The system allocator, except that an absurd single request is treated as a finding.
struct Capped;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            eprintln!("FINDING: allocation of {} bytes", layout.size());
            std::process::abort();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

/// Deterministic xorshift64, so a run can be repeated from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte values that tend to turn length prefixes into bombs or nulls.
const SPICY: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x0f, 0x10];

fn mutate(rng: &mut XorShift, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(6) {
        let len = data.len();
        match rng.below(7) {
            _ if data.is_empty() => data.push(rng.next() as u8),
            0 => data[rng.below(len)] = SPICY[rng.below(SPICY.len())],
            1 => data[rng.below(len)] = rng.next() as u8,
            2 => data.truncate(rng.below(len)),
            3 => data.insert(rng.below(len + 1), SPICY[rng.below(SPICY.len())]),
            4 => {
                // four 0xff / 0x7f bytes: an int32 or varint length bomb
                let at = rng.below(len);
                let b = if rng.below(2) == 0 { 0xff } else { 0x7f };
                let end = (at + 4).min(len);
                data[at..end].fill(b);
            }
            5 => {
                // splice a chunk of another seed in
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len());
                let to = from + rng.below(other.len() - from + 1);
                let at = rng.below(len + 1);
                data.splice(at..at, other[from..to].iter().copied());
            }
            _ => {
                let i = rng.below(len);
                data.remove(i);
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "corpus/decode_request".into()),
    );
    let seed: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d);

    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    if corpus.is_empty() {
        corpus.push(vec![0, 18, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
    eprintln!("{} seeds from {}", corpus.len(), dir.display());

    panic::set_hook(Box::new(|_| {}));
    let mut rng = XorShift(seed | 1);
    let start = Instant::now();
    let deadline = Duration::from_secs(secs);
    let mut execs: u64 = 0;
    while start.elapsed() < deadline {
        for _ in 0..1000 {
            let mut data = corpus[rng.below(corpus.len())].clone();
            mutate(&mut rng, &mut data, &corpus);
            execs += 1;
            if panic::catch_unwind(|| agentlog_fuzz::decode_one(&data)).is_err() {
                let out = PathBuf::from("artifacts/decode_request");
                let _ = std::fs::create_dir_all(&out);
                let path = out.join(format!("crash-stable-{execs}"));
                let _ = std::fs::write(&path, &data);
                eprintln!("FINDING: panic, input saved to {}", path.display());
                std::process::exit(1);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{execs} execs in {secs:.1}s ({:.0}/s), no panics, no allocation over {} MiB",
        execs as f64 / secs,
        MAX_ALLOC >> 20
    );
}
