//! Exactly-once, in-order delivery under chaos (docs/api.md §9.5, §9.8–§9.11).
//!
//! One real server, one `separate_rooms` channel with four rooms. Several publishers race each
//! other while thirty subscribers — long-poll, WebSocket and SSE, evenly — follow the rooms from
//! `last_id = 0`, hang up at random moments and resume from the last id they received, over and
//! over. Once every publisher is done and every subscriber has reached the last id of its room,
//! each subscriber must have seen exactly the ids acknowledged (201) for its room: every one,
//! once, in increasing order. History must hold the same ids.
//!
//! All randomness derives from one seed, printed at the start and in every assertion; rerun a
//! failure with `CHAOS_SEED=<seed> cargo test --test api -- chaos:: --nocapture`.
//!
//! Object writers join the publishers: they create, update (`_increment` and a fresh tag) and
//! delete data objects whose class publishes to the same channel rooms (docs/api.md §10.4), so the
//! change messages race the custom publishes for the channel's ids. Every acknowledged object
//! write must be in history exactly once, as the one message that tells of it.
//!
//! The storm itself ([`run_storm`]) is shared with the cluster test (`cluster.rs`), which points
//! its clients at several nodes and kills one of them on the way: each session and each publish
//! then picks a node at random, and a publish whose request failed is not acknowledged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

pub(crate) const INSTANCE: &str = "chaos";
pub(crate) const CHANNEL: &str = "storm";
/// The class of the object writers' objects (`tag` and `n` integers, see [`create_storm_class`]).
pub(crate) const CLASS: &str = "gusts";
const ROOMS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];
const PUBLISHERS: usize = 4;
const MESSAGES_PER_PUBLISHER: usize = 1300;
const OBJECT_WRITERS: usize = 2;
const WRITES_PER_OBJECT_WRITER: usize = 600;
/// Spread evenly over the three transports (subscriber `n` uses transport `n % 3`, room `n % 4`).
const SUBSCRIBERS: usize = 30;
/// How long the publishers may take, all together (about 30 s on two busy debug cores).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(90);
/// How long subscribers may take to reach the end of their room once publishing is over.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Transport {
    Poll,
    WebSocket,
    Sse,
}

impl Transport {
    fn of(subscriber: usize) -> Transport {
        [Transport::Poll, Transport::WebSocket, Transport::Sse][subscriber % 3]
    }
}

/// What every task shares.
struct Ctx {
    seed: u64,
    /// Where clients go: one server, or the nodes of a cluster.
    nodes: Vec<SocketAddr>,
    /// Nodes may be down for a while: a failed connection is expected, not an anomaly.
    nodes_may_fail: bool,
    key: String,
    client: reqwest::Client,
    rooms: &'static [&'static str],
    /// Per room (index into `rooms`): the highest id acknowledged with 201 so far.
    acked: Vec<AtomicI64>,
    /// Publishes acknowledged so far, all rooms together.
    progress: Arc<AtomicUsize>,
    /// Each publisher pauses up to this long between publishes.
    pace: Duration,
    /// Set once all publishers finished: the last id of every room.
    last_ids: watch::Receiver<Option<Vec<i64>>>,
}

impl Ctx {
    fn channel_path(&self) -> String {
        format!("/v1.1/instances/{INSTANCE}/channels/{CHANNEL}")
    }

    /// The node for the next session or publish (no draw when there is only one).
    fn node(&self, rng: &mut StdRng) -> SocketAddr {
        match self.nodes.len() {
            1 => self.nodes[0],
            n => self.nodes[rng.gen_range(0..n)],
        }
    }

