//! Cluster mode (docs/api.md §11.5, §9.5, §9.11): several `herald serve` processes on one PostgreSQL,
//! telling each other about messages and changes through Redis.
//!
//! Each test starts its own nodes on a schema of its own, hence a cluster id and a default Redis
//! channel prefix (`herald:<cluster id>`) of their own, so the tests run in parallel with each
//! other and with anyone else on the same Redis. The nodes reach Redis through a proxy in the
//! test ([`RedisProxy`]) that can cut every connection and refuse new ones, which is how Redis
//! "goes away" without touching the shared server.
//!
//! The tests need `HERALD_TEST_DATABASE_URL` and `HERALD_TEST_REDIS_URL`; without them they say
//! so and pass. The configuration check (SQLite with a Redis URL) needs neither and always runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use herald::keys::{Key, KeyKind};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use crate::chaos::{self, CHANNEL, INSTANCE, Storm};
use crate::cli::{ChildServer, run_herald};
use crate::helpers::{Resp, TestDb};
use crate::poll::{PERMISSION_DENIED, WAIT, assert_waiting, id_of, read_resp, without_links};
use crate::sse::{Sse, sse_open};
use crate::websocket::{Ws, assert_quiet, expect_error_then_close, next_json, ws_open, ws_request};

/// How soon every node must act on a change made on another (docs/api.md §11.5).
/// `/health`'s fan-out while a node has no Redis subscription.
const REDIS_DOWN: &str = "error: not connected to Redis; reconnecting";
const CHANGE_BOUND: Duration = Duration::from_secs(1);
/// What a node logs at start-up just before its Redis channels (`<prefix>:messages`, ...).
const ANNOUNCING_ON: &str = "announcing on Redis channels ";
/// What a node logs on dropping a Redis message without a valid tag.
const REJECTED: &str = "without a valid tag";
/// A poll timeout whose safety timer (a tenth of it) never fires within a test, so whatever
/// arrives came through Redis or a repair Redis triggered.
const NO_SAFETY_NET: &str = "3600s";

/// The services a cluster needs, or `None` (after saying so) when they are not configured.
struct Services {
    database_url: String,
    redis_url: String,
}

fn services() -> Option<Services> {
    let database_url = crate::pg_schema::database_url();
    let redis_url = std::env::var("HERALD_TEST_REDIS_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    match (database_url, redis_url) {
        (Some(database_url), Some(redis_url)) => Some(Services {
            database_url,
            redis_url,
        }),
        _ => {
            println!(
                "skipped: cluster tests need HERALD_TEST_DATABASE_URL and HERALD_TEST_REDIS_URL"
            );
            None
        }
    }
}

/// A TCP forwarder to the real Redis that the test can cut and restore.
struct RedisProxy {
    /// The Redis URL nodes use: the real one with the proxy's address.
    url: String,
    link: Arc<Mutex<Link>>,
    accepting: JoinHandle<()>,
}

struct Link {
    /// While cut, new connections are closed at once.
    cut: bool,
    /// Cancelled by a cut: ends every connection made before it.
    current: CancellationToken,
}

impl RedisProxy {
    async fn start(redis_url: &str) -> RedisProxy {
        let mut url = reqwest::Url::parse(redis_url).expect("HERALD_TEST_REDIS_URL is a URL");
        let upstream = format!(
            "{}:{}",
            url.host_str().expect("HERALD_TEST_REDIS_URL has a host"),
            url.port().unwrap_or(6379)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        url.set_host(Some("127.0.0.1")).expect("proxy host");
        url.set_port(Some(port)).expect("proxy port");
        let link = Arc::new(Mutex::new(Link {
            cut: false,
            current: CancellationToken::new(),
        }));
        let accepting = tokio::spawn(Self::accept(listener, upstream, link.clone()));
        RedisProxy {
            url: url.to_string(),
            link,
            accepting,
        }
    }

    async fn accept(listener: TcpListener, upstream: String, link: Arc<Mutex<Link>>) {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                sleep(Duration::from_millis(10)).await;
                continue;
            };
            let token = {
                let link = link.lock().unwrap();
                (!link.cut).then(|| link.current.clone())
            };
            // Cut: the connection is closed as soon as it is accepted.
            let Some(token) = token else { continue };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                    return;
                };
                tokio::select! {
                    () = token.cancelled() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            });
        }
    }

    /// Drops every connection and refuses new ones until [`RedisProxy::restore`].
    fn cut(&self) {
        let old = {
            let mut link = self.link.lock().unwrap();
            link.cut = true;
            std::mem::replace(&mut link.current, CancellationToken::new())
        };
        old.cancel();
    }

    fn restore(&self) {
        self.link.lock().unwrap().cut = false;
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.link.lock().unwrap().current.cancel();
    }
}

/// Nodes (`herald serve` child processes) on one fresh PostgreSQL schema, reaching Redis
/// through one proxy under the cluster's default prefix (unless `settings` name one).
///
/// Fields drop in order: the nodes (killed) before the proxy and the schema.
struct Cluster {
    nodes: Vec<Option<ChildServer>>,
    /// Where each node listens; a restarted node comes back on the same address.
    addrs: Vec<String>,
    proxy: RedisProxy,
    db: TestDb,
    admin_key: String,
    /// Extra settings of every node.
    settings: Vec<(&'static str, String)>,
    client: reqwest::Client,
}

impl Cluster {
    /// Starts `count` nodes at the same moment on an empty database: one creates the first
    /// account (`HERALD_ADMIN_KEY`), the others find it.
    async fn start(
        services: &Services,
        count: usize,
        settings: &[(&'static str, &str)],
    ) -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            addrs: Vec::new(),
            proxy: RedisProxy::start(&services.redis_url).await,
            db: TestDb::postgres(&services.database_url).await,
            admin_key: Key::generate(KeyKind::Account).as_str().to_owned(),
            settings: settings
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned()))
                .collect(),
            client: reqwest::Client::new(),
        };
        let envs: Vec<_> = (0..count).map(|_| cluster.env("127.0.0.1:0")).collect();
        let started = futures_util::future::join_all(envs.iter().map(|env| {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let db = &cluster.db;
            async move { ChildServer::start(db, &env).await }
        }))
        .await;
        for node in started {
            cluster.addrs.push(node.addr.clone());
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    fn env(&self, listen: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("HERALD_LISTEN", listen.to_owned()),
            ("HERALD_REDIS_URL", self.proxy.url.clone()),
            ("HERALD_ADMIN_KEY", self.admin_key.clone()),
        ];
        env.extend(self.settings.iter().cloned());
        env
    }

