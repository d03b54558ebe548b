//! Behavioural tests of the partition log: each one fails if the property it names breaks.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentlog_protocol::batch::{self, BatchHeader, Batches};
use agentlog_protocol::fixtures;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression as KpCompression;

use super::*;

/// One client-encoded batch holding a record per timestamp.
fn batch_with(timestamps: &[i64], compression: KpCompression) -> BytesMut {
    let records: Vec<_> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| {
            fixtures::record(
                i as i32,
                Some(Bytes::from(format!("key-{i}"))),
                Some(Bytes::from(format!("value {i} {}", "x".repeat(40)))),
                timestamp,
            )
        })
        .collect();
    fixtures::encode(&records, compression)
}

fn batch(records: usize) -> BytesMut {
    let ts: Vec<i64> = (0..records).map(|i| 1_700_000_000_000 + i as i64).collect();
    batch_with(&ts, KpCompression::None)
}

fn config(segment_bytes: u64, flush: FlushPolicy, cache: usize) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: 24 * 60 * 60 * 1000,
        index_interval_bytes: 200,
        flush,
        tail_cache_bytes: cache,
        cache_budget: super::CacheBudget::new(super::DEFAULT_CACHE_BUDGET),
        preallocate: true,
    }
}

/// What a batch must look like once stored at `base`.
fn stored(mut bytes: BytesMut, base: i64) -> Bytes {
    batch::set_base_offset(&mut bytes, base);
    batch::set_partition_leader_epoch(&mut bytes, 0);
    bytes.freeze()
}

/// Appends `n` batches of 1..=3 records; returns each stored batch with its base offset.
fn fill(log: &PartitionLog, n: usize) -> Vec<(i64, Bytes)> {
    (0..n)
        .map(|i| {
            let b = batch(1 + i % 3);
            let appended = log.append(b.clone()).unwrap();
            assert_eq!(appended.last_offset - appended.base_offset, (i % 3) as i64);
            (appended.base_offset, stored(b, appended.base_offset))
        })
        .collect()
}

fn containing(expected: &[(i64, Bytes)], offset: i64) -> usize {
    expected.partition_point(|(base, _)| *base <= offset) - 1
}

/// Every offset reads back the batch containing it, then whole following batches.
fn check_reads(log: &PartitionLog, expected: &[(i64, Bytes)]) {
    let end = log.high_watermark();
    for offset in 0..end {
        let i = containing(expected, offset);
        let one = log.read(offset, 1).unwrap();
        assert_eq!(
            one.bytes, expected[i].1,
            "offset {offset}: first batch whole"
        );
        let two = expected[i].1.len() + expected.get(i + 1).map_or(0, |b| b.1.len());
        let read = log.read(offset, two + 10).unwrap();
        assert!(read.bytes.len() <= two + 10);
        let mut at = i;
        for (header, range) in Batches::new(&read.bytes) {
            assert_eq!(header.base_offset, expected[at].0);
            assert_eq!(&read.bytes[range], &expected[at].1[..]);
            at += 1;
        }
        assert!(at > i);
    }
    assert!(log.read(end, 1000).unwrap().bytes.is_empty());
    assert!(matches!(
        log.read(end + 1, 1000),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
}

/// Bytes the batches take in the segment file.
fn stored_len(batches: &[(i64, Bytes)]) -> u64 {
    batches.iter().map(|b| b.1.len() as u64).sum()
}

/// The end of the data in a segment file that a crash left unflushed: the file goes on
/// past it with reserved space (zeros), which this checks.
fn data_end_after_crash(path: &Path, batches: &[(i64, Bytes)], from: u64) -> u64 {
    let end = from + stored_len(batches);
    let file = fs::read(path).unwrap();
    assert!(file.len() as u64 > end, "space is reserved past the data");
    assert!(file[end as usize..].iter().all(|&b| b == 0));
    end
}

fn files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

#[test]
fn round_trip_across_rolls_from_disk_and_cache() {
    for cache in [0, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let log = PartitionLog::open(dir.path(), config(1500, FlushPolicy::Never, cache)).unwrap();
        let expected = fill(&log, 40);
        assert!(
            log.segment_count() >= 5,
            "segments: {}",
            log.segment_count()
        );
        let records: i64 = (0..40).map(|i| 1 + i % 3).sum();
        assert_eq!(log.high_watermark(), records);
        assert_eq!(log.log_end_offset(), log.high_watermark());
        check_reads(&log, &expected);
        assert_eq!(files(dir.path(), "log").len(), log.segment_count());
        let first = files(dir.path(), "log")[0].clone();
        assert!(first.ends_with("00000000000000000000.log"));
    }
}

#[test]
fn max_bytes_is_respected_and_first_batch_always_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20, FlushPolicy::Never, 0)).unwrap();
    let expected = fill(&log, 6);
    let two = expected[0].1.len() + expected[1].1.len();
    assert_eq!(log.read(0, two).unwrap().bytes.len(), two);
    assert_eq!(log.read(0, two - 1).unwrap().bytes, expected[0].1);
    assert_eq!(log.read(0, 0).unwrap().bytes, expected[0].1);
    // A read in the middle of a three-record batch starts at that batch.
    let (base, bytes) = &expected[2];
    assert_eq!(&log.read(base + 2, 1).unwrap().bytes, bytes);
}