    /// A session could not reach its node. On one server that is an anomaly; in a cluster with
    /// a node down it is expected, and the subscriber waits a moment before trying another.
    async fn unreachable(&self, log: &Mutex<Log>, why: String) {
        {
            let mut log = log.lock().unwrap();
            if !self.nodes_may_fail {
                log.anomalies.push(why.clone());
            }
            log.close(why);
        }
        if self.nodes_may_fail {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True once the subscriber of `room` at `last_id` has everything that will ever be published.
    fn reached(&self, room: usize, last_id: i64) -> bool {
        self.last_ids
            .borrow()
            .as_ref()
            .is_some_and(|last| last_id >= last[room])
    }

    /// Resolves when the subscriber of `room` at `last_id` has everything; never otherwise.
    async fn until_reached(&self, room: usize, last_id: i64) {
        let mut rx = self.last_ids.clone();
        if rx
            .wait_for(|last| last.as_ref().is_some_and(|last| last_id >= last[room]))
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}

/// One (re)connection of a subscriber.
#[derive(Debug)]
struct Session {
    /// Index into `Log::seen` of the first message this session delivered.
    first: usize,
    resumed_from: i64,
    how: String,
    ended: String,
}

/// Everything one subscriber observed; shared so a hang can be reported with the state so far.
#[derive(Debug, Default)]
struct Log {
    /// `(id, payload tag)` in the order received.
    seen: Vec<(i64, i64)>,
    sessions: Vec<Session>,
    /// Protocol violations other than the id sequence itself (wrong room, links present, ...).
    anomalies: Vec<String>,
    /// Error frames / events (queue overflow etc.): allowed, the client just reconnects.
    error_frames: usize,
    done: bool,
}

impl Log {
    fn open(&mut self, resumed_from: i64, how: String) {
        let first = self.seen.len();
        self.sessions.push(Session {
            first,
            resumed_from,
            how,
            ended: String::new(),
        });
    }

    fn close(&mut self, ended: impl Into<String>) {
        if let Some(session) = self.sessions.last_mut() {
            session.ended = ended.into();
        }
    }
}

/// A decoded delivery, checked against what every transport must send (docs/api.md §9.5).
fn accept_message(
    log: &Mutex<Log>,
    room: &str,
    last_id: &mut i64,
    message: &Value,
    via: &str,
) -> Result<i64, String> {
    let Some(id) = message["id"].as_i64() else {
        return Err(format!("{via}: message without an integer id: {message}"));
    };
    let mut log = log.lock().unwrap();
    if message["room"] != json!(room) {
        log.anomalies
            .push(format!("{via}: id {id} has room {} ", message["room"]));
    }
    if message.get("links").is_some() {
        log.anomalies
            .push(format!("{via}: id {id} carries links: {message}"));
    }
    let tag = payload_tag(&message["payload"]).unwrap_or(-1);
    log.seen.push((id, tag));
    // A real client moves its position forward only; a duplicate is recorded, not followed.
    *last_id = (*last_id).max(id);
    Ok(id)
}

/// The tag that identifies a payload: publishers send `{"p": publisher, "k": sequence}`;
/// object writers give each create and update a fresh `tag` field, which the change message
/// carries; a delete's message holds only the object id, tagged as its negation.
fn payload_tag(payload: &Value) -> Option<i64> {
    if let (Some(p), Some(k)) = (payload["p"].as_i64(), payload["k"].as_i64()) {
        return Some(p * 1_000_000 + k);
    }
    if let Some(tag) = payload["tag"].as_i64() {
        return Some(tag);
    }
    let id = payload["id"].as_i64()?;
    (payload.as_object()?.len() == 1).then_some(-id)
}

/// The class object writers use, publishing to the storm channel.
pub(crate) async fn create_storm_class(app: &TestApp) {
    app.post(
        &format!("/v1.1/instances/{INSTANCE}/classes/"),
        Some(&app.admin_key),
        json!({"name": CLASS, "schema": [
            {"name": "tag", "type": "integer"}, {"name": "n", "type": "integer"}
        ]}),
    )
    .await
    .assert_status(201);
}

/// How a session ends by itself: after some messages, after some time, or both (the chaos).
struct Budget {
    messages: Option<usize>,
    until: Option<Instant>,
}

impl Budget {
    fn draw(rng: &mut StdRng) -> Budget {
        let max_messages = if rng.gen_bool(0.3) { 5 } else { 400 };
        let messages = rng.gen_range(1..=max_messages);
        let max_millis = if rng.gen_bool(0.3) { 20 } else { 600 };
        let millis = rng.gen_range(0..=max_millis);
        let until = Instant::now() + Duration::from_millis(millis);
        match rng.gen_range(0..10) {
            0..=3 => Budget {
                messages: Some(messages),
                until: None,
            },
            4..=7 => Budget {
                messages: None,
                until: Some(until),
            },
            _ => Budget {
                messages: Some(messages),
                until: Some(until),
            },
        }
    }

    fn spent(&self, received: usize) -> bool {
        self.messages.is_some_and(|max| received >= max)
    }

    async fn expired(&self) {
        match self.until {
            Some(until) => tokio::time::sleep_until(until).await,
            None => std::future::pending().await,
        }
    }

    fn describe(&self) -> String {
        let messages = self.messages.map_or("-".into(), |m| m.to_string());
        let time = self.until.map_or("-".into(), |u| {
            format!(
                "{}ms",
                u.saturating_duration_since(Instant::now()).as_millis()
            )
        });
        format!("budget msgs={messages} time={time}")
    }
}

/// Now and then a reader stops reading for a while, so the server's queues fill up behind it;
/// while publishing goes on, rarely for long enough to overflow them.
async fn stall(ctx: &Ctx, rng: &mut StdRng) {
    let publishing = ctx.last_ids.borrow().is_none();
    let millis = if publishing && rng.gen_bool(0.003) {
        rng.gen_range(1000..3000)
    } else if rng.gen_bool(0.01) {
        rng.gen_range(50..400)
    } else {
        return;
    };
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

type WebSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects, sometimes with a tiny receive buffer so that a slow reader pushes back on the
/// server's send at once instead of after megabytes of kernel buffering.
async fn ws_connect(
    addr: SocketAddr,
    url: &str,
    recv_buffer: Option<u32>,
) -> Result<WebSocket, String> {
    let Some(size) = recv_buffer else {
        return tokio_tungstenite::connect_async(url)
            .await
            .map(|(socket, _)| socket)
            .map_err(|e| e.to_string());
    };
    let tcp = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    tcp.set_recv_buffer_size(size).map_err(|e| e.to_string())?;
    let stream = tcp.connect(addr).await.map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .map(|(socket, _)| socket)
        .map_err(|e| e.to_string())
}

async fn subscriber(ctx: Arc<Ctx>, n: usize, log: Arc<Mutex<Log>>) {
    let transport = Transport::of(n);
    let room = n % ctx.rooms.len();
    let mut rng =
        StdRng::seed_from_u64(ctx.seed ^ (0x2545_f491_4f6c_dd1d_u64.wrapping_mul(n as u64 + 1)));
    // Staggered starts: some subscribers join while messages stream in live, some replay a
    // backlog.
    let start = Duration::from_millis(rng.gen_range(0..1500));
    tokio::time::sleep(start).await;
    let mut last_id = 0;
    while !ctx.reached(room, last_id) {
        match transport {
            Transport::Poll => poll_session(&ctx, room, &mut last_id, &mut rng, &log).await,
            Transport::WebSocket => ws_session(&ctx, room, &mut last_id, &mut rng, &log).await,
            Transport::Sse => sse_session(&ctx, room, &mut last_id, &mut rng, &log).await,
        }
        // Sometimes reconnect at once, sometimes after a short pause.
        if rng.gen_bool(0.2) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
        }
    }
    log.lock().unwrap().done = true;
}

/// One long-poll request; sometimes abandoned mid-flight at a random moment.
async fn poll_session(
    ctx: &Ctx,
    room: usize,
    last_id: &mut i64,
    rng: &mut StdRng,
    log: &Mutex<Log>,
) {
    let abort_after = rng
        .gen_bool(0.25)
        .then(|| Duration::from_millis(rng.gen_range(0..40)));
    let node = ctx.node(rng);
    let url = format!(
        "http://{node}{}/poll/?room={}&last_id={}",
        ctx.channel_path(),
        ctx.rooms[room],
        last_id
    );
    // Any message acknowledged before the request starts must be answered at once (§9.8).
    let acked_before = ctx.acked[room].load(Ordering::SeqCst);
    log.lock().unwrap().open(
        *last_id,
        format!("poll {node} last_id={last_id} abort={abort_after:?} acked_before={acked_before}"),
    );
    let from = *last_id;
    let request = async {
        let resp = ctx
            .client
            .get(&url)
            .header("X-API-KEY", &ctx.key)
            .send()
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status().as_u16();
        let header = resp
            .headers()
            .get("x-last-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        Ok::<_, String>((status, header, body))
    };
    let abort = async {
        match abort_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        outcome = request => outcome,
        () = abort => Err("aborted by client".into()),
        () = ctx.until_reached(room, from) => Err("reached the end".into()),
    };
    let ended = match outcome {
        Err(why) => why,
        Ok((204, _, _)) => {
            if acked_before > from {
                log.lock().unwrap().anomalies.push(format!(
                    "poll: 204 for last_id={from} although id {acked_before} of the room was \
                     acknowledged before the request was sent"
                ));
            }
            "204".into()
        }
        Ok((200, header, body)) => match serde_json::from_slice::<Value>(&body) {
            Ok(message) => match accept_message(log, ctx.rooms[room], last_id, &message, "poll") {
                Ok(id) => {
                    if header.as_deref() != Some(id.to_string().as_str()) {
                        log.lock()
                            .unwrap()
                            .anomalies
                            .push(format!("poll: X-Last-Id {header:?} on message {id}"));
                    }
                    format!("200 id={id}")
                }
                Err(why) => {
                    log.lock().unwrap().anomalies.push(why.clone());
                    why
                }
            },
            Err(e) => {
                let why = format!("poll: 200 with a non-JSON body ({e}): {body:?}");
                log.lock().unwrap().anomalies.push(why.clone());
                why
            }
        },
        Ok((status, _, body)) => {
            let why = format!("poll: unexpected status {status}: {body:?}");
            log.lock().unwrap().anomalies.push(why.clone());
            why
        }
    };
    log.lock().unwrap().close(ended);
}

/// One WebSocket connection, dropped or closed when its budget runs out.
async fn ws_session(ctx: &Ctx, room: usize, last_id: &mut i64, rng: &mut StdRng, log: &Mutex<Log>) {
    let budget = Budget::draw(rng);
    let graceful = rng.gen_bool(0.5);
    let recv_buffer = rng.gen_bool(0.5).then(|| rng.gen_range(2048..16384));
    let node = ctx.node(rng);
    let url = format!(
        "ws://{node}{}/poll/?transport=websocket&room={}&last_id={}&api_key={}",
        ctx.channel_path(),
        ctx.rooms[room],
        last_id,
        ctx.key
    );
    log.lock().unwrap().open(
        *last_id,
        format!(
            "websocket {node} last_id={last_id} {} graceful={graceful} \
             recv_buffer={recv_buffer:?}",
            budget.describe()
        ),
    );
    let from = *last_id;
    let connect = ws_connect(node, &url, recv_buffer);
    let mut socket = tokio::select! {
        connected = connect => match connected {
            Ok(socket) => socket,
            Err(e) => {
                ctx.unreachable(log, format!("websocket: connect failed: {e}")).await;
                return;
            }
        },
        () = budget.expired() => {
            log.lock().unwrap().close("dropped while connecting");
            return;
        }
        () = ctx.until_reached(room, from) => {
            log.lock().unwrap().close("reached the end while connecting");
            return;
        }
    };
    let mut received = 0;
    let ended: String = loop {
        if budget.spent(received) {
            break "message budget spent".into();
        }
        let position = *last_id;
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = budget.expired() => break "time budget spent".into(),
            () = ctx.until_reached(room, position) => break "reached the end".into(),
        };
        match frame {
            None => break "server ended the stream".into(),
            Some(Err(e)) => break format!("read error: {e}"),
            Some(Ok(WsMessage::Text(text))) => {
                let message: Value = match serde_json::from_str(text.as_str()) {
                    Ok(message) => message,
                    Err(e) => {
                        let why = format!("websocket: non-JSON text frame ({e}): {text}");
                        log.lock().unwrap().anomalies.push(why.clone());
                        break why;
                    }
                };
                if message.get("id").is_none() {
                    // An error frame (e.g. queue overflow): reconnect with last_id.
                    log.lock().unwrap().error_frames += 1;
                    break format!("error frame {message}");
                }
                if let Err(why) =
                    accept_message(log, ctx.rooms[room], last_id, &message, "websocket")
                {
                    log.lock().unwrap().anomalies.push(why.clone());
                    break why;
                }
                received += 1;
                stall(ctx, rng).await;
            }
            Some(Ok(WsMessage::Close(frame))) => break format!("server closed: {frame:?}"),
            Some(Ok(WsMessage::Binary(data))) => {
                let why = format!("websocket: unexpected binary frame of {} bytes", data.len());
                log.lock().unwrap().anomalies.push(why.clone());
                break why;
            }
            // Pings are answered by tungstenite on the next read or write.
            Some(Ok(_)) => {}
        }
    };
    if graceful {
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    }
    drop(socket);
    log.lock().unwrap().close(ended);
}

/// One SSE request, resumed by `last_id`, by `Last-Event-ID`, or by `Last-Event-ID` on top of
/// the original URL's stale `last_id=0` (as a reconnecting browser does); the header must win.
async fn sse_session(
    ctx: &Ctx,
    room: usize,
    last_id: &mut i64,
    rng: &mut StdRng,
    log: &Mutex<Log>,
) {
    let budget = Budget::draw(rng);
    let node = ctx.node(rng);
    let base = format!(
        "http://{node}{}/poll/?room={}&transport=sse",
        ctx.channel_path(),
        ctx.rooms[room]
    );
    let from = *last_id;
    let (request, how) = match rng.gen_range(0..3) {
        0 => (
            ctx.client.get(format!("{base}&last_id={from}")),
            format!("sse ?last_id={from}"),
        ),
        1 => (
            ctx.client
                .get(&base)
                .header("Last-Event-ID", from.to_string()),
            format!("sse Last-Event-ID={from}"),
        ),
        _ => (
            ctx.client
                .get(format!("{base}&last_id=0"))
                .header("Last-Event-ID", from.to_string()),
            format!("sse ?last_id=0 + Last-Event-ID={from}"),
        ),
    };
    log.lock()
        .unwrap()
        .open(from, format!("{how} {node} {}", budget.describe()));
    let request = request.header("X-API-KEY", &ctx.key).send();
    let resp = tokio::select! {
        resp = request => match resp {
            Ok(resp) => resp,
            Err(e) => {
                ctx.unreachable(log, format!("sse: request failed: {e}")).await;
                return;
            }
        },
        () = budget.expired() => {
            log.lock().unwrap().close("dropped while connecting");
            return;
        }
        () = ctx.until_reached(room, from) => {
            log.lock().unwrap().close("reached the end while connecting");
            return;
        }
    };
    if resp.status() != 200 {
        let why = format!("sse: status {}", resp.status());
        let mut log = log.lock().unwrap();
        log.anomalies.push(why.clone());
        log.close(why);
        return;
    }
    let mut body = resp.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut received = 0;
    let ended: String = 'session: loop {
        // Handle every complete event in the buffer.
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            let event = String::from_utf8_lossy(&event[..end]).into_owned();
            let mut id_field = None;
            let mut data = None;
            let mut kind = None;
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id_field = Some(v.trim_start().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(v.trim_start().to_owned());
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = Some(v.trim_start().to_owned());
                }
            }
            if kind.is_some() {
                // `event: error` (e.g. queue overflow): reconnect with the last id.
                log.lock().unwrap().error_frames += 1;
                break 'session format!("error event {kind:?} {data:?}");
            }
            let Some(data) = data else {
                continue; // retry: or a keepalive comment
            };
            let message: Value = match serde_json::from_str(&data) {
                Ok(message) => message,
                Err(e) => {
                    let why = format!("sse: non-JSON data ({e}): {data}");
                    log.lock().unwrap().anomalies.push(why.clone());
                    break 'session why;
                }
            };
            match accept_message(log, ctx.rooms[room], last_id, &message, "sse") {
                Ok(id) => {
                    if id_field.as_deref() != Some(id.to_string().as_str()) {
                        log.lock()
                            .unwrap()
                            .anomalies
                            .push(format!("sse: id field {id_field:?} on message {id}"));
                    }
                }
                Err(why) => {
                    log.lock().unwrap().anomalies.push(why.clone());
                    break 'session why;
                }
            }
            received += 1;
            stall(ctx, rng).await;
            if budget.spent(received) {
                break 'session "message budget spent".into();
            }
        }
        let position = *last_id;
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            () = budget.expired() => break "time budget spent".into(),
            () = ctx.until_reached(room, position) => break "reached the end".into(),
        };
        match chunk {
            None => break "server ended the stream".into(),
            Some(Err(e)) => break format!("read error: {e}"),
            Some(Ok(bytes)) => buffer.extend_from_slice(&bytes),
        }
    };
    drop(body);
    log.lock().unwrap().close(ended);
}

