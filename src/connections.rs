//! Accepting and guarding client connections (docs/api.md §2.10).
//!
//! Herald serves HTTP/1.1 through hyper's connection builder with its own accept loop, because
//! a server must bound what a client can hold without sending a request:
//!
//! - Each connection's socket is wrapped in [`GuardedIo`], which knows the connection's phase.
//!   While the request line and headers are awaited (from the accept, or from the first byte of a
//!   later request) the whole head must arrive within `header_read_timeout`; a client dribbling
//!   one header line at a time does not extend it. Between requests a kept-alive connection may
//!   stay silent for `idle_timeout`. When either runs out the read side reports end of file, so
//!   hyper closes the connection (after a best-effort 408 when a head was awaited).
//! - Once a request is handed to the router nothing times out the reading: waiting long-polls,
//!   streams and WebSockets are the point of this server. The request body alone has
//!   `body_read_timeout` ([`DeadlineBody`]); when it runs out the answer is 408.
//! - A write that cannot make progress for `ws_send_timeout` fails, so a client that stopped
//!   reading cannot pin a stream, a response or a socket buffer forever.
//! - `max_connections` and `max_connections_per_ip` are counted at accept (behind a trusted proxy
//!   the per-IP count is of the forwarded client's requests in flight instead); over them a
//!   connection gets one 503 and is closed.
//!
//! The timers are checked only while a head is awaited or a write is blocked, and allocate once
//! per connection, so requests in flight and open streams pay one atomic load per read.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::{Service, ServiceExt};

use crate::config::ServeArgs;
use crate::http::client_ip;
use crate::metrics::Metrics;

/// The answer to a connection over a limit.
const AT_LIMIT: &str = "Server is at its connection limit.";
/// The answer to a body that did not arrive in time.
const BODY_TIMEOUT: &str = "Request body timeout.";
/// Written straight to the socket when a head did not arrive in time: hyper has no response in
/// progress then, so nothing can interleave.
const HEADER_TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: application/json; charset=utf-8\r\ncontent-length: 36\r\nconnection: close\r\n\r\n\
{\"detail\":\"Request header timeout.\"}";
/// Connections being told 503 at once; beyond it they are closed without an answer, so a flood
/// cannot grow this side either.
const MAX_REFUSING: usize = 256;
/// How long a refused connection may take to send the request it is refused.
const REFUSE_WITHIN: Duration = Duration::from_secs(5);

/// The limits of docs/api.md §2.10 and what is needed to find a client's IP (§2.8).
#[derive(Clone, Debug)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// 0 = off.
    pub max_per_ip: u32,
    pub trust_proxy: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Limits {
    pub fn from_args(args: &ServeArgs) -> Limits {
        Limits {
            header_read_timeout: args.header_read_timeout,
            body_read_timeout: args.body_read_timeout,
            idle_timeout: args.idle_timeout,
            write_timeout: args.ws_send_timeout,
            max_connections: args.max_connections as usize,
            max_per_ip: args.max_connections_per_ip,
            trust_proxy: args.trust_proxy,
            trusted_proxies: args.trusted_proxies.clone(),
        }
    }

    /// Whether requests from this peer carry the client's address in `X-Forwarded-For`.
    fn is_proxy(&self, peer: IpAddr) -> bool {
        self.trust_proxy || self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// Why a connection or request was turned away (for metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    MaxConnections,
    PerIp,
    HeaderTimeout,
    BodyTimeout,
}

impl Rejection {
    pub const ALL: [Rejection; 4] = [
        Rejection::MaxConnections,
        Rejection::PerIp,
        Rejection::HeaderTimeout,
        Rejection::BodyTimeout,
    ];

    /// The `reason` label of `herald_connections_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::MaxConnections => "max_connections",
            Rejection::PerIp => "per_ip",
            Rejection::HeaderTimeout => "header_timeout",
            Rejection::BodyTimeout => "body_timeout",
        }
    }
}

/// Open connections, per-IP counts and what was turned away.
pub struct Connections {
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// The server's `herald_connections_rejected_total` children, by [`Rejection`].
    rejected: [IntCounter; 4],
}

