//! The runtime: hosts many agents, each a swarm of instances in one consumer group on
//! one backend. Every instance polls its [`Source`](crate::backend::Source), delivers each event (retries, DLQ),
//! and commits after the handler and its outputs are durable. The number of instances
//! can change at runtime; the group rebalances.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::agent::Agent;
use crate::backend::{Backend, ReadError, StartAt, TopicError};
use crate::delivery::{Delivery, Outcome, RetryPolicy};
use crate::exactly_once::{transactional_id, Processing};
use crate::metrics::{AgentMetrics, MetricsSnapshot};
use crate::queue::DeliveryMode;
use crate::rag::Indexes;
use crate::state::{RestoreError, StateStore};

/// How one agent runs: its id, inputs, group, swarm size and delivery policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    /// The agent id: names its group by default, its state and decision topics.
    pub name: String,
    /// Topics it consumes.
    pub topics: Vec<String>,
    /// Consumer group its instances join.
    pub group: String,
    /// Instances to run (the swarm size).
    pub instances: usize,
    /// Retries before dead-lettering.
    pub retry: RetryPolicy,
    /// Dead-letter topic; `<input topic>.dlq` when `None`.
    pub dlq_topic: Option<String>,
    /// Longest a poll waits for records before checking for a stop.
    pub poll_wait: Duration,
    /// Events one instance handles concurrently (at least 1). Events with the same key
    /// are still handled one after another, in offset order.
    pub max_in_flight: usize,
    /// Most events handed to the agent as one batch (at least 1): their outputs are
    /// written together and made durable once. Applies when `max_in_flight` is 1.
    pub max_batch: usize,
    /// Serve A2A requests and publish an agent card (`[agents.a2a]`); `None`: off.
    pub a2a: Option<crate::a2a::A2aSettings>,
    /// At-least-once (the default) or exactly-once (see [`crate::exactly_once`]).
    pub processing: Processing,
    /// A consumer group (stream) or a share group (queue, see [`crate::queue`]).
    pub delivery: DeliveryMode,
}

/// Events per batch unless configured: large enough that a batch's one append and one
/// durable wait cost little per event, small enough that its outputs (the batch's
/// worth of records) stay a modest append.
pub const DEFAULT_MAX_BATCH: usize = 1000;

impl AgentSpec {
    /// One instance of agent `name` on `topics`, in group `name`, default retries.
    pub fn new(name: &str, topics: &[&str]) -> AgentSpec {
        AgentSpec {
            name: name.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            group: name.to_string(),
            instances: 1,
            retry: RetryPolicy::default(),
            dlq_topic: None,
            poll_wait: Duration::from_millis(200),
            max_in_flight: 1,
            max_batch: DEFAULT_MAX_BATCH,
            a2a: None,
            processing: Processing::AtLeastOnce,
            delivery: DeliveryMode::Stream,
        }
    }

    /// Commits each batch's outputs, state, decisions and offsets atomically
    /// ([`Processing::ExactlyOnce`]) or not.
    pub fn processing(mut self, processing: Processing) -> AgentSpec {
        self.processing = processing;
        self
    }

    /// Runs the instances as a share group: per-event acquisition and
    /// acknowledgement instead of partition ownership (see [`crate::queue`]).
    pub fn queue(mut self) -> AgentSpec {
        self.delivery = DeliveryMode::Queue;
        self
    }

    /// Uses another consumer group.
    pub fn group(mut self, group: &str) -> AgentSpec {
        self.group = group.to_string();
        self
    }

    /// Runs `n` instances.
    pub fn instances(mut self, n: usize) -> AgentSpec {
        self.instances = n;
        self
    }

    /// Uses this retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> AgentSpec {
        self.retry = retry;
        self
    }

    /// Handles up to `n` events at once per instance (same-key events in order).
    pub fn max_in_flight(mut self, n: usize) -> AgentSpec {
        self.max_in_flight = n.max(1);
        self
    }

    /// Hands the agent at most `n` events per batch.
    pub fn max_batch(mut self, n: usize) -> AgentSpec {
        self.max_batch = n.max(1);
        self
    }

    /// Dead-letters to `topic` instead of `<input topic>.dlq`.
    pub fn dlq_topic(mut self, topic: &str) -> AgentSpec {
        self.dlq_topic = Some(topic.to_string());
        self
    }

    /// Also serves A2A requests and publishes an agent card (see [`crate::a2a`]).
    pub fn a2a(mut self, settings: crate::a2a::A2aSettings) -> AgentSpec {
        self.a2a = Some(settings);
        self
    }
}