/// What became of one publish request.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// 201 with this id.
    Acked(i64),
    /// An object write succeeded: its change message has the attempt's tag (its id is not in
    /// the write's response).
    AckedObject,
    /// The request failed (its node died): the message may or may not be stored.
    Failed,
}

/// One publish attempt: `{"p": publisher, "k": sequence}` to a room.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    room: usize,
    tag: i64,
    outcome: Outcome,
}

/// Publishes `count` messages to random rooms, each through a random node; returns every attempt.
async fn publisher(ctx: Arc<Ctx>, p: usize, count: usize) -> Vec<Attempt> {
    let seed = ctx.seed;
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(0x9e37_79b9 * (p as u64 + 1)));
    let client = reqwest::Client::new();
    let mut attempts = Vec::with_capacity(count);
    for k in 0..count {
        let room = rng.gen_range(0..ctx.rooms.len());
        let name = ctx.rooms[room];
        let tag = (p * 1_000_000 + k) as i64;
        // Bursts with the odd pause, so subscribers see both backlogs and a live trickle.
        if rng.gen_bool(0.01) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..50))).await;
        }
        if !ctx.pace.is_zero() {
            tokio::time::sleep(ctx.pace.mul_f64(rng.gen_range(0.0..1.0))).await;
        }
        let node = ctx.node(&mut rng);
        let sent = client
            .post(format!("http://{node}{}/publish/", ctx.channel_path()))
            .header("X-API-KEY", &ctx.key)
            .json(&json!({"room": name, "payload": {"p": p, "k": k}}))
            .send()
            .await;
        let response = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                resp.text().await.map(|text| (status, text))
            }
            Err(e) => Err(e),
        };
        let (status, text) = match response {
            Ok(response) => response,
            Err(e) if ctx.nodes_may_fail => {
                // Not acknowledged; the next message goes to another node.
                let _ = e;
                attempts.push(Attempt {
                    room,
                    tag,
                    outcome: Outcome::Failed,
                });
                continue;
            }
            Err(e) => panic!("seed {seed}: publisher {p} message {k} via {node}: {e}"),
        };
        assert_eq!(
            status, 201,
            "seed {seed}: publisher {p} message {k} to {name} via {node}: {text}"
        );
        let message: Value = serde_json::from_str(&text).expect("publish response is JSON");
        let id = message["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("seed {seed}: publish response without id: {text}"));
        assert_eq!(
            message["room"],
            json!(name),
            "seed {seed}: publish response room: {text}"
        );
        ctx.acked[room].fetch_max(id, Ordering::SeqCst);
        ctx.progress.fetch_add(1, Ordering::SeqCst);
        attempts.push(Attempt {
            room,
            tag,
            outcome: Outcome::Acked(id),
        });
    }
    attempts
}

