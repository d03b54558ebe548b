//! The replies of one connection, in request order: a reply may still be pending (a
//! long-poll fetch, an acks=all produce) while later requests are read and applied, but
//! responses leave exactly in the order their requests came.
//!
//! Small responses are gathered into one write; a large one (a fetch response) goes to
//! the socket as it is. The gathering buffer exists only while there is something to
//! write: an idle connection holds none.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use agentlog_protocol::response::encode_response;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::task::JoinError;
use tokio::time::Instant;

use crate::handlers::{self, Reply, ReplyBody};

/// Responses up to this size are gathered; larger ones are written on their own.
const GATHER_UP_TO: usize = 8 * 1024;

/// Why a connection's replies can no longer be written: it is closed.
#[derive(Debug, Clone, Copy)]
pub struct Closed;

/// Replies in request order and the socket half they are written to.
#[derive(Debug)]
pub struct Replies<W> {
    writer: W,
    peer: SocketAddr,
    queue: VecDeque<Reply>,
    gathered: BytesMut,
    /// Until when the client is muted: a response carried a quota throttle, and as in
    /// Kafka no request is taken from the client until it passes.
    muted_until: Option<Instant>,
}

impl<W: AsyncWrite + Unpin> Replies<W> {
    /// No replies yet.
    pub fn new(writer: W, peer: SocketAddr) -> Replies<W> {
        Replies {
            writer,
            peer,
            queue: VecDeque::new(),
            gathered: BytesMut::new(),
            muted_until: None,
        }
    }

    /// Replies not yet written.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// The instant until which the client is muted, if it still is.
    pub fn muted_until(&self) -> Option<Instant> {
        self.muted_until.filter(|until| *until > Instant::now())
    }

    /// Queues the reply to the latest request.
    pub fn push(&mut self, reply: Reply) {
        self.queue.push_back(reply);
    }

    /// Waits until the oldest reply's body is computed (never, while it is ready or
    /// there is none). Cancel-safe: the body is kept in the queue.
    pub async fn oldest_computed(&mut self) -> Result<(), JoinError> {
        let Some(reply) = self.queue.front_mut() else {
            return std::future::pending().await;
        };
        let ReplyBody::Later(task) = &mut reply.body else {
            return std::future::pending().await;
        };
        let computed = task.await?;
        reply.body = computed.map_or(ReplyBody::None, ReplyBody::ready);
        Ok(())
    }

    /// Writes every reply at the front of the queue whose body is known, then flushes.
    pub async fn write_ready(&mut self) -> Result<(), Closed> {
        let mut wrote = false;
        while let Some(reply) = self.queue.front() {
            if matches!(&reply.body, ReplyBody::Later(task) if !task.is_finished()) {
                break;
            }
            let Some(reply) = self.queue.pop_front() else {
                break;
            };
            let Reply {
                api_key,
                version,
                correlation_id,
                body,
            } = reply;
            let body = match body {
                ReplyBody::None => None,
                ReplyBody::Ready(body) => Some(*body),
                ReplyBody::Later(task) => task.await.map_err(|error| {
                    tracing::error!(peer = %self.peer, %error, "request handler failed");
                    Closed
                })?,
            };
            if let Some(body) = body {
                let frame = self.encode(api_key, version, correlation_id, &body)?;
                self.write(frame).await?;
                wrote = true;
            }
        }
        if !wrote {
            return Ok(());
        }
        self.write_gathered().await?;
        self.writer.flush().await.map_err(|_| Closed)
    }

    /// Writes every reply, waiting for those still being computed, and closes the
    /// socket: the connection is ending, but what was asked is still answered.
    pub async fn finish(mut self) {
        loop {
            if self.write_ready().await.is_err() {
                return;
            }
            // What is left starts with a reply still being computed.
            if self.queue.is_empty() || self.oldest_computed().await.is_err() {
                break;
            }
        }
        let _ = self.writer.shutdown().await;
    }

    fn encode(
        &mut self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        body: &ResponseKind,
    ) -> Result<Bytes, Closed> {
        let throttle = handlers::throttle::throttle_of(body);
        if throttle > 0 {
            let millis = u64::try_from(throttle).unwrap_or_default();
            self.muted_until = Some(Instant::now() + Duration::from_millis(millis));
        }
        encode_response(api_key, version, correlation_id, body).map_err(
            |error| {
                tracing::error!(peer = %self.peer, %error, "cannot encode response; closing connection");
                Closed
            },
        )
    }

    async fn write(&mut self, frame: Bytes) -> Result<(), Closed> {
        if frame.len() <= GATHER_UP_TO {
            self.gathered.extend_from_slice(&frame);
            if self.gathered.len() < GATHER_UP_TO {
                return Ok(());
            }
            return self.write_gathered().await;
        }
        self.write_gathered().await?;
        self.writer.write_all(&frame).await.map_err(|_| Closed)
    }

    async fn write_gathered(&mut self) -> Result<(), Closed> {
        if !self.gathered.is_empty() {
            self.writer
                .write_all(&self.gathered)
                .await
                .map_err(|_| Closed)?;
        }
        // Given back, not kept: most connections are idle most of the time.
        self.gathered = BytesMut::new();
        Ok(())
    }
}