impl Connections {
    pub fn new(metrics: &Metrics) -> Connections {
        Connections {
            open: AtomicUsize::new(0),
            per_ip: Mutex::default(),
            rejected: Rejection::ALL.map(|reason| metrics.connection_rejected(reason).clone()),
        }
    }

    /// Client connections open now, upgraded WebSockets included.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections or requests turned away for `reason` since start.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected[reason as usize].get()
    }

    fn count(&self, reason: Rejection) {
        self.rejected[reason as usize].inc();
    }

    /// A place for one more connection, or why there is none.
    fn admit(
        self: &Arc<Self>,
        limits: &Limits,
        ip: Option<IpAddr>,
    ) -> Result<ConnectionSlot, Rejection> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= limits.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.count(Rejection::MaxConnections);
            return Err(Rejection::MaxConnections);
        }
        let mut slot = ConnectionSlot {
            connections: self.clone(),
            ip: None,
        };
        if let Some(ip) = ip.filter(|_| limits.max_per_ip > 0) {
            slot.ip = Some(
                self.take_ip(ip, limits.max_per_ip)
                    .ok_or(Rejection::PerIp)?,
            );
        }
        Ok(slot)
    }

    /// One of `ip`'s `max` places, if one is free.
    fn take_ip(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<IpSlot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip).or_default();
        if *count >= max {
            drop(per_ip);
            self.count(Rejection::PerIp);
            return None;
        }
        *count += 1;
        Some(IpSlot {
            connections: self.clone(),
            ip,
        })
    }
}

/// A connection's place in the count; given back when the connection (or its WebSocket) ends.
struct ConnectionSlot {
    connections: Arc<Connections>,
    ip: Option<IpSlot>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One of a client IP's places.
struct IpSlot {
    connections: Arc<Connections>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self
            .connections
            .per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Where a connection is in its life; decides which read timeout applies.
const AWAITING_HEAD: u8 = 0;
const IN_FLIGHT: u8 = 1;
const IDLE: u8 = 2;
const UPGRADED: u8 = 3;

/// What a connection's socket, its requests and their bodies share.
struct ConnState {
    phase: AtomicU8,
    /// When the phase began, in milliseconds since `opened`.
    since_ms: AtomicU64,
    opened: Instant,
    /// The read side's waker: a response that ends re-arms the idle timer through it.
    reader: AtomicWaker,
    /// Set when the current request's body ran out of time.
    body_timed_out: AtomicBool,
    limits: Arc<Limits>,
    connections: Arc<Connections>,
    /// Behind a proxy: the client's place, kept for as long as its WebSocket lives.
    upgraded_slot: Mutex<Option<IpSlot>>,
    _slot: ConnectionSlot,
}

impl ConnState {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    fn enter(&self, phase: u8) {
        let since = self.opened.elapsed().as_millis() as u64;
        self.since_ms.store(since, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// When the current phase's read timeout runs out.
    fn read_deadline(&self, phase: u8) -> Instant {
        let timeout = if phase == IDLE {
            self.limits.idle_timeout
        } else {
            self.limits.header_read_timeout
        };
        self.opened + Duration::from_millis(self.since_ms.load(Ordering::Relaxed)) + timeout
    }

    /// A response is complete: the connection waits for the next request.
    fn response_done(&self) {
        if self.phase() == IN_FLIGHT {
            self.enter(IDLE);
            self.reader.wake();
        }
    }
}

/// The socket of one client connection, with the read and write timeouts of docs/api.md §2.10.
struct GuardedIo {
    stream: TcpStream,
    conn: Arc<ConnState>,
    read_timer: Pin<Box<Sleep>>,
    read_timer_at: Option<Instant>,
    /// Armed while a write is blocked.
    write_timer: Option<Pin<Box<Sleep>>>,
    write_blocked: bool,
    /// A read timeout ran out: the read side stays at end of file.
    expired: bool,
}

impl GuardedIo {
    fn new(stream: TcpStream, conn: Arc<ConnState>) -> GuardedIo {
        let now = Instant::now();
        GuardedIo {
            stream,
            conn,
            read_timer: Box::pin(tokio::time::sleep_until(now)),
            read_timer_at: None,
            write_timer: None,
            write_blocked: false,
            expired: false,
        }
    }

