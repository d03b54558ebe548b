//! Retention, DeleteRecords and compaction: each test fails if the property it names
//! breaks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use agentlog_protocol::fixtures;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{Compression as KpCompression, RecordBatchDecoder};

use super::*;

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: 24 * 60 * 60 * 1000,
        index_interval_bytes: 200,
        flush: FlushPolicy::Never,
        tail_cache_bytes: 1 << 20,
        cache_budget: super::CacheBudget::new(super::DEFAULT_CACHE_BUDGET),
        preallocate: true,
    }
}

/// A batch of `(key, value)` records (value `None`: tombstone) at `timestamp`.
fn keyed(records: &[(String, Option<String>)], timestamp: i64, codec: KpCompression) -> BytesMut {
    let records: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            fixtures::record(
                i as i32,
                Some(Bytes::from(k.clone())),
                v.clone().map(Bytes::from),
                timestamp,
            )
        })
        .collect();
    fixtures::encode(&records, codec)
}

/// Every record readable from `from`: (offset, key, value).
fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.high_watermark() {
        let read = log.read(offset, 1 << 16).unwrap();
        assert!(!read.bytes.is_empty(), "no progress at {offset}");
        let mut bytes = read.bytes.clone();
        for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
            for r in set.records {
                if r.offset >= offset {
                    out.push((
                        r.offset,
                        String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into(),
                        r.value.map(|v| String::from_utf8_lossy(&v).into()),
                    ));
                }
            }
        }
        let mut next = offset;
        for (header, range) in agentlog_protocol::batch::Batches::new(&read.bytes) {
            agentlog_protocol::batch::verify(&read.bytes[range]).expect("a valid batch");
            next = header.next_offset();
        }
        offset = next;
    }
    out
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count()
}

#[test]
fn time_retention_deletes_old_sealed_segments_and_moves_the_start_durably() {
    let dir = tempfile::tempdir().unwrap();
    let old = now() - 60_000;
    {
        let log = PartitionLog::open(dir.path(), config(300)).unwrap();
        for i in 0..20 {
            let ts = if i < 10 { old } else { now() };
            log.append(keyed(
                &[(format!("k{i}"), Some("v".repeat(50)))],
                ts,
                KpCompression::None,
            ))
            .unwrap();
        }
        let segments = log.segment_count();
        assert!(segments > 4, "tiny segments expected, got {segments}");
        let outcome = log
            .apply_retention(Retention {
                retention_ms: 30_000,
                retention_bytes: -1,
                now_ms: now(),
                keep_from: None,
            })
            .unwrap();
        assert!(outcome.segments_deleted > 0);
        let start = log.log_start_offset();
        assert!(start > 0 && start <= 10, "start {start}");
        assert!(matches!(
            log.read(0, 1000),
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        assert_eq!(read_all(&log, start).last().unwrap().0, 19);
        assert_eq!(segment_files(dir.path()), log.segment_count());
        log.flush().unwrap();
    }
    let log = PartitionLog::open(dir.path(), config(300)).unwrap();
    assert!(log.log_start_offset() > 0);
    assert!(matches!(
        log.read(0, 1000),
        Err(ReadError::OffsetOutOfRange { .. })
    ));
}

/// A held offset (an uplink that has not forwarded it yet) keeps its segment and every
/// later one, however expired; segments wholly below it still go.
#[test]
fn retention_keeps_segments_from_a_held_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(300)).unwrap();
    for i in 0..20 {
        log.append(keyed(
            &[(format!("k{i}"), Some("v".repeat(50)))],
            now() - 60_000,
            KpCompression::None,
        ))
        .unwrap();
    }
    let expire_all = |keep_from| Retention {
        retention_ms: 1000,
        retention_bytes: -1,
        now_ms: now(),
        keep_from,
    };
    log.apply_retention(expire_all(Some(7))).unwrap();
    let start = log.log_start_offset();
    assert!(
        start > 0 && start <= 7,
        "start {start}: below the hold goes, the hold stays"
    );
    assert_eq!(read_all(&log, start).first().map(|r| r.0), Some(start));
    assert_eq!(read_all(&log, 7).len(), 13, "offsets 7..20 are kept");
    let held = log.segments_held_back(expire_all(Some(7)));
    assert_eq!(held.first().map(|h| h.base), Some(start), "{held:?}");
    assert!(held.windows(2).all(|w| w[0].end == w[1].base), "{held:?}");
    assert!(held.iter().all(|h| h.bytes > 0 && h.max_timestamp > 0));
    assert_eq!(
        held.len() + 1,
        log.segment_count(),
        "every sealed one is due"
    );
    log.apply_retention(expire_all(None)).unwrap();
    assert_eq!(
        log.log_start_offset(),
        20,
        "released: everything expired goes"
    );
}

