//! Group commit on SQLite's one write connection.
//!
//! One task owns writing messages. It takes every job waiting in its queue (up to `MAX_BATCH`),
//! stores them in one transaction, so they share one fsync, then completes each in order
//! (`store::writer`): the commit listener hears each message in id order, then its caller is
//! answered. A caller is answered only after the commit that holds its write, and a caller that
//! goes away cannot stop the batch midway.
//!
//! Object writes (which store a data change and its change message) join the same queue rather
//! than taking the write connection on their own: SQLite has one writer anyway, so a second path
//! would only make them wait for the batch and then pay an fsync of their own, while in the
//! queue they share the batch's commit, and their messages take the channel's next ids in queue
//! order like any publish. Each runs inside a savepoint, so a write that a rule refuses (or that
//! fails) rolls back alone and the rest of the batch commits.

use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::sync::mpsc;

use super::ActiveRooms;
use crate::model;
use crate::store::sql::{Conn, run_write};
use crate::store::writer::{Committed, Job, PublishJob, WriteJob};
use crate::store::{
    Channel, CommitListener, Message, NewMessage, StoreError, StoreResult, Write, Written,
};

/// Most jobs one transaction takes.
const MAX_BATCH: usize = 512;
/// Jobs waiting for the writer; beyond this, callers wait (backpressure).
const QUEUE: usize = 4096;

pub(in crate::store) struct Writer {
    jobs: mpsc::Sender<Job>,
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
        self.send(Job::Publish(job)).await?;
        answer.wait().await
    }

    pub(in crate::store) async fn write(&self, write: Write) -> StoreResult<Written> {
        let (job, answer) = WriteJob::new(write);
        self.send(Job::Write(Box::new(job))).await?;
        answer.wait().await
    }

    async fn send(&self, job: Job) -> StoreResult<()> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the writing task has stopped".into()))
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
        let touched =
            |channel_id, message: &Message| active_rooms.touched(channel_id, room_of(message));
        match store_batch(&writer, &mut batch).await {
            Ok(outcomes) => {
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    match (job, outcome) {
                        (Job::Publish(job), Stored::Published(outcome)) => {
                            job.complete(outcome, listener.as_ref(), touched);
                        }
                        (Job::Write(job), Stored::Written(outcome)) => {
                            job.complete(*outcome, listener.as_ref(), touched);
                        }
                        (job, _) => fail(job, "outcomes out of step", listener.as_ref()),
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, jobs = batch.len(), "write batch failed");
                for job in batch.drain(..) {
                    fail(job, &format!("write failed: {err}"), listener.as_ref());
                }
            }
        }
    }
}

fn room_of(message: &Message) -> &str {
    message.room.as_deref().unwrap_or("")
}

fn fail(job: Job, why: &str, listener: &dyn CommitListener) {
    let err = || StoreError::Unavailable(why.to_owned());
    match job {
        Job::Publish(job) => job.complete(Err(err()), listener, |_, _| {}),
        Job::Write(job) => job.complete(Err(err()), listener, |_, _| {}),
    }
}

/// What a job of a batch stored.
enum Stored {
    Published(StoreResult<(i64, i64)>),
    Written(Box<StoreResult<(Written, Vec<Committed>)>>),
}

