//! PostgreSQL implementation of [`UserStore`]: users, profiles, groups and memberships.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{QueryBuilder, Row};

use super::postgres::{
    PgStore, all, enc, enc_opt, missing_parent_or, push_page, push_prefix, text, touched_one,
};
use super::users::*;
use super::{IdPage, StoreError, StoreResult, conflict, not_found};
use crate::keys::KeyDigest;
use crate::model;

/// Users joined with their profiles; every user query selects these columns.
const USER_COLUMNS: &str = "SELECT u.id, u.instance_id, u.username, u.password_hash, u.user_key, \
     p.id AS profile_id, p.owner_permissions, p.group_id, p.group_permissions, \
     p.other_permissions, p.revision, p.created_at, p.updated_at \
     FROM users u JOIN user_profiles p ON p.user_id = u.id";

fn user_from_row(row: PgRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        instance_id: row.try_get("instance_id")?,
        username: text(&row, "username")?,
        password_hash: text(&row, "password_hash")?,
        user_key: text(&row, "user_key")?,
        profile: Profile {
            id: row.try_get("profile_id")?,
            owner_permissions: text(&row, "owner_permissions")?,
            group_id: row.try_get("group_id")?,
            group_permissions: text(&row, "group_permissions")?,
            other_permissions: text(&row, "other_permissions")?,
            revision: row.try_get("revision")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        },
    })
}

