//! A class's schema: its custom fields, their types and indexes (docs/api.md §10.1, §10.5, §10.9).

use serde_json::{Map, Value, json};

/// Most fields a schema may define.
pub const MAX_FIELDS: usize = 32;
/// Most indexes a schema may define; each `filter_index` and `order_index` counts one.
pub const MAX_INDEXES: usize = 16;
/// Longest field name.
const MAX_NAME_CHARS: usize = 64;

/// Field names that the built-in fields of an object use (compared case-insensitively).
const RESERVED: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "revision",
    "owner",
    "owner_permissions",
    "group",
    "group_permissions",
    "other_permissions",
    "channel",
    "channel_room",
    "expected_revision",
    "links",
    "self",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    String,
    Text,
    Integer,
    Float,
    Boolean,
    Datetime,
    File,
    Reference,
    Object,
    Array,
    Geopoint,
    Relation,
}

/// Every type, in the order the SPEC's error message lists them.
const TYPES: [FieldType; 12] = [
    FieldType::String,
    FieldType::Text,
    FieldType::Integer,
    FieldType::Float,
    FieldType::Boolean,
    FieldType::Datetime,
    FieldType::File,
    FieldType::Reference,
    FieldType::Object,
    FieldType::Array,
    FieldType::Geopoint,
    FieldType::Relation,
];

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Text => "text",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Datetime => "datetime",
            FieldType::File => "file",
            FieldType::Reference => "reference",
            FieldType::Object => "object",
            FieldType::Array => "array",
            FieldType::Geopoint => "geopoint",
            FieldType::Relation => "relation",
        }
    }

    fn parse(raw: &str) -> Option<FieldType> {
        let lower = raw.to_lowercase();
        TYPES.into_iter().find(|t| t.as_str() == lower)
    }

    /// The definition keys this type allows besides `name` and `type`, in the SPEC's order.
    fn keys(self) -> &'static [&'static str] {
        match self {
            FieldType::String
            | FieldType::Integer
            | FieldType::Float
            | FieldType::Boolean
            | FieldType::Datetime => &["order_index", "filter_index"],
            FieldType::Reference => &["target", "order_index", "filter_index"],
            FieldType::Relation => &["target", "filter_index"],
            FieldType::Array | FieldType::Geopoint => &["filter_index"],
            FieldType::Text | FieldType::Object | FieldType::File => &[],
        }
    }

    fn needs_target(self) -> bool {
        matches!(self, FieldType::Reference | FieldType::Relation)
    }
}

/// One custom field of a class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDef {
    pub name: String,
    pub kind: FieldType,
    /// `self`, `user` or a class name (lower-case); references and relations only.
    pub target: Option<String>,
    pub filter_index: bool,
    pub order_index: bool,
}

/// Which kind of index a field has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndexKind {
    Filter,
    Order,
}

impl FieldDef {
    pub fn to_json(&self) -> Value {
        let mut def = Map::new();
        def.insert("name".into(), json!(self.name));
        def.insert("type".into(), json!(self.kind.as_str()));
        if let Some(target) = &self.target {
            def.insert("target".into(), json!(target));
        }
        if self.order_index {
            def.insert("order_index".into(), json!(true));
        }
        if self.filter_index {
            def.insert("filter_index".into(), json!(true));
        }
        Value::Object(def)
    }

    pub fn indexes(&self) -> impl Iterator<Item = IndexKind> {
        [
            self.filter_index.then_some(IndexKind::Filter),
            self.order_index.then_some(IndexKind::Order),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether stored values of `self` mean the same under `other` (same name, type and target).
    fn same_values(&self, other: &FieldDef) -> bool {
        self.name == other.name && self.kind == other.kind && self.target == other.target
    }
}

/// The custom fields of a class, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema(pub Vec<FieldDef>);

/// An index of a class's objects on one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldIndex {
    pub field: FieldDef,
    pub kind: IndexKind,
}

/// What a schema change does to stored objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaChange {
    /// Fields removed, or whose type or target changed: their values are discarded.
    pub discarded: Vec<String>,
    pub drop_indexes: Vec<FieldIndex>,
    pub create_indexes: Vec<FieldIndex>,
}