#[test]
fn time_retention_rolls_an_expired_active_segment_so_an_idle_log_empties() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    for i in 0..5 {
        log.append(keyed(
            &[(format!("k{i}"), Some("v".into()))],
            now() - 60_000,
            KpCompression::None,
        ))
        .unwrap();
    }
    log.apply_retention(Retention {
        retention_ms: 1000,
        retention_bytes: -1,
        now_ms: now(),
        keep_from: None,
    })
    .unwrap();
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        log.append(keyed(&[("k".into(), None)], now(), KpCompression::None))
            .unwrap()
            .base_offset,
        5
    );
}

#[test]
fn size_retention_trims_to_the_limit_and_never_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(400)).unwrap();
    for i in 0..60 {
        log.append(keyed(
            &[(format!("k{i}"), Some("v".repeat(60)))],
            now(),
            KpCompression::None,
        ))
        .unwrap();
    }
    let before = log.size_bytes();
    log.apply_retention(Retention {
        retention_ms: -1,
        retention_bytes: 1000,
        now_ms: now(),
        keep_from: None,
    })
    .unwrap();
    assert!(
        log.size_bytes() <= 1000 + 400,
        "size {} of {before}",
        log.size_bytes()
    );
    assert!(log.size_bytes() >= 1000 - 400);
    assert!(log.log_start_offset() > 0);
    // A size limit below one segment keeps the active segment.
    log.apply_retention(Retention {
        retention_ms: -1,
        retention_bytes: 0,
        now_ms: now(),
        keep_from: None,
    })
    .unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(!read_all(&log, log.log_start_offset()).is_empty());
}

#[test]
fn delete_records_moves_the_start_inside_a_segment_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = PartitionLog::open(dir.path(), config(300)).unwrap();
        for i in 0..30 {
            log.append(keyed(
                &[(format!("k{i}"), Some("v".repeat(40)))],
                now(),
                KpCompression::None,
            ))
            .unwrap();
        }
        assert!(matches!(
            log.delete_records(31),
            Err(DeleteRecordsError::OffsetOutOfRange { .. })
        ));
        let segments = log.segment_count();
        assert_eq!(log.delete_records(13).unwrap(), 13);
        assert!(log.segment_count() < segments);
        assert!(matches!(
            log.read(12, 1000),
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        assert_eq!(read_all(&log, 13).first().unwrap().0, 13);
        // Never backwards.
        assert_eq!(log.delete_records(5).unwrap(), 13);
        // Without a clean flush: the start file alone must hold.
    }
    let log = PartitionLog::open(dir.path(), config(300)).unwrap();
    assert_eq!(log.log_start_offset(), 13);
    assert_eq!(log.delete_records(-1).unwrap(), 30);
    assert_eq!(log.log_start_offset(), 30);
}

#[test]
fn readers_holding_a_deleted_segment_finish_and_later_reads_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(300)).unwrap();
    for i in 0..30 {
        log.append(keyed(
            &[(format!("k{i}"), Some("v".repeat(40)))],
            now(),
            KpCompression::None,
        ))
        .unwrap();
    }
    let first = log.read(0, 100).unwrap();
    log.delete_records(20).unwrap();
    assert!(!first.bytes.is_empty());
    assert!(matches!(
        log.read(0, 100),
        Err(ReadError::OffsetOutOfRange {
            log_start_offset: 20,
            ..
        })
    ));
}

