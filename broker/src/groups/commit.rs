//! Committed offsets through the coordinator: OffsetCommit (checked against the classic
//! group's generation or the consumer group's member epoch), transactional offsets,
//! OffsetFetch, and the durability handshake ([`PendingCommit`]).

use std::collections::HashMap;

use super::classic::Group;
use super::consumer::admin as consumer_admin;
use super::coordinator::{lock, valid_group_id};
use super::offsets::{now_ms, OffsetStore, OffsetStoreError};
use super::*;

/// Offsets written and waiting to be made durable: await [`PendingCommit::durable`]
/// before acknowledging, so an acknowledged commit is never lost.
#[derive(Debug)]
pub struct PendingCommit {
    store: Option<OffsetStore>,
    results: Vec<Result<(), CommitPartitionError>>,
}

impl PendingCommit {
    /// Per-partition results, in request order, once the offsets are on disk.
    pub async fn durable(self) -> Result<Vec<Result<(), CommitPartitionError>>, CommitError> {
        if let Some(store) = self.store {
            store
                .flush()
                .await
                .map_err(|e| CommitError::Storage(e.to_string()))?;
        }
        Ok(self.results)
    }
}

impl GroupCoordinator {
    /// OffsetCommit's checks against a classic group (creating one for a standalone
    /// committer); returns the group's id.
    pub(in crate::groups) fn check_classic_commit(
        &self,
        groups: &mut HashMap<String, Group>,
        params: &CommitParams,
    ) -> Result<String, CommitError> {
        let group = match groups.get_mut(&params.group_id) {
            Some(group) => group,
            None if params.generation_id < 0 => {
                // Not group-managed: the group exists only to hold offsets.
                groups
                    .entry(params.group_id.clone())
                    .or_insert_with(|| Group::new(&params.group_id))
            }
            None => return Err(CommitError::IllegalGeneration),
        };
        if group.state == GroupState::Dead {
            return Err(CommitError::CoordinatorNotAvailable);
        }
        if group.is_fenced(params.group_instance_id.as_deref(), &params.member_id) {
            return Err(CommitError::FencedInstanceId);
        }
        if !(params.generation_id < 0 && group.state == GroupState::Empty) {
            if group.state == GroupState::CompletingRebalance {
                return Err(CommitError::RebalanceInProgress);
            }
            let generation = group.generation;
            let Some(member) = group.members.get_mut(&params.member_id) else {
                return Err(CommitError::UnknownMemberId);
            };
            if params.generation_id != generation {
                return Err(CommitError::IllegalGeneration);
            }
            member.reset_deadline();
        }
        Ok(group.id.clone())
    }

