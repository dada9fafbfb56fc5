//! In-process fan-out: who listens to which channel room, and waking them when a message is
//! committed.
//!
//! The hub never stores anything and is never the source of truth: a publisher tells it about a
//! message only after the store committed it, and a subscriber that misses a wake-up (it lagged,
//! or subscribed late) reads the gap back from the store. Each message is serialised once and the
//! same bytes go to every subscriber.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::store::Message;

/// One channel room: `room` is `None` on `default`-type channels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topic {
    pub instance_id: i64,
    pub channel_id: i64,
    pub room: Option<String>,
}

/// A committed message as subscribers receive it: its id and its JSON without `links`.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub json: Bytes,
}

/// How many undelivered messages one topic buffers per subscriber before that subscriber lags
/// (and must catch up from the store).
const TOPIC_BUFFER: usize = 1024;

#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<Topic, broadcast::Sender<Arc<Delivery>>>>,
}

impl Hub {
    /// Starts listening to a topic. The receiver ends (`Closed`) when the channel or its
    /// instance is deleted.
    pub fn subscribe(&self, topic: Topic) -> broadcast::Receiver<Arc<Delivery>> {
        let mut topics = self.lock();
        topics
            .entry(topic)
            .or_insert_with(|| broadcast::channel(TOPIC_BUFFER).0)
            .subscribe()
    }

    /// Tells the topic's subscribers about a committed message. Costs nothing when nobody
    /// listens; otherwise one serialisation shared by all.
    pub fn publish(&self, topic: &Topic, message: &Message) {
        let mut topics = self.lock();
        let Some(sender) = topics.get(topic) else {
            return;
        };
        let delivery = Arc::new(Delivery {
            id: message.id,
            json: Bytes::from(crate::render::message_json(message, None)),
        });
        if sender.send(delivery).is_err() {
            // Every receiver is gone: forget the topic.
            topics.remove(topic);
        }
    }

    /// Ends every subscription to a deleted channel.
    pub fn close_channel(&self, channel_id: i64) {
        self.lock()
            .retain(|topic, _| topic.channel_id != channel_id);
    }

    /// Ends every subscription in a deleted instance.
    pub fn close_instance(&self, instance_id: i64) {
        self.lock()
            .retain(|topic, _| topic.instance_id != instance_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Topic, broadcast::Sender<Arc<Delivery>>>> {
        // A poisoned lock means a panic elsewhere mid-operation; the map itself is intact.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64) -> Message {
        Message {
            id,
            room: Some("lobby".into()),
            action: "custom",
            author: "{\"admin\":1}".into(),
            metadata: "{\"type\":\"message\"}".into(),
            payload: "{\"n\":1}".into(),
            created_at: 0,
        }
    }

    fn topic(room: &str) -> Topic {
        Topic {
            instance_id: 1,
            channel_id: 2,
            room: Some(room.into()),
        }
    }

    #[tokio::test]
    async fn subscribers_of_a_room_get_the_same_bytes() {
        let hub = Hub::default();
        let mut a = hub.subscribe(topic("lobby"));
        let mut b = hub.subscribe(topic("lobby"));
        let mut other = hub.subscribe(topic("other"));
        hub.publish(&topic("lobby"), &message(7));
        let (da, db) = (a.recv().await.unwrap(), b.recv().await.unwrap());
        assert_eq!(da.id, 7);
        assert!(Arc::ptr_eq(&da, &db));
        assert!(other.try_recv().is_err());
        assert!(!String::from_utf8_lossy(&da.json).contains("links"));
    }

    #[tokio::test]
    async fn deleting_a_channel_ends_its_subscriptions() {
        let hub = Hub::default();
        let mut rx = hub.subscribe(topic("lobby"));
        hub.close_channel(2);
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Closed)
        ));
    }
}