/// Starting an agent failed.
#[derive(Debug, Error)]
pub enum StartError {
    /// Its state could not be restored.
    #[error("restoring state of agent `{agent}`: {source}")]
    State {
        /// The agent.
        agent: String,
        /// Why.
        source: RestoreError,
    },
    /// Its input topics or decision log could not be created.
    #[error("creating topics for agent `{agent}`: {source}")]
    Topics {
        /// The agent.
        agent: String,
        /// Why.
        source: TopicError,
    },
    /// Its A2A agent card could not be published.
    #[error("publishing the A2A card of agent `{agent}`: {source}")]
    Card {
        /// The agent.
        agent: String,
        /// Why.
        source: crate::backend::ProduceError,
    },
}

/// Replaying a topic through an agent failed.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The agent's state could not be restored.
    #[error(transparent)]
    State(#[from] RestoreError),
    /// The topic could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// An event could neither be handled nor dead-lettered.
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Events handled.
    pub handled: usize,
    /// Events dead-lettered.
    pub dead_lettered: usize,
}

/// Hosts agents on one backend.
#[derive(Debug)]
pub struct Runtime<B: Backend> {
    backend: B,
    metrics: Mutex<BTreeMap<String, Arc<AgentMetrics>>>,
    indexes: Arc<Indexes>,
    process_tag: String,
}

/// The process tag of a runtime not given one: enough when one process runs the
/// agent (always so on the embedded backend, whose broker is the process).
pub const DEFAULT_PROCESS_TAG: &str = "local";

type Spawner = Arc<dyn Fn(usize) -> Instance + Send + Sync>;

struct Instance {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    assignment: Arc<Mutex<Vec<(String, i32)>>>,
}

/// A running agent: its swarm of instances, state and counters.
pub struct AgentHandle {
    spec: AgentSpec,
    spawn: Spawner,
    instances: Vec<Instance>,
    next_id: usize,
    metrics: Arc<AgentMetrics>,
    state: Arc<StateStore>,
    /// Runs once every instance has stopped (an A2A agent withdraws its card).
    on_stop: Option<futures::future::BoxFuture<'static, ()>>,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("spec", &self.spec)
            .field("instances", &self.instances.len())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Runtime<B> {
    /// A runtime on `backend`.
    pub fn new(backend: B) -> Runtime<B> {
        Runtime {
            backend,
            metrics: Mutex::new(BTreeMap::new()),
            indexes: Arc::default(),
            process_tag: DEFAULT_PROCESS_TAG.to_string(),
        }
    }

    /// Names this process in exactly-once agents' transactional ids. It must be the
    /// same after a restart (so a restarted instance fences its previous incarnation)
    /// and differ between processes running the same agent on one cluster (or they
    /// fence each other): `serve` derives it from its data directory.
    pub fn with_process_tag(mut self, tag: &str) -> Runtime<B> {
        self.process_tag = tag.to_string();
        self
    }

    /// The vector indexes of this runtime's agents (`[rag.<name>]`), shared with the
    /// HTTP listener's search.
    pub fn indexes(&self) -> &Arc<Indexes> {
        &self.indexes
    }

    /// The backend agents run on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Every agent's counters, by agent id (what `serve --http` exposes on `/metrics`).
    pub fn metrics(&self) -> BTreeMap<String, MetricsSnapshot> {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, m)| (name.clone(), m.snapshot()))
            .collect()
    }

    /// Restores the agent's state, then starts `spec.instances` instances (serving
    /// A2A as well when `spec.a2a` says so).
    pub async fn start<A: Agent>(
        &self,
        spec: AgentSpec,
        agent: A,
    ) -> Result<AgentHandle, StartError> {
        match spec.a2a.clone() {
            Some(settings) if settings.enabled => {
                crate::a2a::start(self, spec, agent, settings).await
            }
            _ => self.start_agent(spec, agent).await,
        }
    }

    /// [`Runtime::start`] without the A2A wrapping.
    pub(crate) async fn start_agent<A: Agent>(
        &self,
        spec: AgentSpec,
        agent: A,
    ) -> Result<AgentHandle, StartError> {
        // Inputs must exist before the group assigns them (-1: the cluster's default
        // partition count).
        for topic in &spec.topics {
            self.backend
                .ensure_topic(topic, -1, false)
                .await
                .map_err(|source| StartError::Topics {
                    agent: spec.name.clone(),
                    source,
                })?;
        }
        // One partition keeps the audit log in decision order.
        self.backend
            .ensure_topic(&crate::delivery::decisions_topic(&spec.name), 1, false)
            .await
            .map_err(|source| StartError::Topics {
                agent: spec.name.clone(),
                source,
            })?;
        let state = StateStore::restore(&self.backend, &spec.name)
            .await
            .map_err(|source| StartError::State {
                agent: spec.name.clone(),
                source,
            })?;
        let metrics = Arc::new(AgentMetrics::new(agent.kind()));
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(spec.name.clone(), metrics.clone());
        let state = Arc::new(state);
        let delivery = Arc::new(Delivery {
            agent: Arc::new(agent),
            agent_id: Arc::from(spec.name.as_str()),
            retry: spec.retry.clone(),
            dlq_topic: spec.dlq_topic.clone(),
            state: state.clone(),
            metrics: metrics.clone(),
        });
        let backend = self.backend.clone();
        let loop_spec = spec.clone();
        let process_tag = self.process_tag.clone();
        let spawn: Spawner = Arc::new(move |id| {
            let (stop, stop_rx) = watch::channel(false);
            let assignment = Arc::new(Mutex::new(Vec::new()));
            let client_id = format!("{}-{id}", loop_spec.name);
            let task = match (loop_spec.delivery, loop_spec.processing) {
                (DeliveryMode::Queue, _) => tokio::spawn(crate::queue::run_queue_instance(
                    backend.clone(),
                    delivery.clone(),
                    loop_spec.clone(),
                    client_id,
                    stop_rx,
                    assignment.clone(),
                )),
                (DeliveryMode::Stream, Processing::AtLeastOnce) => {
                    tokio::spawn(crate::stream::run_instance(
                        backend.clone(),
                        delivery.clone(),
                        loop_spec.clone(),
                        client_id,
                        stop_rx,
                        assignment.clone(),
                    ))
                }
                (DeliveryMode::Stream, Processing::ExactlyOnce) => {
                    tokio::spawn(crate::exactly_once::run::run_instance(
                        backend.clone(),
                        delivery.clone(),
                        loop_spec.clone(),
                        client_id,
                        transactional_id(&loop_spec.group, &process_tag, id),
                        stop_rx,
                        assignment.clone(),
                    ))
                }
            };
            Instance {
                stop,
                task,
                assignment,
            }
        });
        let mut handle = AgentHandle {
            spec: spec.clone(),
            spawn,
            instances: Vec::new(),
            next_id: 0,
            metrics,
            state,
            on_stop: None,
        };
        handle.scale(spec.instances).await;
        Ok(handle)
    }

    /// Runs every record of `topic` from `from` (an offset in every partition, or a
    /// timestamp) up to its current end through `agent`, outside any group and without
    /// committing: emits, decisions and state writes happen as in normal delivery.
    pub async fn replay<A: Agent>(
        &self,
        spec: &AgentSpec,
        agent: A,
        topic: &str,
        from: StartAt,
    ) -> Result<ReplayReport, ReplayError> {
        let state = Arc::new(StateStore::restore(&self.backend, &spec.name).await?);
        let delivery = Delivery {
            agent: Arc::new(agent),
            agent_id: Arc::from(spec.name.as_str()),
            retry: spec.retry.clone(),
            dlq_topic: spec.dlq_topic.clone(),
            state,
            metrics: Arc::new(AgentMetrics::new("replay")),
        };
        let mut report = ReplayReport::default();
        let mut events = self.backend.read_topic(topic, from).await?;
        // A replay is never stopped from outside; it ends with its range.
        let (_never, stop) = watch::channel(false);
        while let Some(event) = events.next().await {
            match delivery.deliver(&self.backend, &event?, &stop).await? {
                Outcome::Handled => report.handled += 1,
                Outcome::DeadLettered => report.dead_lettered += 1,
            }
        }
        Ok(report)
    }
}