    /// SIGKILL: no drain, no goodbye.
    async fn kill(&mut self, node: usize) {
        let mut server = self.nodes[node].take().expect("the node is running");
        server.child.kill().await.expect("kill the node");
    }

    /// Starts a killed node again on its old address.
    async fn restart(&mut self, node: usize) {
        assert!(self.nodes[node].is_none(), "node {node} is running");
        let env = self.env(&self.addrs[node]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.nodes[node] = Some(ChildServer::start(&self.db, &env).await);
    }

    /// Waits until a node has logged a line containing `needle`, and returns the line; bounded.
    async fn until_logged(&self, node: usize, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = self.log(node);
            if let Some(line) = log.lines().find(|line| line.contains(needle)) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "node {node} never logged {needle:?}:\n{log}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines a node logged.
    fn log(&self, node: usize) -> String {
        self.nodes[node]
            .as_ref()
            .expect("the node is running")
            .log_tail()
    }

    /// The Redis channel prefix a node said at start-up that it announces under.
    async fn prefix(&self, node: usize) -> String {
        let line = self.until_logged(node, ANNOUNCING_ON).await;
        line.split(ANNOUNCING_ON)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|channel| channel.strip_suffix(":messages"))
            .unwrap_or_else(|| panic!("no prefix in {line:?}"))
            .to_owned()
    }

    /// Reads the cluster's database: `query` must give one row of one column.
    async fn query_one<T>(&self, query: &str) -> T
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        let mut conn = PgConnection::connect(&self.db.url())
            .await
            .expect("connect to the cluster's database");
        let value = sqlx::query_scalar(query)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{query}: {err}"));
        let _ = conn.close().await;
        value
    }

    /// `rivia/witchers` as announcements on Redis name it: (instance id, channel id).
    async fn witchers_ids(&self) -> (i64, i64) {
        let instance_id = self
            .query_one("SELECT id FROM instances WHERE name = 'rivia'")
            .await;
        let channel_id = self
            .query_one("SELECT id FROM channels WHERE name = 'witchers'")
            .await;
        (instance_id, channel_id)
    }

    fn socket_addr(&self, node: usize) -> SocketAddr {
        self.addrs[node].parse().expect("node address")
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}{path}", self.addrs[node])
    }

    fn ws_url(&self, node: usize, channel: &str, query: &str) -> String {
        format!(
            "ws://{}/v1.1/instances/rivia/channels/{channel}/poll/?transport=websocket&{query}",
            self.addrs[node]
        )
    }

    fn request(
        &self,
        node: usize,
        method: Method,
        path: &str,
        key: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, self.url(node, path));
        match key {
            Some(key) => builder.header("X-API-KEY", key),
            None => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Resp {
        read_resp(builder.send().await.expect("request failed")).await
    }

    async fn get(&self, node: usize, path: &str, key: Option<&str>) -> Resp {
        self.send(self.request(node, Method::GET, path, key)).await
    }

    /// Sends `body` as JSON with the superuser's key.
    async fn admin(&self, node: usize, method: Method, path: &str, body: Value) -> Resp {
        let request = self.request(node, method, path, Some(&self.admin_key));
        self.send(request.json(&body)).await
    }

    /// `/health` of a node: (status, JSON).
    /// One sample of a node's `/metrics`; 0 when absent.
    async fn metric(&self, node: usize, sample: &str) -> f64 {
        let resp = self.get(node, "/metrics", None).await;
        assert_eq!(resp.status, 200, "node {node}: {}", resp.text);
        resp.text
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0.0, |value| value.parse().expect("a number"))
    }

    async fn health(&self, node: usize) -> (u16, Value) {
        let resp = self.get(node, "/health", None).await;
        (resp.status, resp.json)
    }

    /// Waits until a node's `/health` reports `fanout`; bounded.
    async fn until_fanout(&self, node: usize, fanout: &str) -> (u16, Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.health(node).await;
            if body["fanout"] == fanout {
                return (status, body);
            }
            assert!(
                Instant::now() < deadline,
                "node {node} never reported fanout {fanout:?}: {status} {body}"
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Instance `rivia` with a `separate_rooms` channel `witchers` that allows publish and
    /// grants others `other_permissions`; returns a trusted API key. Made through `node`.
    async fn rivia(&self, node: usize, other_permissions: &str) -> String {
        self.admin(
            node,
            Method::POST,
            "/v1.1/instances/",
            json!({"name": "rivia"}),
        )
        .await
        .assert_status(201);
        self.admin(
            node,
            Method::POST,
            "/v1.1/instances/rivia/channels/",
            json!({"name": "witchers", "type": "separate_rooms", "custom_publish": true,
                   "other_permissions": other_permissions}),
        )
        .await
        .assert_status(201);
        self.api_key(node, json!({"ignore_acl": true})).await.1
    }

    /// Creates an API key of `rivia` through `node`: (id, key).
    async fn api_key(&self, node: usize, flags: Value) -> (i64, String) {
        let resp = self
            .admin(node, Method::POST, "/v1.1/instances/rivia/api_keys/", flags)
            .await;
        let body = resp.assert_status(201);
        (
            body["id"].as_i64().expect("id"),
            body["api_key"].as_str().expect("api_key").to_owned(),
        )
    }

    /// Publishes `payload` to a room of `rivia/witchers` through `node`: the stored message.
    async fn publish(&self, node: usize, room: &str, payload: Value) -> Value {
        self.publish_to(node, "witchers", room, payload).await
    }

    async fn publish_to(&self, node: usize, channel: &str, room: &str, payload: Value) -> Value {
        let resp = self
            .admin(
                node,
                Method::POST,
                &format!("/v1.1/instances/rivia/channels/{channel}/publish/"),
                json!({"room": room, "payload": payload}),
            )
            .await;
        resp.assert_status(201).clone()
    }

    async fn ws(&self, node: usize, channel: &str, query: &str) -> Ws {
        ws_open(ws_request(&self.ws_url(node, channel, query), None)).await
    }

    async fn sse(&self, node: usize, channel: &str, query: &str, key: &str) -> Sse {
        let path = format!("/v1.1/instances/rivia/channels/{channel}/poll/?transport=sse&{query}");
        let resp = timeout(
            WAIT,
            self.request(node, Method::GET, &path, Some(key)).send(),
        )
        .await
        .expect("the SSE response head within 5 s")
        .expect("SSE request");
        sse_open(resp).await
    }

    /// A long-poll of `rivia/witchers` on its own task.
    fn spawn_poll(&self, node: usize, query: &str, key: &str) -> JoinHandle<Resp> {
        let path = format!("/v1.1/instances/rivia/channels/witchers/poll/?{query}");
        let request = self.request(node, Method::GET, &path, Some(key));
        tokio::spawn(async move { read_resp(request.send().await.expect("poll")).await })
    }
}

impl Drop for Cluster {
    /// A failing test shows what the nodes logged last.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (n, node) in self.nodes.iter().enumerate() {
                if let Some(node) = node {
                    eprintln!(
                        "--- node {n} ({}) log tail ---\n{}",
                        node.addr,
                        node.log_tail()
                    );
                }
            }
        }
    }
}

