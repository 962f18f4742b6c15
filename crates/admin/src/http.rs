//! The admin HTTP server: health, metrics, stats, cluster view and the dashboard.
//!
//! [`serve`] takes a bound listener and a shutdown future (so tests and the node start and
//! stop it the same way). Everything a peer can make the server hold is bounded: connections
//! (a semaphore; extra ones get a 503 and are closed), request header bytes (431), declared
//! body bytes (413), handler time (503), idle time and the age of a connection. Peers outside
//! the node's `--allow` list get a 403 and are closed before any byte of theirs is parsed.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::command_stats::CommandStats;
use crate::metrics::{AdminRejectReason, Metrics, OPENMETRICS_CONTENT_TYPE};

/// The dashboard: one self-contained page, no external assets.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// The dashboard's inline script and style are its only code; nothing else may run or load.
const DASHBOARD_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What the node tells the admin API. Every method runs on the admin server's tasks, so it
/// must answer quickly from state the node already has (an `ArcSwap` load, a few atomics),
/// never block or wait for the cluster.
pub trait AdminSource: Send + Sync + 'static {
    /// Whether the node serves clients, and why not. `GET /health` answers 200 or 503 from it.
    fn health(&self) -> Health;

    /// Node-specific numbers merged into the top level of `GET /stats`. The dashboard shows
    /// `node` (name), `uptime_seconds`, and falls back to the on-demand gauges for
    /// `memory_used_bytes`, `rss_bytes`, `connections` and `keys`. The keys `commands`,
    /// `metrics`, `replication_lag_seconds` and `gauges` are the admin crate's and win.
    fn stats(&self) -> Value;

    /// The cluster as this node sees it, served as-is by `GET /cluster`. The dashboard reads:
    ///
    /// ```json
    /// { "node": "a", "cluster": "prod", "view_digest": "…",
    ///   "nodes": [ { "name": "a", "state": "alive", "address": "10.0.0.1:34567",
    ///                "sessions": 1200, "connections": 14 } ],
    ///   "partitions": [ { "partition": 0, "epoch": 3, "primary": "a", "backups": ["b"] } ] }
    /// ```
    ///
    /// Every field is optional for the dashboard; extra fields are ignored.
    fn cluster(&self) -> Value;

    /// Whether a peer at `ip` may use the admin API (the `--allow` list). IPv4-mapped IPv6
    /// addresses arrive as IPv4.
    fn peer_allowed(&self, ip: IpAddr) -> bool;
}

/// Whether the node serves clients, as reported by `GET /health`.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// `true`: 200 `{"status":"ok"}`; `false`: 503 `{"status":"unavailable","reason":…}`.
    pub is_serving: bool,
    /// Why the node does not serve (or a note while it does); shown to a person as-is.
    pub reason: String,
    /// Extra fields for the body (node name, incarnation, uptime); `status` and `reason` are
    /// set by the admin crate and override these.
    pub details: Map<String, Value>,
}

impl Health {
    /// A node that serves clients.
    pub fn serving() -> Health {
        Health {
            is_serving: true,
            reason: String::new(),
            details: Map::new(),
        }
    }

    /// A node that does not serve clients, because of `reason`.
    pub fn not_serving(reason: impl Into<String>) -> Health {
        Health {
            is_serving: false,
            reason: reason.into(),
            details: Map::new(),
        }
    }

    /// Adds a field to the body.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Health {
        self.details.insert(key.into(), value.into());
        self
    }

    fn to_response(&self) -> Response {
        let mut body = self.details.clone();
        let (status_code, status) = if self.is_serving {
            (StatusCode::OK, "ok")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        };
        body.insert("status".to_owned(), status.into());
        if !self.reason.is_empty() || !self.is_serving {
            body.insert("reason".to_owned(), self.reason.clone().into());
        }
        json_response(status_code, Value::Object(body))
    }
}

