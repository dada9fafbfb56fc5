//! The two kinds of server herald-bench drives.
//!
//! - **Herald**: Syncano REST publish (`POST /v1.1/instances/{inst}/channels/{ch}/publish/`)
//!   and its WebSocket stream (`.../poll/?transport=websocket`).
//! - **Pusher protocol** (e.g. Sockudo): the signed HTTP events API
//!   (`POST /apps/{app_id}/events`) and the Pusher WebSocket protocol 7 (`/app/{key}`).
//!
//! Both carry the same message payload: a JSON object of `--payload-bytes` bytes holding the
//! publisher's send time (`t`, nanoseconds on the load tool's monotonic clock) and a sequence
//! number (`s`). Herald stores it as the message's `payload` object; a Pusher server carries it
//! as the event's `data` string.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Target;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Which protocol the server under test speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Herald: Syncano REST API v1.1 and its WebSocket stream.
    Herald,
    /// The Pusher Channels protocol (HTTP events API and WebSocket protocol 7), e.g. Sockudo.
    Pusher,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Herald => "herald",
            Protocol::Pusher => "pusher",
        }
    }
}

/// The message payload: a JSON object of exactly `bytes` bytes (when `bytes` leaves room for
/// the two numbers) carrying the send time and a sequence number.
pub fn payload(sent_at_ns: u64, number: u64, bytes: usize) -> String {
    let head = format!("{{\"t\":{sent_at_ns},\"s\":{number},\"pad\":\"");
    let pad = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Finds `<key><integer>` in a text without parsing all of it (the load tool must not be the
/// bottleneck it measures).
pub fn int_field(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// What a subscriber makes of one text frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A published message: its number (Herald's message id, or the payload's sequence number
    /// for Pusher, which has no ids) and the send time written into its payload.
    Message { number: u64, sent_ns: u64 },
    /// `pusher:ping`: must be answered with [`Fixture::pong`].
    Ping,
    /// A protocol event that is not a message (`pusher:*`, `pusher_internal:*`).
    Control,
    /// Anything else.
    Unexpected,
}

/// A server prepared for one run: for Herald a fresh instance with a trusted key and the
/// `bench` and `rooms` channels; for Pusher an app's credentials and a fresh channel name.
pub enum Fixture {
    Herald(Herald),
    Pusher(Pusher),
}

pub struct Herald {
    pub http: String,
    ws: String,
    instance: String,
    pub api_key: String,
    /// Where publishes go, in turn: `--publish-url`, else `--url`.
    publish_bases: Vec<String>,
    next_publish: std::sync::atomic::AtomicUsize,
}

pub struct Pusher {
    http: String,
    ws: String,
    app_id: String,
    key: String,
    secret: String,
    channel: String,
}

/// `--url` as an http:// base without a trailing slash, checked to be a loopback address.
pub async fn loopback_base(url: &str) -> anyhow::Result<String> {
    let http = url.trim_end_matches('/').to_owned();
    let host = http
        .strip_prefix("http://")
        .context("--url must start with http://")?;
    let addr: SocketAddr = tokio::net::lookup_host(host)
        .await?
        .next()
        .context("--url does not resolve")?;
    if !addr.ip().is_loopback() {
        bail!("herald-bench only targets loopback addresses, not {addr}");
    }
    Ok(http)
}

pub fn unique_suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or_default()
}

impl Fixture {
    pub async fn create(target: &Target) -> anyhow::Result<Fixture> {
        match target.protocol {
            Protocol::Herald => Ok(Fixture::Herald(Herald::create(target).await?)),
            Protocol::Pusher => Ok(Fixture::Pusher(Pusher::create(target).await?)),
        }
    }

    /// Opens a WebSocket subscribed to the bench channel; returns once the server has
    /// confirmed the subscription (Pusher) or accepted the stream (Herald).
    pub async fn subscribe(&self) -> anyhow::Result<Ws> {
        match self {
            Fixture::Herald(h) => Ok(tokio_tungstenite::connect_async(h.stream_url()).await?.0),
            Fixture::Pusher(p) => p.subscribe().await,
        }
    }

    /// A publish of `payload` (see [`payload`]) to the bench channel.
    pub fn publish(&self, client: &reqwest::Client, payload: &str) -> reqwest::RequestBuilder {
        match self {
            Fixture::Herald(h) => h.publish(client, payload),
            Fixture::Pusher(p) => p.publish(client, payload),
        }
    }

    /// Whether a publish answer means "accepted".
    pub fn accepted(&self, status: StatusCode) -> bool {
        match self {
            Fixture::Herald(_) => status == StatusCode::CREATED,
            Fixture::Pusher(_) => status == StatusCode::OK,
        }
    }

    pub fn read(&self, text: &str) -> Frame {
        match self {
            Fixture::Herald(_) => match (int_field(text, "\"id\":"), int_field(text, "\"t\":")) {
                (Some(number), Some(sent_ns)) => Frame::Message { number, sent_ns },
                _ => Frame::Unexpected,
            },
            Fixture::Pusher(_) => read_pusher(text),
        }
    }

    /// The answer to a [`Frame::Ping`].
    pub fn pong() -> Message {
        Message::text(r#"{"event":"pusher:pong","data":{}}"#)
    }
}

fn read_pusher(text: &str) -> Frame {
    // The payload travels as a JSON string, so its quotes arrive escaped.
    if let (Some(number), Some(sent_ns)) =
        (int_field(text, "\\\"s\\\":"), int_field(text, "\\\"t\\\":"))
    {
        return Frame::Message { number, sent_ns };
    }
    if text.contains("\"pusher:ping\"") {
        Frame::Ping
    } else if text.contains("\"pusher:") || text.contains("\"pusher_internal:") {
        Frame::Control
    } else {
        Frame::Unexpected
    }
}

impl Herald {
    pub async fn create(target: &Target) -> anyhow::Result<Herald> {
        if target.key.is_empty() {
            bail!("--key (or HERALD_BENCH_KEY) must be the server's account key");
        }
        let http = loopback_base(&target.url).await?;
        let client = reqwest::Client::new();
        let instance = format!("bench{}", unique_suffix());
        let post = |path: String, body: Value, key: &str| {
            client
                .post(format!("{http}{path}"))
                .header("X-API-KEY", key)
                .json(&body)
                .send()
        };
        let resp = post(
            "/v1.1/instances/".into(),
            json!({"name": instance}),
            &target.key,
        )
        .await?;
        if resp.status() != 201 {
            bail!("creating the bench instance failed: {}", resp.text().await?);
        }
        let resp = post(
            format!("/v1.1/instances/{instance}/api_keys/"),
            json!({"ignore_acl": true, "description": "herald-bench"}),
            &target.key,
        )
        .await?;
        let api_key = resp.json::<Value>().await?["api_key"]
            .as_str()
            .context("no api_key in answer")?
            .to_owned();
        for (name, kind) in [("bench", "default"), ("rooms", "separate_rooms")] {
            let resp = post(
                format!("/v1.1/instances/{instance}/channels/"),
                json!({"name": name, "type": kind, "custom_publish": true}),
                &api_key,
            )
            .await?;
            if resp.status() != 201 {
                bail!("creating the {name} channel failed: {}", resp.text().await?);
            }
        }
        let mut publish_bases = Vec::new();
        for url in &target.publish_url {
            publish_bases.push(loopback_base(url).await?);
        }
        if publish_bases.is_empty() {
            publish_bases.push(http.clone());
        }
        Ok(Herald {
            ws: http.replacen("http://", "ws://", 1),
            http,
            instance,
            api_key,
            publish_bases,
            next_publish: Default::default(),
        })
    }

    pub fn channel_url(&self, channel: &str, action: &str) -> String {
        format!(
            "{}/v1.1/instances/{}/channels/{channel}/{action}/",
            self.http, self.instance
        )
    }

    /// The instance's name (`bench<suffix>`, fresh for each run).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The WebSocket stream of one room of `channel`, from after `last_id` when given.
    pub fn room_stream_url(&self, channel: &str, room: &str, last_id: Option<u64>) -> String {
        let from = last_id
            .map(|id| format!("&last_id={id}"))
            .unwrap_or_default();
        format!(
            "{}/v1.1/instances/{}/channels/{channel}/poll/?transport=websocket&room={room}&api_key={}{from}",
            self.ws, self.instance, self.api_key
        )
    }

    pub fn stream_url(&self) -> String {
        format!(
            "{}/v1.1/instances/{}/channels/bench/poll/?transport=websocket&api_key={}",
            self.ws, self.instance, self.api_key
        )
    }

    pub fn publish(&self, client: &reqwest::Client, payload: &str) -> reqwest::RequestBuilder {
        let turn = self
            .next_publish
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = &self.publish_bases[turn % self.publish_bases.len()];
        client
            .post(format!(
                "{base}/v1.1/instances/{}/channels/bench/publish/",
                self.instance
            ))
            .header("X-API-KEY", &self.api_key)
            .header("Content-Type", "application/json")
            .body(format!("{{\"payload\":{payload}}}"))
    }
}

impl Pusher {
    async fn create(target: &Target) -> anyhow::Result<Pusher> {
        let http = loopback_base(&target.url).await?;
        for (flag, value) in [("--app-key", &target.app_key), ("--app-id", &target.app_id)] {
            // Sent unescaped in the query string and in the signed string.
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                bail!("{flag} must be non-empty letters, digits, '-', '_' or '.'");
            }
        }
        Ok(Pusher {
            ws: http.replacen("http://", "ws://", 1),
            http,
            app_id: target.app_id.clone(),
            key: target.app_key.clone(),
            secret: target.app_secret.clone(),
            channel: format!("bench-{}", unique_suffix()),
        })
    }

    fn socket_url(&self) -> String {
        format!(
            "{}/app/{}?protocol=7&client=herald-bench&version=1.0",
            self.ws, self.key
        )
    }

    async fn subscribe(&self) -> anyhow::Result<Ws> {
        let (mut socket, _) = tokio_tungstenite::connect_async(self.socket_url()).await?;
        expect_event(&mut socket, "pusher:connection_established").await?;
        let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": self.channel}});
        socket.send(Message::text(subscribe.to_string())).await?;
        expect_event(&mut socket, "pusher_internal:subscription_succeeded").await?;
        Ok(socket)
    }

    fn publish(&self, client: &reqwest::Client, payload: &str) -> reqwest::RequestBuilder {
        let body = json!({"name": "bench", "channel": self.channel, "data": payload}).to_string();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let (query, signature) =
            sign_events(&self.app_id, &self.key, &self.secret, timestamp, &body);
        client
            .post(format!(
                "{}/apps/{}/events?{query}&auth_signature={signature}",
                self.http, self.app_id
            ))
            .header("Content-Type", "application/json")
            .body(body)
    }
}

/// Pusher HTTP API authentication (auth_version 1.0) of `POST /apps/{app_id}/events`: the query
/// (sorted, without the signature) and the HMAC-SHA256 hex signature of
/// `"POST\n{path}\n{query}"` under the app secret.
pub fn sign_events(
    app_id: &str,
    key: &str,
    secret: &str,
    timestamp: u64,
    body: &str,
) -> (String, String) {
    let body_md5 = hex::encode(Md5::digest(body.as_bytes()));
    let query =
        format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("POST\n/apps/{app_id}/events\n{query}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    (query, signature)
}

/// Reads frames until the Pusher event `event` arrives (answering pings), for at most 30 s.
async fn expect_event(socket: &mut Ws, event: &str) -> anyhow::Result<()> {
    let wait = async {
        while let Some(frame) = socket.next().await {
            let Message::Text(text) = frame? else {
                continue;
            };
            let parsed: Value = serde_json::from_str(&text)
                .with_context(|| format!("not JSON from the server: {text}"))?;
            match parsed["event"].as_str() {
                Some(e) if e == event => return Ok(()),
                Some("pusher:ping") => socket.send(Fixture::pong()).await?,
                Some("pusher:error") => bail!("server error while waiting for {event}: {text}"),
                _ => {}
            }
        }
        bail!("the server closed the socket while we waited for {event}")
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .with_context(|| format!("no {event} within 30 s"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size() {
        let p = payload(123_456_789_012, 42, 128);
        assert_eq!(p.len(), 128);
        let parsed: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(parsed["t"], 123_456_789_012u64);
        assert_eq!(parsed["s"], 42);
    }

    #[test]
    fn signature_matches_the_pusher_scheme() {
        // Reference computed independently (Python hmac/hashlib) for these inputs.
        let body = r#"{"name":"bench","channel":"bench-1","data":"{\"t\":1,\"s\":1}"}"#;
        let (query, signature) = sign_events(
            "bench-app",
            "bench-key",
            "bench-secret",
            1_700_000_000,
            body,
        );
        assert_eq!(
            query,
            "auth_key=bench-key&auth_timestamp=1700000000&auth_version=1.0\
             &body_md5=9020bb47610705322dddef27b35bbad3"
        );
        assert_eq!(
            signature,
            "5ad7680242a0c7d3ea2047646efbb5080e1f9b224c1ee41d5441b5edd77da0bb"
        );
    }

    #[test]
    fn pusher_frames_are_told_apart() {
        let data = payload(77, 9, 128);
        let event = json!({"event": "bench", "channel": "c", "data": data}).to_string();
        assert_eq!(
            read_pusher(&event),
            Frame::Message {
                number: 9,
                sent_ns: 77
            }
        );
        assert_eq!(
            read_pusher(r#"{"event":"pusher:ping","data":{}}"#),
            Frame::Ping
        );
        assert_eq!(
            read_pusher(r#"{"event":"pusher_internal:subscription_succeeded","channel":"c"}"#),
            Frame::Control
        );
        assert_eq!(read_pusher(r#"{"event":"other"}"#), Frame::Unexpected);
    }
}