#[test]
fn tail_cache_spanning_appends_matches_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cached =
        PartitionLog::open(dir.path(), config(1 << 20, FlushPolicy::Never, 1 << 20)).unwrap();
    let expected = fill(&cached, 10);
    let whole = cached.read(0, 1 << 20).unwrap().bytes;
    let total: usize = expected.iter().map(|b| b.1.len()).sum();
    assert_eq!(whole.len(), total);
    drop(cached);
    let disk = PartitionLog::open(dir.path(), config(1 << 20, FlushPolicy::Never, 0)).unwrap();
    assert_eq!(disk.read(0, 1 << 20).unwrap().bytes, whole);
}

#[test]
fn reopen_after_clean_close_serves_identical_bytes_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1500, FlushPolicy::EveryBatch, 4096);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let mut expected = fill(&log, 25);
    log.flush().unwrap();
    let end = log.high_watermark();
    let before: Vec<Bytes> = (0..end).map(|o| log.read(o, 1).unwrap().bytes).collect();
    drop(log);

    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.truncated_bytes_on_open(), 0);
    assert_eq!(log.high_watermark(), end);
    assert_eq!(log.log_end_offset(), end);
    let after: Vec<Bytes> = (0..end).map(|o| log.read(o, 1).unwrap().bytes).collect();
    assert!(before == after, "first batches differ after reopen");
    check_reads(&log, &expected);
    let b = batch(2);
    let appended = log.append(b.clone()).unwrap();
    assert_eq!(appended.base_offset, end);
    log.flush().unwrap();
    expected.push((end, stored(b, end)));
    check_reads(&log, &expected);
}

#[test]
fn torn_and_corrupt_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, FlushPolicy::Never, 0);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let expected = fill(&log, 5);
    drop(log);
    let path = files(dir.path(), "log")[0].clone();
    let len = data_end_after_crash(&path, &expected, 0);
    // Tear the last batch, then flip a record byte in the (now last whole) fourth batch.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let fourth_end: usize = expected[..4].iter().map(|b| b.1.len()).sum();
    let mut data = fs::read(&path).unwrap();
    data[fourth_end - 3] ^= 0xff;
    fs::write(&path, &data).unwrap();

    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    let valid: usize = expected[..3].iter().map(|b| b.1.len()).sum();
    assert_eq!(log.truncated_bytes_on_open(), len - 10 - valid as u64);
    assert_eq!(fs::metadata(&path).unwrap().len(), valid as u64);
    assert_eq!(log.log_end_offset(), expected[3].0);
    check_reads(&log, &expected[..3]);
    let b = batch(1);
    assert_eq!(log.append(b.clone()).unwrap().base_offset, expected[3].0);
    let mut now = expected[..3].to_vec();
    now.push((expected[3].0, stored(b, expected[3].0)));
    check_reads(&log, &now);
}

