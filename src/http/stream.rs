//! WebSocket and SSE subscribers (docs/api.md §9.9, §9.10): replay from storage, then live, with no
//! gap and no duplicate at the seam.
//!
//! One engine drives both transports. A stream has a *position* (the last id it sent, or for a
//! live-only stream the channel's last id when it opened). It subscribes to the hub first, then
//! replays `id > position` from storage page by page as the socket drains, then forwards live
//! deliveries, skipping any id at or below its position. Whatever the hub could not hold
//! (`Lagged`) is read back from storage the same way, so nothing is lost and nothing repeats.
//!
//! Each stream has its own bounded queue of `stream_queue` live messages. A client too slow to
//! drain it gets the overflow error and is closed (1013); publishers never wait for anyone.
//! A write that cannot complete within `ws_send_timeout` closes the stream too (1013, docs/api.md §2.10),
//! while the re-checks and the dead-peer watch keep running during the blocked write.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use prometheus::IntCounter;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::sync::watch::error::RecvError as RecvClosed;
use tokio::time::{Instant, MissedTickBehavior, interval_at};

use super::AppState;
use super::channels::may_subscribe;
use super::messages::{Gap, retention_gap};
use super::scope::{Caller, caller_for};
use crate::access::{AccessWatch, Reach, Target};
use crate::auth::Credential;
use crate::error::{ApiError, PERMISSION_DENIED};
use crate::hub::{Delivery, Subscription};
use crate::keys::Key;
use crate::metrics::{self, GapSeen, Present};
use crate::render::message_json;
use crate::store::{Channel, IdPage, Instance, StoreError};

/// Messages read from storage per replay query.
const REPLAY_PAGE: i64 = 256;
/// Client frames above this close the connection with 1009 (docs/api.md §9.9).
const MAX_CLIENT_FRAME: usize = 4096;
/// Bytes gathered before tungstenite writes to the socket without waiting for the flush.
const WRITE_BUFFER: usize = 64 * 1024;
/// Most queued messages written before one flush.
const SEND_BATCH: usize = 64;
/// Initial per-connection read buffer.
const READ_BUFFER: usize = 1024;
/// How long the final error frame and close may take before the connection is dropped. A client
/// that is slow to read (the overflow case) gets a few seconds to take them; shutdown is bounded
/// by its grace period regardless.
const FINISH_WITHIN: Duration = Duration::from_secs(5);
/// Credentials and permission are re-checked at least this often, and after every change that
/// concerns the stream...
const RECHECK_EVERY: Duration = Duration::from_secs(60);
/// ...but never more often than this, however many changes arrive.
const RECHECK_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// What a stream follows, and with which key it was opened.
pub struct StreamTarget {
    pub instance: Arc<Instance>,
    pub channel: Arc<Channel>,
    pub room: Option<String>,
    pub key: Option<Key>,
    pub user_key: Option<Key>,
    /// WebSocket only: send the gap frame (`gaps=true`, docs/api.md §9.12).
    pub gaps: bool,
}

/// Why a stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client hung up or closed; nothing more to send.
    ClientGone,
    Shutdown,
    Denied,
    NotFound,
    Overflow,
    /// A write could not complete within `ws_send_timeout` (docs/api.md §2.10).
    TooSlow,
    Oversized,
    Unresponsive,
    Internal,
}

impl End {
    /// The error detail sent before closing, if any.
    fn detail(&self) -> Option<&'static str> {
        match self {
            End::Denied => Some(PERMISSION_DENIED),
            End::NotFound => Some("Not found."),
            End::Overflow => Some("Subscriber queue overflow. Reconnect with last_id."),
            End::Internal => Some("Internal server error."),
            End::ClientGone | End::Shutdown | End::Oversized | End::Unresponsive | End::TooSlow => {
                None
            }
        }
    }

    fn close_code(&self) -> u16 {
        match self {
            End::ClientGone => 1000,
            End::Shutdown | End::Unresponsive => 1001,
            End::Denied | End::NotFound => 1008,
            End::Oversized => 1009,
            End::Internal => 1011,
            End::Overflow | End::TooSlow => 1013,
        }
    }
}