/// Creates, updates and deletes `count` times objects of [`CLASS`] in random rooms, each
/// request through a random node; returns every attempt. Writer `w` tags its writes
/// `(100 + w) * 1_000_000 + k`, apart from the publishers' tags.
async fn object_writer(ctx: Arc<Ctx>, w: usize, count: usize) -> Vec<Attempt> {
    let seed = ctx.seed;
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(0x51_7cc1_b727 * (w as u64 + 1)));
    let client = reqwest::Client::new();
    let objects_path = format!("/v1.1/instances/{INSTANCE}/classes/{CLASS}/objects/");
    // Objects alive: (id, room).
    let mut live: Vec<(i64, usize)> = Vec::new();
    let mut attempts = Vec::with_capacity(count);
    for k in 0..count {
        let tag = ((100 + w) * 1_000_000 + k) as i64;
        if !ctx.pace.is_zero() {
            tokio::time::sleep(ctx.pace.mul_f64(rng.gen_range(0.0..1.0))).await;
        }
        let node = ctx.node(&mut rng);
        let roll = rng.gen_range(0..10);
        let (method, url, body, room, deleting) = if live.len() < 3 || roll < 3 {
            let room = rng.gen_range(0..ctx.rooms.len());
            let body = json!({"tag": tag, "n": 0, "channel": CHANNEL,
                              "channel_room": ctx.rooms[room]});
            (
                reqwest::Method::POST,
                format!("http://{node}{objects_path}"),
                body,
                room,
                None,
            )
        } else if roll < 9 {
            let (id, room) = live[rng.gen_range(0..live.len())];
            let body = json!({"tag": tag, "n": {"_increment": 1}});
            let method = if rng.gen_bool(0.5) {
                reqwest::Method::PATCH
            } else {
                reqwest::Method::POST
            };
            (
                method,
                format!("http://{node}{objects_path}{id}/"),
                body,
                room,
                None,
            )
        } else {
            let at = rng.gen_range(0..live.len());
            let (id, room) = live[at];
            let url = format!("http://{node}{objects_path}{id}/");
            (reqwest::Method::DELETE, url, json!({}), room, Some(at))
        };
        let tag = match deleting {
            Some(at) => -live[at].0,
            None => tag,
        };
        let sent = client
            .request(method.clone(), &url)
            .header("X-API-KEY", &ctx.key)
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                resp.text().await.map(|text| (status, text))
            }
            Err(e) => Err(e),
        };
        let (status, text) = match response {
            Ok(response) => response,
            Err(_) if ctx.nodes_may_fail => {
                // Unknown outcome: the object may be gone or changed; stop using it.
                if let Some(at) = deleting {
                    live.remove(at);
                }
                attempts.push(Attempt {
                    room,
                    tag,
                    outcome: Outcome::Failed,
                });
                continue;
            }
            Err(e) => panic!("seed {seed}: object writer {w} write {k} via {node}: {e}"),
        };
        let expected = match method {
            reqwest::Method::POST if deleting.is_none() && body.get("channel").is_some() => 201,
            reqwest::Method::DELETE => 204,
            _ => 200,
        };
        assert_eq!(
            status, expected,
            "seed {seed}: object writer {w} write {k} ({method} {url}): {text}"
        );
        if expected == 201 {
            let object: Value = serde_json::from_str(&text).expect("object JSON");
            live.push((object["id"].as_i64().expect("object id"), room));
        }
        if let Some(at) = deleting {
            live.remove(at);
        }
        ctx.progress.fetch_add(1, Ordering::SeqCst);
        attempts.push(Attempt {
            room,
            tag,
            outcome: Outcome::AckedObject,
        });
    }
    attempts
}