#[test]
fn missing_or_corrupt_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1500, FlushPolicy::Never, 0);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let expected = fill(&log, 40);
    log.flush().unwrap();
    drop(log);
    let indexes = files(dir.path(), "index");
    let times = files(dir.path(), "timeindex");
    assert!(indexes.len() >= 5);
    let pristine = fs::read(&indexes[1]).unwrap();
    assert!(!pristine.is_empty());
    fs::remove_file(&indexes[0]).unwrap();
    // Not a whole number of entries.
    OpenOptions::new()
        .append(true)
        .open(&indexes[1])
        .unwrap()
        .write_all(&[1, 2, 3])
        .unwrap();
    // Last entry points past the end of the log.
    OpenOptions::new()
        .append(true)
        .open(&indexes[2])
        .unwrap()
        .write_all(&[0, 0, 0, 1, 0, 1, 0, 0])
        .unwrap();
    // Time index entry for an offset beyond the segment.
    let mut bogus = 5i64.to_be_bytes().to_vec();
    bogus.extend(u32::MAX.to_be_bytes());
    OpenOptions::new()
        .append(true)
        .open(&times[3])
        .unwrap()
        .write_all(&bogus)
        .unwrap();

    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert!(log.recovery_bytes_read() > 0);
    assert!(indexes[0].exists());
    assert_eq!(fs::read(&indexes[1]).unwrap(), pristine);
    assert_eq!(fs::metadata(&indexes[2]).unwrap().len() % 8, 0);
    check_reads(&log, &expected);
    drop(log);

    // Well-formed but lying entries (pointing mid-batch) are caught on read.
    let mut lies = Vec::new();
    for _ in 0..pristine.len() / 8 {
        lies.extend(0u32.to_be_bytes());
        lies.extend(7u32.to_be_bytes());
    }
    fs::write(&indexes[1], &lies).unwrap();
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    check_reads(&log, &expected);
}

#[test]
fn open_trusts_sealed_segments_and_reads_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(4096, FlushPolicy::Never, 0);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    while log.segment_count() < 50 {
        log.append(batch(3)).unwrap();
    }
    let total = log.append(batch(1)).unwrap().last_offset + 1;
    log.flush().unwrap();
    drop(log);
    let logs = files(dir.path(), "log");
    let all: u64 = logs.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let tail = fs::metadata(logs.last().unwrap()).unwrap().len();

    // After a clean flush the recovery point covers the tail: only the last index
    // interval of the active segment is re-checked, nothing of the sealed ones.
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.segment_count(), logs.len());
    let tail_check = u64::from(cfg.index_interval_bytes) + 2 * 200;
    assert!(
        log.recovery_bytes_read() <= tail.min(tail_check),
        "{}",
        log.recovery_bytes_read()
    );
    assert_eq!(log.log_end_offset(), total);
    drop(log);

    // Without it (a crash), only the active segment is validated.
    fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.segment_count(), logs.len());
    assert_eq!(log.recovery_bytes_read(), tail);
    assert!(log.recovery_bytes_read() * 20 < all);
    assert_eq!(log.log_end_offset(), total);
    assert_eq!(log.read(0, 1).unwrap().bytes.len(), batch(3).len());
    assert_eq!(log.read(total / 2, 1).unwrap().bytes.len(), batch(3).len());
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20, FlushPolicy::Never, 0);
    cfg.segment_ms = 0;
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    let expected = fill(&log, 4);
    assert_eq!(log.segment_count(), 4);
    check_reads(&log, &expected);
}

