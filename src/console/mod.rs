//! The web console at `/ui` on the HTTP listener: pages for topics, records, groups and
//! their lag, agents, and traces, and the JSON endpoints under `/ui/api/` they read.
//!
//! The pages are three files (HTML, JavaScript, CSS) embedded in the binary at compile
//! time: no build step, no CDN, they work offline. Every endpoint reads the cluster
//! over the Kafka wire with the operator commands' readers (`cli::topic`, `cli::group`,
//! `cli::consume`, `cli::decisions`, `cli::agents`), so the console shows an external
//! cluster the same way as the in-process broker, and agent data comes from the topics;
//! only the agents' counters come from this process. Charts are drawn in the browser
//! from the samples it takes while a page is open.
//!
//! Read-only unless `console.actions = true`: the endpoints that change something
//! (`POST .../reset`, `POST /ui/api/dlq/T/replay`) answer 403 otherwise.

use std::collections::HashMap;
use std::sync::Arc;

mod dlq;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::cli::client::ClusterArgs;
use crate::cli::{agents, decisions, group, topic, StartFrom};
use crate::http::AgentMetricsSource;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// Most records one page of the topic browser shows.
const MAX_RECORDS: u64 = 500;

/// What the console reads and may do.
#[derive(Clone)]
pub struct Console {
    /// The cluster the pages show: this process's own listener, or the kafka backend's.
    pub cluster: ClusterArgs,
    /// `console.actions`: whether the endpoints that change things answer.
    pub actions: bool,
    /// The agents' counters in this process.
    pub agents: AgentMetricsSource,
}

impl Console {
    /// The console of the cluster at `bootstrap` (with librdkafka `properties`, e.g. the
    /// kafka backend's security settings).
    pub fn new(
        bootstrap: &str,
        properties: &std::collections::BTreeMap<String, String>,
        actions: bool,
        agents: AgentMetricsSource,
    ) -> Console {
        Console {
            cluster: ClusterArgs {
                bootstrap: bootstrap.to_string(),
                properties: properties
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
                timeout: 10.0,
            },
            actions,
            agents,
        }
    }
}

/// The `/ui` routes.
pub fn routes(console: Console) -> Router {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css", STYLE_CSS) }),
        )
        .route("/ui/api/settings", get(settings))
        .route("/ui/api/overview", get(overview))
        .route("/ui/api/topics/{topic}", get(topic_detail))
        .route("/ui/api/topics/{topic}/records", get(records))
        .route("/ui/api/groups", get(groups))
        .route("/ui/api/groups/{group}", get(group_detail))
        .route("/ui/api/groups/{group}/reset", post(reset))
        .route("/ui/api/dlq/{topic}/replay", post(replay_dlq))
        .route("/ui/api/agents", get(agents_view))
        .route("/ui/api/steps", get(recent_steps))
        .route("/ui/api/traces/{trace}", get(trace))
        .with_state(Arc::new(console))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

type Shared = State<Arc<Console>>;

/// An endpoint's failure: a status and a one-line message, answered as
/// `{"error": "..."}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl ApiError {
    fn bad_request(error: anyhow::Error) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, format!("{error:#}"))
    }
}

/// Runs a blocking cluster read off the async workers. The readers' errors are one-line
/// messages; an unknown topic or group (their "does not exist") is a 404, the rest
/// (an unreachable cluster) a 502.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            let message = format!("{error:#}");
            let status = if message.contains("does not exist") {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_GATEWAY
            };
            Err(ApiError(status, message))
        }
        Err(error) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            error.to_string(),
        )),
    }
}

async fn settings(State(console): Shared) -> Json<Value> {
    Json(json!({"actions": console.actions, "bootstrap": console.cluster.bootstrap}))
}

async fn overview(State(console): Shared) -> Result<Json<Value>, ApiError> {
    let cluster = console.cluster.clone();
    blocking(move || {
        let topics = topic::sizes(&cluster)?;
        let groups = group::list(&cluster)?;
        let mut lag = serde_json::Map::new();
        for row in groups.to_json().as_array().into_iter().flatten() {
            let Some(name) = row["group"].as_str() else {
                continue;
            };
            if let Ok(description) = group::describe(&cluster, name) {
                let total: i64 = description
                    .offsets
                    .to_json()
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["lag"].as_i64())
                    .sum();
                lag.insert(name.to_string(), json!(total));
            }
        }
        Ok(Json(json!({
            "time": agentlog_agents::event::now_ms(),
            "topics": topics.to_json(),
            "groups": groups.to_json(),
            "lag": lag,
        })))
    })
    .await
}

async fn topic_detail(
    State(console): Shared,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cluster = console.cluster.clone();
    blocking(move || {
        let (partitions, configs) = topic::describe(&cluster, &name)?;
        Ok(Json(json!({
            "topic": name,
            "partitions": partitions.to_json(),
            "configs": configs.to_json(),
        })))
    })
    .await
}

