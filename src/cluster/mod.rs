//! Cluster mode: several nodes on one PostgreSQL, told about each other's work through Redis.
//!
//! PostgreSQL is the source of truth; Redis pub/sub only announces (docs/api.md §11.5). Every committed
//! message is announced on `<prefix>:messages`; each node hands announcements to its own subscribers
//! through one sequencer task that delivers a channel's ids strictly in order. Announcements
//! from different nodes can arrive out of order or not at all (Redis restarts, dropped
//! connections, a full publish queue), so a node that sees a gap waits a moment for the missing
//! ids, then reads them from storage; it also re-reads every watched channel when Redis comes
//! back and on a safety timer. Delay is possible; loss, duplication and reordering are not.
//!
//! Changes that make cached rows or open streams stale (key resets, deletions, permission
//! changes) go out on `<prefix>:control`, so every node forgets them and re-checks its streams.
//!
//! Nothing read from Redis is trusted unless it carries a valid tag made with the cluster secret
//! from the database (see `tag`); anything else is counted and dropped. The prefix defaults to
//! `herald:<cluster id>`, so clusters sharing a Redis do not even see each other's traffic.

mod queue;
mod tag;
mod throttle;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::access::Change;
use crate::config::RedisUrl;
use crate::hub::{Delivery, Hub};
use crate::metrics::Metrics;
use crate::store::{ClusterIdentity, CommitListener, Message, MessageStore};
use queue::{Outbound, Taken};
use tag::{Signer, Topic};
use throttle::Throttle;

/// How long a gap may stay open waiting for announcements before storage is read. Nodes
/// announce right after their commits, so a later id usually arrives within a millisecond.
const GAP_WAIT: Duration = Duration::from_millis(15);
/// Messages read from storage per query while repairing.
const REPAIR_PAGE: i64 = 512;
/// Announcements sent to Redis in one pipeline.
const PUBLISH_BATCH: usize = 256;
/// Least time between two warnings about rejected or dropped Redis messages.
const WARNING_PERIOD: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct ControlMessage {
    node: u64,
    change: Change,
}

/// The header of an announcement on `<prefix>:messages`: one JSON line, then the message's JSON as
/// subscribers receive it, so no node encodes a message twice.
#[derive(Serialize, Deserialize)]
struct Announcement<'a> {
    /// The announcing node, so it can skip its own.
    node: u64,
    channel: i64,
    id: i64,
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
}

/// The Redis channel names of one cluster.
#[derive(Clone)]
struct Topics {
    prefix: Arc<str>,
    messages: Arc<str>,
    control: Arc<str>,
}

impl Topics {
    fn new(prefix: &str) -> Topics {
        Topics {
            prefix: prefix.into(),
            messages: format!("{prefix}:messages").into(),
            control: format!("{prefix}:control").into(),
        }
    }

    fn name(&self, topic: Topic) -> &str {
        match topic {
            Topic::Messages => &self.messages,
            Topic::Control => &self.control,
        }
    }

    fn of(&self, channel: &str) -> Option<Topic> {
        [Topic::Messages, Topic::Control]
            .into_iter()
            .find(|topic| self.name(*topic) == channel)
    }
}

/// The Redis channel prefix of a cluster that sets none: its own, so that clusters sharing a
/// Redis never see each other's traffic.
pub fn default_prefix(cluster_id: &str) -> String {
    format!("herald:{cluster_id}")
}

/// What the sequencer acts on.
enum Event {
    Message {
        channel_id: i64,
        id: i64,
        room: Option<String>,
        delivery: Arc<Delivery>,
    },
    /// Re-read every watched channel from storage (Redis came back).
    Resync,
}

/// The Redis side of a node: announces its commits and changes, and feeds what other nodes
/// announce to the local hub in order.
pub struct Cluster {
    node: u64,
    events: mpsc::UnboundedSender<Event>,
    outbound: Arc<Outbound>,
    connected: Arc<AtomicBool>,
    /// `herald_cluster_messages_rejected_total`.
    rejected: IntCounter,
}

/// The relay's tasks, ready to start once the store (which reports commits to the [`Cluster`]
/// and holds the cluster secret) is open.
pub struct Relay {
    node: u64,
    events: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    outbound: Arc<Outbound>,
    connected: Arc<AtomicBool>,
    rejected: IntCounter,
    /// `herald_fanout_gaps_repaired_total`.
    repaired: IntCounter,
}

