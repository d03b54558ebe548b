//! Giving memory that partitions freed back to the operating system.
//!
//! glibc's malloc keeps freed blocks in its arenas for reuse and returns to the OS only
//! what lies at the top of a heap. A broker that served many topics (their tail caches
//! are the appended request buffers) keeps that memory after the topics are deleted:
//! measured with `scripts/rss-topics.py` on a debug build, 500 topics of 4 partitions
//! and 10k records each left RSS at 200 MiB against 59 MiB idle, and after 100 topics
//! `malloc_trim(0)` took it from 75.7 to 64.2 MiB. So a topic deletion asks for one trim
//! soon after; deletions in a burst (a client suite's teardown) share it. The same goes
//! for connections: after thousands of them close, what they held is given back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a deletion the trim runs: the deleted partitions' last references
/// (a fetch in flight, the request that deleted them) are gone by then, and a burst of
/// deletions is over.
const TRIM_DELAY: Duration = Duration::from_secs(1);

/// Whether a trim is already scheduled. The allocator is one per process, so is this.
static TRIM_PENDING: AtomicBool = AtomicBool::new(false);

/// Schedules one return of freed memory to the OS, unless one is already scheduled.
/// Runs on its own short-lived thread: a trim walks the allocator's arenas under their
/// locks, which must not stall an async worker.
pub fn release_freed_memory_soon() {
    if TRIM_PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("agentlog-trim".into())
        .spawn(|| {
            std::thread::sleep(TRIM_DELAY);
            TRIM_PENDING.store(false, Ordering::Release);
            trim();
        });
    if spawned.is_err() {
        // No thread now: a later deletion tries again.
        TRIM_PENDING.store(false, Ordering::Release);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim has no preconditions; it only walks glibc's own free lists,
    // under the allocator's locks, and releases pages no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
