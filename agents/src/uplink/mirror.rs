//! The local side of a `direction = "down"` uplink: the local partitions remote records
//! are mirrored into, and the progress they carry.
//!
//! # Where the progress lives, and why there
//!
//! Remote partition `p` of topic `t` is mirrored into partition `p` of local topic
//! `rename_prefix + t`, and every mirrored record carries its origin in headers
//! (`origin.site` = the uplink's name, `origin.topic`, `origin.partition`,
//! `origin.offset`). The records fetched from one remote partition in one round are
//! appended as **one** local record batch, and appending one batch is atomic: after a
//! SIGKILL, log recovery keeps a batch whole or cuts it off as a torn tail. So the
//! records and the progress they carry are written by the same single append and can
//! never disagree. On every session start (a process start, or the session after a
//! link cut) the uplink reads the last record it mirrored into each local partition and
//! resumes the remote partition at that record's `origin.offset + 1`: nothing
//! acknowledged locally is fetched again (no duplicates), and nothing is skipped (no
//! loss). A record is also dropped if its remote offset is below the resume point, so
//! a redelivery by the remote client cannot duplicate either.
//!
//! A separate progress store (a local transaction writing records and progress, or a
//! group's committed offsets) would need a second write that must be made atomic with
//! the first, and the embedded read path would have to hide the aborted half; keeping
//! the progress inside the batch needs neither. The price is that the last mirrored
//! record must stay readable: the uplink holds it against local retention (with
//! `retain_until_forwarded`), and other producers writing to the same local topic only
//! make the start-up search longer (it walks back from the end until it finds one of
//! the uplink's records).

use std::collections::BTreeMap;
use std::sync::Arc;

use agentlog_broker::partition::Partition;
use agentlog_broker::Broker;
use bytes::Bytes;
use kafka_protocol::records::Compression as Codec;
use thiserror::Error;

use crate::event::{Event, OutRecord};
use crate::records;

/// Header naming the uplink a mirrored record came through (for down, the remote side).
pub const ORIGIN_SITE: &str = "origin.site";
/// Header holding the remote topic.
pub const ORIGIN_TOPIC: &str = "origin.topic";
/// Header holding the remote partition.
pub const ORIGIN_PARTITION: &str = "origin.partition";
/// Header holding the remote offset: the progress.
pub const ORIGIN_OFFSET: &str = "origin.offset";

/// Most bytes read per step while looking for the last mirrored record.
const SCAN_READ_BYTES: usize = 1 << 20;

/// Mirroring into the local broker failed; the session ends and the next one resumes
/// from what the local log holds.
#[derive(Debug, Error)]
pub enum MirrorError {
    /// The local topic could not be created or grown.
    #[error("local topic `{topic}`: {reason}")]
    Topic {
        /// The local topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// The local free-disk guard refuses writes.
    #[error("local disk below log.disk.free.min.bytes: mirroring paused")]
    DiskLow,
    /// Encoding or appending the batch failed.
    #[error("appending to local `{topic}`-{partition}: {reason}")]
    Append {
        /// The local topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Why.
        reason: String,
    },
}

/// A remote record about to be mirrored.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its offset on the remote partition.
    pub offset: i64,
    /// The record, origin headers not yet added.
    pub record: OutRecord,
}

/// The local partitions of one local topic, creating or growing the topic so that it
/// has at least `partitions` (the remote topic's count, partition `p` to `p`).
pub fn local_partitions(
    broker: &Broker,
    topic: &str,
    partitions: i32,
) -> Result<Vec<Arc<Partition>>, MirrorError> {
    let error = |reason: String| MirrorError::Topic {
        topic: topic.to_string(),
        reason,
    };
    let found = match broker.topics.get(topic) {
        Some(found) if found.partitions.len() as i32 >= partitions => found,
        Some(_) => broker
            .topics
            .create_partitions(topic, partitions, false)
            .map_err(|e| error(e.to_string()))?,
        None => broker
            .topics
            .create(topic, partitions, BTreeMap::new())
            .map_err(|e| error(e.to_string()))?,
    };
    Ok(found.partitions.clone())
}

