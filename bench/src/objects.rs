//! Data-object scenarios (docs/api.md §10): object writes with and without their change messages,
//! fan-out of change messages to WebSocket subscribers, list queries over a large class, and
//! the database's plan of those queries.
//!
//! Every scenario works on the class `bench_objects` (`n` integer with filter and order
//! indexes, `title` string with a filter index, `sent` string). Objects with a channel publish
//! to the fixture's `rooms` channel, room `objects`. Classes are created with the account key
//! (API keys may only read classes); objects are written with the fixture's trusted API key,
//! except in `objects-query`, which may reuse an instance of an earlier run and so uses the
//! account key throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::audience::{Audience, Feed};
use crate::server::{self, Frame, Herald, int_field, loopback_base};
use crate::{Target, histogram, ms, seconds};

/// The class every object scenario uses.
pub const CLASS: &str = "bench_objects";
/// The fixture's `separate_rooms` channel, and the room change messages go to.
const CHANNEL: &str = "rooms";
const ROOM: &str = "objects";

/// `n` is drawn from 0..N_RANGE; `title` from TITLES values `t0`..`t999`.
const N_RANGE: u64 = 1_000_000;
const TITLES: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Each request creates an object.
    Create,
    /// Each connection creates one object of its own, then `_increment`s its `n`.
    Update,
}

#[derive(Args)]
pub struct WriteArgs {
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
    #[arg(long, value_enum, default_value_t = Mode::Create)]
    mode: Mode,
    /// Objects without a channel: no change message is stored or delivered.
    #[arg(long)]
    no_channel: bool,
}

#[derive(Args)]
pub struct FanoutArgs {
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    #[arg(long, default_value = "10", value_parser = seconds)]
    duration: Duration,
}

#[derive(Args)]
pub struct QueryArgs {
    /// Objects to create (no channel; `n` random in 0..1 000 000, `title` one of t0..t999).
    #[arg(long, default_value_t = 100_000)]
    objects: u64,
    /// Connections creating the objects.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Queries of each kind.
    #[arg(long, default_value_t = 200)]
    queries: u64,
    /// Connections running the queries of a kind (1: latency is the server's time per query,
    /// without queueing).
    #[arg(long, default_value_t = 1)]
    query_connections: usize,
    /// The instance to use (created when missing); default a fresh one. Give it to
    /// objects-explain, and to a later run with --reuse.
    #[arg(long)]
    instance: Option<String>,
    /// Skip creating objects when the class already holds some.
    #[arg(long)]
    reuse: bool,
}

#[derive(Args)]
pub struct ExplainArgs {
    /// The database the server used: sqlite://<path> (the server must have stopped: one
    /// process per file) or postgres://...
    #[arg(long)]
    database_url: String,
    /// The instance holding the bench_objects class (objects-query --instance).
    #[arg(long)]
    instance: String,
}

/// The list queries objects-query runs and objects-explain explains.
struct QueryKind {
    name: &'static str,
    label: &'static str,
    query: Option<&'static str>,
    order_by: Option<&'static str>,
    include_count: bool,
}

