//! Accounts (docs/api.md §4).

use async_trait::async_trait;

use super::{Backend, Sql, SqlStore, Tx, all, raw, raw_opt, rows};
use crate::access::Change;
use crate::keys::KeyDigest;
use crate::model;
use crate::store::{
    Account, AccountChanges, AccountStore, NewAccount, StoreResult, conflict, not_found,
    touched_one,
};

fn insert_account(new: NewAccount) -> Sql {
    Sql::new(
        "INSERT INTO accounts (email, first_name, last_name, password_hash, account_key, \
         key_digest, is_superuser, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(new.email)
    .bind(new.first_name)
    .bind(new.last_name)
    .bind(raw_opt(new.password_hash))
    .bind(raw(new.account_key))
    .bind(&new.key_digest.0[..])
    .bind(new.is_superuser)
    .bind(model::now_micros())
}

#[async_trait]
impl AccountStore for SqlStore {
    async fn count_accounts(&self) -> StoreResult<i64> {
        let row = self
            .db
            .read()
            .one(Sql::new("SELECT COUNT(*) AS n FROM accounts"))
            .await?;
        Ok(row.int("n")?)
    }

    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let row = self
            .db
            .write()
            .one(insert_account(new))
            .await
            .map_err(conflict("email"))?;
        Ok(rows::account(&row)?)
    }

    async fn create_first_account(&self, new: NewAccount) -> StoreResult<Option<Account>> {
        let mut tx = self.db.begin().await?;
        // Nodes starting together on an empty database queue here; the first creates the account
        // and the others then find it. SQLite's one writer already makes them take turns.
        if let (Backend::Postgres(cluster), Tx::Postgres(_)) = (&self.backend, &tx) {
            tx.exec()
                .run(Sql::new("SELECT pg_advisory_xact_lock(?)").bind(cluster.bootstrap_lock))
                .await?;
        }
        let existing = tx
            .exec()
            .one(Sql::new("SELECT COUNT(*) AS n FROM accounts"))
            .await?;
        if existing.int("n")? > 0 {
            return Ok(None);
        }
        let row = tx
            .exec()
            .one(insert_account(new))
            .await
            .map_err(conflict("email"))?;
        let account = rows::account(&row)?;
        tx.commit().await?;
        Ok(Some(account))
    }

    async fn account(&self, id: i64) -> StoreResult<Account> {
        let sql = Sql::new("SELECT * FROM accounts WHERE id = ?").bind(id);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::account(&row)?)
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Account> {
        let sql = Sql::new("SELECT * FROM accounts WHERE email = ?").bind(email);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::account(&row)?)
    }

    async fn account_by_key(&self, digest: &KeyDigest) -> StoreResult<Account> {
        let sql = Sql::new("SELECT * FROM accounts WHERE key_digest = ?").bind(&digest.0[..]);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::account(&row)?)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let sql = Sql::new("SELECT * FROM accounts ORDER BY id");
        all(self.db.read().all(sql).await?, rows::account)
    }

    async fn update_account(&self, id: i64, changes: AccountChanges) -> StoreResult<Account> {
        let sql = Sql::new(
            "UPDATE accounts SET email = COALESCE(?, email), \
             first_name = COALESCE(?, first_name), last_name = COALESCE(?, last_name), \
             metadata = COALESCE(?, metadata) WHERE id = ? RETURNING *",
        )
        .bind(changes.email)
        .bind(changes.first_name)
        .bind(changes.last_name)
        .bind(raw_opt(changes.metadata.map(|m| m.to_string())))
        .bind(id);
        let row = self.db.write().one(sql).await.map_err(|err| match err {
            sqlx::Error::RowNotFound => not_found(err),
            other => conflict("email")(other),
        })?;
        Ok(rows::account(&row)?)
    }

    async fn set_account_key(
        &self,
        id: i64,
        key: &str,
        digest: &KeyDigest,
    ) -> StoreResult<Account> {
        let sql = Sql::new(
            "UPDATE accounts SET account_key = ?, key_digest = ? WHERE id = ? RETURNING *",
        )
        .bind(raw(key))
        .bind(&digest.0[..])
        .bind(id);
        let mut tx = self.db.begin().await?;
        let row = tx.exec().one(sql).await.map_err(not_found)?;
        self.commit_logged(tx, Change::Account { id }).await?;
        Ok(rows::account(&row)?)
    }

    async fn set_account_password(&self, id: i64, password_hash: &str) -> StoreResult<()> {
        let sql = Sql::new("UPDATE accounts SET password_hash = ? WHERE id = ?")
            .bind(raw(password_hash))
            .bind(id);
        touched_one(self.db.write().run(sql).await?)
    }
}
