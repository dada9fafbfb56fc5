//! Field coercions shared by every resource (docs/api.md §2.2): strings trimmed, Syncano's boolean
//! spellings, integers from strings, JSON-typed fields given as strings, numeric choice codes.
//!
//! Each reader returns `Ok(None)` when the field is absent and `Err(message)` with the SPEC's exact
//! message when the value cannot be used; callers collect the messages in `FieldErrors`.

use serde_json::Value;

use super::request::Fields;

pub const NOT_NULL: &str = "This field may not be null.";
pub const REQUIRED: &str = "This field is required.";

fn raw_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string field: trimmed, at most `max` characters; `blank_ok` allows `""`.
pub fn string(
    fields: &Fields,
    name: &str,
    max: usize,
    blank_ok: bool,
) -> Result<Option<String>, String> {
    let text = match fields.get(name) {
        None => return Ok(None),
        Some(Value::Null) => return Err(NOT_NULL.into()),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("Not a valid string.".into()),
    };
    if text.is_empty() && !blank_ok {
        return Err("This field may not be blank.".into());
    }
    if text.chars().count() > max {
        return Err(format!(
            "Ensure this field has no more than {max} characters."
        ));
    }
    Ok(Some(text))
}

/// A required string field (create, or PUT where the resource requires it).
pub fn required_string(fields: &Fields, name: &str, max: usize) -> Result<String, String> {
    string(fields, name, max, false)?.ok_or_else(|| REQUIRED.into())
}

/// A boolean in any of Syncano's spellings.
pub fn boolean(fields: &Fields, name: &str) -> Result<Option<bool>, String> {
    let value = match fields.get(name) {
        None => return Ok(None),
        Some(Value::Null) => return Err(NOT_NULL.into()),
        Some(Value::Bool(b)) => return Ok(Some(*b)),
        Some(other) => other,
    };
    let text = raw_text(value);
    match text.trim() {
        "true" | "True" | "TRUE" | "t" | "T" | "yes" | "y" | "on" | "1" => Ok(Some(true)),
        "false" | "False" | "FALSE" | "f" | "F" | "no" | "n" | "off" | "0" => Ok(Some(false)),
        _ => Err(format!("\"{text}\" is not a valid boolean.")),
    }
}

/// A choice field: the name or Syncano's numeric code, parsed by `parse`.
pub fn choice<T>(
    fields: &Fields,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, String> {
    let text = match fields.get(name) {
        None => return Ok(None),
        Some(Value::Null) => return Err(NOT_NULL.into()),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(other) => other.to_string(),
    };
    parse(&text)
        .map(Some)
        .ok_or_else(|| format!("\"{text}\" is not a valid choice."))
}

/// An integer given as a JSON number without fraction or as a decimal string; null and `""`
/// count as absent.
pub fn integer(fields: &Fields, name: &str) -> Result<Option<i64>, String> {
    const INVALID: &str = "A valid integer is required.";
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| INVALID.into()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| INVALID.into()),
        Some(_) => Err(INVALID.into()),
    }
}

/// A reference to another object by id: `Some(None)` for an explicit null.
pub fn primary_key(fields: &Fields, name: &str) -> Result<Option<Option<i64>>, String> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|id| Some(Some(id)))
            .ok_or_else(|| "Incorrect type. Expected pk value, received float.".into()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(None)),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(|id| Some(Some(id)))
            .map_err(|_| "Incorrect type. Expected pk value, received str.".into()),
        Some(Value::Bool(_)) => Err("Incorrect type. Expected pk value, received bool.".into()),
        Some(Value::Array(_)) => Err("Incorrect type. Expected pk value, received list.".into()),
        Some(Value::Object(_)) => Err("Incorrect type. Expected pk value, received dict.".into()),
    }
}

/// A JSON-typed field: a JSON value, or a string holding JSON (§2.2). `null` stays `null`.
pub fn json(fields: &Fields, name: &str) -> Result<Option<Value>, String> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => {
            if s.trim().is_empty() {
                return Ok(Some(Value::Null));
            }
            serde_json::from_str(s)
                .map(Some)
                .map_err(|_| "Not a valid JSON string.".into())
        }
        Some(other) => Ok(Some(other.clone())),
    }
}

/// Limits of a `metadata` object (docs/api.md §2.7).
const METADATA_MAX_KEYS: usize = 8;
const METADATA_MAX_KEY_CHARS: usize = 16;
const METADATA_MAX_VALUE_CHARS: usize = 4096;

