//! One resource per topic, `agentlog://topics/<name>`: reading it gives the topic's
//! description and its latest records (a few from each partition, within
//! `mcp.server.max.records`), so a client can attach a topic to a conversation as it is
//! now.

use agentlog_agents::StartAt;
use rmcp::model::{ReadResourceResult, Resource, ResourceContents};
use rmcp::ErrorData;
use serde_json::json;

use super::{scan, McpServer, ToolError};

/// The URI of every topic resource starts with this.
const URI_PREFIX: &str = "agentlog://topics/";

/// Records shown from each partition at most (fewer when `max.records` is smaller).
const LATEST_PER_PARTITION: i64 = 10;

impl McpServer {
    /// Every topic as a resource, by name; none without an in-process broker.
    pub(super) fn topic_resources(&self) -> Vec<Resource> {
        let Ok(backend) = self.backend() else {
            return Vec::new();
        };
        let mut topics = backend.broker().topics.list();
        topics.sort_by(|a, b| a.name().cmp(b.name()));
        topics
            .iter()
            .take(self.settings.max_records)
            .map(|topic| {
                Resource::new(format!("{URI_PREFIX}{}", topic.name()), topic.name())
                    .with_description(format!(
                        "Kafka topic with {} partitions: its description and latest records",
                        topic.partitions.len()
                    ))
                    .with_mime_type("application/json")
            })
            .collect()
    }

    /// The resource at `uri`: a topic's description and latest records as JSON.
    pub(super) async fn read_topic_resource(
        &self,
        uri: &str,
    ) -> Result<ReadResourceResult, ErrorData> {
        let not_found =
            |why: String| ErrorData::resource_not_found(why, Some(json!({ "uri": uri })));
        let Some(name) = uri.strip_prefix(URI_PREFIX) else {
            return Err(not_found(format!(
                "unknown resource {uri:?}: topics are {URI_PREFIX}<name>"
            )));
        };
        let description = match self.topic_description(name) {
            Ok(description) => description,
            Err(error @ ToolError::UnknownTopic(_)) => return Err(not_found(error.to_string())),
            Err(error) => return Err(ErrorData::internal_error(error.to_string(), None)),
        };
        let latest = self
            .latest_records(name)
            .await
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        let text = json!({ "topic": description, "latest": latest }).to_string();
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            text, uri,
        )
        .with_mime_type("application/json")]))
    }

    /// The last few records of each partition of `topic`, within the record limit.
    async fn latest_records(&self, topic_name: &str) -> Result<serde_json::Value, ToolError> {
        let backend = self.backend()?;
        let topic = backend
            .broker()
            .topics
            .get(topic_name)
            .ok_or_else(|| ToolError::UnknownTopic(topic_name.to_string()))?;
        let limit = self.settings.max_records;
        let per_partition = LATEST_PER_PARTITION.min(i64::try_from(limit).unwrap_or(i64::MAX));
        let mut events = Vec::new();
        for partition in &topic.partitions {
            let from = (partition.log.high_watermark() - per_partition).max(0);
            let from = StartAt::Offset(from);
            scan::collect(
                backend,
                topic_name,
                partition.index,
                from,
                limit,
                &mut events,
            )
            .await?;
        }
        // Half the budget: the description shares the result.
        let mut shown = self.records_result(topic_name, &events, self.settings.max_bytes / 2);
        if let Some(object) = shown.as_object_mut() {
            object.remove("topic");
        }
        Ok(shown)
    }
}
