//! Consumer groups and committed offsets: Kafka's classic group protocol (JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup) as a state machine owned by the broker, plus a
//! durable store of committed offsets.
//!
//! The [`GroupCoordinator`] is called by the wire handlers *and* in-process (the agent
//! runtime puts its members into the same groups as wire clients), so nothing here knows
//! about connections: a member lives until it leaves or its session times out, and a
//! dropped connection is noticed only by the missing heartbeats, as in Kafka.
//!
//! Every operation has its own error enum whose variants are exactly the Kafka errors
//! that operation can return; `code()` gives the wire code.

mod admin;
mod classic;
mod commit;
mod coordinator;
mod migration;
mod offsets;
pub mod subscription;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

pub use admin::OffsetDeleteResult;
pub use classic::{JoinWait, SyncWait};
pub use commit::PendingCommit;
pub use consumer::{
    Assignment, ConsumerDescribeError, ConsumerGroupDescription, ConsumerGroupState,
    ConsumerHeartbeat, ConsumerHeartbeatError, ConsumerHeartbeatOutcome, ConsumerMemberDescription,
    TopicCatalog,
};
pub use coordinator::GroupCoordinator;
pub use offsets::{CommittedOffset, OffsetStoreError};

/// Largest `committed_metadata` accepted, as Kafka's `offset.metadata.max.bytes` default.
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;

/// Where a group is in its rebalance cycle (Kafka's `ClassicGroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; may still hold committed offsets.
    Empty,
    /// Waiting for every member to (re)join before a new generation starts.
    PreparingRebalance,
    /// A generation started; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted; kept only for requests already in flight.
    Dead,
}

impl GroupState {
    /// The name Kafka uses in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, from the wire or in-process.
#[derive(Debug, Clone, Default)]
pub struct JoinParams {
    /// The group.
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// Set for a static member (`group.instance.id`).
    pub group_instance_id: Option<String>,
    /// The client's id, reported by DescribeGroups and used in generated member ids.
    pub client_id: String,
    /// The client's address, reported by DescribeGroups.
    pub client_host: String,
    /// How long the member may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// How long a rebalance waits for this member to rejoin.
    pub rebalance_timeout_ms: i32,
    /// The protocol family, `consumer` for Kafka consumers.
    pub protocol_type: String,
    /// Assignors the member supports, most preferred first, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

/// One member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    /// Its member id.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// A successful JoinGroup.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinOutcome {
    /// The generation the member is now part of.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected assignor.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member, for the leader only.
    pub members: Vec<JoinedMember>,
    /// A static leader rejoined a stable group: it must not compute a new assignment.
    pub skip_assignment: bool,
}

/// Why a JoinGroup failed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum JoinError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The session timeout is outside the broker's allowed range.
    #[error("session timeout outside the allowed range")]
    InvalidSessionTimeout,
    /// No protocol type or no protocol in common with the group.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// The member id is not known to the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// JoinGroup v4+: rejoin with this member id.
    #[error("member id required")]
    MemberIdRequired {
        /// The id to rejoin with.
        member_id: String,
    },
    /// Another process took over this static member's instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The group is being deleted.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// The member sent a new JoinGroup before this one was answered.
    #[error("rebalance in progress")]
    RebalanceInProgress,
}

/// A SyncGroup request.
#[derive(Debug, Clone, Default)]
pub struct SyncParams {
    /// The group.
    pub group_id: String,
    /// The generation the member believes it is in.
    pub generation_id: i32,
    /// The member.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// v5+: checked against the group's.
    pub protocol_type: Option<String>,
    /// v5+: checked against the selected protocol.
    pub protocol_name: Option<String>,
    /// From the leader: every member's assignment.
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful SyncGroup.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected assignor.
    pub protocol_name: Option<String>,
    /// This member's assignment, opaque to the broker.
    pub assignment: Bytes,
}

/// Why a SyncGroup failed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum SyncError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The group or member is not known.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The generation is not the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// Another process took over this static member's instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// A new rebalance started; rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// Protocol type or name do not match the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// The group is being deleted.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
}

/// A Heartbeat request.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatParams {
    /// The group.
    pub group_id: String,
    /// The generation the member believes it is in.
    pub generation_id: i32,
    /// The member.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
}

/// Why a Heartbeat failed (REBALANCE_IN_PROGRESS tells the member to rejoin).
#[derive(Debug, Clone, Error, PartialEq)]
pub enum HeartbeatError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The group or member is not known.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The generation is not the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// Another process took over this static member's instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// A rebalance is under way; rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The group is being deleted.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
}