fn group_from_row(row: PgRow) -> Result<Group, sqlx::Error> {
    Ok(Group {
        id: row.try_get("id")?,
        instance_id: row.try_get("instance_id")?,
        name: text(&row, "name")?,
        label: text(&row, "label")?,
        description: text(&row, "description")?,
    })
}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, instance_id: i64, new: NewUser) -> StoreResult<User> {
        let mut tx = self.pool.begin().await?;
        let now = model::now_micros();
        let user_id: i64 = sqlx::query_scalar(
            "INSERT INTO users (instance_id, username, password_hash, user_key, key_digest, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(instance_id)
        .bind(enc(&new.username))
        .bind(&new.password_hash)
        .bind(&new.user_key)
        .bind(&new.key_digest.0[..])
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(missing_parent_or(conflict("username")))?;
        let profile = new.profile;
        sqlx::query(
            "INSERT INTO user_profiles (user_id, owner_permissions, group_id, group_permissions, \
             other_permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(user_id)
        .bind(profile.owner_permissions.as_deref().unwrap_or("full"))
        .bind(profile.group_id.flatten())
        .bind(profile.group_permissions.as_deref().unwrap_or("none"))
        .bind(profile.other_permissions.as_deref().unwrap_or("none"))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.user(instance_id, user_id).await
    }

    async fn user(&self, instance_id: i64, id: i64) -> StoreResult<User> {
        let sql = format!("{USER_COLUMNS} WHERE u.instance_id = $1 AND u.id = $2");
        let row = sqlx::query(&sql)
            .bind(instance_id)
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(user_from_row(row)?)
    }

    async fn count_users(&self, instance_id: i64) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE instance_id = $1")
                .bind(instance_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn user_by_username(&self, instance_id: i64, username: &str) -> StoreResult<User> {
        let sql = format!("{USER_COLUMNS} WHERE u.instance_id = $1 AND u.username = $2");
        let row = sqlx::query(&sql)
            .bind(instance_id)
            .bind(enc(username))
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(user_from_row(row)?)
    }

    async fn user_by_key(&self, digest: &KeyDigest) -> StoreResult<User> {
        let sql = format!("{USER_COLUMNS} WHERE u.key_digest = $1");
        let row = sqlx::query(&sql)
            .bind(&digest.0[..])
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(user_from_row(row)?)
    }

    async fn list_users(
        &self,
        instance_id: i64,
        username_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<User>> {
        let mut query = QueryBuilder::new(USER_COLUMNS);
        query.push(" WHERE u.instance_id = ").push_bind(instance_id);
        if let Some(prefix) = username_prefix {
            push_prefix(&mut query, "u.username", prefix);
        }
        push_page(&mut query, "u.id", page);
        all(query.build().fetch_all(&self.pool).await?, user_from_row)
    }

    async fn update_user(
        &self,
        instance_id: i64,
        id: i64,
        changes: UserChanges,
    ) -> StoreResult<User> {
        let mut tx = self.pool.begin().await?;
        let now = model::now_micros();
        let done = sqlx::query(
            "UPDATE users SET username = COALESCE($1, username), \
             password_hash = COALESCE($2, password_hash), updated_at = $3 \
             WHERE instance_id = $4 AND id = $5",
        )
        .bind(enc_opt(changes.username))
        .bind(changes.password_hash)
        .bind(now)
        .bind(instance_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(conflict("username"))?;
        touched_one(done)?;
        let profile = changes.profile;
        if !profile.is_empty() {
            let (set_group, group_id) = match profile.group_id {
                Some(group) => (true, group),
                None => (false, None),
            };
            sqlx::query(
                "UPDATE user_profiles SET owner_permissions = COALESCE($1, owner_permissions), \
                 group_id = CASE WHEN $2 THEN $3 ELSE group_id END, \
                 group_permissions = COALESCE($4, group_permissions), \
                 other_permissions = COALESCE($5, other_permissions), \
                 revision = revision + 1, updated_at = $6 WHERE user_id = $7",
            )
            .bind(profile.owner_permissions)
            .bind(set_group)
            .bind(group_id)
            .bind(profile.group_permissions)
            .bind(profile.other_permissions)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
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
        touched_one(
            sqlx::query(
                "UPDATE users SET user_key = $1, key_digest = $2 \
                 WHERE instance_id = $3 AND id = $4",
            )
            .bind(key)
            .bind(&digest.0[..])
            .bind(instance_id)
            .bind(id)
            .execute(&self.pool)
            .await?,
        )?;
        self.user(instance_id, id).await
    }

    async fn delete_user(&self, instance_id: i64, id: i64) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM users WHERE instance_id = $1 AND id = $2")
                .bind(instance_id)
                .bind(id)
                .execute(&self.pool)
                .await?,
        )
    }

    async fn create_group(&self, instance_id: i64, fields: GroupChanges) -> StoreResult<Group> {
        let row = sqlx::query(
            "INSERT INTO groups (instance_id, name, label, description, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(instance_id)
        .bind(enc_opt(fields.name.flatten()))
        .bind(enc(&fields.label.unwrap_or_default()).into_owned())
        .bind(enc(&fields.description.unwrap_or_default()).into_owned())
        .bind(model::now_micros())
        .fetch_one(&self.pool)
        .await
        .map_err(missing_parent_or(conflict("name")))?;
        Ok(group_from_row(row)?)
    }

    async fn group(&self, instance_id: i64, id: i64) -> StoreResult<Group> {
        let row = sqlx::query("SELECT * FROM groups WHERE instance_id = $1 AND id = $2")
            .bind(instance_id)
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(group_from_row(row)?)
    }

    async fn list_groups(
        &self,
        instance_id: i64,
        label_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Group>> {
        let mut query = QueryBuilder::new("SELECT * FROM groups WHERE instance_id = ");
        query.push_bind(instance_id);
        if let Some(prefix) = label_prefix {
            push_prefix(&mut query, "label", prefix);
        }
        push_page(&mut query, "id", page);
        all(query.build().fetch_all(&self.pool).await?, group_from_row)
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
        let row = sqlx::query(
            "UPDATE groups SET name = CASE WHEN $1 THEN $2 ELSE name END, \
             label = COALESCE($3, label), description = COALESCE($4, description) \
             WHERE instance_id = $5 AND id = $6 RETURNING *",
        )
        .bind(set_name)
        .bind(enc_opt(name))
        .bind(enc_opt(changes.label))
        .bind(enc_opt(changes.description))
        .bind(instance_id)
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(|err| match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => conflict("name")(other),
        })?;
        Ok(group_from_row(row)?)
    }

    async fn delete_group(&self, instance_id: i64, id: i64) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM groups WHERE instance_id = $1 AND id = $2")
                .bind(instance_id)
                .bind(id)
                .execute(&self.pool)
                .await?,
        )
    }

    async fn add_membership(
        &self,
        user_id: i64,
        group_id: i64,
        max_groups: u32,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // The user's row lock makes concurrent adds for one user check and insert in turn.
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT user_id FROM memberships WHERE user_id = $1 AND group_id = $2",
        )
        .bind(user_id)
        .bind(group_id)
        .fetch_optional(&mut *tx)
        .await?;
        if existing.is_some() {
            return Err(StoreError::Conflict("membership"));
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
        if count >= i64::from(max_groups) {
            return Err(StoreError::LimitExceeded);
        }
        sqlx::query("INSERT INTO memberships (user_id, group_id, created_at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(group_id)
            .bind(model::now_micros())
            .execute(&mut *tx)
            .await
            .map_err(conflict("membership"))?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_membership(&self, user_id: i64, group_id: i64) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND group_id = $2")
                .bind(user_id)
                .bind(group_id)
                .execute(&self.pool)
                .await?,
        )
    }

    async fn is_member(&self, user_id: i64, group_id: i64) -> StoreResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT user_id FROM memberships WHERE user_id = $1 AND group_id = $2",
        )
        .bind(user_id)
        .bind(group_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn groups_of_user(&self, user_id: i64, page: IdPage) -> StoreResult<Vec<Group>> {
        let mut query = QueryBuilder::new(
            "SELECT g.* FROM groups g JOIN memberships m ON m.group_id = g.id WHERE m.user_id = ",
        );
        query.push_bind(user_id);
        push_page(&mut query, "g.id", page);
        all(query.build().fetch_all(&self.pool).await?, group_from_row)
    }

    async fn users_of_group(&self, group_id: i64, page: IdPage) -> StoreResult<Vec<User>> {
        let mut query = QueryBuilder::new(USER_COLUMNS);
        query
            .push(" JOIN memberships m ON m.user_id = u.id WHERE m.group_id = ")
            .push_bind(group_id);
        push_page(&mut query, "u.id", page);
        all(query.build().fetch_all(&self.pool).await?, user_from_row)
    }
}
