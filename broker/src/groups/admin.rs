//! Group administration: ListGroups, DescribeGroups, DeleteGroups, OffsetDelete and the
//! periodic expiry of abandoned groups' offsets, over both group types.

use bytes::Bytes;

use super::consumer::admin as consumer_admin;
use super::coordinator::{lock, valid_group_id};
use super::offsets::{now_ms, OffsetStoreError};
use super::subscription::subscribed_topics;
use super::*;

/// One partition's outcome in OffsetDelete: topic, partition, result.
pub type OffsetDeleteResult = (String, i32, Result<(), DeleteOffsetPartitionError>);

impl GroupCoordinator {
    /// ListGroups, filtered by state names and group types (case-insensitive; empty
    /// filters match everything; every group here is of type `classic`).
    pub fn list(&self, states: &[String], types: &[String]) -> Vec<GroupListing> {
        let mut out = consumer_admin::listings(&self.inner, states, types);
        if types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("classic")) {
            let groups = lock(&self.inner);
            out.extend(
                groups
                    .values()
                    .filter(|g| g.state != GroupState::Dead)
                    .filter(|g| {
                        states.is_empty()
                            || states
                                .iter()
                                .any(|s| s.eq_ignore_ascii_case(g.state.name()))
                    })
                    .map(|g| GroupListing {
                        group_id: g.id.clone(),
                        protocol_type: g.protocol_type.clone().unwrap_or_default(),
                        state: g.state.name(),
                        group_type: "classic",
                    }),
            );
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DescribeGroups for one group.
    pub fn describe(&self, group_id: &str) -> Result<GroupDescription, DescribeError> {
        if !valid_group_id(group_id) {
            return Err(DescribeError::InvalidGroupId);
        }
        let groups = lock(&self.inner);
        let group = groups
            .get(group_id)
            .filter(|g| g.state != GroupState::Dead)
            .ok_or(DescribeError::GroupIdNotFound)?;
        let stable = group.state == GroupState::Stable;
        Ok(GroupDescription {
            group_id: group.id.clone(),
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                group.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            generation_id: group.generation,
            members: group
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(group.protocol_name.as_deref())
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// DeleteGroups for one group: only an empty group may go, with all its offsets.
    pub async fn delete(&self, group_id: &str) -> Result<(), DeleteGroupError> {
        self.begin_delete(group_id)?;
        self.inner
            .store
            .flush()
            .await
            .map_err(|e| DeleteGroupError::Storage(e.to_string()))
    }

    /// DeleteGroups' side effects now; await the store's flush (via [`Self::delete`] or
    /// [`Self::flush`]) before acknowledging.
    pub fn begin_delete(&self, group_id: &str) -> Result<(), DeleteGroupError> {
        if !valid_group_id(group_id) {
            return Err(DeleteGroupError::InvalidGroupId);
        }
        let mut groups = lock(&self.inner);
        if let Some(deleted) = consumer_admin::delete(&self.inner, group_id) {
            deleted?;
            return self
                .inner
                .store
                .remove_group(group_id)
                .map_err(|e| DeleteGroupError::Storage(e.to_string()));
        }
        match groups.get(group_id) {
            None => return Err(DeleteGroupError::GroupIdNotFound),
            Some(g) if g.state == GroupState::Dead => {
                return Err(DeleteGroupError::GroupIdNotFound)
            }
            Some(g) if g.state != GroupState::Empty => return Err(DeleteGroupError::NonEmptyGroup),
            Some(_) => {}
        }
        groups.remove(group_id);
        self.inner
            .store
            .remove_group(group_id)
            .map_err(|e| DeleteGroupError::Storage(e.to_string()))
    }

    /// Waits until every change made so far is on disk.
    pub async fn flush(&self) -> Result<(), OffsetStoreError> {
        self.inner.store.flush().await
    }

    /// OffsetDelete: removes some partitions' offsets, refusing topics an active member
    /// of a consumer group subscribes to.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, Vec<i32>)>,
    ) -> Result<Vec<OffsetDeleteResult>, DeleteOffsetsError> {
        let results = self.begin_delete_offsets(group_id, partitions)?;
        self.inner
            .store
            .flush()
            .await
            .map_err(|e| DeleteOffsetsError::Storage(e.to_string()))?;
        Ok(results)
    }

    /// OffsetDelete's side effects now; await [`Self::flush`] before acknowledging.
    pub fn begin_delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, Vec<i32>)>,
    ) -> Result<Vec<OffsetDeleteResult>, DeleteOffsetsError> {
        if !valid_group_id(group_id) {
            return Err(DeleteOffsetsError::InvalidGroupId);
        }
        let results = {
            let groups = lock(&self.inner);
            let consumer_subscribed = consumer_admin::subscribed(&self.inner, group_id);
            let group = groups.get(group_id).filter(|g| g.state != GroupState::Dead);
            if consumer_subscribed.is_none() && group.is_none() {
                return Err(DeleteOffsetsError::GroupIdNotFound);
            }
            let subscribed: Vec<String> = if let Some(topics) = consumer_subscribed {
                topics?
            } else if let Some(group) = group.filter(|g| g.state != GroupState::Empty) {
                if group.protocol_type.as_deref() != Some("consumer") {
                    return Err(DeleteOffsetsError::NonEmptyGroup);
                }
                group
                    .members
                    .values()
                    .flat_map(|m| {
                        // A member whose subscription cannot be read might consume
                        // anything: protect every topic from it.
                        subscribed_topics(&m.metadata(group.protocol_name.as_deref()))
                            .unwrap_or_else(|| vec!["\u{0}*".to_string()])
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut results = Vec::new();
            let mut removable = Vec::new();
            for (topic, parts) in partitions {
                let busy = subscribed.iter().any(|s| *s == topic || s == "\u{0}*");
                for partition in parts {
                    if busy {
                        results.push((
                            topic.clone(),
                            partition,
                            Err(DeleteOffsetPartitionError::GroupSubscribedToTopic),
                        ));
                    } else {
                        removable.push((topic.clone(), partition));
                        results.push((topic.clone(), partition, Ok(())));
                    }
                }
            }
            self.inner
                .store
                .remove(group_id, &removable)
                .map_err(|e| DeleteOffsetsError::Storage(e.to_string()))?;
            results
        };
        Ok(results)
    }

    /// Drops offsets of groups that have had no members for `offsets.retention.minutes`
    /// (standalone committers: since their last commit), and such groups themselves.
    pub fn expire_offsets(&self) {
        let retention =
            i64::try_from(self.inner.settings.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let mut groups = lock(&self.inner);
        let store = &self.inner.store;
        let has_offsets = |id: &str| store.group_offsets(id).is_ok_and(|o| !o.is_empty());
        for id in consumer_admin::expire(&self.inner, retention, now, &has_offsets) {
            tracing::info!(group = %id, "offsets expired; removing consumer group");
            if let Err(error) = store.remove_group(&id) {
                tracing::warn!(group = %id, %error, "cannot remove expired offsets");
            }
        }
        let expired: Vec<String> = groups
            .values()
            .filter(|g| g.state == GroupState::Empty)
            .filter(|g| {
                // Kafka drops an empty group without offsets at once; one with offsets
                // once they expire.
                g.empty_since_ms
                    .is_some_and(|t| now.saturating_sub(t) >= retention)
                    || self
                        .inner
                        .store
                        .group_offsets(&g.id)
                        .is_ok_and(|o| o.is_empty())
            })
            .map(|g| g.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %id, "offsets expired; removing group");
            groups.remove(&id);
            if let Err(error) = self.inner.store.remove_group(&id) {
                tracing::warn!(group = %id, %error, "cannot remove expired offsets");
            }
        }
    }
}
