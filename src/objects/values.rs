//! Custom field values: what clients may send, how values are stored, how they are shown
//! (docs/api.md §10.3, §10.5, §10.7, §10.9).
//!
//! Stored forms are plain JSON chosen so that the database can compare and index them: strings,
//! integers, floats and booleans as themselves, a datetime as microseconds since the epoch, a
//! reference as the target's id, an object as itself. A field that is null is not stored at all.
//! Every input form is also accepted as a string holding it (form and multipart bodies carry
//! only strings), and the output forms are accepted as input.

use serde_json::{Map, Value, json};

use super::schema::{FieldDef, FieldType};
use crate::model;

const STRING_MAX: usize = 128;
const TEXT_MAX: usize = 32_000;
/// Most ids a relation holds (docs/api.md §2.7).
pub const RELATION_MAX: usize = 1000;

const NOT_INTEGER: &str = "A valid integer is required.";
const NOT_NUMBER: &str = "A valid number is required.";
const NOT_BOOLEAN: &str = "Not a valid boolean.";
const NOT_STRING: &str = "Not a valid string.";
const NOT_OBJECT: &str = "Not a valid object.";
const NOT_ARRAY: &str = "Not a valid array.";
const NOT_GEOPOINT: &str = "Not a valid geopoint.";
const NOT_RELATION: &str = "Not a valid relation.";
const NOT_FILE: &str = "The submitted data was not a file. Check the encoding type on the form.";
const BAD_DATETIME: &str = "Datetime has wrong format. Use one of these formats instead: \
                            YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].";

/// An amount to add with `_increment`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    Int(i64),
    Float(f64),
}

/// What a write does to one custom field.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldChange {
    /// Sets the stored value; `None` clears the field.
    Set(Option<Value>),
    /// Adds to the value stored when the write runs (null counts as 0).
    Increment(Step),
}

/// Reads a client's value for `field`. Operations are accepted on updates only.
pub fn parse(field: &FieldDef, raw: &Value, update: bool) -> Result<FieldChange, String> {
    if raw.is_null() {
        return Ok(FieldChange::Set(None));
    }
    match field.kind {
        FieldType::String => text(raw, STRING_MAX),
        FieldType::Text => text(raw, TEXT_MAX),
        FieldType::Integer | FieldType::Float => number(field.kind, raw, update),
        kind => structured(kind, raw),
    }
}

/// The types whose values are not plain strings or numbers.
fn structured(kind: FieldType, raw: &Value) -> Result<FieldChange, String> {
    let raw = match raw {
        // A string holds the value itself or, for JSON-shaped types, its JSON.
        Value::String(s) if s.trim().is_empty() => return Ok(FieldChange::Set(None)),
        // An `object` field is a JSON-typed field of §2.2; the other JSON-shaped types answer
        // their own invalid message (§10.5).
        Value::String(s) if kind == FieldType::Object => {
            serde_json::from_str(s).map_err(|_| "Not a valid JSON string.".to_owned())?
        }
        Value::String(s) if json_shaped(kind) => {
            serde_json::from_str(s).map_err(|_| invalid(kind).to_owned())?
        }
        other => other.clone(),
    };
    if raw.is_null() {
        return Ok(FieldChange::Set(None));
    }
    let stored = match kind {
        FieldType::Boolean => boolean(&raw)?,
        FieldType::Datetime => datetime(&raw)?,
        FieldType::Object if raw.is_object() => raw,
        FieldType::Reference => reference(&raw)?,
        FieldType::Array => array(&raw)?,
        FieldType::Geopoint => geopoint(&raw)?,
        FieldType::Relation => return relation(&raw).map(FieldChange::Set),
        other => return Err(invalid(other).into()),
    };
    Ok(FieldChange::Set(Some(stored).filter(|v| !v.is_null())))
}

