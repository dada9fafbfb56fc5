//! The `query` filter and `order_by` of object lists (docs/api.md §10.3, §10.9).
//!
//! Parsing turns the client's JSON into [`Condition`]s over typed values, so the store only
//! writes SQL for well-formed comparisons of a known type; every message is the SPEC's.

use serde_json::{Map, Value};

use super::schema::{FieldDef, FieldType, Schema};
use super::values::parse_datetime;

/// Most fields one query object may name.
const MAX_FIELDS: usize = 16;
/// Most values of `_in` / `_nin`.
const MAX_VALUES: usize = 128;
/// Longest string compared.
const MAX_STRING: usize = 128;
/// Longest field name, and longest lookup object (as JSON).
const MAX_KEY: usize = 64;
const MAX_LOOKUP_JSON: usize = 8192;

/// Built-in fields that a query may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Id,
    CreatedAt,
    UpdatedAt,
    Revision,
    Owner,
    Group,
    /// By the channel's name.
    Channel,
    ChannelRoom,
}

impl Builtin {
    fn parse(name: &str) -> Option<Builtin> {
        Some(match name {
            "id" => Builtin::Id,
            "created_at" => Builtin::CreatedAt,
            "updated_at" => Builtin::UpdatedAt,
            "revision" => Builtin::Revision,
            "owner" => Builtin::Owner,
            "group" => Builtin::Group,
            "channel" => Builtin::Channel,
            "channel_room" => Builtin::ChannelRoom,
            _ => return None,
        })
    }
}

/// A field of an object, built-in or custom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Builtin(Builtin),
    Custom(FieldDef),
}

/// How a field's values compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Text,
    Bool,
    /// Microseconds since the epoch, given as timestamps.
    Datetime,
    /// Compared only by `_exists`.
    Opaque,
}

impl Field {
    pub fn kind(&self) -> Kind {
        match self {
            Field::Builtin(Builtin::CreatedAt | Builtin::UpdatedAt) => Kind::Datetime,
            Field::Builtin(Builtin::Channel | Builtin::ChannelRoom) => Kind::Text,
            Field::Builtin(_) => Kind::Int,
            Field::Custom(def) => match def.kind {
                FieldType::String => Kind::Text,
                FieldType::Integer | FieldType::Reference => Kind::Int,
                FieldType::Float => Kind::Float,
                FieldType::Boolean => Kind::Bool,
                FieldType::Datetime => Kind::Datetime,
                _ => Kind::Opaque,
            },
        }
    }

    /// A value of this field from its text form (a `last_value` cursor).
    pub fn scalar_from_text(&self, text: &str) -> Option<Scalar> {
        match self.kind() {
            Kind::Int | Kind::Datetime => text.parse().ok().map(Scalar::Int),
            Kind::Float => text
                .parse()
                .ok()
                .filter(|f: &f64| f.is_finite())
                .map(Scalar::Float),
            Kind::Text => Some(Scalar::Text(text.to_owned())),
            Kind::Bool => text.parse().ok().map(Scalar::Bool),
            Kind::Opaque => None,
        }
    }
}

