//! SQLite backend for embedded mode.
//!
//! Two pools: one connection for every write, so writers queue inside the process instead of
//! fighting over SQLite's lock (no SQLITE_BUSY, and a publish's id allocation and insert can
//! never interleave with another's), and a pool of readers that WAL lets run beside the writer.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio_util::sync::CancellationToken;

use super::sqlite_publisher::Publisher;
use super::*;
use crate::model::{self, ChannelType, Permission};
use std::sync::Arc;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub struct SqliteStore {
    writer: SqlitePool,
    publisher: Publisher,
    /// Channel rooms that received messages since the pruner last looked at them.
    active_rooms: Arc<ActiveRooms>,
    /// Stops the checkpointer when the store goes away.
    _checkpointer: tokio_util::sync::DropGuard,
    reader: SqlitePool,
    path: PathBuf,
    /// Held for the store's lifetime: one process per database file (SPEC §11.5). An advisory
    /// `flock` on the file itself, independent of SQLite's own `fcntl` locks.
    _lock: std::fs::File,
}

/// Parses `sqlite://<path>` (also `sqlite:<path>`) into a file path.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(
        path: &Path,
        synchronous_full: bool,
        pool_size: u32,
        listener: Arc<dyn CommitListener>,
    ) -> StoreResult<Self> {
        let lock = lock_database_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Checkpoints run beside the writer (see `checkpoint`), never inside a publish.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        MIGRATOR.run(&writer).await?;
        let checkpointer = CancellationToken::new();
        let connection = SqliteConnection::connect_with(&options).await?;
        tokio::spawn(checkpoint(connection, checkpointer.clone()));
        let active_rooms = Arc::new(ActiveRooms::default());
        let reader = SqlitePoolOptions::new()
            .max_connections(pool_size.max(1))
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            publisher: Publisher::start(writer.clone(), listener, active_rooms.clone()),
            active_rooms,
            _checkpointer: checkpointer.drop_guard(),
            writer,
            reader,
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    pub(super) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub(super) fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub(super) fn active_rooms(&self) -> &ActiveRooms {
        &self.active_rooms
    }
}

/// Room names by channel id.
pub(super) type RoomSet = HashMap<i64, HashSet<String>>;

/// Which channel rooms got messages lately, so pruning by count looks only at those instead of
/// scanning every room. Every room is looked at after a start (rooms filled before it are
/// unknown) and whenever the limit differs from the last pass.
#[derive(Default)]
pub(super) struct ActiveRooms {
    state: Mutex<Active>,
}

#[derive(Default)]
struct Active {
    /// `None`: not known, look at every room.
    rooms: Option<RoomSet>,
    /// The per-room limit of the last complete pass.
    limit: Option<i64>,
}

impl ActiveRooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn touched(&self, channel_id: i64, room: &str) {
        if let Some(rooms) = self.lock().rooms.as_mut() {
            let channel = rooms.entry(channel_id).or_default();
            if !channel.contains(room) {
                channel.insert(room.to_owned());
            }
        }
    }

    /// The rooms a pass with this limit must look at (`None`: every room), leaving an empty
    /// set to collect the next ones.
    pub(super) fn take(&self, limit: i64) -> Option<RoomSet> {
        let mut state = self.lock();
        let rooms = state.rooms.replace(RoomSet::new());
        let same_limit = state.limit.replace(limit) == Some(limit);
        rooms.filter(|_| same_limit)
    }

    /// After a failed pass: look at every room next time.
    pub(super) fn forget(&self) {
        let mut state = self.lock();
        state.rooms = None;
        state.limit = None;
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the WAL into the database file from a connection of its own. SQLite would otherwise
/// checkpoint inside whichever commit crosses its threshold, holding that publish (and every
/// publish queued behind it) for the whole copy and its fsync. A passive checkpoint never
/// blocks the writer; the writer starts the WAL over once a checkpoint has caught up.
async fn checkpoint(mut connection: SqliteConnection, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(CHECKPOINT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut connection)
            .await
        {
            tracing::warn!("WAL checkpoint failed: {err}");
        }
    }
    let _ = connection.close().await;
}

fn lock_database_file(path: &Path) -> StoreResult<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|err| StoreError::Unavailable(format!("cannot open {}: {err}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "the database file {} is in use by another Herald process; stop that process \
             first, or give this one its own file with --database-url sqlite://<other path>",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(err)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {err}",
            path.display()
        ))),
    }
}

