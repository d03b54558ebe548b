//! One client connection: requests are read and applied strictly in order, their
//! responses may take a while (long-poll fetches, acks=all), and responses leave in
//! request order.
//!
//! One task per connection does both: it applies each request's side effects before
//! reading the next one (so two pipelined produces to one partition append in the order
//! they were sent), queues a reply that may still be pending, and writes replies as
//! they become ready. At most [`MAX_IN_FLIGHT`] replies wait: that is the
//! back-pressure, a client that pipelines faster than its replies drain stops being
//! read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentlog_protocol::request::{decode_request, Request, RequestError};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::frame::{FrameError, FrameReader};
use super::replies::Replies;
use super::ListenerContext;
use crate::authz::acl::ANONYMOUS;
use crate::authz::Session;
use crate::broker::Broker;
use crate::handlers::{self, Origin, Reply, ReplyBody};
use crate::security::listener::SecurityProtocol;
use crate::security::login_guard::Verdict;
use crate::security::sasl::{self, Authenticator, Progress};

/// Requests a connection may have in flight before we stop reading from it.
const MAX_IN_FLIGHT: usize = 64;

/// Frame limit until the first request decodes: an unauthenticated stranger gets far
/// less than a client that has shown it speaks Kafka.
const FIRST_FRAME_LIMIT: usize = 1 << 20;

/// Frame limit on a SASL listener until the client has authenticated: ApiVersions and
/// SASL messages are a few hundred bytes.
const UNAUTHENTICATED_FRAME_LIMIT: usize = 64 * 1024;

/// How long a connection may take from accept to the end of its TLS handshake and SASL
/// exchange; a peer that stalls in between is dropped rather than held.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection until the peer closes it, it misbehaves, or shutdown begins:
/// first the TLS handshake on SSL and SASL_SSL listeners.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerContext>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let deadline = Instant::now() + AUTHENTICATION_TIMEOUT;
    let Some(tls) = listener.tls.clone() else {
        let principal = ANONYMOUS.to_string();
        return serve_stream(
            stream, peer, listener, broker, shutdown, deadline, principal,
        )
        .await;
    };
    // The configuration current now: a reload later does not touch this connection.
    // Boxed, as is the TLS connection's request loop: the TLS state is large, and a
    // plaintext connection's task should not be sized for it.
    let acceptor = tls.acceptor();
    let accepted = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, Box::pin(acceptor.accept(stream))) => accepted,
        () = super::stopped(&mut shutdown) => return,
    };
    match accepted {
        Ok(Ok(stream)) => {
            // On SSL the certificate is the identity; on SASL_SSL the SASL user is.
            let principal = if listener.protocol == SecurityProtocol::Ssl {
                match tls.principal(stream.get_ref().1.peer_certificates()) {
                    Ok(principal) => principal,
                    Err(error) => {
                        tracing::warn!(%peer, %error, "closing connection: no principal for the client certificate");
                        return;
                    }
                }
            } else {
                ANONYMOUS.to_string()
            };
            if principal != ANONYMOUS {
                tracing::debug!(%peer, %principal, "authenticated by client certificate");
            }
            Box::pin(serve_stream(
                stream, peer, listener, broker, shutdown, deadline, principal,
            ))
            .await;
        }
        Ok(Err(error)) => tracing::warn!(%peer, %error, "closing connection: TLS handshake failed"),
        Err(_) => tracing::warn!(%peer, "closing connection: TLS handshake timed out"),
    }
}

