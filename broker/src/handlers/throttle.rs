//! Client quotas on Produce and Fetch, as Kafka's `KafkaApis` applies them: the bytes a
//! produce brings (or a fetch returns) and the time its handler took are recorded
//! against the client's `producer_byte_rate` / `consumer_byte_rate` and
//! `request_percentage` quotas; the larger throttle goes back as `throttle_time_ms`,
//! a throttled fetch returns no data (its bytes are taken back), and the connection
//! reads nothing more from the client for that long (see [`throttle_of`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{FetchResponse, ProduceRequest, ResponseKind};

use super::ReplyBody;
use crate::broker::Broker;
use crate::quotas::{QuotaKind, ANONYMOUS};

/// Who is asking, for quota matching.
#[derive(Debug, Clone)]
pub struct Client {
    /// The principal's name (`ANONYMOUS` when unauthenticated).
    pub user: String,
    /// The request header's client id.
    pub client_id: String,
}

impl Client {
    /// The client of a connection: its principal's name (Kafka's quota `user` entity is
    /// the name without the `User:` type), `ANONYMOUS` without a session.
    pub fn of(session: Option<&crate::authz::Session>, client_id: &str) -> Self {
        let user = session
            .map(|s| s.principal.strip_prefix("User:").unwrap_or(&s.principal))
            .unwrap_or(ANONYMOUS);
        Client {
            user: user.to_string(),
            client_id: client_id.to_string(),
        }
    }
}

/// Kafka's `request_percentage` unit: the handler's time as percent-seconds of one
/// thread.
fn percent_seconds(handler_time: Duration) -> f64 {
    handler_time.as_secs_f64() * 100.0
}

/// Records a request's bytes against its byte-rate quota and its handler time against
/// `request_percentage`; the larger throttle is the one Kafka applies.
fn record(
    broker: &Broker,
    client: &Client,
    kind: QuotaKind,
    bytes: f64,
    handler_time: Duration,
    now: i64,
) -> i32 {
    let (user, id) = (&client.user, &client.client_id);
    let bandwidth = broker.quotas.record(kind, user, id, bytes, now);
    let time = (broker.quotas).record(
        QuotaKind::Request,
        user,
        id,
        percent_seconds(handler_time),
        now,
    );
    bandwidth.max(time)
}

/// The bytes a produce request brings.
pub fn produce_bytes(request: &ProduceRequest) -> f64 {
    request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()) as f64)
        .sum()
}

/// Records a produce against the client's quotas and stamps the throttle on its answer.
pub fn produce(
    broker: &Arc<Broker>,
    client: Client,
    bytes: f64,
    started: Instant,
    body: ReplyBody,
) -> ReplyBody {
    let now = crate::lifecycle::now_ms();
    let handler_time = started.elapsed();
    let throttle = record(
        broker,
        &client,
        QuotaKind::Produce,
        bytes,
        handler_time,
        now,
    );
    if throttle == 0 {
        return body;
    }
    tracing::debug!(client = %client.client_id, throttle, "produce throttled by quota");
    let stamp = move |body: ResponseKind| match body {
        ResponseKind::Produce(r) => ResponseKind::Produce(r.with_throttle_time_ms(throttle)),
        other => other,
    };
    match body {
        ReplyBody::Ready(response) => ReplyBody::ready(stamp(*response)),
        ReplyBody::Later(task) => {
            ReplyBody::Later(tokio::spawn(
                async move { task.await.ok().flatten().map(stamp) },
            ))
        }
        ReplyBody::None => ReplyBody::None,
    }
}

fn fetched_bytes(response: &FetchResponse) -> f64 {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()) as f64)
        .sum()
}

/// Records a fetch's answer against the client's quotas; over quota, the answer is
/// empty but for the throttle time, as Kafka's `getThrottledResponse`. A fetch's time
/// is mostly its long-poll wait, which Kafka does not count as handler time; its reads
/// are not timed apart from it, so fetches are charged bytes only.
pub fn fetch(broker: &Broker, client: &Client, response: FetchResponse) -> FetchResponse {
    let now = crate::lifecycle::now_ms();
    let bytes = fetched_bytes(&response);
    let throttle = record(broker, client, QuotaKind::Fetch, bytes, Duration::ZERO, now);
    if throttle == 0 {
        return response;
    }
    tracing::debug!(client = %client.client_id, throttle, "fetch throttled by quota");
    broker.quotas.unrecord(
        QuotaKind::Fetch,
        &client.user,
        &client.client_id,
        bytes,
        now,
    );
    FetchResponse::default()
        .with_throttle_time_ms(throttle)
        .with_session_id(response.session_id)
}

/// The throttle a response carries, for the connection to stop reading that long.
pub fn throttle_of(body: &ResponseKind) -> i32 {
    match body {
        ResponseKind::Produce(r) => r.throttle_time_ms,
        ResponseKind::Fetch(r) => r.throttle_time_ms,
        _ => 0,
    }
}

#[cfg(test)]
mod client_tests {
    use super::Client;
    use crate::authz::Session;

    /// Quotas match the SASL user by name, and everyone else as ANONYMOUS.
    #[test]
    fn the_quota_user_is_the_principal_name() {
        let alice = Session::new("User:alice", "127.0.0.1");
        assert_eq!(Client::of(Some(&alice), "app").user, "alice");
        let plain = Session::new("User:ANONYMOUS", "127.0.0.1");
        assert_eq!(Client::of(Some(&plain), "app").user, "ANONYMOUS");
        let none = Client::of(None, "app");
        assert_eq!(
            (none.user.as_str(), none.client_id.as_str()),
            ("ANONYMOUS", "app")
        );
    }
}
