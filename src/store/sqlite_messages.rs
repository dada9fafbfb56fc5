//! SQLite implementation of [`MessageStore`]: publishing (through the group-commit task),
//! history reads and retention.

use async_trait::async_trait;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::sqlite::{RoomSet, SqliteStore, push_page};
use super::{
    Channel, IdPage, Message, MessageStore, NewMessage, Pruned, StoreResult, action_name, not_found,
};

fn message_from_row(row: SqliteRow) -> Result<Message, sqlx::Error> {
    let room: String = row.try_get("room")?;
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

#[async_trait]
impl MessageStore for SqliteStore {
    async fn publish(&self, channel: &Channel, new: NewMessage) -> StoreResult<Message> {
        self.publisher().publish(channel, new).await
    }

    async fn last_message_id(&self, channel: &Channel) -> StoreResult<i64> {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT last_id FROM channel_sequences WHERE instance_id = ? AND name = ?",
        )
        .bind(channel.instance_id)
        .bind(&channel.name)
        .fetch_optional(self.reader())
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
            .push_bind(room.unwrap_or(""));
        push_page(&mut query, "id", page);
        let rows = query.build().fetch_all(self.reader()).await?;
        Ok(rows
            .into_iter()
            .map(message_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn messages_after(
        &self,
        channel_id: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<Message>> {
        let rows = sqlx::query(
            "SELECT * FROM messages WHERE channel_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(channel_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(message_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn message(&self, channel_id: i64, id: i64, room: Option<&str>) -> StoreResult<Message> {
        let row = sqlx::query(
            "SELECT * FROM messages WHERE channel_id = ? AND id = ? AND (? IS NULL OR room = ?)",
        )
        .bind(channel_id)
        .bind(id)
        .bind(room)
        .bind(room)
        .fetch_one(self.reader())
        .await
        .map_err(not_found)?;
        Ok(message_from_row(row)?)
    }

    async fn prune(&self, max_per_room: u64, created_before: Option<i64>) -> StoreResult<Pruned> {
        let mut pruned = Pruned::default();
        if let Some(cutoff) = created_before {
            pruned.by_age = delete_in_chunks(self.writer(), |chunk| {
                sqlx::query(
                    "DELETE FROM messages WHERE (channel_id, id) IN (SELECT channel_id, id \
                     FROM messages WHERE created_at < ? ORDER BY created_at LIMIT ?)",
                )
                .bind(cutoff)
                .bind(chunk)
            })
            .await?;
        }
        if max_per_room > 0 {
            let keep = i64::try_from(max_per_room).unwrap_or(i64::MAX);
            let active = self.active_rooms().take(keep);
            match self.prune_rooms(active.as_ref(), keep).await {
                Ok(count) => pruned.by_count = count,
                Err(err) => {
                    self.active_rooms().forget();
                    return Err(err);
                }
            }
        }
        Ok(pruned)
    }
}

/// Rows deleted per statement: each statement holds the writer, so publishes queued behind a
/// large prune wait for one chunk, not for the whole prune.
const PRUNE_CHUNK: i64 = 1000;

impl SqliteStore {
    /// Trims each room to its newest `keep` messages: the rooms that got messages since the
    /// last pass, or all rooms when that is unknown (after a start).
    async fn prune_rooms(&self, active: Option<&RoomSet>, keep: i64) -> StoreResult<u64> {
        let rooms: Vec<(i64, String)> = match active {
            Some(active) => active
                .iter()
                .flat_map(|(channel_id, names)| {
                    names.iter().map(|name| (*channel_id, name.clone()))
                })
                .collect(),
            None => {
                sqlx::query_as(
                    "SELECT channel_id, room FROM messages GROUP BY channel_id, room \
                     HAVING COUNT(*) > ?",
                )
                .bind(keep)
                .fetch_all(self.reader())
                .await?
            }
        };
        let mut deleted = 0;
        for (channel_id, room) in rooms {
            // The newest id that falls outside the kept window, if the room is over.
            let cutoff: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM messages WHERE channel_id = ? AND room = ? \
                 ORDER BY id DESC LIMIT 1 OFFSET ?",
            )
            .bind(channel_id)
            .bind(&room)
            .bind(keep)
            .fetch_optional(self.reader())
            .await?;
            let Some(cutoff) = cutoff else { continue };
            deleted += delete_in_chunks(self.writer(), |chunk| {
                sqlx::query(
                    "DELETE FROM messages WHERE channel_id = ?1 AND room = ?2 AND id IN \
                     (SELECT id FROM messages WHERE channel_id = ?1 AND room = ?2 AND id <= ?3 \
                      ORDER BY id LIMIT ?4)",
                )
                .bind(channel_id)
                .bind(room.clone())
                .bind(cutoff)
                .bind(chunk)
            })
            .await?;
        }
        Ok(deleted)
    }
}

/// Runs a chunked DELETE until it removes fewer rows than a chunk, yielding between chunks.
async fn delete_in_chunks<'q>(
    writer: &SqlitePool,
    statement: impl Fn(i64) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
) -> StoreResult<u64> {
    let mut deleted = 0;
    loop {
        let removed = statement(PRUNE_CHUNK)
            .execute(writer)
            .await?
            .rows_affected();
        deleted += removed;
        if removed < PRUNE_CHUNK as u64 {
            return Ok(deleted);
        }
        tokio::task::yield_now().await;
    }
}
