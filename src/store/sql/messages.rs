//! Messages: publishing (through the backend's writer), history reads and retention.

use async_trait::async_trait;

use super::{Backend, Conn, Sql, SqlStore, all, raw, rows};
use crate::model;
use crate::store::{
    Channel, IdPage, Message, MessageStore, NewMessage, Pruned, RetentionLimits, StoreError,
    StoreResult, missing_parent_or, not_found, postgres, sqlite,
};

#[async_trait]
impl MessageStore for SqlStore {
    async fn publish(&self, channel: &Channel, new: NewMessage) -> StoreResult<Message> {
        match &self.backend {
            Backend::Sqlite(embedded) => embedded.writer.publish(channel, new).await,
            Backend::Postgres(cluster) => cluster.writer.publish(channel, new).await,
        }
    }

    async fn last_message_id(&self, channel: &Channel) -> StoreResult<i64> {
        let sql =
            Sql::new("SELECT last_id FROM channel_sequences WHERE instance_id = ? AND name = ?")
                .bind(channel.instance_id)
                .bind(&channel.name);
        let row = self.db.read().opt(sql).await?;
        Ok(row.map(|row| row.int("last_id")).transpose()?.unwrap_or(0))
    }

    async fn history(
        &self,
        channel_id: i64,
        room: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Message>> {
        let sql = Sql::new("SELECT * FROM messages WHERE channel_id = ? AND room = ?")
            .bind(channel_id)
            .bind(room.unwrap_or(""))
            .and_page("id", page);
        all(self.db.read().all(sql).await?, rows::message)
    }

    async fn messages_after(
        &self,
        channel_id: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<Message>> {
        let sql =
            Sql::new("SELECT * FROM messages WHERE channel_id = ? AND id > ? ORDER BY id LIMIT ?")
                .bind(channel_id)
                .bind(after)
                .bind(limit);
        all(self.db.read().all(sql).await?, rows::message)
    }

    async fn message(&self, channel_id: i64, id: i64, room: Option<&str>) -> StoreResult<Message> {
        let mut sql = Sql::new("SELECT * FROM messages WHERE channel_id = ? AND id = ?")
            .bind(channel_id)
            .bind(id);
        if let Some(room) = room {
            sql = sql.push(" AND room = ?").bind(room);
        }
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::message(&row)?)
    }

    async fn prune(&self, limits: RetentionLimits) -> StoreResult<Pruned> {
        match &self.backend {
            Backend::Sqlite(embedded) => sqlite::prune(embedded, limits).await,
            Backend::Postgres(cluster) => postgres::prune(cluster, limits).await,
        }
    }

    async fn pruned_through(&self, channel_id: i64, room: Option<&str>) -> StoreResult<i64> {
        let sql =
            Sql::new("SELECT pruned_through FROM room_pruning WHERE channel_id = ? AND room = ?")
                .bind(channel_id)
                .bind(room.unwrap_or(""));
        let row = self.db.read().opt(sql).await?;
        Ok(row
            .map(|row| row.int("pruned_through"))
            .transpose()?
            .unwrap_or(0))
    }
}

/// Stores a message inside the caller's transaction, allocating the channel's next id there
/// (docs/api.md §9.5): a data change and its change message commit together. On PostgreSQL the
/// sequence row stays locked until the commit, so the channel's ids commit in order.
pub(super) async fn store_message(
    conn: &mut Conn<'_>,
    instance_id: i64,
    channel_id: i64,
    channel_name: &str,
    new: NewMessage,
) -> StoreResult<Message> {
    let sql = Sql::new(
        "UPDATE channel_sequences SET last_id = last_id + 1 WHERE instance_id = ? AND name = ? \
         RETURNING last_id",
    )
    .bind(instance_id)
    .bind(channel_name);
    let id = conn
        .exec()
        .opt(sql)
        .await?
        .ok_or(StoreError::NotFound)?
        .int("last_id")?;
    let created_at = model::now_micros();
    let sql = Sql::new(
        "INSERT INTO messages (channel_id, id, room, action, author, metadata, payload, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(channel_id)
    .bind(id)
    .bind(new.room.as_deref().unwrap_or(""))
    .bind(raw(new.action))
    .bind(raw(new.author.as_str()))
    .bind(raw(new.metadata.as_str()))
    .bind(raw(new.payload.as_str()))
    .bind(created_at);
    conn.exec()
        .run(sql)
        .await
        .map_err(missing_parent_or(StoreError::Backend))?;
    Ok(Message {
        id,
        room: new.room,
        action: new.action,
        author: new.author,
        metadata: new.metadata,
        payload: new.payload,
        created_at,
    })
}