#[test]
fn appends_that_are_not_whole_batches_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20, FlushPolicy::Never, 0)).unwrap();
    assert!(matches!(
        log.append(BytesMut::new()),
        Err(AppendError::InvalidBatch(_))
    ));
    let mut torn = batch(2);
    torn.truncate(torn.len() - 1);
    assert!(matches!(
        log.append(torn),
        Err(AppendError::InvalidBatch(_))
    ));
    let mut two = batch(1);
    two.extend_from_slice(&[0u8; 70]);
    assert!(matches!(log.append(two), Err(AppendError::InvalidBatch(_))));
    assert_eq!(log.log_end_offset(), 0);
    assert!(matches!(
        log.read(-1, 10),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    // Several batches in one append get consecutive offsets.
    let mut many = batch(2);
    many.extend_from_slice(&batch(3));
    let appended = log.append(many).unwrap();
    assert_eq!((appended.base_offset, appended.last_offset), (0, 4));
    let read = log.read(3, 1 << 20).unwrap().bytes;
    let header = BatchHeader::parse(&read).unwrap();
    assert_eq!(header.base_offset, 2);
}

#[test]
fn never_moves_the_high_watermark_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20, FlushPolicy::Never, 0)).unwrap();
    let mut rx = log.subscribe();
    log.append(batch(3)).unwrap();
    assert_eq!(log.high_watermark(), 3);
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 3);
    assert_eq!(log.fsync_count(), 0);
}

#[tokio::test]
async fn every_batch_moves_the_high_watermark_only_after_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        PartitionLog::open(
            dir.path(),
            config(1 << 20, FlushPolicy::EveryBatch, 1 << 20),
        )
        .unwrap(),
    );
    let mut rx = log.subscribe();
    let appended = log
        .append(batch_with(&[10, 20], KpCompression::None))
        .unwrap();
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.high_watermark(), 0);
    assert!(!rx.has_changed().unwrap());
    assert!(log.read(0, 100).unwrap().bytes.is_empty());
    assert!(matches!(
        log.read(1, 100),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.max_timestamp().unwrap(), None);
    log.wait_durable(appended.last_offset + 1).await.unwrap();
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(*rx.borrow_and_update(), 2);
    assert_eq!(log.fsync_count(), 1);
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some(TimestampOffset {
            offset: 1,
            timestamp: 20
        })
    );
    // Already durable: no second fsync.
    log.wait_durable(2).await.unwrap();
    assert_eq!(log.fsync_count(), 1);
    // A new, larger timestamp stays invisible until it is durable.
    log.append(batch_with(&[30], KpCompression::None)).unwrap();
    assert_eq!(log.max_timestamp().unwrap().unwrap().timestamp, 20);
    assert_eq!(log.offset_for_timestamp(25).unwrap(), None);
    log.flush().unwrap();
    assert_eq!(log.high_watermark(), 3);
    assert_eq!(
        log.offset_for_timestamp(25).unwrap(),
        Some(TimestampOffset {
            offset: 2,
            timestamp: 30
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        PartitionLog::open(
            dir.path(),
            config(1 << 20, FlushPolicy::EveryBatch, 1 << 20),
        )
        .unwrap(),
    );
    let tasks = 50;
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let log = log.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let appended = log.append(batch(1)).unwrap();
                barrier.wait().await;
                log.wait_durable(appended.last_offset + 1).await.unwrap();
                assert!(log.high_watermark() > appended.last_offset);
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(log.high_watermark(), tasks as i64);
    assert!(log.fsync_count() >= 1);
    assert!(
        log.fsync_count() < tasks as u64,
        "fsyncs: {}",
        log.fsync_count()
    );

    // Without the barrier, racing producers still all complete and share fsyncs.
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let log = log.clone();
            tokio::spawn(async move {
                let appended = log.append(batch(1)).unwrap();
                log.wait_durable(appended.last_offset + 1).await.unwrap();
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(log.high_watermark(), 2 * tasks as i64);
    assert!(log.fsync_count() <= 1 + tasks as u64);
}

#[tokio::test]
async fn interval_policy_flushes_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, FlushPolicy::Interval(Duration::from_millis(10)), 0);
    let log = Arc::new(PartitionLog::open(dir.path(), cfg).unwrap());
    let ticker = log.start_background().unwrap();
    log.append(batch(2)).unwrap();
    assert_eq!(log.high_watermark(), 2);
    for _ in 0..200 {
        if log.fsync_count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(log.fsync_count() > 0);
    drop(log);
    tokio::time::timeout(Duration::from_secs(5), ticker)
        .await
        .unwrap()
        .unwrap();
}

/// Offsets: A = 0..=2 [100, 300, 200], B = 3..=4 [150, 400], C (compressed) =
/// 5..=7 [500, 450, 600], D = 8..=9 [600, 100].
fn timestamp_log(dir: &Path, segment_bytes: u64, compression: KpCompression) -> PartitionLog {
    let log = PartitionLog::open(dir, config(segment_bytes, FlushPolicy::Never, 0)).unwrap();
    log.append(batch_with(&[100, 300, 200], KpCompression::None))
        .unwrap();
    log.append(batch_with(&[150, 400], KpCompression::None))
        .unwrap();
    log.append(batch_with(&[500, 450, 600], compression))
        .unwrap();
    log.append(batch_with(&[600, 100], KpCompression::None))
        .unwrap();
    log
}

fn check_timestamps(log: &PartitionLog) {
    let at = |offset, timestamp| Some(TimestampOffset { offset, timestamp });
    let cases = [
        (i64::MIN, at(0, 100)),
        (100, at(0, 100)),
        (101, at(1, 300)),
        (250, at(1, 300)),
        (301, at(4, 400)),
        (400, at(4, 400)),
        (401, at(5, 500)),
        (460, at(5, 500)),
        (501, at(7, 600)),
        (600, at(7, 600)),
        (601, None),
    ];
    for (ts, want) in cases {
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            want,
            "timestamp {ts}"
        );
    }
    assert_eq!(log.max_timestamp().unwrap(), at(7, 600));
}

#[test]
fn offset_for_timestamp_finds_the_exact_record() {
    for compression in [
        KpCompression::Gzip,
        KpCompression::Snappy,
        KpCompression::Lz4,
        KpCompression::Zstd,
    ] {
        for segment_bytes in [1 << 20, 200] {
            let dir = tempfile::tempdir().unwrap();
            let log = timestamp_log(dir.path(), segment_bytes, compression);
            if segment_bytes == 200 {
                assert_eq!(log.segment_count(), 4);
            }
            check_timestamps(&log);
            drop(log);
            let log = PartitionLog::open(dir.path(), config(segment_bytes, FlushPolicy::Never, 0))
                .unwrap();
            check_timestamps(&log);
        }
    }
}

#[test]
fn empty_log_has_no_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), None);
    assert!(log.read(0, 100).unwrap().bytes.is_empty());
    assert_eq!(log.log_start_offset(), 0);
}