impl Schema {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.0.iter().find(|f| f.name == name)
    }

    pub fn to_json(&self) -> Value {
        Value::Array(self.0.iter().map(FieldDef::to_json).collect())
    }

    pub fn indexes(&self) -> Vec<FieldIndex> {
        self.0
            .iter()
            .flat_map(|field| {
                field.indexes().map(|kind| FieldIndex {
                    field: field.clone(),
                    kind,
                })
            })
            .collect()
    }

    /// Reads a stored schema (written by `to_json`, so trusted).
    pub fn from_stored(text: &str) -> Result<Schema, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Schema::parse(&value, &|_| true)
    }

    /// Validates a schema given by a client. `class_exists` tells whether a reference target
    /// names a class of the instance.
    pub fn parse(raw: &Value, class_exists: &dyn Fn(&str) -> bool) -> Result<Schema, String> {
        let Value::Array(items) = raw else {
            return Err("Schema passed in invalid format.".into());
        };
        if items.len() > MAX_FIELDS {
            return Err(format!("Too many fields defined (exceeds {MAX_FIELDS})."));
        }
        let mut fields: Vec<FieldDef> = Vec::with_capacity(items.len());
        let mut indexes = 0;
        let mut geo_indexes = 0;
        for (index, item) in items.iter().enumerate() {
            let Value::Object(def) = item else {
                return Err("Schema passed in invalid format.".into());
            };
            let field = parse_field(def, &fields, class_exists).map_err(|reason| {
                let name = match def.get("name") {
                    Some(Value::String(name)) => name.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                format!("Error processing field definition \"{name}\" #{index}: {reason}")
            })?;
            indexes += field.indexes().count();
            if field.kind == FieldType::Geopoint && field.filter_index {
                geo_indexes += 1;
            }
            let reason = if indexes > MAX_INDEXES {
                Some(format!("Too many indexes defined (exceeds {MAX_INDEXES})."))
            } else if geo_indexes > 1 {
                Some("Too many indexes defined on field type geopoint (exceeds 1).".to_owned())
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(format!(
                    "Error processing field definition \"{}\" #{index}: {reason}",
                    field.name
                ));
            }
            fields.push(field);
        }
        Ok(Schema(fields))
    }

    /// What replacing `self` by `new` does to the class's objects and indexes.
    pub fn change_to(&self, new: &Schema) -> SchemaChange {
        let mut change = SchemaChange::default();
        for old in &self.0 {
            let kept = new.field(&old.name).filter(|f| f.same_values(old));
            if kept.is_none() {
                change.discarded.push(old.name.clone());
            }
            for kind in old.indexes() {
                if !kept.is_some_and(|f| f.indexes().any(|k| k == kind)) {
                    change.drop_indexes.push(FieldIndex {
                        field: old.clone(),
                        kind,
                    });
                }
            }
        }
        for field in &new.0 {
            let kept = self.field(&field.name).filter(|f| f.same_values(field));
            for kind in field.indexes() {
                if !kept.is_some_and(|f| f.indexes().any(|k| k == kind)) {
                    change.create_indexes.push(FieldIndex {
                        field: field.clone(),
                        kind,
                    });
                }
            }
        }
        change
    }
}

