//! Group commit for SQLite publishes.
//!
//! One task owns publishing. It takes every publish waiting in its queue (up to `MAX_BATCH`),
//! stores them in one transaction, so they share one fsync, then tells the commit listener about
//! each message in id order, then answers each publisher. A publisher is answered only after the
//! commit that holds its message, and a publisher that goes away cannot stop the batch midway.

use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::sqlite::ActiveRooms;
use super::{Channel, CommitListener, Message, NewMessage, StoreError, StoreResult};
use crate::model;

/// Most publishes one transaction takes.
const MAX_BATCH: usize = 512;
/// Publishes waiting for the writer; beyond this, publishers wait (backpressure).
const QUEUE: usize = 4096;

struct Job {
    channel_id: i64,
    instance_id: i64,
    channel_name: String,
    new: NewMessage,
    reply: oneshot::Sender<StoreResult<Message>>,
}

pub(super) struct Publisher {
    jobs: mpsc::Sender<Job>,
}

impl Publisher {
    /// Starts the publishing task on `writer`, the pool holding the one write connection.
    pub(super) fn start(
        writer: SqlitePool,
        listener: Arc<dyn CommitListener>,
        active_rooms: Arc<ActiveRooms>,
    ) -> Publisher {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, listener, active_rooms, queue));
        Publisher { jobs }
    }

    pub(super) async fn publish(&self, channel: &Channel, new: NewMessage) -> StoreResult<Message> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            channel_id: channel.id,
            instance_id: channel.instance_id,
            channel_name: channel.name.clone(),
            new,
            reply,
        };
        let stopped = || StoreError::Unavailable("the publishing task has stopped".into());
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    writer: SqlitePool,
    listener: Arc<dyn CommitListener>,
    active_rooms: Arc<ActiveRooms>,
    mut queue: mpsc::Receiver<Job>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match store_batch(&writer, &batch).await {
            Ok(allocated) => {
                for (job, outcome) in batch.drain(..).zip(allocated) {
                    let result = outcome.map(|(id, created_at)| Message {
                        id,
                        room: job.new.room,
                        action: job.new.action,
                        author: job.new.author,
                        metadata: job.new.metadata,
                        payload: job.new.payload,
                        created_at,
                    });
                    if let Ok(message) = &result {
                        listener.committed(job.channel_id, message);
                        active_rooms.touched(job.channel_id, message.room.as_deref().unwrap_or(""));
                    }
                    // A publisher that went away still had its message stored and announced.
                    let _ = job.reply.send(result);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, jobs = batch.len(), "publish batch failed");
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(StoreError::Unavailable(format!(
                        "publish failed: {err}"
                    ))));
                }
            }
        }
    }
}

/// Stores a batch in one transaction: per job, the allocated id and timestamp, or `NotFound`
/// when its channel was deleted. Ids are allocated in the storing transaction, so committed ids
/// of a channel are consecutive and become visible in order (SPEC §9.5).
async fn store_batch(
    writer: &SqlitePool,
    batch: &[Job],
) -> Result<Vec<StoreResult<(i64, i64)>>, sqlx::Error> {
    let mut conn = writer.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut allocated = Vec::with_capacity(batch.len());
    for job in batch {
        // The sequence outlives its channel; a deleted channel allocates nothing.
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE channel_sequences SET last_id = last_id + 1 \
             WHERE instance_id = ? AND name = ? AND EXISTS (SELECT 1 FROM channels WHERE id = ?) \
             RETURNING last_id",
        )
        .bind(job.instance_id)
        .bind(&job.channel_name)
        .bind(job.channel_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            allocated.push(Err(StoreError::NotFound));
            continue;
        };
        let created_at = model::now_micros();
        sqlx::query(
            "INSERT INTO messages (channel_id, id, room, action, author, metadata, payload, \
             created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(job.channel_id)
        .bind(id)
        .bind(job.new.room.as_deref().unwrap_or(""))
        .bind(job.new.action)
        .bind(&job.new.author)
        .bind(&job.new.metadata)
        .bind(&job.new.payload)
        .bind(created_at)
        .execute(&mut *tx)
        .await?;
        allocated.push(Ok((id, created_at)));
    }
    tx.commit().await?;
    Ok(allocated)
}
