//! herald-bench: drives a running Herald (or, for comparison, a Pusher-protocol server such as
//! Sockudo) over real sockets and reports throughput, latency and memory. Every scenario is
//! bounded by `--duration` and counts, talks to loopback only, and prints a human table followed
//! by one JSON line.
//!
//! Latency is end to end: the publisher writes its send time (nanoseconds on this process's
//! monotonic clock) into the payload, and each subscriber subtracts it on arrival.

mod audience;
mod objects;
mod server;
mod soak;

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

use audience::Audience;
use server::{Fixture, Herald, Protocol, int_field, payload};

#[derive(Parser)]
#[command(
    name = "herald-bench",
    about = "Load scenarios against a running Herald or Pusher-protocol server"
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
    /// The protocol the server speaks. `pusher` (e.g. Sockudo) runs publish, fanout and idle.
    #[arg(long, global = true, value_enum, default_value_t = Protocol::Herald)]
    protocol: Protocol,
    /// Herald: account key of the server (its first-start key).
    #[arg(long, global = true, env = "HERALD_BENCH_KEY", default_value = "")]
    key: String,
    /// Pusher: the app id.
    #[arg(
        long,
        global = true,
        env = "HERALD_BENCH_APP_ID",
        default_value = "herald-bench"
    )]
    app_id: String,
    /// Pusher: the app key.
    #[arg(
        long,
        global = true,
        env = "HERALD_BENCH_APP_KEY",
        default_value = "herald-bench-key"
    )]
    app_key: String,
    /// Pusher: the app secret (signs HTTP API requests).
    #[arg(
        long,
        global = true,
        env = "HERALD_BENCH_APP_SECRET",
        default_value = "herald-bench-secret"
    )]
    app_secret: String,
    /// The server's process id, to read its memory (RSS) from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Herald cluster runs: publish to these nodes instead (comma-separated http:// bases,
    /// taken in turn per publish); subscribers stay on `--url`.
    #[arg(long, global = true, value_delimiter = ',')]
    publish_url: Vec<String>,
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
    /// Data objects: N keep-alive connections creating or updating objects as fast as they
    /// can, with or without change messages; server CPU time per write.
    ObjectsWrite(objects::WriteArgs),
    /// S WebSocket subscribers of one room; one object updated R times/s; its change messages.
    ObjectsFanout(objects::FanoutArgs),
    /// Creates N objects, then times list queries (range, equality, order, count) over them.
    ObjectsQuery(objects::QueryArgs),
    /// The database's plan of the objects-query lists (no server; SQLite only once it stopped).
    ObjectsExplain(objects::ExplainArgs),
    /// Minutes of mixed load (publishers; long-poll, WebSocket and SSE subscribers that drop and
    /// resume; wrong log-ins; slowloris sockets; key resets) with the server's memory and
    /// descriptors sampled; fails if a subscriber lost, repeated or reordered a message or a
    /// reset key kept working. Run by bench/soak.sh, not in CI.
    Soak(soak::SoakArgs),
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