/// The active segment reserves space past its data (so that a group commit's fdatasync
/// does not also journal a new file length): readers never see it, a crash's leftover
/// zeros are given back on open without counting as damage, and sealed segments (whose
/// length open trusts) hold whole batches only.
#[test]
fn reserved_space_is_never_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2000, FlushPolicy::Never, 0);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let expected = fill(&log, 40);
    assert!(log.segment_count() > 2);
    check_reads(&log, &expected);
    let log_end = log.log_end_offset();
    drop(log); // a crash: the active segment keeps its reserved space
    let logs = files(dir.path(), "log");
    let (active, sealed) = logs.split_last().unwrap();
    for path in sealed {
        let bytes = fs::read(path).unwrap();
        let whole: usize = Batches::new(&bytes).map(|(_, range)| range.len()).sum();
        assert_eq!(
            whole,
            bytes.len(),
            "{} holds whole batches only",
            path.display()
        );
    }
    let active_base: i64 = active
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let in_active: Vec<_> = expected
        .iter()
        .filter(|b| b.0 >= active_base)
        .cloned()
        .collect();
    let end = data_end_after_crash(active, &in_active, 0);

    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.truncated_bytes_on_open(), 0);
    assert_eq!(fs::metadata(active).unwrap().len(), end);
    assert_eq!(log.log_end_offset(), log_end);
    check_reads(&log, &expected);
}

