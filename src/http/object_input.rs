//! Reading a data object's fields from a request body (docs/api.md §10.3, §10.9): the built-in fields
//! and the class's custom fields, for object creates and updates and for user profiles.
//!
//! Errors are collected per field. Rules that need the stored row as it is when the write runs
//! (the caller's level, `expected_revision`, operations) are checked again by the store, inside
//! the writing transaction (`objects::rules`).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::App;
use super::input;
use super::request::Fields;
use crate::error::{ApiError, FieldErrors};
use crate::model::{self, ChannelType};
use crate::objects::values::{self, FieldChange, stored_size};
use crate::objects::{Access, Class, DataObject, MAX_OBJECT_CHARS, ObjectPermission};
use crate::store::{Channel, NewObject, ObjectChanges, ObjectChannel, StoreError};

const ROOM_REQUIRED: &str = "Channel room field is required for channels with separate rooms.";

/// What a body asks of an object.
pub struct ObjectInput {
    pub changes: ObjectChanges,
    /// Creates only: the channel the object publishes to, with its room.
    pub channel: Option<(Arc<Channel>, Option<String>)>,
}

impl ObjectInput {
    /// The object to create. `owner` is the caller's user when the body names none.
    pub fn into_new(self, owner: Option<i64>) -> NewObject {
        let changes = self.changes;
        let data: Map<String, Value> = changes
            .fields
            .into_iter()
            .filter_map(|(def, change)| match change {
                FieldChange::Set(Some(value)) => Some((def.name, value)),
                _ => None,
            })
            .collect();
        NewObject {
            owner_id: changes.owner_id.unwrap_or(owner),
            owner_permissions: changes.owner_permissions.unwrap_or(ObjectPermission::Full),
            group_id: changes.group_id.flatten(),
            group_permissions: changes.group_permissions.unwrap_or(ObjectPermission::None),
            other_permissions: changes.other_permissions.unwrap_or(ObjectPermission::None),
            channel: self.channel.map(|(channel, room)| ObjectChannel {
                id: channel.id,
                name: channel.name.clone(),
                room,
            }),
            data,
        }
    }
}

fn permission(raw: &str) -> Option<ObjectPermission> {
    ObjectPermission::parse(raw)
}

/// Reads the object fields of `fields`. `current` is the object an update changes (`None` on
/// create); `owner` the owner a create gets when none is named. Field errors go to `errors`.
pub async fn read_object(
    app: &App,
    class: &Class,
    access: &Access,
    fields: &Fields,
    current: Option<&DataObject>,
    owner: Option<i64>,
    errors: &mut FieldErrors,
) -> Result<ObjectInput, ApiError> {
    let instance_id = class.instance_id;
    let update = current.is_some();
    let mut changes = ObjectChanges::default();

    let owner_id = errors
        .check("owner", input::primary_key(fields, "owner"))
        .flatten();
    if let Some(owner_id) = owner_id {
        let unchanged = owner_id == current.map_or(owner, |c| c.owner_id);
        if *access != Access::Full && !unchanged {
            errors.add("owner", "Cannot change owner of Data Object.");
        } else if let Some(id) = owner_id
            && !unchanged
            && matches!(
                app.store.user(instance_id, id).await,
                Err(StoreError::NotFound)
            )
        {
            errors.add(
                "owner",
                format!("Invalid pk \"{id}\" - object does not exist."),
            );
        } else {
            changes.owner_id = Some(owner_id);
        }
    }

    changes.group_id = errors
        .check("group", input::primary_key(fields, "group"))
        .flatten();
    if let Some(Some(group)) = changes.group_id {
        if !app.store.group_exists(instance_id, group).await? {
            errors.add(
                "group",
                format!("Invalid pk \"{group}\" - object does not exist."),
            );
        } else if let Access::User { groups, .. } = access
            && !groups.contains(&group)
        {
            errors.add("group", "Invalid group specified.");
        }
    }
    changes.owner_permissions = errors
        .check(
            "owner_permissions",
            input::choice(fields, "owner_permissions", permission),
        )
        .flatten();
    changes.group_permissions = errors
        .check(
            "group_permissions",
            input::choice(fields, "group_permissions", permission),
        )
        .flatten();
    changes.other_permissions = errors
        .check(
            "other_permissions",
            input::choice(fields, "other_permissions", permission),
        )
        .flatten();
    if update {
        changes.expected_revision = errors
            .check(
                "expected_revision",
                input::integer(fields, "expected_revision"),
            )
            .flatten();
    }

    for def in &class.schema.0 {
        let Some(raw) = fields.get(&def.name) else {
            continue;
        };
        match values::parse(def, raw, update) {
            Ok(change) => changes.fields.push((def.clone(), change)),
            Err(message) => errors.add(&def.name, message),
        }
    }

    let channel = if update {
        // `channel` and `channel_room` are set on create only.
        None
    } else {
        read_channel(app, instance_id, fields, errors).await?
    };

    if errors.is_empty() && !update {
        let data: Map<String, Value> = changes
            .fields
            .iter()
            .filter_map(|(def, change)| match change {
                FieldChange::Set(Some(value)) => Some((def.name.clone(), value.clone())),
                _ => None,
            })
            .collect();
        if stored_size(&data) > MAX_OBJECT_CHARS {
            errors.add("non_field_errors", "Object maximum size exceeded.");
        }
    }
    Ok(ObjectInput { changes, channel })
}

/// `channel` (a channel name or null) and `channel_room` of a create.
async fn read_channel(
    app: &App,
    instance_id: i64,
    fields: &Fields,
    errors: &mut FieldErrors,
) -> Result<Option<(Arc<Channel>, Option<String>)>, ApiError> {
    let name = match fields.get("channel") {
        None | Some(Value::Null) => None,
        Some(_) => errors
            .check("channel", input::string(fields, "channel", 64, true))
            .flatten()
            .filter(|name| !name.is_empty()),
    };
    // A room that was given but refused is not a missing room.
    let mut room_refused = false;
    let room = match fields.get("channel_room") {
        None | Some(Value::Null) => None,
        Some(Value::String(room)) => {
            match model::parse_room_within(Some(room), model::MAX_CHANNEL_ROOM_CHARS) {
                Ok(room) => room,
                Err(message) => {
                    errors.add("channel_room", message);
                    room_refused = true;
                    None
                }
            }
        }
        Some(_) => {
            errors.add("channel_room", "Not a valid string.");
            room_refused = true;
            None
        }
    };
    let Some(name) = name else {
        return Ok(None);
    };
    let channel = match app.channel(instance_id, &model::normalize(&name)).await {
        Ok(channel) => channel,
        Err(ApiError::NotFound) => {
            errors.add(
                "channel",
                format!("Object with name={name} does not exist."),
            );
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    let room = match channel.kind {
        ChannelType::Default => None,
        ChannelType::SeparateRooms => match room {
            Some(room) => Some(room),
            None => {
                if !room_refused {
                    errors.add("non_field_errors", ROOM_REQUIRED);
                }
                return Ok(None);
            }
        },
    };
    Ok(Some((channel, room)))
}