/// 2,000 updates over 50 keys (a tombstone for every 10th key at the end), compacted.
fn compacted_log(
    dir: &Path,
    codec: KpCompression,
) -> (PartitionLog, HashMap<String, (i64, Option<String>)>) {
    let log = PartitionLog::open(dir, config(2000)).unwrap();
    let mut latest = HashMap::new();
    let mut offset = 0i64;
    for round in 0..40 {
        let records: Vec<(String, Option<String>)> = (0..50)
            .map(|k| {
                let tombstone = round == 39 && k % 10 == 0;
                (
                    format!("key-{k}"),
                    (!tombstone).then(|| format!("value-{round}-{k}")),
                )
            })
            .collect();
        // Five batches of ten per round, so some batches die entirely.
        for chunk in records.chunks(10) {
            let appended = log.append(keyed(chunk, now() - 10_000, codec)).unwrap();
            assert_eq!(appended.base_offset, offset);
            for (i, (k, v)) in chunk.iter().enumerate() {
                latest.insert(k.clone(), (offset + i as i64, v.clone()));
            }
            offset += chunk.len() as i64;
        }
    }
    // Roll, so everything is sealed.
    log.set_roll_config(1, 60_000);
    log.append(keyed(&[("tail".into(), Some("t".into()))], now(), codec))
        .unwrap();
    (log, latest)
}

fn policy(delete_retention_ms: i64) -> Compaction {
    Compaction {
        now_ms: now(),
        delete_retention_ms,
        min_compaction_lag_ms: 0,
        min_cleanable_dirty_ratio: 0.5,
    }
}

fn check_compacted(
    log: &PartitionLog,
    latest: &HashMap<String, (i64, Option<String>)>,
    tombstones_kept: bool,
) {
    let records = read_all(log, 0);
    let mut seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for (offset, key, value) in &records {
        if key == "tail" {
            continue;
        }
        assert!(
            seen.insert(key.clone(), (*offset, value.clone())).is_none(),
            "key {key} appears twice"
        );
    }
    for (key, (offset, value)) in latest {
        match (value, seen.get(key)) {
            (Some(_), Some(found)) => assert_eq!(found, &(*offset, value.clone()), "key {key}"),
            (None, Some(found)) if tombstones_kept => assert_eq!(found, &(*offset, None)),
            (None, None) if !tombstones_kept => {}
            (v, found) => panic!("key {key}: expected {v:?} at {offset}, found {found:?}"),
        }
    }
}

#[test]
fn compaction_keeps_the_latest_value_of_every_key_at_its_offset() {
    for codec in [
        KpCompression::None,
        KpCompression::Gzip,
        KpCompression::Snappy,
        KpCompression::Lz4,
        KpCompression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (log, latest) = compacted_log(dir.path(), codec);
        let before = log.size_bytes();
        let outcome = log.compact(policy(3_600_000)).unwrap().expect("a pass ran");
        assert!(outcome.records_removed >= 1900, "{outcome:?}");
        assert!(
            log.size_bytes() < before / 5,
            "{} of {before}",
            log.size_bytes()
        );
        check_compacted(&log, &latest, true);
        // Nothing dirty: no second pass.
        assert!(log.compact(policy(3_600_000)).unwrap().is_none());
        // Tombstones older than delete.retention.ms go on a later pass.
        assert!(log.compact(policy(1_000)).unwrap().is_some());
        check_compacted(&log, &latest, false);
        // And all of it survives a reopen (indexes agree with the new files).
        drop(log);
        let log = PartitionLog::open(dir.path(), config(2000)).unwrap();
        check_compacted(&log, &latest, false);
        assert!(super::cleaned_up_to(dir.path()) > 0);
    }
}

#[test]
fn a_crash_after_the_commit_marker_finishes_the_swap_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (log, latest) = compacted_log(dir.path(), KpCompression::Lz4);
    log.fail_before_renames.store(true, Ordering::Relaxed);
    assert!(log.compact(policy(3_600_000)).is_err());
    drop(log);
    assert!(dir.path().join("cleaning-swap").exists());
    let log = PartitionLog::open(dir.path(), config(2000)).unwrap();
    assert!(!dir.path().join("cleaning-swap").exists());
    check_compacted(&log, &latest, true);
}

