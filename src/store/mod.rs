//! Durable storage behind one contract.
//!
//! The store is the source of truth: a message exists once `publish` returns, and only then may
//! anyone be told about it. The contract is written on the traits below, one per concern, and
//! [`Store`] is all of them. One implementation, [`SqlStore`], serves both backends: the SQL they
//! share is in `sql/`, written once; what only one backend has lives in its folder (`sqlite/`
//! for embedded mode, `postgres/` for cluster mode): connecting, locks, and the group-commit
//! writer that stores messages. `writer` holds what the two writers share.

mod objects;
mod postgres;
mod sql;
mod sqlite;
mod types;
mod users;
mod writer;

pub use objects::*;
pub use postgres::{LockPurpose, advisory_lock_key};
pub use sql::{Dialect, SqlStore};
pub use sqlite::sqlite_path;
pub use types::*;
pub use users::*;

use async_trait::async_trait;

use crate::access::Change;
use crate::keys::KeyDigest;

/// What can go wrong in storage, typed so the HTTP edge can answer precisely.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed row does not exist (or vanished concurrently).
    #[error("not found")]
    NotFound,
    /// A unique constraint failed; the value names the API field that must be unique.
    #[error("{0} must be unique")]
    Conflict(&'static str),
    /// A configured count limit would be exceeded.
    #[error("limit exceeded")]
    LimitExceeded,
    /// A rule checked inside the writing transaction refused the change (see `objects`).
    #[error("refused: {0:?}")]
    Refused(Refusal),
    /// The database failed; the cause is logged at the edge, never shown to clients.
    #[error(transparent)]
    Backend(#[from] sqlx::Error),
    /// The database cannot be used by this process; the text says why and what to do.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Maps a unique violation to `Conflict(field)`, anything else to `Backend`.
fn conflict(field: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(field),
        _ => StoreError::Backend(err),
    }
}

/// Maps a missing row to `NotFound`, anything else to `Backend`.
fn not_found(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        other => StoreError::Backend(other),
    }
}

/// `NotFound` for a foreign key violation (a parent vanished meanwhile), else as `then`.
fn missing_parent_or(
    then: impl FnOnce(sqlx::Error) -> StoreError,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        _ => then(err),
    }
}

/// `NotFound` unless a statement changed a row.
fn touched_one(rows_affected: u64) -> StoreResult<()> {
    if rows_affected == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected stored {what}").into())
}

/// Maps the stored action text back to the static names the API uses.
fn action_name(stored: &str) -> Result<&'static str, sqlx::Error> {
    ["custom", "create", "update", "delete"]
        .into_iter()
        .find(|a| *a == stored)
        .ok_or_else(|| decode_error("action"))
}

/// Hears about every message right after its commit, before its publisher is answered, and in
/// id order per channel: fan-out relies on this to deliver live messages in order (§9.11).
/// Implementations must be quick and must not block.
pub trait CommitListener: Send + Sync + 'static {
    fn committed(&self, channel_id: i64, message: &Message);

    /// Hears about every change to credentials, permissions or schemas right after its commit,
    /// before the caller is answered (it is in the access log too, for other processes): what
    /// it made stale can be forgotten before the caller's next request.
    fn changed(&self, _change: &Change) {}
}

/// For commands that publish nothing (migrations, account management).
pub struct NoListener;

impl CommitListener for NoListener {
    fn committed(&self, _channel_id: i64, _message: &Message) {}
}

/// Everything Herald stores. Every method is atomic. Lists honour [`IdPage`] exactly. Names
/// arrive validated and normalised (see `model`), so backends compare them byte for byte.
#[async_trait]
pub trait Store:
    AccountStore
    + InstanceStore
    + ChannelStore
    + UserStore
    + MessageStore
    + ObjectStore
    + Send
    + Sync
    + 'static
{
    /// Cheap round trip proving the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Connections in the database pools now (for metrics).
    fn pool_connections(&self) -> PoolConnections;
    /// The cluster's id and secret (docs/api.md §11.5), created on first use; every process on the
    /// database gets the same pair.
    async fn cluster_identity(&self) -> StoreResult<ClusterIdentity>;
    /// How many changes to credentials and permissions were ever made (docs/api.md §11.5).
    async fn access_version(&self) -> StoreResult<i64>;
    /// The access log after `version`, oldest first, at most `limit` entries. An entry this
    /// build cannot read (written by another version of Herald) is `None`.
    async fn access_log_after(
        &self,
        version: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, Option<Change>)>>;
}

/// Pooled database connections: waiting for work, and lent out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolConnections {
    pub idle: usize,
    pub busy: usize,
}

/// Who a cluster is on Redis: `id` names it (the default channel prefix is `herald:<id>`),
/// `secret` keys the tags of its messages.
#[derive(Clone)]
pub struct ClusterIdentity {
    pub id: String,
    pub secret: [u8; 32],
}