/// Every `(id, payload tag)` in a room's history, oldest first, following `next` links.
async fn history(ctx: &Ctx, node: SocketAddr, room: &str) -> Vec<(i64, i64)> {
    let seed = ctx.seed;
    let mut messages = Vec::new();
    let mut path = format!("{}/history/?room={room}&ordering=asc", ctx.channel_path());
    let mut pages = 0;
    loop {
        let resp = ctx
            .client
            .get(format!("http://{node}{path}"))
            .header("X-API-KEY", &ctx.key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: history {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "seed {seed}: history {path}: {text}");
        let page: Value = serde_json::from_str(&text).expect("history is JSON");
        for message in page["objects"].as_array().expect("objects") {
            messages.push((
                message["id"].as_i64().expect("history id"),
                payload_tag(&message["payload"]).unwrap_or(-1),
            ));
        }
        pages += 1;
        assert!(pages < 1000, "seed {seed}: history of {room} never ends");
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => return messages,
        }
    }
}

/// A readable account of how `seen` departs from `expected`.
fn explain(seen: &[i64], expected: &[i64], log: &Log) -> String {
    let mut out = String::new();
    let expected_set: HashSet<i64> = expected.iter().copied().collect();
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for id in seen {
        *counts.entry(*id).or_default() += 1;
    }
    let mut duplicates: Vec<i64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    duplicates.sort_unstable();
    let missing: Vec<i64> = expected
        .iter()
        .filter(|id| !counts.contains_key(id))
        .copied()
        .collect();
    let foreign: Vec<i64> = seen
        .iter()
        .filter(|id| !expected_set.contains(id))
        .copied()
        .collect();
    let reorders: Vec<usize> = (1..seen.len())
        .filter(|&i| seen[i] <= seen[i - 1])
        .collect();
    out.push_str(&format!(
        "received {} ids, expected {}; {} duplicated (first {:?}), {} missing (first {:?}), \
         {} not published to this room (first {:?}), {} non-increasing steps (first at {:?})\n",
        seen.len(),
        expected.len(),
        duplicates.len(),
        &duplicates[..duplicates.len().min(10)],
        missing.len(),
        &missing[..missing.len().min(10)],
        foreign.len(),
        &foreign[..foreign.len().min(10)],
        reorders.len(),
        reorders.first(),
    ));
    let first_diff = seen
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(seen.len().min(expected.len()));
    let lo = first_diff.saturating_sub(6);
    let hi = (first_diff + 6).min(seen.len());
    out.push_str(&format!(
        "first difference at position {first_diff}: received {:?} vs expected {:?}\n",
        &seen[lo..hi],
        &expected[lo.min(expected.len())..(first_diff + 6).min(expected.len())],
    ));
    // The sessions around the difference: which (re)connection delivered what.
    let containing = log
        .sessions
        .iter()
        .rposition(|s| s.first <= first_diff)
        .unwrap_or(0);
    for (i, session) in log
        .sessions
        .iter()
        .enumerate()
        .skip(containing.saturating_sub(2))
        .take(5)
    {
        let next_first = log
            .sessions
            .get(i + 1)
            .map_or(seen.len(), |next| next.first);
        let from = session.first.min(seen.len());
        let to = next_first.min(seen.len());
        // Within the session that went wrong, show its deliveries around the difference.
        let shown_from = if i == containing {
            first_diff.saturating_sub(6).clamp(from, to)
        } else {
            from
        };
        let shown_to = (shown_from + 12).min(to);
        out.push_str(&format!(
            "  session #{i}: {} (resumed from {}) delivered {}{:?}{} — ended: {}\n",
            session.how,
            session.resumed_from,
            if shown_from > from { "… " } else { "" },
            &seen[shown_from..shown_to],
            if shown_to < to { " …" } else { "" },
            session.ended,
        ));
    }
    out
}

