//! Edge uplinks: store-and-forward from this process's broker to a central
//! Kafka-protocol cluster (`[[uplinks]]`, see [`settings`]).
//!
//! An edge (a rig, a ship, a factory) produces locally whether or not its link is up;
//! each uplink forwards its local topics to the remote when it can. In exactly-once
//! mode every batch goes up in one remote transaction that also writes the uplink's
//! progress (the next local offset per partition) to a compacted remote topic, and a
//! restarted uplink resumes from the progress the remote committed: records reach
//! read_committed consumers once, in order per partition, across link cuts and
//! crashes of either side. Only the Kafka protocol is used towards the remote, so it
//! may be agentlog, Apache Kafka or Redpanda.
//!
//! With `direction = "down"` remote topics (commands, model updates) are mirrored
//! into local ones instead, the progress kept locally inside the mirrored records (see
//! [`mirror`]).
//!
//! Module map: `settings` (the TOML table), `local` (reading the local logs),
//! `remote` (librdkafka clients and remote topics), `progress` (the progress topic),
//! `link` (the forwarding loop), `down` and `mirror` (the down direction), `pacer`
//! (the bandwidth cap), `status` (link state and lag for `/metrics` and `/health`).

pub mod down;
pub mod link;
pub mod local;
pub mod mirror;
pub mod pacer;
pub mod progress;
pub mod remote;
mod session;
pub mod settings;
pub mod status;

use std::sync::Arc;

use agentlog_broker::Broker;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use settings::{Direction, Mode, UplinkConfigError, UplinkDef};
pub use status::{LinkState, UplinkSnapshot, UplinkStatus};

/// The running uplinks of this process.
pub struct Uplinks {
    statuses: UplinkStatuses,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Every uplink's live status: cheap to clone into the HTTP listener.
#[derive(Debug, Clone, Default)]
pub struct UplinkStatuses(Vec<Arc<UplinkStatus>>);

impl UplinkStatuses {
    /// Each uplink's figures now, in declaration order.
    pub fn snapshot(&self) -> Vec<UplinkSnapshot> {
        self.0.iter().map(|s| s.snapshot()).collect()
    }
}

impl Uplinks {
    /// Starts one forwarding task per declared uplink on `broker`'s local topics. Each
    /// connects in the background: a remote that is away at start-up is retried, not
    /// an error.
    pub fn start(broker: &Arc<Broker>, defs: &[UplinkDef]) -> Result<Uplinks, UplinkConfigError> {
        settings::validate_all(defs)?;
        let (stop, stopped) = watch::channel(false);
        let mut statuses = Vec::with_capacity(defs.len());
        let mut tasks = Vec::with_capacity(defs.len());
        for def in defs {
            let status = Arc::new(UplinkStatus::new(&def.name, def.direction));
            statuses.push(status.clone());
            if def.direction == Direction::Down {
                let down = down::Downlink::new(
                    def.clone(),
                    broker.clone(),
                    def.pattern()?,
                    status,
                    stopped.clone(),
                );
                tracing::info!(uplink = %def.name, bootstrap = %def.bootstrap, "down uplink started");
                tasks.push(tokio::spawn(session::run(down)));
                continue;
            }
            let holder = def
                .retain_until_forwarded()
                .then(|| format!("uplink:{}", def.name));
            let local = local::LocalTopics::new(
                broker.clone(),
                holder,
                def.topics.clone(),
                def.pattern()?,
                def.priorities()?,
            );
            let link = link::Link::new(def.clone(), local, status.clone(), stopped.clone());
            tracing::info!(uplink = %def.name, bootstrap = %def.bootstrap, mode = ?def.mode, "uplink started");
            tasks.push(tokio::spawn(session::run(link)));
        }
        Ok(Uplinks {
            statuses: UplinkStatuses(statuses),
            stop,
            tasks,
        })
    }

    /// The uplinks' live status.
    pub fn statuses(&self) -> UplinkStatuses {
        self.statuses.clone()
    }

    /// Stops every uplink; an open remote transaction is left to be aborted (by the
    /// remote's timeout or the next start's fencing), never half-committed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