/// Bounds on what one peer can make the admin server hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Admin connections served at once; more are answered 503 and closed.
    pub connections_max: usize,
    /// Request line plus headers, counted as name + value + 4 per header; more gets 431.
    /// (hyper itself refuses heads larger than about 400 KiB before this is checked.)
    pub header_bytes_max: usize,
    /// Declared request body size; more gets 413. Body extractors are capped likewise.
    pub body_bytes_max: usize,
    /// Time a handler may take; past it the request gets 503.
    pub request_timeout_ms: u64,
    /// Time a connection may go without reading or writing a byte while waiting to.
    pub idle_timeout_ms: u64,
    /// Age after which a connection reads end-of-file: the response in flight completes, then
    /// the connection closes. Bounds a peer that trickles a request byte by byte.
    pub connection_lifetime_ms: u64,
}

impl Default for AdminLimits {
    fn default() -> AdminLimits {
        AdminLimits {
            connections_max: 64,
            header_bytes_max: 8 * 1024,
            body_bytes_max: 64 * 1024,
            request_timeout_ms: 10_000,
            idle_timeout_ms: 20_000,
            connection_lifetime_ms: 60_000,
        }
    }
}

/// What the admin routes read: the node's metrics (with its command statistics), the node
/// itself, and the limits. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    metrics: Arc<Metrics>,
    source: Arc<dyn AdminSource>,
    limits: AdminLimits,
}

impl AdminState {
    /// State with the default [`AdminLimits`].
    pub fn new(metrics: Arc<Metrics>, source: Arc<dyn AdminSource>) -> AdminState {
        AdminState {
            metrics,
            source,
            limits: AdminLimits::default(),
        }
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: AdminLimits) -> AdminState {
        self.limits = limits;
        self
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The node's per-command statistics.
    pub fn command_stats(&self) -> &Arc<CommandStats> {
        self.metrics.command_stats()
    }

    /// The node, as seen by the admin API.
    pub fn source(&self) -> &Arc<dyn AdminSource> {
        &self.source
    }

    /// The limits in force.
    pub fn limits(&self) -> &AdminLimits {
        &self.limits
    }
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdminState")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Serves the admin API on `listener` until `shutdown` completes, then stops accepting,
/// lets requests in flight finish (each bounded by the request timeout) and returns.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_routes(listener, state, Router::new(), shutdown).await
}

/// Like [`serve`], with `extra_routes` (for example `/lb/haproxy`) served for any path the
/// built-in routes do not match. The built-in routes win on a clash, so adding routes can
/// never panic or shadow `/health`. The limits apply to the extra routes too.
pub async fn serve_with_routes(
    listener: TcpListener,
    state: AdminState,
    extra_routes: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local_addr = listener.local_addr()?;
    tracing::info!(%local_addr, "admin api listening");
    let admin_listener = AdminListener {
        tcp_listener: listener,
        connection_permits: Arc::new(Semaphore::new(
            state.limits.connections_max.min(Semaphore::MAX_PERMITS),
        )),
        state: state.clone(),
        not_allowed_logged_at: None,
    };
    axum::serve(admin_listener, router(state, extra_routes))
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!(%local_addr, "admin api stopped");
    Ok(())
}

/// The admin routes with their request limits, without a listener (for embedding or tests).
pub fn router(state: AdminState, extra_routes: Router) -> Router {
    let limits = state.limits.clone();
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/cluster", get(cluster))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback_service(extra_routes.fallback(not_found))
        .layer(DefaultBodyLimit::max(limits.body_bytes_max))
        .layer(middleware::from_fn_with_state(limits, bound_request))
        .with_state(state)
}

/// Refuses requests whose head or declared body is too large, and bounds handler time.
async fn bound_request(
    State(limits): State<AdminLimits>,
    request: Request,
    next: Next,
) -> Response {
    let request_line_bytes = request.method().as_str().len()
        + request.uri().path().len()
        + request.uri().query().map_or(0, |query| query.len() + 1)
        + " HTTP/1.1\r\n".len();
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum();
    if request_line_bytes + header_bytes > limits.header_bytes_max {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "request head is larger than header-bytes-max ({})",
                limits.header_bytes_max
            ),
        );
    }
    let declared_body_bytes = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_body_bytes.is_some_and(|bytes| bytes > limits.body_bytes_max as u64) {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "request body is larger than body-bytes-max ({})",
                limits.body_bytes_max
            ),
        );
    }
    let request_timeout = Duration::from_millis(limits.request_timeout_ms);
    match tokio::time::timeout(request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "request took longer than request-timeout-ms ({})",
                limits.request_timeout_ms
            ),
        ),
    }
}