/// The next message of a stream that must be `expected` (a stored message; streams send it
/// without links).
#[track_caller]
fn assert_message(received: &Value, expected: &Value, via: &str) {
    assert_eq!(received, &without_links(expected), "{via}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_node_receives_what_the_other_nodes_publish() {
    let Some(services) = services() else { return };
    let cluster = Cluster::start(&services, 3, &[("HERALD_POLL_TIMEOUT", NO_SAFETY_NET)]).await;
    let (a, b, c) = (0, 1, 2);
    for node in [a, b, c] {
        let (status, body) = cluster.health(node).await;
        assert_eq!(
            (status, body),
            (
                200,
                json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "storage": "ok",
                       "fanout": "ok"})
            ),
            "node {node}"
        );
    }
    let key = cluster.rivia(b, "none").await;

    // Subscribers on A, from the start of the (empty) room: WebSocket, SSE, a waiting poll.
    let mut ws = cluster
        .ws(
            a,
            "witchers",
            &format!("api_key={key}&room=lobby&last_id=0"),
        )
        .await;
    let mut sse = cluster
        .sse(a, "witchers", "room=lobby&last_id=0", &key)
        .await;
    let first_poll = cluster.spawn_poll(a, "room=lobby&last_id=0", &key);
    sleep(Duration::from_millis(300)).await;

    // B and C publish at the same time, so their ids interleave; every third goes elsewhere.
    let publishing = Instant::now();
    let publish_from = |node: usize, name: &'static str| {
        let cluster = &cluster;
        async move {
            let mut stored = Vec::new();
            for n in 0..12 {
                let room = if n % 3 == 2 { "tavern" } else { "lobby" };
                let payload = json!({"from": name, "n": n, "text": "Zażółć gęślą jaźń ✓ \"q\"",
                                     "nested": {"list": [1, 2.5, null, true]}});
                stored.push(cluster.publish(node, room, payload).await);
            }
            stored
        }
    };
    let (from_b, from_c) = tokio::join!(publish_from(b, "b"), publish_from(c, "c"));
    let mut expected: Vec<Value> = from_b
        .into_iter()
        .chain(from_c)
        .filter(|message| message["room"] == "lobby")
        .collect();
    expected.sort_by_key(id_of);
    assert_eq!(expected.len(), 16);

    // A waiting poll is answered by the first message, published on another node.
    let resp = timeout(WAIT, first_poll)
        .await
        .expect("the waiting poll on A was answered")
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_message(&resp.json, &expected[0], "first poll");
    assert_eq!(
        resp.header("x-last-id"),
        Some(expected[0]["id"].to_string().as_str())
    );

    for (n, message) in expected.iter().enumerate() {
        assert_message(
            &next_json(&mut ws).await,
            message,
            &format!("websocket #{n}"),
        );
    }
    let ws_done = publishing.elapsed();
    for (n, message) in expected.iter().enumerate() {
        assert_message(&sse.next_message().await, message, &format!("sse #{n}"));
    }
    let sse_done = publishing.elapsed();
    let mut last_id = id_of(&expected[0]);
    for (n, message) in expected.iter().enumerate().skip(1) {
        let query = format!("room=lobby&last_id={last_id}");
        let resp = timeout(WAIT, cluster.spawn_poll(a, &query, &key))
            .await
            .expect("poll")
            .unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text);
        assert_message(&resp.json, message, &format!("poll #{n}"));
        last_id = id_of(message);
    }

    // Nothing else came in between: the next frame on each stream is the next message.
    let marker = cluster.publish(c, "lobby", json!({"marker": true})).await;
    assert_message(
        &next_json(&mut ws).await,
        &marker,
        "websocket after the run",
    );
    assert_message(&sse.next_message().await, &marker, "sse after the run");
    eprintln!(
        "cluster: 24 messages published on B and C; A's WebSocket had its 16 after {ws_done:?}, \
         its SSE after {sse_done:?}"
    );
}

