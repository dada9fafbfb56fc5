//! Users, their profiles, groups and memberships (docs/api.md §7, §8).

use async_trait::async_trait;

use std::sync::LazyLock;

use super::{Sql, SqlStore, Tx, all, lock_row, object_columns, raw, rows};
use crate::access::Change;
use crate::keys::KeyDigest;
use crate::model;
use crate::objects::{ObjectPermission, USER_PROFILE};
use crate::store::{
    Group, GroupChanges, IdPage, NewObject, NewUser, ObjectChanges, ObjectStore, StoreError,
    StoreResult, User, UserChanges, UserStore, Write, Written, conflict, missing_parent_or,
    not_found, touched_one,
};

/// Users joined with their profiles (objects of the instance's `user_profile` class); every
/// user query selects these columns.
static USER_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT u.id, u.instance_id, u.username, u.password_hash, u.user_key, {} \
         FROM users u \
         JOIN classes pc ON pc.instance_id = u.instance_id AND pc.name = '{USER_PROFILE}' \
         JOIN objects p ON p.class_id = pc.id AND p.owner_id = u.id \
         LEFT JOIN channels pch ON pch.id = p.channel_id",
        object_columns("p", "pch", "p_")
    )
});

fn users_where(condition: &str) -> Sql {
    Sql::new(format!("{} WHERE {condition}", *USER_COLUMNS))
}

/// The profile a user gets when the request sets none of its fields.
fn default_profile() -> NewObject {
    NewObject {
        owner_id: None,
        owner_permissions: ObjectPermission::Full,
        group_id: None,
        group_permissions: ObjectPermission::None,
        other_permissions: ObjectPermission::None,
        channel: None,
        data: serde_json::Map::new(),
    }
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, instance_id: i64, new: NewUser) -> StoreResult<User> {
        let write = Write::CreateUser {
            instance_id,
            profile_class: self.class(instance_id, USER_PROFILE).await?,
            new,
            profile: default_profile(),
            author: "{}".to_owned(),
        };
        match self.write(write).await? {
            Written::User(user) => Ok(user),
            _ => Err(StoreError::NotFound),
        }
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
        let write = Write::UpdateUser {
            instance_id,
            id,
            profile_class: self.class(instance_id, USER_PROFILE).await?,
            changes,
            profile_channel_id: None,
            profile: ObjectChanges::default(),
            author: "{}".to_owned(),
        };
        match self.write(write).await? {
            Written::User(user) => Ok(user),
            _ => Err(StoreError::NotFound),
        }
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
        self.logged(sql, Change::User { instance_id, id }).await?;
        self.user(instance_id, id).await
    }

    async fn delete_user(&self, instance_id: i64, id: i64) -> StoreResult<()> {
        let sql = Sql::new("DELETE FROM users WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id);
        self.logged(sql, Change::User { instance_id, id }).await
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
        self.logged(sql, Change::Channels { instance_id }).await
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
        let change = membership_change(&mut tx, user_id).await?;
        self.commit_logged(tx, change).await
    }

    async fn remove_membership(&self, user_id: i64, group_id: i64) -> StoreResult<()> {
        let sql = Sql::new("DELETE FROM memberships WHERE user_id = ? AND group_id = ?")
            .bind(user_id)
            .bind(group_id);
        let mut tx = self.db.begin().await?;
        touched_one(tx.exec().run(sql).await?)?;
        let change = membership_change(&mut tx, user_id).await?;
        self.commit_logged(tx, change).await
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
            "{} JOIN memberships m ON m.user_id = u.id WHERE m.group_id = ?",
            *USER_COLUMNS
        ))
        .bind(group_id)
        .and_page("u.id", page);
        all(self.db.read().all(sql).await?, rows::user)
    }
}

/// Logs that `user_id`'s groups changed, inside the transaction that changed them.
async fn membership_change(tx: &mut Tx, user_id: i64) -> StoreResult<Change> {
    let sql = Sql::new("SELECT instance_id FROM users WHERE id = ?").bind(user_id);
    let instance_id = tx
        .exec()
        .one(sql)
        .await
        .map_err(not_found)?
        .int("instance_id")?;
    Ok(Change::Membership {
        instance_id,
        user_id,
    })
}