/// A compared value, in the field's stored form.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl Scalar {
    /// The text form a `last_value` cursor carries.
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Text(s) => s.clone(),
            Scalar::Bool(b) => b.to_string(),
        }
    }

    /// Reads a stored JSON value as a scalar of `kind`.
    pub fn from_stored(kind: Kind, value: &Value) -> Option<Scalar> {
        match (kind, value) {
            (Kind::Int | Kind::Datetime, Value::Number(n)) => n.as_i64().map(Scalar::Int),
            (Kind::Float, Value::Number(n)) => n.as_f64().map(Scalar::Float),
            (Kind::Text, Value::String(s)) => Some(Scalar::Text(s.clone())),
            (Kind::Bool, Value::Bool(b)) => Some(Scalar::Bool(*b)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Comparison {
    pub fn sql(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::Neq => "<>",
            Comparison::Gt => ">",
            Comparison::Gte => ">=",
            Comparison::Lt => "<",
            Comparison::Lte => "<=",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Compare(Comparison, Scalar),
    In(Vec<Scalar>),
    NotIn(Vec<Scalar>),
    Exists(bool),
}

/// One condition of a query; a list's conditions are ANDed.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub lookup: Lookup,
}

/// A list's order: the field, ties broken by id in the same direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub field: Field,
    pub descending: bool,
}

impl Order {
    /// Whether the order is by id alone (the default).
    pub fn is_by_id(&self) -> bool {
        self.field == Field::Builtin(Builtin::Id)
    }
}

/// Reads every `query` parameter of a list (they are ANDed).
pub fn parse_queries<'a>(
    raw: impl IntoIterator<Item = &'a str>,
    schema: &Schema,
) -> Result<Vec<Condition>, String> {
    let mut conditions = Vec::new();
    for text in raw {
        let value: Value =
            serde_json::from_str(text).map_err(|_| "Not a valid JSON string.".to_owned())?;
        let Value::Object(fields) = value else {
            return Err("Query passed in invalid format.".into());
        };
        conditions.extend(parse_query(&fields, schema)?);
    }
    Ok(conditions)
}

fn parse_query(fields: &Map<String, Value>, schema: &Schema) -> Result<Vec<Condition>, String> {
    if fields.len() > MAX_FIELDS {
        return Err(format!("Too many keys defined (exceeds {MAX_FIELDS})."));
    }
    let mut conditions = Vec::new();
    for (name, lookups) in fields {
        if name.chars().count() > MAX_KEY {
            return Err(format!("Too long key defined (exceeds {MAX_KEY})."));
        }
        let field = match (Builtin::parse(name), schema.field(name)) {
            (Some(builtin), _) => Field::Builtin(builtin),
            (None, Some(def)) if def.filter_index => Field::Custom(def.clone()),
            (None, Some(_)) => {
                return Err(format!(
                    "Field \"{name}\" cannot be used in a query as it is not indexed."
                ));
            }
            (None, None) => return Err(format!("Invalid field name defined: \"{name}\".")),
        };
        let Value::Object(lookups) = lookups else {
            return Err(format!(
                "Invalid field \"{name}\" lookup type. Expected JSON object."
            ));
        };
        if Value::Object(lookups.clone()).to_string().chars().count() > MAX_LOOKUP_JSON {
            return Err(format!(
                "Too long value defined for key {name} (exceeds {MAX_LOOKUP_JSON})."
            ));
        }
        for (lookup, value) in lookups {
            let lookup = parse_lookup(&field, name, lookup, value)?;
            conditions.push(Condition {
                field: field.clone(),
                lookup,
            });
        }
    }
    Ok(conditions)
}

fn parse_lookup(field: &Field, name: &str, lookup: &str, value: &Value) -> Result<Lookup, String> {
    let bare = lookup.strip_prefix('_').unwrap_or(lookup);
    let bad_value =
        || format!("Invalid value type provided for \"{bare}\" lookup of field \"{name}\".");
    let comparison = match lookup {
        "_eq" => Some(Comparison::Eq),
        "_neq" => Some(Comparison::Neq),
        "_gt" => Some(Comparison::Gt),
        "_gte" => Some(Comparison::Gte),
        "_lt" => Some(Comparison::Lt),
        "_lte" => Some(Comparison::Lte),
        _ => None,
    };
    let kind = field.kind();
    if lookup == "_exists" {
        return match value {
            Value::Bool(b) => Ok(Lookup::Exists(*b)),
            _ => Err(bad_value()),
        };
    }
    let comparable = kind != Kind::Opaque;
    if let (Some(comparison), true) = (comparison, comparable) {
        return scalar(field, value)
            .map(|v| Lookup::Compare(comparison, v))
            .ok_or_else(bad_value);
    }
    if matches!(lookup, "_in" | "_nin") && comparable {
        let Value::Array(items) = value else {
            return Err(bad_value());
        };
        if items.len() > MAX_VALUES {
            return Err(format!(
                "Too many values provided for \"{bare}\" lookup of field \"{name}\". Max \
                 {MAX_VALUES}."
            ));
        }
        let values = items
            .iter()
            .map(|item| scalar(field, item))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad_value)?;
        return Ok(if lookup == "_in" {
            Lookup::In(values)
        } else {
            Lookup::NotIn(values)
        });
    }
    Err(format!(
        "Invalid lookup \"{lookup}\" defined for field \"{name}\"."
    ))
}