/// Reads a stream's end and returns how long after `since` it came.
/// docs/api.md §10.1–§10.4, §11.5: a class changed on one node is used at once by the others (the
/// change travels on the control channel), and an object written on one node publishes its
/// change messages to subscribers on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_changes_on_one_node_reach_subscribers_and_classes_on_the_others() {
    let Some(services) = services() else { return };
    let cluster = Cluster::start(&services, 3, &[("HERALD_POLL_TIMEOUT", NO_SAFETY_NET)]).await;
    let (a, b, c) = (0, 1, 2);
    let key = cluster.rivia(a, "none").await;
    let classes = "/v1.1/instances/rivia/classes/";
    cluster
        .admin(
            a,
            Method::POST,
            classes,
            json!({"name": "contracts", "schema": [{"name": "title", "type": "string"}]}),
        )
        .await
        .assert_status(201);
    let objects = "/v1.1/instances/rivia/classes/contracts/objects/";
    // B and C read the class now, and cache it.
    for node in [b, c] {
        cluster
            .get(node, objects, Some(&key))
            .await
            .assert_status(200);
    }
    let mut ws = cluster
        .ws(
            a,
            "witchers",
            &format!("api_key={key}&room=board&last_id=0"),
        )
        .await;

    // A adds a field; B uses it within a second.
    cluster
        .admin(
            a,
            Method::PATCH,
            "/v1.1/instances/rivia/classes/contracts/",
            json!({"schema": [{"name": "title", "type": "string"},
                              {"name": "reward", "type": "integer"}]}),
        )
        .await
        .assert_status(200);
    let changed = Instant::now();
    let created = loop {
        let resp = cluster
            .admin(
                b,
                Method::POST,
                objects,
                json!({"title": "Griffin", "reward": 300, "channel": "witchers",
                       "channel_room": "board"}),
            )
            .await;
        if resp.status == 201 && resp.json["reward"] == 300 {
            break resp.json;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "node B still writes with the old schema: {} {}",
            resp.status,
            resp.text
        );
        sleep(Duration::from_millis(20)).await;
    };
    let id = created["id"].as_i64().expect("object id");
    // C updates and deletes it.
    cluster
        .admin(
            c,
            Method::PATCH,
            &format!("{objects}{id}/"),
            json!({"reward": {"_increment": 50}}),
        )
        .await
        .assert_status(200);
    let resp = cluster
        .request(
            c,
            Method::DELETE,
            &format!("{objects}{id}/"),
            Some(&cluster.admin_key),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 204);

    // The subscriber on A hears the story in order; a write that left an object of the old
    // schema behind would show a message without `reward`.
    let mut story = Vec::new();
    while story.len() < 3 {
        let message = next_json(&mut ws).await;
        story.push((message["action"].clone(), message["payload"].clone()));
    }
    assert_eq!(story[0].0, "create");
    assert_eq!(
        (story[0].1["id"].as_i64(), &story[0].1["reward"]),
        (Some(id), &json!(300))
    );
    assert_eq!(story[1].0, "update");
    assert_eq!(story[1].1["reward"], 350);
    assert_eq!(story[2], (json!("delete"), json!({"id": id})));
}

async fn ws_end_after(ws: &mut Ws, detail: &str, since: Instant) -> Duration {
    expect_error_then_close(ws, detail, 1008, WAIT).await;
    since.elapsed()
}

async fn sse_end_after(sse: &mut Sse, detail: &str, since: Instant) -> Duration {
    sse.expect_error_then_end(detail).await;
    since.elapsed()
}

