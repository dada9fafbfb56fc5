//! Fan-out subscribers: many WebSockets on one stream, each checking that messages numbered
//! 1..=total arrive once and in order, and timing them end to end. The `fanout` scenario
//! (published messages) and `objects-fanout` (data-object change messages) share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::server::{self, Fixture, Frame};
use crate::{histogram, ms};

/// What one fan-out subscriber saw of messages numbered 1..=total.
struct Seen {
    latencies: Histogram<u64>,
    /// Bit n set: message n arrived.
    arrived: Vec<u64>,
    /// Distinct messages that arrived.
    distinct: u64,
    received: u64,
    duplicated: u64,
    /// Messages that arrived after a higher-numbered one.
    reordered: u64,
    highest: u64,
    /// The server closed the socket (or it failed) before every message arrived.
    disconnected: bool,
}

impl Seen {
    fn new(total: u64) -> Seen {
        Seen {
            latencies: histogram(),
            arrived: vec![0; (total as usize + 1).div_ceil(64)],
            distinct: 0,
            received: 0,
            duplicated: 0,
            reordered: 0,
            highest: 0,
            disconnected: false,
        }
    }

    fn record(&mut self, number: u64, latency_ns: u64) -> anyhow::Result<()> {
        let (word, bit) = ((number / 64) as usize, 1u64 << (number % 64));
        let Some(slot) = self.arrived.get_mut(word).filter(|_| number > 0) else {
            bail!(
                "message number {number} is outside 1..={}",
                self.arrived.len() * 64 - 1
            );
        };
        self.received += 1;
        self.latencies.saturating_record(latency_ns);
        if *slot & bit != 0 {
            self.duplicated += 1;
        } else {
            *slot |= bit;
            self.distinct += 1;
        }
        if number < self.highest {
            self.reordered += 1;
        }
        self.highest = self.highest.max(number);
        Ok(())
    }
}

/// Where fan-out subscribers come from: how one connects, and what its frames mean.
pub trait Feed: Send + Sync + 'static {
    /// Opens one subscribed WebSocket.
    fn subscribe(&self) -> impl Future<Output = anyhow::Result<server::Ws>> + Send;
    /// What a text frame is: a message numbered 1..=total (and its send time), or not.
    fn read(&self, text: &str) -> Frame;
}

impl Feed for Fixture {
    fn subscribe(&self) -> impl Future<Output = anyhow::Result<server::Ws>> + Send {
        Fixture::subscribe(self)
    }

    fn read(&self, text: &str) -> Frame {
        Fixture::read(self, text)
    }
}