/// Where, and as which cluster, a node talks on Redis.
pub struct Redis<'a> {
    pub url: &'a RedisUrl,
    /// The channel prefix; `None` for [`default_prefix`].
    pub prefix: Option<&'a str>,
    pub identity: &'a ClusterIdentity,
}

impl Cluster {
    /// A node's cluster side, not yet talking to Redis: announcements wait in a queue of at
    /// most `queue` messages until [`Relay::start`]. It counts in `metrics`.
    pub fn new(queue: usize, metrics: &Metrics) -> (Arc<Cluster>, Relay) {
        let node = rand::random::<u64>();
        let (events, events_rx) = mpsc::unbounded_channel();
        let outbound = Arc::new(Outbound::new(queue));
        let connected = Arc::new(AtomicBool::new(false));
        let rejected = metrics.cluster_rejected.clone();
        let cluster = Arc::new(Cluster {
            node,
            events: events.clone(),
            outbound: outbound.clone(),
            connected: connected.clone(),
            rejected: rejected.clone(),
        });
        let relay = Relay {
            node,
            events,
            events_rx,
            outbound,
            connected,
            rejected,
            repaired: metrics.gaps_repaired.clone(),
        };
        (cluster, relay)
    }

    /// Tells the other nodes about a change (this node has applied it already).
    pub fn announce(&self, change: Change) {
        let message = ControlMessage {
            node: self.node,
            change,
        };
        if let Ok(bytes) = serde_json::to_vec(&message) {
            self.outbound.push(Topic::Control, Bytes::from(bytes));
        }
    }

    /// Whether the Redis subscription is up, for `/health`.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Messages read from Redis and dropped since start because their tag was missing or wrong.
    pub fn rejected_messages(&self) -> u64 {
        self.rejected.get()
    }

    /// Stops taking announcements: the publisher sends what is queued, then ends. For the end
    /// of shutdown, once no request can publish any more.
    pub fn close(&self) {
        self.outbound.close();
    }
}

impl Drop for Cluster {
    /// The publisher ends once it has sent what is queued.
    fn drop(&mut self) {
        self.outbound.close();
    }
}

