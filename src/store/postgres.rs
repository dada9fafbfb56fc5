//! PostgreSQL backend for cluster mode.
//!
//! Several Herald processes share one database. Everything the SQLite backend gets from having
//! the only writer is taken from PostgreSQL instead: row locks where a check and a write must not
//! interleave (a channel's id sequence, an owner's instance count, a user's memberships) and
//! advisory locks for work that one node at a time does (migrations, pruning, the first account).
//! Herald's own advisory lock keys (pruning, first account) are derived from the schema, so
//! deployments in different schemas of one database do not skip each other's work; sqlx's
//! migration lock is per database, so their migrations merely take turns. Publishing, with its
//! group commit, is in `postgres_publisher`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::{Connection, Postgres, QueryBuilder, Row};

use super::postgres_publisher::Publisher;
use super::*;
use crate::model::{self, ChannelType, Permission};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long start-up waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a pooled connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an advisory lock protects; combined with the schema into the lock key.
#[derive(Clone, Copy, Debug)]
pub enum LockPurpose {
    Prune = 1,
    Bootstrap = 2,
}

/// The advisory lock key Herald uses for `purpose` in `schema`: a fixed tag in the high half,
/// the schema's FNV-1a hash in the low half.
pub fn advisory_lock_key(purpose: LockPurpose, schema: &str) -> i64 {
    let hash = schema.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (i64::from(0x4845_5200_u32 | purpose as u32) << 32) | i64::from(hash)
}

pub struct PgStore {
    pub(super) pool: PgPool,
    /// Stores publishes (with group commit) and tells the commit listener.
    pub(super) publisher: Arc<Publisher>,
    prune_lock: i64,
    bootstrap_lock: i64,
}

/// `host:port`, or the socket path, for messages.
fn server_address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// PostgreSQL text cannot hold U+0000, which SQLite stores and the API accepts (in rooms,
/// descriptions, ...). Free text is therefore stored with a character-wise escape: U+0000
/// becomes `ESC 0` and ESC itself `ESC ESC`, where ESC is the noncharacter U+10FFFF. The code is
/// prefix-free, so equality and prefix matches on stored text answer as on the original text.
const ESC: char = '\u{10FFFF}';

/// Free text as stored.
pub(super) fn enc(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\0', ESC]) {
        return text.into();
    }
    let mut stored = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => stored.extend([ESC, '0']),
            ESC => stored.extend([ESC, ESC]),
            c => stored.push(c),
        }
    }
    stored.into()
}

/// `enc` for an optional owned value (`COALESCE` parameters).
pub(super) fn enc_opt(text: Option<String>) -> Option<String> {
    text.map(|t| enc(&t).into_owned())
}

/// Stored free text back to the original.
pub(super) fn dec(stored: String) -> String {
    if !stored.contains(ESC) {
        return stored;
    }
    let mut text = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(c) = chars.next() {
        match (c, c == ESC) {
            (_, true) => match chars.next() {
                Some('0') => text.push('\0'),
                Some(other) => text.push(other),
                None => text.push(ESC),
            },
            (c, false) => text.push(c),
        }
    }
    text
}

/// A text column, decoded (see `enc`).
pub(super) trait StoredText: Sized {
    fn read(row: &PgRow, column: &str) -> Result<Self, sqlx::Error>;
}

impl StoredText for String {
    fn read(row: &PgRow, column: &str) -> Result<Self, sqlx::Error> {
        Ok(dec(row.try_get(column)?))
    }
}

impl StoredText for Option<String> {
    fn read(row: &PgRow, column: &str) -> Result<Self, sqlx::Error> {
        Ok(row.try_get::<Option<String>, _>(column)?.map(dec))
    }
}

pub(super) fn text<T: StoredText>(row: &PgRow, column: &str) -> Result<T, sqlx::Error> {
    T::read(row, column)
}