/// One fan-out subscriber: reads until every message 1..=total arrived, the socket ends, or
/// `stop` turns true.
async fn subscriber<F: Feed>(
    feed: Arc<F>,
    mut socket: server::Ws,
    base: Instant,
    total: u64,
    mut stop: watch::Receiver<bool>,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<Seen> {
    let mut seen = Seen::new(total);
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    while seen.distinct < total {
        let frame = tokio::select! {
            biased;
            frame = socket.next() => frame,
            _ = &mut stopped => break,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                seen.disconnected = true;
                break;
            }
            Some(Ok(_)) => continue,
        };
        match feed.read(&text) {
            Frame::Message { number, sent_ns } => {
                let now = base.elapsed().as_nanos() as u64;
                seen.record(number, now.saturating_sub(sent_ns))?;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            Frame::Ping => socket.send(Fixture::pong()).await?,
            Frame::Control => {}
            Frame::Unexpected => bail!("unexpected frame: {text}"),
        }
    }
    Ok(seen)
}

/// The subscribers of one fan-out run, each waiting for messages 1..=total.
pub struct Audience {
    subs: Vec<tokio::task::JoinHandle<anyhow::Result<Seen>>>,
    stop: watch::Sender<bool>,
    /// Deliveries so far, over all subscribers.
    progress: Arc<AtomicU64>,
    total: u64,
}

/// What the subscribers of a fan-out run saw, together.
pub struct Delivered {
    pub latencies: Histogram<u64>,
    pub received: u64,
    pub expected: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Subscribers still waiting for a message when the run stopped.
    pub incomplete: usize,
    pub disconnected: usize,
}

impl Audience {
    /// Connects and subscribes `count` subscribers (200 at a time); returns once all are.
    pub async fn open<F: Feed>(
        feed: Arc<F>,
        count: usize,
        total: u64,
        base: Instant,
    ) -> anyhow::Result<Audience> {
        let (stop, stop_rx) = watch::channel(false);
        let connected = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(AtomicU64::new(0));
        let limit = Arc::new(Semaphore::new(200));
        let mut subs = Vec::new();
        for _ in 0..count {
            let (feed, connected, limit) = (feed.clone(), connected.clone(), limit.clone());
            let (stop, progress) = (stop_rx.clone(), progress.clone());
            subs.push(tokio::spawn(async move {
                let permit = limit.acquire_owned().await?;
                let socket = feed.subscribe().await?;
                drop(permit);
                connected.fetch_add(1, Ordering::Relaxed);
                subscriber(feed, socket, base, total, stop, progress).await
            }));
        }
        let connect_deadline = Instant::now() + Duration::from_secs(120);
        while connected.load(Ordering::Relaxed) < count as u64 {
            if let Some(failed) = subs.iter_mut().find(|s| s.is_finished()) {
                // A subscriber that ended before publishing started failed to connect.
                failed.await??;
                bail!("a subscriber ended before publishing started");
            }
            if Instant::now() > connect_deadline {
                bail!(
                    "only {} of {count} subscribers connected",
                    connected.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Audience {
            subs,
            stop,
            progress,
            total,
        })
    }

    /// Once everything is published: gives the subscribers up to 30 s to catch up, stops them
    /// and adds up what they saw. A server that dropped messages leaves subscribers waiting
    /// for ever: they are stopped once nothing has arrived for 5 s.
    pub async fn finish(self) -> anyhow::Result<Delivered> {
        let Audience {
            subs,
            stop,
            progress,
            total,
        } = self;
        let catch_up = Instant::now() + Duration::from_secs(30);
        let (mut last_progress, mut last_change) =
            (progress.load(Ordering::Relaxed), Instant::now());
        while Instant::now() < catch_up && !subs.iter().all(|s| s.is_finished()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = progress.load(Ordering::Relaxed);
            if now != last_progress {
                (last_progress, last_change) = (now, Instant::now());
            } else if last_change.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
        let incomplete = subs.iter().filter(|s| !s.is_finished()).count();
        stop.send_replace(true);
        let mut d = Delivered {
            latencies: histogram(),
            received: 0,
            expected: total * subs.len() as u64,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            incomplete,
            disconnected: 0,
        };
        for sub in subs {
            let seen = sub.await??;
            d.latencies.add(&seen.latencies)?;
            d.received += seen.received;
            d.duplicated += seen.duplicated;
            d.reordered += seen.reordered;
            d.lost += total - seen.distinct;
            d.disconnected += usize::from(seen.disconnected);
        }
        Ok(d)
    }
}

impl Delivered {
    /// The lines every fan-out report shares; `seconds` is how long publishing took.
    pub fn print(&self, seconds: f64) {
        let (received, expected) = (self.received, self.expected);
        println!(
            "  deliveries    {received:>12} of {expected}   ({:.0}/s)",
            received as f64 / seconds
        );
        println!(
            "  lost          {:>12}   duplicated {}   out of order {}",
            self.lost, self.duplicated, self.reordered
        );
        println!(
            "  subscribers   incomplete at the end {}   disconnected by the server {}",
            self.incomplete, self.disconnected
        );
        println!(
            "  end-to-end ms p50 {:.2}   p99 {:.2}   max {:.2}",
            ms(self.latencies.value_at_quantile(0.5)),
            ms(self.latencies.value_at_quantile(0.99)),
            ms(self.latencies.max())
        );
    }

    /// The JSON fields every fan-out report shares, added to `summary`.
    pub fn add_to(&self, summary: &mut Value, seconds: f64) {
        let fields = json!({
            "deliveries": self.received, "expected": self.expected,
            "delivered_per_s": self.received as f64 / seconds, "lost": self.lost,
            "duplicated": self.duplicated, "out_of_order": self.reordered,
            "incomplete": self.incomplete, "disconnected": self.disconnected,
            "p50_ms": ms(self.latencies.value_at_quantile(0.5)),
            "p99_ms": ms(self.latencies.value_at_quantile(0.99)),
            "max_ms": ms(self.latencies.max()),
        });
        if let (Value::Object(summary), Value::Object(fields)) = (summary, fields) {
            summary.extend(fields);
        }
    }
}
