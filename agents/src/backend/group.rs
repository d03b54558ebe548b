//! An in-process member of one of the broker's consumer groups: it joins the broker's
//! own `GroupCoordinator` exactly as a wire client would (protocol type `consumer`,
//! standard subscription and assignment bytes), runs the assignor when it leads,
//! heartbeats on a timer, and asks to rejoin when the coordinator says a rebalance is
//! under way, so in-process agents and external clients share one group.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentlog_broker::groups::{
    HeartbeatError, HeartbeatParams, JoinError, JoinParams, LeavingMember, SyncError, SyncParams,
};
use agentlog_broker::Broker;
use tokio::task::JoinHandle;

use super::assignor;
use super::ConsumeError;

/// Session timeout in-process members ask for (the broker's default minimum).
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// How long a rebalance waits for this member to rejoin.
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
/// Heartbeat period: short, since an in-process heartbeat is a map lookup, and it bounds
/// how long a rebalance waits for this member to notice it.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);

/// Group membership of one in-process consumer.
#[derive(Debug)]
pub(crate) struct Membership {
    broker: Arc<Broker>,
    pub(crate) group: String,
    topics: Vec<String>,
    client_id: String,
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    rejoin: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Membership {
    pub(crate) fn new(
        broker: Arc<Broker>,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> Membership {
        Membership {
            broker,
            group: group.to_string(),
            topics: topics.to_vec(),
            client_id: client_id.to_string(),
            member_id: String::new(),
            generation: -1,
            rejoin: Arc::new(AtomicBool::new(true)),
            heartbeat: None,
        }
    }

    /// Whether the member must (re)join before reading on.
    pub(crate) fn needs_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::Acquire)
    }

    /// Marks the membership stale (a commit was refused for a rebalance).
    pub(crate) fn request_rejoin(&self) {
        self.rejoin.store(true, Ordering::Release);
    }

    fn error(&self, reason: impl std::fmt::Display) -> ConsumeError {
        ConsumeError::Group {
            group: self.group.clone(),
            reason: reason.to_string(),
        }
    }

    /// Joins (or rejoins) and syncs; returns this member's partitions.
    pub(crate) async fn join(&mut self) -> Result<Vec<(String, i32)>, ConsumeError> {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        let coordinator = &self.broker.groups;
        let subscription = assignor::encode_subscription(&self.topics);
        loop {
            let params = JoinParams {
                group_id: self.group.clone(),
                member_id: self.member_id.clone(),
                group_instance_id: None,
                client_id: self.client_id.clone(),
                client_host: "in-process".to_string(),
                session_timeout_ms: SESSION_TIMEOUT_MS,
                rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
                protocol_type: "consumer".to_string(),
                protocols: assignor::PROTOCOLS
                    .iter()
                    .map(|p| (p.to_string(), subscription.clone()))
                    .collect(),
                require_known_member_id: false,
            };
            let joined = match coordinator.join(params).await {
                Ok(joined) => joined,
                Err(JoinError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Err(JoinError::MemberIdRequired { member_id }) => {
                    self.member_id = member_id;
                    continue;
                }
                Err(JoinError::RebalanceInProgress) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(error) => return Err(self.error(error)),
            };
            self.member_id = joined.member_id.clone();
            self.generation = joined.generation_id;
            let protocol = joined.protocol_name.clone().unwrap_or_default();
            let assignments = if joined.leader == joined.member_id && !joined.skip_assignment {
                self.leader_assignments(&protocol, &joined.members)
            } else {
                Vec::new()
            };
            let sync = SyncParams {
                group_id: self.group.clone(),
                generation_id: self.generation,
                member_id: self.member_id.clone(),
                group_instance_id: None,
                protocol_type: Some("consumer".to_string()),
                protocol_name: joined.protocol_name.clone(),
                assignments,
            };
            match coordinator.sync(sync).await {
                Ok(synced) => {
                    let assignment = assignor::decode_assignment(&synced.assignment)
                        .ok_or_else(|| self.error("malformed assignment from the leader"))?;
                    self.rejoin.store(false, Ordering::Release);
                    self.start_heartbeat();
                    tracing::debug!(group = %self.group, member = %self.member_id, generation = self.generation, ?assignment, "in-process member joined");
                    return Ok(assignment);
                }
                Err(SyncError::RebalanceInProgress | SyncError::IllegalGeneration) => continue,
                Err(SyncError::UnknownMemberId) => {
                    self.member_id.clear();
                    continue;
                }
                Err(error) => return Err(self.error(error)),
            }
        }
    }

    /// The leader's job: every member's subscription in, every member's assignment out.
    fn leader_assignments(
        &self,
        protocol: &str,
        members: &[agentlog_broker::groups::JoinedMember],
    ) -> Vec<(String, bytes::Bytes)> {
        let subscriptions: Vec<(String, Vec<String>)> = members
            .iter()
            .map(|m| {
                let topics = assignor::subscribed_topics(&m.metadata).unwrap_or_default();
                (m.member_id.clone(), topics)
            })
            .collect();
        let mut partitions = BTreeMap::new();
        for (_, topics) in &subscriptions {
            for topic in topics {
                if let Some(found) = self.broker.topics.get(topic) {
                    partitions.insert(topic.clone(), found.partitions.len() as i32);
                }
            }
        }
        assignor::assign(protocol, &subscriptions, &partitions)
            .into_iter()
            .map(|(member, parts)| (member, assignor::encode_assignment(&parts)))
            .collect()
    }

    fn start_heartbeat(&mut self) {
        let broker = self.broker.clone();
        let rejoin = self.rejoin.clone();
        let params = HeartbeatParams {
            group_id: self.group.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: None,
        };
        self.heartbeat = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            loop {
                tick.tick().await;
                match broker.groups.heartbeat_now(params.clone()) {
                    Ok(()) => {}
                    Err(
                        HeartbeatError::RebalanceInProgress
                        | HeartbeatError::IllegalGeneration
                        | HeartbeatError::UnknownMemberId
                        | HeartbeatError::FencedInstanceId
                        | HeartbeatError::CoordinatorNotAvailable
                        | HeartbeatError::InvalidGroupId,
                    ) => {
                        rejoin.store(true, Ordering::Release);
                        return;
                    }
                }
            }
        }));
    }

    /// Leaves the group (the rest rebalance at once).
    pub(crate) fn leave(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        if self.member_id.is_empty() {
            return;
        }
        let leaving = vec![LeavingMember {
            member_id: self.member_id.clone(),
            group_instance_id: None,
        }];
        if let Err(error) = self.broker.groups.leave_now(&self.group, leaving) {
            tracing::debug!(group = %self.group, %error, "leave failed");
        }
        self.member_id.clear();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.leave();
    }
}