/// A `metadata` field: a JSON object (or a string holding one) within the SPEC's limits.
pub fn metadata(fields: &Fields, name: &str) -> Result<Option<Value>, String> {
    let value = match json(fields, name)? {
        None => return Ok(None),
        Some(Value::Null) => return Err(NOT_NULL.into()),
        Some(value) => value,
    };
    let Value::Object(map) = &value else {
        return Err("Metadata passed in invalid format.".into());
    };
    if map.len() > METADATA_MAX_KEYS {
        return Err(format!(
            "Too many keys defined (exceeds {METADATA_MAX_KEYS})."
        ));
    }
    for (key, item) in map {
        if key.chars().count() > METADATA_MAX_KEY_CHARS {
            return Err(format!(
                "Too long key defined (exceeds {METADATA_MAX_KEY_CHARS})."
            ));
        }
        if item.to_string().chars().count() > METADATA_MAX_VALUE_CHARS {
            return Err(format!(
                "Too long value defined for key {key} (exceeds {METADATA_MAX_VALUE_CHARS})."
            ));
        }
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Fields {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("tests pass objects"),
        }
    }

    #[test]
    fn booleans_accept_every_syncano_spelling() {
        for yes in ["true", "True", "TRUE", "t", "T", "yes", "y", "on", "1"] {
            assert_eq!(boolean(&fields(json!({"b": yes})), "b"), Ok(Some(true)));
        }
        for no in ["false", "False", "FALSE", "f", "F", "no", "n", "off", "0"] {
            assert_eq!(boolean(&fields(json!({"b": no})), "b"), Ok(Some(false)));
        }
        assert_eq!(boolean(&fields(json!({"b": 1})), "b"), Ok(Some(true)));
        assert_eq!(
            boolean(&fields(json!({"b": "maybe"})), "b"),
            Err("\"maybe\" is not a valid boolean.".into())
        );
        assert_eq!(boolean(&fields(json!({})), "b"), Ok(None));
    }

    #[test]
    fn strings_are_trimmed_and_bounded() {
        let f = fields(json!({"s": "  hi  ", "n": 12, "o": {}, "long": "x".repeat(300)}));
        assert_eq!(string(&f, "s", 10, false), Ok(Some("hi".into())));
        assert_eq!(string(&f, "n", 10, false), Ok(Some("12".into())));
        assert_eq!(
            string(&f, "o", 10, false),
            Err("Not a valid string.".into())
        );
        assert_eq!(
            string(&f, "long", 256, true),
            Err("Ensure this field has no more than 256 characters.".into())
        );
    }

    #[test]
    fn json_fields_accept_strings_holding_json() {
        let f = fields(json!({"a": "{\"x\":1}", "b": "{nope", "c": {"y": 2}}));
        assert_eq!(json(&f, "a"), Ok(Some(json!({"x": 1}))));
        assert_eq!(json(&f, "b"), Err("Not a valid JSON string.".into()));
        assert_eq!(json(&f, "c"), Ok(Some(json!({"y": 2}))));
    }

    #[test]
    fn metadata_limits_are_enforced() {
        let many: serde_json::Map<String, Value> =
            (0..9).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(
            metadata(&fields(json!({"m": many})), "m"),
            Err("Too many keys defined (exceeds 8).".into())
        );
        assert_eq!(
            metadata(&fields(json!({"m": {"k".repeat(17): 1}})), "m"),
            Err("Too long key defined (exceeds 16).".into())
        );
        assert_eq!(
            metadata(&fields(json!({"m": {"k": "v".repeat(4095)}})), "m"),
            Err("Too long value defined for key k (exceeds 4096).".into())
        );
        assert_eq!(
            metadata(&fields(json!({"m": [1]})), "m"),
            Err("Metadata passed in invalid format.".into())
        );
    }

    #[test]
    fn primary_keys_accept_numbers_and_digit_strings() {
        let f = fields(json!({"a": 3, "b": "4", "c": null, "d": "abc"}));
        assert_eq!(primary_key(&f, "a"), Ok(Some(Some(3))));
        assert_eq!(primary_key(&f, "b"), Ok(Some(Some(4))));
        assert_eq!(primary_key(&f, "c"), Ok(Some(None)));
        assert_eq!(
            primary_key(&f, "d"),
            Err("Incorrect type. Expected pk value, received str.".into())
        );
    }
}
