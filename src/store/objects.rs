//! The storage contract for classes and data objects (docs/api.md §10).
//!
//! Writes that may publish a change message go through [`ObjectStore::write`]: the store runs
//! the data change and the message (id allocation included) in one transaction, and tells the
//! commit listener only after the commit (docs/api.md §9.11 "no phantom messages"). Rules that depend
//! on the row as it is when the write runs (permission, `expected_revision`, operations such as
//! `_increment`) are checked inside that transaction.

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{IdPage, NewUser, StoreResult, User, UserChanges};
use crate::objects::query::{Condition, Order, Scalar};
use crate::objects::schema::{FieldDef, Schema};
use crate::objects::values::FieldChange;
use crate::objects::{Access, Class, ClassPermission, DataObject, ObjectPermission};

/// A rule checked inside a writing transaction refused the write; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The caller may read the object but not make this change (403).
    Forbidden,
    /// `expected_revision` differs from the stored revision.
    RevisionMismatch { expected: i64, actual: i64 },
    /// A field's value is refused: `{"<field>": ["<message>"]}`.
    Field(String, String),
    /// `{"non_field_errors": ["<message>"]}`.
    NonField(String),
}

pub struct NewClass {
    pub name: String,
    pub description: String,
    pub schema: Schema,
    pub group_id: Option<i64>,
    pub group_permissions: ClassPermission,
    pub other_permissions: ClassPermission,
    pub metadata: Value,
}

/// Class fields an update may change; `None` leaves a field alone.
#[derive(Default)]
pub struct ClassChanges {
    pub description: Option<String>,
    pub schema: Option<Schema>,
    pub group_id: Option<Option<i64>>,
    pub group_permissions: Option<ClassPermission>,
    pub other_permissions: Option<ClassPermission>,
    pub metadata: Option<Value>,
    pub expected_revision: Option<i64>,
}

/// The channel an object publishes its changes to.
#[derive(Clone, Debug)]
pub struct ObjectChannel {
    pub id: i64,
    pub name: String,
    /// Normalised; `None` on `default` channels.
    pub room: Option<String>,
}

/// A new object; `data` holds the custom fields that are set, validated and in stored form.
#[derive(Clone, Debug)]
pub struct NewObject {
    pub owner_id: Option<i64>,
    pub owner_permissions: ObjectPermission,
    pub group_id: Option<i64>,
    pub group_permissions: ObjectPermission,
    pub other_permissions: ObjectPermission,
    pub channel: Option<ObjectChannel>,
    pub data: Map<String, Value>,
}

/// What an update changes. Built-in fields: `None` leaves them alone (`Some(None)` clears an
/// owner or group). Custom fields change as their [`FieldChange`] says.
#[derive(Clone, Debug, Default)]
pub struct ObjectChanges {
    pub owner_id: Option<Option<i64>>,
    pub owner_permissions: Option<ObjectPermission>,
    pub group_id: Option<Option<i64>>,
    pub group_permissions: Option<ObjectPermission>,
    pub other_permissions: Option<ObjectPermission>,
    pub fields: Vec<(FieldDef, FieldChange)>,
    pub expected_revision: Option<i64>,
}

impl ObjectChanges {
    pub fn is_empty(&self) -> bool {
        self.owner_id.is_none()
            && self.owner_permissions.is_none()
            && self.group_id.is_none()
            && self.group_permissions.is_none()
            && self.other_permissions.is_none()
            && self.fields.is_empty()
    }
}