const KINDS: [QueryKind; 4] = [
    QueryKind {
        name: "range_desc",
        label: "(a) n >= 990000, order_by=-n",
        query: Some(r#"{"n":{"_gte":990000}}"#),
        order_by: Some("-n"),
        include_count: false,
    },
    QueryKind {
        name: "title_eq",
        label: "(b) title = t42, id order",
        query: Some(r#"{"title":{"_eq":"t42"}}"#),
        order_by: None,
        include_count: false,
    },
    QueryKind {
        name: "order_n",
        label: "(c) order_by=n, no filter",
        query: None,
        order_by: Some("n"),
        include_count: false,
    },
    QueryKind {
        name: "range_desc_count",
        label: "(d) (a) + include_count=true",
        query: Some(r#"{"n":{"_gte":990000}}"#),
        order_by: Some("-n"),
        include_count: true,
    },
];

/// Where objects are written: the objects URL of the bench class in one instance, and a key.
struct Objects {
    /// `.../classes/bench_objects/objects/`
    url: String,
    key: String,
}

impl Objects {
    fn request(
        &self,
        client: &reqwest::Client,
        method: Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        client.request(method, url).header("X-API-KEY", &self.key)
    }

    /// Creates an object (`body` is the JSON text) and returns its id.
    async fn create(&self, client: &reqwest::Client, body: String) -> anyhow::Result<u64> {
        let resp = self
            .request(client, Method::POST, &self.url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            bail!(
                "creating an object answered {}: {}",
                resp.status(),
                resp.text().await?
            );
        }
        let text = resp.text().await?;
        int_field(&text, "\"id\":").with_context(|| format!("no id in {text}"))
    }
}

fn instance_url(http: &str, instance: &str) -> String {
    format!("{http}/v1.1/instances/{instance}")
}

/// Creates the bench class in `instance` (account key: API keys may not create classes).
async fn create_class(client: &reqwest::Client, instance: &str, key: &str) -> anyhow::Result<()> {
    let schema = json!([
        {"name": "n", "type": "integer", "filter_index": true, "order_index": true},
        {"name": "title", "type": "string", "filter_index": true},
        {"name": "sent", "type": "string"},
    ]);
    let resp = client
        .post(format!("{instance}/classes/"))
        .header("X-API-KEY", key)
        .json(&json!({"name": CLASS, "schema": schema}))
        .send()
        .await?;
    if resp.status() != StatusCode::CREATED {
        bail!(
            "creating the {CLASS} class answered {}: {}",
            resp.status(),
            resp.text().await?
        );
    }
    Ok(())
}

/// A fresh fixture (instance, trusted key, channels) with the bench class.
async fn fixture(target: &Target) -> anyhow::Result<(Herald, Objects)> {
    let herald = Herald::create(target).await?;
    let instance = instance_url(&herald.http, herald.instance());
    create_class(&reqwest::Client::new(), &instance, &target.key).await?;
    let objects = Objects {
        url: format!("{instance}/classes/{CLASS}/objects/"),
        key: herald.api_key.clone(),
    };
    Ok((herald, objects))
}

/// The server's CPU time so far (user + system), in seconds, from /proc/<pid>/stat.
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    Ok(cpu_ticks(&stat)? as f64 / clock_ticks())
}

/// utime + stime of a /proc/<pid>/stat line, in clock ticks.
fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name is in parentheses and may hold spaces: fields are counted after it.
    // utime and stime are fields 14 and 15, so the 12th and 13th after the name.
    let rest = &stat[stat.rfind(')').context("bad /proc stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc stat")?.parse()?)
    };
    Ok(ticks(11)? + ticks(12)?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|t: &f64| *t > 0.0)
        .unwrap_or(100.0)
}

/// A well-mixed 64-bit value of `x` (SplitMix64): object `i`'s field values, so that a class
/// made by this tool holds the same values whatever order the creators ran in.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` and `title` number of object `i` (1-based).
fn values(i: u64) -> (u64, u64) {
    let r = mix(i);
    (r % N_RANGE, (r >> 32) % TITLES)
}

fn quantiles(h: &Histogram<u64>) -> (f64, f64, f64) {
    (
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    )
}