async fn dashboard() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DASHBOARD_CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        DASHBOARD_HTML,
    )
        .into_response()
}

async fn health(State(state): State<AdminState>) -> Response {
    state.source.health().to_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            text,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics failed");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed")
        }
    }
}

async fn stats(State(state): State<AdminState>) -> Response {
    let mut body = match state.source.stats() {
        Value::Object(object) => object,
        Value::Null => Map::new(),
        other => Map::from_iter([("node_stats".to_owned(), other)]),
    };
    body.extend(state.metrics.to_json());
    json_response(StatusCode::OK, Value::Object(body))
}

async fn cluster(State(state): State<AdminState>) -> Response {
    json_response(StatusCode::OK, state.source.cluster())
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not found")
}

async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

fn error_response(status_code: StatusCode, message: &str) -> Response {
    json_response(status_code, json!({ "error": message }))
}

fn json_response(status_code: StatusCode, body: Value) -> Response {
    (
        status_code,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}

/// Accepts connections for axum, refusing peers that are not allowed or over the limit.
struct AdminListener {
    tcp_listener: TcpListener,
    /// One permit per connection being served, held by its [`LimitedStream`].
    connection_permits: Arc<Semaphore>,
    state: AdminState,
    /// When a refusal under `--allow` was last logged: at most one line a second, as on the
    /// client ports.
    not_allowed_logged_at: Option<std::time::Instant>,
}

impl axum::serve::Listener for AdminListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedStream, SocketAddr) {
        loop {
            // axum's accept retries on errors itself (and backs off on running out of file
            // descriptors), so this only ever returns a connection.
            let (tcp_stream, peer_addr) =
                axum::serve::Listener::accept(&mut self.tcp_listener).await;
            if !self
                .state
                .source
                .peer_allowed(peer_addr.ip().to_canonical())
            {
                self.state
                    .metrics
                    .admin_connections_rejected
                    .inc(AdminRejectReason::NotAllowed);
                if self
                    .not_allowed_logged_at
                    .is_none_or(|logged| logged.elapsed() >= std::time::Duration::from_secs(1))
                {
                    self.not_allowed_logged_at = Some(std::time::Instant::now());
                    tracing::warn!(%peer_addr, "refused an admin connection from a host outside --allow");
                }
                refuse(&tcp_stream, "403 Forbidden", "address not allowed");
                continue;
            }
            let Ok(connection_permit) = Arc::clone(&self.connection_permits).try_acquire_owned()
            else {
                self.state
                    .metrics
                    .admin_connections_rejected
                    .inc(AdminRejectReason::TooManyConnections);
                tracing::debug!(%peer_addr, "admin connection refused: too many connections");
                refuse(
                    &tcp_stream,
                    "503 Service Unavailable",
                    "too many admin connections",
                );
                continue;
            };
            // Responses are written whole; Nagle would only delay the last segment.
            if let Err(error) = tcp_stream.set_nodelay(true) {
                tracing::debug!(%peer_addr, %error, "setting TCP_NODELAY failed");
            }
            return (
                LimitedStream::new(tcp_stream, connection_permit, &self.state.limits),
                peer_addr,
            );
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp_listener.local_addr()
    }
}