/// Types whose input may be JSON inside a string.
fn json_shaped(kind: FieldType) -> bool {
    matches!(
        kind,
        FieldType::Object
            | FieldType::Array
            | FieldType::Geopoint
            | FieldType::Relation
            | FieldType::File
    )
}

/// The message for a value of the wrong shape.
fn invalid(kind: FieldType) -> &'static str {
    match kind {
        FieldType::String | FieldType::Text => NOT_STRING,
        FieldType::Integer | FieldType::Reference => NOT_INTEGER,
        FieldType::Float => NOT_NUMBER,
        FieldType::Boolean => NOT_BOOLEAN,
        FieldType::Datetime => BAD_DATETIME,
        FieldType::Object => NOT_OBJECT,
        FieldType::Array => NOT_ARRAY,
        FieldType::Geopoint => NOT_GEOPOINT,
        FieldType::Relation => NOT_RELATION,
        FieldType::File => NOT_FILE,
    }
}

/// Strings and texts are kept exactly as sent: not trimmed (docs/api.md §10.9).
fn text(raw: &Value, max: usize) -> Result<FieldChange, String> {
    let text = match raw {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(NOT_STRING.into()),
    };
    if text.chars().count() > max {
        return Err(format!(
            "Ensure this field has no more than {max} characters."
        ));
    }
    Ok(FieldChange::Set(Some(Value::String(text))))
}

fn number(kind: FieldType, raw: &Value, update: bool) -> Result<FieldChange, String> {
    let invalid = invalid(kind);
    let value = match raw {
        Value::String(s) if s.trim().is_empty() => return Ok(FieldChange::Set(None)),
        Value::String(s) if s.trim_start().starts_with('{') => {
            serde_json::from_str(s).map_err(|_| invalid.to_owned())?
        }
        Value::String(s) => {
            let s = s.trim();
            return match kind {
                FieldType::Integer => {
                    let n: i64 = s.parse().map_err(|_| invalid.to_owned())?;
                    int_in_range(n).map(|n| FieldChange::Set(Some(json!(n))))
                }
                _ => {
                    let n: f64 = s.parse().map_err(|_| invalid.to_owned())?;
                    finite(n).map(|n| FieldChange::Set(Some(json!(n))))
                }
            };
        }
        other => other.clone(),
    };
    match value {
        Value::Object(op) => {
            if !update || op.len() != 1 {
                return Err(invalid.into());
            }
            let step = op.get("_increment").ok_or_else(|| invalid.to_owned())?;
            let step = match (kind, step) {
                (FieldType::Integer, Value::Number(n)) => {
                    Step::Int(n.as_i64().ok_or_else(|| invalid.to_owned())?)
                }
                (FieldType::Float, Value::Number(n)) => {
                    Step::Float(n.as_f64().ok_or_else(|| invalid.to_owned())?)
                }
                _ => return Err(invalid.into()),
            };
            Ok(FieldChange::Increment(step))
        }
        Value::Number(n) if kind == FieldType::Integer => {
            let n = match (n.as_i64(), n.as_f64()) {
                (Some(n), _) => n,
                // 3.0 is an integer; 3.5 is not.
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e18 => f as i64,
                _ => return Err(invalid.into()),
            };
            int_in_range(n).map(|n| FieldChange::Set(Some(json!(n))))
        }
        Value::Number(n) => {
            let f = n.as_f64().ok_or_else(|| invalid.to_owned())?;
            finite(f).map(|f| FieldChange::Set(Some(json!(f))))
        }
        _ => Err(invalid.into()),
    }
}

fn int_in_range(n: i64) -> Result<i64, String> {
    if n > i64::from(i32::MAX) {
        Err(format!(
            "Ensure this value is less than or equal to {}.",
            i32::MAX
        ))
    } else if n < i64::from(i32::MIN) {
        Err(format!(
            "Ensure this value is greater than or equal to {}.",
            i32::MIN
        ))
    } else {
        Ok(n)
    }
}

