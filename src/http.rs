//! `serve --http ADDR`: a small HTTP listener for operators, serving `GET /health`
//! (liveness, JSON) and `GET /metrics` (Prometheus text format 0.0.4), the RAG
//! search routes of `search_http`, the web console at `/ui` (`console`), and `/mcp`
//! (`mcp_server`) when enabled.
//!
//! Nothing is copied into a metrics registry ahead of time: every scrape reads the live
//! sources (the agent runtime's atomics, the group coordinator's committed offsets, the
//! partitions' high watermarks, the disk guard), so the endpoint can never drift from
//! what the broker and agents actually hold, and idle brokers pay nothing for it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use agentlog_agents::metrics::{
    llm_metrics, LlmMetricsSnapshot, MetricsSnapshot, LATENCY_BUCKETS_US,
};
use agentlog_agents::uplink::UplinkSnapshot;
use agentlog_broker::Broker;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Reads every agent's counters on demand (a `Runtime::metrics` of whichever backend
/// the agents run on, so this module needs no backend type parameter).
pub type AgentMetricsSource = Arc<dyn Fn() -> BTreeMap<String, MetricsSnapshot> + Send + Sync>;

/// Where a scrape reads from.
#[derive(Clone)]
pub struct Sources {
    /// The agents' counters.
    pub agents: AgentMetricsSource,
    /// The in-process broker; `None` when agents run on an external Kafka cluster,
    /// whose consumer lag this process cannot see (no lag or broker series then).
    pub broker: Option<Arc<Broker>>,
    /// When `serve` started, for `uptime_seconds`.
    pub started: Instant,
    /// The RAG indexes, for `POST /v1/search` and `GET /v1/indexes`.
    pub indexes: Arc<agentlog_agents::rag::Indexes>,
    /// The MCP server's settings when `mcp.server.enable` is on (`/mcp` is served
    /// only then).
    pub mcp: Option<crate::mcp_server::Settings>,
    /// The edge uplinks' live status (`[[uplinks]]`; empty when none run).
    pub uplinks: agentlog_agents::uplink::UplinkStatuses,
    /// The web console's cluster and settings (`/ui`).
    pub console: crate::console::Console,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("broker", &self.broker.is_some())
            .field("started", &self.started)
            .field("mcp", &self.mcp)
            .finish_non_exhaustive()
    }
}