/// Writes a short error response to a connection that will be closed unread.
fn refuse(tcp_stream: &TcpStream, status_line: &str, message: &str) {
    let body = json!({ "error": message }).to_string();
    let response = format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Best effort and without waiting: a new socket's send buffer has room for these few
    // bytes, and a refused peer gets no more of our time than this. The socket is closed
    // when the caller drops it.
    if let Err(error) = tcp_stream.try_write(response.as_bytes()) {
        tracing::debug!(%error, "writing the refusal failed");
    }
}

/// A connection that holds its permit while open and ends idle or old connections.
struct LimitedStream {
    tcp_stream: TcpStream,
    /// Fires at the idle deadline, or at the lifetime deadline if that comes first and has
    /// not passed yet.
    deadline_timer: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    idle_deadline: Instant,
    lifetime_deadline: Instant,
    /// Released when hyper drops the connection.
    _connection_permit: OwnedSemaphorePermit,
}

impl LimitedStream {
    fn new(
        tcp_stream: TcpStream,
        connection_permit: OwnedSemaphorePermit,
        limits: &AdminLimits,
    ) -> LimitedStream {
        let now = Instant::now();
        let idle_timeout = Duration::from_millis(limits.idle_timeout_ms);
        let idle_deadline = deadline_after(now, idle_timeout);
        let lifetime_deadline =
            deadline_after(now, Duration::from_millis(limits.connection_lifetime_ms));
        LimitedStream {
            tcp_stream,
            deadline_timer: Box::pin(tokio::time::sleep_until(
                idle_deadline.min(lifetime_deadline),
            )),
            idle_timeout,
            idle_deadline,
            lifetime_deadline,
            _connection_permit: connection_permit,
        }
    }

    /// Bytes moved: push the idle deadline out.
    fn on_progress(&mut self) {
        let now = Instant::now();
        self.idle_deadline = deadline_after(now, self.idle_timeout);
        self.arm_timer(now);
    }

    fn arm_timer(&mut self, now: Instant) {
        let next_deadline = if now < self.lifetime_deadline {
            self.idle_deadline.min(self.lifetime_deadline)
        } else {
            self.idle_deadline
        };
        self.deadline_timer.as_mut().reset(next_deadline);
    }

    fn idle_error() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "admin connection idle for too long",
        )
    }

    /// For a write that cannot progress: an error once idle for too long, else pending
    /// with the timer armed.
    fn poll_write_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.deadline_timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if now >= self.idle_deadline {
                return Poll::Ready(LimitedStream::idle_error());
            }
            // The lifetime deadline fired; that only ends reading. Wait for the idle one.
            self.arm_timer(now);
        }
    }
}

/// `now + timeout`, or a year from now for a timeout too large to add (a limit configured
/// as "practically never" must not panic).
fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);
    now.checked_add(timeout.min(FAR_FUTURE)).unwrap_or(now)
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if Instant::now() >= this.lifetime_deadline {
            // End of file: hyper finishes the response in flight, if any, then closes.
            return Poll::Ready(Ok(()));
        }
        let filled_before = buf.filled().len();
        match Pin::new(&mut this.tcp_stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > filled_before {
                    this.on_progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                if this.deadline_timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if Instant::now() >= this.lifetime_deadline {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(LimitedStream::idle_error()))
                }
            }
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp_stream).poll_write(cx, buf) {
            Poll::Ready(Ok(num_bytes)) => {
                if num_bytes > 0 {
                    this.on_progress();
                }
                Poll::Ready(Ok(num_bytes))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.poll_write_deadline(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp_stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(num_bytes)) => {
                if num_bytes > 0 {
                    this.on_progress();
                }
                Poll::Ready(Ok(num_bytes))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.poll_write_deadline(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp_stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp_stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp_stream).poll_shutdown(cx)
    }
}
