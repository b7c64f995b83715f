//! The HTTP surfaces: `GET /health`, `GET /status`, `GET /metrics`, the status page at `GET /`,
//! the token-protected write endpoints `POST /ack`, `POST /silence`, `POST /maintenance` and
//! `POST /worker`, and the `push` probes' `POST /ping/NAME` (`/start`, `/fail`), each ping
//! authenticated by its probe's own token.
//!
//! Handlers read a [`StatusBoard`] that the runtime updates whenever anything changes; they clone
//! the snapshot and let go at once, so nothing the runtime is doing (a 5-minute heal) can make
//! them stale or slow. Slow or hostile clients are bounded three ways: a header read timeout per
//! connection, a cap on open connections, and a timeout plus a load-shedding concurrency limit per
//! request.
//!
//! ```no_run
//! # async fn demo(state_dir: &std::path::Path) -> std::io::Result<()> {
//! use std::sync::Arc;
//! use talon::server::{self, ServerOptions, ServerState, StatusBoard, snapshot::StatusSnapshot};
//! let board = StatusBoard::new(StatusSnapshot::new(0));
//! let metrics = Arc::new(talon::metrics::Metrics::new());
//! let (tx, mut control_rx) = tokio::sync::mpsc::channel(16);
//! let token = server::control::ensure_token(state_dir).ok();
//! let state = ServerState::new(board.clone(), metrics).with_control(tx, token);
//! let handle = server::serve("127.0.0.1:9999".parse().unwrap(), state, ServerOptions::default()).await?;
//! board.update(1, |s| s.consecutive_failures = 1);
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

pub mod control;
pub mod guard;
pub mod page;
pub mod snapshot;

