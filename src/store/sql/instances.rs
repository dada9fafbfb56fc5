//! Instances and their API keys (docs/api.md §5, §6).

use async_trait::async_trait;

use super::classes::{create_user_profile_class, drop_instance_indexes};
use super::{Sql, SqlStore, all, lock_row, raw, raw_opt, rows};
use crate::access::Change;
use crate::keys::KeyDigest;
use crate::model;
use crate::store::{
    ApiKey, ApiKeyChanges, IdPage, Instance, InstanceChanges, InstanceStore, StoreError,
    StoreResult, conflict, missing_parent_or, not_found, touched_one,
};

/// The channels every instance starts with (docs/api.md §9.2): name and `custom_publish`.
const BUILTIN_CHANNELS: [(&str, bool); 2] = [
    (model::DEFAULT_CHANNEL, true),
    (model::EVENTLOG_CHANNEL, false),
];

#[async_trait]
impl InstanceStore for SqlStore {
    async fn create_instance(
        &self,
        owner_id: i64,
        name: &str,
        changes: InstanceChanges,
        max_per_owner: u32,
    ) -> StoreResult<Instance> {
        let mut tx = self.db.begin().await?;
        if max_per_owner > 0 {
            // Concurrent creates of one owner count one at a time.
            lock_row(&mut tx, "accounts", owner_id).await?;
            let owned = tx
                .exec()
                .one(
                    Sql::new("SELECT COUNT(*) AS n FROM instances WHERE owner_id = ?")
                        .bind(owner_id),
                )
                .await?;
            if owned.int("n")? >= i64::from(max_per_owner) {
                return Err(StoreError::LimitExceeded);
            }
        }
        let now = model::now_micros();
        let sql = Sql::new(
            "INSERT INTO instances (name, owner_id, description, metadata, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(name)
        .bind(owner_id)
        .bind(changes.description.unwrap_or_default())
        .bind(raw(changes
            .metadata
            .map_or_else(|| "{}".to_owned(), |m| m.to_string())))
        .bind(now)
        .bind(now);
        let row = tx.exec().one(sql).await.map_err(conflict("name"))?;
        let instance = rows::instance(&row)?;
        for (channel, custom_publish) in BUILTIN_CHANNELS {
            let sql = Sql::new(
                "INSERT INTO channels (instance_id, name, type, custom_publish, created_at, \
                 updated_at) VALUES (?, ?, 'separate_rooms', ?, ?, ?)",
            )
            .bind(instance.id)
            .bind(channel)
            .bind(custom_publish)
            .bind(now)
            .bind(now);
            tx.exec().run(sql).await?;
            let sql = Sql::new("INSERT INTO channel_sequences (instance_id, name) VALUES (?, ?)")
                .bind(instance.id)
                .bind(channel);
            tx.exec().run(sql).await?;
        }
        create_user_profile_class(&mut tx, instance.id, now).await?;
        tx.commit().await?;
        Ok(instance)
    }

    async fn instance(&self, id: i64) -> StoreResult<Instance> {
        let sql = Sql::new("SELECT * FROM instances WHERE id = ?").bind(id);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::instance(&row)?)
    }

