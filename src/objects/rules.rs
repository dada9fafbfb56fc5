//! The rules a write checks against the object as it is stored when the write runs (docs/api.md
//! §10.3, §10.7). The store calls these inside the writing transaction, with the row locked, so
//! concurrent writes cannot slip between a check and the change it allows.

use super::render::BUILTIN_WRITABLE;
use super::values::{apply, stored_size};
use super::{Access, Class, DataObject, MAX_OBJECT_CHARS, ObjectPermission};
use crate::store::{ObjectChanges, Refusal, StoreError};

const CANNOT_CHANGE_OWNER: &str = "Cannot change owner of Data Object.";

/// The object after `changes`, and the names of the fields whose value changed; `None` when
/// nothing would change (the revision stays and no message is published).
pub fn plan_update(
    access: &Access,
    class: &Class,
    current: &DataObject,
    changes: &ObjectChanges,
    now: i64,
) -> Result<Option<(DataObject, Vec<String>)>, StoreError> {
    let level = access.object_level(current);
    if level < ObjectPermission::Read {
        return Err(StoreError::NotFound);
    }
    if level < ObjectPermission::Write {
        return Err(StoreError::Refused(Refusal::Forbidden));
    }
    if let Some(expected) = changes.expected_revision
        && expected != current.revision
    {
        return Err(StoreError::Refused(Refusal::RevisionMismatch {
            expected,
            actual: current.revision,
        }));
    }
    let mut next = current.clone();
    if let Some(owner) = changes.owner_id
        && owner != current.owner_id
    {
        if *access != Access::Full {
            return Err(refused_field("owner", CANNOT_CHANGE_OWNER));
        }
        next.owner_id = owner;
    }
    if let Some(group) = changes.group_id {
        next.group_id = group;
    }
    // A user cannot grant more than they have.
    let cap = |p: ObjectPermission| {
        if *access == Access::Full {
            p
        } else {
            p.min(level)
        }
    };
    if let Some(p) = changes.owner_permissions {
        next.owner_permissions = cap(p);
    }
    if let Some(p) = changes.group_permissions {
        next.group_permissions = cap(p);
    }
    if let Some(p) = changes.other_permissions {
        next.other_permissions = cap(p);
    }
    for (def, change) in &changes.fields {
        let before = next.data.get(&def.name);
        let after =
            apply(def, before, change).map_err(|message| refused_field(&def.name, &message))?;
        match after {
            Some(value) => next.data.insert(def.name.clone(), value),
            None => next.data.remove(&def.name),
        };
    }
    // In the order the API shows the fields.
    let changed: Vec<String> = BUILTIN_WRITABLE
        .iter()
        .filter(|name| builtin_differs(current, &next, name))
        .map(|name| (*name).to_owned())
        .chain(
            class
                .schema
                .0
                .iter()
                .filter(|def| current.data.get(&def.name) != next.data.get(&def.name))
                .map(|def| def.name.clone()),
        )
        .collect();
    if changed.is_empty() {
        return Ok(None);
    }
    if stored_size(&next.data) > MAX_OBJECT_CHARS {
        return Err(StoreError::Refused(Refusal::NonField(
            "Object maximum size exceeded.".into(),
        )));
    }
    next.revision += 1;
    next.updated_at = now;
    Ok(Some((next, changed)))
}

fn builtin_differs(a: &DataObject, b: &DataObject, name: &str) -> bool {
    match name {
        "owner" => a.owner_id != b.owner_id,
        "owner_permissions" => a.owner_permissions != b.owner_permissions,
        "group" => a.group_id != b.group_id,
        "group_permissions" => a.group_permissions != b.group_permissions,
        "other_permissions" => a.other_permissions != b.other_permissions,
        _ => false,
    }
}