/// A write that stores a data change and, when the object has a channel, its change message,
/// in one transaction. `author` is the message's author JSON (docs/api.md §9.5).
#[derive(Clone, Debug)]
pub enum Write {
    CreateObject {
        class: Class,
        new: NewObject,
        author: String,
    },
    UpdateObject {
        class: Class,
        id: i64,
        /// The object's channel when the caller looked (fan-out order is kept per channel).
        channel_id: Option<i64>,
        changes: ObjectChanges,
        access: Access,
        author: String,
    },
    DeleteObject {
        class: Class,
        id: i64,
        channel_id: Option<i64>,
        access: Access,
        author: String,
    },
    /// A user with its profile (an object of `user_profile`).
    CreateUser {
        instance_id: i64,
        profile_class: Class,
        new: NewUser,
        profile: NewObject,
        author: String,
    },
    /// A user and, when `profile` changes something, its profile.
    UpdateUser {
        instance_id: i64,
        id: i64,
        profile_class: Class,
        changes: UserChanges,
        profile_channel_id: Option<i64>,
        profile: ObjectChanges,
        author: String,
    },
}

impl Write {
    /// The channel the write may publish to, as known before it runs.
    pub fn channel_id(&self) -> Option<i64> {
        match self {
            Write::CreateObject { new, .. } | Write::CreateUser { profile: new, .. } => {
                new.channel.as_ref().map(|c| c.id)
            }
            Write::UpdateObject { channel_id, .. } | Write::DeleteObject { channel_id, .. } => {
                *channel_id
            }
            Write::UpdateUser {
                profile_channel_id, ..
            } => *profile_channel_id,
        }
    }
}

/// What a write left.
#[derive(Clone, Debug)]
pub enum Written {
    /// The object as stored (unchanged, with no message, when the update changed nothing).
    Object(DataObject),
    Deleted,
    User(User),
}

/// Where a page of an object list continues: after the row with this order value and id.
#[derive(Clone, Debug, PartialEq)]
pub struct Cursor {
    /// The order field's value on that row; `None` when it was null (or the order is by id).
    pub value: Option<Scalar>,
    pub id: i64,
}

/// One page of a class's objects.
#[derive(Clone, Debug)]
pub struct ObjectQuery {
    pub conditions: Vec<Condition>,
    /// Whose permissions filter the list.
    pub access: Access,
    /// The order the page is read in (a backward page reads in reverse).
    pub order: Order,
    /// Rows strictly after this one in `order`.
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// Classes and their objects, scoped by instance.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Creates a class with the indexes its schema asks for. `LimitExceeded` beyond
    /// `max_classes` (0 = unlimited; `user_profile` does not count); `Conflict("name")` on a
    /// taken name.
    async fn create_class(
        &self,
        instance_id: i64,
        new: NewClass,
        max_classes: u32,
    ) -> StoreResult<Class>;
    async fn class(&self, instance_id: i64, name: &str) -> StoreResult<Class>;
    /// Classes of an instance that `access` may read, in the page's id window.
    async fn list_classes(
        &self,
        instance_id: i64,
        name_prefix: Option<&str>,
        access: &Access,
        page: IdPage,
    ) -> StoreResult<Vec<Class>>;
    /// Updates a class. A schema change discards the values of removed or retyped fields,
    /// replaces indexes and bumps `revision`, all in one transaction. A mismatched
    /// `expected_revision` is `Refused(RevisionMismatch)`.
    async fn update_class(
        &self,
        instance_id: i64,
        name: &str,
        changes: ClassChanges,
    ) -> StoreResult<Class>;
    /// Deletes a class with its objects and indexes.
    async fn delete_class(&self, instance_id: i64, name: &str) -> StoreResult<()>;
    /// Exact object counts of classes, by class id (classes without objects count 0).
    async fn count_objects(&self, class_ids: &[i64]) -> StoreResult<Vec<(i64, i64)>>;

    /// An object of a class, whatever the caller may see.
    async fn object(&self, class: &Class, id: i64) -> StoreResult<DataObject>;
    async fn list_objects(
        &self,
        class: &Class,
        query: &ObjectQuery,
    ) -> StoreResult<Vec<DataObject>>;
    /// How many objects match the query's conditions and permissions (paging ignored).
    async fn count_matching(&self, class: &Class, query: &ObjectQuery) -> StoreResult<i64>;
    /// Stores a write and its change message atomically (see the module docs).
    async fn write(&self, write: Write) -> StoreResult<Written>;
}
