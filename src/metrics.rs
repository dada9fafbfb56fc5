//! Prometheus metrics (docs/api.md §11.2): one registry per server, exposed as text format 0.0.4 at
//! `/metrics` (or on `metrics_listen`), optionally behind a bearer token.
//!
//! Labels are closed sets named here (route templates, transports, actions, reasons), never
//! instance, channel, room or key names. The hot paths (publish, delivery) increment counters
//! resolved once at start-up: an atomic add, no label lookup and no lock.
//!
//! Figures that another part already keeps (open connections, pooled database connections)
//! are read when scraped rather than counted twice.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::connections::{Connections, Rejection};
use crate::store::Store;

/// The subscriber transports, in the order of [`ByTransport`]'s fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Poll,
    WebSocket,
    Sse,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Poll => "poll",
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

/// One child of a labelled family per transport, resolved at start-up.
pub struct ByTransport<T> {
    poll: T,
    websocket: T,
    sse: T,
}

impl<T> ByTransport<T> {
    fn new(make: impl Fn(&str) -> T) -> Self {
        ByTransport {
            poll: make("poll"),
            websocket: make("websocket"),
            sse: make("sse"),
        }
    }

    pub fn get(&self, transport: Transport) -> &T {
        match transport {
            Transport::Poll => &self.poll,
            Transport::WebSocket => &self.websocket,
            Transport::Sse => &self.sse,
        }
    }
}

/// Which request budget refused a request (`herald_rate_limited_total{limit}`).
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    Anonymous,
    Instance,
    Poll,
}

/// Why a password check did not run (`herald_login_throttled_total{scope}`).
#[derive(Clone, Copy, Debug)]
pub enum LoginScope {
    Identity,
    Ip,
    Busy,
}

/// Where a reader learned of a retention gap (`herald_resume_gaps_total{transport}`).
#[derive(Clone, Copy, Debug)]
pub enum GapSeen {
    Poll,
    History,
    WebSocket,
    Sse,
}

/// The message actions (docs/api.md §9.6, §10.4) that `herald_messages_published_total` counts.
const ACTIONS: [&str; 4] = ["custom", "create", "update", "delete"];