/// The last header named `name` (a mirrored record may carry origin headers of an
/// earlier hop before the uplink's own, which come last).
fn last_header<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .headers
        .iter()
        .rev()
        .find(|h| h.name.as_ref() == name.as_bytes())
        .and_then(|h| h.value.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The remote offset after `event` if this uplink mirrored it from `remote_topic`.
fn mirrored_next(event: &Event, uplink: &str, remote_topic: &str) -> Option<i64> {
    if last_header(event, ORIGIN_SITE) != Some(uplink)
        || last_header(event, ORIGIN_TOPIC) != Some(remote_topic)
    {
        return None;
    }
    last_header(event, ORIGIN_OFFSET)?
        .parse::<i64>()
        .ok()
        .map(|o| o + 1)
}

/// The last record this uplink mirrored into a local partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The remote offset to go on from (its `origin.offset` + 1).
    pub remote_next: i64,
    /// Its local offset (held against retention: it is the progress).
    pub local_offset: i64,
}

/// Where to resume remote partition `remote_topic`-`p` mirrored into `local`, or
/// `None` if it holds no record of this uplink's from there. Walks back from the log
/// end in growing steps, so the usual case (the uplink is the topic's only writer)
/// reads one batch.
pub fn resume_offset(
    local: &Partition,
    local_topic: &str,
    uplink: &str,
    remote_topic: &str,
) -> Option<Resume> {
    let topic: Arc<str> = Arc::from(local_topic);
    let end = local.log.log_end_offset();
    let mut span = 1i64;
    let mut events = Vec::new();
    loop {
        let start = local.log.log_start_offset();
        let from = (end - span).max(start);
        let mut position = from;
        let mut found = None;
        while position < end {
            let Ok(read) = local.log.read(position, SCAN_READ_BYTES) else {
                break;
            };
            if read.bytes.is_empty() {
                break;
            }
            events.clear();
            let next =
                records::decode_batches(&topic, local.index, &read.bytes, position, &mut events);
            for event in events.iter().filter(|e| e.offset < end) {
                if let Some(remote_next) = mirrored_next(event, uplink, remote_topic) {
                    found = Some(Resume {
                        remote_next,
                        local_offset: event.offset,
                    });
                }
            }
            if next <= position {
                break;
            }
            position = next;
        }
        if found.is_some() || from <= start {
            return found;
        }
        span = span.saturating_mul(8);
    }
}

/// Appends `fetched` (in remote offset order, from `remote_topic`-`partition`) to
/// `local` as one batch with origin headers; returns the local offset of its last
/// record once durable.
pub async fn append(
    broker: &Broker,
    local: &Partition,
    local_topic: &str,
    uplink: &str,
    remote_topic: &str,
    fetched: Vec<Fetched>,
) -> Result<i64, MirrorError> {
    let error = |reason: String| MirrorError::Append {
        topic: local_topic.to_string(),
        partition: local.index,
        reason,
    };
    if broker.lifecycle.disk_low() {
        return Err(MirrorError::DiskLow);
    }
    let partition_text = Bytes::from(local.index.to_string());
    let records: Vec<OutRecord> = fetched
        .into_iter()
        .map(|f| {
            let mut record = f.record;
            record.headers.extend([
                (ORIGIN_SITE.to_string(), Bytes::from(uplink.to_string())),
                (
                    ORIGIN_TOPIC.to_string(),
                    Bytes::from(remote_topic.to_string()),
                ),
                (ORIGIN_PARTITION.to_string(), partition_text.clone()),
                (ORIGIN_OFFSET.to_string(), Bytes::from(f.offset.to_string())),
            ]);
            record
        })
        .collect();
    let batch = records::encode_batch(&records, Codec::None).map_err(|e| error(e.to_string()))?;
    // Through the partition, like a wire produce, so its producer state stays in step.
    let appended = local
        .append(batch, None)
        .map_err(|e| error(e.to_string()))?;
    local
        .log
        .wait_durable(appended.last_offset + 1)
        .await
        .map_err(|e| error(e.to_string()))?;
    Ok(appended.last_offset)
}