/// `?from=beginning|end|offset:N|last:N|time:T&partition=P&limit=N` (default the last
/// 50 records of every partition).
async fn records(
    State(console): Shared,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let from: StartFrom = query
        .get("from")
        .map_or("last:50", String::as_str)
        .parse()
        .map_err(ApiError::bad_request)?;
    let partition = query
        .get("partition")
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<i32>())
        .transpose()
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "partition: not an integer".into()))?;
    let limit = query
        .get("limit")
        .map(|l| l.parse::<u64>())
        .transpose()
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "limit: not an integer".into()))?
        .unwrap_or(100)
        .clamp(1, MAX_RECORDS);
    let cluster = console.cluster.clone();
    blocking(move || {
        let reader = crate::cli::consume::Reader::open(&cluster, &name, from, partition, None)?;
        let mut found = Vec::new();
        let stop = crate::cli::consume::Stop {
            num: Some(limit),
            at_end: true,
        };
        reader.each(stop, |message| {
            found.push(crate::cli::consume::record_json(message));
            Ok(true)
        })?;
        found.sort_by_key(|r| {
            (
                r["timestamp"].as_i64(),
                r["partition"].as_i64(),
                r["offset"].as_i64(),
            )
        });
        Ok(Json(json!({"topic": name, "records": found})))
    })
    .await
}

async fn groups(State(console): Shared) -> Result<Json<Value>, ApiError> {
    let cluster = console.cluster.clone();
    blocking(move || Ok(Json(group::list(&cluster)?.to_json()))).await
}

async fn group_detail(
    State(console): Shared,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cluster = console.cluster.clone();
    blocking(move || Ok(Json(group::describe(&cluster, &name)?.to_json()))).await
}

/// `POST /ui/api/groups/{group}/reset?to=earliest|latest|offset:N|time:T[&dry_run=true]`:
/// refused (403) unless `console.actions = true`.
async fn reset(
    State(console): Shared,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    refuse_unless_allowed(&console)?;
    let to = match query.get("to").map(String::as_str) {
        Some("earliest") => group::ResetTo::Earliest,
        Some("latest") => group::ResetTo::Latest,
        Some(other) => match other.parse().map_err(ApiError::bad_request)? {
            StartFrom::Offset(n) => group::ResetTo::Offset(n),
            StartFrom::Time(t) => group::ResetTo::Time(t),
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("to={other}: expected earliest, latest, offset:N or time:T"),
                ))
            }
        },
        None => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "to: expected earliest, latest, offset:N or time:T".into(),
            ))
        }
    };
    let dry_run = query.get("dry_run").is_some_and(|v| v == "true");
    let cluster = console.cluster.clone();
    blocking(move || {
        let plan = group::reset_offsets(&cluster, &name, &[], to, dry_run)?;
        Ok(Json(
            json!({"group": name, "dry_run": dry_run, "offsets": plan.to_json()}),
        ))
    })
    .await
}

/// The 403 of a read-only console.
fn refuse_unless_allowed(console: &Console) -> Result<(), ApiError> {
    if console.actions {
        return Ok(());
    }
    Err(ApiError(
        StatusCode::FORBIDDEN,
        "the console is read-only: set console.actions = true to reset offsets or replay dead letters"
            .into(),
    ))
}

/// `POST /ui/api/dlq/{topic}/replay`: see `dlq`; refused unless `console.actions = true`.
async fn replay_dlq(
    State(console): Shared,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    refuse_unless_allowed(&console)?;
    let cluster = console.cluster.clone();
    blocking(move || {
        let replayed = dlq::replay(&cluster, &topic)?;
        Ok(Json(json!({"topic": topic, "replayed": replayed})))
    })
    .await
}

async fn agents_view(State(console): Shared) -> Result<Json<Value>, ApiError> {
    let snapshots = (console.agents)();
    let llm = agentlog_agents::metrics::llm_metrics().snapshot();
    let cluster = console.cluster.clone();
    blocking(move || {
        let mut views = agents::from_cluster(&cluster)?;
        agents::add_metrics(&cluster, &mut views, &snapshots, &llm)?;
        Ok(Json(serde_json::to_value(
            views.into_values().collect::<Vec<_>>(),
        )?))
    })
    .await
}

async fn recent_steps(
    State(console): Shared,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(50)
        .clamp(1, 500);
    let cluster = console.cluster.clone();
    blocking(move || Ok(Json(json!(decisions::recent_steps(&cluster, limit)?)))).await
}

async fn trace(State(console): Shared, Path(trace): Path<String>) -> Result<Json<Value>, ApiError> {
    let cluster = console.cluster.clone();
    blocking(move || {
        let steps = decisions::trace_steps(&cluster, &trace)?;
        Ok(Json(json!({"trace_id": trace, "steps": steps})))
    })
    .await
}
