//! Users, their profiles, groups and memberships (SPEC §7, §8).

use async_trait::async_trait;

use super::{Sql, SqlStore, all, lock_row, raw, raw_opt, rows};
use crate::keys::KeyDigest;
use crate::model;
use crate::store::{
    Group, GroupChanges, IdPage, NewUser, StoreError, StoreResult, User, UserChanges, UserStore,
    conflict, missing_parent_or, not_found, touched_one,
};

/// Users joined with their profiles; every user query selects these columns.
const USER_COLUMNS: &str = "SELECT u.id, u.instance_id, u.username, u.password_hash, u.user_key, \
     p.id AS profile_id, p.owner_permissions, p.group_id, p.group_permissions, \
     p.other_permissions, p.revision, p.created_at, p.updated_at \
     FROM users u JOIN user_profiles p ON p.user_id = u.id";

fn users_where(condition: &str) -> Sql {
    Sql::new(format!("{USER_COLUMNS} WHERE {condition}"))
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, instance_id: i64, new: NewUser) -> StoreResult<User> {
        let mut tx = self.db.begin().await?;
        let now = model::now_micros();
        let sql = Sql::new(
            "INSERT INTO users (instance_id, username, password_hash, user_key, key_digest, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(instance_id)
        .bind(new.username)
        .bind(raw(new.password_hash))
        .bind(raw(new.user_key))
        .bind(&new.key_digest.0[..])
        .bind(now)
        .bind(now);
        let row = tx
            .exec()
            .one(sql)
            .await
            .map_err(missing_parent_or(conflict("username")))?;
        let user_id = row.int("id")?;
        let profile = new.profile;
        let sql = Sql::new(
            "INSERT INTO user_profiles (user_id, owner_permissions, group_id, group_permissions, \
             other_permissions, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(user_id)
        .bind(raw(profile.owner_permissions.as_deref().unwrap_or("full")))
        .bind(profile.group_id.flatten())
        .bind(raw(profile.group_permissions.as_deref().unwrap_or("none")))
        .bind(raw(profile.other_permissions.as_deref().unwrap_or("none")))
        .bind(now)
        .bind(now);
        tx.exec().run(sql).await?;
        tx.commit().await?;
        self.user(instance_id, user_id).await
    }

    async fn user(&self, instance_id: i64, id: i64) -> StoreResult<User> {
        let sql = users_where("u.instance_id = ? AND u.id = ?")
            .bind(instance_id)
            .bind(id);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::user(&row)?)
    }

    async fn count_users(&self, instance_id: i64) -> StoreResult<i64> {
        let sql =
            Sql::new("SELECT COUNT(*) AS n FROM users WHERE instance_id = ?").bind(instance_id);
        Ok(self.db.read().one(sql).await?.int("n")?)
    }

    async fn user_by_username(&self, instance_id: i64, username: &str) -> StoreResult<User> {
        let sql = users_where("u.instance_id = ? AND u.username = ?")
            .bind(instance_id)
            .bind(username);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::user(&row)?)
    }

    async fn user_by_key(&self, digest: &KeyDigest) -> StoreResult<User> {
        let sql = users_where("u.key_digest = ?").bind(&digest.0[..]);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::user(&row)?)
    }

    async fn list_users(
        &self,
        instance_id: i64,
        username_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<User>> {
        let mut sql = users_where("u.instance_id = ?").bind(instance_id);
        if let Some(prefix) = username_prefix {
            sql = sql.and_prefix(self.db.dialect(), "u.username", prefix);
        }
        let sql = sql.and_page("u.id", page);
        all(self.db.read().all(sql).await?, rows::user)
    }

    async fn update_user(
        &self,
        instance_id: i64,
        id: i64,
        changes: UserChanges,
    ) -> StoreResult<User> {
        let mut tx = self.db.begin().await?;
        let now = model::now_micros();
        let sql = Sql::new(
            "UPDATE users SET username = COALESCE(?, username), \
             password_hash = COALESCE(?, password_hash), updated_at = ? \
             WHERE instance_id = ? AND id = ?",
        )
        .bind(changes.username)
        .bind(raw_opt(changes.password_hash))
        .bind(now)
        .bind(instance_id)
        .bind(id);
        touched_one(tx.exec().run(sql).await.map_err(conflict("username"))?)?;
        let profile = changes.profile;
        if !profile.is_empty() {
            let (set_group, group_id) = match profile.group_id {
                Some(group) => (true, group),
                None => (false, None),
            };
            let sql = Sql::new(
                "UPDATE user_profiles SET owner_permissions = COALESCE(?, owner_permissions), \
                 group_id = CASE WHEN ? THEN ? ELSE group_id END, \
                 group_permissions = COALESCE(?, group_permissions), \
                 other_permissions = COALESCE(?, other_permissions), \
                 revision = revision + 1, updated_at = ? WHERE user_id = ?",
            )
            .bind(raw_opt(profile.owner_permissions))
            .bind(set_group)
            .bind(group_id)
            .bind(raw_opt(profile.group_permissions))
            .bind(raw_opt(profile.other_permissions))
            .bind(now)
            .bind(id);
            tx.exec().run(sql).await?;
        }
        tx.commit().await?;
        self.user(instance_id, id).await
    }

    async fn set_user_key(
        &self,
        instance_id: i64,
        id: i64,
        key: &str,
        digest: &KeyDigest,
    ) -> StoreResult<User> {
        let sql = Sql::new(
            "UPDATE users SET user_key = ?, key_digest = ? WHERE instance_id = ? AND id = ?",
        )
        .bind(raw(key))
        .bind(&digest.0[..])
        .bind(instance_id)
        .bind(id);
        touched_one(self.db.write().run(sql).await?)?;
        self.user(instance_id, id).await
    }

    async fn delete_user(&self, instance_id: i64, id: i64) -> StoreResult<()> {
        let sql = Sql::new("DELETE FROM users WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id);
        touched_one(self.db.write().run(sql).await?)
    }

    async fn create_group(&self, instance_id: i64, fields: GroupChanges) -> StoreResult<Group> {
        let sql = Sql::new(
            "INSERT INTO groups (instance_id, name, label, description, created_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(instance_id)
        .bind(fields.name.flatten())
        .bind(fields.label.unwrap_or_default())
        .bind(fields.description.unwrap_or_default())
        .bind(model::now_micros());
        let row = self
            .db
            .write()
            .one(sql)
            .await
            .map_err(missing_parent_or(conflict("name")))?;
        Ok(rows::group(&row)?)
    }

    async fn group(&self, instance_id: i64, id: i64) -> StoreResult<Group> {
        let sql = Sql::new("SELECT * FROM groups WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::group(&row)?)
    }

    async fn group_exists(&self, instance_id: i64, id: i64) -> StoreResult<bool> {
        let sql = Sql::new("SELECT id FROM groups WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id);
        Ok(self.db.read().opt(sql).await?.is_some())
    }

    async fn list_groups(
        &self,
        instance_id: i64,
        label_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Group>> {
        let mut sql = Sql::new("SELECT * FROM groups WHERE instance_id = ?").bind(instance_id);
        if let Some(prefix) = label_prefix {
            sql = sql.and_prefix(self.db.dialect(), "label", prefix);
        }
        let sql = sql.and_page("id", page);
        all(self.db.read().all(sql).await?, rows::group)
    }

    async fn update_group(
        &self,
        instance_id: i64,
        id: i64,
        changes: GroupChanges,
    ) -> StoreResult<Group> {
        let (set_name, name) = match changes.name {
            Some(name) => (true, name),
            None => (false, None),
        };
        let sql = Sql::new(
            "UPDATE groups SET name = CASE WHEN ? THEN ? ELSE name END, \
             label = COALESCE(?, label), description = COALESCE(?, description) \
             WHERE instance_id = ? AND id = ? RETURNING *",
        )
        .bind(set_name)
        .bind(name)
        .bind(changes.label)
        .bind(changes.description)
        .bind(instance_id)
        .bind(id);
        let row = self.db.write().one(sql).await.map_err(|err| match err {
            sqlx::Error::RowNotFound => not_found(err),
            other => conflict("name")(other),
        })?;
        Ok(rows::group(&row)?)
    }

    async fn delete_group(&self, instance_id: i64, id: i64) -> StoreResult<()> {
        let sql = Sql::new("DELETE FROM groups WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id);
        touched_one(self.db.write().run(sql).await?)
    }

    async fn add_membership(
        &self,
        user_id: i64,
        group_id: i64,
        max_groups: u32,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        // Concurrent adds for one user check and insert in turn.
        lock_row(&mut tx, "users", user_id).await?;
        let sql = Sql::new("SELECT 1 AS found FROM memberships WHERE user_id = ? AND group_id = ?")
            .bind(user_id)
            .bind(group_id);
        if tx.exec().opt(sql).await?.is_some() {
            return Err(StoreError::Conflict("membership"));
        }
        let sql = Sql::new("SELECT COUNT(*) AS n FROM memberships WHERE user_id = ?").bind(user_id);
        if tx.exec().one(sql).await?.int("n")? >= i64::from(max_groups) {
            return Err(StoreError::LimitExceeded);
        }
        let sql =
            Sql::new("INSERT INTO memberships (user_id, group_id, created_at) VALUES (?, ?, ?)")
                .bind(user_id)
                .bind(group_id)
                .bind(model::now_micros());
        tx.exec().run(sql).await.map_err(conflict("membership"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_membership(&self, user_id: i64, group_id: i64) -> StoreResult<()> {
        let sql = Sql::new("DELETE FROM memberships WHERE user_id = ? AND group_id = ?")
            .bind(user_id)
            .bind(group_id);
        touched_one(self.db.write().run(sql).await?)
    }

    async fn is_member(&self, user_id: i64, group_id: i64) -> StoreResult<bool> {
        let sql = Sql::new("SELECT 1 AS found FROM memberships WHERE user_id = ? AND group_id = ?")
            .bind(user_id)
            .bind(group_id);
        Ok(self.db.read().opt(sql).await?.is_some())
    }

    async fn groups_of_user(&self, user_id: i64, page: IdPage) -> StoreResult<Vec<Group>> {
        let sql = Sql::new(
            "SELECT g.* FROM groups g JOIN memberships m ON m.group_id = g.id WHERE m.user_id = ?",
        )
        .bind(user_id)
        .and_page("g.id", page);
        all(self.db.read().all(sql).await?, rows::group)
    }

    async fn users_of_group(&self, group_id: i64, page: IdPage) -> StoreResult<Vec<User>> {
        let sql = Sql::new(format!(
            "{USER_COLUMNS} JOIN memberships m ON m.user_id = u.id WHERE m.group_id = ?"
        ))
        .bind(group_id)
        .and_page("u.id", page);
        all(self.db.read().all(sql).await?, rows::user)
    }
}