fn finite(f: f64) -> Result<f64, String> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(NOT_NUMBER.into())
    }
}

fn boolean(raw: &Value) -> Result<Value, String> {
    let text = match raw {
        Value::Bool(b) => return Ok(json!(b)),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        _ => return Err(NOT_BOOLEAN.into()),
    };
    match text.as_str() {
        "true" | "True" | "TRUE" | "t" | "T" | "yes" | "y" | "on" | "1" => Ok(json!(true)),
        "false" | "False" | "FALSE" | "f" | "F" | "no" | "n" | "off" | "0" => Ok(json!(false)),
        _ => Err(NOT_BOOLEAN.into()),
    }
}

/// A datetime's stored form: microseconds since the epoch, UTC.
pub fn parse_datetime(text: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    let text = text.trim();
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339)
        // Without an offset the time is UTC.
        .or_else(|_| time::OffsetDateTime::parse(&format!("{text}Z"), &Rfc3339))
        .ok()?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1000).ok()
}

fn datetime(raw: &Value) -> Result<Value, String> {
    let text = match raw {
        Value::String(s) => s.as_str(),
        Value::Object(form) => match form.get("value") {
            Some(Value::String(s)) => s.as_str(),
            Some(Value::Null) => return Ok(Value::Null),
            _ => return Err(BAD_DATETIME.into()),
        },
        _ => return Err(BAD_DATETIME.into()),
    };
    parse_datetime(text)
        .map(|micros| json!(micros))
        .ok_or_else(|| BAD_DATETIME.into())
}

/// An id given bare, as digits, or in the output form `{"type": ..., "value": id}`.
fn id(raw: &Value) -> Option<i64> {
    match raw {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(form) => form.get("value").and_then(id),
        _ => None,
    }
    .filter(|id| *id > 0)
}

fn reference(raw: &Value) -> Result<Value, String> {
    if let Value::Object(form) = raw
        && form.get("value").is_some_and(Value::is_null)
    {
        return Ok(Value::Null);
    }
    id(raw)
        .map(|id| json!(id))
        .ok_or_else(|| NOT_INTEGER.into())
}

fn array(raw: &Value) -> Result<Value, String> {
    let Value::Array(items) = raw else {
        return Err(NOT_ARRAY.into());
    };
    for item in items {
        match item {
            Value::String(_) | Value::Bool(_) => {}
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                if n.as_i64().is_none() {
                    return Err(NOT_ARRAY.into());
                }
            }
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => {}
            Value::Number(_) => return Err(NOT_ARRAY.into()),
            _ => {
                return Err(
                    "Array can only contain strings, booleans, integers and floats.".into(),
                );
            }
        }
    }
    Ok(raw.clone())
}

fn geopoint(raw: &Value) -> Result<Value, String> {
    let Value::Object(point) = raw else {
        return Err(NOT_GEOPOINT.into());
    };
    let coordinate = |key: &str, limit: f64| {
        point
            .get(key)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite() && v.abs() <= limit)
    };
    match (coordinate("latitude", 90.0), coordinate("longitude", 180.0)) {
        (Some(latitude), Some(longitude)) => {
            Ok(json!({"latitude": latitude, "longitude": longitude}))
        }
        _ => Err(NOT_GEOPOINT.into()),
    }
}

