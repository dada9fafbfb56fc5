//! In-process fan-out: who listens to which channel room, and handing them each message once it
//! is committed.
//!
//! The hub stores nothing and is never the source of truth. The store calls [`Hub::publish`]
//! after each commit, in id order per channel (see `Store::publish`), so every subscriber sees a
//! channel's live messages in increasing id order. A subscriber that falls too far behind is told
//! (`Lagged`) and reads what it missed from the store. Each message is serialised once; every
//! subscriber gets the same bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::store::{Channel, CommitListener, Message, MessageStore, StoreResult};

/// A committed message as subscribers receive it: its id and its JSON without `links`.
#[derive(Debug)]
pub struct Delivery {
    pub id: i64,
    pub json: Bytes,
    /// The SSE event, built by the first SSE subscriber and shared by the rest.
    sse_event: OnceLock<Bytes>,
}

impl Delivery {
    pub fn new(id: i64, json: Bytes) -> Delivery {
        Delivery {
            id,
            json,
            sse_event: OnceLock::new(),
        }
    }

    /// `id: <id>\ndata: <json>\n\n`.
    pub fn sse_event(&self) -> &Bytes {
        self.sse_event
            .get_or_init(|| sse_event(self.id, &self.json))
    }
}

/// Frames one message as a Server-Sent Event (docs/api.md §9.10).
pub fn sse_event(id: i64, json: &[u8]) -> Bytes {
    let mut event = Vec::with_capacity(json.len() + 32);
    event.extend_from_slice(b"id: ");
    event.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    event.extend_from_slice(b"\ndata: ");
    event.extend_from_slice(json);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

type Rooms = HashMap<Option<String>, broadcast::Sender<Arc<Delivery>>>;

struct ChannelTopics {
    instance_id: i64,
    /// Keyed by room; `None` on `default`-type channels.
    rooms: Rooms,
    /// Cluster mode: the channel's last id handed to subscribers. Messages arrive from several
    /// nodes, so the sequencer (`cluster.rs`) delivers only the next id and repairs gaps.
    delivered: i64,
}

struct Inner {
    channels: Mutex<HashMap<i64, ChannelTopics>>,
    /// How far one subscriber may fall behind a room's live messages before it lags.
    capacity: usize,
    /// Set in cluster mode: where a channel's first subscription reads its starting id.
    sequenced_by: OnceLock<Arc<dyn MessageStore>>,
}

/// Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

/// A live subscription to one channel room. Dropping it unsubscribes.
pub struct Subscription {
    receiver: Option<broadcast::Receiver<Arc<Delivery>>>,
    hub: Hub,
    channel_id: i64,
    room: Option<String>,
}

impl Subscription {
    /// The next live message. `Lagged` means deliveries were skipped (read them from the store);
    /// `Closed` means the channel or its instance was deleted.
    pub async fn recv(&mut self) -> Result<Arc<Delivery>, broadcast::error::RecvError> {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Subscription {
    /// The next live message if one is already waiting; `None` when there is none now.
    /// Lets a subscriber gather everything that arrived into one write.
    pub fn try_recv(&mut self) -> Option<Result<Arc<Delivery>, broadcast::error::RecvError>> {
        use broadcast::error::{RecvError, TryRecvError};
        match self.receiver.as_mut()?.try_recv() {
            Ok(delivery) => Some(Ok(delivery)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        // The last subscriber of a room removes it, so idle rooms cost nothing.
        let mut channels = self.hub.lock();
        if let Some(topics) = channels.get_mut(&self.channel_id) {
            if topics
                .rooms
                .get(&self.room)
                .is_some_and(|sender| sender.receiver_count() == 0)
            {
                topics.rooms.remove(&self.room);
            }
            if topics.rooms.is_empty() {
                channels.remove(&self.channel_id);
            }
        }
    }
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        Hub(Arc::new(Inner {
            channels: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            sequenced_by: OnceLock::new(),
        }))
    }

    /// Cluster mode: messages reach the hub through the sequencer, which needs to know where
    /// each watched channel starts.
    pub fn sequence_from(&self, store: Arc<dyn MessageStore>) {
        let _ = self.0.sequenced_by.set(store);
    }

    /// Starts listening to a channel room. Messages committed after this call are delivered.
    pub async fn subscribe(
        &self,
        instance_id: i64,
        channel: &Channel,
        room: Option<String>,
    ) -> StoreResult<Subscription> {
        let mut start = 0;
        if let Some(store) = self.0.sequenced_by.get()
            && !self.lock().contains_key(&channel.id)
        {
            // Everything up to here is in storage, which the subscriber reads after joining;
            // the sequencer delivers from the next id on.
            start = store.last_message_id(channel).await?;
        }
        Ok(self.join(instance_id, channel.id, room, start))
    }

    fn join(
        &self,
        instance_id: i64,
        channel_id: i64,
        room: Option<String>,
        start: i64,
    ) -> Subscription {
        let mut channels = self.lock();
        let topics = channels.entry(channel_id).or_insert_with(|| ChannelTopics {
            instance_id,
            rooms: HashMap::new(),
            delivered: start,
        });
        let receiver = topics
            .rooms
            .entry(room.clone())
            .or_insert_with(|| broadcast::channel(self.0.capacity).0)
            .subscribe();
        drop(channels);
        Subscription {
            receiver: Some(receiver),
            hub: self.clone(),
            channel_id,
            room,
        }
    }

    /// Cluster mode: the last id delivered in a channel, `None` when nobody here listens.
    pub(crate) fn delivered(&self, channel_id: i64) -> Option<i64> {
        self.lock().get(&channel_id).map(|topics| topics.delivered)
    }

    /// Cluster mode: channels with subscribers here, with their last delivered id.
    pub(crate) fn watched(&self) -> Vec<(i64, i64)> {
        self.lock()
            .iter()
            .map(|(id, topics)| (*id, topics.delivered))
            .collect()
    }

    /// Cluster mode: hands over message `id` if it is newer than what the channel delivered.
    /// The sequencer calls this in id order, so `delivered` only moves forward.
    pub(crate) fn deliver(
        &self,
        channel_id: i64,
        id: i64,
        room: &Option<String>,
        delivery: impl FnOnce() -> Arc<Delivery>,
    ) {
        let mut channels = self.lock();
        let Some(topics) = channels.get_mut(&channel_id) else {
            return;
        };
        if id <= topics.delivered {
            return;
        }
        topics.delivered = id;
        if let Some(sender) = topics.rooms.get(room) {
            let _ = sender.send(delivery());
        }
    }

    /// Hands a committed message to its room's subscribers. Costs one map lookup when nobody
    /// listens; otherwise one serialisation shared by all.
    pub fn publish(&self, channel_id: i64, message: &Message) {
        self.committed(channel_id, message);
    }
}

impl CommitListener for Hub {
    fn committed(&self, channel_id: i64, message: &Message) {
        let channels = self.lock();
        let Some(sender) = channels
            .get(&channel_id)
            .and_then(|topics| topics.rooms.get(&message.room))
        else {
            return;
        };
        let delivery = Arc::new(Delivery::new(
            message.id,
            Bytes::from(crate::render::message_json(message, None)),
        ));
        // An error only means the last receiver left a moment ago; its Drop cleans up.
        let _ = sender.send(delivery);
    }
}

impl Hub {
    /// Ends every subscription to a deleted channel.
    pub fn close_channel(&self, channel_id: i64) {
        self.lock().remove(&channel_id);
    }

    /// Ends every subscription in a deleted instance.
    pub fn close_instance(&self, instance_id: i64) {
        self.lock()
            .retain(|_, topics| topics.instance_id != instance_id);
    }

    /// Live subscriptions, for metrics and tests.
    pub fn subscriber_count(&self) -> usize {
        self.lock()
            .values()
            .flat_map(|topics| topics.rooms.values())
            .map(broadcast::Sender::receiver_count)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, ChannelTopics>> {
        // A poisoned lock means a panic elsewhere mid-operation; the map itself is intact.
        self.0.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broadcast::error::RecvError;

    fn message(id: i64, room: &str) -> Message {
        Message {
            id,
            room: Some(room.into()),
            action: "custom",
            author: "{\"admin\":1}".into(),
            metadata: "{\"type\":\"message\"}".into(),
            payload: "{\"n\":1}".into(),
            created_at: 0,
        }
    }

    #[tokio::test]
    async fn subscribers_of_a_room_share_the_same_bytes() {
        let hub = Hub::new(16);
        let mut a = hub.join(1, 2, Some("lobby".into()), 0);
        let mut b = hub.join(1, 2, Some("lobby".into()), 0);
        let mut other = hub.join(1, 2, Some("other".into()), 0);
        hub.publish(2, &message(7, "lobby"));
        let (da, db) = (a.recv().await.unwrap(), b.recv().await.unwrap());
        assert_eq!(da.id, 7);
        assert!(Arc::ptr_eq(&da, &db));
        assert!(!String::from_utf8_lossy(&da.json).contains("links"));
        hub.publish(2, &message(8, "other"));
        assert_eq!(other.recv().await.unwrap().id, 8);
    }

    #[tokio::test]
    async fn deleting_a_channel_or_instance_ends_its_subscriptions() {
        let hub = Hub::new(16);
        let mut by_channel = hub.join(1, 2, None, 0);
        let mut by_instance = hub.join(1, 3, None, 0);
        let mut elsewhere = hub.join(9, 4, None, 0);
        hub.close_channel(2);
        assert!(matches!(by_channel.recv().await, Err(RecvError::Closed)));
        hub.close_instance(1);
        assert!(matches!(by_instance.recv().await, Err(RecvError::Closed)));
        assert_eq!(hub.subscriber_count(), 1);
        drop(elsewhere.receiver.take());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_it_lagged() {
        let hub = Hub::new(2);
        let mut slow = hub.join(1, 2, None, 0);
        for id in 1..=5 {
            let mut m = message(id, "x");
            m.room = None;
            hub.publish(2, &m);
        }
        assert!(matches!(slow.recv().await, Err(RecvError::Lagged(3))));
        assert_eq!(slow.recv().await.unwrap().id, 4);
    }

    #[test]
    fn dropping_the_last_subscription_forgets_the_room() {
        let hub = Hub::new(4);
        let a = hub.join(1, 2, Some("r".into()), 0);
        let b = hub.join(1, 2, Some("r".into()), 0);
        drop(a);
        assert_eq!(hub.subscriber_count(), 1);
        drop(b);
        assert!(hub.lock().is_empty());
    }
}