/// Request durations and publish durations: 0.5 ms to 10 s.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    published: [IntCounter; 4],
    published_other: IntCounter,
    pub publish_duration: Histogram,
    pub delivered: ByTransport<IntCounter>,
    pub subscribers: ByTransport<IntGauge>,
    pub overflows: ByTransport<IntCounter>,
    pub history_pruned: IntCounter,
    pub gaps_repaired: IntCounter,
    rate_limited: [IntCounter; 3],
    db_pool: IntGaugeVec,
    connections: IntGauge,
    connections_rejected: [IntCounter; 4],
    resume_gaps: [IntCounter; 4],
    login_throttled: [IntCounter; 3],
    pub cluster_rejected: IntCounter,
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique and valid");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
    )
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric"),
    )
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let http_requests = register(
            &r,
            IntCounterVec::new(
                Opts::new("herald_http_requests_total", "HTTP requests answered."),
                &["method", "route", "status"],
            )
            .expect("valid metric"),
        );
        let http_duration = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "herald_http_request_duration_seconds",
                    "Time to the response head (streams: to the upgrade or the stream's start).",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &["method", "route"],
            )
            .expect("valid metric"),
        );
        let published = counter_vec(
            &r,
            "herald_messages_published_total",
            "Messages stored on this node (custom publishes and data object changes).",
            "action",
        );
        let publish_duration = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "herald_publish_duration_seconds",
                    "Publish requests, from the request to the stored message.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
        );
        let delivered = counter_vec(
            &r,
            "herald_messages_delivered_total",
            "Messages written to subscribers.",
            "transport",
        );
        let subscribers = gauge_vec(
            &r,
            "herald_subscribers",
            "Open streams, and polls waiting for a message.",
            "transport",
        );
        let overflows = counter_vec(
            &r,
            "herald_stream_overflows_total",
            "Streams closed because the subscriber fell too far behind.",
            "transport",
        );
        let rate_limited = counter_vec(
            &r,
            "herald_rate_limited_total",
            "Requests refused with 429 by a request budget.",
            "limit",
        );
        let connections_rejected = counter_vec(
            &r,
            "herald_connections_rejected_total",
            "Client connections refused or closed by a connection limit or timeout.",
            "reason",
        );
        let resume_gaps = counter_vec(
            &r,
            "herald_resume_gaps_total",
            "Reads that resumed after messages retention had removed (a gap was reported).",
            "transport",
        );
        let login_throttled = counter_vec(
            &r,
            "herald_login_throttled_total",
            "Password checks refused before running: identity locked, IP budget spent, or busy.",
            "scope",
        );
        Metrics {
            published: ACTIONS.map(|action| published.with_label_values(&[action])),
            published_other: published.with_label_values(&["other"]),
            publish_duration,
            delivered: ByTransport::new(|t| delivered.with_label_values(&[t])),
            subscribers: ByTransport::new(|t| subscribers.with_label_values(&[t])),
            overflows: ByTransport::new(|t| overflows.with_label_values(&[t])),
            history_pruned: counter(
                &r,
                "herald_history_pruned_total",
                "Messages removed from history by retention.",
            ),
            gaps_repaired: counter(
                &r,
                "herald_fanout_gaps_repaired_total",
                "Cluster: messages missed on Redis and delivered from storage instead.",
            ),
            rate_limited: ["anon", "instance", "poll"]
                .map(|limit| rate_limited.with_label_values(&[limit])),
            db_pool: gauge_vec(
                &r,
                "herald_db_pool_connections",
                "Database connections in the pools.",
                "state",
            ),
            connections: register(
                &r,
                IntGauge::new("herald_connections", "Open client connections.")
                    .expect("valid metric"),
            ),
            connections_rejected: Rejection::ALL
                .map(|reason| connections_rejected.with_label_values(&[reason.label()])),
            resume_gaps: ["poll", "history", "websocket", "sse"]
                .map(|transport| resume_gaps.with_label_values(&[transport])),
            login_throttled: ["identity", "ip", "busy"]
                .map(|scope| login_throttled.with_label_values(&[scope])),
            cluster_rejected: counter(
                &r,
                "herald_cluster_messages_rejected_total",
                "Cluster messages from Redis that failed authentication and were dropped.",
            ),
            http_requests,
            http_duration,
            registry: r,
        }
    }

    /// Counts an answered request. `route` is the matched route's template (or a fixed word
    /// for requests no route matched), so the label set stays small.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut code = itoa::Buffer::new();
        self.http_requests
            .with_label_values(&[method, route, code.format(status)])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    pub fn published(&self, action: &str) {
        match ACTIONS.iter().position(|a| *a == action) {
            Some(i) => self.published[i].inc(),
            None => self.published_other.inc(),
        }
    }

    pub fn rate_limited(&self, limit: Limit) -> &IntCounter {
        &self.rate_limited[limit as usize]
    }

    pub fn connection_rejected(&self, reason: Rejection) -> &IntCounter {
        &self.connections_rejected[reason as usize]
    }

    pub fn resume_gap(&self, seen: GapSeen) {
        self.resume_gaps[seen as usize].inc();
    }

    pub fn login_throttled(&self, scope: LoginScope) -> &IntCounter {
        &self.login_throttled[scope as usize]
    }

    /// The exposition text (format 0.0.4), with the figures read at scrape time brought up to
    /// date first.
    pub fn render(&self, store: &dyn Store, connections: &Connections) -> String {
        let pool = store.pool_connections();
        self.db_pool
            .with_label_values(&["idle"])
            .set(pool.idle as i64);
        self.db_pool
            .with_label_values(&["busy"])
            .set(pool.busy as i64);
        self.connections.set(connections.open() as i64);
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of valid metrics cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Keeps a gauge up while it lives: a stream or a waiting poll.
pub struct Present<'a>(&'a IntGauge);

impl<'a> Present<'a> {
    pub fn new(gauge: &'a IntGauge) -> Present<'a> {
        gauge.inc();
        Present(gauge)
    }
}

impl Drop for Present<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_with_its_type() {
        let m = Metrics::new();
        m.published("custom");
        m.http_request(
            "GET",
            "/v1.1/instances/{instance}",
            200,
            Duration::from_millis(3),
        );
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&m.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for (name, kind) in [
            ("herald_http_requests_total", "counter"),
            ("herald_http_request_duration_seconds", "histogram"),
            ("herald_messages_published_total", "counter"),
            ("herald_publish_duration_seconds", "histogram"),
            ("herald_messages_delivered_total", "counter"),
            ("herald_subscribers", "gauge"),
            ("herald_stream_overflows_total", "counter"),
            ("herald_history_pruned_total", "counter"),
            ("herald_fanout_gaps_repaired_total", "counter"),
            ("herald_rate_limited_total", "counter"),
            ("herald_connections", "gauge"),
            ("herald_connections_rejected_total", "counter"),
            ("herald_resume_gaps_total", "counter"),
            ("herald_login_throttled_total", "counter"),
            ("herald_cluster_messages_rejected_total", "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} is not a {kind} in:\n{text}"
            );
        }
        assert!(text.contains(
            "herald_http_requests_total{method=\"GET\",route=\"/v1.1/instances/{instance}\",status=\"200\"} 1"
        ));
        assert!(text.contains("herald_messages_published_total{action=\"custom\"} 1"));
    }
}
