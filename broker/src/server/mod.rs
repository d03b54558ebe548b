//! The tokio server: accept loops, and one task per connection.

mod connection;
mod frame;
mod replies;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::security::listener::SecurityProtocol;

/// What every connection accepted on one listener shares.
#[derive(Clone)]
pub struct ListenerContext {
    /// What clients must speak here.
    pub protocol: SecurityProtocol,
    /// host and port this listener's clients are given in Metadata.
    pub advertised: (String, u16),
    /// The TLS configuration (reloadable) and certificate principals, on SSL and
    /// SASL_SSL listeners.
    pub tls: Option<Arc<crate::security::tls::TlsContext>>,
    /// SASL mechanisms offered, on SASL listeners.
    pub mechanisms: Vec<String>,
}

impl std::fmt::Debug for ListenerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerContext")
            .field("protocol", &self.protocol)
            .field("advertised", &self.advertised)
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

/// Accepts on every listener until the broker begins to shut down, then waits for every
/// connection to finish its in-flight requests.
pub async fn serve(listeners: Vec<(TcpListener, ListenerContext)>, broker: Arc<Broker>) {
    let shutdown = broker.shutdown_signal();
    let mut accept_loops = JoinSet::new();
    for (listener, context) in listeners {
        accept_loops.spawn(accept_loop(
            listener,
            Arc::new(context),
            broker.clone(),
            shutdown.clone(),
        ));
    }
    while accept_loops.join_next().await.is_some() {}
}

/// A listener that held this many connections gives freed memory back to the OS once
/// half of them have closed.
const MANY_CONNECTIONS: usize = 1000;

async fn accept_loop(
    listener: TcpListener,
    context: Arc<ListenerContext>,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    // The most connections held since memory was last given back.
    let mut peak = 0usize;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection::serve(stream, peer, context.clone(), broker.clone(), shutdown.clone()));
                    peak = peak.max(connections.len());
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                // Thousands of connections gone (a load test's clients, a client
                // suite): what they held goes back to the OS, not only to malloc.
                if peak >= MANY_CONNECTIONS && connections.len() <= peak / 2 {
                    crate::memory::release_freed_memory_soon();
                    peak = connections.len();
                }
            }
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Resolves once shutdown has begun (or the broker handle is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
