//! The soak scenario (not run in CI; `bench/soak.sh` runs it for ten minutes): a long mixed
//! load over real sockets, the server's memory and descriptors sampled as it goes, and at the end
//! a check that no subscriber lost, repeated or reordered a message.
//!
//! All at once, for `--duration`:
//! - publishers post steadily to four streams: the fixture's `bench` channel (no rooms) and
//!   rooms r0, r1 and r2 of its `rooms` channel, each message to a stream drawn at random, so a
//!   room's ids are increasing but not consecutive;
//! - subscribers of every stream on all three transports (long-poll, WebSocket, SSE) drop their
//!   connection after a random few seconds and resume from the last id they got (SSE half the
//!   time through `Last-Event-ID`), recording every id;
//! - log-ins with wrong passwords from 127.0.0.1, half against a registered account (which the
//!   server locks) and half against e-mails nobody has, which the server throttles; a log-in
//!   with the right password, from another loopback address whose budget is its own, must work;
//! - slowloris sockets send part of a request head and then a byte a second; the server must
//!   close them (`--header-read-timeout`), and they are reopened;
//! - every `--reset-every` an API key and a user key are reset: from then on the old keys must be
//!   refused (each one is tried again every round), the new ones accepted, and a WebSocket
//!   opened with the old API key must be closed.
//!
//! Then the load stops, the subscribers catch up with the newest id of their stream, and each
//! one's ids are checked against the stream's history: every id exactly once, in order.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use crate::objects::{cpu_seconds, mix};
use crate::server::{Herald, Ws, int_field, unique_suffix};
use crate::{Target, histogram, ms, rss_bytes, seconds};

#[derive(Args)]
pub struct SoakArgs {
    /// How long the load runs.
    #[arg(long, default_value = "600", value_parser = seconds)]
    duration: Duration,
    /// Messages published per second, over all publishers and streams.
    #[arg(long, default_value_t = 250)]
    rate: u32,
    /// Publishing tasks, each with one keep-alive connection and one publish at a time.
    #[arg(long, default_value_t = 4)]
    publishers: u32,
    /// Subscribers of each transport on each of the four streams.
    #[arg(long, default_value_t = 2)]
    subscribers: usize,
    /// Mean time a subscriber stays connected before it drops and resumes (drawn evenly from a
    /// quarter to seven quarters of it).
    #[arg(long, default_value = "4", value_parser = seconds)]
    hold: Duration,
    /// Log-ins with a wrong password per second, from 127.0.0.1.
    #[arg(long, default_value_t = 5)]
    wrong_logins: u32,
    /// Period of the log-in with the right password.
    #[arg(long, default_value = "10", value_parser = seconds)]
    right_login_every: Duration,
    /// Where the right log-ins come from: another loopback address, so that the wrong ones do
    /// not spend its per-IP budget.
    #[arg(long, default_value = "127.0.0.2")]
    right_login_from: IpAddr,
    /// Slowloris sockets kept open.
    #[arg(long, default_value_t = 40)]
    slowloris: usize,
    /// Period of the API key and user key resets.
    #[arg(long, default_value = "20", value_parser = seconds)]
    reset_every: Duration,
    /// Period of the server samples (RSS, descriptors, CPU) and of the progress lines.
    #[arg(long, default_value = "10", value_parser = seconds)]
    sample_every: Duration,
    /// How long subscribers get to catch up once the load stopped.
    #[arg(long, default_value = "60", value_parser = seconds)]
    drain: Duration,
}

/// The streams under load: channel and room. `bench` is a `default` channel (no rooms).
const STREAMS: [(&str, Option<&str>); 4] = [
    ("bench", None),
    ("rooms", Some("r0")),
    ("rooms", Some("r1")),
    ("rooms", Some("r2")),
];