use crate::metrics::{self, Metrics};
use crate::probe::push::{self, PushEvent};
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use control::{
    AckBody, ControlReply, ControlRequest, MaintenanceBody, SilenceBody, WorkerBody, bearer_matches,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use snapshot::StatusSnapshot;
use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tower::{BoxError, ServiceBuilder};

/// The always-current snapshot, shared by the runtime (writer) and the server (reader).
/// Cloning shares the same board.
#[derive(Clone, Debug)]
pub struct StatusBoard(Arc<watch::Sender<StatusSnapshot>>);

impl StatusBoard {
    pub fn new(initial: StatusSnapshot) -> Self {
        Self(Arc::new(watch::Sender::new(initial)))
    }

    /// Edit the snapshot in place and stamp `updated_at_unix = now_unix`. Keep `f` quick (it runs
    /// under the board's write lock): compute first, then publish.
    pub fn update(&self, now_unix: i64, f: impl FnOnce(&mut StatusSnapshot)) {
        self.0.send_modify(|s| {
            f(s);
            s.updated_at_unix = now_unix;
        });
    }

    /// Replace the whole snapshot.
    pub fn replace(&self, snapshot: StatusSnapshot) {
        self.0.send_replace(snapshot);
    }

    /// A copy of the current snapshot.
    pub fn get(&self) -> StatusSnapshot {
        self.0.borrow().clone()
    }

    /// Read the current snapshot without copying it; keep `f` quick.
    pub fn read<R>(&self, f: impl FnOnce(&StatusSnapshot) -> R) -> R {
        f(&self.0.borrow())
    }

    /// A receiver that wakes on every change (used by the heartbeat).
    pub fn subscribe(&self) -> watch::Receiver<StatusSnapshot> {
        self.0.subscribe()
    }
}

/// The write side: where `POST /ack` and `POST /silence` go, and the token they need.
#[derive(Clone, Debug)]
struct Control {
    tx: mpsc::Sender<ControlRequest>,
    token: Arc<str>,
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct ServerState {
    board: StatusBoard,
    metrics: Arc<Metrics>,
    control: Option<Control>,
    /// How long a write endpoint waits for the runtime's reply.
    control_timeout: Duration,
    /// The `Host` values (and origins) that are this server's own; set from the bound address.
    hosts: Arc<guard::HostAllowList>,
}

impl ServerState {
    /// Read-only state: write endpoints answer 503 until [`ServerState::with_control`].
    pub fn new(board: StatusBoard, metrics: Arc<Metrics>) -> Self {
        Self {
            board,
            metrics,
            control: None,
            control_timeout: Duration::from_secs(5),
            hosts: Arc::new(guard::HostAllowList::for_bind(SocketAddr::from((
                [127, 0, 0, 1],
                0,
            )))),
        }
    }

    /// Enable the write endpoints: requests go to `tx`, authenticated with `token`. With no token
    /// (the token file could not be read) they stay closed.
    pub fn with_control(mut self, tx: mpsc::Sender<ControlRequest>, token: Option<String>) -> Self {
        self.control = token.filter(|t| !t.is_empty()).map(|t| Control {
            tx,
            token: t.into(),
        });
        self
    }

    /// How long write endpoints wait for the runtime (default 5 s) before answering 504.
    pub fn with_control_timeout(mut self, d: Duration) -> Self {
        self.control_timeout = d;
        self
    }
}

/// Limits that keep slow or hostile clients from starving the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A request must be answered within this (408 otherwise).
    pub request_timeout: Duration,
    /// A connection must send a request's headers within this, else it is closed.
    pub header_read_timeout: Duration,
    /// Open connections at most. At the cap, a new connection closes the oldest idle one (no
    /// request in flight: a silent or slow client, a parked keep-alive), so idle clients cannot
    /// lock a fresh one out; only when every connection is mid-request is the new one closed.
    pub max_connections: usize,
    /// Requests in flight at most; more are answered 503 at once.
    pub max_in_flight: usize,
    /// On shutdown, open connections get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(5),
            max_connections: 256,
            max_in_flight: 64,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Largest accepted request body (write endpoints take small JSON).
const MAX_BODY: usize = 16 * 1024;
/// Largest request head (request line and headers) read into memory.
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 64;

/// The routes, with request timeout and load shedding. Tests drive it with `oneshot`.
pub fn router(state: ServerState, opts: &ServerOptions) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .route("/ack", post(ack))
        .route("/silence", post(silence))
        .route("/approve", post(approve))
        .route("/deny", post(deny))
        .route("/agent/reset", post(agent_reset))
        .route("/maintenance", post(maintenance))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route(
            "/ping/{name}",
            post(ping).layer(DefaultBodyLimit::max(push::MAX_PING_BODY)),
        )
        .route(
            "/ping/{name}/{event}",
            post(ping_event).layer(DefaultBodyLimit::max(push::MAX_PING_BODY)),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.hosts.clone(),
            host_guard,
        ))
        .with_state(state.clone())
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overload_response))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    opts.max_in_flight.max(1),
                ))
                .timeout(opts.request_timeout),
        )
        .merge(worker_router(state, opts))
}

/// `POST /worker` waits for a graceful stop (up to the worker's `drain_timeout_secs`) and a
/// start: its own, longer request limit, and its own small concurrency bound.
fn worker_router(state: ServerState, opts: &ServerOptions) -> Router {
    let hosts = state.hosts.clone();
    Router::new()
        .route("/worker", post(worker))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // The same Host allow-list as every other route (DNS rebinding).
        .layer(axum::middleware::from_fn_with_state(hosts, host_guard))
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overload_response))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    opts.max_in_flight.clamp(1, 4),
                ))
                .timeout(
                    opts.request_timeout
                        .max(control::WORKER_CONTROL_TIMEOUT + Duration::from_secs(5)),
                ),
        )
}

/// DNS rebinding: a request naming a host that is not this server's is answered 421.
async fn host_guard(
    State(hosts): State<Arc<guard::HostAllowList>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match hosts.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(why) => {
            tracing::debug!(%why, "http: request for a foreign host refused");
            (StatusCode::MISDIRECTED_REQUEST, format!("{why}\n")).into_response()
        }
    }
}

async fn overload_response(err: BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response()
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        (StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n").into_response()
    } else {
        tracing::warn!(error = %err, "http: request failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}

async fn health(State(st): State<ServerState>) -> Response {
    let h = st.board.read(StatusSnapshot::health);
    let code = if h.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, no_cache(), Json(h)).into_response()
}

async fn status(State(st): State<ServerState>) -> Response {
    (no_cache(), Json(st.board.get())).into_response()
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format otherwise.
async fn metrics_text(State(st): State<ServerState>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(header::CONTENT_TYPE, metrics::OPENMETRICS_CONTENT_TYPE)],
            st.metrics.render_openmetrics(),
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, metrics::TEXT_CONTENT_TYPE)],
            st.metrics.render(),
        )
            .into_response()
    }
}