/// The seed of a chaos run: `CHAOS_SEED`, or the clock.
pub(crate) fn chaos_seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        })
}

/// One storm: who publishes how much where, and who follows. The `INSTANCE`/`CHANNEL`
/// channel (`separate_rooms`, `custom_publish`) must exist, and `key` must be a trusted key.
pub(crate) struct Storm {
    pub seed: u64,
    /// Every session and every publish picks one of these at random.
    pub nodes: Vec<SocketAddr>,
    /// A node that stays up, where history is read at the end.
    pub history_node: SocketAddr,
    /// Nodes may die: failed connections are expected and failed publishes unacknowledged.
    pub nodes_may_fail: bool,
    pub key: String,
    pub rooms: &'static [&'static str],
    pub publishers: usize,
    pub messages_per_publisher: usize,
    /// Writers of data objects whose change messages go to the storm's rooms (the class
    /// [`CLASS`] must exist, see [`create_storm_class`]), and how many writes each makes.
    pub object_writers: usize,
    pub writes_per_object_writer: usize,
    /// Subscriber `n` uses transport `n % 3` and room `n % rooms.len()`.
    pub subscribers: usize,
    /// Each publisher pauses up to this long (at random) between publishes; zero: flat out.
    pub pace: Duration,
    pub publish_timeout: Duration,
    pub catch_up_timeout: Duration,
    /// Publishes acknowledged so far, for a caller that times its own mischief.
    pub progress: Arc<AtomicUsize>,
}