impl Relay {
    /// Subscribes to the cluster's Redis channels (failing with a clear message when it
    /// cannot), then starts the publisher, the listener and the sequencer on `tasks`. Returns
    /// the changes other nodes announce, for the caller to apply. The publisher ends after
    /// [`Cluster::close`], the others when `shutdown` fires.
    pub async fn start(
        self,
        redis: Redis<'_>,
        hub: Hub,
        store: Arc<dyn MessageStore>,
        safety_period: Duration,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<mpsc::UnboundedReceiver<Change>> {
        let url = redis.url;
        let client = redis::Client::open(url.0.as_str())
            .map_err(|err| anyhow::anyhow!("invalid Redis URL {url}: {err}"))?;
        let prefix = redis
            .prefix
            .map_or_else(|| default_prefix(&redis.identity.id), str::to_owned);
        let topics = Topics::new(&prefix);
        let pubsub = subscribe(&client, &topics).await.map_err(|err| {
            anyhow::anyhow!("could not connect to Redis at {url}: {err}; is it running?")
        })?;
        self.connected.store(true, Ordering::Relaxed);
        let id = &redis.identity.id;
        tracing::info!(
            "cluster {id}: announcing on Redis channels {prefix}:messages and {prefix}:control"
        );
        let signer = Signer::new(&redis.identity.secret);

        let (changes_tx, changes) = mpsc::unbounded_channel();
        hub.sequence_from(store.clone());
        tasks.spawn(publish_loop(
            client.clone(),
            topics.clone(),
            signer.clone(),
            self.outbound,
        ));
        let listener = Listener {
            topics,
            client,
            signer,
            node: self.node,
            events: self.events,
            changes: changes_tx,
            connected: self.connected,
            rejected: self.rejected,
        };
        tasks.spawn(listener.run(Some(pubsub), shutdown.clone()));
        tasks.spawn(sequence(
            Sequencer {
                hub,
                store,
                repaired: self.repaired,
            },
            self.events_rx,
            safety_period,
            shutdown,
        ));
        Ok(changes)
    }
}

impl CommitListener for Cluster {
    fn committed(&self, channel_id: i64, message: &Message) {
        let json = crate::render::message_json(message, None);
        let announcement = Announcement {
            node: self.node,
            channel: channel_id,
            id: message.id,
            room: message.room.as_deref().map(Cow::Borrowed),
        };
        // One buffer: the header line, then the JSON. Redis gets all of it (after its tag);
        // local subscribers share the JSON part of the same allocation.
        let mut bytes = Vec::with_capacity(json.len() + 64);
        if serde_json::to_writer(&mut bytes, &announcement).is_err() {
            return;
        }
        bytes.push(b'\n');
        let header = bytes.len();
        bytes.extend_from_slice(&json);
        let bytes = Bytes::from(bytes);
        let _ = self.events.send(Event::Message {
            channel_id,
            id: message.id,
            room: message.room.clone(),
            delivery: Arc::new(Delivery::new(message.id, bytes.slice(header..))),
        });
        self.outbound.push(Topic::Messages, bytes);
    }
}

async fn subscribe(
    client: &redis::Client,
    topics: &Topics,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub
        .subscribe(&[&*topics.messages, &*topics.control])
        .await?;
    Ok(pubsub)
}

/// Sends announcements in pipelined batches, each with its tag. When Redis is away they are
/// dropped: the other nodes repair from storage when it returns.
///
/// A connection Redis dropped while this node had nothing to announce is only found dead by
/// the next write. That batch is sent again on a fresh connection: dropping it would leave the
/// other nodes (which re-read storage when *their* subscription came back, before it) without
/// those messages until their safety timer.
async fn publish_loop(
    client: redis::Client,
    topics: Topics,
    signer: Signer,
    outbound: Arc<Outbound>,
) {
    let mut connection = None;
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut overflow = Throttle::new(WARNING_PERIOD);
    let mut dropped_total = 0;
    while let Taken::Batch { dropped } = outbound.take(&mut batch, PUBLISH_BATCH).await {
        dropped_total += dropped;
        if let Some(count) = overflow.record(dropped, Instant::now()) {
            tracing::warn!(
                "the Redis publish queue was full: dropped the oldest {count} announcements \
                 ({dropped_total} since start); other nodes read them from storage, later. \
                 If Redis is up but slow, raise --redis-queue"
            );
        }
        let mut pipe = redis::pipe();
        for (topic, payload) in batch.iter() {
            pipe.publish(topics.name(*topic), signer.tag(*topic, payload))
                .ignore();
        }
        loop {
            let fresh = connection.is_none();
            if fresh {
                connection = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.get_multiplexed_async_connection(),
                )
                .await
                .ok()
                .and_then(Result::ok);
            }
            let Some(conn) = connection.as_mut() else {
                break;
            };
            let Err(err) = pipe.query_async::<()>(conn).await else {
                break;
            };
            connection = None;
            if fresh {
                tracing::warn!(
                    "Redis publish failed ({err}); other nodes will repair from storage"
                );
                break;
            }
            tracing::debug!("Redis publish failed on an old connection ({err}); reconnecting");
        }
        batch.clear();
    }
}

/// Receives announcements and changes, reconnecting when Redis goes away. After a reconnect
/// everything this node might have missed is re-read.
struct Listener {
    topics: Topics,
    client: redis::Client,
    signer: Signer,
    node: u64,
    events: mpsc::UnboundedSender<Event>,
    changes: mpsc::UnboundedSender<Change>,
    connected: Arc<AtomicBool>,
    rejected: IntCounter,
}

