//! One client connection: requests are read and applied strictly in order, their
//! responses may take a while (long-poll fetches, acks=all), and responses leave in
//! request order.
//!
//! The reader applies each request's side effects before reading the next one (so two
//! pipelined produces to one partition append in the order they were sent), and hands
//! the writer a reply that may still be pending. The channel between them is bounded,
//! which is the back-pressure: a client that pipelines faster than its replies drain
//! stops being read.

use std::net::SocketAddr;
use std::sync::Arc;

use agentlog_protocol::request::{decode_request, RequestError};
use agentlog_protocol::response::encode_response;
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::frame::{read_frame, FrameError};
use crate::broker::Broker;
use crate::handlers::{self, Reply, ReplyBody};

/// Requests a connection may have in flight before we stop reading from it.
const MAX_IN_FLIGHT: usize = 64;

/// Frame limit until the first request decodes: an unauthenticated stranger gets far
/// less than a client that has shown it speaks Kafka.
const FIRST_FRAME_LIMIT: usize = 1 << 20;

/// Serves one connection until the peer closes it, it misbehaves, or shutdown begins.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let (replies, pending) = mpsc::channel(MAX_IN_FLIGHT);
    let writer_task = tokio::spawn(write_replies(writer, pending, peer));
    let max_frame = broker.config.max_frame_bytes();
    let mut limit = FIRST_FRAME_LIMIT.min(max_frame);

    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut reader, limit) => frame,
            () = super::stopped(&mut shutdown) => break,
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
        let reply = match decode_request(frame, &handlers::SUPPORTED) {
            Ok(request) => {
                limit = max_frame;
                handlers::dispatch_from(&broker, request, Some(peer)).await
            }
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
        if replies.send(reply).await.is_err() {
            break; // the writer stopped: the socket is gone
        }
    }
    drop(replies);
    let _ = writer_task.await;
}

async fn write_replies(
    writer: OwnedWriteHalf,
    mut pending: mpsc::Receiver<Reply>,
    peer: SocketAddr,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    while let Some(reply) = pending.recv().await {
        let body = match reply.body {
            ReplyBody::None => None,
            ReplyBody::Ready(body) => Some(*body),
            ReplyBody::Later(task) => match task.await {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(%peer, %error, "request handler failed");
                    return;
                }
            },
        };
        if let Some(body) = body {
            match encode_response(reply.api_key, reply.version, reply.correlation_id, &body) {
                Ok(frame) => {
                    if writer.write_all(&frame).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::error!(%peer, %error, "cannot encode response; closing connection");
                    return;
                }
            }
        }
        if pending.is_empty() && writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}