/// What the client side of a WebSocket did.
enum ClientEvent {
    /// Any frame: the connection is alive.
    Activity,
    Oversized,
    Gone,
}

/// A transport's way of writing to the subscriber.
trait Outbox {
    /// Sends messages in order, flushing once at the end, so a subscriber that is behind gets
    /// them in few writes; `Err` when the client is gone.
    async fn send(&mut self, batch: &[Arc<Delivery>]) -> Result<(), ()>;
    /// A liveness frame: WebSocket Ping or SSE keepalive comment.
    async fn idle(&mut self) -> Result<(), ()>;
    /// Tells the subscriber what retention removed after its position (docs/api.md §9.12).
    async fn gap(&mut self, gap: Gap) -> Result<(), ()>;
    /// Whether gaps are told without the client asking (SSE's `event: gap` does not disturb
    /// clients that do not listen for it).
    fn always_tells_gaps(&self) -> bool;
    /// Sends the final error (if any) and closes.
    async fn finish(&mut self, end: &End);
    /// Where a gap told by this transport is counted.
    const GAP_SEEN: GapSeen;
}

/// The socket, and the transport's `herald_messages_delivered_total` child.
struct WsOutbox(SplitSink<WebSocket, WsMessage>, IntCounter);

impl Outbox for WsOutbox {
    async fn send(&mut self, batch: &[Arc<Delivery>]) -> Result<(), ()> {
        for delivery in batch {
            // The JSON was produced from a Rust String: valid UTF-8, and shared, not copied.
            let text = Utf8Bytes::try_from(delivery.json.clone()).map_err(|_| ())?;
            self.0.feed(WsMessage::Text(text)).await.map_err(|_| ())?;
        }
        self.0.flush().await.map_err(|_| ())?;
        self.1.inc_by(batch.len() as u64);
        Ok(())
    }

    const GAP_SEEN: GapSeen = GapSeen::WebSocket;

    async fn idle(&mut self) -> Result<(), ()> {
        self.0
            .send(WsMessage::Ping(Bytes::new()))
            .await
            .map_err(|_| ())
    }

    fn always_tells_gaps(&self) -> bool {
        false
    }

    async fn gap(&mut self, gap: Gap) -> Result<(), ()> {
        let frame = format!("{{\"gap\":{}}}", gap.json());
        self.0
            .send(WsMessage::Text(frame.into()))
            .await
            .map_err(|_| ())
    }

    async fn finish(&mut self, end: &End) {
        if *end == End::ClientGone {
            let _ = self.0.close().await;
            return;
        }
        if let Some(detail) = end.detail() {
            let frame = serde_json::json!({ "detail": detail }).to_string();
            let _ = self.0.send(WsMessage::Text(frame.into())).await;
        }
        let close = CloseFrame {
            code: end.close_code(),
            reason: Utf8Bytes::from_static(""),
        };
        let _ = self.0.send(WsMessage::Close(Some(close))).await;
        let _ = self.0.close().await;
    }
}

struct SseOutbox {
    events: mpsc::Sender<Bytes>,
    /// Set when the stream ends because the client stopped reading: the response then ends
    /// with an error, so the connection is dropped rather than kept alive for more.
    aborted: Arc<AtomicBool>,
    delivered: IntCounter,
}

impl Outbox for SseOutbox {
    async fn send(&mut self, batch: &[Arc<Delivery>]) -> Result<(), ()> {
        for delivery in batch {
            self.events
                .send(delivery.sse_event().clone())
                .await
                .map_err(|_| ())?;
        }
        self.delivered.inc_by(batch.len() as u64);
        Ok(())
    }

    const GAP_SEEN: GapSeen = GapSeen::Sse;

    async fn idle(&mut self) -> Result<(), ()> {
        self.events
            .send(Bytes::from_static(b": keepalive\n\n"))
            .await
            .map_err(|_| ())
    }

    fn always_tells_gaps(&self) -> bool {
        true
    }

    async fn gap(&mut self, gap: Gap) -> Result<(), ()> {
        // No `id:` line: the browser's Last-Event-ID stays the last message's.
        let event = format!("event: gap\ndata: {}\n\n", gap.json());
        self.events.send(Bytes::from(event)).await.map_err(|_| ())
    }