/// Long-polls, replay from a stored position and data objects are Herald features a Pusher
/// server lacks.
fn herald_only(target: &Target, scenario: &str) -> anyhow::Result<()> {
    if target.protocol != Protocol::Herald {
        bail!(
            "{scenario} runs against Herald only (a Pusher server has no long-polls, history or data objects)"
        );
    }
    Ok(())
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
            // One client per task: one keep-alive connection each. A server that answers
            // `Connection: close` (Sockudo does on every API response) makes the client open a
            // new connection for the next request; those answers are counted.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut latencies = histogram();
            let (mut errors, mut closed) = (0u64, 0u64);
            let mut first_error = None;
            let mut number = 0;
            while Instant::now() < deadline {
                let started = Instant::now();
                number += 1;
                let body = payload(base.elapsed().as_nanos() as u64, number, payload_bytes);
                match fixture.publish(&client, &body).send().await {
                    Ok(resp) if fixture.accepted(resp.status()) => {
                        if resp
                            .headers()
                            .get(reqwest::header::CONNECTION)
                            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                        {
                            closed += 1;
                        }
                        let _ = resp.bytes().await;
                        latencies.saturating_record(started.elapsed().as_nanos() as u64);
                    }
                    Ok(resp) => {
                        errors += 1;
                        let status = resp.status();
                        first_error.get_or_insert(format!("{status}: {}", resp.text().await?));
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{e:#}"));
                    }
                }
            }
            anyhow::Ok((latencies, errors, closed, first_error))
        }));
    }
    let mut latencies = histogram();
    let (mut errors, mut closed) = (0, 0);
    let mut first_error = None;
    for task in tasks {
        let (h, e, c, first) = task.await??;
        latencies.add(&h)?;
        errors += e;
        closed += c;
        first_error = first_error.or(first);
    }
    let elapsed = base.elapsed().as_secs_f64();
    let accepted = latencies.len();
    let protocol = target.protocol.name();
    println!(
        "publish ({protocol}): {connections} keep-alive connections, {payload_bytes}-byte payloads, {elapsed:.1} s"
    );
    println!(
        "  accepted      {accepted:>12}   ({:.0} messages/s)",
        accepted as f64 / elapsed
    );
    println!("  errors        {errors:>12}");
    if let Some(first) = &first_error {
        println!("  first error   {first}");
    }
    if closed > 0 {
        println!(
            "  server closed {closed:>12} connections after their answer (the client reconnected)"
        );
    }
    println!(
        "  latency ms    p50 {:.2}   p99 {:.2}   max {:.2}",
        ms(latencies.value_at_quantile(0.5)),
        ms(latencies.value_at_quantile(0.99)),
        ms(latencies.max())
    );
    Ok(json!({
        "scenario": "publish", "protocol": protocol, "connections": connections,
        "payload_bytes": payload_bytes, "seconds": elapsed,
        "accepted": accepted, "accepted_per_s": accepted as f64 / elapsed, "errors": errors,
        "server_closed_connections": closed,
        "p50_ms": ms(latencies.value_at_quantile(0.5)),
        "p99_ms": ms(latencies.value_at_quantile(0.99)), "max_ms": ms(latencies.max()),
    }))
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
    // Messages are numbered 1..=total: Herald's ids on a new channel, and the payload's
    // sequence number for Pusher (which has no ids).
    let total = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    // Connect and subscribe everyone first; publishing starts once all are subscribed.
    let audience = Audience::open(fixture.clone(), subscribers, total, base).await?;
    let protocol = target.protocol.name();
    eprintln!(
        "fanout ({protocol}): {subscribers} subscribers connected; publishing {rate}/s for {duration:?}"
    );

    let client = reqwest::Client::new();
    let in_flight = Arc::new(Semaphore::new(256));
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let publish_started = Instant::now();
    let mut publishes = Vec::with_capacity(total as usize);
    for number in 1..=total {
        ticker.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let body = payload(base.elapsed().as_nanos() as u64, number, payload_bytes);
        let request = fixture.publish(&client, &body);
        let fixture = fixture.clone();
        publishes.push(tokio::spawn(async move {
            let resp = request.send().await?;
            drop(permit);
            if !fixture.accepted(resp.status()) {
                bail!("publish answered {}: {}", resp.status(), resp.text().await?);
            }
            let _ = resp.bytes().await;
            anyhow::Ok(())
        }));
    }
    for publish in publishes {
        publish.await??;
    }
    let publish_seconds = publish_started.elapsed().as_secs_f64();
    let delivered = audience.finish().await?;
    println!(
        "fanout ({protocol}): {subscribers} WebSocket subscribers, {rate} messages/s for {publish_seconds:.1} s, {payload_bytes}-byte payloads"
    );
    println!("  published     {total:>12}");
    delivered.print(publish_seconds);
    let mut summary = json!({
        "scenario": "fanout", "protocol": protocol, "subscribers": subscribers, "rate": rate,
        "payload_bytes": payload_bytes, "published": total,
    });
    delivered.add_to(&mut summary, publish_seconds);
    Ok(summary)
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
            fixture.subscribe().await
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
    let protocol = target.protocol.name();
    println!(
        "idle ({protocol}): {connections} WebSocket subscriptions opened in {open_seconds:.1} s"
    );
    println!(
        "  server RSS    before {:.1} MB   after {:.1} MB   growth {:.1} MB",
        before as f64 / 1e6,
        after as f64 / 1e6,
        growth as f64 / 1e6
    );
    println!("  per connection {per_connection:.0} bytes");
    drop(sockets);
    Ok(json!({
        "scenario": "idle", "protocol": protocol, "connections": connections,
        "open_seconds": open_seconds, "rss_before": before,
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
    herald_only(target, "longpoll")?;
    let fixture = Arc::new(Herald::create(target).await?);
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
            // From the start of the room: a poll that reaches the server only after the wake-up
            // publish (a slow debug server, a busy machine) finds the message in storage instead
            // of waiting for one that never comes.
            .query(&[("room", format!("r{}", n % rooms)), ("last_id", "0".into())])
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
        "scenario": "longpoll", "protocol": "herald", "polls": polls, "rooms": rooms, "rss_before": before,
        "rss_waiting": during, "bytes_per_poll": per_poll, "failed": failed,
        "p50_ms": ms(latencies.value_at_quantile(0.5)),
        "p99_ms": ms(latencies.value_at_quantile(0.99)), "max_ms": ms(latencies.max()),
    }))
}

async fn run_replay(target: &Target, messages: u64, payload_bytes: usize) -> anyhow::Result<Value> {
    herald_only(target, "replay")?;
    let fixture = Arc::new(Herald::create(target).await?);
    eprintln!("replay: storing {messages} messages");
    let stored = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..32 {
        let (fixture, stored) = (fixture.clone(), stored.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let number = stored.fetch_add(1, Ordering::Relaxed) + 1;
                if number > messages {
                    break;
                }
                let resp = fixture
                    .publish(&client, &payload(0, number, payload_bytes))
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
        "scenario": "replay", "protocol": "herald", "messages": messages, "received": received, "seconds": seconds,
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
        Scenario::ObjectsWrite(args) => {
            herald_only(&cli.target, "objects-write")?;
            objects::run_write(&cli.target, &args).await?
        }
        Scenario::ObjectsFanout(args) => {
            herald_only(&cli.target, "objects-fanout")?;
            objects::run_fanout(&cli.target, &args).await?
        }
        Scenario::ObjectsQuery(args) => {
            herald_only(&cli.target, "objects-query")?;
            objects::run_query(&cli.target, &args).await?
        }
        Scenario::ObjectsExplain(args) => objects::run_explain(&args).await?,
        Scenario::Soak(args) => {
            herald_only(&cli.target, "soak")?;
            soak::run(&cli.target, &args).await?
        }
    };
    println!("{result}");
    if result["passed"] == false {
        bail!("the run failed its checks (see above)");
    }
    Ok(())
}