/// The running HTTP listener.
pub struct HttpServer {
    /// The bound address (the real port when asked for port 0).
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` (errors surface here, before the address line is printed) and
    /// starts serving in a background task.
    pub async fn start(addr: SocketAddr, sources: Sources) -> std::io::Result<HttpServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(LiveCollector(sources.clone())));
        let search = crate::search_http::routes(sources.indexes.clone());
        let mcp = sources
            .mcp
            .clone()
            .map(|settings| crate::mcp_server::routes(settings, sources.broker.clone()));
        let console = crate::console::routes(sources.console.clone());
        let state = Arc::new(AppState { sources, registry });
        let mut app = Router::new()
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .with_state(state)
            .merge(search)
            .merge(console);
        if let Some(mcp) = mcp {
            app = app.merge(mcp);
        }
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "http listener failed");
            }
        });
        Ok(HttpServer {
            local_addr,
            stop,
            task,
        })
    }

    /// Stops accepting and waits for in-flight requests, so `/health` stops answering
    /// before the broker shuts down.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct AppState {
    sources: Sources,
    registry: Registry,
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let mut body = serde_json::json!({
        "status": "ok",
        "uptime_seconds": state.sources.started.elapsed().as_secs(),
        "broker": state.sources.broker.is_some(),
    });
    let uplinks = state.sources.uplinks.snapshot();
    if !uplinks.is_empty() {
        // Liveness stays "ok" while a link is down: store-and-forward is the point,
        // and restarting the edge would not bring the link back.
        body["uplinks"] = serde_json::to_value(uplinks).unwrap_or_default();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

/// Encodes the live sources on each scrape.
#[derive(Debug)]
struct LiveCollector(Sources);

type Labels = Vec<(&'static str, String)>;

/// One metric family: its samples are written under one descriptor.
fn family<T>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: &[(Labels, T)],
    mut write: impl FnMut(&mut MetricEncoder, &T) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(labels)?;
        write(&mut sample, value)?;
    }
    Ok(())
}

fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, MetricType::Counter, samples, |m, v| {
        m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(v, None)
    })
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, MetricType::Gauge, samples, |m, v| {
        m.encode_gauge(v)
    })
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources = &self.0;
        gauges(
            &mut encoder,
            "agentlog_uptime_seconds",
            "Seconds since this process started serving.",
            &[(Vec::new(), to_i64(sources.started.elapsed().as_secs()))],
        )?;
        encode_agents(&mut encoder, &(sources.agents)())?;
        encode_llm(&mut encoder, &llm_metrics().snapshot())?;
        encode_uplinks(&mut encoder, &sources.uplinks.snapshot())?;
        if let Some(broker) = &sources.broker {
            encode_broker(&mut encoder, broker)?;
        }
        Ok(())
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Reads one counter out of a snapshot.
type Field = fn(&MetricsSnapshot) -> u64;

fn encode_agents(
    encoder: &mut DescriptorEncoder,
    agents: &BTreeMap<String, MetricsSnapshot>,
) -> Result<(), std::fmt::Error> {
    let labels = |agent: &str, m: &MetricsSnapshot| -> Labels {
        vec![("agent", agent.to_string()), ("kind", m.kind.clone())]
    };
    let per_agent = |field: Field| -> Vec<(Labels, u64)> {
        agents
            .iter()
            .map(|(agent, m)| (labels(agent, m), field(m)))
            .collect()
    };
    let plain: [(&str, &str, Field); 7] = [
        (
            "agentlog_agent_events_processed",
            "Events an agent handled successfully (after any retries).",
            |m| m.events_processed,
        ),
        (
            "agentlog_agent_errors",
            "Failed handling or emit attempts (every attempt counts); sum by kind for errors by agent type.",
            |m| m.errors,
        ),
        (
            "agentlog_agent_retries",
            "Handling attempts after the first.",
            |m| m.retries,
        ),
        (
            "agentlog_agent_emits",
            "Records agents emitted (not counting decisions and state writes).",
            |m| m.emits,
        ),
        (
            "agentlog_agent_decisions",
            "Decisions recorded to the agent's audit topic.",
            |m| m.decisions,
        ),
        (
            "agentlog_agent_dead_lettered",
            "Events sent to a dead-letter topic.",
            |m| m.dead_lettered,
        ),
        (
            "agentlog_agent_unavailable",
            "Attempts that failed because a dependency (model server, tool) was unavailable; those events wait, they are not dead-lettered.",
            |m| m.unavailable,
        ),
    ];
    for (name, help, field) in plain {
        counters(encoder, name, help, &per_agent(field))?;
    }

    // The runtime keeps cumulative counts per fixed bucket (then +Inf); the encoder
    // wants per-bucket counts and accumulates them itself.
    let histograms: Vec<(Labels, &MetricsSnapshot)> = agents
        .iter()
        .map(|(agent, m)| (labels(agent, m), m))
        .collect();
    family(
        encoder,
        "agentlog_agent_handling_latency_seconds",
        "Time one handling attempt took (the handler and writing its outputs); every attempt is observed.",
        MetricType::Histogram,
        &histograms,
        |metric, m| {
            metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                m.latency_sum_us as f64 / 1e6,
                m.latency_buckets.last().copied().unwrap_or(0),
                &histogram_buckets(&m.latency_buckets),
                None,
            )
        },
    )?;

    let custom: Vec<(Labels, u64)> = agents
        .iter()
        .flat_map(|(agent, m)| {
            m.custom.iter().map(move |(name, value)| {
                let mut l = labels(agent, m);
                l.push(("name", name.clone()));
                (l, *value)
            })
        })
        .collect();
    counters(
        encoder,
        "agentlog_agent_custom",
        "Counters agents report through their context, by name.",
        &custom,
    )
}

/// Cumulative bucket counts (then +Inf) as the encoder's per-bucket `(bound, count)`.
fn histogram_buckets(cumulative: &[u64]) -> Vec<(f64, u64)> {
    let mut buckets = Vec::with_capacity(cumulative.len());
    let mut previous = 0u64;
    for (i, total) in cumulative.iter().enumerate() {
        let bound = LATENCY_BUCKETS_US
            .get(i)
            .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
        buckets.push((bound, total.saturating_sub(previous)));
        previous = *total;
    }
    buckets
}

/// LLM calls per agent and model: requests, replayed answers, errors by kind, tokens,
/// cost and call latency.
fn encode_llm(
    encoder: &mut DescriptorEncoder,
    llm: &BTreeMap<(String, String), LlmMetricsSnapshot>,
) -> Result<(), std::fmt::Error> {
    let labels = |agent: &str, model: &str| -> Labels {
        vec![("agent", agent.to_string()), ("model", model.to_string())]
    };
    type LlmField = fn(&LlmMetricsSnapshot) -> u64;
    let plain: [(&str, &str, LlmField); 4] = [
        (
            "agentlog_llm_requests",
            "Model calls sent to an endpoint and answered (each is recorded in agent.llm.<agent>).",
            |m| m.requests,
        ),
        (
            "agentlog_llm_replayed",
            "Answers served from the call log instead of calling the model (re-runs after a crash, rebalance or retry, and replays).",
            |m| m.replayed,
        ),
        (
            "agentlog_llm_tokens_in",
            "Prompt tokens of answered model calls.",
            |m| m.tokens_in,
        ),
        (
            "agentlog_llm_tokens_out",
            "Completion tokens of answered model calls.",
            |m| m.tokens_out,
        ),
    ];
    for (name, help, field) in plain {
        let samples: Vec<(Labels, u64)> = llm
            .iter()
            .map(|((agent, model), m)| (labels(agent, model), field(m)))
            .collect();
        counters(encoder, name, help, &samples)?;
    }
    let errors: Vec<(Labels, u64)> = llm
        .iter()
        .flat_map(|((agent, model), m)| {
            m.errors.iter().map(move |(kind, n)| {
                let mut l = labels(agent, model);
                l.push(("kind", kind.to_string()));
                (l, *n)
            })
        })
        .collect();
    counters(
        encoder,
        "agentlog_llm_errors",
        "Failed model calls and unusable answers, by kind (unavailable, refused, record, not_recorded, invalid_answer).",
        &errors,
    )?;
    let cost: Vec<(Labels, f64)> = llm
        .iter()
        .map(|((agent, model), m)| (labels(agent, model), m.cost))
        .collect();
    family(
        encoder,
        "agentlog_llm_cost",
        "Cost of answered model calls, from the endpoint's configured prices per 1k tokens.",
        MetricType::Counter,
        &cost,
        |m, v| m.encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(v, None),
    )?;
    let latency: Vec<(Labels, &LlmMetricsSnapshot)> = llm
        .iter()
        .map(|((agent, model), m)| (labels(agent, model), m))
        .collect();
    family(
        encoder,
        "agentlog_llm_call_latency_seconds",
        "Time an answered model call took, retries included (replayed answers are not observed).",
        MetricType::Histogram,
        &latency,
        |metric, m| {
            metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                m.latency_sum_us as f64 / 1e6,
                m.latency_buckets.last().copied().unwrap_or(0),
                &histogram_buckets(&m.latency_buckets),
                None,
            )
        },
    )
}

fn encode_broker(encoder: &mut DescriptorEncoder, broker: &Broker) -> Result<(), std::fmt::Error> {
    let topics = broker.topics.list();
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    gauges(
        encoder,
        "agentlog_topics",
        "Topics on this broker.",
        &[(Vec::new(), to_i64(topics.len() as u64))],
    )?;
    gauges(
        encoder,
        "agentlog_partitions",
        "Partitions on this broker, all topics.",
        &[(Vec::new(), to_i64(partitions as u64))],
    )?;
    gauges(
        encoder,
        "agentlog_disk_low",
        "1 while produce is refused for lack of free disk space (the disk guard), else 0.",
        &[(Vec::new(), i64::from(broker.lifecycle.disk_low()))],
    )?;
    if let Some(free) = broker.lifecycle.free_bytes() {
        gauges(
            encoder,
            "agentlog_disk_free_bytes",
            "Free bytes on the data directory's filesystem at the last disk check.",
            &[(Vec::new(), to_i64(free))],
        )?;
    }
    counters(
        encoder,
        "agentlog_disk_floor_records_deleted",
        "Records deleted below log.disk.free.min.bytes although an uplink had not forwarded them.",
        &[(Vec::new(), broker.lifecycle.floor_records_deleted())],
    )?;

    let mut watermarks = Vec::new();
    for topic in &topics {
        for partition in &topic.partitions {
            watermarks.push((
                vec![
                    ("topic", topic.name().to_string()),
                    ("partition", partition.index.to_string()),
                ],
                partition.log.high_watermark(),
            ));
        }
    }
    gauges(
        encoder,
        "agentlog_partition_high_watermark",
        "One past the last offset consumers may read, per partition.",
        &watermarks,
    )?;

    let lag: Vec<(Labels, i64)> = crate::consumer_lag::consumer_lag(broker, None)
        .into_iter()
        .map(|lag| {
            (
                vec![
                    ("group", lag.group),
                    ("topic", lag.topic),
                    ("partition", lag.partition.to_string()),
                ],
                lag.lag,
            )
        })
        .collect();
    gauges(
        encoder,
        "agentlog_consumer_lag",
        "Records a group has yet to consume: high watermark minus committed offset.",
        &lag,
    )
}

/// Reads one counter out of an uplink's snapshot.
type UplinkField = fn(&UplinkSnapshot) -> u64;
/// Reads one gauge out of an uplink's snapshot.
type UplinkGauge = fn(&UplinkSnapshot) -> i64;

fn encode_uplinks(
    encoder: &mut DescriptorEncoder,
    uplinks: &[UplinkSnapshot],
) -> Result<(), std::fmt::Error> {
    let labels = |u: &UplinkSnapshot| -> Labels { vec![("uplink", u.name.clone())] };
    let plain: [(&str, &str, UplinkField); 4] = [
        (
            "agentlog_uplink_records_forwarded",
            "Local records an uplink forwarded (committed on the remote).",
            |u| u.records_forwarded,
        ),
        (
            "agentlog_uplink_bytes_forwarded",
            "Key and value bytes an uplink forwarded.",
            |u| u.bytes_forwarded,
        ),
        (
            "agentlog_uplink_transactions",
            "Batches an uplink committed on the remote (transactions in exactly-once mode).",
            |u| u.transactions,
        ),
        (
            "agentlog_uplink_records_lost",
            "Records deleted locally before an uplink forwarded them (disk floor, DeleteRecords; offsets in the log).",
            |u| u.records_lost,
        ),
    ];
    for (name, help, field) in plain {
        let samples: Vec<(Labels, u64)> = uplinks.iter().map(|u| (labels(u), field(u))).collect();
        counters(encoder, name, help, &samples)?;
    }
    let now_ms = agentlog_agents::event::now_ms();
    let age = |since_ms: i64| {
        if since_ms > 0 {
            (now_ms - since_ms).max(0) / 1000
        } else {
            0
        }
    };
    let gauge_rows: [(&str, &str, UplinkGauge); 5] = [
        (
            "agentlog_uplink_records_behind",
            "Records an uplink has not forwarded yet (up: local ones; down: remote ones).",
            |u| to_i64(u.records_behind),
        ),
        (
            "agentlog_uplink_bytes_behind",
            "Stored bytes an uplink has not forwarded yet (estimated from average record sizes).",
            |u| to_i64(u.bytes_behind),
        ),
        (
            "agentlog_uplink_last_send_timestamp_seconds",
            "When an uplink last committed a batch on the remote (0: never).",
            |u| u.last_send_ms / 1000,
        ),
        (
            "agentlog_uplink_topics_refused",
            "Local topics an uplink sets aside because the remote refuses them (see /health).",
            |u| u.topic_errors.len() as i64,
        ),
        (
            "agentlog_uplink_up",
            "1 while an uplink's link is up, else 0 (the reason is on /health and in the log).",
            |u| i64::from(u.state == "up"),
        ),
    ];
    for (name, help, field) in gauge_rows {
        let samples: Vec<(Labels, i64)> = uplinks.iter().map(|u| (labels(u), field(u))).collect();
        gauges(encoder, name, help, &samples)?;
    }
    let oldest: Vec<(Labels, i64)> = uplinks
        .iter()
        .map(|u| (labels(u), age(u.oldest_unforwarded_ms)))
        .collect();
    gauges(
        encoder,
        "agentlog_uplink_oldest_unforwarded_age_seconds",
        "Age of the oldest local record an uplink has read but not forwarded yet (0: none waiting).",
        &oldest,
    )
}
