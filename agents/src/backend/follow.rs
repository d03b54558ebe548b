//! Following a topic in a private group: every process sees every record.
//!
//! Why a group subscription ([`Backend::subscribe`]) under a group of its own per
//! process, rather than a shared group or `read_topic` tailing: replies and broadcast
//! notifications must reach every process that may be waiting for them, and nothing
//! ties a topic's partitions to one process, so each process reads everything and
//! keeps what concerns it (a shared group would split the records). A subscription
//! long-polls on both backends (the embedded log's watch, librdkafka's fetch), where
//! tailing with `read_topic` would poll a fresh range read at a fixed interval. The
//! group is new at each start and commits nothing, so it starts at the earliest
//! retained record.

use std::sync::Weak;
use std::time::Duration;

use super::{Backend, Source};
use crate::event::Event;

/// Follows `topics` in a new group named `<prefix>.<uuid>`, handing each poll's
/// records to `deliver` for as long as `target` is alive; leaves the group once it is
/// gone.
pub(crate) fn follow<B, T, F>(
    backend: B,
    prefix: &str,
    topics: Vec<String>,
    target: Weak<T>,
    deliver: F,
) where
    B: Backend,
    T: Send + Sync + 'static,
    F: Fn(&T, &[Event]) + Send + 'static,
{
    let group = format!("{prefix}.{}", uuid::Uuid::new_v4().simple());
    tokio::spawn(async move {
        'member: while target.strong_count() > 0 {
            let mut source = match backend.subscribe(&group, &topics, &group).await {
                Ok(source) => source,
                Err(error) => {
                    tracing::warn!(%group, %error, "follower cannot join; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            loop {
                let events = match source.poll(Duration::from_millis(200)).await {
                    Ok(events) => events,
                    Err(error) => {
                        tracing::warn!(%group, %error, "follower poll failed; rejoining");
                        source.close().await;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue 'member;
                    }
                };
                let Some(target) = target.upgrade() else {
                    break;
                };
                if !events.is_empty() {
                    deliver(&target, &events);
                }
            }
            source.close().await;
            break;
        }
    });
}
