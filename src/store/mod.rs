//! Durable storage behind one trait.
//!
//! The store is the source of truth: a message exists once `publish` returns, and only then may
//! anyone be told about it. Backends keep their SQL to themselves (`sqlite*.rs` for embedded mode,
//! `postgres*.rs` for cluster mode) and share the row types and the contract written on [`Store`].

mod postgres;
mod postgres_messages;
mod postgres_publisher;
mod postgres_users;
mod sqlite;
mod sqlite_messages;
mod sqlite_publisher;
mod sqlite_users;
mod users;

pub use postgres::{LockPurpose, PgStore, advisory_lock_key};
pub use sqlite::{SqliteStore, sqlite_path};
pub use users::*;

use async_trait::async_trait;
use serde_json::Value;

use crate::keys::KeyDigest;
use crate::model::{ChannelType, Permission};

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

#[derive(Clone, Debug)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub metadata: Value,
    pub password_hash: Option<String>,
    pub account_key: String,
    pub is_superuser: bool,
}

pub struct NewAccount {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: Option<String>,
    pub account_key: String,
    pub key_digest: KeyDigest,
    pub is_superuser: bool,
}

/// Fields an account update may change; `None` leaves a field alone.
#[derive(Default)]
pub struct AccountChanges {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Clone, Debug)]
pub struct Instance {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    pub description: String,
    pub metadata: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Default)]
pub struct InstanceChanges {
    pub description: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Clone, Debug)]
pub struct ApiKey {
    pub id: i64,
    pub instance_id: i64,
    pub api_key: String,
    pub description: String,
    pub ignore_acl: bool,
    pub allow_user_create: bool,
    pub allow_group_create: bool,
    pub allow_anonymous_read: bool,
    pub created_at: i64,
}

/// Description and flags of an API key; on update `None` leaves a field alone.
#[derive(Default)]
pub struct ApiKeyChanges {
    pub description: Option<String>,
    pub ignore_acl: Option<bool>,
    pub allow_user_create: Option<bool>,
    pub allow_group_create: Option<bool>,
    pub allow_anonymous_read: Option<bool>,
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub id: i64,
    pub instance_id: i64,
    pub name: String,
    pub kind: ChannelType,
    pub description: String,
    pub group_id: Option<i64>,
    pub group_permissions: Permission,
    pub other_permissions: Permission,
    pub custom_publish: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewChannel {
    pub name: String,
    pub kind: ChannelType,
    pub description: String,
    pub group_id: Option<i64>,
    pub group_permissions: Permission,
    pub other_permissions: Permission,
    pub custom_publish: bool,
}

#[derive(Default)]
pub struct ChannelChanges {
    pub description: Option<String>,
    pub group_id: Option<Option<i64>>,
    pub group_permissions: Option<Permission>,
    pub other_permissions: Option<Permission>,
    pub custom_publish: Option<bool>,
}

/// A stored message. `author`, `metadata` and `payload` are compact JSON text, stored and sent
/// as they are, so the hot paths never re-encode them.
#[derive(Clone, Debug)]
pub struct Message {
    pub id: i64,
    /// `None` on `default`-type channels.
    pub room: Option<String>,
    pub action: &'static str,
    pub author: String,
    pub metadata: String,
    pub payload: String,
    pub created_at: i64,
}

pub struct NewMessage {
    pub room: Option<String>,
    pub action: &'static str,
    pub author: String,
    pub metadata: String,
    pub payload: String,
}

/// One page of an id-ordered list: ids strictly between `after` and `before`, `limit` rows,
/// nearest to the bound that the direction starts from.
#[derive(Clone, Copy, Debug)]
pub struct IdPage {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub descending: bool,
    pub limit: i64,
}

/// What the retention pruner removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub by_count: u64,
    pub by_age: u64,
}

/// Hears about every message right after its commit, before its publisher is answered, and in
/// id order per channel: fan-out relies on this to deliver live messages in order (§9.11).
/// Implementations must be quick and must not block.
pub trait CommitListener: Send + Sync + 'static {
    fn committed(&self, channel_id: i64, message: &Message);
}

/// For commands that publish nothing (migrations, account management).
pub struct NoListener;

impl CommitListener for NoListener {
    fn committed(&self, _channel_id: i64, _message: &Message) {}
}

/// The storage contract shared by every backend.
///
/// Every method is atomic. Lists honour [`IdPage`] exactly. Names arrive validated and
/// normalised (see `model`), so backends compare them byte for byte.
/// Which channels a list shows (SPEC §9.4).
#[derive(Clone, Copy, Debug)]
pub enum ChannelVisibility {
    /// Owners and trusted keys: every channel.
    All,
    /// Anonymous readers: channels whose `other_permissions` allow subscribing.
    Others,
    /// A user: channels whose other permissions, or whose group (if the user is a member),
    /// allow subscribing.
    User(i64),
}

#[async_trait]
pub trait Store: UserStore + MessageStore + Send + Sync + 'static {
    /// Cheap round trip proving the database answers.
    async fn ping(&self) -> StoreResult<()>;

    // Accounts.
    async fn count_accounts(&self) -> StoreResult<i64>;
    async fn create_account(&self, new: NewAccount) -> StoreResult<Account>;
    async fn account(&self, id: i64) -> StoreResult<Account>;
    async fn account_by_email(&self, email: &str) -> StoreResult<Account>;
    async fn account_by_key(&self, digest: &KeyDigest) -> StoreResult<Account>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn update_account(&self, id: i64, changes: AccountChanges) -> StoreResult<Account>;
    async fn set_account_key(&self, id: i64, key: &str, digest: &KeyDigest)
    -> StoreResult<Account>;
    async fn set_account_password(&self, id: i64, password_hash: &str) -> StoreResult<()>;
    /// Creates the first account of an empty database (SPEC §4.6): `None` when another process
    /// created one first. Processes sharing a database may call this at the same moment; at most
    /// one account results. The default suits a backend used by one process at a time.
    async fn create_first_account(&self, new: NewAccount) -> StoreResult<Option<Account>> {
        match self.create_account(new).await {
            Ok(account) => Ok(Some(account)),
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(err) => Err(err),
        }
    }

    // Instances. Creating one also creates its built-in channels, in the same transaction;
    // `max_per_owner` (0 = unlimited) is checked there too, so concurrent creates cannot pass it.
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

    // Groups (referenced by channels).
    async fn group_exists(&self, instance_id: i64, id: i64) -> StoreResult<bool>;

    // Channels.
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
    /// so committed ids are consecutive and never become visible out of order (SPEC §9.5).
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
    /// Applies retention: keep at most `max_per_room` newest messages per channel room
    /// (0 = no limit) and nothing created before `created_before` (None = no limit).
    async fn prune(&self, max_per_room: u64, created_before: Option<i64>) -> StoreResult<Pruned>;
}