/// Stores a batch in one transaction: per publish, the allocated id and timestamp (or
/// `NotFound` when its channel was deleted); per write, what it wrote and the messages it
/// stored. Ids are allocated in the storing transaction, in queue order, so committed ids of a
/// channel are consecutive and become visible in order (docs/api.md §9.5).
///
/// Every statement is a round trip to sqlx's SQLite worker thread (a channel send and a thread
/// wake-up each way), which costs more than the statement: consecutive publishes are therefore
/// stored together, one sequence update per channel and one insert for all of them.
async fn store_batch(writer: &SqlitePool, batch: &mut [Job]) -> Result<Vec<Stored>, sqlx::Error> {
    let mut conn = writer.acquire().await?;
    // IMMEDIATE, as every write transaction (see `Db::begin`): an object write reads before it
    // writes.
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut run: Vec<&PublishJob> = Vec::new();
    for job in batch.iter() {
        match job {
            Job::Publish(job) => run.push(job),
            Job::Write(job) => {
                publish_run(&mut tx, &run, &mut outcomes).await?;
                run.clear();
                sqlx::query("SAVEPOINT object_write")
                    .execute(&mut *tx)
                    .await?;
                let outcome = run_write(&mut Conn::Sqlite(&mut tx), &job.write).await;
                if outcome.is_err() {
                    sqlx::query("ROLLBACK TO object_write")
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("RELEASE object_write")
                    .execute(&mut *tx)
                    .await?;
                outcomes.push(Stored::Written(Box::new(outcome)));
            }
        }
    }
    publish_run(&mut tx, &run, &mut outcomes).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Rows per multi-row insert: 8 values each, well under SQLite's 32 766 bound parameters.
const INSERT_ROWS: usize = 512;

/// Stores consecutive publishes: each channel's sequence moves once by as many ids as the run
/// has messages for it (the ids then go to those messages in queue order), and the messages
/// are inserted together. Pushes one outcome per job, in order: its id and timestamp, or
/// `NotFound` when its channel was deleted (the sequence outlives its channel; a deleted channel
/// allocates nothing).
async fn publish_run(
    tx: &mut sqlx::SqliteConnection,
    run: &[&PublishJob],
    outcomes: &mut Vec<Stored>,
) -> Result<(), sqlx::Error> {
    if run.is_empty() {
        return Ok(());
    }
    // Each channel's count, in order of first appearance (a run rarely has more than a few).
    let mut channels: Vec<(&PublishJob, i64)> = Vec::new();
    for job in run {
        match channels
            .iter_mut()
            .find(|(c, _)| c.channel_id == job.channel_id)
        {
            Some((_, count)) => *count += 1,
            None => channels.push((job, 1)),
        }
    }
    // The next id of each channel, or `None` when it was deleted.
    let mut next: Vec<(i64, Option<i64>)> = Vec::with_capacity(channels.len());
    for (job, count) in channels {
        let last: Option<i64> = sqlx::query_scalar(
            "UPDATE channel_sequences SET last_id = last_id + ? \
             WHERE instance_id = ? AND name = ? AND EXISTS (SELECT 1 FROM channels WHERE id = ?) \
             RETURNING last_id",
        )
        .bind(count)
        .bind(job.instance_id)
        .bind(&job.channel_name)
        .bind(job.channel_id)
        .fetch_optional(&mut *tx)
        .await?;
        next.push((job.channel_id, last.map(|last| last - count + 1)));
    }
    let created_at = model::now_micros();
    let mut rows: Vec<(&PublishJob, i64)> = Vec::with_capacity(run.len());
    for job in run {
        let slot = next
            .iter_mut()
            .find(|(channel_id, _)| *channel_id == job.channel_id)
            .map(|(_, id)| id);
        match slot {
            Some(Some(id)) => {
                rows.push((job, *id));
                outcomes.push(Stored::Published(Ok((*id, created_at))));
                *id += 1;
            }
            _ => outcomes.push(Stored::Published(Err(StoreError::NotFound))),
        }
    }
    for chunk in rows.chunks(INSERT_ROWS) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO messages (channel_id, id, room, action, author, metadata, payload, \
             created_at) ",
        );
        insert.push_values(chunk, |mut row, (job, id)| {
            row.push_bind(job.channel_id)
                .push_bind(*id)
                .push_bind(job.new.room.as_deref().unwrap_or(""))
                .push_bind(job.new.action)
                .push_bind(job.new.author.as_str())
                .push_bind(job.new.metadata.as_str())
                .push_bind(job.new.payload.as_str())
                .push_bind(created_at);
        });
        insert.build().execute(&mut *tx).await?;
    }
    Ok(())
}