    async fn finish(&mut self, end: &End) {
        if *end == End::TooSlow {
            self.aborted.store(true, Ordering::Relaxed);
        }
        if let Some(detail) = end.detail() {
            let data = serde_json::json!({ "detail": detail }).to_string();
            let event = format!("event: error\ndata: {data}\n\n");
            let _ = self.events.send(Bytes::from(event)).await;
        }
        // Dropping the sender (with the outbox) ends the response body.
    }
}

/// Answers the upgrade; the stream runs on a tracked task so shutdown can wait for its close.
pub fn websocket(
    app: AppState,
    target: StreamTarget,
    last_id: Option<i64>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        // Oversized client frames are detected by us (1009); this only bounds memory.
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        // tungstenite preallocates its read buffer (128 KiB by default) for every connection;
        // clients here send only pongs and the odd small frame, and the buffer grows if needed.
        .read_buffer_size(READ_BUFFER)
        // Queued messages are fed into one write buffer and flushed together; it is allocated
        // only while a connection has something to send.
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let tasks = app.tasks.clone();
            tasks.track_future(async move {
                let (sink, stream) = socket.split();
                let (events_tx, events_rx) = mpsc::channel(8);
                let reader = tokio::spawn(read_client(stream, events_tx));
                let via = metrics::Transport::WebSocket;
                let mut outbox = WsOutbox(sink, app.metrics.delivered.get(via).clone());
                let ping = app.config.ws_ping_interval;
                let present = Present::new(app.metrics.subscribers.get(via));
                let end = run(&app, &target, last_id, &mut outbox, Some(events_rx), ping).await;
                drop(present);
                count_end(&app, via, &end);
                // A client that stopped reading cannot hold the task (or shutdown) hostage.
                let _ = tokio::time::timeout(FINISH_WITHIN, outbox.finish(&end)).await;
                reader.abort();
            })
        })
}

/// Counts a stream that ended because its subscriber fell behind: its queue overflowed, or a
/// write stalled past the send timeout.
fn count_end(app: &AppState, via: metrics::Transport, end: &End) {
    if matches!(end, End::Overflow | End::TooSlow) {
        app.metrics.overflows.get(via).inc();
    }
}

