//! The storage contract for users, their profiles, groups and memberships (docs/api.md §7, §8).
//! Everything is scoped by instance: no method reaches a row of another instance.

use async_trait::async_trait;

use super::{IdPage, StoreResult};
use crate::keys::KeyDigest;
use crate::objects::DataObject;

#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub instance_id: i64,
    pub username: String,
    pub password_hash: String,
    pub user_key: String,
    /// The user's profile: its object of the built-in class `user_profile`.
    pub profile: DataObject,
}

#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub password_hash: String,
    pub user_key: String,
    pub key_digest: KeyDigest,
}

#[derive(Clone, Debug, Default)]
pub struct UserChanges {
    pub username: Option<String>,
    pub password_hash: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: i64,
    pub instance_id: i64,
    pub name: Option<String>,
    pub label: String,
    pub description: String,
}

/// Group fields; on update `None` leaves a field alone and `name: Some(None)` clears it.
#[derive(Default)]
pub struct GroupChanges {
    pub name: Option<Option<String>>,
    pub label: Option<String>,
    pub description: Option<String>,
}

/// Users and groups of an instance.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates the user and a default profile in one transaction (`ObjectStore::write` with
    /// `Write::CreateUser` sets the profile's fields). `Conflict("username")` on a taken name;
    /// `NotFound` if the instance vanished.
    async fn create_user(&self, instance_id: i64, new: NewUser) -> StoreResult<User>;
    async fn user(&self, instance_id: i64, id: i64) -> StoreResult<User>;
    async fn count_users(&self, instance_id: i64) -> StoreResult<i64>;
    async fn user_by_username(&self, instance_id: i64, username: &str) -> StoreResult<User>;
    async fn user_by_key(&self, digest: &KeyDigest) -> StoreResult<User>;
    async fn list_users(
        &self,
        instance_id: i64,
        username_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<User>>;
    /// Updates a user (`ObjectStore::write` with `Write::UpdateUser` changes its profile too).
    async fn update_user(
        &self,
        instance_id: i64,
        id: i64,
        changes: UserChanges,
    ) -> StoreResult<User>;
    async fn set_user_key(
        &self,
        instance_id: i64,
        id: i64,
        key: &str,
        digest: &KeyDigest,
    ) -> StoreResult<User>;
    /// Deletes a user with its profile and memberships.
    async fn delete_user(&self, instance_id: i64, id: i64) -> StoreResult<()>;

    async fn create_group(&self, instance_id: i64, fields: GroupChanges) -> StoreResult<Group>;
    async fn group(&self, instance_id: i64, id: i64) -> StoreResult<Group>;
    async fn group_exists(&self, instance_id: i64, id: i64) -> StoreResult<bool>;
    async fn list_groups(
        &self,
        instance_id: i64,
        label_prefix: Option<&str>,
        page: IdPage,
    ) -> StoreResult<Vec<Group>>;
    async fn update_group(
        &self,
        instance_id: i64,
        id: i64,
        changes: GroupChanges,
    ) -> StoreResult<Group>;
    /// Deletes a group and its memberships; channels and profiles that named it keep existing
    /// with no group.
    async fn delete_group(&self, instance_id: i64, id: i64) -> StoreResult<()>;

    /// Adds a user to a group. `Conflict("membership")` if already a member; `LimitExceeded`
    /// when the user is in `max_groups` groups already.
    async fn add_membership(&self, user_id: i64, group_id: i64, max_groups: u32)
    -> StoreResult<()>;
    async fn remove_membership(&self, user_id: i64, group_id: i64) -> StoreResult<()>;
    async fn is_member(&self, user_id: i64, group_id: i64) -> StoreResult<bool>;
    /// The groups of a user, ordered by id, within `page`.
    async fn groups_of_user(&self, user_id: i64, page: IdPage) -> StoreResult<Vec<Group>>;
    /// The users of a group, ordered by id, within `page`.
    async fn users_of_group(&self, group_id: i64, page: IdPage) -> StoreResult<Vec<User>>;
}