fn parse_field(
    def: &Map<String, Value>,
    earlier: &[FieldDef],
    class_exists: &dyn Fn(&str) -> bool,
) -> Result<FieldDef, String> {
    let name = def.get("name").filter(|v| !v.is_null());
    let kind = def.get("type").filter(|v| !v.is_null());
    let (Some(name), Some(kind)) = (name, kind) else {
        return Err("Field name and type is required.".into());
    };
    let Value::String(name) = name else {
        return Err("Invalid type of field name. Expected string.".into());
    };
    let Value::String(kind) = kind else {
        return Err("Invalid type of field type. Expected string.".into());
    };
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "Value of field name is too long, maximum length is {MAX_NAME_CHARS}."
        ));
    }
    let well_formed = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed {
        return Err(format!(
            "Wrong characters used in field name \"{name}\". Allowed characters are: letters, \
             numbers and underscores. Name has to start with a letter."
        ));
    }
    if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("Field name \"{name}\" is reserved."));
    }
    if earlier.iter().any(|f| &f.name == name) {
        return Err(format!("Field \"{name}\" defined more than once."));
    }
    let Some(kind) = FieldType::parse(kind) else {
        let names: Vec<&str> = TYPES.iter().map(|t| t.as_str()).collect();
        return Err(format!(
            "Invalid field type value. Possible types: {}.",
            names.join(", ")
        ));
    };
    let mut filter_index = false;
    let mut order_index = false;
    for (key, label, flag) in [
        ("filter_index", "filter index", &mut filter_index),
        ("order_index", "order index", &mut order_index),
    ] {
        match def.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(value)) => *flag = *value,
            Some(_) => {
                return Err(format!(
                    "Invalid type of field \"{label}\". Expected boolean."
                ));
            }
        }
    }
    // Keys the type does not allow; an index key set to false (or any key set to null) is
    // accepted and dropped.
    let extra = def.iter().any(|(key, value)| {
        let dropped = value.is_null()
            || (matches!(key.as_str(), "filter_index" | "order_index") && value == &json!(false));
        key != "name" && key != "type" && !dropped && !kind.keys().contains(&key.as_str())
    });
    if extra {
        let mut keys = vec!["name", "type"];
        keys.extend(kind.keys());
        return Err(format!(
            "Field {} definition can only consist of {}.",
            kind.as_str(),
            keys.join(", ")
        ));
    }
    let target = if kind.needs_target() {
        Some(parse_target(def.get("target"), class_exists)?)
    } else {
        None
    };
    Ok(FieldDef {
        name: name.clone(),
        kind,
        target,
        filter_index,
        order_index,
    })
}

