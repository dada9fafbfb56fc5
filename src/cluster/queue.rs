//! What a node has yet to publish on Redis, bounded (docs/api.md §11.5).
//!
//! Message announcements beyond `capacity` push the oldest one out: a node whose Redis is slow
//! or away holds a bounded amount, and the dropped announcements cost the other nodes only a
//! delay (their sequencers read the gap from storage). Control changes are never dropped here:
//! they are few, and without one another node would go on trusting a reset key.

use std::collections::VecDeque;
#[cfg(test)]
use std::sync::Arc;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

use super::tag::Topic;

pub struct Outbound {
    capacity: usize,
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(Topic, Bytes)>,
    /// Message announcements in `queue` (the ones that may be dropped).
    messages: usize,
    /// Dropped since the publisher last took a batch.
    dropped: u64,
    closed: bool,
}

/// What [`Outbound::take`] found.
pub enum Taken {
    /// Payloads were appended to the batch; `dropped` were pushed out since the last take.
    Batch { dropped: u64 },
    /// The queue was closed and is empty.
    Closed,
}

impl Outbound {
    /// A queue of at most `capacity` (at least 1) message announcements.
    pub fn new(capacity: usize) -> Outbound {
        Outbound {
            capacity: capacity.max(1),
            state: Mutex::default(),
            ready: Notify::new(),
        }
    }

    pub fn push(&self, topic: Topic, payload: Bytes) {
        {
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if topic == Topic::Messages {
                if state.messages == self.capacity {
                    state.drop_oldest_message();
                }
                state.messages += 1;
            }
            state.queue.push_back((topic, payload));
        }
        self.ready.notify_one();
    }

    /// Waits for payloads and moves up to `max` of them, oldest first, into `batch`.
    pub async fn take(&self, batch: &mut Vec<(Topic, Bytes)>, max: usize) -> Taken {
        loop {
            {
                let mut state = self
                    .state
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                let State {
                    queue,
                    messages,
                    dropped,
                    closed,
                } = &mut *state;
                if !queue.is_empty() {
                    let count = max.min(queue.len());
                    for (topic, payload) in queue.drain(..count) {
                        *messages -= usize::from(topic == Topic::Messages);
                        batch.push((topic, payload));
                    }
                    return Taken::Batch {
                        dropped: std::mem::take(dropped),
                    };
                }
                if *closed {
                    return Taken::Closed;
                }
            }
            // A push after the check above leaves a permit: this returns at once.
            self.ready.notified().await;
        }
    }

    /// Ends [`Outbound::take`] once what is queued has been taken.
    pub fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .closed = true;
        self.ready.notify_one();
    }
}

impl State {
    fn drop_oldest_message(&mut self) {
        // Usually the front; control changes ahead of it stay.
        if let Some(index) = self
            .queue
            .iter()
            .position(|(topic, _)| *topic == Topic::Messages)
        {
            self.queue.remove(index);
            self.messages -= 1;
            self.dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u8) -> (Topic, Bytes) {
        (Topic::Messages, Bytes::from(vec![n]))
    }

    fn control(n: u8) -> (Topic, Bytes) {
        (Topic::Control, Bytes::from(vec![n]))
    }

    fn push(queue: &Outbound, (topic, payload): (Topic, Bytes)) {
        queue.push(topic, payload);
    }

    async fn take_all(queue: &Outbound) -> (Vec<(Topic, Bytes)>, u64) {
        let mut batch = Vec::new();
        match queue.take(&mut batch, usize::MAX).await {
            Taken::Batch { dropped } => (batch, dropped),
            Taken::Closed => panic!("closed"),
        }
    }

    #[tokio::test]
    async fn beyond_capacity_the_oldest_messages_go_and_control_changes_stay() {
        let queue = Outbound::new(3);
        push(&queue, control(100));
        for n in 1..=5 {
            push(&queue, message(n));
        }
        push(&queue, control(101));
        let (taken, dropped) = take_all(&queue).await;
        assert_eq!(
            taken,
            vec![
                control(100),
                message(3),
                message(4),
                message(5),
                control(101)
            ]
        );
        assert_eq!(dropped, 2);

        // Taking made room again; the count of dropped ones starts over.
        for n in 6..=8 {
            push(&queue, message(n));
        }
        let (taken, dropped) = take_all(&queue).await;
        assert_eq!(taken, vec![message(6), message(7), message(8)]);
        assert_eq!(dropped, 0);
    }

    #[tokio::test]
    async fn batches_are_taken_in_order_and_close_ends_after_the_rest() {
        let queue = Arc::new(Outbound::new(10));
        let waiting = {
            let queue = queue.clone();
            tokio::spawn(async move { take_all(&queue).await })
        };
        tokio::task::yield_now().await;
        push(&queue, message(1));
        let (taken, _) = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("a push wakes the waiting publisher")
            .unwrap();
        assert_eq!(taken, vec![message(1)]);

        for n in 2..=4 {
            push(&queue, message(n));
        }
        queue.close();
        let mut batch = Vec::new();
        assert!(matches!(
            queue.take(&mut batch, 2).await,
            Taken::Batch { .. }
        ));
        assert!(matches!(
            queue.take(&mut batch, 2).await,
            Taken::Batch { .. }
        ));
        assert_eq!(batch, vec![message(2), message(3), message(4)]);
        assert!(matches!(queue.take(&mut batch, 2).await, Taken::Closed));
    }
}
