//! `PartitionLog` append and read costs, so storage changes can be judged in isolation
//! from the network path. Run: `cargo bench --bench storage`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentlog_broker::storage::{FlushPolicy, LogConfig, PartitionLog};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Records per batch and value size: a typical librdkafka batch of small records.
const RECORDS: usize = 100;
const VALUE_SIZE: usize = 100;

fn config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        flush,
        ..LogConfig::default()
    }
}

/// Appends `iters` copies of `batch` to a fresh log and returns the time the appends
/// (and, under `EveryBatch`, their fsyncs) took. A fresh directory per sample keeps
/// disk use bounded however many iterations criterion asks for.
fn time_appends(
    batch: &Bytes,
    config: LogConfig,
    iters: u64,
    runtime: &tokio::runtime::Runtime,
) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let flush = config.flush;
    let log = Arc::new(PartitionLog::open(dir.path(), config).expect("open log"));
    let copies: Vec<BytesMut> = (0..iters).map(|_| BytesMut::from(&batch[..])).collect();
    let start = Instant::now();
    for copy in copies {
        let appended = log.append(copy).expect("append");
        if flush == FlushPolicy::EveryBatch {
            runtime
                .block_on(log.wait_durable(appended.last_offset + 1))
                .expect("fsync");
        }
    }
    start.elapsed()
}

fn append(c: &mut Criterion) {
    let batch = common::batch(RECORDS, VALUE_SIZE);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("append_100x100B");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function(BenchmarkId::new("records", "flush_never"), |b| {
        b.iter_custom(|iters| time_appends(&batch, config(FlushPolicy::Never), iters, &runtime))
    });
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function(BenchmarkId::new("bytes", "flush_never"), |b| {
        b.iter_custom(|iters| time_appends(&batch, config(FlushPolicy::Never), iters, &runtime))
    });
    // fsync-bound: milliseconds per iteration, so fewer samples.
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function(BenchmarkId::new("records", "flush_every_batch"), |b| {
        b.iter_custom(|iters| {
            time_appends(&batch, config(FlushPolicy::EveryBatch), iters, &runtime)
        })
    });
    // Group commit: several producers' appends share one fsync.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    group.bench_function(
        BenchmarkId::new("records", "flush_every_batch_4_writers"),
        |b| b.iter_custom(|iters| time_group_commit(&batch, WRITERS, iters, &multi)),
    );
    group.finish();

    // Small batches (a record each, as with linger.ms=0 at a low rate): reserving file
    // space ahead spares each fdatasync an inode update.
    let single = common::batch(1, VALUE_SIZE);
    let mut group = c.benchmark_group("append_1x100B");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for preallocate in [true, false] {
        let name = match preallocate {
            true => "flush_every_batch",
            false => "flush_every_batch_no_preallocate",
        };
        group.bench_function(BenchmarkId::new("records", name), |b| {
            b.iter_custom(|iters| {
                let config = LogConfig {
                    preallocate,
                    ..config(FlushPolicy::EveryBatch)
                };
                time_appends(&single, config, iters, &runtime)
            })
        });
    }
    group.finish();
}

/// Concurrent appenders for the group-commit bench (like 4 producers with acks=all).
const WRITERS: u64 = 4;

/// `writers` tasks append `iters` batches in total under `EveryBatch`, each waiting for
/// its own batch to be durable before appending the next, as acks=all producers do.
fn time_group_commit(
    batch: &Bytes,
    writers: u64,
    iters: u64,
    runtime: &tokio::runtime::Runtime,
) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Arc::new(
        PartitionLog::open(dir.path(), config(FlushPolicy::EveryBatch)).expect("open log"),
    );
    let per_writer = iters.div_ceil(writers);
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (log, batch) = (log.clone(), batch.clone());
                tokio::spawn(async move {
                    for _ in 0..per_writer {
                        let appended = log.append(BytesMut::from(&batch[..])).expect("append");
                        log.wait_durable(appended.last_offset + 1)
                            .await
                            .expect("fsync");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer task");
        }
    });
    start.elapsed()
}

/// A log holding `batches` copies of `batch`, with the given tail cache size.
fn filled_log(dir: &Path, batch: &Bytes, batches: usize, tail_cache_bytes: usize) -> PartitionLog {
    let log = PartitionLog::open(
        dir,
        LogConfig {
            tail_cache_bytes,
            ..config(FlushPolicy::Never)
        },
    )
    .expect("open log");
    for _ in 0..batches {
        log.append(BytesMut::from(&batch[..])).expect("append");
    }
    log
}

fn read(c: &mut Criterion) {
    let batch = common::batch(RECORDS, VALUE_SIZE);
    let mut group = c.benchmark_group("read");
    let dir = tempfile::tempdir().expect("temp dir");
    // 1,000 batches (~11 MB): the last ones are in the 1 MiB tail cache, the first not.
    let log = filled_log(dir.path(), &batch, 1000, 1 << 20);
    let end = log.high_watermark();
    let reads = [
        // A consumer at the head: one batch, handed out without a copy.
        ("tail_cache_last_batch", end - RECORDS as i64),
        // A consumer 50 batches (~550 KB) behind: still cached, but spanning appends.
        ("tail_cache_50_back", end - 50 * RECORDS as i64),
        // A consumer far behind: a positioned read from the segment (page cache).
        ("file", 0),
    ];
    for (name, offset) in reads {
        for max_bytes in [64 * 1024, 1024 * 1024] {
            let bytes = log.read(offset, max_bytes).expect("read").bytes.len();
            group.throughput(Throughput::Bytes(bytes as u64));
            group.bench_with_input(
                BenchmarkId::new(name, format!("max_{}KiB", max_bytes / 1024)),
                &(offset, max_bytes),
                |b, &(offset, max_bytes)| b.iter(|| log.read(offset, max_bytes).expect("read")),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
