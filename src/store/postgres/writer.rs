//! Publishing on PostgreSQL, with group commit per channel stripe.
//!
//! A publish is one statement: it increments the channel's sequence row (whose lock it then
//! holds until commit) and inserts the message under the new id. Publishers of one channel on
//! any node therefore commit one after another in id order, and the committed ids are
//! consecutive.
//!
//! Within this process, channels are hashed onto stripes. The first publish of an idle stripe
//! starts a task that takes every publish waiting on the stripe, stores them in one transaction
//! (so they share one commit), tells the commit listener in id order and answers each publisher;
//! it repeats while publishes keep arriving. The listener thus hears each channel's messages in
//! id order, and a busy channel pays for one commit per batch rather than per message. A batch
//! locks its channels' sequence rows in ascending channel id order, as every node does, so
//! batches of different nodes cannot deadlock.

use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use sqlx::postgres::PgConnection;

use super::enc;
use crate::model;
use crate::store::sql::{Conn, run_write};
use crate::store::writer::{Committed, Job, PublishJob, WriteJob};
use crate::store::{
    Channel, CommitListener, Message, NewMessage, StoreError, StoreResult, Write, Written,
    missing_parent_or,
};

/// Stripes per process: publishes of channels on different stripes never wait for each other.
const STRIPES: usize = 64;
/// Most publishes one transaction takes.
const MAX_BATCH: usize = 256;

/// Allocates the channel's next id and stores the message, atomically. The sequence outlives
/// its channel; a deleted channel allocates nothing (and one deleted while this runs fails the
/// foreign key, rolling the allocation back).
const PUBLISH: &str = "WITH allocated AS (\
     UPDATE channel_sequences SET last_id = last_id + 1 \
     WHERE instance_id = $1 AND name = $2 AND EXISTS (SELECT 1 FROM channels WHERE id = $3) \
     RETURNING last_id) \
     INSERT INTO messages (channel_id, id, room, action, author, metadata, payload, created_at) \
     SELECT $3, last_id, $4, $5, $6, $7, $8, $9 FROM allocated RETURNING id";

#[derive(Default)]
struct Stripe {
    waiting: Vec<Job>,
    /// A task is storing this stripe's publishes; it takes `waiting` when done with a batch.
    busy: bool,
}

pub(in crate::store) struct Writer {
    pool: PgPool,
    listener: Arc<dyn CommitListener>,
    stripes: Box<[Mutex<Stripe>]>,
}

impl Writer {
    pub(super) fn new(pool: PgPool, listener: Arc<dyn CommitListener>) -> Arc<Writer> {
        Arc::new(Writer {
            pool,
            listener,
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        })
    }

    pub(in crate::store) async fn publish(
        self: &Arc<Self>,
        channel: &Channel,
        new: NewMessage,
    ) -> StoreResult<Message> {
        let (job, answer) = PublishJob::new(channel, new);
        self.enqueue(channel.id, Job::Publish(job));
        answer.wait().await
    }

    /// Stores an object or user write. One that may publish goes through its channel's stripe,
    /// after the publishes queued there before it, so the listener still hears the channel's
    /// messages in id order; one without a channel runs at once in its own transaction.
    pub(in crate::store) async fn write(self: &Arc<Self>, write: Write) -> StoreResult<Written> {
        match write.channel_id() {
            Some(channel_id) => {
                let (job, answer) = WriteJob::new(write);
                self.enqueue(channel_id, Job::Write(Box::new(job)));
                answer.wait().await
            }
            None => run_alone(&self.pool, &write)
                .await
                .map(|(written, _)| written),
        }
    }

    fn enqueue(self: &Arc<Self>, channel_id: i64, job: Job) {
        let stripe = channel_id.rem_euclid(STRIPES as i64) as usize;
        let start = {
            let mut state = self.stripes[stripe]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            state.waiting.push(job);
            !std::mem::replace(&mut state.busy, true)
        };
        if start {
            // A task of its own: a caller that goes away cannot stop a batch between its
            // commit and the listener.
            tokio::spawn(self.clone().drain(stripe));
        }
    }

