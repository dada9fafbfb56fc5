//! Group commit on SQLite's one write connection.
//!
//! One task owns writing messages. It takes every job waiting in its queue (up to `MAX_BATCH`),
//! stores them in one transaction, so they share one fsync, then completes each in order
//! (`store::writer`): the commit listener hears each message in id order, then its caller is
//! answered. A caller is answered only after the commit that holds its write, and a caller that
//! goes away cannot stop the batch midway.

use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::sync::mpsc;

use super::ActiveRooms;
use crate::model;
use crate::store::writer::PublishJob;
use crate::store::{Channel, CommitListener, Message, NewMessage, StoreError, StoreResult};

/// Most jobs one transaction takes.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer; beyond this, callers wait (backpressure).
const QUEUE: usize = 4096;

pub(in crate::store) struct Writer {
    jobs: mpsc::Sender<PublishJob>,
}

impl Writer {
    /// Starts the writing task on `writer`, the pool holding the one write connection.
    pub(super) fn start(
        writer: SqlitePool,
        listener: Arc<dyn CommitListener>,
        active_rooms: Arc<ActiveRooms>,
    ) -> Writer {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, listener, active_rooms, queue));
        Writer { jobs }
    }

    pub(in crate::store) async fn publish(
        &self,
        channel: &Channel,
        new: NewMessage,
    ) -> StoreResult<Message> {
        let (job, answer) = PublishJob::new(channel, new);
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writing task has stopped".into()))?;
        answer.wait().await
    }
}

async fn run(
    writer: SqlitePool,
    listener: Arc<dyn CommitListener>,
    active_rooms: Arc<ActiveRooms>,
    mut queue: mpsc::Receiver<PublishJob>,
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
        let touched =
            |channel_id, message: &Message| active_rooms.touched(channel_id, room_of(message));
        match store_batch(&writer, &batch).await {
            Ok(allocated) => {
                for (job, outcome) in batch.drain(..).zip(allocated) {
                    job.complete(outcome, listener.as_ref(), touched);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, jobs = batch.len(), "write batch failed");
                for job in batch.drain(..) {
                    let failed = Err(StoreError::Unavailable(format!("write failed: {err}")));
                    job.complete(failed, listener.as_ref(), touched);
                }
            }
        }
    }
}

fn room_of(message: &Message) -> &str {
    message.room.as_deref().unwrap_or("")
}

/// Stores a batch in one transaction: per job, the allocated id and timestamp, or `NotFound`
/// when its channel was deleted. Ids are allocated in the storing transaction, so committed ids
/// of a channel are consecutive and become visible in order (SPEC §9.5).
async fn store_batch(
    writer: &SqlitePool,
    batch: &[PublishJob],
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