    async fn instance_by_name(&self, name: &str) -> StoreResult<Instance> {
        let sql = Sql::new("SELECT * FROM instances WHERE name = ?").bind(name);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::instance(&row)?)
    }

    async fn list_instances(
        &self,
        owner_id: i64,
        name_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Instance>> {
        let mut sql = Sql::new("SELECT * FROM instances WHERE owner_id = ?").bind(owner_id);
        if let Some(prefix) = name_prefix {
            sql = sql.and_prefix(self.db.dialect(), "name", prefix);
        }
        let sql = sql.and_page("id", page);
        all(self.db.read().all(sql).await?, rows::instance)
    }

    async fn update_instance(&self, id: i64, changes: InstanceChanges) -> StoreResult<Instance> {
        let sql = Sql::new(
            "UPDATE instances SET description = COALESCE(?, description), \
             metadata = COALESCE(?, metadata), updated_at = ? WHERE id = ? RETURNING *",
        )
        .bind(changes.description)
        .bind(raw_opt(changes.metadata.map(|m| m.to_string())))
        .bind(model::now_micros())
        .bind(id);
        let mut tx = self.db.begin().await?;
        let row = tx.exec().one(sql).await.map_err(not_found)?;
        self.commit_logged(tx, Change::Instance { id }).await?;
        Ok(rows::instance(&row)?)
    }

    async fn rename_instance(&self, id: i64, new_name: &str) -> StoreResult<Instance> {
        let sql =
            Sql::new("UPDATE instances SET name = ?, updated_at = ? WHERE id = ? RETURNING *")
                .bind(new_name)
                .bind(model::now_micros())
                .bind(id);
        let mut tx = self.db.begin().await?;
        let row = tx.exec().one(sql).await.map_err(|err| match err {
            sqlx::Error::RowNotFound => not_found(err),
            other => conflict("new_name")(other),
        })?;
        self.commit_logged(tx, Change::Instance { id }).await?;
        Ok(rows::instance(&row)?)
    }

    async fn delete_instance(&self, id: i64) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        drop_instance_indexes(&mut tx, id).await?;
        let sql = Sql::new("DELETE FROM instances WHERE id = ?").bind(id);
        touched_one(tx.exec().run(sql).await?)?;
        self.commit_logged(tx, Change::InstanceDeleted { id }).await
    }

    async fn create_api_key(
        &self,
        instance_id: i64,
        key: &str,
        digest: &KeyDigest,
        fields: ApiKeyChanges,
    ) -> StoreResult<ApiKey> {
        let sql = Sql::new(
            "INSERT INTO api_keys (instance_id, api_key, key_digest, description, ignore_acl, \
             allow_user_create, allow_group_create, allow_anonymous_read, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(instance_id)
        .bind(raw(key))
        .bind(&digest.0[..])
        .bind(fields.description.unwrap_or_default())
        .bind(fields.ignore_acl.unwrap_or(false))
        .bind(fields.allow_user_create.unwrap_or(false))
        .bind(fields.allow_group_create.unwrap_or(false))
        .bind(fields.allow_anonymous_read.unwrap_or(false))
        .bind(model::now_micros());
        let row = self
            .db
            .write()
            .one(sql)
            .await
            // A key is only unknown to the instance if the instance vanished meanwhile.
            .map_err(missing_parent_or(StoreError::Backend))?;
        Ok(rows::api_key(&row)?)
    }

    async fn api_key(&self, instance_id: i64, id: i64) -> StoreResult<ApiKey> {
        let sql = Sql::new("SELECT * FROM api_keys WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::api_key(&row)?)
    }

    async fn api_key_by_key(&self, digest: &KeyDigest) -> StoreResult<ApiKey> {
        let sql = Sql::new("SELECT * FROM api_keys WHERE key_digest = ?").bind(&digest.0[..]);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::api_key(&row)?)
    }

    async fn list_api_keys(&self, instance_id: i64, page: IdPage) -> StoreResult<Vec<ApiKey>> {
        let sql = Sql::new("SELECT * FROM api_keys WHERE instance_id = ?")
            .bind(instance_id)
            .and_page("id", page);
        all(self.db.read().all(sql).await?, rows::api_key)
    }

    async fn update_api_key(
        &self,
        instance_id: i64,
        id: i64,
        changes: ApiKeyChanges,
    ) -> StoreResult<ApiKey> {
        let sql = Sql::new(
            "UPDATE api_keys SET description = COALESCE(?, description), \
             ignore_acl = COALESCE(?, ignore_acl), \
             allow_user_create = COALESCE(?, allow_user_create), \
             allow_group_create = COALESCE(?, allow_group_create), \
             allow_anonymous_read = COALESCE(?, allow_anonymous_read) \
             WHERE instance_id = ? AND id = ? RETURNING *",
        )
        .bind(changes.description)
        .bind(changes.ignore_acl)
        .bind(changes.allow_user_create)
        .bind(changes.allow_group_create)
        .bind(changes.allow_anonymous_read)
        .bind(instance_id)
        .bind(id);
        self.api_key_change(instance_id, id, sql).await
    }

    async fn set_api_key_key(
        &self,
        instance_id: i64,
        id: i64,
        key: &str,
        digest: &KeyDigest,
    ) -> StoreResult<ApiKey> {
        let sql = Sql::new(
            "UPDATE api_keys SET api_key = ?, key_digest = ? WHERE instance_id = ? AND id = ? \
             RETURNING *",
        )
        .bind(raw(key))
        .bind(&digest.0[..])
        .bind(instance_id)
        .bind(id);
        self.api_key_change(instance_id, id, sql).await
    }

    async fn delete_api_key(&self, instance_id: i64, id: i64) -> StoreResult<()> {
        let sql = Sql::new("DELETE FROM api_keys WHERE instance_id = ? AND id = ? RETURNING *")
            .bind(instance_id)
            .bind(id);
        self.api_key_change(instance_id, id, sql).await.map(drop)
    }
}

impl SqlStore {
    /// Runs `sql`, which changes one API key and returns its row, logging the change.
    async fn api_key_change(&self, instance_id: i64, id: i64, sql: Sql) -> StoreResult<ApiKey> {
        let mut tx = self.db.begin().await?;
        let row = tx.exec().one(sql).await.map_err(not_found)?;
        self.commit_logged(tx, Change::ApiKey { instance_id, id })
            .await?;
        Ok(rows::api_key(&row)?)
    }
}