/// `NotFound` unless the statement changed a row.
pub(super) fn touched_one(done: sqlx::sqlite::SqliteQueryResult) -> StoreResult<()> {
    if done.rows_affected() == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

fn json_column(row: &SqliteRow, column: &str) -> Result<Value, sqlx::Error> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
}

fn account_from_row(row: SqliteRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        metadata: json_column(&row, "metadata")?,
        password_hash: row.try_get("password_hash")?,
        account_key: row.try_get("account_key")?,
        is_superuser: row.try_get("is_superuser")?,
    })
}

fn instance_from_row(row: SqliteRow) -> Result<Instance, sqlx::Error> {
    Ok(Instance {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner_id: row.try_get("owner_id")?,
        description: row.try_get("description")?,
        metadata: json_column(&row, "metadata")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn api_key_from_row(row: SqliteRow) -> Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        instance_id: row.try_get("instance_id")?,
        api_key: row.try_get("api_key")?,
        description: row.try_get("description")?,
        ignore_acl: row.try_get("ignore_acl")?,
        allow_user_create: row.try_get("allow_user_create")?,
        allow_group_create: row.try_get("allow_group_create")?,
        allow_anonymous_read: row.try_get("allow_anonymous_read")?,
        created_at: row.try_get("created_at")?,
    })
}

fn permission_column(row: &SqliteRow, column: &str) -> Result<Permission, sqlx::Error> {
    let text: String = row.try_get(column)?;
    Permission::parse(&text).ok_or_else(|| decode_error("permission"))
}

