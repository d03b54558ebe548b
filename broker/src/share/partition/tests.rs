use std::time::Duration;

use super::*;

fn limits(max_records: usize, covered_last: i64, now: Instant) -> AcquireLimits {
    AcquireLimits {
        max_records,
        covered_last,
        max_window: 100,
        delivery_limit: 3,
        lock_until: now + Duration::from_secs(30),
    }
}

fn ack(first: i64, last: i64, types: &[AckType]) -> AckBatch {
    AckBatch {
        first,
        last,
        types: types.to_vec(),
    }
}

#[test]
fn acquisition_hands_each_record_to_one_member_until_acknowledged() {
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let now = Instant::now();
    let mut p = SharePartition::starting_at(0);
    let got = p.acquire(&a, now, limits(3, 9, now));
    assert_eq!(
        got,
        vec![AcquiredRange {
            first: 0,
            last: 2,
            deliveries: 1
        }]
    );
    let got = p.acquire(&b, now, limits(10, 9, now));
    assert_eq!(
        got,
        vec![AcquiredRange {
            first: 3,
            last: 9,
            deliveries: 1
        }]
    );
    assert!(p.acquire(&a, now, limits(10, 9, now)).is_empty());
    // b cannot acknowledge a's records; nothing of the request is applied.
    assert_eq!(
        p.acknowledge(
            "b",
            &[ack(3, 3, &[AckType::Accept]), ack(0, 0, &[AckType::Accept])],
            now,
            3
        ),
        Err(AckError::NotAcquired(0))
    );
    assert_eq!(p.acquired_count(now), 10);
    p.acknowledge("a", &[ack(0, 2, &[AckType::Accept])], now, 3)
        .unwrap();
    assert_eq!(p.start(), 3);
    // Already acknowledged: refused.
    assert_eq!(
        p.acknowledge("a", &[ack(1, 1, &[AckType::Accept])], now, 3),
        Err(AckError::NotAcquired(1))
    );
}

#[test]
fn released_and_timed_out_records_come_back_until_the_delivery_limit() {
    let a: Arc<str> = Arc::from("a");
    let t0 = Instant::now();
    let mut p = SharePartition::starting_at(5);
    assert_eq!(p.acquire(&a, t0, limits(2, 6, t0)).len(), 1);
    // Per-offset types: 5 released, 6 rejected.
    p.acknowledge(
        "a",
        &[ack(5, 6, &[AckType::Release, AckType::Reject])],
        t0,
        3,
    )
    .unwrap();
    assert_eq!(
        p.acquire(&a, t0, limits(5, 6, t0)),
        vec![AcquiredRange {
            first: 5,
            last: 5,
            deliveries: 2
        }]
    );
    // Its lock times out: delivered a third time, then archived when that lock expires.
    let t1 = t0 + Duration::from_secs(31);
    assert_eq!(
        p.acquire(&a, t1, limits(5, 6, t1)),
        vec![AcquiredRange {
            first: 5,
            last: 5,
            deliveries: 3
        }]
    );
    assert_eq!(
        p.acknowledge(
            "a",
            &[ack(5, 5, &[AckType::Accept])],
            t1 + Duration::from_secs(31),
            3
        ),
        Err(AckError::NotAcquired(5))
    );
    let t2 = t1 + Duration::from_secs(31);
    assert!(p.acquire(&a, t2, limits(5, 6, t2)).is_empty());
    assert_eq!((p.start(), p.end()), (7, 7));
}

#[test]
fn malformed_acknowledgements_are_refused() {
    let a: Arc<str> = Arc::from("a");
    let now = Instant::now();
    let mut p = SharePartition::starting_at(0);
    p.acquire(&a, now, limits(4, 3, now));
    assert!(matches!(
        p.acknowledge("a", &[ack(2, 1, &[AckType::Accept])], now, 3),
        Err(AckError::Invalid(_))
    ));
    assert!(matches!(
        p.acknowledge(
            "a",
            &[ack(0, 3, &[AckType::Accept, AckType::Accept])],
            now,
            3
        ),
        Err(AckError::Invalid(_))
    ));
    assert!(matches!(
        p.acknowledge("a", &[ack(i64::MIN, i64::MAX, &[AckType::Accept])], now, 3),
        Err(AckError::Invalid(_))
    ));
    assert_eq!(p.acquired_count(now), 4);
}

#[test]
fn the_window_is_bounded_and_skips_deleted_records() {
    let a: Arc<str> = Arc::from("a");
    let now = Instant::now();
    let mut p = SharePartition::starting_at(0);
    let mut l = limits(1000, 999, now);
    l.max_window = 10;
    assert_eq!(p.acquire(&a, now, l).first().map(|r| r.last), Some(9));
    assert_eq!(p.first_acquirable(now, 1000, 10), None);
    assert!(p.release_member("a", 3));
    assert_eq!(p.first_acquirable(now, 1000, 10), Some(0));
    p.skip_to(4);
    assert_eq!((p.start(), p.end()), (4, 10));
    p.skip_to(50);
    assert_eq!((p.start(), p.end()), (50, 50));
}