fn stream_name(stream: usize) -> String {
    match STREAMS[stream] {
        (channel, Some(room)) => format!("{channel}/{room}"),
        (channel, None) => channel.to_owned(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    LongPoll,
    WebSocket,
    Sse,
}

const TRANSPORTS: [Transport; 3] = [Transport::LongPoll, Transport::WebSocket, Transport::Sse];

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::LongPoll => "long-poll",
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

/// Running totals, read by the progress lines and the report.
#[derive(Default)]
struct Counts {
    published: AtomicU64,
    publish_errors: AtomicU64,
    /// Per transport (in [`TRANSPORTS`] order).
    delivered: [AtomicU64; 3],
    reconnects: [AtomicU64; 3],
    /// Sessions the server ended (a close, an error answer or frame) or that failed.
    ended: [AtomicU64; 3],
    wrong_refused: AtomicU64,
    wrong_throttled: AtomicU64,
    wrong_locked: AtomicU64,
    wrong_busy: AtomicU64,
    wrong_other: AtomicU64,
    right_ok: AtomicU64,
    right_refused: AtomicU64,
    slow_opened: AtomicU64,
    slow_closed: AtomicU64,
    slow_408: AtomicU64,
    api_resets: AtomicU64,
    user_resets: AtomicU64,
    old_refused: AtomicU64,
    old_accepted: AtomicU64,
    streams_closed: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The end of the run, as subscribers see it: once the load stopped, the newest id of each
/// stream, which every subscriber must reach.
type Targets = Option<[u64; 4]>;

/// Unexpected answers kept for the report (the first few) and counted.
const NOTES_KEPT: usize = 20;

/// What every task of the run shares.
struct Soak {
    herald: Herald,
    counts: Counts,
    /// Failures that make the run fail.
    problems: Mutex<Vec<String>>,
    /// Other unexpected answers: the first few, and how many there were.
    notes: Mutex<(Vec<String>, u64)>,
    /// Turns true when the load is to stop.
    stop: watch::Receiver<bool>,
    targets: watch::Receiver<Targets>,
    hold: Duration,
    suffix: u128,
}

impl Soak {
    fn problem(&self, text: String) {
        eprintln!("soak: PROBLEM {text}");
        lock(&self.problems).push(text);
    }

    fn note(&self, text: String) {
        let mut notes = lock(&self.notes);
        notes.1 += 1;
        if notes.0.len() < NOTES_KEPT {
            notes.0.push(text);
        }
    }

    fn received(&self, ids: &mut Vec<u64>, id: u64, transport: Transport) {
        ids.push(id);
        add(&self.counts.delivered[transport as usize]);
    }

    fn instance_url(&self) -> String {
        format!(
            "{}/v1.1/instances/{}",
            self.herald.http,
            self.herald.instance()
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A small deterministic generator (SplitMix64 over a counter).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed ^ unique_suffix() as u64))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration drawn evenly from a quarter to seven quarters of `mean`.
    fn around(&mut self, mean: Duration) -> Duration {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        mean.mul_f64(0.25 + 1.5 * unit)
    }
}

fn ticker(period: Duration) -> Interval {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// Resolves once the load is to stop.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which happens only once the run is over.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Waits for the next tick; false once the load is to stop.
async fn next_tick(ticker: &mut Interval, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = stopping(stop) => false,
        _ = ticker.tick() => !*stop.borrow(),
    }
}

/// A request's status (0 when there was no answer) and its text (or the error).
async fn answer(sent: reqwest::Result<reqwest::Response>) -> (u16, String) {
    match sent {
        Ok(resp) => (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        ),
        Err(err) => (0, format!("no answer: {err:#}")),
    }
}

/// POSTs `body` with `key`; the JSON answer, which must be a success.
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let resp = client
        .post(url)
        .header("X-API-KEY", key)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        bail!("POST {url} answered {status}: {}", resp.text().await?);
    }
    Ok(resp.json().await?)
}

fn string_field(value: &Value, name: &str) -> anyhow::Result<String> {
    value[name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {name} in {value}"))
}

fn id_field(value: &Value) -> anyhow::Result<u64> {
    value["id"]
        .as_u64()
        .with_context(|| format!("no id in {value}"))
}

/// The credentials the run creates beside the fixture's.
struct Setup {
    /// An API key that is reset every round (trusted, so it may subscribe).
    api_key_id: u64,
    api_key: String,
    /// An API key without flags, beside which user keys are tried.
    plain_key: String,
    /// A user whose key is reset every round.
    user_id: u64,
    user_key: String,
    /// An account that wrong passwords are tried against (it gets locked).
    victim_email: String,
    /// An account that logs in with its right password.
    right_email: String,
    right_password: String,
}

impl Setup {
    async fn create(soak: &Soak, account_key: &str) -> anyhow::Result<Setup> {
        let client = reqwest::Client::new();
        let instance = soak.instance_url();
        let keys = format!("{instance}/api_keys/");
        let reset = post_json(
            &client,
            &keys,
            account_key,
            json!({"ignore_acl": true, "description": "soak: reset every round"}),
        )
        .await?;
        let plain = post_json(
            &client,
            &keys,
            account_key,
            json!({"description": "soak: user keys"}),
        )
        .await?;
        let user = post_json(
            &client,
            &format!("{instance}/users/"),
            account_key,
            json!({"username": "soak", "password": "soak-password"}),
        )
        .await?;
        let register = format!("{}/v1.1/account/register/", soak.herald.http);
        let suffix = soak.suffix;
        let victim_email = format!("soak-victim-{suffix}@example.com");
        let right_email = format!("soak-right-{suffix}@example.com");
        let right_password = format!("right-{suffix}");
        for (email, password) in [
            (&victim_email, format!("victim-{suffix}")),
            (&right_email, right_password.clone()),
        ] {
            let body = json!({"email": email, "password": password});
            post_json(&client, &register, account_key, body).await?;
        }
        Ok(Setup {
            api_key_id: id_field(&reset)?,
            api_key: string_field(&reset, "api_key")?,
            plain_key: string_field(&plain, "api_key")?,
            user_id: id_field(&user)?,
            user_key: string_field(&user, "user_key")?,
            victim_email,
            right_email,
            right_password,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Subscribers

/// What one subscriber received: every id, in arrival order.
struct Received {
    stream: usize,
    transport: Transport,
    ids: Vec<u64>,
}

/// Why a session ended.
enum End {
    /// Its hold time ran out: the subscriber drops the connection and resumes.
    Held,
    /// The run is over and the subscriber has its stream's newest id.
    Drained,
    /// The server closed it, or answered with an error.
    Server(String),
}

/// What a session waits for beside its transport: its hold time, and the end of the run.
struct Until<'a> {
    deadline: tokio::time::Instant,
    targets: &'a mut watch::Receiver<Targets>,
    stream: usize,
}

impl Until<'_> {
    fn reached(&self, last: u64) -> bool {
        reached(self.targets, self.stream, last)
    }

    /// Resolves when the session should end, `last` being the newest id it has.
    async fn end(&mut self, last: u64) -> End {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(self.deadline) => return End::Held,
                changed = self.targets.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(self.deadline).await;
                        return End::Held;
                    }
                    if self.reached(last) {
                        return End::Drained;
                    }
                }
            }
        }
    }
}

fn reached(targets: &watch::Receiver<Targets>, stream: usize, last: u64) -> bool {
    targets.borrow().is_some_and(|t| last >= t[stream])
}

fn last_of(ids: &[u64]) -> u64 {
    ids.last().copied().unwrap_or(0)
}