/// A compared value of the field's type, in its stored form.
fn scalar(field: &Field, value: &Value) -> Option<Scalar> {
    match (field.kind(), value) {
        (Kind::Int, Value::Number(n)) => {
            let n = n.as_i64()?;
            let is_integer_field =
                matches!(field, Field::Custom(def) if def.kind == FieldType::Integer);
            (!is_integer_field || i32::try_from(n).is_ok()).then_some(Scalar::Int(n))
        }
        (Kind::Float, Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).map(Scalar::Float),
        (Kind::Text, Value::String(s)) if s.chars().count() <= MAX_STRING => {
            Some(Scalar::Text(s.clone()))
        }
        (Kind::Bool, Value::Bool(b)) => Some(Scalar::Bool(*b)),
        (Kind::Datetime, Value::String(s)) => parse_datetime(s).map(Scalar::Int),
        _ => None,
    }
}

/// Reads `order_by` (`field` or `-field`). `None` when absent.
pub fn parse_order_by(raw: Option<&str>, schema: &Schema) -> Result<Option<Order>, String> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let (name, descending) = match raw.strip_prefix('-') {
        Some(name) => (name, true),
        None => (raw, false),
    };
    let field = match (Builtin::parse(name), schema.field(name)) {
        (Some(b @ (Builtin::Id | Builtin::CreatedAt | Builtin::UpdatedAt)), _) => Field::Builtin(b),
        (Some(_), _) => return Err("Cannot use specified order_by field.".into()),
        (None, Some(def)) if def.order_index => Field::Custom(def.clone()),
        (None, Some(_)) => {
            return Err(
                "Cannot use specified order_by field. Set required index on schema first.".into(),
            );
        }
        (None, None) => return Err("Incorrect order_by parameter provided.".into()),
    };
    Ok(Some(Order { field, descending }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(
            &json!([
                {"name": "title", "type": "string", "filter_index": true},
                {"name": "reward", "type": "integer", "order_index": true, "filter_index": true},
                {"name": "notes", "type": "text"},
                {"name": "plain", "type": "integer"}
            ]),
            &|_| true,
        )
        .unwrap()
    }

    fn error(query: &str) -> String {
        parse_queries([query], &schema()).unwrap_err()
    }

    #[test]
    fn the_spec_example_parses() {
        let conditions = parse_queries(
            [r#"{"reward":{"_gte":100},"title":{"_in":["Griffin","Leshen"]}}"#],
            &schema(),
        )
        .unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(
            conditions[0].lookup,
            Lookup::Compare(Comparison::Gte, Scalar::Int(100))
        );
    }

    #[test]
    fn errors_use_the_spec_messages() {
        assert_eq!(error("nope"), "Not a valid JSON string.");
        assert_eq!(error("[1]"), "Query passed in invalid format.");
        assert_eq!(
            error(r#"{"x":{"_eq":1}}"#),
            "Invalid field name defined: \"x\"."
        );
        assert_eq!(
            error(r#"{"plain":{"_eq":1}}"#),
            "Field \"plain\" cannot be used in a query as it is not indexed."
        );
        assert_eq!(
            error(r#"{"reward":5}"#),
            "Invalid field \"reward\" lookup type. Expected JSON object."
        );
        assert_eq!(
            error(r#"{"reward":{"_equal":5}}"#),
            "Invalid lookup \"_equal\" defined for field \"reward\"."
        );
        assert_eq!(
            error(r#"{"reward":{"_gt":"a"}}"#),
            "Invalid value type provided for \"gt\" lookup of field \"reward\"."
        );
        let many: Vec<i32> = (0..129).collect();
        assert_eq!(
            error(&json!({"reward": {"_in": many}}).to_string()),
            "Too many values provided for \"in\" lookup of field \"reward\". Max 128."
        );
        assert_eq!(
            error(&json!({"title": {"_eq": "x".repeat(129)}}).to_string()),
            "Invalid value type provided for \"eq\" lookup of field \"title\"."
        );
        assert_eq!(
            error(&json!({"created_at": {"_gt": "not a date"}}).to_string()),
            "Invalid value type provided for \"gt\" lookup of field \"created_at\"."
        );
    }

    #[test]
    fn order_by_checks_indexes() {
        let s = schema();
        assert!(
            parse_order_by(Some("-reward"), &s)
                .unwrap()
                .unwrap()
                .descending
        );
        assert_eq!(
            parse_order_by(Some("revision"), &s).unwrap_err(),
            "Cannot use specified order_by field."
        );
        assert_eq!(
            parse_order_by(Some("title"), &s).unwrap_err(),
            "Cannot use specified order_by field. Set required index on schema first."
        );
        assert_eq!(
            parse_order_by(Some("nope"), &s).unwrap_err(),
            "Incorrect order_by parameter provided."
        );
    }
}