    /// Stores the stripe's waiting publishes, batch after batch, until none are left.
    async fn drain(self: Arc<Self>, stripe: usize) {
        let guard = Idle {
            stripe: &self.stripes[stripe],
        };
        loop {
            let batch = {
                let mut state = guard.stripe.lock().unwrap_or_else(|e| e.into_inner());
                if state.waiting.is_empty() {
                    state.busy = false;
                    break;
                }
                let take = state.waiting.len().min(MAX_BATCH);
                state.waiting.drain(..take).collect::<Vec<_>>()
            };
            self.store(batch).await;
        }
        std::mem::forget(guard);
    }

    /// Stores a batch in queue order: each run of publishes together, each write alone (a
    /// write locks its object before the channel's sequence; batching it with publishes, which
    /// lock sequences first, could deadlock with another node).
    async fn store(&self, batch: Vec<Job>) {
        let mut publishes = Vec::new();
        let mut writes = Vec::new();
        for job in batch {
            match job {
                Job::Publish(job) => {
                    self.store_writes(std::mem::take(&mut writes)).await;
                    publishes.push(job);
                }
                Job::Write(job) => {
                    self.store_publishes(std::mem::take(&mut publishes)).await;
                    writes.push(*job);
                }
            }
        }
        self.store_publishes(publishes).await;
        self.store_writes(writes).await;
    }

    /// Stores consecutive object writes of the stripe in one transaction, each under a savepoint
    /// so that a refused one rolls back alone. Deadlock-free across nodes: every transaction
    /// locks the objects it changes first, in ascending id order, and then the channels'
    /// sequence rows, in ascending channel order (the writes are run in channel order; each
    /// channel's writes keep theirs). User writes, whose profile row is found only inside the
    /// write, run alone.
    async fn store_writes(&self, mut batch: Vec<WriteJob>) {
        batch.sort_by_key(|job| job.write.channel_id());
        while !batch.is_empty() {
            let take = batch
                .iter()
                .position(|job| !batchable(&job.write))
                .map_or(batch.len(), |at| at.max(1));
            let group: Vec<_> = batch.drain(..take).collect();
            if group.len() == 1 {
                for job in group {
                    let outcome = run_alone(&self.pool, &job.write).await;
                    job.complete(outcome, self.listener.as_ref(), |_, _| {});
                }
                continue;
            }
            match run_together(&self.pool, &group).await {
                Ok(outcomes) => {
                    for (job, outcome) in group.into_iter().zip(outcomes) {
                        job.complete(outcome, self.listener.as_ref(), |_, _| {});
                    }
                }
                Err(Attempt::BeforeCommit(err)) => {
                    tracing::debug!(error = %err, "write batch rolled back; retrying singly");
                    for job in group {
                        let outcome = run_alone(&self.pool, &job.write).await;
                        job.complete(outcome, self.listener.as_ref(), |_, _| {});
                    }
                }
                Err(Attempt::AtCommit(err)) => {
                    tracing::error!(error = %err, jobs = group.len(), "write batch failed");
                    for job in group {
                        let failed = Err(StoreError::Unavailable(format!("write failed: {err}")));
                        job.complete(failed, self.listener.as_ref(), |_, _| {});
                    }
                }
            }
        }
    }

    async fn store_publishes(&self, mut batch: Vec<PublishJob>) {
        if batch.is_empty() {
            return;
        }
        // Ascending channel order (stable: each channel's publishes keep their order).
        batch.sort_by_key(|job| job.channel_id);
        let outcomes = if batch.len() == 1 {
            vec![store_one(&self.pool, &batch[0]).await]
        } else {
            match store_together(&self.pool, &batch).await {
                Ok(outcomes) => outcomes,
                Err(Attempt::BeforeCommit(err)) => {
                    // Nothing was stored (e.g. a channel deleted meanwhile failed its foreign
                    // key): store each on its own, so only the affected publishes fail.
                    tracing::debug!(error = %err, "publish batch rolled back; retrying singly");
                    let mut outcomes = Vec::with_capacity(batch.len());
                    for job in &batch {
                        outcomes.push(store_one(&self.pool, job).await);
                    }
                    outcomes
                }
                Err(Attempt::AtCommit(err)) => {
                    tracing::error!(error = %err, jobs = batch.len(), "publish batch failed");
                    batch
                        .iter()
                        .map(|_| Err(StoreError::Unavailable(format!("publish failed: {err}"))))
                        .collect()
                }
            }
        };
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            job.complete(outcome, self.listener.as_ref(), |_, _| {});
        }
    }
}