async fn index(State(st): State<ServerState>) -> Response {
    let snap = st.board.get();
    (no_cache(), Html(page::render(&snap))).into_response()
}

fn no_cache() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

/// An error answer from an endpoint: a status code and a JSON `{"ok":false,"error":…}` body.
#[derive(Debug)]
struct ApiError {
    code: StatusCode,
    message: String,
}

impl ApiError {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.code,
            Json(serde_json::json!({ "ok": false, "error": self.message })),
        )
            .into_response();
        if self.code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// Check the token, and that the request is not one a browser page could forge.
fn authorize<'a>(st: &'a ServerState, headers: &HeaderMap) -> Result<&'a Control, ApiError> {
    guard::refuse_browser_request(headers, &st.hosts)
        .map_err(|(code, message)| ApiError::new(code, message))?;
    let Some(control) = &st.control else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "write endpoints are disabled (no API token)",
        ));
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(auth, &control.token) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "missing or wrong bearer token (see <state_dir>/{})",
                crate::store::layout::TOKEN_FILE
            ),
        ));
    }
    Ok(control)
}

/// Parse a JSON body; an empty body means the type's default.
fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_required(body)
}

fn parse_required<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

async fn forward(
    st: &ServerState,
    control: &Control,
    make: impl FnOnce(oneshot::Sender<ControlReply>) -> ControlRequest,
) -> Result<Response, ApiError> {
    forward_within(st, control, st.control_timeout, make).await
}

async fn forward_within(
    st: &ServerState,
    control: &Control,
    reply_timeout: Duration,
    make: impl FnOnce(oneshot::Sender<ControlReply>) -> ControlRequest,
) -> Result<Response, ApiError> {
    let (reply_tx, reply_rx) = oneshot::channel();
    let unavailable = |m: &str| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m);
    control
        .tx
        .send_timeout(make(reply_tx), st.control_timeout)
        .await
        .map_err(|_| unavailable("the runtime is not accepting requests"))?;
    let reply = tokio::time::timeout(reply_timeout, reply_rx)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "the runtime did not answer in time",
            )
        })?
        .map_err(|_| unavailable("the runtime dropped the request"))?;
    match reply {
        ControlReply::Done(msg) => {
            Ok(Json(serde_json::json!({ "ok": true, "message": msg })).into_response())
        }
        ControlReply::NotFound(msg) => Err(ApiError::new(StatusCode::NOT_FOUND, msg)),
        ControlReply::Rejected(msg) => Err(ApiError::new(StatusCode::CONFLICT, msg)),
    }
}

async fn ack(
    State(st): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let control = authorize(&st, &headers)?;
    let b: AckBody = parse_body(&body)?;
    forward(&st, control, |reply| ControlRequest::Ack {
        incident: b.incident,
        by: control::http_caller(b.by.as_deref()),
        reply,
    })
    .await
}

async fn silence(
    State(st): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let control = authorize(&st, &headers)?;
    let b: SilenceBody = parse_required(&body)?;
    let duration = b
        .duration
        .to_duration()
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    if b.probe.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`probe` must not be empty",
        ));
    }
    forward(&st, control, |reply| ControlRequest::Silence {
        probe: b.probe,
        duration,
        reason: b.reason,
        by: control::http_caller(b.by.as_deref()),
        reply,
    })
    .await
}

async fn approve(
    State(st): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let control = authorize(&st, &headers)?;
    let b: control::DecisionBody = parse_required(&body)?;
    forward(&st, control, |reply| ControlRequest::Approve {
        approval: b.approval,
        by: control::http_caller(b.by.as_deref()),
        reply,
    })
    .await
}

async fn deny(
    State(st): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let control = authorize(&st, &headers)?;
    let b: control::DecisionBody = parse_required(&body)?;
    forward(&st, control, |reply| ControlRequest::Deny {
        approval: b.approval,
        by: control::http_caller(b.by.as_deref()),
        reply,
    })
    .await
}

