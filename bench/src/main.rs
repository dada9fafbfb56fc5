//! herald-bench: drives a running Herald over real sockets and reports throughput, latency and
//! memory. Every scenario is bounded by `--duration` and counts, talks to loopback only, and
//! prints a human table followed by one JSON line.
//!
//! Latency is end to end: the publisher writes its send time (nanoseconds on this process's
//! monotonic clock) into the payload, and each subscriber subtracts it on arrival.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(
    name = "herald-bench",
    about = "Load scenarios against a running Herald"
)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Args, Clone)]
struct Target {
    /// Server address (loopback only).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Account key of the server (its first-start key).
    #[arg(long, global = true, env = "HERALD_BENCH_KEY", default_value = "")]
    key: String,
    /// The server's process id, to read its memory (RSS) from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Scenario {
    /// N keep-alive connections publishing small messages as fast as they can.
    Publish {
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value = "10", value_parser = seconds)]
        duration: Duration,
        #[arg(long, default_value_t = 128)]
        payload_bytes: usize,
    },
    /// S WebSocket subscribers on one channel, one publisher at R messages/s.
    Fanout {
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        #[arg(long, default_value_t = 1000)]
        rate: u32,
        #[arg(long, default_value = "10", value_parser = seconds)]
        duration: Duration,
        #[arg(long, default_value_t = 128)]
        payload_bytes: usize,
    },
    /// P pending long-polls over R rooms; server memory per poll; then one publish per room
    /// wakes them all.
    Longpoll {
        #[arg(long, default_value_t = 10_000)]
        polls: usize,
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Time given to the polls to reach the server before memory is read.
        #[arg(long, default_value = "3", value_parser = seconds)]
        settle: Duration,
    },
    /// A WebSocket subscriber resuming from last_id=0 behind N stored messages.
    Replay {
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        #[arg(long, default_value_t = 128)]
        payload_bytes: usize,
    },
    /// C idle WebSocket subscriptions; server memory before and after.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// How long to hold the connections after they are all open.
        #[arg(long, default_value = "3", value_parser = seconds)]
        hold: Duration,
    },
}

