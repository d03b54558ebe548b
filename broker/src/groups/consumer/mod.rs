//! KIP-848's consumer group protocol: the broker computes assignments, members learn
//! them through ConsumerGroupHeartbeat and reconcile incrementally, one epoch at a time.
//!
//! A group has a *group epoch* (bumped when its members, their subscriptions or the
//! subscribed topics' partitions change), a *target assignment* computed by a server-side
//! assignor at that epoch, and members that each move towards their target at their own
//! pace: a member first revokes what another member is to get (staying at its epoch),
//! then receives the new epoch with whatever partitions are free. No member ever owns a
//! partition another member still owns, and nobody waits for a global barrier as the
//! classic protocol's JoinGroup/SyncGroup does.
//!
//! Everything here is a pure state machine; [`heartbeat`] applies it behind the
//! coordinator's lock, with timers for session and rebalance (revocation) timeouts.

pub(super) mod admin;
pub(super) mod assignor;
pub(super) mod classic_members;
pub(super) mod heartbeat;
pub(super) mod reconcile;
pub(super) mod timer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use indexmap::IndexMap;
use thiserror::Error;
use tokio::time::Instant;
use uuid::Uuid;

use super::offsets::now_ms;

/// Partitions by topic id, as the consumer protocol carries them.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What the coordinator needs to know about topics: ids, names and partition counts.
/// The broker's topic registry implements it; tests use a map.
pub trait TopicCatalog {
    /// A topic by name: its id and partition count.
    fn topic(&self, name: &str) -> Option<(Uuid, i32)>;
    /// A topic's name by id.
    fn name_of(&self, id: Uuid) -> Option<String>;
    /// Every topic name (for regex subscriptions).
    fn names(&self) -> Vec<String>;
}

impl TopicCatalog for crate::topics::TopicRegistry {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self.get(name).map(|t| (t.id(), t.record.partitions))
    }
    fn name_of(&self, id: Uuid) -> Option<String> {
        self.get_by_id(id).map(|t| t.name().to_string())
    }
    fn names(&self) -> Vec<String> {
        self.list().iter().map(|t| t.name().to_string()).collect()
    }
}

/// Member epoch a member sends to leave the group for good.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Member epoch a static member sends to leave temporarily, keeping its assignment
/// until it comes back with the same instance id or its session times out.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// The assignors this broker runs (`group.consumer.assignors`), the first the default.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// Where a member is in its reconciliation (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// At the group's assignment epoch with its whole target.
    Stable,
    /// Must give up partitions before it may move to the next epoch.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

/// A consumer group's state as ListGroups and ConsumerGroupDescribe name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// A new target assignment is to be computed.
    Assigning,
    /// Members are moving to the target assignment.
    Reconciling,
    /// Every member has its target assignment.
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// One member of a consumer group.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub rebalance_timeout: Duration,
    pub session_timeout: Duration,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// Partitions it owns (or is being given) at its epoch.
    pub assigned: Assignment,
    /// Partitions it must give up before moving on.
    pub pending_revocation: Assignment,
    pub session_deadline: Instant,
    /// Set while it must revoke: past it, the member is fenced.
    pub revocation_deadline: Option<Instant>,
    /// A member speaking the classic protocol (JoinGroup, SyncGroup, Heartbeat) in this
    /// group: its protocols, most preferred first, with their metadata.
    pub classic: Option<Vec<(String, bytes::Bytes)>>,
    /// A classic member told to rejoin, or that joined and has yet to sync: fenced past
    /// it (Kafka's consumer-group join and sync timeouts).
    pub classic_deadline: Option<Instant>,
}

impl ConsumerMember {
    pub(crate) fn new(member_id: &str, session_timeout: Duration) -> Self {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            member_epoch: 0,
            previous_epoch: 0,
            state: MemberState::Stable,
            rebalance_timeout: Duration::from_secs(300),
            session_timeout,
            subscribed_names: Vec::new(),
            subscribed_regex: None,
            server_assignor: None,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline: Instant::now() + session_timeout,
            revocation_deadline: None,
            classic: None,
            classic_deadline: None,
        }
    }

    /// Whether it subscribes to this topic (by name or regex).
    pub(crate) fn subscribes(&self, topic: &str) -> bool {
        self.subscribed_names.iter().any(|n| n == topic)
            || self
                .subscribed_regex
                .as_deref()
                .and_then(|r| compile_regex(r).ok())
                .is_some_and(|re| re.is_match(topic))
    }
}

/// A consumer group (KIP-848).
#[derive(Debug)]
pub(crate) struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: IndexMap<String, ConsumerMember>,
    /// Static instance id to member id.
    pub static_members: HashMap<String, String>,
    /// Member id to its target assignment at `assignment_epoch`.
    pub target: HashMap<String, Assignment>,
    /// The subscribed topics as last resolved: name to (id, partitions). A change
    /// (a topic created, grown or deleted) bumps the group epoch.
    pub subscribed_topics: BTreeMap<String, (Uuid, i32)>,
    /// The assignor the last target assignment was computed with.
    pub assignor: String,
    pub empty_since_ms: Option<i64>,
}

impl ConsumerGroup {
    pub(crate) fn new(id: &str) -> Self {
        ConsumerGroup {
            id: id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            target: HashMap::new(),
            subscribed_topics: BTreeMap::new(),
            assignor: ASSIGNORS[0].to_string(),
            empty_since_ms: Some(now_ms()),
        }
    }