async fn agent_reset(
    State(st): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let control = authorize(&st, &headers)?;
    let b: control::ResetBody = parse_body(&body)?;
    forward(&st, control, |reply| ControlRequest::AgentReset {
        by: control::http_caller(b.by.as_deref()),
        reply,
    })
    .await
}

/// `POST /worker {"action": "restart"}`: the worker's controls, answered when done.
async fn worker(
    State(st): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let control = authorize(&st, &headers)?;
    let b: WorkerBody = parse_required(&body)?;
    let wait = st.control_timeout.max(control::WORKER_CONTROL_TIMEOUT);
    forward_within(&st, control, wait, |reply| ControlRequest::Worker {
        action: b.action,
        by: control::http_caller(b.by.as_deref()),
        reply,
    })
    .await
}

/// `?token=` of a ping URL (the token may also come as `Authorization: Bearer`).
#[derive(Debug, Default, serde::Deserialize)]
struct PingQuery {
    token: Option<String>,
}

/// `POST /ping/NAME`: the `push` probe NAME's job succeeded.
async fn ping(
    State(st): State<ServerState>,
    Path(name): Path<String>,
    Query(q): Query<PingQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    push_report(&st, name, PushEvent::Success, q, &headers, &body).await
}

/// `POST /ping/NAME/start` and `POST /ping/NAME/fail` (the body is the job's output).
async fn ping_event(
    State(st): State<ServerState>,
    Path((name, event)): Path<(String, String)>,
    Query(q): Query<PingQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let event = match event.as_str() {
        "start" => PushEvent::Start,
        "fail" => PushEvent::Fail,
        "success" => PushEvent::Success,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown ping; use /ping/NAME, /ping/NAME/start or /ping/NAME/fail",
            ));
        }
    };
    push_report(&st, name, event, q, &headers, &body).await
}

/// Check the probe's own token (query or bearer), then hand the report to the runtime.
async fn push_report(
    st: &ServerState,
    probe: String,
    event: PushEvent,
    q: PingQuery,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let Some(control) = &st.control else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "pings are disabled (no API token)",
        ));
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let given = q.token.as_deref().or(bearer).unwrap_or("");
    if !push::token_matches(&control.token, &probe, given) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token for this check (`talon push-token NAME` prints its URL)",
        ));
    }
    let body = String::from_utf8_lossy(body).into_owned();
    forward(st, control, |reply| ControlRequest::Push {
        probe,
        event,
        body,
        reply,
    })
    .await
}

/// `POST /maintenance`: start, end or list maintenance windows (token-protected).
async fn maintenance(
    State(st): State<ServerState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let control = authorize(&st, &headers)?;
    let b: MaintenanceBody = parse_required(&body)?;
    let op = b
        .op()
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    forward(&st, control, |reply| ControlRequest::Maintenance {
        op,
        reply,
    })
    .await
}

/// A running server: its bound address, and how to stop it. Dropping the handle also stops the
/// server (without waiting for it).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
    state: ServerState,
    opts: ServerOptions,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("write_endpoints", &self.control.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The address actually bound (port 0 resolved).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, let open connections finish (up to the grace period), then return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.join.await;
    }

    /// Move to a new address (a changed `[health].bind`). The new address is bound before the
    /// old one is released, so a bad address leaves the server where it was (`Err` carries the
    /// still-running handle). When the new address overlaps the old one (same port), the old
    /// server is stopped first and restored if the new bind fails; only if the old address cannot
    /// be bound again either is the returned handle a stopped one (port 0).
    pub async fn rebind(self, bind: SocketAddr) -> Result<ServerHandle, (ServerHandle, io::Error)> {
        match TcpListener::bind(bind).await {
            Ok(listener) => {
                let (state, opts) = (self.state.clone(), self.opts.clone());
                self.shutdown().await;
                serve_listener(listener, state, opts).map_err(|e| {
                    // Only fails when the new socket has no local address: nothing left to run.
                    unreachable_handle(e)
                })
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                let (old, state, opts) = (self.addr, self.state.clone(), self.opts.clone());
                self.shutdown().await;
                match serve(bind, state.clone(), opts.clone()).await {
                    Ok(h) => Ok(h),
                    Err(e) => match serve(old, state, opts).await {
                        Ok(restored) => Err((restored, e)),
                        Err(e2) => Err(unreachable_handle(io::Error::new(
                            e.kind(),
                            format!(
                                "{e}; and the old address {old} could not be bound again: {e2}"
                            ),
                        ))),
                    },
                }
            }
            Err(e) => Err((self, e)),
        }
    }
}

