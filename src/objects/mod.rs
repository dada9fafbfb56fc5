//! Classes and data objects (docs/api.md §10): the domain rules, apart from HTTP and SQL.
//!
//! - `schema`: a class's field definitions and their validation (§10.1, §10.5 table, §10.9).
//! - `values`: a field's input forms, stored form and output form, and update operations.
//! - `query`: the `query` filter and `order_by` of object lists (§10.3).
//! - `render`: objects as the API shows them, and the payloads of change messages (§10.4).
//! - here: the classes and objects themselves, their permission levels and who may do what.
//!
//! The store keeps objects in the stored form `values` defines, and evaluates the rules that
//! need the current row (permission, expected revision, operations) inside the writing
//! transaction with the functions here, so a check and the write it guards cannot interleave.

pub mod query;
pub mod render;
pub mod rules;
pub mod schema;
pub mod values;

use serde_json::{Map, Value};

use self::schema::Schema;

/// The built-in class every instance has; it holds the users' profiles (docs/api.md §7, §10.1).
pub const USER_PROFILE: &str = "user_profile";

/// Largest stored size of an object's custom fields, in characters (docs/api.md §2.7).
pub const MAX_OBJECT_CHARS: usize = 32_768;

/// Object-level permission, `none < read < write < full` (docs/api.md §10.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjectPermission {
    None,
    Read,
    Write,
    Full,
}

impl ObjectPermission {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectPermission::None => "none",
            ObjectPermission::Read => "read",
            ObjectPermission::Write => "write",
            ObjectPermission::Full => "full",
        }
    }

    /// A name, or Syncano's numeric code.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" | "0" => Some(ObjectPermission::None),
            "read" | "1" => Some(ObjectPermission::Read),
            "write" | "2" => Some(ObjectPermission::Write),
            "full" | "3" => Some(ObjectPermission::Full),
            _ => None,
        }
    }

    /// The stored code (ordered like the levels, so SQL can compare them).
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Self> {
        [
            ObjectPermission::None,
            ObjectPermission::Read,
            ObjectPermission::Write,
            ObjectPermission::Full,
        ]
        .into_iter()
        .find(|p| p.code() == code)
    }
}

/// Class-level permission, `none < read < create_objects` (docs/api.md §10.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClassPermission {
    None,
    Read,
    CreateObjects,
}

impl ClassPermission {
    pub fn as_str(self) -> &'static str {
        match self {
            ClassPermission::None => "none",
            ClassPermission::Read => "read",
            ClassPermission::CreateObjects => "create_objects",
        }
    }

    /// A name, or Syncano's numeric code.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" | "0" => Some(ClassPermission::None),
            "read" | "1" => Some(ClassPermission::Read),
            "create_objects" | "2" => Some(ClassPermission::CreateObjects),
            _ => None,
        }
    }

    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Self> {
        [
            ClassPermission::None,
            ClassPermission::Read,
            ClassPermission::CreateObjects,
        ]
        .into_iter()
        .find(|p| p.code() == code)
    }
}

/// A class of an instance.
#[derive(Clone, Debug)]
pub struct Class {
    pub id: i64,
    pub instance_id: i64,
    pub name: String,
    pub description: String,
    pub schema: Schema,
    pub revision: i64,
    pub group_id: Option<i64>,
    pub group_permissions: ClassPermission,
    pub other_permissions: ClassPermission,
    pub metadata: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Class {
    pub fn is_user_profile(&self) -> bool {
        self.name == USER_PROFILE
    }
}

/// A data object. `data` holds the custom fields that are set, in their stored form
/// (`values`); a field that is absent is null.
#[derive(Clone, Debug, PartialEq)]
pub struct DataObject {
    pub id: i64,
    pub class_id: i64,
    pub owner_id: Option<i64>,
    pub owner_permissions: ObjectPermission,
    pub group_id: Option<i64>,
    pub group_permissions: ObjectPermission,
    pub other_permissions: ObjectPermission,
    pub channel_id: Option<i64>,
    /// The channel's name, read with the object (`None` when it has no channel).
    pub channel: Option<String>,
    pub channel_room: Option<String>,
    pub revision: i64,
    pub data: Map<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Who acts on classes and objects, as far as their permissions go (docs/api.md §3.4, §10.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// The instance's owner or a trusted key: everything.
    Full,
    /// A user, with the ids of the groups they belong to.
    User { id: i64, groups: Vec<i64> },
    /// An API key with `allow_anonymous_read` and no user key: reads what others may read.
    Anonymous,
}

impl Access {
    /// The caller's level on a class.
    pub fn class_level(&self, class: &Class) -> ClassPermission {
        match self {
            Access::Full => ClassPermission::CreateObjects,
            Access::User { groups, .. } => {
                let mut level = class.other_permissions;
                if class.group_id.is_some_and(|g| groups.contains(&g)) {
                    level = level.max(class.group_permissions);
                }
                level
            }
            Access::Anonymous => class.other_permissions.min(ClassPermission::Read),
        }
    }

    /// The caller's level on an object (the class level is checked separately).
    pub fn object_level(&self, object: &DataObject) -> ObjectPermission {
        match self {
            Access::Full => ObjectPermission::Full,
            Access::User { id, groups } => {
                let mut level = object.other_permissions;
                if object.owner_id == Some(*id) {
                    level = level.max(object.owner_permissions);
                }
                if object.group_id.is_some_and(|g| groups.contains(&g)) {
                    level = level.max(object.group_permissions);
                }
                level
            }
            Access::Anonymous => object.other_permissions.min(ObjectPermission::Read),
        }
    }

    pub fn user_id(&self) -> Option<i64> {
        match self {
            Access::User { id, .. } => Some(*id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(owner: Option<i64>, group: Option<i64>) -> DataObject {
        DataObject {
            id: 1,
            class_id: 1,
            owner_id: owner,
            owner_permissions: ObjectPermission::Full,
            group_id: group,
            group_permissions: ObjectPermission::Write,
            other_permissions: ObjectPermission::Read,
            channel_id: None,
            channel: None,
            channel_room: None,
            revision: 1,
            data: Map::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_users_level_is_the_highest_that_applies() {
        let user = Access::User {
            id: 7,
            groups: vec![2],
        };
        assert_eq!(
            user.object_level(&object(Some(7), None)),
            ObjectPermission::Full
        );
        assert_eq!(
            user.object_level(&object(Some(8), Some(2))),
            ObjectPermission::Write
        );
        assert_eq!(
            user.object_level(&object(Some(8), Some(3))),
            ObjectPermission::Read
        );
        let mut full_for_others = object(None, None);
        full_for_others.other_permissions = ObjectPermission::Full;
        assert_eq!(
            Access::Anonymous.object_level(&full_for_others),
            ObjectPermission::Read
        );
    }

    #[test]
    fn permissions_parse_names_and_codes() {
        assert_eq!(ObjectPermission::parse("2"), Some(ObjectPermission::Write));
        assert_eq!(
            ObjectPermission::parse("full"),
            Some(ObjectPermission::Full)
        );
        assert_eq!(ObjectPermission::parse("all"), None);
        assert_eq!(
            ClassPermission::parse("create_objects"),
            Some(ClassPermission::CreateObjects)
        );
        assert_eq!(ClassPermission::from_code(1), Some(ClassPermission::Read));
    }
}