/// The request loop over a plain or TLS stream, in one task: it reads and applies
/// requests in order and writes their replies as they become ready, in order. Between
/// frames it holds no buffers (see [`FrameReader`] and [`Replies`]).
async fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    listener: Arc<ListenerContext>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    deadline: Instant,
    principal: String,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let mut frames = FrameReader::new(reader);
    let mut replies = Replies::new(writer, peer);
    let max_frame = broker.config.max_frame_bytes();
    let mut auth = listener
        .protocol
        .uses_sasl()
        .then(|| Authenticator::new(listener.mechanisms.clone()));
    let mut authenticated = auth.is_none();
    let mut limit = if authenticated {
        FIRST_FRAME_LIMIT.min(max_frame)
    } else {
        UNAUTHENTICATED_FRAME_LIMIT.min(max_frame)
    };
    let mut origin = Origin {
        peer: Some(peer),
        advertised: Some(listener.advertised.clone()),
        session: Some(Session::new(&principal, peer.ip().to_string())),
    };

    loop {
        // Pipelined requests already read are applied before their replies are
        // written, so that those replies leave in one write; unless no request may be
        // taken now (too many in flight, or muted): then the replies go first.
        let may_read = replies.muted_until().is_none() && replies.in_flight() < MAX_IN_FLIGHT;
        if !(may_read && frames.holds_whole_frame()) && replies.write_ready().await.is_err() {
            break;
        }
        let muted_until = replies.muted_until();
        let reading = muted_until.is_none() && replies.in_flight() < MAX_IN_FLIGHT;
        let frame = tokio::select! {
            biased;
            () = super::stopped(&mut shutdown) => break,
            computed = replies.oldest_computed() => {
                if let Err(error) = computed {
                    tracing::error!(%peer, %error, "request handler failed");
                    break;
                }
                continue;
            }
            () = sleep_until_some(muted_until) => continue,
            () = tokio::time::sleep_until(deadline), if !authenticated => {
                tracing::warn!(%peer, "closing connection: not authenticated within {AUTHENTICATION_TIMEOUT:?}");
                break;
            }
            frame = frames.next_frame(limit), if reading => frame,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Io(error)) => {
                tracing::debug!(%peer, %error, "connection failed");
                break;
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection: bad frame");
                break;
            }
        };
        let mut close_after = false;
        let reply = match decode_request(frame, &handlers::SUPPORTED) {
            Ok(request) => match auth
                .as_mut()
                .and_then(|a| sasl_step(a, &broker, &request, peer))
            {
                Some((reply, progress)) => {
                    match progress {
                        Progress::Pending => {}
                        Progress::Authenticated(user) => {
                            tracing::info!(%peer, %user, protocol = %listener.protocol, "authenticated");
                            authenticated = true;
                            limit = max_frame;
                            origin.session =
                                Some(Session::new(&format!("User:{user}"), peer.ip().to_string()));
                        }
                        Progress::Refused => close_after = true,
                        Progress::Failed => {
                            // Kafka's connection.failed.authentication.delay.ms: one
                            // guess per delay and connection.
                            close_after = true;
                            let delay = broker
                                .config
                                .get_or("connection.failed.authentication.delay.ms", 100u64);
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_millis(delay)) => {}
                                () = super::stopped(&mut shutdown) => {}
                            }
                        }
                    }
                    reply
                }
                None if !authenticated && request.api_key != ApiKey::ApiVersions => {
                    tracing::warn!(%peer, api = ?request.api_key, "closing connection: request before SASL authentication");
                    break;
                }
                None => {
                    if authenticated {
                        limit = max_frame;
                    }
                    // Boxed: the handlers' futures are large and live only while a
                    // request is applied, not in every idle connection's task.
                    Box::pin(handlers::dispatch_from(&broker, request, &origin)).await
                }
            },
            Err(RequestError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => handlers::api_versions::unsupported_version(correlation_id),
            Err(RequestError::UnknownApiKey { api_key, .. }) => {
                tracing::info!(%peer, api_key, "closing connection: unknown api key");
                break;
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection: bad request");
                break;
            }
        };
        replies.push(reply);
        if close_after {
            break; // SASL failed: its answer is still sent
        }
    }
    replies.finish().await;
}

/// Sleeps until `until`, or forever when there is none.
async fn sleep_until_some(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// Answers SaslHandshake and SaslAuthenticate on a SASL listener; `None` for any other
/// request.
fn sasl_step(
    auth: &mut Authenticator,
    broker: &Broker,
    request: &Request,
    peer: SocketAddr,
) -> Option<(Reply, Progress)> {
    let (body, progress) = match &request.body {
        RequestKind::SaslHandshake(req) => {
            let (response, progress) = auth.handshake(req);
            (ResponseKind::SaslHandshake(response), progress)
        }
        RequestKind::SaslAuthenticate(req) => {
            let now = std::time::Instant::now();
            let (response, progress) = match broker.logins.check(peer.ip(), now) {
                Verdict::Blocked(left) => {
                    tracing::debug!(%peer, "authentication refused: the address is backing off");
                    (sasl::refused(peer.ip(), left), Progress::Refused)
                }
                Verdict::Allowed => auth.authenticate(&broker.credentials, req, peer),
            };
            if progress == Progress::Failed {
                if let Some(block) = broker.logins.record_failure(peer.ip(), now) {
                    tracing::warn!(
                        address = %peer.ip(),
                        failures = block.failures,
                        backoff_ms = block.backoff.as_millis(),
                        "too many failed logins from this address: refusing its logins for the back-off"
                    );
                }
            }
            (ResponseKind::SaslAuthenticate(response), progress)
        }
        _ => return None,
    };
    let reply = Reply {
        api_key: request.api_key,
        version: request.version,
        correlation_id: request.correlation_id,
        body: ReplyBody::ready(body),
    };
    Some((reply, progress))
}