fn seconds(raw: &str) -> Result<Duration, String> {
    let trimmed = raw.trim_end_matches('s');
    trimmed
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0 && s.is_finite())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{raw}` is not a number of seconds"))
}

/// A fresh instance with a trusted key and one `default`-type channel open for publishing.
struct Fixture {
    http: String,
    ws: String,
    instance: String,
    api_key: String,
}

impl Fixture {
    async fn create(target: &Target) -> anyhow::Result<Fixture> {
        if target.key.is_empty() {
            bail!("--key (or HERALD_BENCH_KEY) must be the server's account key");
        }
        let http = target.url.trim_end_matches('/').to_owned();
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
        let client = reqwest::Client::new();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let instance = format!("bench{}", nanos % 1_000_000_000_000);
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
        let resp = post(
            format!("/v1.1/instances/{instance}/channels/"),
            json!({"name": "bench", "type": "default", "custom_publish": true}),
            &api_key,
        )
        .await?;
        if resp.status() != 201 {
            bail!("creating the bench channel failed: {}", resp.text().await?);
        }
        let resp = post(
            format!("/v1.1/instances/{instance}/channels/"),
            json!({"name": "rooms", "type": "separate_rooms", "custom_publish": true}),
            &api_key,
        )
        .await?;
        if resp.status() != 201 {
            bail!("creating the rooms channel failed: {}", resp.text().await?);
        }
        Ok(Fixture {
            ws: http.replacen("http://", "ws://", 1),
            http,
            instance,
            api_key,
        })
    }

    fn publish_url(&self) -> String {
        format!(
            "{}/v1.1/instances/{}/channels/bench/publish/",
            self.http, self.instance
        )
    }

    fn channel_url(&self, channel: &str, action: &str) -> String {
        format!(
            "{}/v1.1/instances/{}/channels/{channel}/{action}/",
            self.http, self.instance
        )
    }

    fn stream_url(&self) -> String {
        format!(
            "{}/v1.1/instances/{}/channels/bench/poll/?transport=websocket&api_key={}",
            self.ws, self.instance, self.api_key
        )
    }
}

/// A publish body of about `bytes` bytes carrying the send time.
fn payload(sent_at_ns: u64, bytes: usize) -> Vec<u8> {
    let pad = "x".repeat(bytes.saturating_sub(40));
    format!("{{\"payload\":{{\"t\":{sent_at_ns},\"pad\":\"{pad}\"}}}}").into_bytes()
}

/// Finds `"key":<integer>` in a JSON text without parsing all of it (the load tool must not be
/// the bottleneck it measures).
fn int_field(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS")?
        .parse()?;
    Ok(kb * 1024)
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s with 3 significant digits.
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

async fn run_publish(
    target: &Target,
    connections: usize,
    duration: Duration,
    payload_bytes: usize,
) -> anyhow::Result<Value> {
    let fixture = Arc::new(Fixture::create(target).await?);
    let base = Instant::now();
    let deadline = base + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let fixture = fixture.clone();
        tasks.push(tokio::spawn(async move {
            // One client per task: one keep-alive connection each.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let url = fixture.publish_url();
            let mut latencies = histogram();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let started = Instant::now();
                let body = payload(base.elapsed().as_nanos() as u64, payload_bytes);
                let resp = client
                    .post(&url)
                    .header("X-API-KEY", &fixture.api_key)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match resp {
                    Ok(resp) if resp.status() == 201 => {
                        let _ = resp.bytes().await;
                        latencies.saturating_record(started.elapsed().as_nanos() as u64);
                    }
                    _ => errors += 1,
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = histogram();
    let mut errors = 0;
    for task in tasks {
        let (h, e) = task.await??;
        latencies.add(&h)?;
        errors += e;
    }
    let elapsed = base.elapsed().as_secs_f64();
    let accepted = latencies.len();
    println!(
        "publish: {connections} keep-alive connections, {payload_bytes}-byte payloads, {elapsed:.1} s"
    );
    println!(
        "  accepted      {accepted:>12}   ({:.0} messages/s)",
        accepted as f64 / elapsed
    );
    println!("  errors        {errors:>12}");
    println!(
        "  latency ms    p50 {:.2}   p99 {:.2}   max {:.2}",
        ms(latencies.value_at_quantile(0.5)),
        ms(latencies.value_at_quantile(0.99)),
        ms(latencies.max())
    );
    Ok(json!({
        "scenario": "publish", "connections": connections, "seconds": elapsed,
        "accepted": accepted, "accepted_per_s": accepted as f64 / elapsed, "errors": errors,
        "p50_ms": ms(latencies.value_at_quantile(0.5)),
        "p99_ms": ms(latencies.value_at_quantile(0.99)), "max_ms": ms(latencies.max()),
    }))
}

/// What one fan-out subscriber saw.
struct Seen {
    latencies: Histogram<u64>,
    received: u64,
    duplicated: u64,
}

async fn run_fanout(
    target: &Target,
    subscribers: usize,
    rate: u32,
    duration: Duration,
    payload_bytes: usize,
) -> anyhow::Result<Value> {
    let fixture = Arc::new(Fixture::create(target).await?);
    let base = Instant::now();
    // Connect everyone first; publishing starts once all are subscribed.
    let connected = Arc::new(AtomicU64::new(0));
    // The channel is new, so its ids are exactly 1..=total.
    let total = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    let limit = Arc::new(Semaphore::new(200));
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        let (fixture, connected, limit) = (fixture.clone(), connected.clone(), limit.clone());
        subs.push(tokio::spawn(async move {
            let permit = limit.acquire_owned().await?;
            let (mut socket, _) = tokio_tungstenite::connect_async(fixture.stream_url()).await?;
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            let mut seen = Seen {
                latencies: histogram(),
                received: 0,
                duplicated: 0,
            };
            let mut previous: Option<u64> = None;
            while let Some(frame) = socket.next().await {
                let Message::Text(text) = frame? else {
                    continue;
                };
                let now = base.elapsed().as_nanos() as u64;
                let (Some(id), Some(sent)) =
                    (int_field(&text, "\"id\":"), int_field(&text, "\"t\":"))
                else {
                    bail!("unexpected frame: {text}");
                };
                seen.received += 1;
                seen.latencies.saturating_record(now.saturating_sub(sent));
                if previous.is_some_and(|p| id <= p) {
                    seen.duplicated += 1;
                }
                previous = Some(previous.map_or(id, |p| p.max(id)));
                if previous == Some(total) {
                    break;
                }
            }
            anyhow::Ok(seen)
        }));
    }
    let connect_deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::Relaxed) < subscribers as u64 {
        if Instant::now() > connect_deadline {
            bail!(
                "only {} of {subscribers} subscribers connected",
                connected.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("fanout: {subscribers} subscribers connected; publishing {rate}/s for {duration:?}");

    let client = reqwest::Client::new();
    let url = fixture.publish_url();
    let in_flight = Arc::new(Semaphore::new(256));
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let publish_started = Instant::now();
    let mut publishes = Vec::with_capacity(total as usize);
    for _ in 0..total {
        ticker.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let request = client
            .post(&url)
            .header("X-API-KEY", &fixture.api_key)
            .header("Content-Type", "application/json")
            .body(payload(base.elapsed().as_nanos() as u64, payload_bytes));
        publishes.push(tokio::spawn(async move {
            let resp = request.send().await?;
            drop(permit);
            if resp.status() != 201 {
                bail!("publish answered {}", resp.status());
            }
            let _ = resp.bytes().await;
            anyhow::Ok(())
        }));
    }
    for publish in publishes {
        publish.await??;
    }
    let publish_seconds = publish_started.elapsed().as_secs_f64();

    let mut latencies = histogram();
    let (mut received, mut lost, mut duplicated, mut incomplete) = (0, 0, 0, 0);
    for sub in subs {
        let Ok(joined) = tokio::time::timeout(Duration::from_secs(30), sub).await else {
            incomplete += 1;
            lost += total;
            continue;
        };
        let seen = joined??;
        latencies.add(&seen.latencies)?;
        received += seen.received;
        duplicated += seen.duplicated;
        lost += total.saturating_sub(seen.received - seen.duplicated);
    }
    let expected = total * subscribers as u64;
    let delivered_per_s = received as f64 / publish_seconds;
    println!(
        "fanout: {subscribers} WebSocket subscribers, {rate} messages/s for {publish_seconds:.1} s, {payload_bytes}-byte payloads"
    );
    println!("  published     {total:>12}");
    println!("  deliveries    {received:>12} of {expected}   ({delivered_per_s:.0}/s)");
    println!(
        "  lost          {lost:>12}   duplicated {duplicated}   incomplete subscribers {incomplete}"
    );
    println!(
        "  end-to-end ms p50 {:.2}   p99 {:.2}   max {:.2}",
        ms(latencies.value_at_quantile(0.5)),
        ms(latencies.value_at_quantile(0.99)),
        ms(latencies.max())
    );
    Ok(json!({
        "scenario": "fanout", "subscribers": subscribers, "rate": rate,
        "published": total, "deliveries": received, "expected": expected,
        "delivered_per_s": delivered_per_s, "lost": lost, "duplicated": duplicated,
        "incomplete": incomplete,
        "p50_ms": ms(latencies.value_at_quantile(0.5)),
        "p99_ms": ms(latencies.value_at_quantile(0.99)), "max_ms": ms(latencies.max()),
    }))
}

async fn run_idle(target: &Target, connections: usize, hold: Duration) -> anyhow::Result<Value> {
    let pid = target
        .server_pid
        .context("idle needs --server-pid to read the server's memory")?;
    let fixture = Arc::new(Fixture::create(target).await?);
    let before = rss_bytes(pid)?;
    let limit = Arc::new(Semaphore::new(200));
    let mut opens = Vec::with_capacity(connections);
    let started = Instant::now();
    for _ in 0..connections {
        let (fixture, limit) = (fixture.clone(), limit.clone());
        opens.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let (socket, _) = tokio_tungstenite::connect_async(fixture.stream_url()).await?;
            anyhow::Ok(socket)
        }));
    }
    let mut sockets = Vec::with_capacity(connections);
    for open in opens {
        sockets.push(open.await??);
    }
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let after = rss_bytes(pid)?;
    let growth = after.saturating_sub(before);
    let per_connection = growth as f64 / connections as f64;
    println!("idle: {connections} WebSocket subscriptions opened in {open_seconds:.1} s");
    println!(
        "  server RSS    before {:.1} MB   after {:.1} MB   growth {:.1} MB",
        before as f64 / 1e6,
        after as f64 / 1e6,
        growth as f64 / 1e6
    );
    println!("  per connection {per_connection:.0} bytes");
    drop(sockets);
    Ok(json!({
        "scenario": "idle", "connections": connections, "rss_before": before,
        "rss_after": after, "growth_bytes": growth, "bytes_per_connection": per_connection,
    }))
}

async fn run_longpoll(
    target: &Target,
    polls: usize,
    rooms: usize,
    settle: Duration,
) -> anyhow::Result<Value> {
    let pid = target
        .server_pid
        .context("longpoll needs --server-pid to read the server's memory")?;
    let fixture = Arc::new(Fixture::create(target).await?);
    let base = Instant::now();
    let before = rss_bytes(pid)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let poll_url = fixture.channel_url("rooms", "poll");
    let mut waiting = Vec::with_capacity(polls);
    for n in 0..polls {
        let request = client
            .get(&poll_url)
            .query(&[("room", format!("r{}", n % rooms))])
            .header("X-API-KEY", &fixture.api_key)
            .send();
        waiting.push(tokio::spawn(async move {
            let resp = request.await?;
            if resp.status() != 200 {
                bail!("poll answered {}", resp.status());
            }
            let text = resp.text().await?;
            let now = base.elapsed().as_nanos() as u64;
            let sent = int_field(&text, "\"t\":").context("no send time in message")?;
            anyhow::Ok(now.saturating_sub(sent))
        }));
    }
    tokio::time::sleep(settle).await;
    let during = rss_bytes(pid)?;
    let per_poll = during.saturating_sub(before) as f64 / polls as f64;
    eprintln!("longpoll: {polls} polls waiting; waking them with one publish per room");
    let publish_url = fixture.channel_url("rooms", "publish");
    for room in 0..rooms {
        let body = format!(
            "{{\"room\":\"r{room}\",\"payload\":{{\"t\":{}}}}}",
            base.elapsed().as_nanos()
        );
        let resp = client
            .post(&publish_url)
            .header("X-API-KEY", &fixture.api_key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        if resp.status() != 201 {
            bail!("publish answered {}", resp.status());
        }
    }
    let mut latencies = histogram();
    let mut failed = 0u64;
    for poll in waiting {
        match tokio::time::timeout(Duration::from_secs(30), poll).await {
            Ok(Ok(Ok(latency))) => latencies.saturating_record(latency),
            _ => failed += 1,
        }
    }
    println!("longpoll: {polls} pending polls over {rooms} rooms");
    println!(
        "  server RSS    before {:.1} MB   while waiting {:.1} MB   per poll {per_poll:.0} bytes",
        before as f64 / 1e6,
        during as f64 / 1e6
    );
    println!(
        "  wake-up ms    p50 {:.2}   p99 {:.2}   max {:.2}   failed {failed}",
        ms(latencies.value_at_quantile(0.5)),
        ms(latencies.value_at_quantile(0.99)),
        ms(latencies.max())
    );
    Ok(json!({
        "scenario": "longpoll", "polls": polls, "rooms": rooms, "rss_before": before,
        "rss_waiting": during, "bytes_per_poll": per_poll, "failed": failed,
        "p50_ms": ms(latencies.value_at_quantile(0.5)),
        "p99_ms": ms(latencies.value_at_quantile(0.99)), "max_ms": ms(latencies.max()),
    }))
}

async fn run_replay(target: &Target, messages: u64, payload_bytes: usize) -> anyhow::Result<Value> {
    let fixture = Arc::new(Fixture::create(target).await?);
    eprintln!("replay: storing {messages} messages");
    let stored = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..32 {
        let (fixture, stored) = (fixture.clone(), stored.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let url = fixture.publish_url();
            while stored.fetch_add(1, Ordering::Relaxed) < messages {
                let resp = client
                    .post(&url)
                    .header("X-API-KEY", &fixture.api_key)
                    .header("Content-Type", "application/json")
                    .body(payload(0, payload_bytes))
                    .send()
                    .await?;
                if resp.status() != 201 {
                    bail!("publish answered {}", resp.status());
                }
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let started = Instant::now();
    let url = format!("{}&last_id=0", fixture.stream_url());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let mut received = 0u64;
    let mut previous = 0u64;
    let mut out_of_order = 0u64;
    while received < messages {
        let Some(frame) = tokio::time::timeout(Duration::from_secs(30), socket.next()).await?
        else {
            break;
        };
        let Message::Text(text) = frame? else {
            continue;
        };
        let id = int_field(&text, "\"id\":").context("frame without id")?;
        if id != previous + 1 {
            out_of_order += 1;
        }
        previous = id;
        received += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("replay: one WebSocket subscriber from last_id=0 behind {messages} stored messages");
    println!(
        "  received      {received:>12} in {seconds:.2} s   ({:.0} messages/s)   gaps or repeats {out_of_order}",
        received as f64 / seconds
    );
    Ok(json!({
        "scenario": "replay", "messages": messages, "received": received, "seconds": seconds,
        "messages_per_s": received as f64 / seconds, "gaps_or_repeats": out_of_order,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Publish {
            connections,
            duration,
            payload_bytes,
        } => run_publish(&cli.target, connections, duration, payload_bytes).await?,
        Scenario::Fanout {
            subscribers,
            rate,
            duration,
            payload_bytes,
        } => run_fanout(&cli.target, subscribers, rate, duration, payload_bytes).await?,
        Scenario::Idle { connections, hold } => run_idle(&cli.target, connections, hold).await?,
        Scenario::Longpoll {
            polls,
            rooms,
            settle,
        } => run_longpoll(&cli.target, polls, rooms, settle).await?,
        Scenario::Replay {
            messages,
            payload_bytes,
        } => run_replay(&cli.target, messages, payload_bytes).await?,
    };
    println!("{result}");
    Ok(())
}