#[test]
fn a_crash_before_the_commit_marker_rolls_back_to_the_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, latest) = compacted_log(dir.path(), KpCompression::None);
    let before = log.size_bytes();
    drop(log);
    // Half-written cleaned files and no marker, as a crash mid-write leaves them.
    std::fs::write(
        dir.path().join(format!("{:020}.log.cleaned", 0)),
        b"garbage",
    )
    .unwrap();
    let log = PartitionLog::open(dir.path(), config(2000)).unwrap();
    assert!(!dir.path().join(format!("{:020}.log.cleaned", 0)).exists());
    assert_eq!(log.size_bytes(), before);
    let all = read_all(&log, 0);
    assert_eq!(all.len(), 2001);
    let _ = latest;
}

#[test]
fn a_read_never_answers_with_only_empty_batches_while_records_follow() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments, each ending in a batch that compaction empties but keeps.
    let log = PartitionLog::open(dir.path(), config(100)).unwrap();
    for _ in 0..20 {
        log.append(keyed(
            &[("same".into(), Some("old".into()))],
            now() - 10_000,
            KpCompression::None,
        ))
        .unwrap();
    }
    log.append(keyed(
        &[("same".into(), Some("new".into()))],
        now() - 10_000,
        KpCompression::None,
    ))
    .unwrap();
    log.set_roll_config(1, 60_000);
    log.append(keyed(
        &[("other".into(), Some("x".into()))],
        now(),
        KpCompression::None,
    ))
    .unwrap();
    log.compact(policy(3_600_000)).unwrap().expect("a pass ran");
    let read = log.read(0, 1 << 20).unwrap();
    let counts: Vec<i32> = agentlog_protocol::batch::Batches::new(&read.bytes)
        .map(|(h, _)| h.records_count)
        .collect();
    assert!(
        counts.iter().any(|&c| c > 0),
        "only empty batches: {counts:?}"
    );
    let all = read_all(&log, 0);
    assert_eq!(
        all.iter()
            .map(|(o, k, _)| (*o, k.as_str()))
            .collect::<Vec<_>>(),
        vec![(20, "same"), (21, "other")]
    );
}

/// One keyed record from producer `producer_id`, inside a transaction.
fn in_txn(producer_id: i64, sequence: i32, key: &str, value: &str) -> BytesMut {
    let record = fixtures::record(
        0,
        Some(Bytes::from(key.to_string())),
        Some(Bytes::from(value.to_string())),
        now() - 10_000,
    );
    fixtures::encode(
        &[fixtures::from_producer(
            record,
            producer_id,
            0,
            sequence,
            true,
        )],
        KpCompression::None,
    )
}

/// One keyed record outside any transaction.
fn plain(key: &str, value: &str) -> BytesMut {
    let old = now() - 10_000;
    keyed(
        &[(key.into(), Some(value.into()))],
        old,
        KpCompression::None,
    )
}

fn marker(producer_id: i64, commit: bool) -> BytesMut {
    crate::partition::marker_batch(producer_id, 0, commit, 0, now() - 10_000).unwrap()
}

/// The keyed records a plain read returns, control records left out.
fn keyed_values(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    read_all(log, 0)
        .into_iter()
        .filter(|(_, key, _)| key.starts_with("key-"))
        .collect()
}

#[test]
fn compaction_removes_aborted_records_and_never_lets_them_shadow_committed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    log.append(plain("key-a", "a1")).unwrap(); // 0
    log.append(plain("key-b", "b1")).unwrap(); // 1
    log.append(in_txn(7, 0, "key-a", "a-aborted")).unwrap(); // 2
    log.append(in_txn(8, 0, "key-b", "b2")).unwrap(); // 3
    log.append(marker(7, false)).unwrap(); // 4: producer 7 aborts
    log.append(marker(8, true)).unwrap(); // 5: producer 8 commits
    log.append(in_txn(9, 0, "key-c", "c-aborted")).unwrap(); // 6: keyed, aborted, no other value
    log.append(marker(9, false)).unwrap(); // 7
    log.set_roll_config(1, 60_000);
    log.append(plain("key-tail", "t")).unwrap(); // 8, seals everything before it

    let outcome = log.compact(policy(3_600_000)).unwrap().expect("a pass ran");
    assert_eq!(outcome.cleaned_up_to, 8);
    assert_eq!(
        keyed_values(&log),
        vec![
            (0, "key-a".into(), Some("a1".into())),
            (3, "key-b".into(), Some("b2".into())),
            (8, "key-tail".into(), Some("t".into())),
        ],
        "a1 survives the aborted a-aborted, b2 (committed) replaces b1, aborted c is gone"
    );
}

