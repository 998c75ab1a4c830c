//! Accepting and holding connections, for both listeners: a connection limit that makes room by
//! closing the longest-idle connection (so a flood of idle sockets never locks out `/healthz` or
//! gRPC health), an accept backoff when the process is out of file descriptors, a deadline for a
//! new connection's first headers, an idle timeout, and HTTP/2 keepalive and stream limits.
//!
//! A connection is idle while no request is in flight on it: from accept until its first request
//! is dispatched, and between requests. A request stays in flight until its response body has
//! been sent, so a WatchRegistry stream keeps its connection busy.

use super::config::ConnectionLimits;
use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// First wait after a failed accept; doubled per failure up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Longest wait between failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Which protocols a listener speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocols {
    /// HTTP/2 only (gRPC).
    Http2,
    /// HTTP/1.1 and HTTP/2 (prior knowledge), told apart by the first bytes.
    Http1And2,
}

/// How a request is prepared before the router sees it (the gRPC side bounds each message of
/// the body per method; the HTTP side bounds the body in its own middleware).
pub(super) type PrepareRequest = Arc<dyn Fn(Request<Incoming>) -> Request<Body> + Send + Sync>;

/// Serves `router` on `listener` until `shutdown` flips, then stops accepting, asks every
/// connection to finish (HTTP/2 GOAWAY, HTTP/1 close after the current response) and returns
/// once all have ended.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    prepare: PrepareRequest,
    protocols: Protocols,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let builder = Arc::new(connection_builder(protocols, &limits));
    let tracker = Arc::new(Tracker::default());
    let mut connections = JoinSet::new();
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        // Room for one more: close the longest-idle connection, or wait for one to end.
        if tracker.open() >= limits.max_connections && !tracker.evict_longest_idle() {
            tokio::select! {
                () = tracker.ended.notified() => {}
                // Also when the sender is gone: nobody can ask for a shutdown any more.
                _ = shutdown.wait_for(|stopping| *stopping) => break,
                Some(_) = connections.join_next() => {}
            }
            continue;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopping| *stopping) => break,
            Some(_) = connections.join_next() => continue,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                backoff = MIN_ACCEPT_BACKOFF;
                stream
            }
            Err(error) => {
                // Out of descriptors (EMFILE, ENFILE) or a connection that died in the backlog:
                // free a descriptor if an idle connection holds one, and try again shortly
                // instead of spinning.
                let evicted = is_out_of_descriptors(&error) && tracker.evict_longest_idle();
                tracing::debug!(%error, evicted, retry_in_ms = backoff.as_millis(), "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = tracker.register();
        let builder = Arc::clone(&builder);
        let router = router.clone();
        let prepare = Arc::clone(&prepare);
        let tracker = Arc::clone(&tracker);
        let shutdown = shutdown.clone();
        let limits = limits.clone();
        connections.spawn(async move {
            let service = InFlightService {
                inner: TowerToHyperService::new(router),
                prepare,
                state: Arc::clone(&state),
            };
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            hold(connection, &state, &limits, shutdown).await;
            tracker.deregister(&state);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn connection_builder(
    protocols: Protocols,
    limits: &ConnectionLimits,
) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams);
    match protocols {
        Protocols::Http2 => builder.http2_only(),
        Protocols::Http1And2 => builder,
    }
}

fn is_out_of_descriptors(error: &std::io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(error.raw_os_error(), Some(23 | 24))
}

type Connection<'a> = auto::Connection<'a, TokioIo<TcpStream>, InFlightService, TokioExecutor>;

/// Drives one connection until it ends, is evicted, idles out, or finishes after shutdown.
async fn hold(
    connection: Connection<'_>,
    state: &ConnectionState,
    limits: &ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        // While a request is in flight there is nothing to close; look again an idle timeout on.
        let idle_deadline = if state.in_flight() > 0 {
            Instant::now() + limits.idle_timeout
        } else {
            state.idle_deadline(limits)
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            () = state.evict.notified(), if !draining => {
                // Chosen because it was idle; nothing can have started since (requests start
                // only while this task polls the connection).
                if state.in_flight() == 0 {
                    return;
                }
            }
            () = tokio::time::sleep_until(idle_deadline.into()), if !draining => {
                if state.in_flight() == 0 && Instant::now() >= state.idle_deadline(limits) {
                    tracing::debug!("closing an idle connection");
                    return;
                }
            }
            _ = shutdown.wait_for(|stopping| *stopping), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The open connections of one listener.
#[derive(Default)]
struct Tracker {
    connections: Mutex<HashMap<u64, Arc<ConnectionState>>>,
    next_id: AtomicU64,
    /// Notified whenever a connection ends.
    ended: Notify,
}

impl Tracker {
    fn open(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        // The map stays consistent even if a holder panicked: every update is one insert/remove.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(&self) -> Arc<ConnectionState> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnectionState::new(id));
        self.lock().insert(id, Arc::clone(&state));
        state
    }

    fn deregister(&self, state: &ConnectionState) {
        self.lock().remove(&state.id);
        self.ended.notify_one();
    }

    /// Asks the longest-idle connection to close, and stops counting it. False if none is idle.
    fn evict_longest_idle(&self) -> bool {
        let mut connections = self.lock();
        let victim = connections
            .values()
            .filter(|state| state.in_flight() == 0)
            .min_by_key(|state| state.last_active())
            .map(|state| state.id);
        match victim.and_then(|id| connections.remove(&id)) {
            Some(state) => {
                state.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// What the connection's task and its requests share.
struct ConnectionState {
    id: u64,
    accepted: Instant,
    in_flight: AtomicUsize,
    /// Requests dispatched so far (0 = still waiting for the first headers).
    started: AtomicUsize,
    last_active: Mutex<Instant>,
    evict: Notify,
}

impl ConnectionState {
    fn new(id: u64) -> Self {
        let now = Instant::now();
        ConnectionState {
            id,
            accepted: now,
            in_flight: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            last_active: Mutex::new(now),
            evict: Notify::new(),
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn last_active(&self) -> Instant {
        *self
            .last_active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self) {
        *self
            .last_active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    /// When the connection may be closed if it is still idle then: the first headers are due
    /// `header_read_timeout` after accept; later, `idle_timeout` after the last activity.
    fn idle_deadline(&self, limits: &ConnectionLimits) -> Instant {
        if self.started.load(Ordering::Acquire) == 0 {
            self.accepted + limits.header_read_timeout
        } else {
            self.last_active() + limits.idle_timeout
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight {
            state: Arc::clone(self),
        }
    }
}

/// One request in flight; ends when dropped (with its response body).
struct InFlight {
    state: Arc<ConnectionState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.touch();
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router, with each request counted in flight until its response body is done.
#[derive(Clone)]
struct InFlightService {
    inner: TowerToHyperService<Router>,
    prepare: PrepareRequest,
    state: Arc<ConnectionState>,
}

impl hyper::service::Service<Request<Incoming>> for InFlightService {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Response<Body>, std::convert::Infallible>>
                + Send,
        >,
    >;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.state.begin();
        let response = self.inner.call((self.prepare)(request));
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(CountedBody {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that keeps its request counted in flight until it is dropped.
struct CountedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for CountedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