    /// OffsetCommit: validates the committer as Kafka does and writes the offsets; await
    /// [`PendingCommit::durable`] before acknowledging.
    pub fn begin_commit(&self, params: CommitParams) -> Result<PendingCommit, CommitError> {
        if !valid_group_id(&params.group_id) {
            return Err(CommitError::InvalidGroupId);
        }
        let mut groups = lock(&self.inner);
        let consumer = consumer_admin::check_commit(
            &self.inner,
            &params.group_id,
            &params.member_id,
            params.generation_id,
        );
        let mut classic = None;
        if consumer.is_none() {
            classic = Some(self.check_classic_commit(&mut groups, &params)?);
        }
        let record = match consumer {
            Some(checked) => Some(checked?),
            None => None,
        };
        let now = now_ms();
        let mut results = Vec::with_capacity(params.offsets.len());
        let mut accepted = Vec::with_capacity(params.offsets.len());
        for offset in params.offsets {
            if offset
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_OFFSET_METADATA_BYTES)
            {
                results.push(Err(CommitPartitionError::MetadataTooLarge));
                continue;
            }
            results.push(Ok(()));
            accepted.push(CommittedOffset {
                topic: offset.topic,
                partition: offset.partition,
                offset: offset.offset,
                leader_epoch: offset.leader_epoch,
                metadata: offset.metadata,
                commit_timestamp_ms: now,
            });
        }
        if accepted.is_empty() {
            return Ok(PendingCommit {
                store: None,
                results,
            });
        }
        let record = match (record, classic.and_then(|id| groups.get_mut(&id))) {
            (Some(record), _) => record,
            (None, Some(group)) => {
                if group.members.is_empty() {
                    // A standalone committer: retention counts from its latest commit.
                    group.empty_since_ms = Some(now);
                }
                group.record()
            }
            (None, None) => return Err(CommitError::CoordinatorNotAvailable),
        };
        let store = &self.inner.store;
        store
            .store(&params.group_id, &accepted)
            .and_then(|()| store.put_group(&params.group_id, &record))
            .map_err(|e| CommitError::Storage(e.to_string()))?;
        Ok(PendingCommit {
            store: Some(store.clone()),
            results,
        })
    }

    /// Applies offsets a transaction committed: TxnOffsetCommit staged them with the
    /// transaction coordinator, and the commit makes them the group's committed offsets.
    /// The committer was checked when they were staged; the caller flushes the store.
    pub fn apply_transactional_offsets(
        &self,
        group_id: &str,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), CommitError> {
        let mut groups = lock(&self.inner);
        let record = match consumer_admin::record_of(&self.inner, group_id) {
            Some(record) => record,
            None => {
                let group = groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id));
                if group.members.is_empty() {
                    group.empty_since_ms = Some(now_ms());
                }
                group.record()
            }
        };
        let store = &self.inner.store;
        store
            .store(group_id, &offsets)
            .and_then(|()| store.put_group(group_id, &record))
            .map_err(|e| CommitError::Storage(e.to_string()))
    }

    /// TxnOffsetCommit's group check (KIP-447). A transactional producer that consumes
    /// in a group sends its consumer's member id and generation (v3+), so that a zombie
    /// whose consumer was rebalanced out cannot commit offsets for partitions another
    /// member now owns. As in Kafka, an empty member id or a negative generation skips
    /// that part of the check (clients before v3 send neither). The offsets themselves
    /// are staged with the transaction and written when it commits.
    pub fn check_txn_member(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), TxnMemberError> {
        let groups = lock(&self.inner);
        if let Some(checked) =
            consumer_admin::check_txn_member(&self.inner, group_id, generation_id, member_id)
        {
            return checked;
        }
        let Some(group) = groups.get(group_id) else {
            // No group yet: only an anonymous commit can be right about it.
            return match member_id.is_empty() {
                true => Ok(()),
                false => Err(TxnMemberError::UnknownMemberId),
            };
        };
        if group.state == GroupState::Dead {
            return Err(TxnMemberError::CoordinatorNotAvailable);
        }
        if group.is_fenced(group_instance_id, member_id) {
            return Err(TxnMemberError::FencedInstanceId);
        }
        if !member_id.is_empty() && !group.members.contains_key(member_id) {
            return Err(TxnMemberError::UnknownMemberId);
        }
        if generation_id >= 0 && generation_id != group.generation {
            return Err(TxnMemberError::IllegalGeneration);
        }
        Ok(())
    }

    /// OffsetCommit, acknowledged once durable.
    pub async fn commit_offsets(
        &self,
        params: CommitParams,
    ) -> Result<Vec<Result<(), CommitPartitionError>>, CommitError> {
        self.begin_commit(params)?.durable().await
    }

    /// OffsetFetch: the group's committed offsets, all of them (`None`) or the asked-for
    /// partitions (offset -1 where nothing is committed, as Kafka answers).
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<CommittedOffset>, FetchOffsetsError> {
        self.fetch_offsets_now(group_id, partitions)
    }

    /// OffsetFetch without the async wrapper (it never waits).
    pub fn fetch_offsets_now(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<CommittedOffset>, FetchOffsetsError> {
        if !valid_group_id(group_id) {
            return Err(FetchOffsetsError::InvalidGroupId);
        }
        let store = &self.inner.store;
        let storage = |e: OffsetStoreError| FetchOffsetsError::Storage(e.to_string());
        match partitions {
            None => store.group_offsets(group_id).map_err(storage),
            Some(topics) => {
                let mut out = Vec::new();
                for (topic, parts) in topics {
                    for partition in parts {
                        let found = store.get(group_id, &topic, partition).map_err(storage)?;
                        out.push(found.unwrap_or(CommittedOffset {
                            topic: topic.clone(),
                            partition,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: None,
                            commit_timestamp_ms: -1,
                        }));
                    }
                }
                Ok(out)
            }
        }
    }

    /// Committed offsets of one group, for lag metrics: (topic, partition) -> offset.
    pub fn committed(&self, group_id: &str) -> Vec<CommittedOffset> {
        self.inner.store.group_offsets(group_id).unwrap_or_default()
    }
}