impl Listener {
    async fn run(self, mut pubsub: Option<redis::aio::PubSub>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        let mut rejections = Throttle::new(WARNING_PERIOD);
        loop {
            let Some(current) = pubsub.take() else {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                match subscribe(&self.client, &self.topics).await {
                    Ok(fresh) => {
                        tracing::info!("Redis connection restored; re-reading watched channels");
                        pubsub = Some(fresh);
                        backoff = Duration::from_millis(50);
                        self.connected.store(true, Ordering::Relaxed);
                        let _ = self.changes.send(Change::Everything);
                        let _ = self.events.send(Event::Resync);
                    }
                    Err(err) => {
                        tracing::debug!("Redis still unavailable: {err}");
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
                continue;
            };
            let mut messages = current.into_on_message();
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = wait_until(rejections.due()) => {
                        let count = rejections.flush(Instant::now());
                        self.warn_rejected(count);
                        continue;
                    }
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                let Some(topic) = self.topics.of(message.get_channel_name()) else {
                    continue;
                };
                match self.signer.open(topic, message.get_payload_bytes()) {
                    Some(body) => self.receive(topic, body),
                    None => {
                        self.rejected.inc();
                        self.warn_rejected(rejections.record(1, Instant::now()));
                    }
                }
            }
            self.connected.store(false, Ordering::Relaxed);
            tracing::warn!("lost the Redis subscription; reconnecting (storage repairs any gap)");
        }
    }

    /// Acts on a message whose tag was valid.
    fn receive(&self, topic: Topic, body: &[u8]) {
        match topic {
            Topic::Messages => {
                let Some(split) = body.iter().position(|&b| b == b'\n') else {
                    return;
                };
                let Ok(announced) = serde_json::from_slice::<Announcement>(&body[..split]) else {
                    return;
                };
                if announced.node == self.node {
                    return;
                }
                let json = Bytes::copy_from_slice(&body[split + 1..]);
                let _ = self.events.send(Event::Message {
                    channel_id: announced.channel,
                    id: announced.id,
                    room: announced.room.map(Cow::into_owned),
                    delivery: Arc::new(Delivery::new(announced.id, json)),
                });
            }
            Topic::Control => {
                if let Ok(control) = serde_json::from_slice::<ControlMessage>(body)
                    && control.node != self.node
                {
                    let _ = self.changes.send(control.change);
                }
            }
        }
    }

    fn warn_rejected(&self, count: Option<u64>) {
        let Some(count) = count else { return };
        let total = self.rejected.get();
        let plural = if count == 1 { "" } else { "s" };
        tracing::warn!(
            "dropped {count} Redis message{plural} without a valid tag ({total} since start); \
             is another cluster or a stranger publishing on prefix {}? Nodes of one cluster \
             share the secret in its database",
            self.topics.prefix
        );
    }
}

/// Out-of-order announcements of one channel, held until the ids before them arrive.
struct Gap {
    since: Instant,
    held: BTreeMap<i64, (Option<String>, Arc<Delivery>)>,
}

/// What the sequencer delivers to and repairs from.
struct Sequencer {
    hub: Hub,
    store: Arc<dyn MessageStore>,
    /// Messages read from storage because Redis did not bring them in time.
    repaired: IntCounter,
}

/// Delivers each watched channel's messages to the hub in id order, exactly once.
async fn sequence(
    sequencer: Sequencer,
    mut events: mpsc::UnboundedReceiver<Event>,
    safety_period: Duration,
    shutdown: CancellationToken,
) {
    let hub = &sequencer.hub;
    let mut gaps: HashMap<i64, Gap> = HashMap::new();
    let mut safety = tokio::time::interval_at(Instant::now() + safety_period, safety_period);
    safety.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let oldest_gap = gaps.values().map(|gap| gap.since).min();
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = events.recv() => match event {
                None => return,
                Some(Event::Message { channel_id, id, room, delivery }) => {
                    let Some(delivered) = hub.delivered(channel_id) else {
                        gaps.remove(&channel_id);
                        continue;
                    };
                    if id <= delivered {
                        continue;
                    }
                    if id == delivered + 1 {
                        hub.deliver(channel_id, id, &room, || delivery);
                        release(hub, &mut gaps, channel_id);
                    } else {
                        gaps.entry(channel_id)
                            .or_insert_with(|| Gap { since: Instant::now(), held: BTreeMap::new() })
                            .held
                            .insert(id, (room, delivery));
                    }
                }
                Some(Event::Resync) => sequencer.repair_all(&mut gaps).await,
            },
            () = wait_until(oldest_gap.map(|since| since + GAP_WAIT)) => {
                let now = Instant::now();
                let expired: Vec<i64> = gaps
                    .iter()
                    .filter(|(_, gap)| gap.since + GAP_WAIT <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for channel_id in expired {
                    sequencer.repair(&mut gaps, channel_id).await;
                }
            }
            _ = safety.tick() => sequencer.repair_all(&mut gaps).await,
        }
    }
}