impl PgStore {
    /// Connects (the URL's `options`, e.g. `-c search_path=...`, apply to every connection),
    /// applies pending migrations under sqlx's advisory lock, and opens a pool of `pool_size`.
    pub async fn open(
        url: &str,
        pool_size: u32,
        listener: Arc<dyn CommitListener>,
    ) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| StoreError::Unavailable(format!("invalid PostgreSQL URL: {err}")))?;
        let address = server_address(&options);
        // One connection first, to tell why the database cannot be used: the pool would retry
        // a refused connection until its timeout and then report only the timeout.
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(sqlx::Error::Database(db))) => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL at {address} refused the connection: {}",
                    db.message()
                )));
            }
            Ok(Err(err)) => {
                return Err(StoreError::Unavailable(format!(
                    "could not connect to PostgreSQL at {address}: {err}; is it running?"
                )));
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "could not connect to PostgreSQL at {address}: no answer within {}s; \
                     is it running?",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let Some(schema) = schema else {
            return Err(StoreError::Unavailable(
                "PostgreSQL has no schema to use: the search_path names no existing schema".into(),
            ));
        };
        // Nodes starting together: the migrator holds an advisory lock while it works, and the
        // others then find every migration applied.
        MIGRATOR.run(&pool).await?;
        Ok(PgStore {
            publisher: Publisher::new(pool.clone(), listener),
            pool,
            prune_lock: advisory_lock_key(LockPurpose::Prune, &schema),
            bootstrap_lock: advisory_lock_key(LockPurpose::Bootstrap, &schema),
        })
    }

    pub(super) fn prune_lock(&self) -> i64 {
        self.prune_lock
    }
}

/// `NotFound` unless the statement changed a row.
pub(super) fn touched_one(done: PgQueryResult) -> StoreResult<()> {
    if done.rows_affected() == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// `NotFound` for a foreign key violation (a parent vanished), else as `then`.
pub(super) fn missing_parent_or(
    then: impl FnOnce(sqlx::Error) -> StoreError,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => then(err),
    }
}

fn json_column(row: &PgRow, column: &str) -> Result<Value, sqlx::Error> {
    let stored: String = row.try_get(column)?;
    serde_json::from_str(&stored).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

fn account_from_row(row: PgRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: row.try_get("id")?,
        email: text(&row, "email")?,
        first_name: text(&row, "first_name")?,
        last_name: text(&row, "last_name")?,
        metadata: json_column(&row, "metadata")?,
        password_hash: text(&row, "password_hash")?,
        account_key: text(&row, "account_key")?,
        is_superuser: row.try_get("is_superuser")?,
    })
}

fn instance_from_row(row: PgRow) -> Result<Instance, sqlx::Error> {
    Ok(Instance {
        id: row.try_get("id")?,
        name: text(&row, "name")?,
        owner_id: row.try_get("owner_id")?,
        description: text(&row, "description")?,
        metadata: json_column(&row, "metadata")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn api_key_from_row(row: PgRow) -> Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        instance_id: row.try_get("instance_id")?,
        api_key: text(&row, "api_key")?,
        description: text(&row, "description")?,
        ignore_acl: row.try_get("ignore_acl")?,
        allow_user_create: row.try_get("allow_user_create")?,
        allow_group_create: row.try_get("allow_group_create")?,
        allow_anonymous_read: row.try_get("allow_anonymous_read")?,
        created_at: row.try_get("created_at")?,
    })
}

fn permission_column(row: &PgRow, column: &str) -> Result<Permission, sqlx::Error> {
    let stored: String = row.try_get(column)?;
    Permission::parse(&stored).ok_or_else(|| decode_error("permission"))
}

