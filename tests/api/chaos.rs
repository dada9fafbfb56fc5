//! Exactly-once, in-order delivery under chaos (SPEC §9.5, §9.8–§9.11).
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
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

const INSTANCE: &str = "chaos";
const CHANNEL: &str = "storm";
const ROOMS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];
const PUBLISHERS: usize = 4;
const MESSAGES_PER_PUBLISHER: usize = 1300;
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
    addr: std::net::SocketAddr,
    key: String,
    client: reqwest::Client,
    /// Per room (index into `ROOMS`): the highest id acknowledged with 201 so far.
    acked: [AtomicI64; ROOMS.len()],
    /// Set once all publishers finished: the last id of every room.
    last_ids: watch::Receiver<Option<[i64; ROOMS.len()]>>,
}

impl Ctx {
    fn channel_path(&self) -> String {
        format!("/v1.1/instances/{INSTANCE}/channels/{CHANNEL}")
    }

    /// True once the subscriber of `room` at `last_id` has everything that will ever be published.
    fn reached(&self, room: usize, last_id: i64) -> bool {
        self.last_ids
            .borrow()
            .is_some_and(|last| last_id >= last[room])
    }

    /// Resolves when the subscriber of `room` at `last_id` has everything; never otherwise.
    async fn until_reached(&self, room: usize, last_id: i64) {
        let mut rx = self.last_ids.clone();
        if rx
            .wait_for(|last| last.is_some_and(|last| last_id >= last[room]))
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

/// A decoded delivery, checked against what every transport must send (SPEC §9.5).
fn accept_message(
    log: &Mutex<Log>,
    room: usize,
    last_id: &mut i64,
    message: &Value,
    via: &str,
) -> Result<i64, String> {
    let Some(id) = message["id"].as_i64() else {
        return Err(format!("{via}: message without an integer id: {message}"));
    };
    let mut log = log.lock().unwrap();
    if message["room"] != json!(ROOMS[room]) {
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

/// Publishers send `{"p": publisher, "k": sequence}`; the tag identifies the payload.
fn payload_tag(payload: &Value) -> Option<i64> {
    Some(payload["p"].as_i64()? * 1_000_000 + payload["k"].as_i64()?)
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
async fn ws_connect(ctx: &Ctx, url: &str, recv_buffer: Option<u32>) -> Result<WebSocket, String> {
    let Some(size) = recv_buffer else {
        return tokio_tungstenite::connect_async(url)
            .await
            .map(|(socket, _)| socket)
            .map_err(|e| e.to_string());
    };
    let tcp = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    tcp.set_recv_buffer_size(size).map_err(|e| e.to_string())?;
    let stream = tcp.connect(ctx.addr).await.map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .map(|(socket, _)| socket)
        .map_err(|e| e.to_string())
}

async fn subscriber(ctx: Arc<Ctx>, n: usize, log: Arc<Mutex<Log>>) {
    let transport = Transport::of(n);
    let room = n % ROOMS.len();
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
    let url = format!(
        "http://{}{}/poll/?room={}&last_id={}",
        ctx.addr,
        ctx.channel_path(),
        ROOMS[room],
        last_id
    );
    // Any message acknowledged before the request starts must be answered at once (§9.8).
    let acked_before = ctx.acked[room].load(Ordering::SeqCst);
    log.lock().unwrap().open(
        *last_id,
        format!("poll last_id={last_id} abort={abort_after:?} acked_before={acked_before}"),
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
            Ok(message) => match accept_message(log, room, last_id, &message, "poll") {
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
    let url = format!(
        "ws://{}{}/poll/?transport=websocket&room={}&last_id={}&api_key={}",
        ctx.addr,
        ctx.channel_path(),
        ROOMS[room],
        last_id,
        ctx.key
    );
    log.lock().unwrap().open(
        *last_id,
        format!(
            "websocket last_id={last_id} {} graceful={graceful} recv_buffer={recv_buffer:?}",
            budget.describe()
        ),
    );
    let from = *last_id;
    let connect = ws_connect(ctx, &url, recv_buffer);
    let mut socket = tokio::select! {
        connected = connect => match connected {
            Ok(socket) => socket,
            Err(e) => {
                let why = format!("websocket: connect failed: {e}");
                let mut log = log.lock().unwrap();
                log.anomalies.push(why.clone());
                log.close(why);
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
                if let Err(why) = accept_message(log, room, last_id, &message, "websocket") {
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
    let base = format!(
        "http://{}{}/poll/?room={}&transport=sse",
        ctx.addr,
        ctx.channel_path(),
        ROOMS[room]
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
        .open(from, format!("{how} {}", budget.describe()));
    let request = request.header("X-API-KEY", &ctx.key).send();
    let resp = tokio::select! {
        resp = request => match resp {
            Ok(resp) => resp,
            Err(e) => {
                let why = format!("sse: request failed: {e}");
                let mut log = log.lock().unwrap();
                log.anomalies.push(why.clone());
                log.close(why);
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
            match accept_message(log, room, last_id, &message, "sse") {
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

/// Publishes `MESSAGES_PER_PUBLISHER` messages to random rooms; returns `(room, id, tag)`.
async fn publisher(ctx: Arc<Ctx>, p: usize) -> Vec<(usize, i64, i64)> {
    let seed = ctx.seed;
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(0x9e37_79b9 * (p as u64 + 1)));
    let client = reqwest::Client::new();
    let url = format!("http://{}{}/publish/", ctx.addr, ctx.channel_path());
    let mut records = Vec::with_capacity(MESSAGES_PER_PUBLISHER);
    for k in 0..MESSAGES_PER_PUBLISHER {
        let room = rng.gen_range(0..ROOMS.len());
        // Bursts with the odd pause, so subscribers see both backlogs and a live trickle.
        if rng.gen_bool(0.01) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..50))).await;
        }
        let resp = client
            .post(&url)
            .header("X-API-KEY", &ctx.key)
            .json(&json!({"room": ROOMS[room], "payload": {"p": p, "k": k}}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: publisher {p} message {k}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(
            status, 201,
            "seed {seed}: publisher {p} message {k} to {}: {text}",
            ROOMS[room]
        );
        let message: Value = serde_json::from_str(&text).expect("publish response is JSON");
        let id = message["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("seed {seed}: publish response without id: {text}"));
        assert_eq!(
            message["room"],
            json!(ROOMS[room]),
            "seed {seed}: publish response room: {text}"
        );
        ctx.acked[room].fetch_max(id, Ordering::SeqCst);
        records.push((room, id, (p * 1_000_000 + k) as i64));
    }
    records
}

/// Every id in a room's history, oldest first, following `next` links.
async fn history_ids(app: &TestApp, key: &str, room: &str, seed: u64) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut path =
        format!("/v1.1/instances/{INSTANCE}/channels/{CHANNEL}/history/?room={room}&ordering=asc");
    let mut pages = 0;
    loop {
        let resp = app.get(&path, Some(key)).await;
        assert_eq!(
            resp.status, 200,
            "seed {seed}: history {path}: {}",
            resp.text
        );
        for message in resp.json["objects"].as_array().expect("objects") {
            ids.push(message["id"].as_i64().expect("history id"));
        }
        pages += 1;
        assert!(pages < 1000, "seed {seed}: history of {room} never ends");
        match resp.json["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => return ids,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_subscriber_gets_every_message_exactly_once_in_order_across_reconnects() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
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

    let (last_ids_tx, last_ids_rx) = watch::channel(None);
    let ctx = Arc::new(Ctx {
        seed,
        addr: app.addr,
        key: key.clone(),
        client: app.client.clone(),
        acked: Default::default(),
        last_ids: last_ids_rx,
    });

    let logs: Vec<Arc<Mutex<Log>>> = (0..SUBSCRIBERS)
        .map(|_| Arc::new(Mutex::new(Log::default())))
        .collect();
    let subscribers: Vec<_> = logs
        .iter()
        .enumerate()
        .map(|(n, log)| tokio::spawn(subscriber(ctx.clone(), n, log.clone())))
        .collect();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| tokio::spawn(publisher(ctx.clone(), p)))
        .collect();

    // Publishing is an event to await, bounded.
    let published =
        tokio::time::timeout(PUBLISH_TIMEOUT, futures_util::future::join_all(publishers))
            .await
            .unwrap_or_else(|_| {
                panic!("seed {seed}: publishers did not finish within {PUBLISH_TIMEOUT:?}")
            });
    let publish_time = started.elapsed();
    let mut by_room: Vec<Vec<(i64, i64)>> = vec![Vec::new(); ROOMS.len()];
    for records in published {
        let records = records.unwrap_or_else(|e| panic!("seed {seed}: publisher failed: {e}"));
        for (room, id, tag) in records {
            by_room[room].push((id, tag));
        }
    }
    for room in &mut by_room {
        room.sort_unstable();
    }
    // Ids of a channel are unique, and committed ids are consecutive (SPEC §9.5).
    let mut all: Vec<i64> = by_room.iter().flatten().map(|(id, _)| *id).collect();
    all.sort_unstable();
    let total = (PUBLISHERS * MESSAGES_PER_PUBLISHER) as i64;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "seed {seed}: the channel's acknowledged ids are not exactly 1..={total}"
    );
    let last_ids: [i64; ROOMS.len()] =
        std::array::from_fn(|r| by_room[r].last().map_or(0, |(id, _)| *id));
    last_ids_tx.send_replace(Some(last_ids));

    // Every subscriber must reach the last id of its room: awaited, bounded.
    let joined = tokio::time::timeout(
        CATCH_UP_TIMEOUT,
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
            let room = n % ROOMS.len();
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
                ROOMS[room],
                log.seen.len(),
                last_ids[room],
                log.sessions.last(),
            ));
        }
        panic!(
            "seed {seed}: subscribers did not reach the end of their rooms within \
             {CATCH_UP_TIMEOUT:?} after publishing finished:\n{report}"
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
    let all_tags: HashMap<i64, i64> = by_room.iter().flatten().copied().collect();
    for (n, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let transport = Transport::of(n);
        let room = n % ROOMS.len();
        let name = match transport {
            Transport::Poll => "poll requests",
            Transport::WebSocket => "websocket connections",
            Transport::Sse => "sse connections",
        };
        *sessions.entry(name).or_default() += log.sessions.len();
        error_frames += log.error_frames;
        delivered += log.seen.len();
        let seen: Vec<i64> = log.seen.iter().map(|(id, _)| *id).collect();
        let expected: Vec<i64> = by_room[room].iter().map(|(id, _)| *id).collect();
        if seen != expected {
            failures.push_str(&format!(
                "subscriber {n} ({transport:?}, room {}):\n{}",
                ROOMS[room],
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
                ROOMS[room]
            ));
        }
        if !log.anomalies.is_empty() {
            failures.push_str(&format!(
                "subscriber {n} ({transport:?}, room {}): {} protocol anomalies, first: {:?}\n",
                ROOMS[room],
                log.anomalies.len(),
                &log.anomalies[..log.anomalies.len().min(5)]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: exactly-once in-order delivery violated:\n{failures}"
    );

    // History holds exactly what was acknowledged, room by room.
    for (room, records) in by_room.iter().enumerate() {
        let expected: Vec<i64> = records.iter().map(|(id, _)| *id).collect();
        let history = history_ids(&app, &key, ROOMS[room], seed).await;
        assert!(
            history == expected,
            "seed {seed}: history of room {} differs from the acknowledged ids: {}",
            ROOMS[room],
            {
                let empty = Log::default();
                explain(&history, &expected, &empty)
            }
        );
    }

    eprintln!(
        "chaos: seed {seed}: {total} messages in {} rooms by {PUBLISHERS} publishers \
         (published in {publish_time:?}); {SUBSCRIBERS} subscribers received {delivered} \
         deliveries over {sessions:?} ({error_frames} error frames), all done after \
         {delivery_time:?}; total {:?}",
        ROOMS.len(),
        started.elapsed()
    );
    drop(last_ids_tx);
}
