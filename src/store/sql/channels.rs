//! Channels (docs/api.md §9.1–§9.4).

use async_trait::async_trait;

use super::{Sql, SqlStore, all, rows};
use crate::access::Change;
use crate::model::{self, Permission};
use crate::store::{
    Channel, ChannelChanges, ChannelStore, ChannelVisibility, IdPage, NewChannel, StoreResult,
    conflict, missing_parent_or, not_found,
};

#[async_trait]
impl ChannelStore for SqlStore {
    async fn create_channel(&self, instance_id: i64, new: NewChannel) -> StoreResult<Channel> {
        let mut tx = self.db.begin().await?;
        let now = model::now_micros();
        let sql = Sql::new(
            "INSERT INTO channels (instance_id, name, type, description, group_id, \
             group_permissions, other_permissions, custom_publish, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(instance_id)
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(new.description)
        .bind(new.group_id)
        .bind(new.group_permissions.as_str())
        .bind(new.other_permissions.as_str())
        .bind(new.custom_publish)
        .bind(now)
        .bind(now);
        let row = tx
            .exec()
            .one(sql)
            .await
            .map_err(missing_parent_or(conflict("name")))?;
        // Keep an existing sequence: a re-created channel continues its predecessor's ids.
        let sql = Sql::new(
            "INSERT INTO channel_sequences (instance_id, name) VALUES (?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(instance_id)
        .bind(new.name);
        tx.exec().run(sql).await?;
        let channel = rows::channel(&row)?;
        tx.commit().await?;
        Ok(channel)
    }

    async fn channel(&self, instance_id: i64, name: &str) -> StoreResult<Channel> {
        let sql = Sql::new("SELECT * FROM channels WHERE instance_id = ? AND name = ?")
            .bind(instance_id)
            .bind(name);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::channel(&row)?)
    }

    async fn list_channels(
        &self,
        instance_id: i64,
        name_prefix: Option<&str>,
        visibility: ChannelVisibility,
        page: IdPage,
    ) -> StoreResult<Vec<Channel>> {
        let mut sql = Sql::new("SELECT * FROM channels WHERE instance_id = ?").bind(instance_id);
        if let Some(prefix) = name_prefix {
            sql = sql.and_prefix(self.db.dialect(), "name", prefix);
        }
        const READABLE: &str = "('subscribe', 'publish')";
        sql = match visibility {
            ChannelVisibility::All => sql,
            ChannelVisibility::Others => sql.push(&format!(" AND other_permissions IN {READABLE}")),
            ChannelVisibility::User(user_id) => sql
                .push(&format!(
                    " AND (other_permissions IN {READABLE} OR (group_permissions IN \
                     {READABLE} AND group_id IN (SELECT group_id FROM memberships \
                     WHERE user_id = ?)))"
                ))
                .bind(user_id),
        };
        let sql = sql.and_page("id", page);
        all(self.db.read().all(sql).await?, rows::channel)
    }

    async fn update_channel(
        &self,
        instance_id: i64,
        name: &str,
        changes: ChannelChanges,
    ) -> StoreResult<Channel> {
        let (set_group, group_id) = match changes.group_id {
            Some(group) => (true, group),
            None => (false, None),
        };
        let sql = Sql::new(
            "UPDATE channels SET description = COALESCE(?, description), \
             group_id = CASE WHEN ? THEN ? ELSE group_id END, \
             group_permissions = COALESCE(?, group_permissions), \
             other_permissions = COALESCE(?, other_permissions), \
             custom_publish = COALESCE(?, custom_publish), updated_at = ? \
             WHERE instance_id = ? AND name = ? RETURNING *",
        )
        .bind(changes.description)
        .bind(set_group)
        .bind(group_id)
        .bind(changes.group_permissions.map(Permission::as_str))
        .bind(changes.other_permissions.map(Permission::as_str))
        .bind(changes.custom_publish)
        .bind(model::now_micros())
        .bind(instance_id)
        .bind(name);
        let mut tx = self.db.begin().await?;
        let row = tx.exec().one(sql).await.map_err(not_found)?;
        let change = Change::Channel {
            instance_id,
            name: name.to_owned(),
        };
        self.commit_logged(tx, change).await?;
        Ok(rows::channel(&row)?)
    }

    async fn delete_channel(&self, instance_id: i64, name: &str) -> StoreResult<()> {
        let sql = Sql::new("DELETE FROM channels WHERE instance_id = ? AND name = ? RETURNING id")
            .bind(instance_id)
            .bind(name);
        let mut tx = self.db.begin().await?;
        let row = tx.exec().one(sql).await.map_err(not_found)?;
        let change = Change::ChannelDeleted {
            instance_id,
            name: name.to_owned(),
            channel_id: row.int("id")?,
        };
        self.commit_logged(tx, change).await
    }
}
