//! PostgreSQL implementation of [`MessageStore`]: publishing (through `postgres_publisher`),
//! history reads and retention.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{QueryBuilder, Row};

use super::postgres::{PgStore, all, dec, enc, push_page};
use super::{
    Channel, IdPage, Message, MessageStore, NewMessage, Pruned, StoreResult, action_name, not_found,
};

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

#[async_trait]
impl MessageStore for PgStore {
    async fn publish(&self, channel: &Channel, new: NewMessage) -> StoreResult<Message> {
        self.publisher.publish(channel, new).await
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