/// One member leaving (LeaveGroup v3+ batches them).
#[derive(Debug, Clone, Default)]
pub struct LeavingMember {
    /// Its member id (may be empty for a static member named by instance id).
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
}

/// Why one member could not leave.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum LeaveMemberError {
    /// Not a member.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The instance id belongs to another member id.
    #[error("fenced instance id")]
    FencedInstanceId,
}

/// Why a LeaveGroup failed as a whole.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum LeaveError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The group is being deleted.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
}

/// One partition's offset to commit.
#[derive(Debug, Clone, Default)]
pub struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// Free text from the client.
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, Default)]
pub struct CommitParams {
    /// The group.
    pub group_id: String,
    /// The member's generation, or -1 for a standalone (not group-managed) consumer.
    pub generation_id: i32,
    /// The member, or empty for a standalone consumer.
    pub member_id: String,
    /// Its static instance id.
    pub group_instance_id: Option<String>,
    /// What to commit.
    pub offsets: Vec<CommitOffset>,
}

/// Why an OffsetCommit was refused for every partition.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum CommitError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The member is not in the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The commit comes from another generation (a member that was rebalanced out).
    #[error("illegal generation")]
    IllegalGeneration,
    /// A consumer-protocol member committed with an epoch not its current one.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    /// Another process took over this static member's instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The group is waiting for its new assignment.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The group is being deleted.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
    /// The offsets could not be made durable.
    #[error("offset store failed: {0}")]
    Storage(String),
}

/// Why TxnOffsetCommit's group check (KIP-447) refused a transactional producer.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum TxnMemberError {
    /// The member id names nobody in the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The consumer was rebalanced out: its generation is not the group's.
    #[error("illegal generation")]
    IllegalGeneration,
    /// Another process took over this static member's instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The group is being deleted.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
}

/// Why one partition's commit was refused.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum CommitPartitionError {
    /// The metadata text is longer than [`MAX_OFFSET_METADATA_BYTES`].
    #[error("offset metadata too large")]
    MetadataTooLarge,
}

/// Why an OffsetFetch failed for a whole group.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum FetchOffsetsError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// OffsetFetch v9+ from a member the consumer group does not know.
    #[error("unknown member id")]
    UnknownMemberId,
    /// OffsetFetch v9+ from a member whose epoch is not its current one.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    /// OffsetFetch v9+ from a classic member of a consumer group whose generation is
    /// not its member epoch.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The offset store could not be read.
    #[error("offset store failed: {0}")]
    Storage(String),
}

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupListing {
    /// Its id.
    pub group_id: String,
    /// Its protocol type (empty for groups that only store offsets).
    pub protocol_type: String,
    /// Its state's name (classic: [`GroupState::name`]; consumer:
    /// [`ConsumerGroupState::name`]).
    pub state: &'static str,
    /// `classic` or `consumer` (ListGroups v5).
    pub group_type: &'static str,
}

/// One member in DescribeGroups.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the selected protocol (empty unless Stable, as in Kafka).
    pub metadata: Bytes,
    /// Current assignment (empty unless Stable, as in Kafka).
    pub assignment: Bytes,
}

/// A group in DescribeGroups.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    /// Its id.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// Its protocol type.
    pub protocol_type: String,
    /// The selected protocol while Stable, else empty.
    pub protocol: String,
    /// Its members.
    pub members: Vec<MemberDescription>,
    /// Current generation.
    pub generation_id: i32,
}

/// Why DescribeGroups found nothing.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum DescribeError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// No such group.
    #[error("group id not found")]
    GroupIdNotFound,
}

/// Why a group could not be deleted.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum DeleteGroupError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// No such group.
    #[error("group id not found")]
    GroupIdNotFound,
    /// It still has members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// Its offsets could not be removed.
    #[error("offset store failed: {0}")]
    Storage(String),
}

/// Why OffsetDelete failed for the whole group.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum DeleteOffsetsError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// No such group.
    #[error("group id not found")]
    GroupIdNotFound,
    /// A non-consumer group with members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// The offsets could not be removed.
    #[error("offset store failed: {0}")]
    Storage(String),
}

/// Why one partition's offset was not deleted.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum DeleteOffsetPartitionError {
    /// An active member is subscribed to the topic.
    #[error("group subscribed to topic")]
    GroupSubscribedToTopic,
}