    /// A read timeout ran out: say 408 if a head was awaited, then end the read side.
    fn expire(&mut self, phase: u8) -> Poll<io::Result<()>> {
        self.expired = true;
        if phase == AWAITING_HEAD {
            self.conn.connections.count(Rejection::HeaderTimeout);
            // Best effort: a small answer fits an empty socket buffer; if not, the close says it.
            let _ = self.stream.try_write(HEADER_TIMEOUT_RESPONSE);
        }
        Poll::Ready(Ok(()))
    }

    /// Runs a write, failing it when it has been blocked for the write timeout.
    fn guard_write(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match write(Pin::new(&mut self.stream), cx) {
            Poll::Ready(result) => {
                self.write_blocked = false;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let deadline = Instant::now() + self.conn.limits.write_timeout;
                let timer = self
                    .write_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !self.write_blocked {
                    timer.as_mut().reset(deadline);
                    self.write_blocked = true;
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading",
                )))
            }
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let phase = this.conn.phase();
        if phase == UPGRADED {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        this.conn.reader.register(cx.waker());
        if phase == IN_FLIGHT {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let deadline = this.conn.read_deadline(phase);
        if Instant::now() >= deadline {
            return this.expire(phase);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if phase == IDLE && buf.filled().len() > before {
                    // The first byte of the next request: its head has the header timeout.
                    this.conn.enter(AWAITING_HEAD);
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if this.read_timer_at != Some(deadline) {
                    this.read_timer.as_mut().reset(deadline);
                    this.read_timer_at = Some(deadline);
                }
                ready!(this.read_timer.as_mut().poll(cx));
                this.expire(phase)
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard_write(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard_write(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A request body that must arrive whole within `body_read_timeout` of its headers. When the
/// time runs out it fails, and the connection's service answers 408 whatever the handler said.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    conn: Arc<ConnState>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        this.conn.body_timed_out.store(true, Ordering::Relaxed);
        this.conn.connections.count(Rejection::BodyTimeout);
        Poll::Ready(Some(Err(BODY_TIMEOUT.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the connection when the response is over, and holds the
/// client's per-IP place (behind a proxy) until then.
pub struct TrackedBody {
    inner: Body,
    conn: Arc<ConnState>,
    ip_slot: Option<IpSlot>,
    done: bool,
}

impl TrackedBody {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.ip_slot = None;
            self.conn.response_done();
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if frame.is_none() || this.inner.is_end_stream() {
            this.finish();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A JSON `{"detail": ...}` answer that closes the connection.
fn closing_answer(status: StatusCode, detail: &str) -> Response<Body> {
    let body = serde_json::to_vec(&serde_json::json!({ "detail": detail })).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// What is served: the router, as a tower service.
pub trait Served:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> Served for S where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// The router as one connection sees it.
struct ConnService<S> {
    router: S,
    conn: Arc<ConnState>,
    peer: SocketAddr,
    /// The peer is a trusted proxy: per-IP places are taken per request.
    behind_proxy: bool,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Served,
{
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<TrackedBody>, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let conn = self.conn.clone();
        conn.enter(IN_FLIGHT);
        conn.body_timed_out.store(false, Ordering::Relaxed);
        let limits = &conn.limits;
        let ip_slot = if self.behind_proxy && limits.max_per_ip > 0 {
            let ip = client_ip(
                self.peer.ip(),
                request.headers(),
                limits.trust_proxy,
                &limits.trusted_proxies,
            );
            match conn.connections.take_ip(ip, limits.max_per_ip) {
                Some(slot) => Some(slot),
                None => {
                    let response = closing_answer(StatusCode::SERVICE_UNAVAILABLE, AT_LIMIT);
                    return Box::pin(std::future::ready(Ok(track(response, conn, None))));
                }
            }
        } else {
            None
        };
        let deadline = Instant::now() + limits.body_read_timeout;
        let mut request = request.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline,
                timer: None,
                conn: conn.clone(),
            })
        });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let Ok(mut response) = router.oneshot(request).await;
            if conn.body_timed_out.load(Ordering::Relaxed) {
                response = closing_answer(StatusCode::REQUEST_TIMEOUT, BODY_TIMEOUT);
            }
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                // The socket now belongs to the WebSocket: no read timeouts, and the client's
                // place is held for as long as the socket lives.
                conn.phase.store(UPGRADED, Ordering::Relaxed);
                *conn.upgraded_slot.lock().unwrap_or_else(|e| e.into_inner()) = ip_slot;
                return Ok(track(response, conn, None));
            }
            Ok(track(response, conn, ip_slot))
        })
    }
}

fn track(
    response: Response<Body>,
    conn: Arc<ConnState>,
    ip_slot: Option<IpSlot>,
) -> Response<TrackedBody> {
    response.map(|inner| TrackedBody {
        inner,
        conn,
        ip_slot,
        done: false,
    })
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, asks every
/// connection to finish its request in flight and close, and returns when all have.
pub async fn serve<S>(
    listener: TcpListener,
    router: S,
    limits: Limits,
    connections: Arc<Connections>,
    shutdown: CancellationToken,
) where
    S: Served,
{
    let limits = Arc::new(limits);
    let tracker = TaskTracker::new();
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let behind_proxy = limits.is_proxy(peer.ip());
        // A proxy's connections carry many clients: their places are taken per request.
        let counted_ip = (!behind_proxy).then_some(peer.ip());
        match connections.admit(&limits, counted_ip) {
            Ok(slot) => {
                let conn = Arc::new(ConnState {
                    phase: AtomicU8::new(AWAITING_HEAD),
                    since_ms: AtomicU64::new(0),
                    opened: Instant::now(),
                    reader: AtomicWaker::new(),
                    body_timed_out: AtomicBool::new(false),
                    limits: limits.clone(),
                    connections: connections.clone(),
                    upgraded_slot: Mutex::new(None),
                    _slot: slot,
                });
                let service = ConnService {
                    router: router.clone(),
                    conn: conn.clone(),
                    peer,
                    behind_proxy,
                };
                let io = TokioIo::new(GuardedIo::new(stream, conn));
                tracker.spawn(serve_connection(io, service, shutdown.clone()));
            }
            Err(_) => {
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tracker.spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

async fn serve_connection<S>(
    io: TokioIo<GuardedIo>,
    service: ConnService<S>,
    shutdown: CancellationToken,
) where
    S: Served,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!("connection ended: {err}");
    }
}

/// Answers one request on a connection over a limit with 503, then closes it.
async fn refuse(stream: TcpStream) {
    let service = hyper::service::service_fn(|_request: Request<Incoming>| {
        std::future::ready(Ok::<_, Infallible>(closing_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            AT_LIMIT,
        )))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSE_WITHIN, connection).await;
}

/// Accept errors are about one connection (reset before accept) or the process (out of file
/// descriptors): the latter gets a pause so the loop does not spin.
async fn accept_failed(err: io::Error) {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accepting a connection failed: {err}; retrying in 100ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_timeout_answer_has_the_right_length() {
        let text = std::str::from_utf8(HEADER_TIMEOUT_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["detail"], "Request header timeout.");
    }

    fn limits(max_connections: usize, max_per_ip: u32) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
            max_connections,
            max_per_ip,
            trust_proxy: false,
            trusted_proxies: Vec::new(),
        }
    }

    #[test]
    fn places_are_given_back() {
        let connections = Arc::new(Connections::new(&Metrics::new()));
        let limits = limits(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = connections.admit(&limits, Some(a)).ok().unwrap();
        let _second = connections.admit(&limits, Some(a)).ok().unwrap();
        assert_eq!(
            connections.admit(&limits, Some(a)).err(),
            Some(Rejection::PerIp)
        );
        let _third = connections.admit(&limits, Some(b)).ok().unwrap();
        assert_eq!(
            connections.admit(&limits, Some(b)).err(),
            Some(Rejection::MaxConnections)
        );
        assert_eq!(connections.open(), 3);
        drop(first);
        assert_eq!(connections.open(), 2);
        assert!(connections.admit(&limits, Some(a)).is_ok());
        assert_eq!(connections.rejected(Rejection::PerIp), 1);
        assert_eq!(connections.rejected(Rejection::MaxConnections), 1);
        assert!(connections.per_ip.lock().unwrap().len() <= 2);
    }
}
