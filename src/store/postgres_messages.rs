//! PostgreSQL implementation of [`MessageStore`]: publishing, history reads and retention.
//!
//! A publish is one statement, so one transaction: it increments the channel's sequence row
//! (whose lock it then holds until commit) and inserts the message under the new id. Publishers
//! of one channel on any node therefore commit one after another in id order, and the committed
//! ids are consecutive. Within this process a channel's publishes also take turns (a striped
//! mutex held from before the statement until the listener has been told), so the listener hears
//! them in id order; across nodes, fan-out orders by id itself.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{QueryBuilder, Row};

use super::postgres::{PgStore, all, dec, enc, missing_parent_or, push_page};
use super::{
    Channel, IdPage, Message, MessageStore, NewMessage, Pruned, StoreError, StoreResult,
    action_name, not_found,
};
use crate::model;

fn message_from_row(row: PgRow) -> Result<Message, sqlx::Error> {
    let room = dec(row.try_get("room")?);
    let action: String = row.try_get("action")?;
    Ok(Message {
        id: row.try_get("id")?,
        room: (!room.is_empty()).then_some(room),
        action: action_name(&action)?,
        author: row.try_get("author")?,
        metadata: row.try_get("metadata")?,
        payload: row.try_get("payload")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Allocates the channel's next id and stores the message, atomically. The sequence outlives
/// its channel; a deleted channel allocates nothing (and one deleted while this runs fails the
/// foreign key, rolling the allocation back).
const PUBLISH: &str = "WITH allocated AS (\
     UPDATE channel_sequences SET last_id = last_id + 1 \
     WHERE instance_id = $1 AND name = $2 AND EXISTS (SELECT 1 FROM channels WHERE id = $3) \
     RETURNING last_id) \
     INSERT INTO messages (channel_id, id, room, action, author, metadata, payload, created_at) \
     SELECT $3, last_id, $4, $5, $6, $7, $8, $9 FROM allocated RETURNING id";

#[async_trait]
impl MessageStore for PgStore {
    async fn publish(&self, channel: &Channel, new: NewMessage) -> StoreResult<Message> {
        let pool = self.pool.clone();
        let listener = self.listener.clone();
        let turns = self.publish_turns.clone();
        let (channel_id, instance_id, name) =
            (channel.id, channel.instance_id, channel.name.clone());
        // A task of its own: a publisher that goes away cannot stop a publish between its commit
        // and the listener, nor leave the channel's turn half taken.
        let task = tokio::spawn(async move {
            let stripe = channel_id.rem_euclid(turns.len() as i64) as usize;
            let _turn = turns[stripe].lock().await;
            let created_at = model::now_micros();
            let id: Option<i64> = sqlx::query_scalar(PUBLISH)
                .bind(instance_id)
                .bind(enc(&name))
                .bind(channel_id)
                .bind(enc(new.room.as_deref().unwrap_or("")))
                .bind(new.action)
                .bind(&new.author)
                .bind(&new.metadata)
                .bind(&new.payload)
                .bind(created_at)
                .fetch_optional(&pool)
                .await
                .map_err(missing_parent_or(StoreError::Backend))?;
            let id = id.ok_or(StoreError::NotFound)?;
            let message = Message {
                id,
                room: new.room,
                action: new.action,
                author: new.author,
                metadata: new.metadata,
                payload: new.payload,
                created_at,
            };
            listener.committed(channel_id, &message);
            Ok(message)
        });
        task.await
            .map_err(|err| StoreError::Unavailable(format!("the publishing task failed: {err}")))?
    }

    async fn last_message_id(&self, channel: &Channel) -> StoreResult<i64> {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT last_id FROM channel_sequences WHERE instance_id = $1 AND name = $2",
        )
        .bind(channel.instance_id)
        .bind(enc(&channel.name))
        .fetch_optional(&self.pool)
        .await?;
        Ok(last.unwrap_or(0))
    }

    async fn history(
        &self,
        channel_id: i64,
        room: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Message>> {
        let mut query = QueryBuilder::new("SELECT * FROM messages WHERE channel_id = ");
        query
            .push_bind(channel_id)
            .push(" AND room = ")
            .push_bind(enc(room.unwrap_or("")).into_owned());
        push_page(&mut query, "id", page);
        all(query.build().fetch_all(&self.pool).await?, message_from_row)
    }

    async fn messages_after(
        &self,
        channel_id: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT * FROM messages WHERE channel_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(channel_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        all(rows, message_from_row)
    }

    async fn message(&self, channel_id: i64, id: i64, room: Option<&str>) -> StoreResult<Message> {
        let row = sqlx::query(
            "SELECT * FROM messages WHERE channel_id = $1 AND id = $2 \
             AND ($3::text IS NULL OR room = $3)",
        )
        .bind(channel_id)
        .bind(id)
        .bind(room.map(enc))
        .fetch_one(&self.pool)
        .await
        .map_err(not_found)?;
        Ok(message_from_row(row)?)
    }

    async fn prune(&self, max_per_room: u64, created_before: Option<i64>) -> StoreResult<Pruned> {
        let mut pruned = Pruned::default();
        let mut tx = self.pool.begin().await?;
        // One node prunes at a time; the others skip this round.
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(self.prune_lock())
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(pruned);
        }
        if let Some(cutoff) = created_before {
            pruned.by_age = sqlx::query("DELETE FROM messages WHERE created_at < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if max_per_room > 0 {
            let keep = i64::try_from(max_per_room).unwrap_or(i64::MAX);
            let over: Vec<(i64, String)> = sqlx::query_as(
                "SELECT channel_id, room FROM messages GROUP BY channel_id, room \
                 HAVING COUNT(*) > $1",
            )
            .bind(keep)
            .fetch_all(&mut *tx)
            .await?;
            for (channel_id, room) in over {
                // Everything at or below the newest id that falls outside the kept window.
                pruned.by_count += sqlx::query(
                    "DELETE FROM messages WHERE channel_id = $1 AND room = $2 AND id <= \
                     (SELECT id FROM messages WHERE channel_id = $1 AND room = $2 \
                      ORDER BY id DESC LIMIT 1 OFFSET $3)",
                )
                .bind(channel_id)
                .bind(&room)
                .bind(keep)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        tx.commit().await?;
        Ok(pruned)
    }
}