fn channel_from_row(row: PgRow) -> Result<Channel, sqlx::Error> {
    let kind: String = row.try_get("type")?;
    Ok(Channel {
        id: row.try_get("id")?,
        instance_id: row.try_get("instance_id")?,
        name: text(&row, "name")?,
        kind: ChannelType::parse(&kind).ok_or_else(|| decode_error("channel type"))?,
        description: text(&row, "description")?,
        group_id: row.try_get("group_id")?,
        group_permissions: permission_column(&row, "group_permissions")?,
        other_permissions: permission_column(&row, "other_permissions")?,
        custom_publish: row.try_get("custom_publish")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) fn all<T>(
    rows: Vec<PgRow>,
    convert: fn(PgRow) -> Result<T, sqlx::Error>,
) -> StoreResult<Vec<T>> {
    Ok(rows.into_iter().map(convert).collect::<Result<_, _>>()?)
}

/// Appends the id window and order of `page` to a query whose WHERE clause is already open.
pub(super) fn push_page(query: &mut QueryBuilder<'_, Postgres>, column: &str, page: IdPage) {
    if let Some(after) = page.after {
        query
            .push(format_args!(" AND {column} > "))
            .push_bind(after);
    }
    if let Some(before) = page.before {
        query
            .push(format_args!(" AND {column} < "))
            .push_bind(before);
    }
    let order = if page.descending { "DESC" } else { "ASC" };
    query
        .push(format_args!(" ORDER BY {column} {order} LIMIT "))
        .push_bind(page.limit);
}

/// Appends a case-sensitive prefix condition.
pub(super) fn push_prefix(query: &mut QueryBuilder<'_, Postgres>, column: &str, prefix: &str) {
    query
        .push(format_args!(" AND starts_with({column}, "))
        .push_bind(enc(prefix).into_owned())
        .push(")");
}

const BUILTIN_CHANNELS: [(&str, bool); 2] = [
    (model::DEFAULT_CHANNEL, true),
    (model::EVENTLOG_CHANNEL, false),
];

const INSERT_ACCOUNT: &str = "INSERT INTO accounts (email, first_name, last_name, password_hash, \
     account_key, key_digest, is_superuser, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     RETURNING *";

fn insert_account(
    new: &NewAccount,
) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(INSERT_ACCOUNT)
        .bind(enc(&new.email))
        .bind(enc(&new.first_name))
        .bind(enc(&new.last_name))
        .bind(&new.password_hash)
        .bind(&new.account_key)
        .bind(&new.key_digest.0[..])
        .bind(new.is_superuser)
        .bind(model::now_micros())
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn count_accounts(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let row = insert_account(&new)
            .fetch_one(&self.pool)
            .await
            .map_err(conflict("email"))?;
        Ok(account_from_row(row)?)
    }

    async fn create_first_account(&self, new: NewAccount) -> StoreResult<Option<Account>> {
        // Nodes starting together on an empty database queue here; the first creates the account
        // and the others then find it.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(self.bootstrap_lock)
            .execute(&mut *tx)
            .await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 {
            return Ok(None);
        }
        let row = insert_account(&new)
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict("email"))?;
        tx.commit().await?;
        Ok(Some(account_from_row(row)?))
    }

    async fn account(&self, id: i64) -> StoreResult<Account> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(account_from_row(row)?)
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Account> {
        let row = sqlx::query("SELECT * FROM accounts WHERE email = $1")
            .bind(enc(email))
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(account_from_row(row)?)
    }

    async fn account_by_key(&self, digest: &KeyDigest) -> StoreResult<Account> {
        let row = sqlx::query("SELECT * FROM accounts WHERE key_digest = $1")
            .bind(&digest.0[..])
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(account_from_row(row)?)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        all(rows, account_from_row)
    }

    async fn update_account(&self, id: i64, changes: AccountChanges) -> StoreResult<Account> {
        let row = sqlx::query(
            "UPDATE accounts SET email = COALESCE($1, email), \
             first_name = COALESCE($2, first_name), last_name = COALESCE($3, last_name), \
             metadata = COALESCE($4, metadata) WHERE id = $5 RETURNING *",
        )
        .bind(enc_opt(changes.email))
        .bind(enc_opt(changes.first_name))
        .bind(enc_opt(changes.last_name))
        .bind(changes.metadata.map(|m| m.to_string()))
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(|err| match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => conflict("email")(other),
        })?;
        Ok(account_from_row(row)?)
    }

    async fn set_account_key(
        &self,
        id: i64,
        key: &str,
        digest: &KeyDigest,
    ) -> StoreResult<Account> {
        let row = sqlx::query(
            "UPDATE accounts SET account_key = $1, key_digest = $2 WHERE id = $3 RETURNING *",
        )
        .bind(key)
        .bind(&digest.0[..])
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(not_found)?;
        Ok(account_from_row(row)?)
    }

    async fn set_account_password(&self, id: i64, password_hash: &str) -> StoreResult<()> {
        touched_one(
            sqlx::query("UPDATE accounts SET password_hash = $1 WHERE id = $2")
                .bind(password_hash)
                .bind(id)
                .execute(&self.pool)
                .await?,
        )
    }

    async fn create_instance(
        &self,
        owner_id: i64,
        name: &str,
        changes: InstanceChanges,
        max_per_owner: u32,
    ) -> StoreResult<Instance> {
        let mut tx = self.pool.begin().await?;
        if max_per_owner > 0 {
            // The owner's row lock makes concurrent creates of one owner count one at a time.
            sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE")
                .bind(owner_id)
                .execute(&mut *tx)
                .await?;
            let owned: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE owner_id = $1")
                    .bind(owner_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if owned >= i64::from(max_per_owner) {
                return Err(StoreError::LimitExceeded);
            }
        }
        let now = model::now_micros();
        let row = sqlx::query(
            "INSERT INTO instances (name, owner_id, description, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(enc(name))
        .bind(owner_id)
        .bind(enc(&changes.description.unwrap_or_default()).into_owned())
        .bind(
            changes
                .metadata
                .map_or_else(|| "{}".to_owned(), |m| m.to_string()),
        )
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict("name"))?;
        let instance = instance_from_row(row)?;
        for (channel, custom_publish) in BUILTIN_CHANNELS {
            sqlx::query(
                "INSERT INTO channels (instance_id, name, type, custom_publish, created_at, \
                 updated_at) VALUES ($1, $2, 'separate_rooms', $3, $4, $5)",
            )
            .bind(instance.id)
            .bind(channel)
            .bind(custom_publish)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO channel_sequences (instance_id, name) VALUES ($1, $2)")
                .bind(instance.id)
                .bind(channel)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(instance)
    }

    async fn instance(&self, id: i64) -> StoreResult<Instance> {
        let row = sqlx::query("SELECT * FROM instances WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(instance_from_row(row)?)
    }

    async fn instance_by_name(&self, name: &str) -> StoreResult<Instance> {
        let row = sqlx::query("SELECT * FROM instances WHERE name = $1")
            .bind(enc(name))
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(instance_from_row(row)?)
    }

    async fn list_instances(
        &self,
        owner_id: i64,
        name_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Instance>> {
        let mut query = QueryBuilder::new("SELECT * FROM instances WHERE owner_id = ");
        query.push_bind(owner_id);
        if let Some(prefix) = name_prefix {
            push_prefix(&mut query, "name", prefix);
        }
        push_page(&mut query, "id", page);
        all(
            query.build().fetch_all(&self.pool).await?,
            instance_from_row,
        )
    }

    async fn update_instance(&self, id: i64, changes: InstanceChanges) -> StoreResult<Instance> {
        let row = sqlx::query(
            "UPDATE instances SET description = COALESCE($1, description), \
             metadata = COALESCE($2, metadata), updated_at = $3 WHERE id = $4 RETURNING *",
        )
        .bind(enc_opt(changes.description))
        .bind(changes.metadata.map(|m| m.to_string()))
        .bind(model::now_micros())
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(not_found)?;
        Ok(instance_from_row(row)?)
    }

    async fn rename_instance(&self, id: i64, new_name: &str) -> StoreResult<Instance> {
        let row = sqlx::query(
            "UPDATE instances SET name = $1, updated_at = $2 WHERE id = $3 RETURNING *",
        )
        .bind(enc(new_name))
        .bind(model::now_micros())
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(|err| match err {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => conflict("new_name")(other),
        })?;
        Ok(instance_from_row(row)?)
    }

    async fn delete_instance(&self, id: i64) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM instances WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?,
        )
    }

    async fn create_api_key(
        &self,
        instance_id: i64,
        key: &str,
        digest: &KeyDigest,
        fields: ApiKeyChanges,
    ) -> StoreResult<ApiKey> {
        let row = sqlx::query(
            "INSERT INTO api_keys (instance_id, api_key, key_digest, description, ignore_acl, \
             allow_user_create, allow_group_create, allow_anonymous_read, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        )
        .bind(instance_id)
        .bind(key)
        .bind(&digest.0[..])
        .bind(enc(&fields.description.unwrap_or_default()).into_owned())
        .bind(fields.ignore_acl.unwrap_or(false))
        .bind(fields.allow_user_create.unwrap_or(false))
        .bind(fields.allow_group_create.unwrap_or(false))
        .bind(fields.allow_anonymous_read.unwrap_or(false))
        .bind(model::now_micros())
        .fetch_one(&self.pool)
        .await
        // A key is only unknown to the instance if the instance vanished meanwhile.
        .map_err(missing_parent_or(StoreError::Backend))?;
        Ok(api_key_from_row(row)?)
    }

    async fn api_key(&self, instance_id: i64, id: i64) -> StoreResult<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE instance_id = $1 AND id = $2")
            .bind(instance_id)
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(api_key_from_row(row)?)
    }

    async fn api_key_by_key(&self, digest: &KeyDigest) -> StoreResult<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_digest = $1")
            .bind(&digest.0[..])
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(api_key_from_row(row)?)
    }

    async fn list_api_keys(&self, instance_id: i64, page: IdPage) -> StoreResult<Vec<ApiKey>> {
        let mut query = QueryBuilder::new("SELECT * FROM api_keys WHERE instance_id = ");
        query.push_bind(instance_id);
        push_page(&mut query, "id", page);
        all(query.build().fetch_all(&self.pool).await?, api_key_from_row)
    }

    async fn update_api_key(
        &self,
        instance_id: i64,
        id: i64,
        changes: ApiKeyChanges,
    ) -> StoreResult<ApiKey> {
        let row = sqlx::query(
            "UPDATE api_keys SET description = COALESCE($1, description), \
             ignore_acl = COALESCE($2, ignore_acl), \
             allow_user_create = COALESCE($3, allow_user_create), \
             allow_group_create = COALESCE($4, allow_group_create), \
             allow_anonymous_read = COALESCE($5, allow_anonymous_read) \
             WHERE instance_id = $6 AND id = $7 RETURNING *",
        )
        .bind(enc_opt(changes.description))
        .bind(changes.ignore_acl)
        .bind(changes.allow_user_create)
        .bind(changes.allow_group_create)
        .bind(changes.allow_anonymous_read)
        .bind(instance_id)
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(not_found)?;
        Ok(api_key_from_row(row)?)
    }

    async fn set_api_key_key(
        &self,
        instance_id: i64,
        id: i64,
        key: &str,
        digest: &KeyDigest,
    ) -> StoreResult<ApiKey> {
        let row = sqlx::query(
            "UPDATE api_keys SET api_key = $1, key_digest = $2 WHERE instance_id = $3 AND id = $4 \
             RETURNING *",
        )
        .bind(key)
        .bind(&digest.0[..])
        .bind(instance_id)
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(not_found)?;
        Ok(api_key_from_row(row)?)
    }

    async fn delete_api_key(&self, instance_id: i64, id: i64) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM api_keys WHERE instance_id = $1 AND id = $2")
                .bind(instance_id)
                .bind(id)
                .execute(&self.pool)
                .await?,
        )
    }

    async fn group_exists(&self, instance_id: i64, id: i64) -> StoreResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM groups WHERE instance_id = $1 AND id = $2")
                .bind(instance_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    async fn create_channel(&self, instance_id: i64, new: NewChannel) -> StoreResult<Channel> {
        let mut tx = self.pool.begin().await?;
        let now = model::now_micros();
        let row = sqlx::query(
            "INSERT INTO channels (instance_id, name, type, description, group_id, \
             group_permissions, other_permissions, custom_publish, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        )
        .bind(instance_id)
        .bind(enc(&new.name))
        .bind(new.kind.as_str())
        .bind(enc(&new.description))
        .bind(new.group_id)
        .bind(new.group_permissions.as_str())
        .bind(new.other_permissions.as_str())
        .bind(new.custom_publish)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(missing_parent_or(conflict("name")))?;
        // Keep an existing sequence: a re-created channel continues its predecessor's ids.
        sqlx::query(
            "INSERT INTO channel_sequences (instance_id, name) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(instance_id)
        .bind(enc(&new.name))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(channel_from_row(row)?)
    }

    async fn channel(&self, instance_id: i64, name: &str) -> StoreResult<Channel> {
        let row = sqlx::query("SELECT * FROM channels WHERE instance_id = $1 AND name = $2")
            .bind(instance_id)
            .bind(enc(name))
            .fetch_one(&self.pool)
            .await
            .map_err(not_found)?;
        Ok(channel_from_row(row)?)
    }

    async fn list_channels(
        &self,
        instance_id: i64,
        name_prefix: Option<&str>,
        visibility: ChannelVisibility,
        page: IdPage,
    ) -> StoreResult<Vec<Channel>> {
        let mut query = QueryBuilder::new("SELECT * FROM channels WHERE instance_id = ");
        query.push_bind(instance_id);
        if let Some(prefix) = name_prefix {
            push_prefix(&mut query, "name", prefix);
        }
        const READABLE: &str = "('subscribe', 'publish')";
        match visibility {
            ChannelVisibility::All => {}
            ChannelVisibility::Others => {
                query.push(format_args!(" AND other_permissions IN {READABLE}"));
            }
            ChannelVisibility::User(user_id) => {
                query
                    .push(format_args!(
                        " AND (other_permissions IN {READABLE} OR (group_permissions IN \
                         {READABLE} AND group_id IN (SELECT group_id FROM memberships \
                         WHERE user_id = "
                    ))
                    .push_bind(user_id)
                    .push(")))");
            }
        }
        push_page(&mut query, "id", page);
        all(query.build().fetch_all(&self.pool).await?, channel_from_row)
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
        let row = sqlx::query(
            "UPDATE channels SET description = COALESCE($1, description), \
             group_id = CASE WHEN $2 THEN $3 ELSE group_id END, \
             group_permissions = COALESCE($4, group_permissions), \
             other_permissions = COALESCE($5, other_permissions), \
             custom_publish = COALESCE($6, custom_publish), updated_at = $7 \
             WHERE instance_id = $8 AND name = $9 RETURNING *",
        )
        .bind(enc_opt(changes.description))
        .bind(set_group)
        .bind(group_id)
        .bind(changes.group_permissions.map(Permission::as_str))
        .bind(changes.other_permissions.map(Permission::as_str))
        .bind(changes.custom_publish)
        .bind(model::now_micros())
        .bind(instance_id)
        .bind(enc(name))
        .fetch_one(&self.pool)
        .await
        .map_err(not_found)?;
        Ok(channel_from_row(row)?)
    }

    async fn delete_channel(&self, instance_id: i64, name: &str) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM channels WHERE instance_id = $1 AND name = $2")
                .bind(instance_id)
                .bind(enc(name))
                .execute(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_escapes_nul_and_round_trips() {
        for original in [
            "",
            "plain",
            "\0",
            "a\0b",
            "\u{10FFFF}",
            "\u{10FFFF}0",
            "x\u{10FFFF}\0\u{10FFFF}\u{10FFFF}0\0",
        ] {
            let stored = enc(original);
            assert!(!stored.contains('\0'), "{stored:?}");
            assert_eq!(dec(stored.into_owned()), original);
        }
        assert!(matches!(enc("plain"), std::borrow::Cow::Borrowed(_)));
        // Prefix-free: a stored prefix is a prefix of the stored text exactly when the original
        // prefix is one of the original text.
        let texts = ["", "\0", "\u{10FFFF}", "\u{10FFFF}0", "0", "\0\0", "a\0"];
        for a in texts {
            for b in texts {
                assert_eq!(
                    enc(a).starts_with(&*enc(b)),
                    a.starts_with(b),
                    "{a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn lock_keys_differ_by_purpose_and_schema() {
        let prune = advisory_lock_key(LockPurpose::Prune, "public");
        assert_ne!(prune, advisory_lock_key(LockPurpose::Bootstrap, "public"));
        assert_ne!(prune, advisory_lock_key(LockPurpose::Prune, "herald"));
        assert_eq!(prune, advisory_lock_key(LockPurpose::Prune, "public"));
    }
}
