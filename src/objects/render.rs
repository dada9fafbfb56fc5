//! Classes and objects as the API shows them (docs/api.md §10.1, §10.3) and the payloads of the change
//! messages their writes publish (docs/api.md §10.4).

use serde_json::{Map, Value, json};

use super::values::output;
use super::{Class, DataObject};
use crate::model::format_timestamp;

pub fn class_json(instance: &str, class: &Class, objects_count: i64) -> Value {
    let base = format!("/v1.1/instances/{instance}/classes/{}/", class.name);
    json!({
        "name": class.name,
        "description": class.description,
        "status": "ready",
        "revision": class.revision,
        "objects_count": objects_count,
        "group": class.group_id,
        "group_permissions": class.group_permissions.as_str(),
        "other_permissions": class.other_permissions.as_str(),
        "metadata": class.metadata,
        "schema": class.schema.to_json(),
        "created_at": format_timestamp(class.created_at),
        "updated_at": format_timestamp(class.updated_at),
        "links": {"self": base, "objects": format!("{base}objects/")},
    })
}

/// The built-in fields an update may change, as the API names them.
pub const BUILTIN_WRITABLE: [&str; 5] = [
    "owner",
    "owner_permissions",
    "group",
    "group_permissions",
    "other_permissions",
];

/// The value of one field (built-in or custom) in its output form.
fn field_value(class: &Class, object: &DataObject, name: &str) -> Value {
    match name {
        "owner" => json!(object.owner_id),
        "owner_permissions" => json!(object.owner_permissions.as_str()),
        "group" => json!(object.group_id),
        "group_permissions" => json!(object.group_permissions.as_str()),
        "other_permissions" => json!(object.other_permissions.as_str()),
        custom => class
            .schema
            .field(custom)
            .map_or(Value::Null, |def| output(def, object.data.get(custom))),
    }
}

fn fields(class: &Class, object: &DataObject, with_channel: bool) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("id".into(), json!(object.id));
    map.insert(
        "created_at".into(),
        json!(format_timestamp(object.created_at)),
    );
    map.insert(
        "updated_at".into(),
        json!(format_timestamp(object.updated_at)),
    );
    map.insert("revision".into(), json!(object.revision));
    for name in BUILTIN_WRITABLE {
        map.insert(name.into(), field_value(class, object, name));
    }
    if with_channel {
        map.insert("channel".into(), json!(object.channel));
        // A detached object (its channel was deleted) has no room either.
        let room = object.channel.as_ref().and(object.channel_room.as_ref());
        map.insert("channel_room".into(), json!(room));
    }
    for def in &class.schema.0 {
        map.insert(def.name.clone(), output(def, object.data.get(&def.name)));
    }
    map
}

/// The object with its links.
pub fn object_json(instance: &str, class: &Class, object: &DataObject) -> Value {
    let mut map = fields(class, object, true);
    let mut links = Map::new();
    links.insert(
        "self".into(),
        json!(format!(
            "/v1.1/instances/{instance}/classes/{}/objects/{}/",
            class.name, object.id
        )),
    );
    if let Some(owner) = object.owner_id {
        links.insert(
            "owner".into(),
            json!(format!("/v1.1/instances/{instance}/users/{owner}/")),
        );
    }
    if let Some(channel) = &object.channel {
        links.insert(
            "channel".into(),
            json!(format!("/v1.1/instances/{instance}/channels/{channel}/")),
        );
    }
    map.insert("links".into(), Value::Object(links));
    Value::Object(map)
}

/// `create`: the object as the API returns it, without `links`, `channel`, `channel_room`.
pub fn created_payload(class: &Class, object: &DataObject) -> String {
    Value::Object(fields(class, object, false)).to_string()
}

/// `update`: `id`, `revision`, `updated_at` and every field whose value changed.
pub fn updated_payload(class: &Class, object: &DataObject, changed: &[String]) -> String {
    let mut map = Map::new();
    map.insert("id".into(), json!(object.id));
    map.insert("revision".into(), json!(object.revision));
    map.insert(
        "updated_at".into(),
        json!(format_timestamp(object.updated_at)),
    );
    for name in changed {
        map.insert(name.clone(), field_value(class, object, name));
    }
    Value::Object(map).to_string()
}

/// `delete`: the id.
pub fn deleted_payload(id: i64) -> String {
    json!({ "id": id }).to_string()
}

/// The `metadata` of a change message.
pub fn change_metadata(class: &Class) -> String {
    json!({"type": "object", "class": class.name}).to_string()
}