impl std::fmt::Debug for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterIdentity")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Accounts (docs/api.md §4).
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn count_accounts(&self) -> StoreResult<i64>;
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account>;
    /// Creates the first account of an empty database (docs/api.md §4.6): `None` when another process
    /// created one first. Processes sharing a database may call this at the same moment; at most
    /// one account results.
    async fn create_first_account(&self, new: NewAccount) -> StoreResult<Option<Account>>;
    async fn account(&self, id: i64) -> StoreResult<Account>;
    async fn account_by_email(&self, email: &str) -> StoreResult<Account>;
    async fn account_by_key(&self, digest: &KeyDigest) -> StoreResult<Account>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn update_account(&self, id: i64, changes: AccountChanges) -> StoreResult<Account>;
    async fn set_account_key(&self, id: i64, key: &str, digest: &KeyDigest)
    -> StoreResult<Account>;
    async fn set_account_password(&self, id: i64, password_hash: &str) -> StoreResult<()>;
}

/// Instances and their API keys (docs/api.md §5, §6).
#[async_trait]
pub trait InstanceStore: Send + Sync {
    /// Creating an instance also creates its built-in channels, in the same transaction;
    /// `max_per_owner` (0 = unlimited) is checked there too, so concurrent creates cannot pass it.
    async fn create_instance(
        &self,
        owner_id: i64,
        name: &str,
        changes: InstanceChanges,
        max_per_owner: u32,
    ) -> StoreResult<Instance>;
    async fn instance(&self, id: i64) -> StoreResult<Instance>;
    async fn instance_by_name(&self, name: &str) -> StoreResult<Instance>;
    async fn list_instances(
        &self,
        owner_id: i64,
        name_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Instance>>;
    async fn update_instance(&self, id: i64, changes: InstanceChanges) -> StoreResult<Instance>;
    async fn rename_instance(&self, id: i64, new_name: &str) -> StoreResult<Instance>;
    async fn delete_instance(&self, id: i64) -> StoreResult<()>;

    // API keys, always scoped by instance.
    async fn create_api_key(
        &self,
        instance_id: i64,
        key: &str,
        digest: &KeyDigest,
        fields: ApiKeyChanges,
    ) -> StoreResult<ApiKey>;
    async fn api_key(&self, instance_id: i64, id: i64) -> StoreResult<ApiKey>;
    async fn api_key_by_key(&self, digest: &KeyDigest) -> StoreResult<ApiKey>;
    async fn list_api_keys(&self, instance_id: i64, page: IdPage) -> StoreResult<Vec<ApiKey>>;
    async fn update_api_key(
        &self,
        instance_id: i64,
        id: i64,
        changes: ApiKeyChanges,
    ) -> StoreResult<ApiKey>;
    async fn set_api_key_key(
        &self,
        instance_id: i64,
        id: i64,
        key: &str,
        digest: &KeyDigest,
    ) -> StoreResult<ApiKey>;
    async fn delete_api_key(&self, instance_id: i64, id: i64) -> StoreResult<()>;
}

/// Channels (docs/api.md §9.1–§9.4).
#[async_trait]
pub trait ChannelStore: Send + Sync {
    async fn create_channel(&self, instance_id: i64, new: NewChannel) -> StoreResult<Channel>;
    async fn channel(&self, instance_id: i64, name: &str) -> StoreResult<Channel>;
    async fn list_channels(
        &self,
        instance_id: i64,
        name_prefix: Option<&str>,
        visibility: ChannelVisibility,
        page: IdPage,
    ) -> StoreResult<Vec<Channel>>;
    async fn update_channel(
        &self,
        instance_id: i64,
        name: &str,
        changes: ChannelChanges,
    ) -> StoreResult<Channel>;
    async fn delete_channel(&self, instance_id: i64, name: &str) -> StoreResult<()>;
}

/// Messages: the durable history every delivery path reads from.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Stores a message in `channel`, allocating the channel's next id in the same transaction,
    /// so committed ids are consecutive and never become visible out of order (docs/api.md §9.5).
    /// Returns only after the commit is durable; the store's [`CommitListener`] has been told
    /// by then. `NotFound` if the channel was deleted.
    async fn publish(&self, channel: &Channel, new: NewMessage) -> StoreResult<Message>;
    /// The last id allocated in the channel (0 before its first message): a live subscription
    /// positioned here receives exactly the messages committed after it started.
    async fn last_message_id(&self, channel: &Channel) -> StoreResult<i64>;
    /// Messages of one channel room (`None` for `default` channels) in the page's id window.
    async fn history(
        &self,
        channel_id: i64,
        room: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Message>>;
    /// Messages of every room of a channel with ids after `after`, oldest first, at most
    /// `limit`: how a cluster node repairs a gap in what it was told.
    async fn messages_after(
        &self,
        channel_id: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<Message>>;
    /// One message of this channel; with `room`, it must be in that room.
    async fn message(&self, channel_id: i64, id: i64, room: Option<&str>) -> StoreResult<Message>;
    /// Applies retention (see [`RetentionLimits`]). Each room's `pruned_through` (the highest
    /// id removed from it) is recorded in the transaction that removes the messages.
    async fn prune(&self, limits: RetentionLimits) -> StoreResult<Pruned>;
    /// The highest id retention has removed from a channel room (0 if none): a read after
    /// `last_id = N` has a gap when `N < pruned_through` (docs/api.md §9.12).
    async fn pruned_through(&self, channel_id: i64, room: Option<&str>) -> StoreResult<i64>;
}
