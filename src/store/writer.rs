//! What the two group-commit writers share: the job a publish hands them and how a stored
//! job is completed.
//!
//! Each backend has a writer task of its own (`sqlite/writer.rs`, `postgres/writer.rs`) that takes
//! waiting jobs, stores them in one transaction and, after the commit, completes them here in
//! order: the commit listener hears each message (in id order per channel, which fan-out relies
//! on), then the waiting caller gets its answer. A caller that went away cannot stop a job between
//! its commit and the listener: completion does not depend on anyone still waiting.

use tokio::sync::oneshot;

use super::{
    Channel, CommitListener, Message, NewMessage, StoreError, StoreResult, Write, Written,
};

/// A publish waiting for a writer.
pub(super) struct PublishJob {
    pub channel_id: i64,
    pub instance_id: i64,
    pub channel_name: String,
    pub new: NewMessage,
    reply: oneshot::Sender<StoreResult<Message>>,
}

/// Where the caller of a job waits for its answer.
pub(super) struct Answer<T>(oneshot::Receiver<StoreResult<T>>);

impl<T> Answer<T> {
    pub async fn wait(self) -> StoreResult<T> {
        self.0.await.map_err(|_| {
            StoreError::Unavailable("the writing task stopped before answering".into())
        })?
    }
}

impl PublishJob {
    pub fn new(channel: &Channel, new: NewMessage) -> (PublishJob, Answer<Message>) {
        let (reply, answer) = oneshot::channel();
        let job = PublishJob {
            channel_id: channel.id,
            instance_id: channel.instance_id,
            channel_name: channel.name.clone(),
            new,
            reply,
        };
        (job, Answer(answer))
    }

    /// Completes a job after its transaction: `stored` is the allocated id and timestamp, or why
    /// nothing was stored. The listener hears of the message, then `also` sees it, then the
    /// caller is answered.
    pub fn complete(
        self,
        stored: StoreResult<(i64, i64)>,
        listener: &dyn CommitListener,
        also: impl FnOnce(i64, &Message),
    ) {
        let result = stored.map(|(id, created_at)| Message {
            id,
            room: self.new.room,
            action: self.new.action,
            author: self.new.author,
            metadata: self.new.metadata,
            payload: self.new.payload,
            created_at,
        });
        if let Ok(message) = &result {
            listener.committed(self.channel_id, message);
            also(self.channel_id, message);
        }
        // A publisher that went away still had its message stored and announced.
        let _ = self.reply.send(result);
    }
}

/// A message a write stored, to announce once its transaction committed.
pub(super) struct Committed {
    pub channel_id: i64,
    pub message: Message,
}

/// An object or user write waiting for a writer (see `ObjectStore::write`).
pub(super) struct WriteJob {
    pub write: Write,
    reply: oneshot::Sender<StoreResult<Written>>,
}

impl WriteJob {
    pub fn new(write: Write) -> (WriteJob, Answer<Written>) {
        let (reply, answer) = oneshot::channel();
        (WriteJob { write, reply }, Answer(answer))
    }

    /// Completes a write after its transaction: the listener hears each message it stored,
    /// then `also` sees it, then the caller is answered.
    pub fn complete(
        self,
        result: StoreResult<(Written, Vec<Committed>)>,
        listener: &dyn CommitListener,
        also: impl Fn(i64, &Message),
    ) {
        let result = result.map(|(written, committed)| {
            for Committed {
                channel_id,
                message,
            } in &committed
            {
                listener.committed(*channel_id, message);
                also(*channel_id, message);
            }
            written
        });
        let _ = self.reply.send(result);
    }
}

/// A job for a backend's writer.
pub(super) enum Job {
    Publish(PublishJob),
    /// Boxed: a write carries its class and changes, many times a publish's size.
    Write(Box<WriteJob>),
}