/// Periodic recovery points: a crash makes the next open validate only what followed
/// the last one, not the whole active segment.
#[test]
fn recovery_points_while_running_bound_crash_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, FlushPolicy::EveryBatch, 0);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let mut expected = fill(&log, 4500); // ~880 KB: most of a 1 MiB segment
    let at_point = stored_len(&expected);
    assert!(!log.record_recovery_point_if_grown(at_point + 1).unwrap());
    assert!(log.record_recovery_point_if_grown(at_point).unwrap());
    // fsynced by the point, so visible under group commit without a wait_durable
    assert_eq!(log.high_watermark(), log.log_end_offset());
    assert!(
        !log.record_recovery_point_if_grown(1).unwrap(),
        "nothing grew"
    );
    let after = fill(&log, 5);
    let after_len = stored_len(&after);
    expected.extend(after);
    let end = log.log_end_offset();
    log.record_recovery_point_if_grown(u64::MAX).unwrap();
    drop(log); // a crash
    let file_len = fs::metadata(&files(dir.path(), "log")[0]).unwrap().len();
    let reserved = file_len - at_point - after_len;

    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    let read = log.recovery_bytes_read();
    // What followed the point, the re-check of the point's last index interval (200
    // bytes here, plus the batch straddling it), and the scan's read-ahead into the
    // reserved space past the data; nothing of what the point covers.
    assert!(
        read >= after_len && read <= after_len + 200 + 400 + reserved,
        "read {read} bytes; {after_len} followed the point, {reserved} reserved"
    );
    assert!(
        read < at_point,
        "read {read} of {at_point} bytes below the point"
    );
    assert_eq!(log.truncated_bytes_on_open(), 0);
    assert_eq!(log.log_end_offset(), end);
    check_reads(&log, &expected);
}

#[test]
fn recovery_point_limits_validation_to_what_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, FlushPolicy::Never, 0);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let mut expected = fill(&log, 10);
    log.flush().unwrap();
    let path = files(dir.path(), "log")[0].clone();
    let flushed = fs::metadata(&path).unwrap().len();
    assert_eq!(
        flushed,
        stored_len(&expected),
        "a clean flush gives reserved space back"
    );
    let unflushed = fill(&log, 5);
    drop(log); // a crash: no flush after the last five appends
    let len = data_end_after_crash(&path, &unflushed, flushed);
    expected.extend(unflushed);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();

    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    // What follows the recovery point, plus the re-check of its last index interval.
    let after = len - 5 - flushed;
    let read = log.recovery_bytes_read();
    assert!(
        read >= after && read <= after + u64::from(cfg.index_interval_bytes) + 400,
        "{read}"
    );
    let last = expected.last().unwrap().1.len() as u64;
    assert_eq!(log.truncated_bytes_on_open(), last - 5);
    assert_eq!(log.log_end_offset(), expected[14].0);
    check_reads(&log, &expected[..14]);
    assert_eq!(
        log.offset_for_timestamp(1_700_000_000_001).unwrap(),
        Some(TimestampOffset {
            offset: 2,
            timestamp: 1_700_000_000_001
        })
    );
    assert_eq!(log.max_timestamp().unwrap().unwrap().offset, 5);

    // Damage below a newer recovery point is noticed (the file is shorter than the
    // point) and the whole segment is validated again.
    log.flush().unwrap();
    drop(log);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.recovery_bytes_read(), len - 5);
    assert!(log.truncated_bytes_on_open() > 0);
    assert_eq!(log.log_end_offset(), expected[13].0);
    check_reads(&log, &expected[..13]);
}