pub async fn run_write(target: &Target, args: &WriteArgs) -> anyhow::Result<Value> {
    let (_herald, objects) = fixture(target).await?;
    let objects = Arc::new(objects);
    let channel = if args.no_channel {
        String::new()
    } else {
        format!(",\"channel\":\"{CHANNEL}\",\"channel_room\":\"{ROOM}\"")
    };
    // Update mode: every connection's object exists before the clock starts.
    let mut targets = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        targets.push(match args.mode {
            Mode::Create => None,
            Mode::Update => {
                let client = reqwest::Client::new();
                let body = format!("{{\"n\":0,\"title\":\"w{i}\"{channel}}}");
                Some(objects.create(&client, body).await?)
            }
        });
    }
    let cpu_before = target.server_pid.map(cpu_seconds).transpose()?;
    let base = Instant::now();
    let deadline = base + args.duration;
    let mut tasks = Vec::new();
    for (connection, id) in targets.into_iter().enumerate() {
        let (objects, channel) = (objects.clone(), channel.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut latencies = histogram();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut number = 0u64;
            let url = match id {
                Some(id) => format!("{}{id}/", objects.url),
                None => objects.url.clone(),
            };
            let (method, expected) = match id {
                Some(_) => (Method::PATCH, StatusCode::OK),
                None => (Method::POST, StatusCode::CREATED),
            };
            while Instant::now() < deadline {
                number += 1;
                let body = match id {
                    Some(_) => r#"{"n":{"_increment":1}}"#.to_owned(),
                    None => {
                        let (n, title) = values(((connection as u64) << 32) + number);
                        format!("{{\"n\":{n},\"title\":\"t{title}\"{channel}}}")
                    }
                };
                let started = Instant::now();
                let sent = objects
                    .request(&client, method.clone(), &url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == expected => {
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
            anyhow::Ok((latencies, errors, first_error))
        }));
    }
    let mut latencies = histogram();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let (h, e, first) = task.await??;
        latencies.add(&h)?;
        errors += e;
        first_error = first_error.or(first);
    }
    let elapsed = base.elapsed().as_secs_f64();
    let cpu = match (cpu_before, target.server_pid) {
        (Some(before), Some(pid)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    let writes = latencies.len();
    let per_s = writes as f64 / elapsed;
    let cpu_us_per_write = cpu.filter(|_| writes > 0).map(|c| c * 1e6 / writes as f64);
    let (p50, p99, max) = quantiles(&latencies);
    let (connections, mode) = (args.connections, args.mode);
    let mode = format!("{mode:?}").to_lowercase();
    let with_channel = !args.no_channel;
    println!(
        "objects-write: {connections} keep-alive connections, mode {mode}, {} change messages, {elapsed:.1} s",
        if with_channel { "with" } else { "no" }
    );
    println!("  writes        {writes:>12}   ({per_s:.0} writes/s)");
    println!("  errors        {errors:>12}");
    if let Some(first) = &first_error {
        println!("  first error   {first}");
    }
    println!("  latency ms    p50 {p50:.2}   p99 {p99:.2}   max {max:.2}");
    match (cpu, cpu_us_per_write) {
        (Some(cpu), Some(per_write)) => println!(
            "  server CPU    {cpu:.2} s ({:.0} % of one core)   {per_write:.1} µs per write",
            cpu / elapsed * 100.0
        ),
        _ => println!("  server CPU    unknown (give --server-pid)"),
    }
    Ok(json!({
        "scenario": "objects-write", "protocol": "herald", "connections": connections,
        "mode": mode, "channel": with_channel, "seconds": elapsed, "writes": writes,
        "writes_per_s": per_s, "errors": errors, "p50_ms": p50, "p99_ms": p99, "max_ms": max,
        "server_cpu_s": cpu, "server_cpu_us_per_write": cpu_us_per_write,
    }))
}

/// Change messages of the bench room, numbered by id after the object's create message.
struct Changes {
    url: String,
    /// The create message's id: update k has id `first + k`.
    first: u64,
}

impl Feed for Changes {
    async fn subscribe(&self) -> anyhow::Result<server::Ws> {
        Ok(tokio_tungstenite::connect_async(&self.url).await?.0)
    }

    fn read(&self, text: &str) -> Frame {
        // The message's own id comes first; the payload's (the object's) id later.
        match (int_field(text, "\"id\":"), int_field(text, "\"sent\":\"")) {
            (Some(id), Some(sent_ns))
                if id > self.first && text.contains("\"action\":\"update\"") =>
            {
                Frame::Message {
                    number: id - self.first,
                    sent_ns,
                }
            }
            _ => Frame::Unexpected,
        }
    }
}

/// The id of the newest message of the bench room.
async fn newest_message(herald: &Herald) -> anyhow::Result<u64> {
    let resp = reqwest::Client::new()
        .get(herald.channel_url(CHANNEL, "history"))
        .query(&[("room", ROOM), ("page_size", "1"), ("ordering", "desc")])
        .header("X-API-KEY", &herald.api_key)
        .send()
        .await?;
    if resp.status() != StatusCode::OK {
        bail!("history answered {}: {}", resp.status(), resp.text().await?);
    }
    let page: Value = resp.json().await?;
    page["objects"][0]["id"]
        .as_u64()
        .context("the object's create message is not in the room's history")
}

pub async fn run_fanout(target: &Target, args: &FanoutArgs) -> anyhow::Result<Value> {
    let (herald, objects) = fixture(target).await?;
    let objects = Arc::new(objects);
    let client = reqwest::Client::new();
    let body = format!(
        "{{\"n\":0,\"title\":\"fanout\",\"channel\":\"{CHANNEL}\",\"channel_room\":\"{ROOM}\"}}"
    );
    let id = objects.create(&client, body).await?;
    let first = newest_message(&herald).await?;
    let feed = Arc::new(Changes {
        url: herald.room_stream_url(CHANNEL, ROOM, Some(first)),
        first,
    });
    let base = Instant::now();
    let (subscribers, rate, duration) = (args.subscribers, args.rate, args.duration);
    let total = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    let audience = Audience::open(feed, subscribers, total, base).await?;
    eprintln!(
        "objects-fanout: {subscribers} subscribers connected; updating object {id} {rate}/s for {duration:?}"
    );

    let url = Arc::new(format!("{}{id}/", objects.url));
    let in_flight = Arc::new(Semaphore::new(256));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut updates = Vec::with_capacity(total as usize);
    // Each update must change `sent`, or it publishes nothing (docs/api.md §10.4).
    let mut last_sent = 0;
    for _ in 0..total {
        ticker.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let sent = (base.elapsed().as_nanos() as u64).max(last_sent + 1);
        last_sent = sent;
        let request = objects
            .request(&client, Method::PATCH, &url)
            .header("Content-Type", "application/json")
            .body(format!("{{\"sent\":\"{sent}\"}}"));
        updates.push(tokio::spawn(async move {
            let at = Instant::now();
            let resp = request.send().await?;
            drop(permit);
            if resp.status() != StatusCode::OK {
                bail!("update answered {}: {}", resp.status(), resp.text().await?);
            }
            let _ = resp.bytes().await;
            anyhow::Ok(at.elapsed().as_nanos() as u64)
        }));
    }
    let mut update_latencies = histogram();
    for update in updates {
        update_latencies.saturating_record(update.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let delivered = audience.finish().await?;
    let (p50, p99, max) = quantiles(&update_latencies);
    println!(
        "objects-fanout: {subscribers} WebSocket subscribers of one room, one object updated {rate}/s for {seconds:.1} s"
    );
    println!(
        "  updates       {total:>12}   ({:.0}/s achieved)   update ms p50 {p50:.2}   p99 {p99:.2}   max {max:.2}",
        total as f64 / seconds
    );
    delivered.print(seconds);
    let mut summary = json!({
        "scenario": "objects-fanout", "protocol": "herald", "subscribers": subscribers,
        "rate": rate, "published": total, "updates_per_s": total as f64 / seconds,
        "update_p50_ms": p50, "update_p99_ms": p99, "update_max_ms": max,
    });
    delivered.add_to(&mut summary, seconds);
    Ok(summary)
}

/// Makes sure `instance` exists (account key).
async fn ensure_instance(
    client: &reqwest::Client,
    http: &str,
    name: &str,
    key: &str,
) -> anyhow::Result<()> {
    let resp = client
        .get(format!("{}/", instance_url(http, name)))
        .header("X-API-KEY", key)
        .send()
        .await?;
    match resp.status() {
        StatusCode::OK => return Ok(()),
        StatusCode::NOT_FOUND => {}
        status => bail!(
            "reading instance {name} answered {status}: {}",
            resp.text().await?
        ),
    }
    let resp = client
        .post(format!("{http}/v1.1/instances/"))
        .header("X-API-KEY", key)
        .json(&json!({"name": name}))
        .send()
        .await?;
    if resp.status() != StatusCode::CREATED {
        bail!(
            "creating instance {name} answered {}: {}",
            resp.status(),
            resp.text().await?
        );
    }
    Ok(())
}

/// The number of objects of the bench class, creating the class when it is missing.
async fn ensure_class(client: &reqwest::Client, instance: &str, key: &str) -> anyhow::Result<u64> {
    let resp = client
        .get(format!("{instance}/classes/{CLASS}/"))
        .header("X-API-KEY", key)
        .send()
        .await?;
    match resp.status() {
        StatusCode::OK => {
            let class: Value = resp.json().await?;
            class["objects_count"]
                .as_u64()
                .context("no objects_count in the class")
        }
        StatusCode::NOT_FOUND => {
            create_class(client, instance, key).await?;
            Ok(0)
        }
        status => bail!(
            "reading the {CLASS} class answered {status}: {}",
            resp.text().await?
        ),
    }
}

/// Creates objects 1..=count over `connections` connections, reporting progress to stderr.
/// Returns the time it took and the create latencies.
async fn create_objects(
    objects: Arc<Objects>,
    count: u64,
    connections: usize,
) -> anyhow::Result<(f64, Histogram<u64>)> {
    let next = Arc::new(AtomicU64::new(0));
    let created = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let progress = {
        let created = created.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(5));
            ticker.tick().await;
            let (mut before, mut at) = (0, Instant::now());
            loop {
                ticker.tick().await;
                let now = created.load(Ordering::Relaxed);
                eprintln!(
                    "objects-query: {now} of {count} objects created ({:.0}/s over the last {:.0} s)",
                    (now - before) as f64 / at.elapsed().as_secs_f64(),
                    at.elapsed().as_secs_f64()
                );
                (before, at) = (now, Instant::now());
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (objects, next, created) = (objects.clone(), next.clone(), created.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut latencies = histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) + 1;
                if i > count {
                    break;
                }
                let (n, title) = values(i);
                let at = Instant::now();
                objects
                    .create(&client, format!("{{\"n\":{n},\"title\":\"t{title}\"}}"))
                    .await?;
                latencies.saturating_record(at.elapsed().as_nanos() as u64);
                created.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = histogram();
    let mut failure = None;
    for task in tasks {
        match task.await? {
            Ok(h) => latencies.add(&h)?,
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    progress.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    Ok((started.elapsed().as_secs_f64(), latencies))
}

/// What one kind of query gave.
struct KindResult {
    latencies: Histogram<u64>,
    seconds: f64,
    /// Objects on the page (the last answer's; the data does not change).
    returned: usize,
    /// `objects_count` of the last answer, for include_count queries.
    count: Option<u64>,
    /// Answers that failed, or whose page did not match the query.
    errors: u64,
    first_error: Option<String>,
}

/// Whether a page's objects match the query kind: the filter holds and the order is kept.
fn check_page(kind: &QueryKind, page: &[Value]) -> Result<(), String> {
    let field = |o: &Value, f: &str| o[f].clone();
    for pair in page.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let ordered = match kind.order_by {
            Some("-n") => (a["n"].as_i64(), a["id"].as_i64()) > (b["n"].as_i64(), b["id"].as_i64()),
            Some("n") => (a["n"].as_i64(), a["id"].as_i64()) < (b["n"].as_i64(), b["id"].as_i64()),
            _ => a["id"].as_i64() < b["id"].as_i64(),
        };
        if !ordered {
            return Err(format!("out of order: {a} before {b}"));
        }
    }
    for object in page {
        let ok = match kind.name {
            "range_desc" | "range_desc_count" => object["n"].as_i64().is_some_and(|n| n >= 990_000),
            "title_eq" => field(object, "title") == "t42",
            _ => true,
        };
        if !ok {
            return Err(format!("does not match {}: {object}", kind.label));
        }
    }
    Ok(())
}

async fn run_kind(
    objects: Arc<Objects>,
    kind: &'static QueryKind,
    queries: u64,
    connections: usize,
) -> anyhow::Result<KindResult> {
    let mut params = vec![("page_size", "100")];
    params.extend(kind.query.map(|q| ("query", q)));
    params.extend(kind.order_by.map(|o| ("order_by", o)));
    if kind.include_count {
        params.push(("include_count", "true"));
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (objects, next, params) = (objects.clone(), next.clone(), params.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()?;
            let mut r = KindResult {
                latencies: histogram(),
                seconds: 0.0,
                returned: 0,
                count: None,
                errors: 0,
                first_error: None,
            };
            while next.fetch_add(1, Ordering::Relaxed) < queries {
                let at = Instant::now();
                let resp = objects
                    .request(&client, Method::GET, &objects.url)
                    .query(&params)
                    .send()
                    .await?;
                let status = resp.status();
                let body = resp.bytes().await?;
                r.latencies
                    .saturating_record(at.elapsed().as_nanos() as u64);
                let checked = if status != StatusCode::OK {
                    Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
                } else {
                    let page: Value = serde_json::from_slice(&body)?;
                    let list = page["objects"].as_array().cloned().unwrap_or_default();
                    r.returned = list.len();
                    r.count = page["objects_count"].as_u64();
                    check_page(kind, &list)
                };
                if let Err(e) = checked {
                    r.errors += 1;
                    r.first_error.get_or_insert(e);
                }
            }
            anyhow::Ok(r)
        }));
    }
    let mut total = KindResult {
        latencies: histogram(),
        seconds: 0.0,
        returned: 0,
        count: None,
        errors: 0,
        first_error: None,
    };
    for task in tasks {
        let r = task.await??;
        total.latencies.add(&r.latencies)?;
        total.returned = total.returned.max(r.returned);
        total.count = total.count.or(r.count);
        total.errors += r.errors;
        total.first_error = total.first_error.or(r.first_error);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

pub async fn run_query(target: &Target, args: &QueryArgs) -> anyhow::Result<Value> {
    if target.key.is_empty() {
        bail!("--key (or HERALD_BENCH_KEY) must be the server's account key");
    }
    let http = loopback_base(&target.url).await?;
    let client = reqwest::Client::new();
    let name = args
        .instance
        .clone()
        .unwrap_or_else(|| format!("bench{}", server::unique_suffix()));
    ensure_instance(&client, &http, &name, &target.key).await?;
    let instance = instance_url(&http, &name);
    let existing = ensure_class(&client, &instance, &target.key).await?;
    let objects = Arc::new(Objects {
        url: format!("{instance}/classes/{CLASS}/objects/"),
        key: target.key.clone(),
    });
    let mut summary = json!({
        "scenario": "objects-query", "protocol": "herald", "instance": name,
        "connections": args.connections, "query_connections": args.query_connections,
        "queries": args.queries,
    });
    let held = if existing > 0 && args.reuse {
        eprintln!("objects-query: reusing the {existing} objects of {name}/{CLASS}");
        println!("objects-query: instance {name}, class {CLASS}: {existing} objects (reused)");
        summary["created"] = json!(0);
        existing
    } else if existing > 0 {
        bail!(
            "{name}/{CLASS} already holds {existing} objects: pass --reuse to query them, or \
             another --instance"
        );
    } else {
        let (count, connections) = (args.objects, args.connections);
        eprintln!(
            "objects-query: creating {count} objects in {name}/{CLASS} over {connections} connections"
        );
        let (seconds, latencies) = create_objects(objects.clone(), count, connections).await?;
        let rate = count as f64 / seconds;
        let (p50, p99, max) = quantiles(&latencies);
        println!(
            "objects-query: instance {name}, class {CLASS}: {count} objects created over {connections} connections"
        );
        println!("  created in    {seconds:>9.1} s   ({rate:.0} objects/s)");
        println!("  create ms     p50 {p50:.2}   p99 {p99:.2}   max {max:.2}");
        summary["created"] = json!(count);
        summary["create_seconds"] = json!(seconds);
        summary["creates_per_s"] = json!(rate);
        summary["create_p50_ms"] = json!(p50);
        summary["create_p99_ms"] = json!(p99);
        count
    };
    summary["objects"] = json!(held);
    // Objects made by this tool hold values(1..=held), so the count of (a) is known.
    let expected_count = (1..=held).filter(|&i| values(i).0 >= 990_000).count() as u64;
    println!(
        "  queries       {} of each kind over {} connection(s), pages of 100",
        args.queries, args.query_connections
    );
    let mut errors = 0;
    for kind in &KINDS {
        let r = run_kind(objects.clone(), kind, args.queries, args.query_connections).await?;
        let (p50, p99, max) = quantiles(&r.latencies);
        let count = r
            .count
            .map(|c| format!("   count {c} (expected {expected_count})"));
        println!(
            "  {:<30} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms   max {max:>7.2} ms   {:>6.0}/s   {} returned{}   errors {}",
            kind.label,
            r.latencies.len() as f64 / r.seconds,
            r.returned,
            count.unwrap_or_default(),
            r.errors
        );
        if let Some(first) = &r.first_error {
            println!("    first error {first}");
        }
        let mut wrong = r.errors;
        if kind.include_count && r.count != Some(expected_count) {
            wrong += 1;
            println!(
                "    objects_count {:?} differs from the {expected_count} this tool created",
                r.count
            );
        }
        errors += wrong;
        summary[kind.name] = json!({
            "p50_ms": p50, "p99_ms": p99, "max_ms": max,
            "per_s": r.latencies.len() as f64 / r.seconds, "returned": r.returned,
            "count": r.count, "errors": wrong,
        });
    }
    summary["expected_count"] = json!(expected_count);
    summary["errors"] = json!(errors);
    Ok(summary)
}

pub async fn run_explain(args: &ExplainArgs) -> anyhow::Result<Value> {
    use herald::objects::Access;
    use herald::objects::query::{Builtin, Field, Order, parse_order_by, parse_queries};
    use herald::store::{
        InstanceStore, NoListener, ObjectQuery, ObjectStore, SqlStore, sqlite_path,
    };

    let url = args.database_url.as_str();
    let (store, backend) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = SqlStore::open_postgres(url, 2, Arc::new(NoListener)).await?;
        (store, "postgres")
    } else {
        let path =
            sqlite_path(url).context("--database-url must be sqlite://<path> or postgres://...")?;
        if !path.exists() {
            bail!("{} does not exist", path.display());
        }
        let store = SqlStore::open_sqlite(&path, true, 1, Arc::new(NoListener))
            .await
            .context("opening the SQLite database (has the server stopped?)")?;
        (store, "sqlite")
    };
    let instance = store
        .instance_by_name(&args.instance)
        .await
        .with_context(|| format!("instance {}", args.instance))?;
    let class = store
        .class(instance.id, CLASS)
        .await
        .with_context(|| format!("class {CLASS} of instance {}", args.instance))?;
    println!(
        "objects-explain: {backend}, instance {}, class {CLASS}",
        args.instance
    );
    let mut plans = serde_json::Map::new();
    for kind in KINDS.iter() {
        let conditions = parse_queries(kind.query, &class.schema).map_err(|e| anyhow!(e))?;
        let order = parse_order_by(kind.order_by, &class.schema)
            .map_err(|e| anyhow!(e))?
            .unwrap_or(Order {
                field: Field::Builtin(Builtin::Id),
                descending: false,
            });
        let query = ObjectQuery {
            conditions,
            access: Access::Full,
            order,
            after: None,
            limit: 100,
        };
        // The count kind's page is the range kind's; what it adds is the count statement.
        let plan = if kind.include_count {
            store.explain_object_count(&class, &query).await?
        } else {
            store.explain_object_list(&class, &query).await?
        };
        println!("  {}", kind.label);
        for line in &plan {
            println!("    {line}");
        }
        plans.insert(kind.name.into(), json!(plan));
    }
    Ok(json!({
        "scenario": "objects-explain", "backend": backend, "instance": args.instance,
        "plans": plans,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "4242 (herald (a) b) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 56 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat).unwrap(), 1290);
        assert_eq!(cpu_ticks(&format!("{}", std::process::id())).ok(), None);
    }

    #[test]
    fn change_messages_are_numbered_after_the_create() {
        let changes = Changes {
            url: String::new(),
            first: 1,
        };
        let update = r#"{"id":7,"created_at":"2026-12-03T10:00:00.000000Z","action":"update","author":{"api_key":1},"metadata":{"type":"object","class":"bench_objects"},"payload":{"id":3,"revision":5,"updated_at":"2026-12-03T10:00:00.000000Z","sent":"123456"},"room":"objects"}"#;
        assert_eq!(
            changes.read(update),
            Frame::Message {
                number: 6,
                sent_ns: 123_456
            }
        );
        let create = update
            .replace("\"id\":7", "\"id\":1")
            .replace("update", "create");
        assert_eq!(changes.read(&create), Frame::Unexpected);
        assert_eq!(
            changes.read(r#"{"detail":"Not found."}"#),
            Frame::Unexpected
        );
    }

    #[test]
    fn object_values_are_in_range_and_spread() {
        let mut titles = std::collections::HashSet::new();
        let high = (1..=100_000u64).filter(|&i| values(i).0 >= 990_000).count();
        for i in 1..=100_000 {
            let (n, title) = values(i);
            assert!(n < N_RANGE && title < TITLES);
            titles.insert(title);
        }
        assert_eq!(titles.len(), TITLES as usize);
        // About 1 % of n is at or above 990 000.
        assert!((800..1200).contains(&high), "{high}");
    }

    #[test]
    fn pages_are_checked_against_their_query() {
        let (range, title, order) = (&KINDS[0], &KINDS[1], &KINDS[2]);
        let page = |rows: &[(i64, i64, &str)]| -> Vec<Value> {
            rows.iter()
                .map(|(id, n, t)| json!({"id": id, "n": n, "title": t}))
                .collect()
        };
        assert!(check_page(range, &page(&[(1, 999_999, "a"), (9, 990_000, "b")])).is_ok());
        assert!(check_page(range, &page(&[(1, 990_000, "a"), (9, 999_999, "b")])).is_err());
        assert!(check_page(range, &page(&[(1, 989_999, "a")])).is_err());
        assert!(check_page(title, &page(&[(1, 5, "t42"), (2, 3, "t42")])).is_ok());
        assert!(check_page(title, &page(&[(1, 5, "t42"), (2, 3, "t43")])).is_err());
        assert!(check_page(order, &page(&[(4, 1, "a"), (2, 2, "b"), (3, 2, "c")])).is_ok());
        assert!(check_page(order, &page(&[(3, 2, "a"), (2, 2, "b")])).is_err());
    }
}