#[test]
fn compaction_stops_below_a_transaction_that_has_no_marker_yet() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    log.append(plain("key-a", "a1")).unwrap(); // 0
    log.append(plain("key-a", "a2")).unwrap(); // 1
    log.set_roll_config(1, 60_000);
    log.append(in_txn(7, 0, "key-a", "a-open")).unwrap(); // 2: segment of its own
    log.append(plain("key-b", "b1")).unwrap(); // 3
    log.append(plain("key-tail", "t")).unwrap(); // 4: the active segment

    let outcome = log.compact(policy(3_600_000)).unwrap().expect("a pass ran");
    // Only the segment below the open transaction was cleaned: a1 is gone, a2 stays
    // (the undecided record is not in the key map), and nothing from offset 2 on moved.
    assert_eq!(outcome.cleaned_up_to, 2);
    assert_eq!(
        keyed_values(&log),
        vec![
            (1, "key-a".into(), Some("a2".into())),
            (2, "key-a".into(), Some("a-open".into())),
            (3, "key-b".into(), Some("b1".into())),
            (4, "key-tail".into(), Some("t".into())),
        ]
    );
    // Once it aborts, the next pass may clean past it, and a2 still survives.
    log.set_roll_config(1 << 20, 60_000);
    log.append(marker(7, false)).unwrap();
    log.set_roll_config(1, 60_000);
    log.append(plain("key-tail", "t2")).unwrap();
    let outcome = log
        .compact(policy(3_600_000))
        .unwrap()
        .expect("a second pass ran");
    assert!(outcome.cleaned_up_to > 4);
    let values = keyed_values(&log);
    assert!(
        values.contains(&(1, "key-a".into(), Some("a2".into()))),
        "{values:?}"
    );
    assert!(
        !values
            .iter()
            .any(|(_, _, v)| v.as_deref() == Some("a-open")),
        "{values:?}"
    );
}

/// A pass that ran while a producer was still writing leaves what was sealed after it
/// dirty; when that is below `min.cleanable.dirty.ratio`, the ratio alone would keep its
/// duplicates for good. Once the log stops growing, one more pass cleans them.
#[test]
fn duplicates_sealed_after_a_pass_are_cleaned_once_writes_stop() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), config(1 << 20)).unwrap();
    let unique: Vec<(String, Option<String>)> = (0..200)
        .map(|k| (format!("key-{k}"), Some(format!("first-{k}"))))
        .collect();
    log.append(keyed(&unique, now() - 10_000, KpCompression::None))
        .unwrap();
    log.set_roll_config(1, 60_000);
    log.append(plain("key-tail", "t")).unwrap();
    log.compact(policy(3_600_000))
        .unwrap()
        .expect("the first pass ran");

    // A few updates, sealed: far below half of the (all unique) cleaned bytes.
    log.append(plain("key-0", "second-0")).unwrap();
    log.append(plain("key-1", "second-1")).unwrap();
    log.append(plain("key-tail", "t2")).unwrap();
    assert!(
        log.compact(policy(3_600_000)).unwrap().is_none(),
        "below the ratio while the log grows"
    );
    let outcome = log
        .compact(policy(3_600_000))
        .unwrap()
        .expect("a pass once the log stopped growing");
    assert!(outcome.records_removed >= 2, "{outcome:?}");
    let values = keyed_values(&log);
    for key in ["key-0", "key-1"] {
        let found: Vec<_> = values.iter().filter(|(_, k, _)| k == key).collect();
        assert_eq!(found.len(), 1, "{key}: {found:?}");
    }
    // One such pass per idle period.
    assert!(log.compact(policy(3_600_000)).unwrap().is_none());
}