/// One subscriber: sessions of a random length, each resuming after the last id received.
async fn subscriber(soak: Arc<Soak>, stream: usize, transport: Transport, seed: u64) -> Received {
    let mut rng = Rng::new(seed);
    let mut ids = Vec::new();
    let mut targets = soak.targets.clone();
    let t = transport as usize;
    let mut sessions = 0u64;
    while !reached(&targets, stream, last_of(&ids)) {
        if sessions > 0 {
            add(&soak.counts.reconnects[t]);
        }
        sessions += 1;
        let mut until = Until {
            deadline: tokio::time::Instant::now() + rng.around(soak.hold),
            targets: &mut targets,
            stream,
        };
        let end = match transport {
            Transport::LongPoll => long_poll(&soak, &mut ids, &mut until).await,
            Transport::WebSocket => websocket(&soak, &mut ids, &mut until, rng.below(2) == 0).await,
            Transport::Sse => sse(&soak, &mut ids, &mut until, sessions.is_multiple_of(2)).await,
        };
        let why = match end {
            Ok(End::Held) => continue,
            Ok(End::Drained) => break,
            Ok(End::Server(why)) => why,
            Err(err) => format!("{err:#}"),
        };
        add(&soak.counts.ended[t]);
        soak.note(format!(
            "{} subscriber of {}: {why}",
            transport.name(),
            stream_name(stream)
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Received {
        stream,
        transport,
        ids,
    }
}

/// `last_id` (and `room`) for a poll of `stream`.
fn poll_query(stream: usize, last_id: u64) -> Vec<(&'static str, String)> {
    let mut query = vec![("last_id", last_id.to_string())];
    if let Some(room) = STREAMS[stream].1 {
        query.push(("room", room.to_owned()));
    }
    query
}

/// Long-polls on one connection (a new client: dropping it closes the connection) until the
/// session ends; each answer is the next message.
async fn long_poll(soak: &Soak, ids: &mut Vec<u64>, until: &mut Until<'_>) -> anyhow::Result<End> {
    let client = reqwest::Client::new();
    let url = soak.herald.channel_url(STREAMS[until.stream].0, "poll");
    loop {
        let last = last_of(ids);
        let request = client
            .get(&url)
            .query(&poll_query(until.stream, last))
            .header("X-API-KEY", &soak.herald.api_key)
            .send();
        let resp = tokio::select! {
            end = until.end(last) => return Ok(end),
            resp = request => resp?,
        };
        match resp.status() {
            StatusCode::OK => {
                let header = resp
                    .headers()
                    .get("x-last-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let text = resp.text().await?;
                let id = int_field(&text, "\"id\":")
                    .with_context(|| format!("poll answer without an id: {text}"))?;
                if header != Some(id) {
                    bail!("poll answered message {id} with X-Last-Id {header:?}");
                }
                soak.received(ids, id, Transport::LongPoll);
                if until.reached(id) {
                    return Ok(End::Drained);
                }
            }
            StatusCode::NO_CONTENT => {}
            status => {
                let text = resp.text().await.unwrap_or_default();
                return Ok(End::Server(format!("poll answered {status}: {text}")));
            }
        }
    }
}

/// A WebSocket session from the last id; at the end of its hold it says goodbye with a close
/// frame when `polite`, else just drops the socket.
async fn websocket(
    soak: &Soak,
    ids: &mut Vec<u64>,
    until: &mut Until<'_>,
    polite: bool,
) -> anyhow::Result<End> {
    let (channel, room) = STREAMS[until.stream];
    // The room is ignored on a `default` channel.
    let url = soak
        .herald
        .room_stream_url(channel, room.unwrap_or("main"), Some(last_of(ids)));
    let mut socket = tokio::select! {
        end = until.end(last_of(ids)) => return Ok(end),
        connected = tokio_tungstenite::connect_async(url) => connected?.0,
    };
    loop {
        let frame = tokio::select! {
            end = until.end(last_of(ids)) => {
                if polite {
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                }
                return Ok(end);
            }
            frame = socket.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                // A frame without an id is the server's `{"detail": ...}` before it closes.
                let Some(id) = int_field(&text, "\"id\":") else {
                    return Ok(End::Server(format!("frame {text}")));
                };
                soak.received(ids, id, Transport::WebSocket);
                if until.reached(id) {
                    return Ok(End::Drained);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Ok(End::Server(format!("closed by the server: {frame:?}")));
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Ok(End::Server(format!("socket failed: {err}"))),
            None => return Ok(End::Server("socket ended".into())),
        }
    }
}

/// What one Server-Sent Event is.
#[derive(Debug, PartialEq, Eq)]
enum SseEvent {
    Message(u64),
    /// `event: error`: the server ends the stream (its data).
    Error(String),
    /// `retry:`, keepalive comments, anything else.
    Other(Option<String>),
}

fn read_sse(event: &str) -> anyhow::Result<SseEvent> {
    let (mut id, mut data, mut kind) = (None, None, None);
    for line in event.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(
                value
                    .parse::<u64>()
                    .with_context(|| format!("bad id in {event}"))?,
            );
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(value);
        } else if let Some(value) = line.strip_prefix("event: ") {
            kind = Some(value);
        }
    }
    match (kind, id) {
        (Some("error"), _) => Ok(SseEvent::Error(data.unwrap_or_default().to_owned())),
        (None, Some(id)) => {
            if data.and_then(|d| int_field(d, "\"id\":")) != Some(id) {
                bail!("event {id} does not carry message {id}: {event}");
            }
            Ok(SseEvent::Message(id))
        }
        (kind, _) => Ok(SseEvent::Other(kind.map(str::to_owned))),
    }
}

/// An SSE session from the last id: through `Last-Event-ID` on the original URL (as a browser
/// reconnects) when `header`, else through `last_id`.
async fn sse(
    soak: &Soak,
    ids: &mut Vec<u64>,
    until: &mut Until<'_>,
    header: bool,
) -> anyhow::Result<End> {
    let last = last_of(ids);
    let mut query = poll_query(until.stream, if header { 0 } else { last });
    query.push(("transport", "sse".into()));
    let mut request = reqwest::Client::new()
        .get(soak.herald.channel_url(STREAMS[until.stream].0, "poll"))
        .query(&query)
        .header("X-API-KEY", &soak.herald.api_key);
    if header {
        request = request.header("Last-Event-ID", last);
    }
    let mut resp = tokio::select! {
        end = until.end(last) => return Ok(end),
        resp = request.send() => resp?,
    };
    if resp.status() != StatusCode::OK {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Ok(End::Server(format!("SSE answered {status}: {text}")));
    }
    let mut buffer = Vec::new();
    loop {
        let chunk = tokio::select! {
            end = until.end(last_of(ids)) => return Ok(end),
            chunk = resp.chunk() => chunk?,
        };
        let Some(chunk) = chunk else {
            return Ok(End::Server("stream ended".into()));
        };
        buffer.extend_from_slice(&chunk);
        while let Some(at) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..at + 2).collect();
            match read_sse(&String::from_utf8_lossy(&event))? {
                SseEvent::Message(id) => {
                    soak.received(ids, id, Transport::Sse);
                    if until.reached(id) {
                        return Ok(End::Drained);
                    }
                }
                SseEvent::Error(data) => return Ok(End::Server(format!("event: error {data}"))),
                SseEvent::Other(Some(kind)) => soak.note(format!("SSE event {kind}")),
                SseEvent::Other(None) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Publishers, log-ins, slowloris, key resets

/// Publishes at one message per `period` until the load stops; the acknowledged ids per stream.
async fn publisher(soak: Arc<Soak>, period: Duration, seed: u64) -> anyhow::Result<Vec<Vec<u64>>> {
    let mut rng = Rng::new(seed);
    let mut acked = vec![Vec::new(); STREAMS.len()];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let (mut ticker, mut stop) = (ticker(period), soak.stop.clone());
    let mut n = 0u64;
    while next_tick(&mut ticker, &mut stop).await {
        n += 1;
        let stream = rng.below(STREAMS.len() as u64) as usize;
        let (channel, room) = STREAMS[stream];
        let mut body = json!({"payload": {"publisher": seed, "n": n}});
        if let Some(room) = room {
            body["room"] = json!(room);
        }
        let sent = client
            .post(soak.herald.channel_url(channel, "publish"))
            .header("X-API-KEY", &soak.herald.api_key)
            .json(&body)
            .send()
            .await;
        let (status, text) = answer(sent).await;
        match (status, int_field(&text, "\"id\":")) {
            (201, Some(id)) => {
                acked[stream].push(id);
                add(&soak.counts.published);
            }
            _ => {
                add(&soak.counts.publish_errors);
                soak.note(format!("publish answered {status}: {text}"));
            }
        }
    }
    Ok(acked)
}

/// Log-ins with wrong passwords from 127.0.0.1, `per_second`: 401 until the IP's budget or
/// the account's lock-out says 429.
async fn wrong_logins(soak: Arc<Soak>, per_second: u32, victim: String) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1.1/account/auth/", soak.herald.http);
    let period = Duration::from_secs_f64(1.0 / f64::from(per_second));
    let (mut ticker, mut stop) = (ticker(period), soak.stop.clone());
    let c = &soak.counts;
    let mut n = 0u64;
    while next_tick(&mut ticker, &mut stop).await {
        n += 1;
        // Half against the victim account, half against e-mails nobody has (they cost the
        // server the same check).
        let email = if n.is_multiple_of(2) {
            victim.clone()
        } else {
            format!("nobody-{n}-{}@example.com", soak.suffix)
        };
        let body = json!({"email": email, "password": format!("wrong-{n}")});
        let (status, text) = answer(client.post(&url).json(&body).send().await).await;
        add(match status {
            401 => &c.wrong_refused,
            429 if text.contains("failed logins") => &c.wrong_locked,
            429 => &c.wrong_throttled,
            503 => &c.wrong_busy,
            _ => {
                soak.note(format!("wrong log-in answered {status}: {text}"));
                &c.wrong_other
            }
        });
    }
    Ok(())
}

/// A log-in with the right password every `period`, from `from`: must answer 200.
async fn right_logins(
    soak: Arc<Soak>,
    period: Duration,
    from: IpAddr,
    email: String,
    password: String,
) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1.1/account/auth/", soak.herald.http);
    let body = json!({"email": email, "password": password});
    let (mut ticker, mut stop) = (ticker(period), soak.stop.clone());
    while next_tick(&mut ticker, &mut stop).await {
        match answer(client.post(&url).json(&body).send().await).await {
            (200, _) => add(&soak.counts.right_ok),
            (status, text) => {
                add(&soak.counts.right_refused);
                soak.note(format!(
                    "right log-in from {from} answered {status}: {text}"
                ));
            }
        }
    }
    Ok(())
}

/// One slowloris socket, reopened whenever the server closes it: part of a request head, then
/// a byte a second. Returns how long each socket stayed open.
async fn slowloris(soak: Arc<Soak>, addr: SocketAddr, n: usize) -> anyhow::Result<Histogram<u64>> {
    let mut lifetimes = histogram();
    let mut stop = soak.stop.clone();
    // Half stall inside a header, half inside the request line.
    let head: &[u8] = if n.is_multiple_of(2) {
        b"GET /v1.1/instances/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    } else {
        b"GET /health/li"
    };
    while !*stop.borrow() {
        let opened = Instant::now();
        let mut socket = match TcpStream::connect(addr).await {
            Ok(socket) => socket,
            Err(err) => {
                soak.note(format!("slowloris connect failed: {err}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        add(&soak.counts.slow_opened);
        let (mut reader, mut writer) = socket.split();
        let mut writing = writer.write_all(head).await.is_ok();
        let mut dribble = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let (mut answer, mut buffer) = (Vec::new(), [0u8; 512]);
        let closed = loop {
            tokio::select! {
                () = stopping(&mut stop) => break false,
                read = reader.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break true,
                    Ok(n) => answer.extend_from_slice(&buffer[..n]),
                },
                _ = dribble.tick(), if writing => {
                    writing = writer.write_all(b"a").await.is_ok();
                }
            }
        };
        if !closed {
            break;
        }
        add(&soak.counts.slow_closed);
        lifetimes.saturating_record(opened.elapsed().as_nanos() as u64);
        if answer.starts_with(b"HTTP/1.1 408") {
            add(&soak.counts.slow_408);
        }
    }
    Ok(lifetimes)
}

#[derive(Clone, Copy, Debug)]
enum KeyKind {
    Api,
    User,
}

impl KeyKind {
    /// The key's path below the instance, and the field of the reset answer with the new key.
    fn reset(self, setup: &Setup) -> (String, &'static str) {
        match self {
            KeyKind::Api => (format!("api_keys/{}", setup.api_key_id), "api_key"),
            KeyKind::User => (format!("users/{}", setup.user_id), "user_key"),
        }
    }

    fn current(self, setup: &mut Setup) -> &mut String {
        match self {
            KeyKind::Api => &mut setup.api_key,
            KeyKind::User => &mut setup.user_key,
        }
    }

    fn resets(self, counts: &Counts) -> &AtomicU64 {
        match self {
            KeyKind::Api => &counts.api_resets,
            KeyKind::User => &counts.user_resets,
        }
    }
}

/// A key that was reset, and when.
struct Retired {
    kind: KeyKind,
    key: String,
    at: Instant,
}

/// Resets the API key and the user key every `period`; checks that every key reset so far is
/// refused and the current ones work, and that a stream opened with the old API key closes.
async fn resets(soak: Arc<Soak>, period: Duration, mut setup: Setup, account_key: String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a default client builds");
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut stop = soak.stop.clone();
    let mut retired: Vec<Retired> = Vec::new();
    let mut watchers = Vec::new();
    let instance = soak.instance_url();
    while next_tick(&mut ticker, &mut stop).await {
        let ws_base = soak.herald.http.replacen("http://", "ws://", 1);
        let stream_url = format!(
            "{ws_base}/v1.1/instances/{}/channels/bench/poll/?transport=websocket&api_key={}",
            soak.herald.instance(),
            setup.api_key
        );
        let mut stream = Some(tokio_tungstenite::connect_async(stream_url).await);
        for kind in [KeyKind::Api, KeyKind::User] {
            let (path, field) = kind.reset(&setup);
            let url = format!("{instance}/{path}/reset_key/");
            let fresh = match reset_key(&client, url, &account_key, field).await {
                Ok(fresh) => fresh,
                Err(err) => {
                    soak.problem(format!("resetting the {kind:?} key failed: {err:#}"));
                    continue;
                }
            };
            let at = Instant::now();
            add(kind.resets(&soak.counts));
            let key = std::mem::replace(kind.current(&mut setup), fresh);
            retired.push(Retired { kind, key, at });
            match (kind, stream.take()) {
                (KeyKind::Api, Some(Ok((socket, _)))) => {
                    watchers.push(tokio::spawn(expect_closed(soak.clone(), socket, at)));
                }
                (KeyKind::Api, Some(Err(err))) => {
                    soak.note(format!("stream with the key to reset: {err}"));
                }
                (_, other) => stream = other,
            }
        }
        for old in &retired {
            match key_accepted(&client, &soak, &setup, old.kind, &old.key).await {
                Ok(false) => add(&soak.counts.old_refused),
                Ok(true) => {
                    add(&soak.counts.old_accepted);
                    soak.problem(format!(
                        "a {:?} key reset {:.1} s ago was accepted",
                        old.kind,
                        old.at.elapsed().as_secs_f64()
                    ));
                }
                Err(err) => soak.note(format!("checking an old {:?} key: {err:#}", old.kind)),
            }
        }
        for (kind, key) in [
            (KeyKind::Api, &setup.api_key),
            (KeyKind::User, &setup.user_key),
        ] {
            match key_accepted(&client, &soak, &setup, kind, key).await {
                Ok(true) => {}
                Ok(false) => soak.problem(format!("the new {kind:?} key was refused")),
                Err(err) => soak.note(format!("checking the new {kind:?} key: {err:#}")),
            }
        }
    }
    for watcher in watchers {
        let _ = watcher.await;
    }
}

/// Resets the key at `url` (`.../reset_key/`); the new one, the answer's `field`.
async fn reset_key(
    client: &reqwest::Client,
    url: String,
    account_key: &str,
    field: &str,
) -> anyhow::Result<String> {
    let answer = post_json(client, &url, account_key, json!({})).await?;
    string_field(&answer, field)
}

/// Whether the server takes `key`: an API key reading the `bench` history, or a user key
/// beside the plain API key reading its user.
async fn key_accepted(
    client: &reqwest::Client,
    soak: &Soak,
    setup: &Setup,
    kind: KeyKind,
    key: &str,
) -> anyhow::Result<bool> {
    let request = match kind {
        KeyKind::Api => client
            .get(soak.herald.channel_url("bench", "history"))
            .query(&[("page_size", "1")])
            .header("X-API-KEY", key),
        KeyKind::User => client
            .get(format!("{}/user/", soak.instance_url()))
            .header("X-API-KEY", &setup.plain_key)
            .header("X-USER-KEY", key),
    };
    let resp = request.send().await?;
    match resp.status() {
        StatusCode::OK => Ok(true),
        StatusCode::FORBIDDEN => Ok(false),
        status => bail!("answered {status}: {}", resp.text().await?),
    }
}

/// A WebSocket opened with a key that was then reset must be closed (1008) soon.
async fn expect_closed(soak: Arc<Soak>, mut socket: Ws, reset_at: Instant) {
    let closed = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(15), closed).await {
        Ok(code) => {
            add(&soak.counts.streams_closed);
            if code != Some(1008) {
                soak.note(format!(
                    "a stream on a reset key ended with {code:?}, not 1008"
                ));
            }
        }
        Err(_) => soak.problem(format!(
            "a WebSocket opened with a reset API key was still open {:.0} s after the reset",
            reset_at.elapsed().as_secs_f64()
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Samples, progress and the check

struct Sample {
    /// Seconds since the load started.
    at: f64,
    rss: u64,
    fds: u64,
    /// Server CPU seconds so far.
    cpu: f64,
}

fn sample(pid: u32, at: f64) -> anyhow::Result<Sample> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?
        .count() as u64;
    Ok(Sample {
        at,
        rss: rss_bytes(pid)?,
        fds,
        cpu: cpu_seconds(pid)?,
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Samples the server every `period` with a progress line, until the load stops (and once
/// more then).
async fn sampler(
    soak: Arc<Soak>,
    pid: u32,
    period: Duration,
    started: Instant,
) -> anyhow::Result<Vec<Sample>> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut stop = soak.stop.clone();
    loop {
        let going = next_tick(&mut ticker, &mut stop).await;
        let now = sample(pid, started.elapsed().as_secs_f64())?;
        let c = &soak.counts;
        let (cpu_before, at_before) = samples.last().map_or((0.0, 0.0), |s| (s.cpu, s.at));
        let cpu = 100.0 * (now.cpu - cpu_before) / (now.at - at_before).max(1e-3);
        let sum = |counters: &[AtomicU64; 3]| counters.iter().map(get).sum::<u64>();
        eprintln!(
            "soak {:>4.0} s  published {} ({} errors)  delivered lp {} ws {} sse {}  \
             reconnects {}  server-ended {}  log-ins 401:{} 429:{} ok:{}  slowloris closes {}  \
             resets {}  | server RSS {:.1} MB  FDs {}  CPU {cpu:.0}%",
            now.at,
            get(&c.published),
            get(&c.publish_errors),
            get(&c.delivered[0]),
            get(&c.delivered[1]),
            get(&c.delivered[2]),
            sum(&c.reconnects),
            sum(&c.ended),
            get(&c.wrong_refused),
            get(&c.wrong_throttled) + get(&c.wrong_locked),
            get(&c.right_ok),
            get(&c.slow_closed),
            get(&c.api_resets) + get(&c.user_resets),
            mb(now.rss),
            now.fds,
        );
        samples.push(now);
        if !going {
            return Ok(samples);
        }
    }
}

/// Ids of one page of a stream's history: after `last_id`, ascending, or the newest first.
async fn history_page(
    soak: &Soak,
    client: &reqwest::Client,
    stream: usize,
    last_id: Option<u64>,
    size: u32,
) -> anyhow::Result<Vec<u64>> {
    let (channel, room) = STREAMS[stream];
    let mut query = vec![("page_size", size.to_string())];
    if let Some(last_id) = last_id {
        query.push(("last_id", last_id.to_string()));
        query.push(("ordering", "asc".into()));
    }
    if let Some(room) = room {
        query.push(("room", room.into()));
    }
    let resp = client
        .get(soak.herald.channel_url(channel, "history"))
        .query(&query)
        .header("X-API-KEY", &soak.herald.api_key)
        .send()
        .await?;
    if resp.status() != StatusCode::OK {
        bail!("history answered {}: {}", resp.status(), resp.text().await?);
    }
    let page: Value = resp.json().await?;
    page["objects"]
        .as_array()
        .context("history page without objects")?
        .iter()
        .map(id_field)
        .collect()
}

/// A stream's whole history, ascending.
async fn history(soak: &Soak, client: &reqwest::Client, stream: usize) -> anyhow::Result<Vec<u64>> {
    let mut ids: Vec<u64> = Vec::new();
    loop {
        let page = history_page(soak, client, stream, Some(last_of(&ids)), 100).await?;
        if page.is_empty() {
            return Ok(ids);
        }
        ids.extend(page);
    }
}

/// How one subscriber's ids compare with its stream's history.
#[derive(Default, Debug, PartialEq, Eq)]
struct Check {
    /// In the history, never received.
    lost: u64,
    /// Received more than once (each repeat counts).
    duplicated: u64,
    /// Received after a higher id.
    reordered: u64,
    /// Received, not in the history.
    unknown: u64,
}

impl Check {
    /// Subscribers start at `last_id=0`, so every id of the history is expected once, in order.
    fn of(history: &[u64], ids: &[u64]) -> Check {
        let mut check = Check::default();
        let mut seen = HashSet::with_capacity(ids.len());
        let mut highest = 0;
        for &id in ids {
            if !seen.insert(id) {
                check.duplicated += 1;
                continue;
            }
            if id < highest {
                check.reordered += 1;
            }
            highest = highest.max(id);
        }
        let known: HashSet<u64> = history.iter().copied().collect();
        check.unknown = seen.iter().filter(|id| !known.contains(id)).count() as u64;
        check.lost = known.iter().filter(|id| !seen.contains(id)).count() as u64;
        check
    }

    fn add(&mut self, other: &Check) {
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.unknown += other.unknown;
    }

    fn clean(&self) -> bool {
        *self == Check::default()
    }
}

/// The sample nearest `at` seconds.
fn sample_at(samples: &[Sample], at: f64) -> &Sample {
    samples
        .iter()
        .min_by(|a, b| (a.at - at).abs().total_cmp(&(b.at - at).abs()))
        .expect("at least one sample")
}

fn quantiles_ms(h: &Histogram<u64>) -> (f64, f64) {
    (ms(h.value_at_quantile(0.5)), ms(h.max()))
}

pub async fn run(target: &Target, args: &SoakArgs) -> anyhow::Result<Value> {
    let pid = target
        .server_pid
        .context("soak needs --server-pid to sample the server's memory and descriptors")?;
    if args.rate == 0 || args.publishers == 0 {
        bail!("--rate and --publishers must be above 0");
    }
    let herald = Herald::create(target).await?;
    let (stop_tx, stop) = watch::channel(false);
    let (targets_tx, targets) = watch::channel(None);
    let soak = Arc::new(Soak {
        herald,
        counts: Counts::default(),
        problems: Mutex::default(),
        notes: Mutex::default(),
        stop,
        targets,
        hold: args.hold,
        suffix: unique_suffix(),
    });
    let setup = Setup::create(&soak, &target.key).await?;
    let addr: SocketAddr = tokio::net::lookup_host(
        soak.herald
            .http
            .strip_prefix("http://")
            .context("--url must start with http://")?,
    )
    .await?
    .next()
    .context("--url does not resolve")?;

    let mut subscribers = Vec::new();
    for stream in 0..STREAMS.len() {
        for transport in TRANSPORTS {
            for _ in 0..args.subscribers {
                let seed = subscribers.len() as u64;
                subscribers.push(tokio::spawn(subscriber(
                    soak.clone(),
                    stream,
                    transport,
                    seed,
                )));
            }
        }
    }
    let before = sample(pid, 0.0)?;
    eprintln!(
        "soak: {} subscribers ({} per transport on each of {} streams), {} messages/s from {} \
         publishers, {} wrong log-ins/s, {} slowloris sockets, key resets every {:?}, for {:?}",
        subscribers.len(),
        args.subscribers,
        STREAMS.len(),
        args.rate,
        args.publishers,
        args.wrong_logins,
        args.slowloris,
        args.reset_every,
        args.duration
    );
    let started = Instant::now();
    let period = Duration::from_secs_f64(f64::from(args.publishers) / f64::from(args.rate));
    let publishers: Vec<_> = (0..args.publishers)
        .map(|i| tokio::spawn(publisher(soak.clone(), period, u64::from(i) + 1000)))
        .collect();
    let mut chores = Vec::new();
    if args.wrong_logins > 0 {
        let victim = setup.victim_email.clone();
        chores.push(tokio::spawn(wrong_logins(
            soak.clone(),
            args.wrong_logins,
            victim,
        )));
    }
    chores.push(tokio::spawn(right_logins(
        soak.clone(),
        args.right_login_every,
        args.right_login_from,
        setup.right_email.clone(),
        setup.right_password.clone(),
    )));
    let sockets: Vec<_> = (0..args.slowloris)
        .map(|n| tokio::spawn(slowloris(soak.clone(), addr, n)))
        .collect();
    let resetter = tokio::spawn(resets(
        soak.clone(),
        args.reset_every,
        setup,
        target.key.clone(),
    ));
    let sampling = tokio::spawn(sampler(soak.clone(), pid, args.sample_every, started));

    tokio::time::sleep(args.duration).await;
    stop_tx.send_replace(true);
    let load_seconds = started.elapsed().as_secs_f64();
    let mut acked = vec![Vec::new(); STREAMS.len()];
    for publisher in publishers {
        for (stream, ids) in publisher.await??.into_iter().enumerate() {
            acked[stream].extend(ids);
        }
    }
    for chore in chores {
        chore.await??;
    }
    let mut lifetimes = histogram();
    for socket in sockets {
        lifetimes.add(&socket.await??)?;
    }
    resetter.await?;
    let samples = sampling.await??;

    // Every subscriber must reach the newest id of its stream.
    let client = reqwest::Client::new();
    let mut newest = [0u64; 4];
    for (stream, newest) in newest.iter_mut().enumerate() {
        let page = history_page(&soak, &client, stream, None, 1).await?;
        *newest = page.first().copied().unwrap_or(0);
    }
    targets_tx.send_replace(Some(newest));
    let drain_started = Instant::now();
    while drain_started.elapsed() < args.drain && !subscribers.iter().all(|s| s.is_finished()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let behind = subscribers.iter().filter(|s| !s.is_finished()).count();
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    if behind > 0 {
        // Stop them where they are: the check counts what they lack as lost.
        targets_tx.send_replace(Some([0; 4]));
    }
    let mut received = Vec::with_capacity(subscribers.len());
    for subscriber in subscribers {
        received.push(subscriber.await?);
    }
    // Past the header timeout, so that the server has closed whatever the load left open.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = sample(pid, started.elapsed().as_secs_f64())?;

    // The check: each subscriber against its stream's history, and every acknowledged
    // publish in the history.
    let mut histories = Vec::with_capacity(STREAMS.len());
    for stream in 0..STREAMS.len() {
        histories.push(history(&soak, &client, stream).await?);
    }
    let mut by_transport: [Check; 3] = Default::default();
    for r in &received {
        let check = Check::of(&histories[r.stream], &r.ids);
        if !check.clean() {
            soak.problem(format!(
                "{} subscriber of {}: {check:?} (received {}, history {})",
                r.transport.name(),
                stream_name(r.stream),
                r.ids.len(),
                histories[r.stream].len()
            ));
        }
        by_transport[r.transport as usize].add(&check);
    }
    let mut acked_missing = 0u64;
    let mut unacked_stored = 0u64;
    for (stream, history) in histories.iter().enumerate() {
        let stored: HashSet<u64> = history.iter().copied().collect();
        let acked: HashSet<u64> = acked[stream].iter().copied().collect();
        acked_missing += acked.difference(&stored).count() as u64;
        unacked_stored += stored.difference(&acked).count() as u64;
    }
    if acked_missing > 0 {
        soak.problem(format!(
            "{acked_missing} acknowledged publishes are not in the history"
        ));
    }
    if behind > 0 {
        soak.problem(format!(
            "{behind} subscribers had not caught up {:.0} s after the load stopped",
            args.drain.as_secs_f64()
        ));
    }

    // The report.
    let c = &soak.counts;
    let published = get(&c.published);
    let stored: usize = histories.iter().map(Vec::len).sum();
    println!(
        "soak: {load_seconds:.0} s of mixed load; streams {}",
        (0..STREAMS.len())
            .map(stream_name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  published     {published} acknowledged ({:.0}/s), {} errors; {stored} in history \
         ({unacked_stored} not acknowledged to us, {acked_missing} acknowledged but missing)",
        published as f64 / load_seconds,
        get(&c.publish_errors)
    );
    let mut transports = serde_json::Map::new();
    for (t, transport) in TRANSPORTS.iter().enumerate() {
        let check = &by_transport[t];
        println!(
            "  {:<13} {} subscribers: delivered {}  reconnects {}  ended by the server {}  \
             lost {}  duplicated {}  out of order {}  unknown {}",
            transport.name(),
            received
                .iter()
                .filter(|r| r.transport == *transport)
                .count(),
            get(&c.delivered[t]),
            get(&c.reconnects[t]),
            get(&c.ended[t]),
            check.lost,
            check.duplicated,
            check.reordered,
            check.unknown
        );
        transports.insert(
            transport.name().into(),
            json!({
                "delivered": get(&c.delivered[t]), "reconnects": get(&c.reconnects[t]),
                "ended_by_server": get(&c.ended[t]), "lost": check.lost,
                "duplicated": check.duplicated, "out_of_order": check.reordered,
                "unknown": check.unknown,
            }),
        );
    }
    println!(
        "  caught up     {} of {} subscribers {drain_seconds:.1} s after the load stopped",
        received.len() - behind,
        received.len()
    );
    println!(
        "  log-ins       wrong: {} refused (401), {} throttled (429, IP budget), {} locked (429), \
         {} busy (503), {} other; right (from {}): {} accepted, {} refused",
        get(&c.wrong_refused),
        get(&c.wrong_throttled),
        get(&c.wrong_locked),
        get(&c.wrong_busy),
        get(&c.wrong_other),
        args.right_login_from,
        get(&c.right_ok),
        get(&c.right_refused)
    );
    let (open_p50, open_max) = quantiles_ms(&lifetimes);
    println!(
        "  slowloris     {} sockets: {} opened, {} closed by the server ({} with a 408); open \
         p50 {:.2} s, max {:.2} s",
        args.slowloris,
        get(&c.slow_opened),
        get(&c.slow_closed),
        get(&c.slow_408),
        open_p50 / 1e3,
        open_max / 1e3
    );
    println!(
        "  key resets    {} API key, {} user key; old keys refused {} times, accepted {}; \
         {} streams on a reset key closed",
        get(&c.api_resets),
        get(&c.user_resets),
        get(&c.old_refused),
        get(&c.old_accepted),
        get(&c.streams_closed)
    );
    let minute1 = sample_at(&samples, 60.0);
    let end = samples.last().expect("the sampler's last sample");
    let growth = end.rss as f64 - minute1.rss as f64;
    let peak_rss = samples.iter().map(|s| s.rss).max().unwrap_or_default();
    let (fd_min, fd_max) = samples
        .iter()
        .filter(|s| s.at >= minute1.at)
        .fold((u64::MAX, 0), |(lo, hi), s| (lo.min(s.fds), hi.max(s.fds)));
    let cpu = 100.0 * (end.cpu - before.cpu) / end.at.max(1e-3);
    println!(
        "  server RSS    before {:.1} MB   at {:.0} s {:.1} MB   at {:.0} s {:.1} MB   growth \
         {:+.1} MB ({:+.1}%)   peak {:.1} MB   10 s after the drain {:.1} MB",
        mb(before.rss),
        minute1.at,
        mb(minute1.rss),
        end.at,
        mb(end.rss),
        growth / 1e6,
        100.0 * growth / minute1.rss as f64,
        mb(peak_rss),
        mb(after.rss)
    );
    println!(
        "  server FDs    before {}   at {:.0} s {}   at {:.0} s {}   range from {:.0} s on \
         {fd_min}..{fd_max}   10 s after the drain {}",
        before.fds, minute1.at, minute1.fds, end.at, end.fds, minute1.at, after.fds
    );
    println!("  server CPU    {cpu:.0}% of a core on average during the load");
    let (notes, note_count) = lock(&soak.notes).clone();
    if note_count > 0 {
        println!(
            "  unexpected answers: {note_count}; the first {}:",
            notes.len()
        );
        for note in &notes {
            println!("    {note}");
        }
    }
    let problems = lock(&soak.problems).clone();
    if problems.is_empty() {
        println!(
            "  verification  PASSED: every subscriber got every id of its stream exactly once, in \
             order; every acknowledged publish is in the history; no reset key was accepted"
        );
    } else {
        println!("  verification  FAILED:");
        for problem in &problems {
            println!("    {problem}");
        }
    }
    let series: Vec<Value> = samples
        .iter()
        .map(|s| json!({"at": s.at, "rss": s.rss, "fds": s.fds, "cpu_s": s.cpu}))
        .collect();
    Ok(json!({
        "scenario": "soak", "protocol": "herald", "seconds": load_seconds,
        "rate": args.rate, "subscribers": received.len(), "streams": STREAMS.len(),
        "published": published, "publish_errors": get(&c.publish_errors), "stored": stored,
        "acked_missing": acked_missing, "unacked_stored": unacked_stored,
        "transports": transports, "behind": behind, "drain_seconds": drain_seconds,
        "logins": {
            "wrong_refused": get(&c.wrong_refused), "wrong_throttled": get(&c.wrong_throttled),
            "wrong_locked": get(&c.wrong_locked), "wrong_busy": get(&c.wrong_busy),
            "wrong_other": get(&c.wrong_other), "right_ok": get(&c.right_ok),
            "right_refused": get(&c.right_refused),
        },
        "slowloris": {
            "sockets": args.slowloris, "opened": get(&c.slow_opened),
            "closed": get(&c.slow_closed), "answered_408": get(&c.slow_408),
            "open_p50_ms": open_p50, "open_max_ms": open_max,
        },
        "resets": {
            "api_key": get(&c.api_resets), "user_key": get(&c.user_resets),
            "old_refused": get(&c.old_refused), "old_accepted": get(&c.old_accepted),
            "streams_closed": get(&c.streams_closed),
        },
        "rss_before": before.rss, "rss_minute1": minute1.rss, "rss_end": end.rss,
        "rss_peak": peak_rss, "rss_after": after.rss,
        "fds_before": before.fds, "fds_minute1": minute1.fds, "fds_end": end.fds,
        "fds_after": after.fds, "server_cpu_percent": cpu, "samples": series,
        "unexpected_answers": note_count, "passed": problems.is_empty(), "problems": problems,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_read() {
        assert_eq!(
            read_sse("id: 7\ndata: {\"id\":7,\"payload\":{}}\n\n").unwrap(),
            SseEvent::Message(7)
        );
        assert_eq!(
            read_sse("event: error\ndata: {\"detail\":\"x\"}\n\n").unwrap(),
            SseEvent::Error("{\"detail\":\"x\"}".into())
        );
        assert_eq!(read_sse("retry: 2000\n\n").unwrap(), SseEvent::Other(None));
        assert_eq!(read_sse(": keepalive\n\n").unwrap(), SseEvent::Other(None));
        assert!(read_sse("id: 7\ndata: {\"id\":8}\n\n").is_err());
    }

    #[test]
    fn checks_count_loss_repeats_and_order() {
        let history = [2, 5, 9, 11];
        assert!(Check::of(&history, &[2, 5, 9, 11]).clean());
        assert_eq!(
            Check::of(&history, &[2, 9, 5, 9, 12]),
            Check {
                lost: 1,
                duplicated: 1,
                reordered: 1,
                unknown: 1
            }
        );
    }
}