    /// The group's state, derived from its epochs and members as Kafka does.
    pub(crate) fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// Bumps the group epoch: a new target assignment is due.
    pub(crate) fn bump_epoch(&mut self) {
        self.group_epoch = self.group_epoch.saturating_add(1);
    }

    /// Removes a member, freeing its partitions and instance id.
    pub(crate) fn remove_member(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let member = self.members.shift_remove(member_id)?;
        self.target.remove(member_id);
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.members.is_empty() {
            self.empty_since_ms = Some(now_ms());
        }
        Some(member)
    }

    /// Whether a member other than `except` owns (or still has to revoke) a partition.
    pub(crate) fn owned_by_other(&self, except: &str, topic: Uuid, partition: i32) -> bool {
        self.members.values().any(|m| {
            m.member_id != except
                && (m
                    .assigned
                    .get(&topic)
                    .is_some_and(|p| p.contains(&partition))
                    || m.pending_revocation
                        .get(&topic)
                        .is_some_and(|p| p.contains(&partition)))
        })
    }

    /// Topics any member subscribes to, by name.
    pub(crate) fn subscribed_topic_names(&self) -> BTreeSet<String> {
        self.subscribed_topics.keys().cloned().collect()
    }
}

/// Compiles a subscription regex. Kafka uses RE2/J, whose syntax the `regex` crate
/// shares (no backreferences or lookaround); the whole topic name must match.
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

/// A ConsumerGroupHeartbeat request, decoded.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHeartbeat {
    /// The group.
    pub group_id: String,
    /// The member (v1: chosen by the client; v0: empty on the first request).
    pub member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member's temporary leave, else its epoch.
    pub member_epoch: i32,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// How long the member may take to revoke; -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// Topic names, or `None` when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// A topic regex, or `None` when unchanged (empty clears it).
    pub subscribed_topic_regex: Option<String>,
    /// The server assignor asked for, or `None` for the group's.
    pub server_assignor: Option<String>,
    /// What the member owns now, or `None` when unchanged.
    pub owned: Option<Assignment>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// The request's version: v1+ requires a client-chosen member id.
    pub api_version: i16,
}

/// A successful ConsumerGroupHeartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerHeartbeatOutcome {
    /// The member's id.
    pub member_id: String,
    /// Its epoch now.
    pub member_epoch: i32,
    /// How often it should heartbeat.
    pub heartbeat_interval_ms: i32,
    /// Its assignment, when it changed (or on joining).
    pub assignment: Option<Assignment>,
}

/// Why a ConsumerGroupHeartbeat failed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ConsumerHeartbeatError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// A field is missing or out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The assignor is not one of this broker's.
    #[error("unsupported assignor: {0}")]
    UnsupportedAssignor(String),
    /// The subscription regex does not compile.
    #[error("invalid regular expression: {0}")]
    InvalidRegularExpression(String),
    /// The member (or group) is not known.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The member's epoch is not the coordinator's: it must rejoin with nothing.
    #[error("fenced member epoch")]
    FencedMemberEpoch,
    /// Another member took over this instance id.
    #[error("fenced instance id")]
    FencedInstanceId,
    /// The instance id is still used by an active member.
    #[error("unreleased instance id")]
    UnreleasedInstanceId,
    /// The group exists as a classic group with members.
    #[error("group is not a consumer group")]
    GroupIdNotFound,
    /// The broker is shutting down.
    #[error("coordinator not available")]
    CoordinatorNotAvailable,
}

codes!(ConsumerHeartbeatError {
    InvalidGroupId => InvalidGroupId,
    InvalidRequest(_) => InvalidRequest,
    UnsupportedAssignor(_) => UnsupportedAssignor,
    InvalidRegularExpression(_) => InvalidRegularExpression,
    UnknownMemberId => UnknownMemberId,
    FencedMemberEpoch => FencedMemberEpoch,
    FencedInstanceId => FencedInstanceId,
    UnreleasedInstanceId => UnreleasedInstanceId,
    GroupIdNotFound => GroupIdNotFound,
    CoordinatorNotAvailable => CoordinatorNotAvailable,
});

/// One member in ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerMemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Its epoch.
    pub member_epoch: i32,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Subscribed names.
    pub subscribed_topic_names: Vec<String>,
    /// Subscribed regex.
    pub subscribed_topic_regex: Option<String>,
    /// What it owns now.
    pub assignment: Assignment,
    /// What it is moving to.
    pub target_assignment: Assignment,
    /// Whether it speaks the classic protocol (JoinGroup/SyncGroup) in this group.
    pub classic: bool,
}

/// A group in ConsumerGroupDescribe.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroupDescription {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: ConsumerGroupState,
    /// Group epoch.
    pub group_epoch: i32,
    /// Epoch of the target assignment.
    pub assignment_epoch: i32,
    /// Assignor in use.
    pub assignor_name: String,
    /// Members.
    pub members: Vec<ConsumerMemberDescription>,
}

/// Why ConsumerGroupDescribe found nothing.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ConsumerDescribeError {
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// No such group, or it is a classic group.
    #[error("group id not found")]
    GroupIdNotFound,
}

codes!(ConsumerDescribeError {
    InvalidGroupId => InvalidGroupId,
    GroupIdNotFound => GroupIdNotFound,
});