#[test]
fn timestamp_lookups_use_sealed_and_active_time_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1500, FlushPolicy::Never, 0);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let mut bases = Vec::new();
    for i in 0..40i64 {
        let ts: Vec<i64> = (0..3).map(|r| 1000 * i + 10 * r).collect();
        bases.push(
            log.append(batch_with(&ts, KpCompression::None))
                .unwrap()
                .base_offset,
        );
    }
    assert!(log.segment_count() > 4);
    let check = |log: &PartitionLog| {
        for (i, base) in bases.iter().enumerate() {
            let i = i as i64;
            let at = |offset, timestamp| Some(TimestampOffset { offset, timestamp });
            assert_eq!(
                log.offset_for_timestamp(1000 * i).unwrap(),
                at(*base, 1000 * i)
            );
            assert_eq!(
                log.offset_for_timestamp(1000 * i + 11).unwrap(),
                at(base + 2, 1000 * i + 20)
            );
            let next = log.offset_for_timestamp(1000 * i + 21).unwrap();
            if i < 39 {
                assert_eq!(next, at(base + 3, 1000 * (i + 1)));
            } else {
                assert_eq!(next, None);
            }
        }
        assert_eq!(
            log.max_timestamp().unwrap(),
            Some(TimestampOffset {
                offset: 119,
                timestamp: 39_020
            })
        );
    };
    check(&log);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    check(&log);
}

/// Linux reports a failed writeback to one fsync only. When a recovery point's fsync
/// is the one that sees it, a later fsync that succeeds must not publish anything.
#[test]
fn a_failure_seen_by_one_fsync_is_not_undone_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20, FlushPolicy::EveryBatch, 0)).unwrap();
    let appended = log.append(batch(2)).unwrap();
    log.fail_next_fsync
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(log.record_recovery_point_if_grown(1).is_err());
    assert_eq!(log.high_watermark(), 0);
    // Another fsync of the same file (the group commit's) now reports success.
    assert!(matches!(
        log.finish_sync(appended.last_offset + 1, Ok(())),
        Err(FlushError::Io(_))
    ));
    assert_eq!(log.high_watermark(), 0);
    assert!(
        !log.recovery_point_due(1),
        "a poisoned log writes no points"
    );
}

/// A segment whose file grew past what it knows (a reservation that failed midway, a
/// failed write not cut back) is still sealed at its data's length: open trusts a
/// sealed segment's file length.
#[test]
fn sealing_cuts_the_file_to_its_data_whatever_it_believed() {
    let dir = tempfile::tempdir().unwrap();
    // No reservation: as after a failed fallocate, the segment believes its file ends
    // at its data.
    let cfg = LogConfig {
        preallocate: false,
        ..config(2000, FlushPolicy::Never, 0)
    };
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    let mut expected = fill(&log, 2);
    let active = files(dir.path(), "log")[0].clone();
    let grown = fs::metadata(&active).unwrap().len() + 200_000;
    OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .set_len(grown)
        .unwrap();
    expected.extend(fill(&log, 20));
    assert!(log.segment_count() > 1);
    let bytes = fs::read(&active).unwrap();
    let whole: usize = Batches::new(&bytes).map(|(_, range)| range.len()).sum();
    assert_eq!(
        whole,
        bytes.len(),
        "the sealed segment holds whole batches only"
    );
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    check_reads(&log, &expected);
}

#[tokio::test]
async fn a_failed_fsync_never_moves_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        PartitionLog::open(dir.path(), config(1 << 20, FlushPolicy::EveryBatch, 0)).unwrap(),
    );
    let rx = log.subscribe();
    let appended = log.append(batch(2)).unwrap();
    log.fail_next_fsync
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        log.wait_durable(appended.last_offset + 1).await,
        Err(FlushError::Io(_))
    ));
    assert_eq!(log.high_watermark(), 0);
    assert!(!rx.has_changed().unwrap());
    // The page cache can no longer be trusted: the log refuses to go on.
    assert!(matches!(log.append(batch(1)), Err(AppendError::Poisoned)));
    assert!(matches!(
        log.wait_durable(2).await,
        Err(FlushError::Poisoned)
    ));
    assert!(matches!(log.flush(), Err(FlushError::Poisoned)));
    assert_eq!(log.high_watermark(), 0);
    drop(log);
    // Reopening recovers what is on disk.
    let log = PartitionLog::open(dir.path(), config(1 << 20, FlushPolicy::EveryBatch, 0)).unwrap();
    assert_eq!(log.high_watermark(), 2);
}