/// A handle for a server that is not running (rebind lost both addresses).
fn unreachable_handle(e: io::Error) -> (ServerHandle, io::Error) {
    let (stop, _) = watch::channel(true);
    let h = ServerHandle {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        stop,
        join: tokio::spawn(async {}),
        state: ServerState::new(
            StatusBoard::new(StatusSnapshot::new(0)),
            Arc::new(Metrics::new()),
        ),
        opts: ServerOptions::default(),
    };
    (h, e)
}

/// Bind `bind` and serve until [`ServerHandle::shutdown`]. Errors only when binding fails.
pub async fn serve(
    bind: SocketAddr,
    state: ServerState,
    opts: ServerOptions,
) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(bind).await?;
    serve_listener(listener, state, opts)
}

/// Serve on an already bound listener.
pub fn serve_listener(
    listener: TcpListener,
    state: ServerState,
    opts: ServerOptions,
) -> io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let mut state = state;
    state.hosts = Arc::new(guard::HostAllowList::for_bind(addr));
    let app = router(state.clone(), &opts);
    let join = tokio::spawn(accept_loop(listener, app, opts.clone(), stop_rx));
    tracing::info!(%addr, "http: listening");
    Ok(ServerHandle {
        addr,
        stop,
        join,
        state,
        opts,
    })
}

/// One open connection, in accept order: its task, and how many requests it has in flight
/// (0 = idle: waiting for its first request's headers, or between keep-alive requests).
struct OpenConn {
    task: tokio::task::AbortHandle,
    in_flight: Arc<AtomicUsize>,
}

/// Decrements a connection's in-flight count when its request is done (or dropped).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    opts: ServerOptions,
    mut stop: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    let graceful = GracefulShutdown::new();
    let max = opts.max_connections.max(1);
    // Open connections by accept order, so the oldest idle one can be found.
    let mut open: BTreeMap<u64, OpenConn> = BTreeMap::new();
    let mut seq = 0u64;
    let mut conns = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        // Request line + headers at most this big (431 beyond); hyper's floor is 8 KiB.
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    loop {
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "http: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                open.retain(|_, c| !c.task.is_finished());
                if open.len() >= max {
                    // Full. Idle connections (slow or silent clients, parked keep-alives) must
                    // not lock a fresh client out for a whole header timeout: close the oldest
                    // idle one. Only when every connection is mid-request is the new one refused.
                    let oldest_idle = open
                        .iter()
                        .find(|(_, c)| c.in_flight.load(Ordering::Acquire) == 0)
                        .map(|(k, _)| *k);
                    match oldest_idle.and_then(|k| open.remove(&k)) {
                        Some(c) => {
                            c.task.abort();
                            tracing::debug!("http: connection cap reached; closed the oldest idle connection");
                        }
                        None => {
                            drop(stream);
                            continue;
                        }
                    }
                }
                let _ = stream.set_nodelay(true);
                let in_flight = Arc::new(AtomicUsize::new(0));
                let svc = {
                    let (app, in_flight) = (app.clone(), in_flight.clone());
                    hyper::service::service_fn(move |req| {
                        in_flight.fetch_add(1, Ordering::AcqRel);
                        let guard = InFlight(in_flight.clone());
                        let app = app.clone();
                        async move {
                            let _guard = guard;
                            tower::ServiceExt::oneshot(app, req).await
                        }
                    })
                };
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
                let task = conns.spawn(async move {
                    let _ = conn.await;
                });
                seq += 1;
                open.insert(seq, OpenConn { task, in_flight });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("http: connections still open after the grace period; closing them");
    }
    conns.shutdown().await;
    if let Some(addr) = addr {
        tracing::info!(%addr, "http: stopped");
    }
}
