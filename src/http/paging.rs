//! List envelopes and cursor paging (docs/api.md §2.5).
//!
//! A page is a window of ids: forward pages continue after the cursor in the list's order,
//! backward pages come before it. `next`/`prev` links repeat every parameter that shapes the list
//! (never a key), so following them keeps rooms, filters and `last_id`.

use serde_json::{Map, Value, json};

use super::request::Query;
use crate::error::ApiError;
use crate::store::IdPage;

pub const MAX_PAGE_SIZE: i64 = 100;

/// Parameters carried over into `next`/`prev` links, in the SPEC's list.
const LINK_PARAMS: &[&str] = &[
    "page_size",
    "ordering",
    "room",
    "last_id",
    "query",
    "order_by",
    "name__startswith",
    "username__startswith",
    "label__startswith",
    "fields",
    "excluded_fields",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

#[derive(Clone, Copy, Debug)]
pub struct Paging {
    size: i64,
    descending: bool,
    cursor: Option<(Direction, i64)>,
}

fn bad_page() -> ApiError {
    ApiError::BadRequest("Incorrect page parameter provided.".into())
}

impl Paging {
    /// Reads `page_size`, `ordering`, `direction` and `last_pk`.
    pub fn parse(query: &Query, default_descending: bool) -> Result<Paging, ApiError> {
        let size = match query.get("page_size") {
            None => MAX_PAGE_SIZE,
            Some(raw) if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => {
                // Any number of digits above the maximum means the maximum.
                raw.parse::<i64>()
                    .map_or(MAX_PAGE_SIZE, |n| n.min(MAX_PAGE_SIZE))
            }
            Some(_) => return Err(bad_page()),
        };
        let descending = match query
            .get("ordering")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("asc") => false,
            Some("desc") => true,
            _ => default_descending,
        };
        let direction = match query.get("direction") {
            None => None,
            Some("1") => Some(Direction::Forward),
            Some("0") => Some(Direction::Backward),
            Some(_) => return Err(bad_page()),
        };
        let last_pk = match query.get("last_pk") {
            None => None,
            Some(raw) => Some(
                raw.parse::<i64>()
                    .ok()
                    .filter(|pk| *pk >= 0)
                    .ok_or_else(bad_page)?,
            ),
        };
        let cursor = last_pk.map(|pk| (direction.unwrap_or(Direction::Forward), pk));
        Ok(Paging {
            size,
            descending,
            cursor,
        })
    }

    pub fn is_empty_request(&self) -> bool {
        self.size == 0
    }

    /// The store window for this page; `after` adds a lower id bound (history's `last_id`).
    pub fn window(&self, after: Option<i64>) -> IdPage {
        let backward = matches!(self.cursor, Some((Direction::Backward, _)));
        let mut page = IdPage {
            after,
            before: None,
            descending: self.descending != backward,
            limit: self.size,
        };
        if let Some((direction, pk)) = self.cursor {
            // Ascending lists move forward to higher ids, descending ones to lower ids.
            let towards_higher = (direction == Direction::Forward) != self.descending;
            if towards_higher {
                page.after = Some(page.after.map_or(pk, |a| a.max(pk)));
            } else {
                page.before = Some(pk);
            }
        }
        page
    }

    /// Whether a single known row belongs on this page (lists that hold at most one row, such
    /// as an API key's view of its own instance, page without a query).
    pub fn admits(&self, id: i64) -> bool {
        let window = self.window(None);
        self.size > 0
            && window.after.is_none_or(|after| id > after)
            && window.before.is_none_or(|before| id < before)
    }

    /// Builds the envelope from rows fetched with [`Paging::window`]: `(id, object)` pairs.
    pub fn envelope(&self, rows: Vec<(i64, Value)>, path: &str, query: &Query) -> Value {
        let rows = rows.into_iter().map(|(id, v)| (id, None, v)).collect();
        self.keyed_envelope(rows, path, query)
    }

    /// As [`Paging::envelope`], for lists ordered by a value and then the id: each row is
    /// `(id, value, object)`, and links carry the value as `last_value` (omitted when null).
    pub fn keyed_envelope(
        &self,
        mut rows: Vec<(i64, Option<String>, Value)>,
        path: &str,
        query: &Query,
    ) -> Value {
        if self.is_backward() {
            // Fetched nearest-first from the cursor; show them in the list's order.
            rows.reverse();
        }
        let full = self.size > 0 && rows.len() as i64 == self.size;
        let next = match rows.last() {
            Some((id, value, _)) if full || self.is_backward() => {
                Some(self.link(path, query, "1", *id, value.as_deref()))
            }
            _ => None,
        };
        let prev = match self.cursor {
            // An empty page asked for (`page_size=0`, a count) links nowhere (docs/api.md §10.9).
            _ if self.size == 0 => None,
            None => None,
            Some((Direction::Backward, _)) if !full => None,
            Some((_, pk)) => Some(match rows.first() {
                Some((id, value, _)) => self.link(path, query, "0", *id, value.as_deref()),
                // On an empty forward page, step just past the cursor so the previous page
                // still includes the item the cursor pointed at.
                None => {
                    let bound = if self.descending {
                        pk.saturating_sub(1)
                    } else {
                        pk.saturating_add(1)
                    };
                    let value = query.get("last_value");
                    self.link(path, query, "0", bound, value)
                }
            }),
        };
        let objects: Vec<Value> = rows.into_iter().map(|(_, _, object)| object).collect();
        json!({ "objects": objects, "next": next, "prev": prev })
    }

    /// A page size of 0: the list answers an empty page (with a count, when asked).
    pub fn size(&self) -> i64 {
        self.size
    }

    pub fn is_descending(&self) -> bool {
        self.descending
    }

    /// Whether the page is read backward from its cursor (a `prev` link).
    pub fn is_backward(&self) -> bool {
        matches!(self.cursor, Some((Direction::Backward, _)))
    }

    /// The id of the row the page continues from.
    pub fn last_pk(&self) -> Option<i64> {
        self.cursor.map(|(_, pk)| pk)
    }

    fn link(
        &self,
        path: &str,
        query: &Query,
        direction: &str,
        last_pk: i64,
        last_value: Option<&str>,
    ) -> String {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        serializer.append_pair("direction", direction);
        serializer.append_pair("last_pk", &last_pk.to_string());
        if let Some(value) = last_value {
            serializer.append_pair("last_value", value);
        }
        for (name, value) in query.iter() {
            if LINK_PARAMS.contains(&name) {
                serializer.append_pair(name, value);
            }
        }
        format!("{path}?{}", serializer.finish())
    }
}