async fn wait_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Delivers held messages that have become next in line.
fn release(hub: &Hub, gaps: &mut HashMap<i64, Gap>, channel_id: i64) {
    let Some(gap) = gaps.get_mut(&channel_id) else {
        return;
    };
    while let Some(delivered) = hub.delivered(channel_id) {
        let Some(entry) = gap.held.first_entry() else {
            break;
        };
        let id = *entry.key();
        if id <= delivered {
            entry.remove();
        } else if id == delivered + 1 {
            let (room, delivery) = entry.remove();
            hub.deliver(channel_id, id, &room, || delivery);
        } else {
            return;
        }
    }
    gaps.remove(&channel_id);
}

impl Sequencer {
    async fn repair_all(&self, gaps: &mut HashMap<i64, Gap>) {
        for (channel_id, _) in self.hub.watched() {
            self.repair(gaps, channel_id).await;
        }
    }

    /// Reads what a channel's subscribers here have not been given from storage, in order.
    async fn repair(&self, gaps: &mut HashMap<i64, Gap>, channel_id: i64) {
        let hub = &self.hub;
        loop {
            let Some(delivered) = hub.delivered(channel_id) else {
                gaps.remove(&channel_id);
                return;
            };
            let messages = match self
                .store
                .messages_after(channel_id, delivered, REPAIR_PAGE)
                .await
            {
                Ok(messages) => messages,
                Err(err) => {
                    // Storage is away: keep the gap and try again on the next tick.
                    tracing::warn!("could not repair channel {channel_id} from storage: {err}");
                    if let Some(gap) = gaps.get_mut(&channel_id) {
                        gap.since = Instant::now();
                    }
                    return;
                }
            };
            self.repaired.inc_by(messages.len() as u64);
            for message in &messages {
                hub.deliver(channel_id, message.id, &message.room, || {
                    Arc::new(Delivery::new(
                        message.id,
                        Bytes::from(crate::render::message_json(message, None)),
                    ))
                });
            }
            if (messages.len() as i64) < REPAIR_PAGE {
                break;
            }
        }
        // Held announcements are now delivered or older than storage's end; ids storage no
        // longer has (pruned) are delivered as they are, still in order.
        if let Some(gap) = gaps.remove(&channel_id) {
            for (id, (room, delivery)) in gap.held {
                hub.deliver(channel_id, id, &room, || delivery);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Key, KeyKind};
    use crate::model::{ChannelType, Permission};
    use crate::store::{
        AccountStore, Channel, ChannelStore, InstanceChanges, InstanceStore, NewAccount,
        NewChannel, NewMessage, NoListener, SqlStore, Store,
    };

    async fn channel(store: &SqlStore) -> Channel {
        let key = Key::generate(KeyKind::Account);
        let account = store
            .create_account(NewAccount {
                email: "a@example.com".into(),
                first_name: String::new(),
                last_name: String::new(),
                password_hash: None,
                account_key: key.as_str().into(),
                key_digest: key.digest(),
                is_superuser: false,
            })
            .await
            .unwrap();
        let instance = store
            .create_instance(account.id, "inst", InstanceChanges::default(), 0)
            .await
            .unwrap();
        store
            .create_channel(
                instance.id,
                NewChannel {
                    name: "chat".into(),
                    kind: ChannelType::SeparateRooms,
                    description: String::new(),
                    group_id: None,
                    group_permissions: Permission::None,
                    other_permissions: Permission::Publish,
                    custom_publish: false,
                },
            )
            .await
            .unwrap()
    }

    /// A SQLite store with one channel, and a hub that sequences from it.
    async fn watched_channel() -> (tempfile::TempDir, Arc<dyn Store>, Channel, Hub) {
        let dir = tempfile::tempdir().unwrap();
        let sqlite =
            SqlStore::open_sqlite(&dir.path().join("h.db"), false, 2, Arc::new(NoListener))
                .await
                .unwrap();
        let channel = channel(&sqlite).await;
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let hub = Hub::new(1024);
        hub.sequence_from(store.clone());
        (dir, store, channel, hub)
    }

    async fn subscribe(hub: &Hub, channel: &Channel, room: &str) -> crate::hub::Subscription {
        hub.subscribe(channel.instance_id, channel, Some(room.into()))
            .await
            .unwrap()
    }

    /// The sequencer on its own task, with no safety timer: what it is sent, and its stop.
    fn start_sequencer(
        hub: &Hub,
        store: &Arc<dyn Store>,
    ) -> (mpsc::UnboundedSender<Event>, CancellationToken) {
        let (events, events_rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        tokio::spawn(sequence(
            Sequencer {
                hub: hub.clone(),
                store: store.clone(),
                repaired: IntCounter::new("repaired", "test").unwrap(),
            },
            events_rx,
            Duration::from_secs(3600),
            shutdown.clone(),
        ));
        (events, shutdown)
    }

    fn event(channel_id: i64, message: &Message) -> Event {
        Event::Message {
            channel_id,
            id: message.id,
            room: message.room.clone(),
            delivery: Arc::new(Delivery::new(message.id, Bytes::from_static(b"{}"))),
        }
    }

    async fn ids(subscription: &mut crate::hub::Subscription, count: usize) -> Vec<i64> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.recv())
                .await
                .expect("delivery within 5 s")
                .unwrap();
            ids.push(delivery.id);
        }
        ids
    }