fn channel_from_row(row: SqliteRow) -> Result<Channel, sqlx::Error> {
    let kind: String = row.try_get("type")?;
    Ok(Channel {
        id: row.try_get("id")?,
        instance_id: row.try_get("instance_id")?,
        name: row.try_get("name")?,
        kind: ChannelType::parse(&kind).ok_or_else(|| decode_error("channel type"))?,
        description: row.try_get("description")?,
        group_id: row.try_get("group_id")?,
        group_permissions: permission_column(&row, "group_permissions")?,
        other_permissions: permission_column(&row, "other_permissions")?,
        custom_publish: row.try_get("custom_publish")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Appends the id window and order of `page` to a query whose WHERE clause is already open.
pub(super) fn push_page(query: &mut QueryBuilder<'_, Sqlite>, column: &str, page: IdPage) {
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

/// Appends a case-sensitive prefix condition (SQLite's LIKE ignores ASCII case).
pub(super) fn push_prefix(query: &mut QueryBuilder<'_, Sqlite>, column: &str, prefix: &str) {
    query
        .push(format_args!(" AND substr({column}, 1, "))
        .push_bind(prefix.chars().count() as i64)
        .push(") = ")
        .push_bind(prefix.to_owned());
}

const BUILTIN_CHANNELS: [(&str, bool); 2] = [
    (model::DEFAULT_CHANNEL, true),
    (model::EVENTLOG_CHANNEL, false),
];

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn count_accounts(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&self.reader)
            .await?)
    }

    async fn create_account(&self, new: NewAccount) -> StoreResult<Account> {
        let row = sqlx::query(
            "INSERT INTO accounts (email, first_name, last_name, password_hash, account_key, \
             key_digest, is_superuser, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(&new.email)
        .bind(&new.first_name)
        .bind(&new.last_name)
        .bind(&new.password_hash)
        .bind(&new.account_key)
        .bind(&new.key_digest.0[..])
        .bind(new.is_superuser)
        .bind(model::now_micros())
        .fetch_one(&self.writer)
        .await
        .map_err(conflict("email"))?;
        Ok(account_from_row(row)?)
    }

    async fn account(&self, id: i64) -> StoreResult<Account> {
        let row = sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_one(&self.reader)
            .await
            .map_err(not_found)?;
        Ok(account_from_row(row)?)
    }

    async fn account_by_email(&self, email: &str) -> StoreResult<Account> {
        let row = sqlx::query("SELECT * FROM accounts WHERE email = ?")
            .bind(email)
            .fetch_one(&self.reader)
            .await
            .map_err(not_found)?;
        Ok(account_from_row(row)?)
    }

    async fn account_by_key(&self, digest: &KeyDigest) -> StoreResult<Account> {
        let row = sqlx::query("SELECT * FROM accounts WHERE key_digest = ?")
            .bind(&digest.0[..])
            .fetch_one(&self.reader)
            .await
            .map_err(not_found)?;
        Ok(account_from_row(row)?)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows = sqlx::query("SELECT * FROM accounts ORDER BY id")
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .into_iter()
            .map(account_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn update_account(&self, id: i64, changes: AccountChanges) -> StoreResult<Account> {
        let row = sqlx::query(
            "UPDATE accounts SET email = COALESCE(?, email), first_name = COALESCE(?, first_name), \
             last_name = COALESCE(?, last_name), metadata = COALESCE(?, metadata) \
             WHERE id = ? RETURNING *",
        )
        .bind(changes.email)
        .bind(changes.first_name)
        .bind(changes.last_name)
        .bind(changes.metadata.map(|m| m.to_string()))
        .bind(id)
        .fetch_one(&self.writer)
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
            "UPDATE accounts SET account_key = ?, key_digest = ? WHERE id = ? RETURNING *",
        )
        .bind(key)
        .bind(&digest.0[..])
        .bind(id)
        .fetch_one(&self.writer)
        .await
        .map_err(not_found)?;
        Ok(account_from_row(row)?)
    }

    async fn set_account_password(&self, id: i64, password_hash: &str) -> StoreResult<()> {
        touched_one(
            sqlx::query("UPDATE accounts SET password_hash = ? WHERE id = ?")
                .bind(password_hash)
                .bind(id)
                .execute(&self.writer)
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
        let mut tx = self.writer.begin().await?;
        if max_per_owner > 0 {
            let owned: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE owner_id = ?")
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
             VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(name)
        .bind(owner_id)
        .bind(changes.description.unwrap_or_default())
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
                 updated_at) VALUES (?, ?, 'separate_rooms', ?, ?, ?)",
            )
            .bind(instance.id)
            .bind(channel)
            .bind(custom_publish)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO channel_sequences (instance_id, name) VALUES (?, ?)")
                .bind(instance.id)
                .bind(channel)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(instance)
    }

    async fn instance(&self, id: i64) -> StoreResult<Instance> {
        let row = sqlx::query("SELECT * FROM instances WHERE id = ?")
            .bind(id)
            .fetch_one(&self.reader)
            .await
            .map_err(not_found)?;
        Ok(instance_from_row(row)?)
    }

    async fn instance_by_name(&self, name: &str) -> StoreResult<Instance> {
        let row = sqlx::query("SELECT * FROM instances WHERE name = ?")
            .bind(name)
            .fetch_one(&self.reader)
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
        let rows = query.build().fetch_all(&self.reader).await?;
        Ok(rows
            .into_iter()
            .map(instance_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn update_instance(&self, id: i64, changes: InstanceChanges) -> StoreResult<Instance> {
        let row = sqlx::query(
            "UPDATE instances SET description = COALESCE(?, description), \
             metadata = COALESCE(?, metadata), updated_at = ? WHERE id = ? RETURNING *",
        )
        .bind(changes.description)
        .bind(changes.metadata.map(|m| m.to_string()))
        .bind(model::now_micros())
        .bind(id)
        .fetch_one(&self.writer)
        .await
        .map_err(not_found)?;
        Ok(instance_from_row(row)?)
    }

    async fn rename_instance(&self, id: i64, new_name: &str) -> StoreResult<Instance> {
        let row =
            sqlx::query("UPDATE instances SET name = ?, updated_at = ? WHERE id = ? RETURNING *")
                .bind(new_name)
                .bind(model::now_micros())
                .bind(id)
                .fetch_one(&self.writer)
                .await
                .map_err(|err| match err {
                    sqlx::Error::RowNotFound => StoreError::NotFound,
                    other => conflict("new_name")(other),
                })?;
        Ok(instance_from_row(row)?)
    }

    async fn delete_instance(&self, id: i64) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM instances WHERE id = ?")
                .bind(id)
                .execute(&self.writer)
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(instance_id)
        .bind(key)
        .bind(&digest.0[..])
        .bind(fields.description.unwrap_or_default())
        .bind(fields.ignore_acl.unwrap_or(false))
        .bind(fields.allow_user_create.unwrap_or(false))
        .bind(fields.allow_group_create.unwrap_or(false))
        .bind(fields.allow_anonymous_read.unwrap_or(false))
        .bind(model::now_micros())
        .fetch_one(&self.writer)
        .await
        .map_err(|err| match err {
            // A key is only unknown to the instance if the instance vanished meanwhile.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            other => StoreError::Backend(other),
        })?;
        Ok(api_key_from_row(row)?)
    }

    async fn api_key(&self, instance_id: i64, id: i64) -> StoreResult<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id)
            .fetch_one(&self.reader)
            .await
            .map_err(not_found)?;
        Ok(api_key_from_row(row)?)
    }

    async fn api_key_by_key(&self, digest: &KeyDigest) -> StoreResult<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE key_digest = ?")
            .bind(&digest.0[..])
            .fetch_one(&self.reader)
            .await
            .map_err(not_found)?;
        Ok(api_key_from_row(row)?)
    }

    async fn list_api_keys(&self, instance_id: i64, page: IdPage) -> StoreResult<Vec<ApiKey>> {
        let mut query = QueryBuilder::new("SELECT * FROM api_keys WHERE instance_id = ");
        query.push_bind(instance_id);
        push_page(&mut query, "id", page);
        let rows = query.build().fetch_all(&self.reader).await?;
        Ok(rows
            .into_iter()
            .map(api_key_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn update_api_key(
        &self,
        instance_id: i64,
        id: i64,
        changes: ApiKeyChanges,
    ) -> StoreResult<ApiKey> {
        let row = sqlx::query(
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
        .bind(id)
        .fetch_one(&self.writer)
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
            "UPDATE api_keys SET api_key = ?, key_digest = ? WHERE instance_id = ? AND id = ? \
             RETURNING *",
        )
        .bind(key)
        .bind(&digest.0[..])
        .bind(instance_id)
        .bind(id)
        .fetch_one(&self.writer)
        .await
        .map_err(not_found)?;
        Ok(api_key_from_row(row)?)
    }

    async fn delete_api_key(&self, instance_id: i64, id: i64) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM api_keys WHERE instance_id = ? AND id = ?")
                .bind(instance_id)
                .bind(id)
                .execute(&self.writer)
                .await?,
        )
    }

    async fn group_exists(&self, instance_id: i64, id: i64) -> StoreResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM groups WHERE instance_id = ? AND id = ?")
                .bind(instance_id)
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }

    async fn create_channel(&self, instance_id: i64, new: NewChannel) -> StoreResult<Channel> {
        let mut tx = self.writer.begin().await?;
        let now = model::now_micros();
        let row = sqlx::query(
            "INSERT INTO channels (instance_id, name, type, description, group_id, \
             group_permissions, other_permissions, custom_publish, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(instance_id)
        .bind(&new.name)
        .bind(new.kind.as_str())
        .bind(&new.description)
        .bind(new.group_id)
        .bind(new.group_permissions.as_str())
        .bind(new.other_permissions.as_str())
        .bind(new.custom_publish)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|err| match &err {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => conflict("name")(err),
        })?;
        // Keep an existing sequence: a re-created channel continues its predecessor's ids.
        sqlx::query("INSERT OR IGNORE INTO channel_sequences (instance_id, name) VALUES (?, ?)")
            .bind(instance_id)
            .bind(&new.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(channel_from_row(row)?)
    }

    async fn channel(&self, instance_id: i64, name: &str) -> StoreResult<Channel> {
        let row = sqlx::query("SELECT * FROM channels WHERE instance_id = ? AND name = ?")
            .bind(instance_id)
            .bind(name)
            .fetch_one(&self.reader)
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
        let rows = query.build().fetch_all(&self.reader).await?;
        Ok(rows
            .into_iter()
            .map(channel_from_row)
            .collect::<Result<_, _>>()?)
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
        .bind(name)
        .fetch_one(&self.writer)
        .await
        .map_err(not_found)?;
        Ok(channel_from_row(row)?)
    }

    async fn delete_channel(&self, instance_id: i64, name: &str) -> StoreResult<()> {
        touched_one(
            sqlx::query("DELETE FROM channels WHERE instance_id = ? AND name = ?")
                .bind(instance_id)
                .bind(name)
                .execute(&self.writer)
                .await?,
        )
    }
}