/// A relation's ids, ascending and without duplicates; an empty relation is null. Ids of
/// missing targets are dropped by the store, which can see them.
fn relation(raw: &Value) -> Result<Option<Value>, String> {
    let items = match raw {
        Value::Array(items) => items,
        Value::Object(form) => match form.get("value") {
            Some(Value::Array(items)) => items,
            Some(Value::Null) => return Ok(None),
            _ => return Err(NOT_RELATION.into()),
        },
        _ => return Err(NOT_RELATION.into()),
    };
    if items.len() > RELATION_MAX {
        return Err(format!("Relation length limit exceeded ({RELATION_MAX})."));
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Number(n) if n.is_i64() => ids.push(n.as_i64().unwrap_or_default()),
            _ => return Err("Relation can only contain integers (object ids).".into()),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok((!ids.is_empty()).then(|| json!(ids)))
}

/// The value a write leaves in the field, given the value stored when it runs.
pub fn apply(
    field: &FieldDef,
    current: Option<&Value>,
    change: &FieldChange,
) -> Result<Option<Value>, String> {
    match change {
        FieldChange::Set(value) => Ok(value.clone()),
        FieldChange::Increment(Step::Int(step)) => {
            let now = current.and_then(Value::as_i64).unwrap_or(0);
            let sum = now
                .checked_add(*step)
                .ok_or_else(|| NOT_INTEGER.to_owned())?;
            int_in_range(sum).map(|n| Some(json!(n)))
        }
        FieldChange::Increment(Step::Float(step)) => {
            debug_assert_eq!(field.kind, FieldType::Float);
            let now = current.and_then(Value::as_f64).unwrap_or(0.0);
            finite(now + step).map(|f| Some(json!(f)))
        }
    }
}

/// The value as the API shows it (docs/api.md §10.3, §10.5).
pub fn output(field: &FieldDef, stored: Option<&Value>) -> Value {
    let Some(stored) = stored.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match field.kind {
        FieldType::Datetime => json!({
            "type": "datetime",
            "value": model::format_timestamp(stored.as_i64().unwrap_or_default()),
        }),
        FieldType::Reference => json!({
            "type": "reference",
            "target": field.target,
            "value": stored,
        }),
        FieldType::Relation => json!({
            "type": "relation",
            "target": field.target,
            "value": stored,
        }),
        FieldType::Geopoint => json!({
            "type": "geopoint",
            "longitude": stored.get("longitude"),
            "latitude": stored.get("latitude"),
        }),
        _ => stored.clone(),
    }
}

/// The length that counts toward the object size limit (docs/api.md §10.3, §10.5).
pub fn stored_size(data: &Map<String, Value>) -> usize {
    data.values().map(|v| v.to_string().chars().count()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: FieldType) -> FieldDef {
        FieldDef {
            name: "f".into(),
            kind,
            target: matches!(kind, FieldType::Reference | FieldType::Relation)
                .then(|| "self".into()),
            filter_index: false,
            order_index: false,
        }
    }

    fn set(kind: FieldType, raw: Value) -> Result<Option<Value>, String> {
        match parse(&field(kind), &raw, false)? {
            FieldChange::Set(value) => Ok(value),
            other => panic!("not a set: {other:?}"),
        }
    }

    #[test]
    fn strings_are_kept_as_sent_and_bounded() {
        assert_eq!(
            set(FieldType::String, json!("  a ")),
            Ok(Some(json!("  a ")))
        );
        assert_eq!(
            set(FieldType::String, json!("x".repeat(129))),
            Err("Ensure this field has no more than 128 characters.".into())
        );
        assert_eq!(
            set(FieldType::Text, json!("x".repeat(32_001))),
            Err("Ensure this field has no more than 32000 characters.".into())
        );
        assert_eq!(set(FieldType::String, json!(true)), Err(NOT_STRING.into()));
    }

    #[test]
    fn integers_are_32_bit_and_accept_digit_strings() {
        assert_eq!(set(FieldType::Integer, json!("12")), Ok(Some(json!(12))));
        assert_eq!(set(FieldType::Integer, json!(3.0)), Ok(Some(json!(3))));
        assert_eq!(set(FieldType::Integer, json!(3.5)), Err(NOT_INTEGER.into()));
        assert_eq!(
            set(FieldType::Integer, json!(2_147_483_648_i64)),
            Err("Ensure this value is less than or equal to 2147483647.".into())
        );
        assert_eq!(set(FieldType::Integer, json!("")), Ok(None));
    }

    #[test]
    fn floats_are_finite() {
        assert_eq!(set(FieldType::Float, json!(2)), Ok(Some(json!(2.0))));
        assert_eq!(set(FieldType::Float, json!("NaN")), Err(NOT_NUMBER.into()));
        assert_eq!(
            set(FieldType::Float, json!("1e400")),
            Err(NOT_NUMBER.into())
        );
    }

    #[test]
    fn increments_only_on_update_and_alone() {
        let f = field(FieldType::Integer);
        assert_eq!(
            parse(&f, &json!({"_increment": 5}), true),
            Ok(FieldChange::Increment(Step::Int(5)))
        );
        assert_eq!(
            parse(&f, &json!("{\"_increment\": -2}"), true),
            Ok(FieldChange::Increment(Step::Int(-2)))
        );
        assert_eq!(
            parse(&f, &json!({"_increment": 5}), false),
            Err(NOT_INTEGER.into())
        );
        assert_eq!(
            parse(&f, &json!({"_increment": 5, "_add": 1}), true),
            Err(NOT_INTEGER.into())
        );
        assert_eq!(
            parse(&f, &json!({"_increment": 1.5}), true),
            Err(NOT_INTEGER.into())
        );
        let step = FieldChange::Increment(Step::Int(1));
        assert_eq!(apply(&f, None, &step), Ok(Some(json!(1))));
        assert_eq!(
            apply(&f, Some(&json!(2_147_483_647)), &step),
            Err("Ensure this value is less than or equal to 2147483647.".into())
        );
    }

    #[test]
    fn datetimes_are_stored_as_microseconds_and_shown_wrapped() {
        let stored = set(FieldType::Datetime, json!("2016-03-17T20:13:46.695378Z"))
            .unwrap()
            .unwrap();
        assert_eq!(stored, json!(1_458_245_626_695_378_i64));
        assert_eq!(
            output(&field(FieldType::Datetime), Some(&stored)),
            json!({"type": "datetime", "value": "2016-03-17T20:13:46.695378Z"})
        );
        assert_eq!(
            set(
                FieldType::Datetime,
                json!({"type": "datetime", "value": "2016-03-17T21:13:46.695378+01:00"})
            ),
            Ok(Some(stored))
        );
        assert_eq!(
            set(FieldType::Datetime, json!("yesterday")),
            Err(BAD_DATETIME.into())
        );
    }

    #[test]
    fn references_accept_the_output_form() {
        assert_eq!(
            set(
                FieldType::Reference,
                json!({"type": "reference", "target": "self", "value": 12})
            ),
            Ok(Some(json!(12)))
        );
        assert_eq!(set(FieldType::Reference, json!("12")), Ok(Some(json!(12))));
        assert_eq!(
            set(FieldType::Reference, json!("x")),
            Err(NOT_INTEGER.into())
        );
        assert_eq!(
            output(&field(FieldType::Reference), Some(&json!(12))),
            json!({"type": "reference", "target": "self", "value": 12})
        );
    }

    #[test]
    fn booleans_and_objects() {
        assert_eq!(set(FieldType::Boolean, json!("yes")), Ok(Some(json!(true))));
        assert_eq!(
            set(FieldType::Boolean, json!("maybe")),
            Err(NOT_BOOLEAN.into())
        );
        assert_eq!(
            set(FieldType::Object, json!("{\"a\":1}")),
            Ok(Some(json!({"a": 1})))
        );
        assert_eq!(set(FieldType::Object, json!([1])), Err(NOT_OBJECT.into()));
    }

    #[test]
    fn relations_are_sorted_and_deduplicated() {
        assert_eq!(
            set(FieldType::Relation, json!([3, 1, 3])),
            Ok(Some(json!([1, 3])))
        );
        assert_eq!(set(FieldType::Relation, json!([])), Ok(None));
        assert_eq!(
            set(FieldType::Relation, json!([1, "2"])),
            Err("Relation can only contain integers (object ids).".into())
        );
    }
}