    /// Announcements arrive reordered, duplicated and with holes; each room's subscriber still
    /// sees its ids once, in order, the holes read from storage.
    #[tokio::test]
    async fn the_sequencer_delivers_in_order_once_and_repairs_holes() {
        let (_dir, store, channel, hub) = watched_channel().await;
        let mut room_a = subscribe(&hub, &channel, "a").await;
        let mut room_b = subscribe(&hub, &channel, "b").await;
        assert_eq!(hub.delivered(channel.id), Some(0));

        let mut messages = Vec::new();
        for n in 0..40 {
            let room = if n % 2 == 0 { "a" } else { "b" };
            let new = NewMessage {
                room: Some(room.into()),
                action: "custom",
                author: "{}".into(),
                metadata: "{}".into(),
                payload: format!("{{\"n\":{n}}}"),
            };
            messages.push(store.publish(&channel, new).await.unwrap());
        }
        let (events, shutdown) = start_sequencer(&hub, &store);
        // 1, 2, then 4 before 3, a duplicate of 2, nothing of 10..=19, the rest backwards.
        let mut order: Vec<usize> = vec![0, 1, 3, 2, 1, 4, 5, 6, 7, 8];
        order.extend((20..40).rev());
        for index in order {
            events.send(event(channel.id, &messages[index])).unwrap();
        }
        let odd: Vec<i64> = (1..=40).filter(|id| id % 2 == 1).collect();
        let even: Vec<i64> = (1..=40).filter(|id| id % 2 == 0).collect();
        assert_eq!(ids(&mut room_a, 20).await, odd);
        assert_eq!(ids(&mut room_b, 20).await, even);
        // Late duplicates change nothing.
        events.send(event(channel.id, &messages[39])).unwrap();
        events.send(event(channel.id, &messages[12])).unwrap();
        tokio::time::sleep(GAP_WAIT * 3).await;
        assert!(room_a.try_recv().is_none() && room_b.try_recv().is_none());
        shutdown.cancel();
    }

    /// Nothing announced at all (Redis was away): a resync reads everything from storage.
    #[tokio::test]
    async fn a_resync_reads_what_was_never_announced() {
        let (_dir, store, channel, hub) = watched_channel().await;
        let mut room_a = subscribe(&hub, &channel, "a").await;
        for n in 0..5 {
            let new = NewMessage {
                room: Some("a".into()),
                action: "custom",
                author: "{}".into(),
                metadata: "{}".into(),
                payload: format!("{{\"n\":{n}}}"),
            };
            store.publish(&channel, new).await.unwrap();
        }
        let (events, shutdown) = start_sequencer(&hub, &store);
        events.send(Event::Resync).unwrap();
        assert_eq!(ids(&mut room_a, 5).await, vec![1, 2, 3, 4, 5]);
        shutdown.cancel();
    }
}