/// What a storm that kept the guarantee did.
pub(crate) struct StormReport {
    /// Publish requests that failed (and were not acknowledged).
    pub failed: usize,
    /// One line for the log.
    pub summary: String,
}

/// Runs a storm and checks the guarantee: every publish that was acknowledged is in history,
/// history holds nothing that was not published, and every subscriber received every id of
/// its room's history exactly once, in order, with its payload.
pub(crate) async fn run_storm(storm: Storm) -> StormReport {
    let seed = storm.seed;
    let started = Instant::now();
    let (last_ids_tx, last_ids_rx) = watch::channel(None);
    let ctx = Arc::new(Ctx {
        seed,
        nodes: storm.nodes.clone(),
        nodes_may_fail: storm.nodes_may_fail,
        key: storm.key.clone(),
        client: reqwest::Client::new(),
        rooms: storm.rooms,
        acked: storm.rooms.iter().map(|_| AtomicI64::new(0)).collect(),
        progress: storm.progress.clone(),
        pace: storm.pace,
        last_ids: last_ids_rx,
    });
    let rooms = storm.rooms.len();

    let logs: Vec<Arc<Mutex<Log>>> = (0..storm.subscribers)
        .map(|_| Arc::new(Mutex::new(Log::default())))
        .collect();
    let subscribers: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(n, log)| tokio::spawn(subscriber(ctx.clone(), n, log.clone())))
        .collect();
    let mut publishers: Vec<_> = (0..storm.publishers)
        .map(|p| tokio::spawn(publisher(ctx.clone(), p, storm.messages_per_publisher)))
        .collect();
    publishers.extend((0..storm.object_writers).map(|w| {
        tokio::spawn(object_writer(
            ctx.clone(),
            w,
            storm.writes_per_object_writer,
        ))
    }));

    // Publishing is an event to await, bounded.
    let publish_timeout = storm.publish_timeout;
    let published =
        tokio::time::timeout(publish_timeout, futures_util::future::join_all(publishers))
            .await
            .unwrap_or_else(|_| {
                panic!("seed {seed}: publishers did not finish within {publish_timeout:?}")
            });
    let publish_time = started.elapsed();
    let attempts: Vec<Attempt> = published
        .into_iter()
        .flat_map(|records| {
            records.unwrap_or_else(|e| panic!("seed {seed}: publisher failed: {e}"))
        })
        .collect();
    let acked = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked(_) | Outcome::AckedObject))
        .count();
    let failed = attempts.len() - acked;

    // What is stored, room by room, read from a node that stayed up.
    let mut stored: Vec<Vec<(i64, i64)>> = Vec::with_capacity(rooms);
    for room in storm.rooms {
        stored.push(history(&ctx, storm.history_node, room).await);
    }
    // Ids of a channel are unique, and committed ids are consecutive (docs/api.md §9.5).
    let mut all: Vec<i64> = stored.iter().flatten().map(|(id, _)| *id).collect();
    all.sort_unstable();
    let total = all.len() as i64;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "seed {seed}: the channel's stored ids are not exactly 1..={total}"
    );
    // Every acknowledged publish is stored under its id, in its room; everything stored was
    // published (an unacknowledged attempt may or may not be); nothing is stored twice.
    let stored_at: HashMap<i64, (usize, i64)> = stored
        .iter()
        .enumerate()
        .flat_map(|(room, messages)| messages.iter().map(move |(id, tag)| (*tag, (room, *id))))
        .collect();
    assert_eq!(
        stored_at.len() as i64,
        total,
        "seed {seed}: a payload is stored twice (or without a tag)"
    );
    let attempted: HashMap<i64, &Attempt> = attempts.iter().map(|a| (a.tag, a)).collect();
    for (tag, (room, id)) in &stored_at {
        let Some(attempt) = attempted.get(tag) else {
            panic!("seed {seed}: id {id} holds payload tag {tag}, which nobody published");
        };
        assert_eq!(
            attempt.room, *room,
            "seed {seed}: id {id} (tag {tag}) is stored in the wrong room"
        );
    }
    for attempt in &attempts {
        match attempt.outcome {
            Outcome::Acked(id) => assert_eq!(
                stored_at.get(&attempt.tag),
                Some(&(attempt.room, id)),
                "seed {seed}: acknowledged publish (tag {}) is not in history as id {id}",
                attempt.tag
            ),
            Outcome::AckedObject => assert_eq!(
                stored_at.get(&attempt.tag).map(|(room, _)| *room),
                Some(attempt.room),
                "seed {seed}: acknowledged object write (tag {}) has no message in its room",
                attempt.tag
            ),
            Outcome::Failed => {}
        }
    }
    let last_ids: Vec<i64> = stored
        .iter()
        .map(|messages| messages.last().map_or(0, |(id, _)| *id))
        .collect();
    last_ids_tx.send_replace(Some(last_ids.clone()));

    // Every subscriber must reach the last id of its room: awaited, bounded.
    let catch_up_timeout = storm.catch_up_timeout;
    let joined = tokio::time::timeout(
        catch_up_timeout,
        futures_util::future::join_all(subscribers),
    )
    .await;
    if joined.is_err() {
        let mut report = String::new();
        for (n, log) in logs.iter().enumerate() {
            let log = log.lock().unwrap();
            if log.done {
                continue;
            }
            let room = n % rooms;
            let last = log.seen.last().map(|(id, _)| *id);
            let tail: Vec<i64> = log
                .seen
                .iter()
                .rev()
                .take(5)
                .rev()
                .map(|(id, _)| *id)
                .collect();
            report.push_str(&format!(
                "  subscriber {n} ({:?}, room {}): {} received, last {last:?}, room ends at {}; \
                 recent ids {tail:?}; current session: {:?}\n",
                Transport::of(n),
                storm.rooms[room],
                log.seen.len(),
                last_ids[room],
                log.sessions.last(),
            ));
        }
        panic!(
            "seed {seed}: subscribers did not reach the end of their rooms within \
             {catch_up_timeout:?} after publishing finished:\n{report}"
        );
    }
    for result in joined.unwrap() {
        result.unwrap_or_else(|e| panic!("seed {seed}: subscriber task failed: {e}"));
    }
    let delivery_time = started.elapsed();

    // The guarantee, subscriber by subscriber.
    let mut failures = String::new();
    let mut sessions: BTreeMap<&str, usize> = BTreeMap::new();
    let mut error_frames = 0;
    let mut delivered = 0;
    let all_tags: HashMap<i64, i64> = stored.iter().flatten().copied().collect();
    for (n, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let transport = Transport::of(n);
        let room = n % rooms;
        let name = match transport {
            Transport::Poll => "poll requests",
            Transport::WebSocket => "websocket connections",
            Transport::Sse => "sse connections",
        };
        *sessions.entry(name).or_default() += log.sessions.len();
        error_frames += log.error_frames;
        delivered += log.seen.len();
        let seen: Vec<i64> = log.seen.iter().map(|(id, _)| *id).collect();
        let expected: Vec<i64> = stored[room].iter().map(|(id, _)| *id).collect();
        if seen != expected {
            failures.push_str(&format!(
                "subscriber {n} ({transport:?}, room {}):\n{}",
                storm.rooms[room],
                explain(&seen, &expected, &log)
            ));
        }
        let wrong_payloads: Vec<i64> = log
            .seen
            .iter()
            .filter(|(id, tag)| all_tags.get(id).is_some_and(|t| t != tag))
            .map(|(id, _)| *id)
            .take(10)
            .collect();
        if !wrong_payloads.is_empty() {
            failures.push_str(&format!(
                "subscriber {n} ({transport:?}, room {}): payloads differ from what was \
                 published for ids {wrong_payloads:?}\n",
                storm.rooms[room]
            ));
        }
        if !log.anomalies.is_empty() {
            failures.push_str(&format!(
                "subscriber {n} ({transport:?}, room {}): {} protocol anomalies, first: {:?}\n",
                storm.rooms[room],
                log.anomalies.len(),
                &log.anomalies[..log.anomalies.len().min(5)]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: exactly-once in-order delivery violated:\n{failures}"
    );
    drop(last_ids_tx);
    let summary = format!(
        "seed {seed}: {total} messages stored in {rooms} rooms by {} publishers ({acked} \
         acknowledged, {failed} requests failed; published in {publish_time:?}) and {} object \
         writers; {} subscribers received {delivered} deliveries over {sessions:?} \
         ({error_frames} error frames), all done after {delivery_time:?}",
        storm.publishers, storm.object_writers, storm.subscribers
    );
    StormReport { failed, summary }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_subscriber_gets_every_message_exactly_once_in_order_across_reconnects() {
    let seed = chaos_seed();
    eprintln!("chaos: seed {seed} (rerun with CHAOS_SEED={seed})");
    let started = Instant::now();

    let app = TestApp::spawn_with(|a| {
        a.poll_timeout = Duration::from_secs(5);
        // Small per-subscriber queues (also the hub's per-room buffer), so that replay racing
        // live traffic, lagging behind the hub and queue overflow are all part of the storm.
        a.stream_queue = 8;
    })
    .await;
    app.create_instance(INSTANCE).await;
    let key = app
        .create_api_key(INSTANCE, json!({"ignore_acl": true}))
        .await;
    app.create_channel(
        INSTANCE,
        json!({"name": CHANNEL, "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
    create_storm_class(&app).await;

    let report = run_storm(Storm {
        seed,
        nodes: vec![app.addr],
        history_node: app.addr,
        nodes_may_fail: false,
        key,
        rooms: &ROOMS,
        publishers: PUBLISHERS,
        messages_per_publisher: MESSAGES_PER_PUBLISHER,
        object_writers: OBJECT_WRITERS,
        writes_per_object_writer: WRITES_PER_OBJECT_WRITER,
        subscribers: SUBSCRIBERS,
        pace: Duration::ZERO,
        publish_timeout: PUBLISH_TIMEOUT,
        catch_up_timeout: CATCH_UP_TIMEOUT,
        progress: Arc::default(),
    })
    .await;
    // On one server nothing fails: every stored message was acknowledged.
    assert_eq!(report.failed, 0, "{}", report.summary);
    eprintln!("chaos: {}; total {:?}", report.summary, started.elapsed());
}