/// Settings the coordinator reads from the broker configuration.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `offsets.retention.minutes`.
    pub offsets_retention: Duration,
    /// `group.consumer.heartbeat.interval.ms`: how often consumer-protocol members
    /// heartbeat (and so how soon they learn of a new assignment).
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`: a consumer-protocol member is removed after
    /// this long without a heartbeat.
    pub consumer_session_timeout_ms: i32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            initial_rebalance_delay: Duration::from_millis(3000),
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            consumer_heartbeat_interval_ms: 5000,
            consumer_session_timeout_ms: 45000,
        }
    }
}

macro_rules! codes {
    ($ty:ty { $($variant:ident $(($($skip:tt)*))? $({$($skip2:tt)*})? => $code:ident),* $(,)? }) => {
        impl $ty {
            /// The Kafka error code on the wire.
            pub fn code(&self) -> i16 {
                match self {
                    $(Self::$variant $(($($skip)*))? $({$($skip2)*})? => kafka_protocol::error::ResponseError::$code.code(),)*
                }
            }
        }
    };
}

codes!(JoinError {
    InvalidGroupId => InvalidGroupId,
    InvalidSessionTimeout => InvalidSessionTimeout,
    InconsistentGroupProtocol => InconsistentGroupProtocol,
    UnknownMemberId => UnknownMemberId,
    MemberIdRequired { .. } => MemberIdRequired,
    FencedInstanceId => FencedInstanceId,
    CoordinatorNotAvailable => CoordinatorNotAvailable,
    RebalanceInProgress => RebalanceInProgress,
});
codes!(SyncError {
    InvalidGroupId => InvalidGroupId,
    UnknownMemberId => UnknownMemberId,
    IllegalGeneration => IllegalGeneration,
    FencedInstanceId => FencedInstanceId,
    RebalanceInProgress => RebalanceInProgress,
    InconsistentGroupProtocol => InconsistentGroupProtocol,
    CoordinatorNotAvailable => CoordinatorNotAvailable,
});
codes!(HeartbeatError {
    InvalidGroupId => InvalidGroupId,
    UnknownMemberId => UnknownMemberId,
    IllegalGeneration => IllegalGeneration,
    FencedInstanceId => FencedInstanceId,
    RebalanceInProgress => RebalanceInProgress,
    CoordinatorNotAvailable => CoordinatorNotAvailable,
});
codes!(LeaveMemberError {
    UnknownMemberId => UnknownMemberId,
    FencedInstanceId => FencedInstanceId,
});
codes!(LeaveError {
    InvalidGroupId => InvalidGroupId,
    CoordinatorNotAvailable => CoordinatorNotAvailable,
});
codes!(CommitError {
    InvalidGroupId => InvalidGroupId,
    UnknownMemberId => UnknownMemberId,
    IllegalGeneration => IllegalGeneration,
    StaleMemberEpoch => StaleMemberEpoch,
    FencedInstanceId => FencedInstanceId,
    RebalanceInProgress => RebalanceInProgress,
    CoordinatorNotAvailable => CoordinatorNotAvailable,
    Storage(_) => KafkaStorageError,
});
codes!(TxnMemberError {
    UnknownMemberId => UnknownMemberId,
    IllegalGeneration => IllegalGeneration,
    FencedInstanceId => FencedInstanceId,
    CoordinatorNotAvailable => CoordinatorNotAvailable,
});
codes!(CommitPartitionError {
    MetadataTooLarge => OffsetMetadataTooLarge,
});
codes!(FetchOffsetsError {
    InvalidGroupId => InvalidGroupId,
    UnknownMemberId => UnknownMemberId,
    StaleMemberEpoch => StaleMemberEpoch,
    IllegalGeneration => IllegalGeneration,
    Storage(_) => KafkaStorageError,
});
codes!(DescribeError {
    InvalidGroupId => InvalidGroupId,
    GroupIdNotFound => GroupIdNotFound,
});
codes!(DeleteGroupError {
    InvalidGroupId => InvalidGroupId,
    GroupIdNotFound => GroupIdNotFound,
    NonEmptyGroup => NonEmptyGroup,
    Storage(_) => KafkaStorageError,
});
codes!(DeleteOffsetsError {
    InvalidGroupId => InvalidGroupId,
    GroupIdNotFound => GroupIdNotFound,
    NonEmptyGroup => NonEmptyGroup,
    Storage(_) => KafkaStorageError,
});
codes!(DeleteOffsetPartitionError {
    GroupSubscribedToTopic => GroupSubscribedToTopic,
});

// After `codes!`, which it uses.
pub mod consumer;