/// Starts the event stream; the engine feeds the response body through a small channel, so it
/// writes only as fast as the socket drains.
pub fn sse(app: AppState, target: StreamTarget, last_id: Option<i64>) -> Response {
    // A few events may wait for the body to be polled, so hyper can write them together.
    let (tx, rx) = mpsc::channel::<Bytes>(SEND_BATCH);
    let aborted = Arc::new(AtomicBool::new(false));
    let tasks = app.tasks.clone();
    let via = metrics::Transport::Sse;
    let mut outbox = SseOutbox {
        events: tx,
        aborted: aborted.clone(),
        delivered: app.metrics.delivered.get(via).clone(),
    };
    tasks.spawn(async move {
        let retry = format!("retry: {}\n\n", app.config.sse_retry.as_millis());
        if outbox.events.send(Bytes::from(retry)).await.is_err() {
            return;
        }
        let keepalive = app.config.sse_keepalive;
        let present = Present::new(app.metrics.subscribers.get(via));
        let end = run(&app, &target, last_id, &mut outbox, None, keepalive).await;
        drop(present);
        count_end(&app, via, &end);
        let _ = tokio::time::timeout(FINISH_WITHIN, outbox.finish(&end)).await;
    });
    let body = futures_util::stream::unfold(Some((rx, aborted)), |state| async move {
        let (mut rx, aborted) = state?;
        match rx.recv().await {
            Some(chunk) => Some((Ok(chunk), Some((rx, aborted)))),
            None if aborted.load(Ordering::Relaxed) => {
                let err = std::io::Error::new(ErrorKind::TimedOut, "the client stopped reading");
                Some((Err(err), None))
            }
            None => None,
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn read_client(mut stream: SplitStream<WebSocket>, events: mpsc::Sender<ClientEvent>) {
    while let Some(frame) = stream.next().await {
        let event = match frame {
            Ok(WsMessage::Close(_)) => ClientEvent::Gone,
            Ok(WsMessage::Text(text)) if text.len() > MAX_CLIENT_FRAME => ClientEvent::Oversized,
            Ok(WsMessage::Binary(data)) if data.len() > MAX_CLIENT_FRAME => ClientEvent::Oversized,
            Ok(_) => ClientEvent::Activity,
            Err(err) if err.to_string().contains("too long") => ClientEvent::Oversized,
            Err(_) => ClientEvent::Gone,
        };
        match event {
            // Liveness notes may be dropped when the engine is busy; it only needs one.
            ClientEvent::Activity => {
                let _ = events.try_send(event);
            }
            terminal => {
                let _ = events.send(terminal).await;
                return;
            }
        }
    }
    let _ = events.send(ClientEvent::Gone).await;
}

/// Whose credentials a stream was opened with, as of its last check: which changes concern it.
#[derive(Default)]
struct Holder {
    account_id: Option<i64>,
    api_key_id: Option<i64>,
    user_id: Option<i64>,
}

impl Holder {
    /// Whether a change that reaches `reach` may end a stream on `channel` of `instance_id`.
    fn concerned_by(&self, reach: &Reach, instance_id: i64, channel: &str) -> bool {
        match reach {
            Reach::Nobody => false,
            Reach::Everyone => true,
            Reach::AccountKey(id) => self.account_id == Some(*id),
            Reach::Instance {
                instance_id: reached,
                target: named,
            } => {
                *reached == instance_id
                    && match named {
                        None => true,
                        Some(Target::ApiKey(id)) => self.api_key_id == Some(*id),
                        Some(Target::User(id)) => self.user_id == Some(*id),
                        Some(Target::Channel(name)) => name == channel,
                    }
            }
        }
    }
}

/// When a stream next checks its credentials: every `RECHECK_EVERY`, and soon after a change
/// that concerns it, but never more than once per `RECHECK_AT_MOST_EVERY` however many arrive.
struct Rechecks {
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
    last: Instant,
    holder: Holder,
}

impl Rechecks {
    async fn start(app: &AppState, target: &StreamTarget) -> Result<Rechecks, End> {
        let holder = recheck(app, target).await?;
        let last = Instant::now();
        Ok(Rechecks {
            timer: Box::pin(tokio::time::sleep_until(last + RECHECK_EVERY)),
            last,
            holder,
        })
    }

    fn heard(&mut self, reach: &Reach, target: &StreamTarget) {
        if self
            .holder
            .concerned_by(reach, target.instance.id, &target.channel.name)
        {
            self.soon();
        }
    }

    /// Schedules a re-check now, or a second after the last one if that is later.
    fn soon(&mut self) {
        let due = (self.last + RECHECK_AT_MOST_EVERY).max(Instant::now());
        if due < self.timer.deadline() {
            self.timer.as_mut().reset(due);
        }
    }

    async fn run(&mut self, app: &AppState, target: &StreamTarget) -> Result<(), End> {
        self.holder = recheck(app, target).await?;
        self.last = Instant::now();
        self.timer.as_mut().reset(self.last + RECHECK_EVERY);
        Ok(())
    }
}

/// Does the stream's key still grant subscribe permission on the same channel?
async fn recheck(app: &AppState, target: &StreamTarget) -> Result<Holder, End> {
    let Some(key) = &target.key else {
        return Err(End::Denied);
    };
    let credential = app
        .keys
        .resolve(app.store.as_ref(), key)
        .await
        .map_err(|_| End::Internal)?;
    let mut holder = Holder::default();
    match &credential {
        Some(Credential::Account(account)) => holder.account_id = Some(account.id),
        Some(Credential::ApiKey(api_key)) => holder.api_key_id = Some(api_key.id),
        None => {}
    }
    let user = match &target.user_key {
        None => None,
        Some(user_key) => match app.keys.resolve_user(app.store.as_ref(), user_key).await {
            Ok(Some(user)) if user.instance_id == target.instance.id => {
                holder.user_id = Some(user.id);
                Some(user)
            }
            Ok(_) => return Err(End::Denied),
            Err(_) => return Err(End::Internal),
        },
    };
    let caller = match caller_for(&target.instance, credential, user) {
        None | Some(Caller::OtherAccount) => return Err(End::Denied),
        Some(caller) => caller,
    };
    let channel = match app.channel(target.instance.id, &target.channel.name).await {
        Ok(channel) if channel.id == target.channel.id => channel,
        Ok(_) | Err(ApiError::NotFound) => return Err(End::NotFound),
        Err(_) => return Err(End::Internal),
    };
    match may_subscribe(app, &caller, &channel).await {
        Ok(true) => {}
        Ok(false) => return Err(End::Denied),
        Err(_) => return Err(End::Internal),
    }
    Ok(holder)
}

async fn next_client_event(events: &mut Option<mpsc::Receiver<ClientEvent>>) -> ClientEvent {
    match events {
        Some(rx) => rx.recv().await.unwrap_or(ClientEvent::Gone),
        None => std::future::pending().await,
    }
}

/// The engine: replay, then live, until something ends the stream.
async fn run<O: Outbox>(
    app: &AppState,
    target: &StreamTarget,
    last_id: Option<i64>,
    out: &mut O,
    mut client: Option<mpsc::Receiver<ClientEvent>>,
    idle_period: Duration,
) -> End {
    let queue_limit = app.config.stream_queue as usize;
    let send_timeout = app.config.ws_send_timeout;
    // Long-lived wake-ups are created once, not on every loop turn: with thousands of streams
    // and a message every millisecond, re-registering them would cost more than the delivery.
    let shutdown = app.shutdown.clone().cancelled_owned();
    tokio::pin!(shutdown);
    let access = app.access.watch(target.instance.id);
    // A change that landed between the request's checks and this watch started would otherwise
    // wait for the periodic re-check (in a cluster, a stale cache can pass the checks just
    // before the change is announced): check once more now.
    let mut rechecks = match Rechecks::start(app, target).await {
        Ok(rechecks) => rechecks,
        Err(end) => return end,
    };
    let mut access_changed = Box::pin(access_change(access));
    let mut idle = interval_at(Instant::now() + idle_period, idle_period);
    idle.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // A live-only stream starts at the channel's current end: read before subscribing, so a
    // message committed in between is replayed from storage rather than skipped.
    let mut position = match last_id {
        Some(id) => id,
        None => match app.store.last_message_id(&target.channel).await {
            Ok(id) => id,
            Err(_) => return End::Internal,
        },
    };
    // What retention removed after `last_id` is said once, before any message (SSE always;
    // WebSocket when asked, see `StreamTarget::gaps`).
    if let Some(last_id) = last_id
        && (target.gaps || out.always_tells_gaps())
    {
        match retention_gap(app, &target.channel, target.room.as_deref(), last_id).await {
            Ok(Some(gap)) => {
                app.metrics.resume_gap(O::GAP_SEEN);
                match tokio::time::timeout(send_timeout, out.gap(gap)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(())) => return End::ClientGone,
                    Err(_) => return End::TooSlow,
                }
            }
            Ok(None) => {}
            Err(_) => return End::Internal,
        }
    }

    loop {
        let mut subscription = match app
            .hub
            .subscribe(target.instance.id, &target.channel, target.room.clone())
            .await
        {
            Ok(subscription) => subscription,
            Err(_) => return End::Internal,
        };
        // A channel (or instance) deleted before this subscription existed closed nothing: look
        // once more now that any later deletion will end the subscription.
        match app
            .store
            .channel(target.instance.id, &target.channel.name)
            .await
        {
            Ok(channel) if channel.id == target.channel.id => {}
            Ok(_) | Err(StoreError::NotFound) => return End::NotFound,
            Err(_) => return End::Internal,
        }

        // Replay: read storage page by page; each page is written as the socket drains.
        loop {
            let page = IdPage {
                after: Some(position),
                before: None,
                descending: false,
                limit: REPLAY_PAGE,
            };
            let messages = match app
                .store
                .history(target.channel.id, target.room.as_deref(), page)
                .await
            {
                Ok(messages) => messages,
                Err(_) => return End::Internal,
            };
            let batch: Vec<Arc<Delivery>> = messages
                .iter()
                .map(|m| Arc::new(Delivery::new(m.id, Bytes::from(message_json(m, None)))))
                .collect();
            // Client frames wait until the live phase; a send is never abandoned midway
            // except to close, so nothing can be written twice.
            let sent = tokio::select! {
                biased;
                () = &mut shutdown => return End::Shutdown,
                sent = out.send(&batch) => sent,
                () = tokio::time::sleep(send_timeout) => return End::TooSlow,
            };
            if sent.is_err() {
                return End::ClientGone;
            }
            if let Some(last) = messages.last() {
                position = last.id;
            }
            if (messages.len() as i64) < REPLAY_PAGE {
                break;
            }
        }

        // Live: forward deliveries through this stream's bounded queue.
        let mut queue: VecDeque<Arc<Delivery>> = VecDeque::new();
        let mut sending: Vec<Arc<Delivery>> = Vec::new();
        let lagged = loop {
            sending.clear();
            sending.extend(queue.iter().take(SEND_BATCH).cloned());
            let step = match sending.last().map(|d| d.id) {
                Some(last_id) => {
                    let send = out.send(&sending);
                    tokio::pin!(send);
                    let too_slow = tokio::time::sleep(send_timeout);
                    tokio::pin!(too_slow);
                    // A lag noticed mid-send is acted on once the send completed, so the
                    // storage catch-up starts exactly after what the client received.
                    let mut lagged = false;
                    loop {
                        tokio::select! {
                            biased;
                            () = &mut shutdown => break Step::End(End::Shutdown),
                            sent = &mut send => break match sent {
                                Ok(()) => {
                                    queue.drain(..sending.len());
                                    position = last_id;
                                    if lagged { Step::Lagged } else { Step::Continue }
                                }
                                Err(()) => Step::End(End::ClientGone),
                            },
                            () = &mut too_slow => break Step::End(End::TooSlow),
                            // Pings cannot go out while a write is blocked, but a client
                            // that went silent is still noticed.
                            _ = idle.tick() => {
                                if client.is_some() && last_heard.elapsed() >= idle_period * 2 {
                                    break Step::End(End::Unresponsive);
                                }
                            },
                            received = subscription.recv(), if !lagged => {
                                match accept_all(&mut queue, &mut subscription, received, position, queue_limit) {
                                    Step::Continue => {}
                                    Step::Lagged => lagged = true,
                                    end => break end,
                                }
                            },
                            event = next_client_event(&mut client) => match event {
                                ClientEvent::Activity => last_heard = Instant::now(),
                                ClientEvent::Oversized => break Step::End(End::Oversized),
                                ClientEvent::Gone => break Step::End(End::ClientGone),
                            },
                            (watch, changed) = &mut access_changed => {
                                access_changed = Box::pin(access_change(watch));
                                match changed {
                                    Ok(reach) => rechecks.heard(&reach, target),
                                    Err(_) => break Step::End(End::Shutdown),
                                }
                            },
                            () = &mut rechecks.timer => {
                                if let Err(end) = rechecks.run(app, target).await { break Step::End(end); }
                            },
                        }
                    }
                }
                None => tokio::select! {
                    biased;
                    () = &mut shutdown => Step::End(End::Shutdown),
                    received = subscription.recv() => {
                        accept_all(&mut queue, &mut subscription, received, position, queue_limit)
                    }
                    event = next_client_event(&mut client) => match event {
                        ClientEvent::Activity => {
                            last_heard = Instant::now();
                            Step::Continue
                        }
                        ClientEvent::Oversized => Step::End(End::Oversized),
                        ClientEvent::Gone => Step::End(End::ClientGone),
                    },
                    (watch, changed) = &mut access_changed => {
                        access_changed = Box::pin(access_change(watch));
                        match changed {
                            Err(_) => Step::End(End::Shutdown),
                            Ok(reach) => {
                                rechecks.heard(&reach, target);
                                Step::Continue
                            }
                        }
                    }
                    () = &mut rechecks.timer => rechecks.run(app, target).await.map_or_else(Step::End, |()| Step::Continue),
                    _ = idle.tick() => {
                        // A WebSocket silent for two ping periods is gone (docs/api.md §9.9).
                        if client.is_some() && last_heard.elapsed() >= idle_period * 2 {
                            Step::End(End::Unresponsive)
                        } else {
                            match tokio::time::timeout(send_timeout, out.idle()).await {
                                Ok(Ok(())) => Step::Continue,
                                Ok(Err(())) => Step::End(End::ClientGone),
                                Err(_) => Step::End(End::TooSlow),
                            }
                        }
                    },
                },
            };
            match step {
                Step::Continue => {}
                Step::Lagged => break true,
                Step::End(end) => return end,
            }
        };
        if lagged {
            // The hub dropped deliveries for this stream: catch up from storage.
            continue;
        }
    }
}

enum Step {
    Continue,
    Lagged,
    End(End),
}

/// Waits for the next change that may concern the stream, handing the watch back.
async fn access_change(mut watch: AccessWatch) -> (AccessWatch, Result<Reach, RecvClosed>) {
    let changed = watch.changed().await;
    (watch, changed)
}

/// Queues `received` and everything else already waiting, so a subscriber that is behind
/// writes it all at once.
fn accept_all(
    queue: &mut VecDeque<Arc<Delivery>>,
    subscription: &mut Subscription,
    received: Result<Arc<Delivery>, RecvError>,
    position: i64,
    limit: usize,
) -> Step {
    let mut step = accept(queue, received, position, limit);
    while matches!(step, Step::Continue) {
        match subscription.try_recv() {
            Some(received) => step = accept(queue, received, position, limit),
            None => break,
        }
    }
    step
}

/// Queues a live delivery, skipping what replay already sent. Over the limit is an overflow.
fn accept(
    queue: &mut VecDeque<Arc<Delivery>>,
    received: Result<Arc<Delivery>, RecvError>,
    position: i64,
    limit: usize,
) -> Step {
    match received {
        Ok(delivery) => {
            let newest = queue.back().map_or(position, |last| last.id);
            if delivery.id > newest {
                queue.push_back(delivery);
            }
            if queue.len() > limit {
                Step::End(End::Overflow)
            } else {
                Step::Continue
            }
        }
        Err(RecvError::Lagged(_)) => Step::Lagged,
        Err(RecvError::Closed) => Step::End(End::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_concerns_only_the_streams_it_names() {
        let user_stream = Holder {
            account_id: None,
            api_key_id: Some(7),
            user_id: Some(3),
        };
        let user = |instance_id, id| Reach::Instance {
            instance_id,
            target: Some(Target::User(id)),
        };
        assert!(user_stream.concerned_by(&user(1, 3), 1, "lobby"));
        assert!(!user_stream.concerned_by(&user(1, 4), 1, "lobby"));
        assert!(!user_stream.concerned_by(&user(2, 3), 1, "lobby"));
        let channel = |name: &str| Reach::Instance {
            instance_id: 1,
            target: Some(Target::Channel(name.into())),
        };
        assert!(user_stream.concerned_by(&channel("lobby"), 1, "lobby"));
        assert!(!user_stream.concerned_by(&channel("hall"), 1, "lobby"));
        let whole_instance = Reach::Instance {
            instance_id: 1,
            target: None,
        };
        assert!(user_stream.concerned_by(&whole_instance, 1, "lobby"));
        assert!(!user_stream.concerned_by(&Reach::AccountKey(1), 1, "lobby"));
        assert!(!user_stream.concerned_by(&Reach::Nobody, 1, "lobby"));
        assert!(user_stream.concerned_by(&Reach::Everyone, 1, "lobby"));
    }

    #[tokio::test]
    async fn a_stream_rechecks_at_most_once_a_second_however_many_changes_arrive() {
        let now = Instant::now();
        let mut rechecks = Rechecks {
            timer: Box::pin(tokio::time::sleep_until(now + RECHECK_EVERY)),
            last: now,
            holder: Holder::default(),
        };
        for _ in 0..100 {
            rechecks.soon();
        }
        assert_eq!(rechecks.timer.deadline(), now + RECHECK_AT_MOST_EVERY);
        // Long after the last re-check, a change is acted on at once.
        rechecks.last = now - Duration::from_secs(5);
        rechecks.timer.as_mut().reset(now + RECHECK_EVERY);
        rechecks.soon();
        assert!(rechecks.timer.deadline() <= Instant::now());
    }
}