#[track_caller]
fn assert_prompt(latency: Duration, what: &str) {
    assert!(
        latency < CHANGE_BOUND,
        "{what} took {latency:?} (bound {CHANGE_BOUND:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_node_close_streams_on_the_others_within_a_second() {
    let Some(services) = services() else { return };
    let cluster = Cluster::start(&services, 3, &[("HERALD_POLL_TIMEOUT", NO_SAFETY_NET)]).await;
    let (a, b, c) = (0, 1, 2);
    let bystander = cluster.rivia(b, "subscribe").await;
    let (reset_id, reset_key) = cluster.api_key(b, json!({"ignore_acl": true})).await;
    let (delete_id, delete_key) = cluster.api_key(b, json!({"ignore_acl": true})).await;
    let (_, reader) = cluster
        .api_key(b, json!({"allow_anonymous_read": true}))
        .await;

    let mut reset_ws = cluster
        .ws(a, "witchers", &format!("api_key={reset_key}&room=lobby"))
        .await;
    let mut delete_ws = cluster
        .ws(c, "witchers", &format!("api_key={delete_key}&room=lobby"))
        .await;
    let mut delete_sse = cluster.sse(a, "witchers", "room=lobby", &delete_key).await;
    let mut reader_ws = cluster
        .ws(a, "witchers", &format!("api_key={reader}&room=lobby"))
        .await;
    let mut bystander_ws = cluster
        .ws(a, "witchers", &format!("api_key={bystander}&room=lobby"))
        .await;
    let mut bystander_sse = cluster.sse(c, "witchers", "room=lobby", &bystander).await;
    // A message every stream receives shows that it is live (and watching for changes).
    let message = cluster.publish(c, "lobby", json!({"n": 0})).await;
    for ws in [
        &mut reset_ws,
        &mut delete_ws,
        &mut reader_ws,
        &mut bystander_ws,
    ] {
        assert_message(
            &next_json(ws).await,
            &message,
            "websocket before the changes",
        );
    }
    for sse in [&mut delete_sse, &mut bystander_sse] {
        assert_message(
            &sse.next_message().await,
            &message,
            "sse before the changes",
        );
    }
    let mut latencies = Vec::new();

    // A key reset on B closes its stream on A.
    let since = Instant::now();
    cluster
        .admin(
            b,
            Method::POST,
            &format!("/v1.1/instances/rivia/api_keys/{reset_id}/reset_key/"),
            json!({}),
        )
        .await
        .assert_status(200);
    let latency = ws_end_after(&mut reset_ws, PERMISSION_DENIED, since).await;
    assert_prompt(latency, "closing A's WebSocket after a key reset on B");
    latencies.push(("key reset → websocket on A", latency));
    // Other keys' streams go on.
    let message = cluster.publish(c, "lobby", json!({"n": 1})).await;
    assert_message(
        &next_json(&mut bystander_ws).await,
        &message,
        "bystander websocket",
    );
    assert_message(
        &bystander_sse.next_message().await,
        &message,
        "bystander sse",
    );
    assert_message(
        &next_json(&mut reader_ws).await,
        &message,
        "reader websocket",
    );
    assert_message(
        &next_json(&mut delete_ws).await,
        &message,
        "websocket to be deleted",
    );
    assert_message(
        &delete_sse.next_message().await,
        &message,
        "sse to be deleted",
    );

    // A key deletion on B closes its streams on C and A.
    let since = Instant::now();
    cluster
        .admin(
            b,
            Method::DELETE,
            &format!("/v1.1/instances/rivia/api_keys/{delete_id}/"),
            json!({}),
        )
        .await
        .assert_status(204);
    let (ws_latency, sse_latency) = tokio::join!(
        ws_end_after(&mut delete_ws, PERMISSION_DENIED, since),
        sse_end_after(&mut delete_sse, PERMISSION_DENIED, since),
    );
    assert_prompt(
        ws_latency,
        "closing C's WebSocket after a key deletion on B",
    );
    assert_prompt(
        sse_latency,
        "ending A's SSE stream after a key deletion on B",
    );
    latencies.push(("key deletion → websocket on C", ws_latency));
    latencies.push(("key deletion → sse on A", sse_latency));

    // Lowering other_permissions on B closes the anonymous reader's stream on A.
    let since = Instant::now();
    cluster
        .admin(
            b,
            Method::PATCH,
            "/v1.1/instances/rivia/channels/witchers/",
            json!({"other_permissions": "none"}),
        )
        .await
        .assert_status(200);
    let latency = ws_end_after(&mut reader_ws, PERMISSION_DENIED, since).await;
    assert_prompt(
        latency,
        "closing A's anonymous reader after a permission change on B",
    );
    latencies.push(("permission lowered → reader websocket on A", latency));
    // The trusted streams keep their right to the channel.
    let message = cluster.publish(b, "lobby", json!({"n": 2})).await;
    assert_message(
        &next_json(&mut bystander_ws).await,
        &message,
        "bystander websocket",
    );
    assert_message(
        &bystander_sse.next_message().await,
        &message,
        "bystander sse",
    );

    // Deleting the channel on B ends its streams and waiting polls everywhere.
    let waiting_poll = cluster.spawn_poll(a, "room=lobby", &bystander);
    sleep(Duration::from_millis(300)).await;
    let since = Instant::now();
    cluster
        .admin(
            b,
            Method::DELETE,
            "/v1.1/instances/rivia/channels/witchers/",
            json!({}),
        )
        .await
        .assert_status(204);
    let (ws_latency, sse_latency) = tokio::join!(
        ws_end_after(&mut bystander_ws, "Not found.", since),
        sse_end_after(&mut bystander_sse, "Not found.", since),
    );
    let poll = timeout(WAIT, waiting_poll)
        .await
        .expect("poll ended")
        .unwrap();
    let poll_latency = since.elapsed();
    poll.assert(404, json!({"detail": "Not found."}));
    assert_prompt(
        ws_latency,
        "closing A's WebSocket after the channel's deletion on B",
    );
    assert_prompt(
        sse_latency,
        "ending C's SSE stream after the channel's deletion on B",
    );
    assert_prompt(
        poll_latency,
        "ending A's waiting poll after the channel's deletion on B",
    );
    latencies.push(("channel deletion → websocket on A", ws_latency));
    latencies.push(("channel deletion → sse on C", sse_latency));
    latencies.push(("channel deletion → poll on A", poll_latency));

    // Deleting the instance on B ends its streams on C.
    let mut instance_ws = cluster
        .ws(c, "default", &format!("api_key={bystander}&room=lobby"))
        .await;
    let message = cluster
        .publish_to(b, "default", "lobby", json!({"n": 3}))
        .await;
    assert_message(
        &next_json(&mut instance_ws).await,
        &message,
        "default websocket",
    );
    let since = Instant::now();
    cluster
        .admin(b, Method::DELETE, "/v1.1/instances/rivia/", json!({}))
        .await
        .assert_status(204);
    let latency = ws_end_after(&mut instance_ws, "Not found.", since).await;
    assert_prompt(
        latency,
        "closing C's WebSocket after the instance's deletion on B",
    );
    latencies.push(("instance deletion → websocket on C", latency));

    eprintln!("cluster: change → stream end, across nodes: {latencies:?}");
}

/// What one subscriber received: ids and payloads with their arrival times.
type Arrivals = Arc<Mutex<Vec<(Value, Instant)>>>;

/// Follows a WebSocket on its own task, recording every message.
fn collect_ws(mut ws: Ws, arrivals: Arrivals) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            if let WsMessage::Text(text) = frame {
                let message: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                arrivals.lock().unwrap().push((message, Instant::now()));
            }
        }
    })
}

fn collect_sse(mut sse: Sse, arrivals: Arrivals) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let message = sse.next_message_within(Duration::from_secs(3600)).await;
            arrivals.lock().unwrap().push((message, Instant::now()));
        }
    })
}

/// Polls on and on with the last id received, recording every message.
fn collect_polls(cluster: &Cluster, node: usize, key: &str, arrivals: Arrivals) -> JoinHandle<()> {
    let client = cluster.client.clone();
    let base = cluster.url(
        node,
        "/v1.1/instances/rivia/channels/witchers/poll/?room=lobby",
    );
    let key = key.to_owned();
    tokio::spawn(async move {
        let mut last_id = 0;
        loop {
            let resp = client
                .get(format!("{base}&last_id={last_id}"))
                .header("X-API-KEY", &key)
                .send()
                .await
                .expect("poll");
            let resp = read_resp(resp).await;
            match resp.status {
                200 => {
                    last_id = id_of(&resp.json);
                    arrivals.lock().unwrap().push((resp.json, Instant::now()));
                }
                204 => {}
                other => panic!("poll: {other} {}", resp.text),
            }
        }
    })
}