/// Marks the stripe idle if its task ends abnormally (a panic), failing what waits on it, so
/// the next publish starts a new task rather than waiting forever.
struct Idle<'a> {
    stripe: &'a Mutex<Stripe>,
}

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        let mut state = self.stripe.lock().unwrap_or_else(|e| e.into_inner());
        state.waiting.clear();
        state.busy = false;
    }
}

/// Object writes, which address their row by id, can share a transaction.
fn batchable(write: &Write) -> bool {
    matches!(
        write,
        Write::CreateObject { .. } | Write::UpdateObject { .. } | Write::DeleteObject { .. }
    )
}

/// Object writes in one transaction (see `Writer::store_writes`): per write, what it wrote or
/// why it was refused.
async fn run_together(
    pool: &PgPool,
    batch: &[WriteJob],
) -> Result<Vec<StoreResult<(Written, Vec<Committed>)>>, Attempt> {
    let mut tx = pool.begin().await.map_err(Attempt::BeforeCommit)?;
    let mut ids: Vec<i64> = batch
        .iter()
        .filter_map(|job| match &job.write {
            Write::UpdateObject { id, .. } | Write::DeleteObject { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if !ids.is_empty() {
        sqlx::query("SELECT id FROM objects WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(Attempt::BeforeCommit)?;
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let savepoint = |sql: &'static str| sqlx::query(sql);
        savepoint("SAVEPOINT object_write")
            .execute(&mut *tx)
            .await
            .map_err(Attempt::BeforeCommit)?;
        let outcome = run_write(&mut Conn::Postgres(&mut tx), &job.write).await;
        if outcome.is_err() {
            savepoint("ROLLBACK TO object_write")
                .execute(&mut *tx)
                .await
                .map_err(Attempt::BeforeCommit)?;
        }
        savepoint("RELEASE object_write")
            .execute(&mut *tx)
            .await
            .map_err(Attempt::BeforeCommit)?;
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(Attempt::AtCommit)?;
    Ok(outcomes)
}

/// Runs a write in a transaction of its own.
async fn run_alone(pool: &PgPool, write: &Write) -> StoreResult<(Written, Vec<Committed>)> {
    let mut tx = pool.begin().await?;
    let outcome = run_write(&mut Conn::Postgres(&mut tx), write).await?;
    tx.commit().await?;
    Ok(outcome)
}

enum Attempt {
    /// Nothing was committed.
    BeforeCommit(sqlx::Error),
    /// The commit itself failed: its outcome is unknown.
    AtCommit(sqlx::Error),
}

/// Runs the publish statement for `job`: the allocated id, or `None` if the channel is gone.
async fn insert(
    conn: &mut PgConnection,
    job: &PublishJob,
    created_at: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(PUBLISH)
        .bind(job.instance_id)
        .bind(enc(&job.channel_name))
        .bind(job.channel_id)
        .bind(enc(job.new.room.as_deref().unwrap_or("")))
        .bind(job.new.action)
        .bind(&job.new.author)
        .bind(&job.new.metadata)
        .bind(&job.new.payload)
        .bind(created_at)
        .fetch_optional(conn)
        .await
}

/// One publish in its own (single-statement) transaction.
async fn store_one(pool: &PgPool, job: &PublishJob) -> StoreResult<(i64, i64)> {
    let mut conn = pool.acquire().await?;
    let created_at = model::now_micros();
    let id = insert(&mut conn, job, created_at)
        .await
        .map_err(missing_parent_or(StoreError::Backend))?;
    Ok((id.ok_or(StoreError::NotFound)?, created_at))
}

/// A batch in one transaction: per job its id and timestamp, or `NotFound`.
async fn store_together(
    pool: &PgPool,
    batch: &[PublishJob],
) -> Result<Vec<StoreResult<(i64, i64)>>, Attempt> {
    let mut tx = pool.begin().await.map_err(Attempt::BeforeCommit)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let created_at = model::now_micros();
        let id = insert(&mut tx, job, created_at)
            .await
            .map_err(Attempt::BeforeCommit)?;
        outcomes.push(id.map(|id| (id, created_at)).ok_or(StoreError::NotFound));
    }
    tx.commit().await.map_err(Attempt::AtCommit)?;
    Ok(outcomes)
}
