//! The values the store reads and writes: rows of accounts, instances, keys, channels and
//! messages, and the changes callers make to them.

use serde_json::Value;

use crate::keys::KeyDigest;
use crate::model::{ChannelType, Permission};

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

/// What retention keeps (docs/api.md §9.11); 0 and `None` mean no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionLimits {
    /// Newest messages kept per channel room.
    pub max_per_room: u64,
    /// Newest messages kept per channel, all rooms together.
    pub max_per_channel: u64,
    /// Messages created before this (microseconds) are removed.
    pub created_before: Option<i64>,
}

/// What the retention pruner removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub by_count: u64,
    pub by_age: u64,
    /// By the per-channel limit.
    pub by_channel: u64,
}

/// Which channels a list shows (docs/api.md §9.4).
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