fn parse_target(
    raw: Option<&Value>,
    class_exists: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let target = match raw {
        None | Some(Value::Null) => {
            return Err("Target must specify class name or \"self\".".into());
        }
        Some(Value::String(target)) if !target.trim().is_empty() => target.trim().to_lowercase(),
        Some(_) => return Err("Invalid value of target. Expected non-empty string.".into()),
    };
    match target.as_str() {
        "users" => Err("Target cannot be set to \"users\". Use \"user\" instead.".into()),
        "self" | "user" => Ok(target),
        name if class_exists(name) => Ok(target),
        _ => Err("Class specified by target is missing.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<Schema, String> {
        Schema::parse(&value, &|name| name == "monsters")
    }

    fn error(value: Value) -> String {
        parse(value).unwrap_err()
    }

    #[test]
    fn the_spec_example_round_trips() {
        let raw = json!([
            {"name": "title", "type": "string", "filter_index": true},
            {"name": "reward", "type": "integer", "order_index": true, "filter_index": true},
            {"name": "notes", "type": "text"},
            {"name": "parent", "type": "reference", "target": "self"}
        ]);
        let schema = parse(raw.clone()).unwrap();
        assert_eq!(schema.to_json(), raw);
        assert_eq!(schema.indexes().len(), 3);
    }

    #[test]
    fn types_and_targets_are_case_insensitive_and_stored_lower_case() {
        let schema =
            parse(json!([{"name": "m", "type": "Reference", "target": "Monsters"}])).unwrap();
        assert_eq!(
            schema.to_json(),
            json!([{"name": "m", "type": "reference", "target": "monsters"}])
        );
    }

    #[test]
    fn field_errors_name_the_field_and_its_position() {
        assert_eq!(
            error(json!([{"name": "ok", "type": "string"}, {"name": "id", "type": "string"}])),
            "Error processing field definition \"id\" #1: Field name \"id\" is reserved."
        );
        assert_eq!(
            error(json!([{"name": "x", "type": "strin"}])),
            "Error processing field definition \"x\" #0: Invalid field type value. Possible \
             types: string, text, integer, float, boolean, datetime, file, reference, object, \
             array, geopoint, relation."
        );
        assert_eq!(
            error(json!([{"name": "x", "type": "string"}, {"name": "x", "type": "text"}])),
            "Error processing field definition \"x\" #1: Field \"x\" defined more than once."
        );
        assert_eq!(
            error(json!([{"name": "1x", "type": "string"}])),
            "Error processing field definition \"1x\" #0: Wrong characters used in field name \
             \"1x\". Allowed characters are: letters, numbers and underscores. Name has to start \
             with a letter."
        );
        assert_eq!(
            error(json!([{"type": "string"}])),
            "Error processing field definition \"\" #0: Field name and type is required."
        );
        assert_eq!(
            error(json!([{"name": 5, "type": "string"}])),
            "Error processing field definition \"5\" #0: Invalid type of field name. Expected \
             string."
        );
    }

    #[test]
    fn keys_are_checked_against_the_type() {
        assert_eq!(
            error(json!([{"name": "t", "type": "text", "filter_index": true}])),
            "Error processing field definition \"t\" #0: Field text definition can only consist \
             of name, type."
        );
        assert_eq!(
            error(json!([{"name": "a", "type": "array", "order_index": true}])),
            "Error processing field definition \"a\" #0: Field array definition can only \
             consist of name, type, filter_index."
        );
        assert!(parse(json!([{"name": "t", "type": "text", "filter_index": false}])).is_ok());
        assert_eq!(
            error(json!([{"name": "s", "type": "string", "order_index": "yes"}])),
            "Error processing field definition \"s\" #0: Invalid type of field \"order index\". \
             Expected boolean."
        );
    }

    #[test]
    fn targets_are_validated() {
        let target = |t: Value| error(json!([{"name": "r", "type": "reference", "target": t}]));
        assert!(target(json!("users")).ends_with("Use \"user\" instead."));
        assert!(target(json!("")).ends_with("Expected non-empty string."));
        assert!(target(json!("dragons")).ends_with("Class specified by target is missing."));
        assert!(
            error(json!([{"name": "r", "type": "relation"}]))
                .ends_with("Target must specify class name or \"self\".")
        );
        assert!(parse(json!([{"name": "r", "type": "relation", "target": "user"}])).is_ok());
    }

    #[test]
    fn limits_are_enforced() {
        let many: Vec<Value> = (0..33)
            .map(|i| json!({"name": format!("f{i}"), "type": "text"}))
            .collect();
        assert_eq!(
            error(Value::Array(many)),
            "Too many fields defined (exceeds 32)."
        );
        let indexed: Vec<Value> = (0..9)
            .map(|i| {
                json!({"name": format!("f{i}"), "type": "integer", "filter_index": true,
                       "order_index": true})
            })
            .collect();
        assert_eq!(
            error(Value::Array(indexed)),
            "Error processing field definition \"f8\" #8: Too many indexes defined (exceeds 16)."
        );
        assert_eq!(
            error(json!([
                {"name": "a", "type": "geopoint", "filter_index": true},
                {"name": "b", "type": "geopoint", "filter_index": true}
            ])),
            "Error processing field definition \"b\" #1: Too many indexes defined on field type \
             geopoint (exceeds 1)."
        );
        assert_eq!(error(json!({})), "Schema passed in invalid format.");
    }

    #[test]
    fn a_change_discards_values_and_moves_indexes() {
        let old = parse(json!([
            {"name": "a", "type": "integer", "filter_index": true},
            {"name": "b", "type": "string", "order_index": true},
            {"name": "c", "type": "text"}
        ]))
        .unwrap();
        let new = parse(json!([
            {"name": "a", "type": "integer", "filter_index": true, "order_index": true},
            {"name": "b", "type": "integer", "order_index": true}
        ]))
        .unwrap();
        let change = old.change_to(&new);
        assert_eq!(change.discarded, vec!["b".to_owned(), "c".to_owned()]);
        let kinds = |list: &[FieldIndex]| {
            list.iter()
                .map(|i| (i.field.name.clone(), i.kind))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(&change.drop_indexes),
            vec![("b".into(), IndexKind::Order)]
        );
        assert_eq!(
            kinds(&change.create_indexes),
            vec![
                ("a".into(), IndexKind::Order),
                ("b".into(), IndexKind::Order)
            ]
        );
    }
}
