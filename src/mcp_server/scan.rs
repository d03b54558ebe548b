//! Bounded reads of one partition, for `read`, `search_decisions` and the topic
//! resources: the embedded backend streams the records, the caller says when it has
//! enough, and dropping the stream stops the reader.

use std::ops::ControlFlow;

use agentlog_agents::backend::ReadError;
use agentlog_agents::{EmbeddedBackend, Event, StartAt};

use super::ToolError;

/// Hands `visit` the records of `topic`-`partition` from `from` up to the end, until it
/// breaks. Returns whether `visit` broke (it may have left records unread).
pub async fn partition(
    backend: &EmbeddedBackend,
    topic: &str,
    partition: i32,
    from: StartAt,
    mut visit: impl FnMut(Event) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, ToolError> {
    let mut stream = backend
        .read_partition(topic, partition, from)
        .map_err(read_error)?;
    while let Some(event) = stream.next().await {
        if visit(event.map_err(read_error)?).is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

fn read_error(error: ReadError) -> ToolError {
    match error {
        ReadError::UnknownTopic(topic) => ToolError::UnknownTopic(topic),
        other => ToolError::Broker(other.to_string()),
    }
}

/// Appends records of `topic`-`partition` from `from` to `events` until it holds `limit`.
pub async fn collect(
    backend: &EmbeddedBackend,
    topic: &str,
    partition_index: i32,
    from: StartAt,
    limit: usize,
    events: &mut Vec<Event>,
) -> Result<(), ToolError> {
    if events.len() >= limit {
        return Ok(());
    }
    partition(backend, topic, partition_index, from, |event| {
        events.push(event);
        if events.len() >= limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await
    .map(drop)
}