/// Waits until `arrivals` holds `count` messages; returns when the last of them came.
async fn until_count(arrivals: &Arrivals, count: usize, bound: Duration, what: &str) -> Instant {
    let deadline = Instant::now() + bound;
    loop {
        {
            let arrivals = arrivals.lock().unwrap();
            if arrivals.len() >= count {
                return arrivals[count - 1].1;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {count} messages after {bound:?}",
                arrivals.len()
            );
        }
        sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_delays_delivery_but_loses_nothing() {
    let Some(services) = services() else { return };
    let cluster = Cluster::start(&services, 2, &[("HERALD_POLL_TIMEOUT", NO_SAFETY_NET)]).await;
    let (a, b) = (0, 1);
    let key = cluster.rivia(b, "none").await;

    let names = ["websocket on A", "sse on A", "poll on A", "websocket on B"];
    let arrivals: Vec<Arrivals> = names.iter().map(|_| Arrivals::default()).collect();
    let query = format!("api_key={key}&room=lobby&last_id=0");
    let mut tasks = vec![
        collect_ws(cluster.ws(a, "witchers", &query).await, arrivals[0].clone()),
        collect_sse(
            cluster
                .sse(a, "witchers", "room=lobby&last_id=0", &key)
                .await,
            arrivals[1].clone(),
        ),
        collect_polls(&cluster, a, &key, arrivals[2].clone()),
        collect_ws(cluster.ws(b, "witchers", &query).await, arrivals[3].clone()),
    ];
    sleep(Duration::from_millis(300)).await;

    // Both nodes publish while Redis is there: everyone has everything.
    let mut published = Vec::new();
    for n in 0..6 {
        let node = [a, b][n % 2];
        published.push(cluster.publish(node, "lobby", json!({"n": n})).await);
    }
    for (arrivals, name) in arrivals.iter().zip(names) {
        until_count(arrivals, published.len(), WAIT, name).await;
    }

    // Redis goes away. PostgreSQL is the source of truth: publishing goes on.
    let cut_at = Instant::now();
    cluster.proxy.cut();
    let (status_a, health_a) = cluster.until_fanout(a, REDIS_DOWN).await;
    // docs/api.md §11.1: a node without its fan-out is unhealthy (503), though it keeps serving.
    assert_eq!(
        (status_a, &health_a["storage"]),
        (503, &json!("ok")),
        "{health_a}"
    );
    cluster.until_fanout(b, REDIS_DOWN).await;
    for n in 6..26 {
        published.push(cluster.publish(b, "lobby", json!({"n": n})).await);
    }
    sleep(Duration::from_secs(1).saturating_sub(cut_at.elapsed())).await;
    let during_cut = arrivals[0].lock().unwrap().len() - 6;

    // Redis is back: A reads what it missed from storage.
    cluster.proxy.restore();
    let restored = Instant::now();
    let mut repair = Duration::ZERO;
    for (arrivals, name) in arrivals.iter().zip(names) {
        let last = until_count(arrivals, published.len(), Duration::from_secs(10), name).await;
        repair = repair.max(last.saturating_duration_since(restored));
    }
    cluster.until_fanout(a, "ok").await;
    cluster.until_fanout(b, "ok").await;
    let reconnected = restored.elapsed();
    // A read from storage what Redis did not bring it (docs/api.md §11.2).
    let repaired = cluster.metric(a, "herald_fanout_gaps_repaired_total").await;
    assert!(
        repaired >= 20.0 - during_cut as f64,
        "A repaired {repaired} messages; {during_cut} arrived during the cut"
    );

    // After the outage each node's announcements reach the other again at once, also from
    // A, which published nothing while Redis was away.
    for (n, node) in [(26, a), (27, b), (28, a)] {
        let since = Instant::now();
        published.push(cluster.publish(node, "lobby", json!({"n": n})).await);
        for (arrivals, name) in arrivals.iter().zip(names) {
            let bound = Duration::from_secs(2);
            let what = format!("{name}, message {n} published after the outage");
            until_count(arrivals, published.len(), bound, &what).await;
        }
        assert!(since.elapsed() < Duration::from_secs(2));
    }

    // Every subscriber got exactly what was published, in order, intact.
    for (arrivals, name) in arrivals.iter().zip(names) {
        let arrivals = arrivals.lock().unwrap();
        let received: Vec<&Value> = arrivals.iter().map(|(message, _)| message).collect();
        let expected: Vec<Value> = published.iter().map(without_links).collect();
        assert_eq!(received, expected.iter().collect::<Vec<_>>(), "{name}");
    }
    for task in tasks.drain(..) {
        task.abort();
    }
    assert!(
        repair < Duration::from_secs(5),
        "repair after the outage took {repair:?}"
    );
    eprintln!(
        "cluster: Redis cut for {:?} (A's /health said {status_a} {health_a}); {during_cut} of \
         20 messages reached A's WebSocket during the cut; all subscribers had all 26 \
         {repair:?} after restore; both nodes reported fanout ok again after {reconnected:?}",
        restored.duration_since(cut_at)
    );
}

/// Three rooms over three nodes; shorter than the single-node storm, to leave time for the
/// mischief and stay within a minute on two busy cores.
const CLUSTER_ROOMS: [&str; 3] = ["north", "south", "west"];
const CLUSTER_PUBLISHERS: usize = 4;
const CLUSTER_MESSAGES_PER_PUBLISHER: usize = 1500;
/// Object writers mix data-object change messages into the storm (docs/api.md §10.4).
const CLUSTER_OBJECT_WRITERS: usize = 1;
const CLUSTER_WRITES_PER_OBJECT_WRITER: usize = 800;
const CLUSTER_SUBSCRIBERS: usize = 18;
/// Publishers pause up to this long between publishes (5 ms on average), so that the storm
/// lasts long enough (about 15 s) for subscribers to come and go around the mischief.
const CLUSTER_PACE: Duration = Duration::from_millis(10);

/// Waits until `progress` reaches `target` acknowledged publishes; bounded.
async fn until_progress(progress: &AtomicUsize, target: usize, seed: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::SeqCst) < target {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: publishing stalled at {} (waiting for {target})",
            progress.load(Ordering::SeqCst)
        );
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_over_three_nodes_with_a_redis_cut_and_a_killed_node() {
    let Some(services) = services() else { return };
    let seed = chaos::chaos_seed();
    eprintln!("cluster chaos: seed {seed} (rerun with CHAOS_SEED={seed})");
    let started = Instant::now();
    let mut cluster = Cluster::start(
        &services,
        3,
        &[
            // Safety timer: 500 ms.
            ("HERALD_POLL_TIMEOUT", "5s"),
            // Small queues, so lagging and overflow are part of the storm (as on one node).
            ("HERALD_STREAM_QUEUE", "8"),
        ],
    )
    .await;
    cluster
        .admin(
            0,
            Method::POST,
            "/v1.1/instances/",
            json!({"name": INSTANCE}),
        )
        .await
        .assert_status(201);
    let key = cluster
        .admin(
            0,
            Method::POST,
            &format!("/v1.1/instances/{INSTANCE}/api_keys/"),
            json!({"ignore_acl": true}),
        )
        .await
        .assert_status(201)["api_key"]
        .as_str()
        .expect("api_key")
        .to_owned();
    cluster
        .admin(
            1,
            Method::POST,
            &format!("/v1.1/instances/{INSTANCE}/channels/"),
            json!({"name": CHANNEL, "type": "separate_rooms", "custom_publish": true}),
        )
        .await
        .assert_status(201);
    cluster
        .admin(
            2,
            Method::POST,
            &format!("/v1.1/instances/{INSTANCE}/classes/"),
            json!({"name": chaos::CLASS, "schema": [
                {"name": "tag", "type": "integer"}, {"name": "n", "type": "integer"}
            ]}),
        )
        .await
        .assert_status(201);

    let progress = Arc::new(AtomicUsize::new(0));
    let storm = tokio::spawn(chaos::run_storm(Storm {
        seed,
        nodes: (0..3).map(|n| cluster.socket_addr(n)).collect(),
        // Node 0 is never killed.
        history_node: cluster.socket_addr(0),
        nodes_may_fail: true,
        key,
        rooms: &CLUSTER_ROOMS,
        publishers: CLUSTER_PUBLISHERS,
        messages_per_publisher: CLUSTER_MESSAGES_PER_PUBLISHER,
        object_writers: CLUSTER_OBJECT_WRITERS,
        writes_per_object_writer: CLUSTER_WRITES_PER_OBJECT_WRITER,
        subscribers: CLUSTER_SUBSCRIBERS,
        pace: CLUSTER_PACE,
        publish_timeout: Duration::from_secs(50),
        catch_up_timeout: Duration::from_secs(20),
        progress: progress.clone(),
    }));

    // The mischief, timed by publishing progress so that it always lands mid-storm.
    let total = CLUSTER_PUBLISHERS * CLUSTER_MESSAGES_PER_PUBLISHER
        + CLUSTER_OBJECT_WRITERS * CLUSTER_WRITES_PER_OBJECT_WRITER;
    let victim = 1 + (seed % 2) as usize;
    let mut timeline = Vec::new();
    until_progress(&progress, total / 5, seed).await;
    cluster.proxy.cut();
    timeline.push(format!("{:?} Redis cut", started.elapsed()));
    sleep(Duration::from_secs(1)).await;
    cluster.proxy.restore();
    timeline.push(format!("{:?} Redis restored", started.elapsed()));
    until_progress(&progress, total * 11 / 20, seed).await;
    cluster.kill(victim).await;
    timeline.push(format!("{:?} node {victim} killed", started.elapsed()));
    sleep(Duration::from_secs(1)).await;
    cluster.restart(victim).await;
    timeline.push(format!(
        "{:?} node {victim} restarted (publishes acknowledged: {} of {total})",
        started.elapsed(),
        progress.load(Ordering::SeqCst)
    ));

    let report = match storm.await {
        Ok(report) => report,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    };
    eprintln!(
        "cluster chaos: {}; {}; total {:?}",
        timeline.join(", "),
        report.summary,
        started.elapsed()
    );
}

/// Publishes raw bytes on a Redis channel, as anyone with access to Redis can; returns how
/// many subscribers Redis handed them to.
async fn publish_raw(redis_url: &str, channel: &str, payload: &[u8]) -> i64 {
    let client = redis::Client::open(redis_url).expect("HERALD_TEST_REDIS_URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(&mut conn)
        .await
        .expect("PUBLISH")
}

/// The tag a node of the cluster whose secret is `secret` puts before `body` (the wire format
/// of `src/cluster/tag.rs`).
fn cluster_tag(secret: &[u8], topic: u8, body: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC key");
    mac.update(&[topic]);
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// docs/api.md §11.5: nothing read from Redis is trusted without the cluster's tag. Forgeries of the
/// next message and of the channel's deletion, untagged, wrongly tagged or cut short, reach
/// every node; each drops them, warns once with the count and goes on, and the genuine next
/// message is delivered once. The same forgery with the cluster's tag is taken: the tag alone
/// kept the others out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_redis_without_the_cluster_tag_are_dropped_and_counted() {
    let Some(services) = services() else { return };
    let prefix = format!("herald-test-{:016x}", rand::random::<u64>());
    let cluster = Cluster::start(
        &services,
        2,
        &[
            ("HERALD_POLL_TIMEOUT", NO_SAFETY_NET),
            ("HERALD_REDIS_PREFIX", &prefix),
        ],
    )
    .await;
    let (a, b) = (0, 1);
    for node in [a, b] {
        assert_eq!(cluster.prefix(node).await, prefix, "node {node}");
    }
    let key = cluster.rivia(b, "none").await;
    let (instance_id, channel_id) = cluster.witchers_ids().await;
    let first = cluster.publish(b, "lobby", json!({"n": 1})).await;
    let next = id_of(&first) + 1;

    // A's subscribers wait for the next id.
    let query = format!("room=lobby&last_id={}", id_of(&first));
    let mut ws = cluster
        .ws(a, "witchers", &format!("api_key={key}&{query}"))
        .await;
    let mut poll = cluster.spawn_poll(a, &query, &key);
    sleep(Duration::from_millis(300)).await;

    let header = json!({"node": 1, "channel": channel_id, "id": next, "room": "lobby"});
    let forged = json!({"id": next, "room": "lobby", "action": "custom", "author": {},
                        "metadata": {}, "payload": {"forged": true},
                        "created_at": first["created_at"]});
    let announcement = format!("{header}\n{forged}").into_bytes();
    let deletion = json!({"node": 1, "change": {"kind": "channel_deleted",
                          "instance_id": instance_id, "name": "witchers",
                          "channel_id": channel_id}})
    .to_string()
    .into_bytes();
    let wrong_tag: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let messages = format!("{prefix}:messages");
    let control = format!("{prefix}:control");
    let forgeries = [
        (&messages, announcement.clone()),
        (&messages, [&wrong_tag[..], &announcement].concat()),
        (&messages, wrong_tag[..31].to_vec()),
        (&control, deletion.clone()),
        (&control, [&wrong_tag[..], &deletion].concat()),
    ];
    for (channel, payload) in &forgeries {
        let receivers = publish_raw(&services.redis_url, channel, payload).await;
        assert_eq!(
            receivers, 2,
            "both nodes hear what is published on {channel}"
        );
    }

    // Nothing was delivered, nothing was closed.
    assert_quiet(&mut ws).await;
    assert_waiting(&mut poll).await;
    // Each node counted the forgeries and warned once (the first at once, the rest are held for
    // the next warning, a minute later).
    for node in [a, b] {
        let warning = cluster.until_logged(node, REJECTED).await;
        assert!(
            warning.contains("dropped 1 Redis message without a valid tag (1 since start)")
                && warning.contains(&format!("prefix {prefix}?")),
            "node {node}: {warning}"
        );
        let warnings = cluster.log(node).matches(REJECTED).count();
        assert_eq!(warnings, 1, "node {node}:\n{}", cluster.log(node));
    }

    // The genuine next message is delivered, once.
    let genuine = cluster.publish(b, "lobby", json!({"n": 2})).await;
    assert_eq!(id_of(&genuine), next);
    let resp = timeout(WAIT, poll)
        .await
        .expect("the poll answered")
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_message(&resp.json, &genuine, "poll");
    assert_message(&next_json(&mut ws).await, &genuine, "websocket");
    // Each node counted every forgery (docs/api.md §11.2).
    for node in [a, b] {
        let deadline = Instant::now() + WAIT;
        loop {
            let rejected = cluster
                .metric(node, "herald_cluster_messages_rejected_total")
                .await;
            if rejected == forgeries.len() as f64 {
                break;
            }
            assert!(Instant::now() < deadline, "node {node} counted {rejected}");
            sleep(Duration::from_millis(20)).await;
        }
    }

    // The control: the cluster's own tag on a forgery of the id after it gets it through.
    let secret: Vec<u8> = cluster
        .query_one("SELECT secret FROM cluster_identity")
        .await;
    let header = json!({"node": 1, "channel": channel_id, "id": next + 1, "room": "lobby"});
    let forged = json!({"id": next + 1, "room": "lobby", "action": "custom", "author": {},
                        "metadata": {}, "payload": {"forged": true},
                        "created_at": first["created_at"]});
    let announcement = format!("{header}\n{forged}").into_bytes();
    let tagged = [cluster_tag(&secret, b'm', &announcement), announcement].concat();
    publish_raw(&services.redis_url, &messages, &tagged).await;
    assert_eq!(
        next_json(&mut ws).await,
        forged,
        "websocket after the genuine message"
    );
}

/// docs/api.md §11.5: two clusters on one Redis, neither setting a prefix, never see each other's
/// traffic, though their instances, channels, rooms and message ids are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_sharing_a_redis_without_a_prefix_never_see_each_other() {
    let Some(services) = services() else { return };
    let settings = [("HERALD_POLL_TIMEOUT", NO_SAFETY_NET)];
    let (x, y) = tokio::join!(
        Cluster::start(&services, 2, &settings),
        Cluster::start(&services, 2, &settings)
    );
    let prefixes = [x.prefix(0).await, y.prefix(0).await];
    assert_eq!(x.prefix(1).await, prefixes[0]);
    assert_eq!(y.prefix(1).await, prefixes[1]);
    assert_ne!(prefixes[0], prefixes[1]);
    for prefix in &prefixes {
        assert!(prefix.starts_with("herald:"), "{prefix}");
    }
    let keys = [x.rivia(0, "none").await, y.rivia(0, "none").await];
    assert_eq!(x.witchers_ids().await, y.witchers_ids().await);

    let query = |key: &str| format!("api_key={key}&room=lobby&last_id=0");
    let mut x_ws = x.ws(0, "witchers", &query(&keys[0])).await;
    let mut y_ws = y.ws(0, "witchers", &query(&keys[1])).await;
    sleep(Duration::from_millis(300)).await;
    let mut published = [Vec::new(), Vec::new()];
    for n in 0..5 {
        published[0].push(x.publish(1, "lobby", json!({"cluster": "x", "n": n})).await);
        published[1].push(y.publish(1, "lobby", json!({"cluster": "y", "n": n})).await);
    }
    assert_eq!(id_of(&published[0][4]), id_of(&published[1][4]));
    for (ws, published, name) in [
        (&mut x_ws, &published[0], "x"),
        (&mut y_ws, &published[1], "y"),
    ] {
        for (n, message) in published.iter().enumerate() {
            assert_message(
                &next_json(ws).await,
                message,
                &format!("cluster {name} #{n}"),
            );
        }
        assert_quiet(ws).await;
    }
    // Neither heard (and dropped) anything of the other's.
    for (cluster, name) in [(&x, "x"), (&y, "y")] {
        for node in 0..2 {
            let log = cluster.log(node);
            assert!(
                !log.contains(REJECTED),
                "cluster {name}, node {node}:\n{log}"
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_redis_stops_startup_without_showing_its_password() {
    let Some(services) = services() else { return };
    let db = TestDb::postgres(&services.database_url).await;
    let mut env = db.env();
    env.push((
        "HERALD_REDIS_URL",
        "redis://:Secret-Pass-3@127.0.0.1:1".to_owned(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, _, stderr) = run_herald(&["serve", "--listen", "127.0.0.1:0"], &env).await;
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("could not connect to Redis at redis://:***@127.0.0.1:1")
            && stderr.contains("is it running?"),
        "{stderr}"
    );
    assert!(!stderr.contains("Secret-Pass-3"), "{stderr}");
}

#[tokio::test]
async fn redis_with_a_sqlite_database_stops_startup_naming_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("h.db").display());
    let (code, _, stderr) = run_herald(
        &["serve", "--listen", "127.0.0.1:0", "--database-url", &db],
        &[("HERALD_REDIS_URL", "redis://127.0.0.1:1")],
    )
    .await;
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    assert!(stderr.contains("HERALD_REDIS_URL"), "{stderr}");
}