impl AgentHandle {
    /// The agent's spec (with the current swarm size).
    pub fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    /// How many instances run.
    pub fn instances(&self) -> usize {
        self.instances.len()
    }

    /// Each instance's current partitions (as of its last poll).
    pub fn assignments(&self) -> Vec<Vec<(String, i32)>> {
        self.instances
            .iter()
            .map(|i| {
                i.assignment
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            })
            .collect()
    }

    /// The agent's counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// The agent's keyed state.
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// Changes the swarm size: new instances join the group, removed ones finish their
    /// current event, commit and leave; the group rebalances either way.
    pub async fn scale(&mut self, n: usize) {
        while self.instances.len() < n {
            let instance = (self.spawn)(self.next_id);
            self.next_id += 1;
            self.instances.push(instance);
        }
        let mut stopping = Vec::new();
        while self.instances.len() > n {
            if let Some(instance) = self.instances.pop() {
                let _ = instance.stop.send(true);
                stopping.push(instance.task);
            }
        }
        for task in stopping {
            let _ = task.await;
        }
        self.spec.instances = n;
    }

    /// Stops every instance (each commits what it handled and leaves the group).
    pub async fn stop(mut self) {
        self.scale(0).await;
        if let Some(on_stop) = self.on_stop.take() {
            on_stop.await;
        }
    }

    /// Runs `task` when the agent is stopped with [`AgentHandle::stop`].
    pub(crate) fn on_stop(&mut self, task: futures::future::BoxFuture<'static, ()>) {
        self.on_stop = Some(task);
    }
}