/// Whether `access` may delete `current`: `NotFound` when it cannot even read it.
pub fn check_delete(access: &Access, current: &DataObject) -> Result<(), StoreError> {
    match access.object_level(current) {
        ObjectPermission::Full => Ok(()),
        ObjectPermission::None => Err(StoreError::NotFound),
        _ => Err(StoreError::Refused(Refusal::Forbidden)),
    }
}

fn refused_field(field: &str, message: &str) -> StoreError {
    StoreError::Refused(Refusal::Field(field.to_owned(), message.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::ClassPermission;
    use crate::objects::schema::Schema;
    use crate::objects::values::{FieldChange, Step};
    use serde_json::{Map, json};

    fn class() -> Class {
        Class {
            id: 1,
            instance_id: 1,
            name: "c".into(),
            description: String::new(),
            schema: Schema::parse(
                &json!([{"name": "n", "type": "integer"}, {"name": "s", "type": "string"}]),
                &|_| true,
            )
            .unwrap(),
            revision: 1,
            group_id: None,
            group_permissions: ClassPermission::CreateObjects,
            other_permissions: ClassPermission::CreateObjects,
            metadata: json!({}),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn object() -> DataObject {
        let mut data = Map::new();
        data.insert("n".into(), json!(1));
        DataObject {
            id: 5,
            class_id: 1,
            owner_id: Some(7),
            owner_permissions: ObjectPermission::Full,
            group_id: None,
            group_permissions: ObjectPermission::None,
            other_permissions: ObjectPermission::Read,
            channel_id: None,
            channel: None,
            channel_room: None,
            revision: 3,
            data,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn changes(fields: Vec<(&str, FieldChange)>) -> ObjectChanges {
        let class = class();
        ObjectChanges {
            fields: fields
                .into_iter()
                .map(|(name, change)| (class.schema.field(name).unwrap().clone(), change))
                .collect(),
            ..ObjectChanges::default()
        }
    }

    #[test]
    fn an_update_reports_only_what_changed() {
        let update = changes(vec![
            ("n", FieldChange::Increment(Step::Int(2))),
            ("s", FieldChange::Set(None)),
        ]);
        let (next, changed) = plan_update(&Access::Full, &class(), &object(), &update, 9)
            .unwrap()
            .unwrap();
        assert_eq!(changed, vec!["n".to_owned()]);
        assert_eq!(next.data.get("n"), Some(&json!(3)));
        assert_eq!((next.revision, next.updated_at), (4, 9));
    }

    #[test]
    fn an_update_that_changes_nothing_is_none() {
        let update = changes(vec![("n", FieldChange::Set(Some(json!(1))))]);
        assert!(
            plan_update(&Access::Full, &class(), &object(), &update, 9)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn readers_are_refused_and_strangers_see_nothing() {
        let update = changes(vec![("n", FieldChange::Set(Some(json!(2))))]);
        let reader = Access::User {
            id: 8,
            groups: vec![],
        };
        assert!(matches!(
            plan_update(&reader, &class(), &object(), &update, 9),
            Err(StoreError::Refused(Refusal::Forbidden))
        ));
        let mut hidden = object();
        hidden.other_permissions = ObjectPermission::None;
        assert!(matches!(
            plan_update(&reader, &class(), &hidden, &update, 9),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn revisions_must_match_and_users_keep_their_owner() {
        let mut update = changes(vec![("n", FieldChange::Set(Some(json!(2))))]);
        update.expected_revision = Some(2);
        assert!(matches!(
            plan_update(&Access::Full, &class(), &object(), &update, 9),
            Err(StoreError::Refused(Refusal::RevisionMismatch {
                expected: 2,
                actual: 3
            }))
        ));
        let owner = Access::User {
            id: 7,
            groups: vec![],
        };
        let give_away = ObjectChanges {
            owner_id: Some(Some(8)),
            ..ObjectChanges::default()
        };
        assert!(matches!(
            plan_update(&owner, &class(), &object(), &give_away, 9),
            Err(StoreError::Refused(Refusal::Field(field, _))) if field == "owner"
        ));
    }
}