/// Applies `fields` / `excluded_fields` (GET only) to one object's top-level keys.
pub fn shape(object: Value, query: &Query) -> Value {
    let Value::Object(map) = object else {
        return object;
    };
    let split = |raw: &str| -> Vec<String> {
        raw.split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .take(64)
            .collect()
    };
    let only = query.get("fields").map(split);
    let except = query.get("excluded_fields").map(split).unwrap_or_default();
    if only.is_none() && except.is_empty() {
        return Value::Object(map);
    }
    let kept: Map<String, Value> = map
        .into_iter()
        .filter(|(key, _)| only.as_ref().is_none_or(|only| only.contains(key)))
        .filter(|(key, _)| !except.contains(key))
        .collect();
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paging(q: &str, desc: bool) -> Result<Paging, ApiError> {
        Paging::parse(&Query::parse(Some(q)), desc)
    }

    #[test]
    fn page_size_is_capped_and_validated() {
        assert_eq!(paging("page_size=5", false).unwrap().size, 5);
        assert_eq!(
            paging("page_size=99999999999999999999999", false)
                .unwrap()
                .size,
            100
        );
        assert!(paging("page_size=-1", false).is_err());
        assert!(paging("page_size=abc", false).is_err());
        assert!(paging("direction=2&last_pk=3", false).is_err());
        assert!(paging("last_pk=-3", false).is_err());
    }

    #[test]
    fn windows_follow_order_and_direction() {
        let w = paging("last_pk=10", false).unwrap().window(None);
        assert_eq!((w.after, w.before, w.descending), (Some(10), None, false));
        let w = paging("last_pk=10&direction=0", false)
            .unwrap()
            .window(None);
        assert_eq!((w.after, w.before, w.descending), (None, Some(10), true));
        let w = paging("last_pk=10&ordering=desc", false)
            .unwrap()
            .window(Some(3));
        assert_eq!((w.after, w.before, w.descending), (Some(3), Some(10), true));
        let w = paging("last_pk=10&direction=0", true)
            .unwrap()
            .window(Some(12));
        assert_eq!((w.after, w.before, w.descending), (Some(12), None, false));
    }

    #[test]
    fn links_keep_list_parameters_but_never_keys() {
        let query = Query::parse(Some("room=Lobby&page_size=2&api_key=secret&last_id=4"));
        let page = Paging::parse(&query, true).unwrap();
        let envelope = page.envelope(
            vec![(9, json!({"id": 9})), (8, json!({"id": 8}))],
            "/v1.1/x/",
            &query,
        );
        assert_eq!(
            envelope["next"],
            "/v1.1/x/?direction=1&last_pk=8&room=Lobby&page_size=2&last_id=4"
        );
        assert_eq!(envelope["prev"], Value::Null);
    }
}
