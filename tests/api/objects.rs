//! Data objects (docs/api.md §10.3, §10.9): CRUD, values, permissions, lists, queries.
//!
//! The fixture at the top ([`World`], [`Who`], the representation helpers) is shared with
//! `classes.rs`.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};

// ================================================================ fixture

pub(crate) const FORBIDDEN: &str = "You do not have permission to perform this action.";
const NO_CHANNEL_PUBLISH: &str = "You do not have permission to publish data to specified channel.";
const PASSWORD: &str = "roach-and-silver";

pub(crate) fn forbidden() -> Value {
    json!({"detail": FORBIDDEN})
}

pub(crate) fn not_found() -> Value {
    json!({"detail": "Not found."})
}

fn class_not_found() -> Value {
    json!({"detail": "Class was not found."})
}

fn no_channel_publish() -> Value {
    json!({"detail": NO_CHANNEL_PUBLISH})
}

pub(crate) const CLASSES: &str = "/v1.1/instances/rivia/classes/";

pub(crate) fn class_path(name: &str) -> String {
    format!("{CLASSES}{name}/")
}

pub(crate) fn objects_path(class: &str) -> String {
    format!("{CLASSES}{class}/objects/")
}

pub(crate) fn object_path(class: &str, id: i64) -> String {
    format!("{CLASSES}{class}/objects/{id}/")
}

fn user_link(id: i64) -> String {
    format!("/v1.1/instances/rivia/users/{id}/")
}

/// `path` with the query parameters, encoded as a browser would.
pub(crate) fn url(path: &str, params: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    format!("{path}?{}", serializer.finish())
}

/// Who sends a request: one caller class of docs/api.md §3.4 each.
#[derive(Clone, Debug)]
pub(crate) enum Who {
    /// The instance owner's account key.
    Owner,
    /// An API key alone (trusted, anonymous reader or bare, by its flags).
    Key(String),
    /// An API key without flags plus the user's key.
    User {
        id: i64,
        /// The id of the user's profile (an object of `user_profile`).
        profile: i64,
        api_key: String,
        user_key: String,
    },
}

impl Who {
    pub(crate) fn id(&self) -> i64 {
        match self {
            Who::User { id, .. } => *id,
            other => panic!("not a user: {other:?}"),
        }
    }

    pub(crate) fn profile(&self) -> i64 {
        match self {
            Who::User { profile, .. } => *profile,
            other => panic!("not a user: {other:?}"),
        }
    }
}

/// A server with instance `rivia` and one key per caller class.
pub(crate) struct World {
    pub app: TestApp,
    pub owner: Who,
    /// `ignore_acl: true`
    pub trusted: Who,
    /// `allow_anonymous_read: true`
    pub reader: Who,
    /// no flags, no user key
    pub bare: Who,
    /// The key users send with their user key (no flags).
    users_key: String,
}

impl World {
    pub(crate) async fn new() -> World {
        World::on(TestApp::spawn().await).await
    }

    pub(crate) async fn on(app: TestApp) -> World {
        app.create_instance("rivia").await;
        let trusted = app
            .create_api_key("rivia", json!({"ignore_acl": true}))
            .await;
        let reader = app
            .create_api_key("rivia", json!({"allow_anonymous_read": true}))
            .await;
        let bare = app.create_api_key("rivia", json!({})).await;
        let users_key = app.create_api_key("rivia", json!({})).await;
        World {
            app,
            owner: Who::Owner,
            trusted: Who::Key(trusted),
            reader: Who::Key(reader),
            bare: Who::Key(bare),
            users_key,
        }
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        who: &Who,
        body: Option<Value>,
    ) -> Resp {
        let builder = match who {
            Who::Owner => self.app.request(method, path, Some(&self.app.admin_key)),
            Who::Key(key) => self.app.request(method, path, Some(key)),
            Who::User {
                api_key, user_key, ..
            } => self
                .app
                .request(method, path, Some(api_key))
                .header("X-USER-KEY", user_key),
        };
        let builder = match body {
            Some(body) => builder.json(&body),
            None => builder,
        };
        self.app.send(builder).await
    }

    pub(crate) async fn get(&self, path: &str, who: &Who) -> Resp {
        self.send(Method::GET, path, who, None).await
    }

    pub(crate) async fn post(&self, path: &str, who: &Who, body: Value) -> Resp {
        self.send(Method::POST, path, who, Some(body)).await
    }

    pub(crate) async fn patch(&self, path: &str, who: &Who, body: Value) -> Resp {
        self.send(Method::PATCH, path, who, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, who: &Who, body: Value) -> Resp {
        self.send(Method::PUT, path, who, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str, who: &Who) -> Resp {
        self.send(Method::DELETE, path, who, None).await
    }

    /// A user of `rivia`, created by the owner.
    pub(crate) async fn user(&self, username: &str) -> Who {
        let resp = self
            .app
            .post(
                "/v1.1/instances/rivia/users/",
                Some(&self.app.admin_key),
                json!({"username": username, "password": PASSWORD}),
            )
            .await;
        let body = resp.assert_status(201);
        Who::User {
            id: id(body),
            profile: id(&body["profile"]),
            api_key: self.users_key.clone(),
            user_key: body["user_key"].as_str().expect("user_key").to_owned(),
        }
    }

    /// A group of `rivia`; returns its id.
    pub(crate) async fn group(&self, name: &str) -> i64 {
        let resp = self
            .app
            .post(
                "/v1.1/instances/rivia/groups/",
                Some(&self.app.admin_key),
                json!({"name": name, "label": name}),
            )
            .await;
        id(resp.assert_status(201))
    }

    pub(crate) async fn join(&self, user: &Who, group: i64) {
        self.app
            .post(
                &format!("/v1.1/instances/rivia/users/{}/groups/", user.id()),
                Some(&self.app.admin_key),
                json!({"group": group}),
            )
            .await
            .assert_status(201);
    }

    /// Creates a class as the owner; returns its representation.
    pub(crate) async fn class(&self, body: Value) -> Value {
        self.post(CLASSES, &Who::Owner, body)
            .await
            .assert_status(201)
            .clone()
    }

    pub(crate) async fn channel(&self, body: Value) {
        self.app.create_channel("rivia", body).await;
    }

    /// Creates an object of `class` as `who`; returns its id.
    pub(crate) async fn object(&self, class: &str, who: &Who, body: Value) -> i64 {
        let resp = self.post(&objects_path(class), who, body).await;
        id(resp.assert_status(201))
    }

    /// The class `contracts` with [`contracts_schema`] and the given class fields.
    async fn contracts(&self, fields: Value) {
        let mut body = json!({"name": "contracts", "schema": contracts_schema()});
        merge(&mut body, fields);
        self.class(body).await;
    }

    /// An object of `contracts` created by the owner; returns its id.
    async fn contract(&self, body: Value) -> i64 {
        self.object("contracts", &Who::Owner, body).await
    }

    /// The object as the owner reads it.
    async fn read(&self, class: &str, id: i64) -> Value {
        self.get(&object_path(class, id), &Who::Owner)
            .await
            .assert_status(200)
            .clone()
    }

    /// The number of objects of `class`, as the owner counts them.
    async fn count(&self, class: &str) -> i64 {
        let resp = self
            .get(
                &url(
                    &objects_path(class),
                    &[("include_count", "true"), ("page_size", "0")],
                ),
                &Who::Owner,
            )
            .await;
        resp.assert_status(200)["objects_count"]
            .as_i64()
            .expect("objects_count")
    }

    /// The ids of the objects of `class` that `who` finds with `query` (one `query` parameter).
    async fn found(&self, who: &Who, class: &str, query: Value) -> Vec<i64> {
        let query = query.to_string();
        let resp = self
            .get(&url(&objects_path(class), &[("query", &query)]), who)
            .await;
        ids(resp.assert_status(200))
    }

    /// The ids of the objects of list URL `path` as `who` sees them (one page).
    async fn listed(&self, who: &Who, path: &str) -> Vec<i64> {
        ids(self.get(path, who).await.assert_status(200))
    }

    /// Follows `next` links from `first` to the end; returns every page's ids.
    async fn pages(&self, who: &Who, first: &str) -> Vec<Vec<i64>> {
        let mut pages = Vec::new();
        let mut link = Some(first.to_owned());
        while let Some(next) = link {
            let body = self.get(&next, who).await.assert_status(200).clone();
            pages.push(ids(&body));
            link = body["next"].as_str().map(str::to_owned);
            assert!(pages.len() < 50, "next links never end: {next}");
        }
        pages
    }

    /// Follows `prev` links from `last` back to the start; returns every page's ids, first page
    /// first.
    async fn pages_back(&self, who: &Who, last: &str) -> Vec<Vec<i64>> {
        let mut pages = Vec::new();
        let mut link = Some(last.to_owned());
        while let Some(prev) = link {
            let body = self.get(&prev, who).await.assert_status(200).clone();
            pages.push(ids(&body));
            link = body["prev"].as_str().map(str::to_owned);
            assert!(pages.len() < 50, "prev links never end: {prev}");
        }
        pages.reverse();
        pages
    }
}

pub(crate) fn id(value: &Value) -> i64 {
    value["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {value}"))
}

/// The ids of a list envelope's objects, in order.
pub(crate) fn ids(list: &Value) -> Vec<i64> {
    list["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list envelope: {list}"))
        .iter()
        .map(id)
        .collect()
}

/// Sets every key of `overrides` on `target`.
pub(crate) fn merge(target: &mut Value, overrides: Value) {
    for (key, value) in overrides.as_object().expect("an object of overrides") {
        target[key] = value.clone();
    }
}

/// Asserts the `2016-03-17T20:13:46.695378Z` form of docs/api.md §2.3.
#[track_caller]
pub(crate) fn assert_timestamp(value: &Value) {
    let s = value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"));
    let bytes = s.as_bytes();
    let shape_ok = bytes.len() == 27
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'.',
            26 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    assert!(shape_ok, "timestamp not in docs/api.md §2.3 form: {s}");
}

/// The representation with `created_at` and `updated_at` checked and removed.
#[track_caller]
pub(crate) fn without_timestamps(body: &Value) -> Value {
    let mut body = body.clone();
    assert!(body.is_object(), "not an object: {body}");
    let object = body.as_object_mut().expect("an object");
    assert_timestamp(&object.remove("created_at").expect("created_at"));
    assert_timestamp(&object.remove("updated_at").expect("updated_at"));
    body
}

/// The docs/api.md §10.3 representation (without timestamps) of object `id` of `class`: the defaults
/// of an object the instance owner created (no owner, `full`/`none`/`none`, no group, no
/// channel, revision 1), then `fields`; `links` follow `owner` and `channel`.
pub(crate) fn repr(class: &str, id: i64, fields: Value) -> Value {
    let mut object = json!({
        "id": id, "revision": 1, "owner": null, "owner_permissions": "full", "group": null,
        "group_permissions": "none", "other_permissions": "none", "channel": null,
        "channel_room": null,
    });
    merge(&mut object, fields);
    let mut links = json!({"self": object_path(class, id)});
    if let Some(owner) = object["owner"].as_i64() {
        links["owner"] = json!(user_link(owner));
    }
    if let Some(channel) = object["channel"].as_str() {
        links["channel"] = json!(format!("/v1.1/instances/rivia/channels/{channel}/"));
    }
    object["links"] = links;
    object
}

#[track_caller]
pub(crate) fn assert_object(resp: &Resp, status: u16, expected: Value) {
    let body = resp.assert_status(status);
    assert_eq!(without_timestamps(body), expected, "body: {}", resp.text);
}

/// `contracts`: an indexed field of each comparable type, unindexed ones, a self reference.
fn contracts_schema() -> Value {
    json!([
        {"name": "title", "type": "string", "order_index": true, "filter_index": true},
        {"name": "reward", "type": "integer", "order_index": true, "filter_index": true},
        {"name": "weight", "type": "float", "order_index": true, "filter_index": true},
        {"name": "done", "type": "boolean", "order_index": true, "filter_index": true},
        {"name": "due", "type": "datetime", "order_index": true, "filter_index": true},
        {"name": "notes", "type": "text"},
        {"name": "extra", "type": "object"},
        {"name": "parent", "type": "reference", "target": "self", "filter_index": true},
        {"name": "plain", "type": "integer"}
    ])
}

const CONTRACT_FIELDS: [&str; 9] = [
    "title", "reward", "weight", "done", "due", "notes", "extra", "parent", "plain",
];

/// A `contracts` object's representation: [`repr`] with every custom field null but `fields`.
fn contract(id: i64, fields: Value) -> Value {
    let mut all = json!({});
    for name in CONTRACT_FIELDS {
        all[name] = Value::Null;
    }
    merge(&mut all, fields);
    repr("contracts", id, all)
}

/// `hunts`: one field of every §10.3 type, references to self, users and another class.
async fn hunts(w: &World) {
    w.class(json!({"name": "monsters", "schema": [{"name": "kind", "type": "string"}]}))
        .await;
    w.class(json!({"name": "hunts", "schema": [
        {"name": "label", "type": "string"},
        {"name": "notes", "type": "text"},
        {"name": "count", "type": "integer"},
        {"name": "ratio", "type": "float"},
        {"name": "active", "type": "boolean"},
        {"name": "at", "type": "datetime"},
        {"name": "data", "type": "object"},
        {"name": "prev", "type": "reference", "target": "self"},
        {"name": "hunter", "type": "reference", "target": "user"},
        {"name": "monster", "type": "reference", "target": "monsters"}
    ]}))
    .await;
}

const HUNT_FIELDS: [&str; 10] = [
    "label", "notes", "count", "ratio", "active", "at", "data", "prev", "hunter", "monster",
];

fn hunt(id: i64, fields: Value) -> Value {
    let mut all = json!({});
    for name in HUNT_FIELDS {
        all[name] = Value::Null;
    }
    merge(&mut all, fields);
    repr("hunts", id, all)
}

/// Sends `body` to create a `hunts` object and asserts the 400 body.
async fn hunt_refused(w: &World, body: Value, expected: Value) {
    w.post(&objects_path("hunts"), &w.owner, body)
        .await
        .assert(400, expected);
}

/// Creates a `hunts` object with `body` and returns the value of `field` as the API shows it.
async fn hunt_value(w: &World, field: &str, body: Value) -> Value {
    let resp = w.post(&objects_path("hunts"), &w.owner, body).await;
    resp.assert_status(201)[field].clone()
}

/// The path and the sorted query pairs of a link (links are opaque; compare their content).
fn link_parts(link: &Value) -> (String, BTreeSet<(String, String)>) {
    let link = link
        .as_str()
        .unwrap_or_else(|| panic!("not a link: {link}"));
    let (path, query) = link.split_once('?').unwrap_or((link, ""));
    let pairs = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (path.to_owned(), pairs)
}

#[track_caller]
fn assert_link(link: &Value, path: &str, params: &[(&str, String)]) {
    let expected: BTreeSet<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    assert_eq!(link_parts(link), (path.to_owned(), expected), "link {link}");
}

// ================================================================ create, read, update, delete

#[tokio::test]
async fn the_owner_creates_an_object_and_gets_201_with_every_field_and_the_defaults() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"title": "Griffin", "reward": 300}),
        )
        .await;
    let id = id(&resp.json);
    assert_object(
        &resp,
        201,
        contract(id, json!({"title": "Griffin", "reward": 300})),
    );
    assert_eq!(resp.json["created_at"], resp.json["updated_at"]);
}

#[tokio::test]
async fn reading_an_object_returns_what_its_create_returned() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let created = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"title": "Griffin", "notes": "silver"}),
        )
        .await
        .assert_status(201)
        .clone();
    w.get(&object_path("contracts", id(&created)), &w.owner)
        .await
        .assert(200, created);
}

#[tokio::test]
async fn post_on_an_object_updates_only_the_fields_it_sends() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"title": "Griffin", "reward": 300})).await;
    let before = w.read("contracts", a).await;
    let resp = w
        .post(
            &object_path("contracts", a),
            &w.owner,
            json!({"reward": 400}),
        )
        .await;
    assert_object(
        &resp,
        200,
        contract(a, json!({"title": "Griffin", "reward": 400, "revision": 2})),
    );
    assert_eq!(resp.json["created_at"], before["created_at"]);
    assert_ne!(resp.json["updated_at"], before["updated_at"]);
    assert_eq!(w.read("contracts", a).await, resp.json);
}

#[tokio::test]
async fn patch_on_an_object_updates_only_the_fields_it_sends() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w
        .contract(json!({"title": "Griffin", "reward": 300, "other_permissions": "read"}))
        .await;
    let resp = w
        .patch(
            &object_path("contracts", a),
            &w.owner,
            json!({"notes": "Bring silver."}),
        )
        .await;
    assert_object(
        &resp,
        200,
        contract(
            a,
            json!({"title": "Griffin", "reward": 300, "notes": "Bring silver.",
                   "other_permissions": "read", "revision": 2}),
        ),
    );
    assert_eq!(w.read("contracts", a).await, resp.json);
}

#[tokio::test]
async fn deleting_an_object_answers_204_and_it_is_gone() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"title": "Griffin"})).await;
    let b = w.contract(json!({"title": "Leshen"})).await;
    let resp = w.delete(&object_path("contracts", a), &w.owner).await;
    assert_eq!((resp.status, resp.text.as_str()), (204, ""));
    w.get(&object_path("contracts", a), &w.owner)
        .await
        .assert(404, not_found());
    w.delete(&object_path("contracts", a), &w.owner)
        .await
        .assert(404, not_found());
    assert_eq!(w.listed(&w.owner, &objects_path("contracts")).await, [b]);
}

#[tokio::test]
async fn put_is_not_allowed_on_objects_and_answers_405_in_json() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"title": "Griffin"})).await;
    let resp = w
        .put(
            &object_path("contracts", a),
            &w.owner,
            json!({"title": "Leshen"}),
        )
        .await;
    resp.assert(405, json!({"detail": "Method \"PUT\" not allowed."}));
    let allow = resp.header("allow").expect("an Allow header").to_owned();
    let allowed: BTreeSet<&str> = allow.split(',').map(str::trim).collect();
    for method in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(allowed.contains(method), "Allow: {allow}");
    }
    assert!(!allowed.contains("PUT"), "Allow: {allow}");
    w.put(&objects_path("contracts"), &w.owner, json!({}))
        .await
        .assert(405, json!({"detail": "Method \"PUT\" not allowed."}));
    w.delete(&objects_path("contracts"), &w.owner)
        .await
        .assert(405, json!({"detail": "Method \"DELETE\" not allowed."}));
    assert_eq!(w.read("contracts", a).await["title"], "Griffin");
}

#[tokio::test]
async fn an_unknown_class_answers_404_class_was_not_found_on_every_objects_url() {
    let w = World::new().await;
    let user = w.user("geralt").await;
    for who in [&w.owner, &w.trusted, &user] {
        let list = objects_path("nope");
        let detail = object_path("nope", 1);
        w.get(&list, who).await.assert(404, class_not_found());
        w.post(&list, who, json!({}))
            .await
            .assert(404, class_not_found());
        w.get(&detail, who).await.assert(404, class_not_found());
        w.post(&detail, who, json!({}))
            .await
            .assert(404, class_not_found());
        w.patch(&detail, who, json!({}))
            .await
            .assert(404, class_not_found());
        w.delete(&detail, who).await.assert(404, class_not_found());
    }
}

#[tokio::test]
async fn an_unknown_object_answers_404_not_found_on_every_method() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({})).await;
    for id in [(a + 1000).to_string(), "abc".to_owned(), "0".to_owned()] {
        let path = format!("{}{id}/", objects_path("contracts"));
        w.get(&path, &w.owner).await.assert(404, not_found());
        w.post(&path, &w.owner, json!({"title": "x"}))
            .await
            .assert(404, not_found());
        w.patch(&path, &w.owner, json!({"title": "x"}))
            .await
            .assert(404, not_found());
        w.delete(&path, &w.owner).await.assert(404, not_found());
    }
}

#[tokio::test]
async fn an_object_of_one_class_is_not_found_under_another() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.class(json!({"name": "monsters"})).await;
    let a = w.contract(json!({})).await;
    w.get(&object_path("monsters", a), &w.owner)
        .await
        .assert(404, not_found());
    w.delete(&object_path("monsters", a), &w.owner)
        .await
        .assert(404, not_found());
    w.read("contracts", a).await;
}

#[tokio::test]
async fn object_paths_match_the_class_name_in_any_case_and_without_trailing_slash() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"title": "Griffin"})).await;
    let expected = w.read("contracts", a).await;
    w.get(
        &format!("/v1.1/instances/rivia/classes/Contracts/objects/{a}"),
        &w.owner,
    )
    .await
    .assert(200, expected);
    assert_eq!(
        w.listed(&w.owner, "/v1.1/instances/rivia/classes/CONTRACTS/objects")
            .await,
        [a]
    );
}

#[tokio::test]
async fn read_only_and_unknown_fields_in_a_body_are_ignored() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"title": "Griffin", "revision": 9, "created_at": "2001-01-01T00:00:00Z",
                   "links": {}, "bogus": 1}),
        )
        .await;
    let a = id(&resp.json);
    assert_object(&resp, 201, contract(a, json!({"title": "Griffin"})));
    assert_ne!(resp.json["created_at"], "2001-01-01T00:00:00.000000Z");
    let resp = w
        .patch(
            &object_path("contracts", a),
            &w.owner,
            json!({"id": a + 1, "revision": 9, "updated_at": "2001-01-01T00:00:00Z",
                   "bogus": 2}),
        )
        .await;
    assert_object(&resp, 200, contract(a, json!({"title": "Griffin"})));
}

// ================================================================ values

#[tokio::test]
async fn every_custom_type_is_stored_and_shown_in_its_output_form() {
    let w = World::new().await;
    hunts(&w).await;
    let geralt = w.user("geralt").await;
    let griffin = w
        .object("monsters", &w.owner, json!({"kind": "griffin"}))
        .await;
    let first = w.object("hunts", &w.owner, json!({})).await;
    assert_eq!(w.read("hunts", first).await["label"], Value::Null);
    let resp = w
        .post(
            &objects_path("hunts"),
            &w.owner,
            json!({
                "label": "  Griffin  ",
                "notes": "\n  Bring silver.  \n",
                "count": -5,
                "ratio": 0.25,
                "active": true,
                "at": "2016-03-17T21:13:46.695378+01:00",
                "data": {"loot": ["silver", 3], "nested": {"a": null}},
                "prev": first,
                "hunter": geralt.id(),
                "monster": griffin,
            }),
        )
        .await;
    let second = id(&resp.json);
    let expected = hunt(
        second,
        json!({
            "label": "  Griffin  ",
            "notes": "\n  Bring silver.  \n",
            "count": -5,
            "ratio": 0.25,
            "active": true,
            "at": {"type": "datetime", "value": "2016-03-17T20:13:46.695378Z"},
            "data": {"loot": ["silver", 3], "nested": {"a": null}},
            "prev": {"type": "reference", "target": "self", "value": first},
            "hunter": {"type": "reference", "target": "user", "value": geralt.id()},
            "monster": {"type": "reference", "target": "monsters", "value": griffin},
        }),
    );
    assert_object(&resp, 201, expected.clone());
    assert_object(
        &w.get(&object_path("hunts", second), &w.owner).await,
        200,
        expected,
    );
    assert_object(
        &w.get(&object_path("hunts", first), &w.owner).await,
        200,
        hunt(first, json!({})),
    );
}

#[tokio::test]
async fn an_object_sent_back_as_it_was_read_changes_nothing() {
    let w = World::new().await;
    hunts(&w).await;
    let geralt = w.user("geralt").await;
    let griffin = w.object("monsters", &w.owner, json!({})).await;
    let first = w.object("hunts", &geralt, json!({})).await;
    let second = w
        .object(
            "hunts",
            &geralt,
            json!({"label": "x", "count": 3, "ratio": 1.5, "active": false,
                   "at": "2016-03-17T20:13:46.695378Z", "data": {"a": 1}, "prev": first,
                   "hunter": geralt.id(), "monster": griffin}),
        )
        .await;
    let read = w
        .get(&object_path("hunts", second), &geralt)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(read["owner"], geralt.id());
    for method in [Method::PATCH, Method::POST] {
        w.send(
            method,
            &object_path("hunts", second),
            &geralt,
            Some(read.clone()),
        )
        .await
        .assert(200, read.clone());
    }
}

#[tokio::test]
async fn string_and_text_values_are_kept_untrimmed_and_limited_in_length() {
    let w = World::new().await;
    hunts(&w).await;
    assert_eq!(
        hunt_value(&w, "label", json!({"label": "  a  "})).await,
        "  a  "
    );
    assert_eq!(hunt_value(&w, "label", json!({"label": " "})).await, " ");
    assert_eq!(
        hunt_value(&w, "notes", json!({"notes": "\tx\n"})).await,
        "\tx\n"
    );
    let label = "é".repeat(128);
    assert_eq!(
        hunt_value(&w, "label", json!({"label": label})).await,
        json!(label)
    );
    hunt_refused(
        &w,
        json!({"label": "x".repeat(129)}),
        json!({"label": ["Ensure this field has no more than 128 characters."]}),
    )
    .await;
    let notes = "n".repeat(32_000);
    assert_eq!(
        hunt_value(&w, "notes", json!({"notes": notes})).await,
        json!(notes)
    );
    hunt_refused(
        &w,
        json!({"notes": "n".repeat(32_001)}),
        json!({"notes": ["Ensure this field has no more than 32000 characters."]}),
    )
    .await;
}

#[tokio::test]
async fn integer_values_are_32_bit_signed() {
    let w = World::new().await;
    hunts(&w).await;
    for (input, stored) in [
        (json!(2_147_483_647), json!(2_147_483_647)),
        (json!(-2_147_483_648_i64), json!(-2_147_483_648_i64)),
        (json!("12"), json!(12)),
        (json!(0), json!(0)),
    ] {
        assert_eq!(
            hunt_value(&w, "count", json!({"count": input})).await,
            stored
        );
    }
    hunt_refused(
        &w,
        json!({"count": 2_147_483_648_i64}),
        json!({"count": ["Ensure this value is less than or equal to 2147483647."]}),
    )
    .await;
    hunt_refused(
        &w,
        json!({"count": -2_147_483_649_i64}),
        json!({"count": ["Ensure this value is greater than or equal to -2147483648."]}),
    )
    .await;
    for bad in [
        json!(3.5),
        json!("abc"),
        json!(true),
        json!([1]),
        json!({"a": 1}),
    ] {
        hunt_refused(
            &w,
            json!({"count": bad}),
            json!({"count": ["A valid integer is required."]}),
        )
        .await;
    }
}

#[tokio::test]
async fn float_values_are_finite_numbers() {
    let w = World::new().await;
    hunts(&w).await;
    assert_eq!(
        hunt_value(&w, "ratio", json!({"ratio": 2})).await,
        json!(2.0)
    );
    assert_eq!(
        hunt_value(&w, "ratio", json!({"ratio": "0.5"})).await,
        json!(0.5)
    );
    assert_eq!(
        hunt_value(&w, "ratio", json!({"ratio": -1e300})).await,
        json!(-1e300)
    );
    for bad in [
        json!("NaN"),
        json!("Infinity"),
        json!("-inf"),
        json!("1e400"),
        json!("abc"),
        json!(true),
        json!([1.5]),
    ] {
        hunt_refused(
            &w,
            json!({"ratio": bad}),
            json!({"ratio": ["A valid number is required."]}),
        )
        .await;
    }
}

#[tokio::test]
async fn boolean_values_take_the_boolean_spellings_and_nothing_else() {
    let w = World::new().await;
    hunts(&w).await;
    for (input, stored) in [
        (json!(true), true),
        (json!(false), false),
        (json!("yes"), true),
        (json!("off"), false),
        (json!("True"), true),
        (json!(1), true),
        (json!(0), false),
    ] {
        assert_eq!(
            hunt_value(&w, "active", json!({"active": input})).await,
            json!(stored),
            "input {input}"
        );
    }
    for bad in [json!("maybe"), json!(2), json!([true]), json!({"a": true})] {
        hunt_refused(
            &w,
            json!({"active": bad}),
            json!({"active": ["Not a valid boolean."]}),
        )
        .await;
    }
}

#[tokio::test]
async fn datetime_values_take_rfc3339_or_the_output_form() {
    let w = World::new().await;
    hunts(&w).await;
    for (input, shown) in [
        (json!("2016-03-17T20:13:46Z"), "2016-03-17T20:13:46.000000Z"),
        (
            json!("2016-03-17T22:13:46.5+02:00"),
            "2016-03-17T20:13:46.500000Z",
        ),
        (
            json!({"type": "datetime", "value": "2016-03-17T20:13:46.695378Z"}),
            "2016-03-17T20:13:46.695378Z",
        ),
    ] {
        assert_eq!(
            hunt_value(&w, "at", json!({"at": input})).await,
            json!({"type": "datetime", "value": shown})
        );
    }
    // The message is Herald's choice (DRF's): the SPEC names none.
    let message = "Datetime has wrong format. Use one of these formats instead: \
                   YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].";
    for bad in [json!("yesterday"), json!(5), json!(true)] {
        hunt_refused(&w, json!({"at": bad}), json!({"at": [message]})).await;
    }
}

#[tokio::test]
async fn object_values_take_json_objects_or_strings_holding_one() {
    let w = World::new().await;
    hunts(&w).await;
    assert_eq!(
        hunt_value(&w, "data", json!({"data": {"a": [1, {"b": null}]}})).await,
        json!({"a": [1, {"b": null}]})
    );
    assert_eq!(
        hunt_value(&w, "data", json!({"data": "{\"a\": 1}"})).await,
        json!({"a": 1})
    );
    assert_eq!(hunt_value(&w, "data", json!({"data": {}})).await, json!({}));
    for bad in [json!([1]), json!(5), json!(true), json!("[1]")] {
        hunt_refused(
            &w,
            json!({"data": bad}),
            json!({"data": ["Not a valid object."]}),
        )
        .await;
    }
    // docs/api.md §2.2: a JSON-typed field given a string that is not JSON.
    hunt_refused(
        &w,
        json!({"data": "{not json"}),
        json!({"data": ["Not a valid JSON string."]}),
    )
    .await;
}

#[tokio::test]
async fn references_point_at_existing_objects_users_or_objects_of_the_target_class() {
    let w = World::new().await;
    hunts(&w).await;
    let geralt = w.user("geralt").await;
    let griffin = w.object("monsters", &w.owner, json!({})).await;
    let first = w.object("hunts", &w.owner, json!({})).await;
    assert_eq!(
        hunt_value(&w, "prev", json!({"prev": first.to_string()})).await,
        json!({"type": "reference", "target": "self", "value": first})
    );
    assert_eq!(
        hunt_value(
            &w,
            "monster",
            json!({"monster": {"type": "reference", "target": "monsters", "value": griffin}})
        )
        .await,
        json!({"type": "reference", "target": "monsters", "value": griffin})
    );
    let missing = json!({"prev": ["Target with specified id does not exist."]});
    hunt_refused(&w, json!({"prev": griffin}), missing).await;
    hunt_refused(
        &w,
        json!({"hunter": griffin + 1000}),
        json!({"hunter": ["Target with specified id does not exist."]}),
    )
    .await;
    // An object of another class is not a monster.
    hunt_refused(
        &w,
        json!({"monster": first}),
        json!({"monster": ["Target with specified id does not exist."]}),
    )
    .await;
    hunt_refused(
        &w,
        json!({"monster": {"type": "reference", "target": "monsters", "value": griffin + 1000}}),
        json!({"monster": ["Target with specified id does not exist."]}),
    )
    .await;
    // Herald's choice: a reference that is not an id is refused as an integer field is.
    hunt_refused(
        &w,
        json!({"prev": "abc"}),
        json!({"prev": ["A valid integer is required."]}),
    )
    .await;
    let resp = w
        .patch(
            &object_path("hunts", first),
            &w.owner,
            json!({"hunter": geralt.id() + 1000}),
        )
        .await;
    resp.assert(
        400,
        json!({"hunter": ["Target with specified id does not exist."]}),
    );
    assert_eq!(w.read("hunts", first).await["revision"], 1);
}

#[tokio::test]
async fn null_clears_a_field() {
    let w = World::new().await;
    hunts(&w).await;
    let a = w
        .object(
            "hunts",
            &w.owner,
            json!({"label": "x", "count": 1, "at": "2016-03-17T20:13:46Z", "data": {}}),
        )
        .await;
    let resp = w
        .patch(
            &object_path("hunts", a),
            &w.owner,
            json!({"label": null, "count": null, "at": null, "data": null}),
        )
        .await;
    assert_object(&resp, 200, hunt(a, json!({"revision": 2})));
}

// ================================================================ operations

#[tokio::test]
async fn increment_adds_to_integers_and_floats_on_update() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"reward": 100, "weight": 1.5})).await;
    let path = object_path("contracts", a);
    let resp = w
        .patch(
            &path,
            &w.owner,
            json!({"reward": {"_increment": 50}, "weight": {"_increment": 0.25}}),
        )
        .await;
    assert_object(
        &resp,
        200,
        contract(a, json!({"reward": 150, "weight": 1.75, "revision": 2})),
    );
    let resp = w
        .post(&path, &w.owner, json!({"reward": {"_increment": -175}}))
        .await;
    assert_object(
        &resp,
        200,
        contract(a, json!({"reward": -25, "weight": 1.75, "revision": 3})),
    );
    // A null value counts as 0; an operation may arrive as a string holding its JSON.
    let resp = w
        .patch(&path, &w.owner, json!({"plain": "{\"_increment\": 7}"}))
        .await;
    assert_object(
        &resp,
        200,
        contract(
            a,
            json!({"reward": -25, "weight": 1.75, "plain": 7, "revision": 4}),
        ),
    );
}

#[tokio::test]
async fn an_increment_past_32_bits_is_refused_and_nothing_changes() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"reward": 2_147_483_600})).await;
    let b = w.contract(json!({"reward": -2_147_483_600})).await;
    w.patch(
        &object_path("contracts", a),
        &w.owner,
        json!({"reward": {"_increment": 100}}),
    )
    .await
    .assert(
        400,
        json!({"reward": ["Ensure this value is less than or equal to 2147483647."]}),
    );
    w.patch(
        &object_path("contracts", b),
        &w.owner,
        json!({"reward": {"_increment": -100}}),
    )
    .await
    .assert(
        400,
        json!({"reward": ["Ensure this value is greater than or equal to -2147483648."]}),
    );
    let a_now = w.read("contracts", a).await;
    assert_eq!(
        (&a_now["reward"], &a_now["revision"]),
        (&json!(2_147_483_600), &json!(1))
    );
    let b_now = w.read("contracts", b).await;
    assert_eq!(
        (&b_now["reward"], &b_now["revision"]),
        (&json!(-2_147_483_600), &json!(1))
    );
    let resp = w
        .patch(
            &object_path("contracts", a),
            &w.owner,
            json!({"reward": {"_increment": 47}}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["reward"], 2_147_483_647);
}

#[tokio::test]
async fn an_increment_on_create_is_the_types_invalid_value() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.post(
        &objects_path("contracts"),
        &w.owner,
        json!({"reward": {"_increment": 1}}),
    )
    .await
    .assert(400, json!({"reward": ["A valid integer is required."]}));
    w.post(
        &objects_path("contracts"),
        &w.owner,
        json!({"weight": {"_increment": 1.5}}),
    )
    .await
    .assert(400, json!({"weight": ["A valid number is required."]}));
    assert_eq!(w.count("contracts").await, 0);
}

#[tokio::test]
async fn an_operation_with_another_key_or_an_unknown_key_is_the_types_invalid_value() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"reward": 1, "weight": 1.0})).await;
    let path = object_path("contracts", a);
    for bad in [
        json!({"_increment": 1, "_add": 1}),
        json!({"_increment": 1, "value": 1}),
        json!({"_decrement": 1}),
        json!({"_increment": 1.5}),
        json!({"_increment": "x"}),
        json!({}),
    ] {
        w.patch(&path, &w.owner, json!({"reward": bad}))
            .await
            .assert(400, json!({"reward": ["A valid integer is required."]}));
    }
    for bad in [
        json!({"_increment": 1, "_remove": 1}),
        json!({"_add": 1}),
        json!({"_increment": "x"}),
    ] {
        w.patch(&path, &w.owner, json!({"weight": bad}))
            .await
            .assert(400, json!({"weight": ["A valid number is required."]}));
    }
    assert_eq!(w.read("contracts", a).await["revision"], 1);
}

// ================================================================ size

#[tokio::test]
async fn an_object_over_32768_characters_is_refused() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.post(
        &objects_path("contracts"),
        &w.owner,
        json!({"notes": "n".repeat(32_000), "extra": {"pad": "p".repeat(1_000)}}),
    )
    .await
    .assert(
        400,
        json!({"non_field_errors": ["Object maximum size exceeded."]}),
    );
    assert_eq!(w.count("contracts").await, 0);
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"notes": "n".repeat(32_000), "title": "t".repeat(128)}),
        )
        .await;
    resp.assert_status(201);
}

#[tokio::test]
async fn an_update_past_32768_characters_is_refused_and_nothing_changes() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"notes": "n".repeat(32_000)})).await;
    w.patch(
        &object_path("contracts", a),
        &w.owner,
        json!({"extra": {"pad": "p".repeat(1_000)}}),
    )
    .await
    .assert(
        400,
        json!({"non_field_errors": ["Object maximum size exceeded."]}),
    );
    let now = w.read("contracts", a).await;
    assert_eq!((&now["extra"], &now["revision"]), (&Value::Null, &json!(1)));
}

// ================================================================ revisions

#[tokio::test]
async fn revision_grows_by_one_per_change_and_not_for_an_update_that_changes_nothing() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"title": "Griffin", "reward": 1})).await;
    let path = object_path("contracts", a);
    let created = w.read("contracts", a).await;
    for unchanged in [
        json!({}),
        json!({"title": "Griffin"}),
        json!({"reward": "1", "other_permissions": "none", "group": null}),
    ] {
        w.patch(&path, &w.owner, unchanged.clone())
            .await
            .assert(200, created.clone());
        w.post(&path, &w.owner, unchanged)
            .await
            .assert(200, created.clone());
    }
    let changed = w.patch(&path, &w.owner, json!({"reward": 2})).await;
    assert_eq!(changed.assert_status(200)["revision"], 2);
    let changed = w
        .post(&path, &w.owner, json!({"other_permissions": "read"}))
        .await;
    assert_eq!(changed.assert_status(200)["revision"], 3);
    let changed = w
        .patch(&path, &w.owner, json!({"reward": 3, "title": "Leshen"}))
        .await;
    assert_eq!(changed.assert_status(200)["revision"], 4);
}

#[tokio::test]
async fn expected_revision_must_match_the_stored_revision() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"reward": 1})).await;
    let path = object_path("contracts", a);
    w.patch(
        &path,
        &w.owner,
        json!({"expected_revision": 2, "reward": 5}),
    )
    .await
    .assert(
        400,
        json!({"expected_revision": "Revision mismatch. Expected 2, got 1."}),
    );
    w.post(
        &path,
        &w.owner,
        json!({"expected_revision": 0, "reward": 5}),
    )
    .await
    .assert(
        400,
        json!({"expected_revision": "Revision mismatch. Expected 0, got 1."}),
    );
    assert_eq!(w.read("contracts", a).await["reward"], 1);
    let resp = w
        .patch(
            &path,
            &w.owner,
            json!({"expected_revision": 1, "reward": 5}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["revision"], 2);
    let resp = w
        .post(
            &path,
            &w.owner,
            json!({"expected_revision": "2", "reward": 6}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["revision"], 3);
    w.patch(
        &path,
        &w.owner,
        json!({"expected_revision": 2, "reward": 7}),
    )
    .await
    .assert(
        400,
        json!({"expected_revision": "Revision mismatch. Expected 2, got 3."}),
    );
}

#[tokio::test]
async fn expected_revision_is_ignored_on_create() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"expected_revision": 7, "reward": 1}),
        )
        .await;
    let a = id(&resp.json);
    assert_object(&resp, 201, contract(a, json!({"reward": 1})));
}

// ================================================================ owner, permissions, group

#[tokio::test]
async fn an_object_a_user_creates_is_owned_by_them_and_links_to_them() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let resp = w
        .post(&objects_path("contracts"), &geralt, json!({"title": "x"}))
        .await;
    let a = id(&resp.json);
    assert_object(
        &resp,
        201,
        contract(a, json!({"title": "x", "owner": geralt.id()})),
    );
    // The owner's and trusted keys' objects have no owner (and no owner link).
    for who in [&w.owner, &w.trusted] {
        let resp = w.post(&objects_path("contracts"), who, json!({})).await;
        let b = id(&resp.json);
        assert_object(&resp, 201, contract(b, json!({})));
    }
}

#[tokio::test]
async fn only_the_owner_and_trusted_keys_set_or_change_an_objects_owner() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let ciri = w.user("ciri").await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.trusted,
            json!({"owner": geralt.id()}),
        )
        .await;
    let a = id(&resp.json);
    assert_object(&resp, 201, contract(a, json!({"owner": geralt.id()})));
    let resp = w
        .patch(
            &object_path("contracts", a),
            &w.owner,
            json!({"owner": ciri.id()}),
        )
        .await;
    assert_object(
        &resp,
        200,
        contract(a, json!({"owner": ciri.id(), "revision": 2})),
    );
    let resp = w
        .post(
            &object_path("contracts", a),
            &w.trusted,
            json!({"owner": null}),
        )
        .await;
    assert_object(&resp, 200, contract(a, json!({"revision": 3})));

    let cannot = json!({"owner": ["Cannot change owner of Data Object."]});
    w.post(
        &objects_path("contracts"),
        &geralt,
        json!({"owner": ciri.id()}),
    )
    .await
    .assert(400, cannot.clone());
    assert_eq!(w.count("contracts").await, 1);
    // Naming themself changes nothing and is fine.
    let b = w
        .object("contracts", &geralt, json!({"owner": geralt.id()}))
        .await;
    for change in [json!({"owner": ciri.id()}), json!({"owner": null})] {
        w.patch(&object_path("contracts", b), &geralt, change.clone())
            .await
            .assert(400, cannot.clone());
        w.post(&object_path("contracts", b), &geralt, change)
            .await
            .assert(400, cannot.clone());
    }
    let now = w.read("contracts", b).await;
    assert_eq!(
        (&now["owner"], &now["revision"]),
        (&json!(geralt.id()), &json!(1))
    );
}

#[tokio::test]
async fn an_owner_set_by_a_trusted_key_must_be_a_user_of_the_instance() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let missing = geralt.id() + 1000;
    // Herald's choice: the §2.4 message for a missing related object.
    let refused = json!({"owner": [format!("Invalid pk \"{missing}\" - object does not exist.")]});
    w.post(
        &objects_path("contracts"),
        &w.trusted,
        json!({"owner": missing}),
    )
    .await
    .assert(400, refused.clone());
    let a = w.contract(json!({})).await;
    w.patch(
        &object_path("contracts", a),
        &w.owner,
        json!({"owner": missing}),
    )
    .await
    .assert(400, refused);
    assert_eq!(w.count("contracts").await, 1);
    assert_eq!(w.read("contracts", a).await["owner"], Value::Null);
}

#[tokio::test]
async fn object_permissions_default_to_full_none_none_and_take_names_or_codes() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let resp = w
        .post(&objects_path("contracts"), &w.owner, json!({}))
        .await;
    let body = resp.assert_status(201);
    assert_eq!(
        (
            &body["owner_permissions"],
            &body["group_permissions"],
            &body["other_permissions"]
        ),
        (&json!("full"), &json!("none"), &json!("none"))
    );
    for (input, shown) in [
        (json!("none"), "none"),
        (json!("read"), "read"),
        (json!("write"), "write"),
        (json!("full"), "full"),
        (json!(0), "none"),
        (json!(1), "read"),
        (json!(2), "write"),
        (json!(3), "full"),
        (json!("2"), "write"),
    ] {
        let resp = w
            .post(
                &objects_path("contracts"),
                &w.owner,
                json!({"owner_permissions": input, "group_permissions": input,
                       "other_permissions": input}),
            )
            .await;
        let body = resp.assert_status(201);
        for field in [
            "owner_permissions",
            "group_permissions",
            "other_permissions",
        ] {
            assert_eq!(body[field], shown, "{field} given {input}");
        }
    }
    w.post(
        &objects_path("contracts"),
        &w.owner,
        json!({"other_permissions": "publish", "group_permissions": 4}),
    )
    .await
    .assert(
        400,
        json!({"other_permissions": ["\"publish\" is not a valid choice."],
               "group_permissions": ["\"4\" is not a valid choice."]}),
    );
}

#[tokio::test]
async fn an_objects_group_must_exist() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let witchers = w.group("witchers").await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"group": witchers, "group_permissions": "write"}),
        )
        .await;
    let a = id(&resp.json);
    assert_object(
        &resp,
        201,
        contract(a, json!({"group": witchers, "group_permissions": "write"})),
    );
    let missing = witchers + 1000;
    let refused = json!({"group": [format!("Invalid pk \"{missing}\" - object does not exist.")]});
    w.post(
        &objects_path("contracts"),
        &w.owner,
        json!({"group": missing}),
    )
    .await
    .assert(400, refused.clone());
    w.patch(
        &object_path("contracts", a),
        &w.trusted,
        json!({"group": missing}),
    )
    .await
    .assert(400, refused);
    assert_eq!(w.read("contracts", a).await["group"], witchers);
    let resp = w
        .patch(
            &object_path("contracts", a),
            &w.owner,
            json!({"group": null}),
        )
        .await;
    assert_object(
        &resp,
        200,
        contract(a, json!({"group_permissions": "write", "revision": 2})),
    );
}

#[tokio::test]
async fn a_user_may_only_set_a_group_they_belong_to() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let witchers = w.group("witchers").await;
    let mages = w.group("mages").await;
    let invalid = json!({"group": ["Invalid group specified."]});
    w.post(
        &objects_path("contracts"),
        &geralt,
        json!({"group": witchers}),
    )
    .await
    .assert(400, invalid.clone());
    w.join(&geralt, witchers).await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &geralt,
            json!({"group": witchers}),
        )
        .await;
    let a = id(&resp.json);
    assert_object(
        &resp,
        201,
        contract(a, json!({"group": witchers, "owner": geralt.id()})),
    );
    w.patch(
        &object_path("contracts", a),
        &geralt,
        json!({"group": mages}),
    )
    .await
    .assert(400, invalid);
    assert_eq!(w.read("contracts", a).await["group"], witchers);
}

#[tokio::test]
async fn permission_values_a_user_sets_are_capped_at_their_own_level() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let a = w.contract(json!({"other_permissions": "write"})).await;
    let resp = w
        .patch(
            &object_path("contracts", a),
            &geralt,
            json!({"group_permissions": "full", "other_permissions": "full",
                   "owner_permissions": "read"}),
        )
        .await;
    assert_object(
        &resp,
        200,
        contract(
            a,
            json!({"owner_permissions": "read", "group_permissions": "write",
                   "other_permissions": "write", "revision": 2}),
        ),
    );
    // Their own object: full, so anything goes.
    let b = w.object("contracts", &geralt, json!({})).await;
    let resp = w
        .patch(
            &object_path("contracts", b),
            &geralt,
            json!({"other_permissions": "full"}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["other_permissions"], "full");
}

// ================================================================ channel and room

#[tokio::test]
async fn an_object_takes_a_channel_and_room_on_create_and_links_to_the_channel() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.channel(json!({"name": "witchers", "type": "separate_rooms"}))
        .await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"channel": "witchers", "channel_room": "  Novigrad Docks "}),
        )
        .await;
    let a = id(&resp.json);
    assert_object(
        &resp,
        201,
        contract(
            a,
            json!({"channel": "witchers", "channel_room": "novigrad docks"}),
        ),
    );
    let room = "r".repeat(64);
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"channel": "witchers", "channel_room": room}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["channel_room"], json!(room));
}

#[tokio::test]
async fn a_null_channel_means_no_channel() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"channel": null, "channel_room": null, "title": "x"}),
        )
        .await;
    let a = id(resp.assert_status(201));
    assert_object(&resp, 201, contract(a, json!({"title": "x"})));
}

#[tokio::test]
async fn an_object_on_a_default_channel_stores_no_room() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.channel(json!({"name": "board"})).await;
    let resp = w
        .post(
            &objects_path("contracts"),
            &w.owner,
            json!({"channel": "board", "channel_room": "novigrad"}),
        )
        .await;
    let a = id(&resp.json);
    assert_object(&resp, 201, contract(a, json!({"channel": "board"})));
    assert_eq!(w.read("contracts", a).await["channel_room"], Value::Null);
}

#[tokio::test]
async fn an_unknown_channel_is_refused() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.post(
        &objects_path("contracts"),
        &w.owner,
        json!({"channel": "nope"}),
    )
    .await
    .assert(
        400,
        json!({"channel": ["Object with name=nope does not exist."]}),
    );
    assert_eq!(w.count("contracts").await, 0);
}

#[tokio::test]
async fn a_channel_with_separate_rooms_needs_a_room() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.channel(json!({"name": "witchers", "type": "separate_rooms"}))
        .await;
    let required = json!({"non_field_errors":
        ["Channel room field is required for channels with separate rooms."]});
    for body in [
        json!({"channel": "witchers"}),
        json!({"channel": "witchers", "channel_room": ""}),
        json!({"channel": "witchers", "channel_room": null}),
    ] {
        w.post(&objects_path("contracts"), &w.owner, body)
            .await
            .assert(400, required.clone());
    }
    assert_eq!(w.count("contracts").await, 0);
}

#[tokio::test]
async fn a_channel_room_over_64_characters_is_refused() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.channel(json!({"name": "witchers", "type": "separate_rooms"}))
        .await;
    w.post(
        &objects_path("contracts"),
        &w.owner,
        json!({"channel": "witchers", "channel_room": "r".repeat(65)}),
    )
    .await
    .assert(
        400,
        json!({"channel_room": ["Ensure this field has no more than 64 characters."]}),
    );
}

#[tokio::test]
async fn channel_and_room_are_ignored_on_update() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.channel(json!({"name": "witchers", "type": "separate_rooms"}))
        .await;
    w.channel(json!({"name": "board"})).await;
    let a = w
        .contract(json!({"channel": "witchers", "channel_room": "novigrad"}))
        .await;
    let b = w.contract(json!({})).await;
    let before_a = w.read("contracts", a).await;
    let before_b = w.read("contracts", b).await;
    for method in [Method::POST, Method::PATCH] {
        w.send(
            method.clone(),
            &object_path("contracts", a),
            &w.owner,
            Some(json!({"channel": "board", "channel_room": "oxenfurt"})),
        )
        .await
        .assert(200, before_a.clone());
        w.send(
            method,
            &object_path("contracts", b),
            &w.owner,
            Some(json!({"channel": "witchers", "channel_room": "oxenfurt"})),
        )
        .await
        .assert(200, before_b.clone());
    }
}

// ================================================================ permissions

#[tokio::test]
async fn the_owner_and_trusted_keys_may_do_everything_with_any_object() {
    let w = World::new().await;
    w.contracts(json!({"other_permissions": "none", "group_permissions": "none"}))
        .await;
    let geralt = w.user("geralt").await;
    for who in [&w.owner, &w.trusted] {
        let a = w
            .object(
                "contracts",
                who,
                json!({"owner": geralt.id(), "owner_permissions": "none"}),
            )
            .await;
        let path = object_path("contracts", a);
        w.get(&path, who).await.assert_status(200);
        assert_eq!(w.listed(who, &objects_path("contracts")).await, [a]);
        let resp = w.patch(&path, who, json!({"reward": 1})).await;
        assert_eq!(resp.assert_status(200)["reward"], 1);
        let resp = w.post(&path, who, json!({"reward": 2})).await;
        assert_eq!(resp.assert_status(200)["reward"], 2);
        assert_eq!(w.delete(&path, who).await.status, 204);
    }
}

#[tokio::test]
async fn a_user_creates_objects_only_with_create_objects_on_the_class() {
    let w = World::new().await;
    let geralt = w.user("geralt").await;
    let ciri = w.user("ciri").await;
    let witchers = w.group("witchers").await;
    w.join(&geralt, witchers).await;
    w.class(json!({"name": "readable", "other_permissions": "read",
                   "group_permissions": "read"}))
        .await;
    w.class(
        json!({"name": "members", "other_permissions": "none", "group": witchers,
                   "group_permissions": "create_objects"}),
    )
    .await;
    w.class(
        json!({"name": "mixed", "other_permissions": "read", "group": witchers,
                   "group_permissions": "create_objects"}),
    )
    .await;
    w.class(json!({"name": "open"})).await;
    for who in [&geralt, &ciri] {
        w.post(&objects_path("readable"), who, json!({}))
            .await
            .assert(403, forbidden());
        w.object("open", who, json!({})).await;
    }
    w.object("members", &geralt, json!({})).await;
    w.object("mixed", &geralt, json!({})).await;
    w.post(&objects_path("members"), &ciri, json!({}))
        .await
        .assert(403, forbidden());
    w.post(&objects_path("mixed"), &ciri, json!({}))
        .await
        .assert(403, forbidden());
    assert_eq!(w.count("readable").await, 0);
    assert_eq!(w.count("members").await, 1);
    assert_eq!(w.count("mixed").await, 1);
}

#[tokio::test]
async fn a_user_reads_objects_by_other_owner_or_group_permissions() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let ciri = w.user("ciri").await;
    let witchers = w.group("witchers").await;
    w.join(&geralt, witchers).await;
    let by_others = w.contract(json!({"other_permissions": "read"})).await;
    let owned = w
        .contract(json!({"owner": geralt.id(), "owner_permissions": "read"}))
        .await;
    let owned_none = w
        .contract(json!({"owner": geralt.id(), "owner_permissions": "none"}))
        .await;
    let grouped = w
        .contract(json!({"group": witchers, "group_permissions": "read"}))
        .await;
    let group_none = w
        .contract(json!({"group": witchers, "group_permissions": "none"}))
        .await;
    let hidden = w.contract(json!({})).await;
    for a in [by_others, owned, grouped] {
        w.get(&object_path("contracts", a), &geralt)
            .await
            .assert(200, w.read("contracts", a).await);
    }
    for a in [owned_none, group_none, hidden] {
        w.get(&object_path("contracts", a), &geralt)
            .await
            .assert(404, not_found());
    }
    w.get(&object_path("contracts", by_others), &ciri)
        .await
        .assert_status(200);
    for a in [owned, owned_none, grouped, group_none, hidden] {
        w.get(&object_path("contracts", a), &ciri)
            .await
            .assert(404, not_found());
    }
    assert_eq!(
        w.listed(&geralt, &objects_path("contracts")).await,
        [by_others, owned, grouped]
    );
    assert_eq!(
        w.listed(&ciri, &objects_path("contracts")).await,
        [by_others]
    );
}

#[tokio::test]
async fn a_user_updates_with_write_and_deletes_with_full() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let witchers = w.group("witchers").await;
    w.join(&geralt, witchers).await;
    let read = w.contract(json!({"other_permissions": "read"})).await;
    let write = w.contract(json!({"other_permissions": "write"})).await;
    let owner_write = w
        .contract(json!({"owner": geralt.id(), "owner_permissions": "write"}))
        .await;
    let group_write = w
        .contract(json!({"group": witchers, "group_permissions": "write"}))
        .await;
    let full = w.contract(json!({"other_permissions": "full"})).await;
    // The highest level that applies counts.
    let highest = w
        .contract(json!({"owner": geralt.id(), "owner_permissions": "full",
                         "other_permissions": "read"}))
        .await;
    let path = |a| object_path("contracts", a);

    for method in [Method::POST, Method::PATCH] {
        w.send(method, &path(read), &geralt, Some(json!({"reward": 1})))
            .await
            .assert(403, forbidden());
    }
    w.delete(&path(read), &geralt)
        .await
        .assert(403, forbidden());
    assert_eq!(w.read("contracts", read).await["revision"], 1);

    for a in [write, owner_write, group_write] {
        let resp = w.patch(&path(a), &geralt, json!({"reward": 1})).await;
        assert_eq!(resp.assert_status(200)["reward"], 1);
        let resp = w.post(&path(a), &geralt, json!({"reward": 2})).await;
        assert_eq!(resp.assert_status(200)["reward"], 2);
        w.delete(&path(a), &geralt).await.assert(403, forbidden());
        w.read("contracts", a).await;
    }
    for a in [full, highest] {
        let resp = w.delete(&path(a), &geralt).await;
        assert_eq!((resp.status, resp.text.as_str()), (204, ""));
        w.get(&path(a), &w.owner).await.assert(404, not_found());
    }
}

#[tokio::test]
async fn an_object_a_user_may_not_read_answers_404_on_every_method() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let ciri = w.user("ciri").await;
    let hidden = w
        .object("contracts", &ciri, json!({"title": "secret"}))
        .await;
    let path = object_path("contracts", hidden);
    w.get(&path, &geralt).await.assert(404, not_found());
    w.post(&path, &geralt, json!({"title": "x"}))
        .await
        .assert(404, not_found());
    w.patch(&path, &geralt, json!({"title": "x"}))
        .await
        .assert(404, not_found());
    w.delete(&path, &geralt).await.assert(404, not_found());
    let now = w.read("contracts", hidden).await;
    assert_eq!(
        (&now["title"], &now["revision"]),
        (&json!("secret"), &json!(1))
    );
}

#[tokio::test]
async fn objects_of_a_class_a_user_may_not_read_are_refused_with_403() {
    let w = World::new().await;
    let geralt = w.user("geralt").await;
    let ciri = w.user("ciri").await;
    let witchers = w.group("witchers").await;
    w.join(&geralt, witchers).await;
    w.class(
        json!({"name": "secrets", "other_permissions": "none", "group": witchers,
                   "group_permissions": "read"}),
    )
    .await;
    let a = w
        .object("secrets", &w.owner, json!({"other_permissions": "full"}))
        .await;
    w.get(&objects_path("secrets"), &ciri)
        .await
        .assert(403, forbidden());
    w.post(&objects_path("secrets"), &ciri, json!({}))
        .await
        .assert(403, forbidden());
    // Herald's choice for the object URLs of such a class: the class refuses first (403).
    w.get(&object_path("secrets", a), &ciri)
        .await
        .assert(403, forbidden());
    w.patch(&object_path("secrets", a), &ciri, json!({}))
        .await
        .assert(403, forbidden());
    w.delete(&object_path("secrets", a), &ciri)
        .await
        .assert(403, forbidden());
    // Through the group, the class is readable (but not open to creates).
    assert_eq!(w.listed(&geralt, &objects_path("secrets")).await, [a]);
    w.post(&objects_path("secrets"), &geralt, json!({}))
        .await
        .assert(403, forbidden());
    assert_eq!(w.count("secrets").await, 1);
}

#[tokio::test]
async fn an_anonymous_reader_reads_what_others_may_read() {
    let w = World::new().await;
    w.contracts(json!({"other_permissions": "read"})).await;
    w.class(json!({"name": "secrets", "other_permissions": "none"}))
        .await;
    let readable = w.contract(json!({"other_permissions": "read"})).await;
    let writable = w.contract(json!({"other_permissions": "full"})).await;
    let hidden = w
        .contract(json!({"group_permissions": "full", "owner_permissions": "full"}))
        .await;
    let secret = w
        .object("secrets", &w.owner, json!({"other_permissions": "read"}))
        .await;
    assert_eq!(
        w.listed(&w.reader, &objects_path("contracts")).await,
        [readable, writable]
    );
    for a in [readable, writable] {
        w.get(&object_path("contracts", a), &w.reader)
            .await
            .assert(200, w.read("contracts", a).await);
    }
    w.get(&object_path("contracts", hidden), &w.reader)
        .await
        .assert(404, not_found());
    w.get(&objects_path("secrets"), &w.reader)
        .await
        .assert(403, forbidden());
    w.get(&object_path("secrets", secret), &w.reader)
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn an_anonymous_reader_may_not_write() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"other_permissions": "full"})).await;
    let path = object_path("contracts", a);
    w.post(&objects_path("contracts"), &w.reader, json!({}))
        .await
        .assert(403, forbidden());
    w.post(&path, &w.reader, json!({"reward": 1}))
        .await
        .assert(403, forbidden());
    w.patch(&path, &w.reader, json!({"reward": 1}))
        .await
        .assert(403, forbidden());
    w.delete(&path, &w.reader).await.assert(403, forbidden());
    let now = w.read("contracts", a).await;
    assert_eq!(
        (&now["reward"], &now["revision"]),
        (&Value::Null, &json!(1))
    );
    assert_eq!(w.count("contracts").await, 1);
}

#[tokio::test]
async fn a_bare_key_is_refused_on_every_objects_url_before_any_lookup() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"other_permissions": "full"})).await;
    for class in ["contracts", "nope", "user_profile"] {
        let list = objects_path(class);
        w.get(&list, &w.bare).await.assert(403, forbidden());
        w.post(&list, &w.bare, json!({}))
            .await
            .assert(403, forbidden());
        for object in [a, a + 1000] {
            let detail = object_path(class, object);
            w.get(&detail, &w.bare).await.assert(403, forbidden());
            w.post(&detail, &w.bare, json!({}))
                .await
                .assert(403, forbidden());
            w.patch(&detail, &w.bare, json!({}))
                .await
                .assert(403, forbidden());
            w.delete(&detail, &w.bare).await.assert(403, forbidden());
        }
    }
    assert_eq!(w.read("contracts", a).await["revision"], 1);
}

#[tokio::test]
async fn a_user_needs_publish_level_on_the_channel_to_create_an_object_with_it() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let witchers = w.group("witchers").await;
    w.channel(json!({"name": "board", "type": "separate_rooms",
                     "other_permissions": "subscribe", "group": witchers,
                     "group_permissions": "publish"}))
        .await;
    let body = json!({"channel": "board", "channel_room": "novigrad", "title": "x"});
    w.post(&objects_path("contracts"), &geralt, body.clone())
        .await
        .assert(403, no_channel_publish());
    assert_eq!(w.count("contracts").await, 0);
    w.get(
        "/v1.1/instances/rivia/channels/board/history/?room=novigrad",
        &w.owner,
    )
    .await
    .assert(200, json!({"objects": [], "next": null, "prev": null}));
    // Publish level through the group is enough; custom_publish is not needed.
    w.join(&geralt, witchers).await;
    let resp = w.post(&objects_path("contracts"), &geralt, body).await;
    let a = id(&resp.json);
    assert_object(
        &resp,
        201,
        contract(
            a,
            json!({"channel": "board", "channel_room": "novigrad", "title": "x",
                   "owner": geralt.id()}),
        ),
    );
}

#[tokio::test]
async fn a_user_needs_publish_level_on_the_objects_channel_to_update_or_delete_it() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    w.channel(json!({"name": "board", "other_permissions": "subscribe"}))
        .await;
    let a = w
        .contract(json!({"channel": "board", "other_permissions": "full", "reward": 1}))
        .await;
    let path = object_path("contracts", a);
    let before = w.read("contracts", a).await;
    w.patch(&path, &geralt, json!({"reward": 2}))
        .await
        .assert(403, no_channel_publish());
    w.post(&path, &geralt, json!({"reward": 2}))
        .await
        .assert(403, no_channel_publish());
    w.delete(&path, &geralt)
        .await
        .assert(403, no_channel_publish());
    assert_eq!(w.read("contracts", a).await, before);
    // Reading needs no channel permission.
    w.get(&path, &geralt).await.assert(200, before);
    // Trusted keys need none either.
    let resp = w.patch(&path, &w.trusted, json!({"reward": 3})).await;
    assert_eq!(resp.assert_status(200)["reward"], 3);
    w.app
        .patch(
            "/v1.1/instances/rivia/channels/board/",
            Some(&w.app.admin_key),
            json!({"other_permissions": "publish"}),
        )
        .await
        .assert_status(200);
    let resp = w.patch(&path, &geralt, json!({"reward": 4})).await;
    assert_eq!(resp.assert_status(200)["reward"], 4);
    assert_eq!(w.delete(&path, &geralt).await.status, 204);
}

// ================================================================ user_profile

#[tokio::test]
async fn objects_of_user_profile_cannot_be_created_or_deleted_directly() {
    let w = World::new().await;
    let geralt = w.user("geralt").await;
    for who in [&w.owner, &w.trusted, &geralt] {
        w.post(&objects_path("user_profile"), who, json!({}))
            .await
            .assert(403, forbidden());
        w.delete(&object_path("user_profile", geralt.profile()), who)
            .await
            .assert(403, forbidden());
    }
    assert_eq!(w.count("user_profile").await, 1);
    w.read("user_profile", geralt.profile()).await;
}

#[tokio::test]
async fn profiles_are_read_and_updated_with_object_permissions() {
    let w = World::new().await;
    w.patch(
        &class_path("user_profile"),
        &w.owner,
        json!({"schema": [{"name": "nickname", "type": "string"}]}),
    )
    .await
    .assert_status(200);
    let geralt = w.user("geralt").await;
    let ciri = w.user("ciri").await;
    let profile = object_path("user_profile", geralt.profile());
    let resp = w.get(&profile, &geralt).await;
    assert_object(
        &resp,
        200,
        repr(
            "user_profile",
            geralt.profile(),
            json!({"owner": geralt.id(), "nickname": null}),
        ),
    );
    let resp = w
        .patch(&profile, &geralt, json!({"nickname": "White Wolf"}))
        .await;
    assert_object(
        &resp,
        200,
        repr(
            "user_profile",
            geralt.profile(),
            json!({"owner": geralt.id(), "nickname": "White Wolf", "revision": 2}),
        ),
    );
    w.get(&profile, &ciri).await.assert(404, not_found());
    assert_eq!(
        w.listed(&ciri, &objects_path("user_profile")).await,
        [ciri.profile()]
    );
    w.patch(&profile, &w.owner, json!({"other_permissions": "read"}))
        .await
        .assert_status(200);
    let read = w.get(&profile, &ciri).await;
    assert_eq!(read.assert_status(200)["nickname"], "White Wolf");
    w.patch(&profile, &ciri, json!({"nickname": "Butcher"}))
        .await
        .assert(403, forbidden());
    assert_eq!(
        w.listed(&ciri, &objects_path("user_profile")).await,
        [geralt.profile(), ciri.profile()]
    );
}

// ================================================================ lists: order

#[tokio::test]
async fn objects_are_listed_by_id_ascending_unless_ordering_is_desc() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"reward": 3})).await;
    let b = w.contract(json!({"reward": 1})).await;
    let c = w.contract(json!({"reward": 2})).await;
    let list = objects_path("contracts");
    let resp = w.get(&list, &w.owner).await;
    let body = resp.assert_status(200);
    assert_eq!(ids(body), [a, b, c]);
    assert_eq!((&body["next"], &body["prev"]), (&Value::Null, &Value::Null));
    for (ordering, expected) in [
        ("asc", [a, b, c]),
        ("desc", [c, b, a]),
        ("DESC", [c, b, a]),
        ("sideways", [a, b, c]),
    ] {
        assert_eq!(
            w.listed(&w.owner, &url(&list, &[("ordering", ordering)]))
                .await,
            expected,
            "ordering={ordering}"
        );
    }
    for (order_by, expected) in [("id", [a, b, c]), ("-id", [c, b, a])] {
        assert_eq!(
            w.listed(&w.owner, &url(&list, &[("order_by", order_by)]))
                .await,
            expected,
            "order_by={order_by}"
        );
    }
}

/// Six contracts with rewards 300, null, 100, 300, null, 200 (ids ascending): returns the ids.
async fn rewarded(w: &World) -> [i64; 6] {
    w.contracts(json!({})).await;
    let mut ids = [0; 6];
    for (slot, reward) in ids.iter_mut().zip([
        json!(300),
        Value::Null,
        json!(100),
        json!(300),
        Value::Null,
        json!(200),
    ]) {
        *slot = w.contract(json!({"reward": reward})).await;
    }
    ids
}

#[tokio::test]
async fn order_by_puts_nulls_last_ascending_and_first_descending_with_ties_by_id() {
    let w = World::new().await;
    let [a, b, c, d, e, f] = rewarded(&w).await;
    let list = objects_path("contracts");
    assert_eq!(
        w.listed(&w.owner, &url(&list, &[("order_by", "reward")]))
            .await,
        [c, f, a, d, b, e]
    );
    assert_eq!(
        w.listed(&w.owner, &url(&list, &[("order_by", "-reward")]))
            .await,
        [e, b, d, a, f, c]
    );
    // order_by overrides ordering: its sign alone sets the direction.
    assert_eq!(
        w.listed(
            &w.owner,
            &url(&list, &[("order_by", "reward"), ("ordering", "desc")])
        )
        .await,
        [c, f, a, d, b, e]
    );
    assert_eq!(
        w.listed(
            &w.owner,
            &url(&list, &[("ordering", "asc"), ("order_by", "-reward")])
        )
        .await,
        [e, b, d, a, f, c]
    );
}

#[tokio::test]
async fn order_by_pages_link_with_last_value_and_show_every_object_once() {
    let w = World::new().await;
    let [a, b, c, d, e, f] = rewarded(&w).await;
    let list = objects_path("contracts");
    let first = url(&list, &[("order_by", "reward"), ("page_size", "2")]);
    let page1 = w.get(&first, &w.owner).await.assert_status(200).clone();
    assert_eq!(ids(&page1), [c, f]);
    assert_eq!(page1["prev"], Value::Null);
    let shape = |last_pk: i64, last_value: Option<&str>, direction: &str| {
        let mut params = vec![
            ("direction", direction.to_owned()),
            ("last_pk", last_pk.to_string()),
            ("order_by", "reward".to_owned()),
            ("page_size", "2".to_owned()),
        ];
        if let Some(value) = last_value {
            params.push(("last_value", value.to_owned()));
        }
        params
    };
    assert_link(&page1["next"], &list, &shape(f, Some("200"), "1"));
    let page2 = w
        .get(page1["next"].as_str().unwrap(), &w.owner)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(ids(&page2), [a, d]);
    assert_link(&page2["next"], &list, &shape(d, Some("300"), "1"));
    assert_link(&page2["prev"], &list, &shape(a, Some("300"), "0"));
    let page3 = w
        .get(page2["next"].as_str().unwrap(), &w.owner)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(ids(&page3), [b, e]);
    // The page ends on a null: its link has no last_value.
    assert_link(&page3["next"], &list, &shape(e, None, "1"));
    let page4 = w
        .get(page3["next"].as_str().unwrap(), &w.owner)
        .await
        .assert_status(200)
        .clone();
    assert_eq!((ids(&page4), &page4["next"]), (vec![], &Value::Null));
    // Back from page 2 to page 1.
    let back = w
        .get(page2["prev"].as_str().unwrap(), &w.owner)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(ids(&back), [c, f]);

    let ascending = [c, f, a, d, b, e];
    let forward: Vec<i64> = w.pages(&w.owner, &first).await.concat();
    assert_eq!(forward, ascending);
    let last = page4["prev"].as_str().expect("a prev link after a cursor");
    assert_eq!(w.pages_back(&w.owner, last).await.concat(), ascending);

    let descending = [e, b, d, a, f, c];
    let first = url(&list, &[("order_by", "-reward"), ("page_size", "2")]);
    let page1 = w.get(&first, &w.owner).await.assert_status(200).clone();
    assert_eq!(ids(&page1), [e, b]);
    let mut params = shape(b, None, "1");
    params[2].1 = "-reward".to_owned();
    assert_link(&page1["next"], &list, &params);
    let pages = w.pages(&w.owner, &first).await;
    assert_eq!(pages.concat(), descending);
    for size in ["1", "4", "5"] {
        let first = url(&list, &[("order_by", "-reward"), ("page_size", size)]);
        assert_eq!(
            w.pages(&w.owner, &first).await.concat(),
            descending,
            "page_size={size}"
        );
        let first = url(&list, &[("page_size", size), ("order_by", "reward")]);
        assert_eq!(
            w.pages(&w.owner, &first).await.concat(),
            ascending,
            "page_size={size}"
        );
    }
}

#[tokio::test]
async fn order_by_created_at_and_updated_at_follow_the_writes() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({})).await;
    let b = w.contract(json!({})).await;
    let c = w.contract(json!({})).await;
    for x in [b, c, a] {
        w.patch(&object_path("contracts", x), &w.owner, json!({"reward": 1}))
            .await
            .assert_status(200);
    }
    let list = objects_path("contracts");
    for (order_by, expected) in [
        ("created_at", [a, b, c]),
        ("-created_at", [c, b, a]),
        ("updated_at", [b, c, a]),
        ("-updated_at", [a, c, b]),
    ] {
        assert_eq!(
            w.listed(&w.owner, &url(&list, &[("order_by", order_by)]))
                .await,
            expected,
            "order_by={order_by}"
        );
        let paged = url(&list, &[("order_by", order_by), ("page_size", "2")]);
        let pages = w.pages(&w.owner, &paged).await;
        assert_eq!(pages.concat(), expected, "order_by={order_by} paged");
        assert_eq!(pages.len(), 2);
    }
}

#[tokio::test]
async fn strings_order_by_unicode_code_point() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let b = w.contract(json!({"title": "b"})).await;
    let a = w.contract(json!({"title": "a"})).await;
    let upper_b = w.contract(json!({"title": "B"})).await;
    let e_acute = w.contract(json!({"title": "é"})).await;
    let z = w.contract(json!({"title": "Z"})).await;
    let space = w.contract(json!({"title": " a"})).await;
    let list = objects_path("contracts");
    let expected = [space, upper_b, z, a, b, e_acute];
    assert_eq!(
        w.listed(&w.owner, &url(&list, &[("order_by", "title")]))
            .await,
        expected
    );
    let paged = url(&list, &[("order_by", "title"), ("page_size", "2")]);
    assert_eq!(w.pages(&w.owner, &paged).await.concat(), expected);
    let mut reversed = expected;
    reversed.reverse();
    let paged = url(&list, &[("order_by", "-title"), ("page_size", "4")]);
    assert_eq!(w.pages(&w.owner, &paged).await.concat(), reversed);
}

#[tokio::test]
async fn floats_booleans_and_datetimes_order_by_value() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w
        .contract(json!({"weight": 2.5, "done": true, "due": "2016-03-17T20:00:00Z"}))
        .await;
    let b = w
        .contract(json!({"weight": -1, "done": false, "due": "2017-01-01T00:00:00Z"}))
        .await;
    let c = w
        .contract(json!({"weight": 10, "done": true, "due": "2015-06-01T12:30:00.5Z"}))
        .await;
    let d = w.contract(json!({})).await;
    let list = objects_path("contracts");
    for (order_by, expected) in [
        ("weight", [b, a, c, d]),
        ("-weight", [d, c, a, b]),
        ("done", [b, a, c, d]),
        ("-done", [d, c, a, b]),
        ("due", [c, a, b, d]),
        ("-due", [d, b, a, c]),
    ] {
        assert_eq!(
            w.listed(&w.owner, &url(&list, &[("order_by", order_by)]))
                .await,
            expected,
            "order_by={order_by}"
        );
        let paged = url(&list, &[("order_by", order_by), ("page_size", "1")]);
        assert_eq!(
            w.pages(&w.owner, &paged).await.concat(),
            expected,
            "order_by={order_by} paged"
        );
    }
}

#[tokio::test]
async fn order_by_a_field_that_cannot_order_is_refused() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.class(json!({"name": "filters", "schema": [
        {"name": "title", "type": "string", "filter_index": true}
    ]}))
    .await;
    let list = objects_path("contracts");
    for (order_by, message) in [
        ("nope", "Incorrect order_by parameter provided."),
        ("-nope", "Incorrect order_by parameter provided."),
        ("Reward", "Incorrect order_by parameter provided."),
        ("revision", "Cannot use specified order_by field."),
        ("-owner", "Cannot use specified order_by field."),
        ("channel", "Cannot use specified order_by field."),
        ("group", "Cannot use specified order_by field."),
        (
            "plain",
            "Cannot use specified order_by field. Set required index on schema first.",
        ),
        (
            "-notes",
            "Cannot use specified order_by field. Set required index on schema first.",
        ),
        (
            "parent",
            "Cannot use specified order_by field. Set required index on schema first.",
        ),
    ] {
        w.get(&url(&list, &[("order_by", order_by)]), &w.owner)
            .await
            .assert(400, json!({"detail": message}));
    }
    w.get(
        &url(&objects_path("filters"), &[("order_by", "title")]),
        &w.owner,
    )
    .await
    .assert(
        400,
        json!({"detail":
            "Cannot use specified order_by field. Set required index on schema first."}),
    );
}

// ================================================================ lists: counts and paging

#[tokio::test]
async fn include_count_adds_the_exact_count_for_any_true_spelling() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    for _ in 0..5 {
        w.contract(json!({})).await;
    }
    let list = objects_path("contracts");
    for spelling in ["true", "True", "TRUE", "1", "yes", "y", "on", "t", "T"] {
        let resp = w
            .get(
                &url(&list, &[("include_count", spelling), ("page_size", "2")]),
                &w.owner,
            )
            .await;
        let body = resp.assert_status(200);
        assert_eq!(body["objects_count"], 5, "include_count={spelling}");
        assert_eq!(ids(body).len(), 2);
    }
    for spelling in ["false", "0", "no", "maybe"] {
        let resp = w
            .get(&url(&list, &[("include_count", spelling)]), &w.owner)
            .await;
        let keys: BTreeSet<&str> = resp
            .assert_status(200)
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["objects", "next", "prev"]),
            "include_count={spelling}"
        );
    }
}

#[tokio::test]
async fn include_count_counts_what_the_query_and_the_callers_permissions_leave() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    for reward in [1, 2, 3] {
        w.contract(json!({"reward": reward, "other_permissions": "read"}))
            .await;
    }
    for reward in [4, 5] {
        w.contract(json!({"reward": reward})).await;
    }
    let list = objects_path("contracts");
    let count = |who: &Who, query: Option<&str>| {
        let mut params = vec![("include_count", "true"), ("page_size", "1")];
        if let Some(query) = query {
            params.push(("query", query));
        }
        let path = url(&list, &params);
        let who = who.clone();
        let w = &w;
        async move {
            w.get(&path, &who).await.assert_status(200)["objects_count"]
                .as_i64()
                .expect("objects_count")
        }
    };
    assert_eq!(count(&w.owner, None).await, 5);
    assert_eq!(count(&geralt, None).await, 3);
    assert_eq!(count(&w.reader, None).await, 3);
    let query = r#"{"reward": {"_gte": 2}}"#;
    assert_eq!(count(&w.owner, Some(query)).await, 4);
    assert_eq!(count(&geralt, Some(query)).await, 2);
}

#[tokio::test]
async fn page_size_zero_returns_an_empty_page_without_links() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({})).await;
    w.contract(json!({})).await;
    let list = objects_path("contracts");
    w.get(&url(&list, &[("page_size", "0")]), &w.owner)
        .await
        .assert(200, json!({"objects": [], "next": null, "prev": null}));
    w.get(
        &url(&list, &[("page_size", "0"), ("include_count", "1")]),
        &w.owner,
    )
    .await
    .assert(
        200,
        json!({"objects": [], "next": null, "prev": null, "objects_count": 2}),
    );
    let a = a.to_string();
    w.get(
        &url(
            &list,
            &[("page_size", "0"), ("last_pk", &a), ("direction", "1")],
        ),
        &w.owner,
    )
    .await
    .assert(200, json!({"objects": [], "next": null, "prev": null}));
    w.get(
        &url(
            &list,
            &[
                ("page_size", "0"),
                ("order_by", "-reward"),
                ("ordering", "desc"),
            ],
        ),
        &w.owner,
    )
    .await
    .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn bad_paging_parameters_are_refused() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let list = objects_path("contracts");
    for params in [
        [("page_size", "-1"), ("ordering", "asc")],
        [("page_size", "abc"), ("ordering", "asc")],
        [("direction", "2"), ("last_pk", "1")],
        [("direction", "1"), ("last_pk", "x")],
        [("direction", "1"), ("last_pk", "-3")],
    ] {
        w.get(&url(&list, &params), &w.owner)
            .await
            .assert(400, json!({"detail": "Incorrect page parameter provided."}));
    }
}

#[tokio::test]
async fn id_pages_link_to_each_other_and_show_every_object_once() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let mut all = Vec::new();
    for _ in 0..5 {
        all.push(w.contract(json!({})).await);
    }
    let list = objects_path("contracts");
    let first = url(&list, &[("page_size", "2")]);
    let page1 = w.get(&first, &w.owner).await.assert_status(200).clone();
    assert_eq!(ids(&page1), all[..2]);
    assert_link(
        &page1["next"],
        &list,
        &[
            ("direction", "1".to_owned()),
            ("last_pk", all[1].to_string()),
            ("page_size", "2".to_owned()),
        ],
    );
    let pages = w.pages(&w.owner, &first).await;
    assert_eq!(
        pages,
        [all[..2].to_vec(), all[2..4].to_vec(), all[4..].to_vec()]
    );
    let mut descending = all.clone();
    descending.reverse();
    let first = url(&list, &[("page_size", "2"), ("ordering", "desc")]);
    assert_eq!(w.pages(&w.owner, &first).await.concat(), descending);
    let page = w
        .get(
            &url(
                &list,
                &[
                    ("page_size", "2"),
                    ("ordering", "desc"),
                    ("direction", "1"),
                    ("last_pk", &all[3].to_string()),
                ],
            ),
            &w.owner,
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(ids(&page), [all[2], all[1]]);
    assert_eq!(
        w.pages_back(&w.owner, page["prev"].as_str().unwrap())
            .await
            .concat(),
        [all[4], all[3]]
    );
}

#[tokio::test]
async fn a_repeated_list_parameter_takes_its_last_value() {
    let w = World::new().await;
    let [a, b, c, d, e, f] = rewarded(&w).await;
    let list = objects_path("contracts");
    assert_eq!(
        w.listed(
            &w.owner,
            &url(&list, &[("page_size", "1"), ("page_size", "3")])
        )
        .await,
        [a, b, c]
    );
    assert_eq!(
        w.listed(
            &w.owner,
            &url(&list, &[("ordering", "desc"), ("ordering", "asc")])
        )
        .await,
        [a, b, c, d, e, f]
    );
    assert_eq!(
        w.listed(
            &w.owner,
            &url(&list, &[("order_by", "reward"), ("order_by", "-reward")])
        )
        .await,
        [e, b, d, a, f, c]
    );
    let resp = w
        .get(
            &url(
                &list,
                &[("include_count", "false"), ("include_count", "true")],
            ),
            &w.owner,
        )
        .await;
    assert_eq!(resp.assert_status(200)["objects_count"], 6);
    // Following links that carry the parameters again still walks the whole list once.
    let first = url(
        &list,
        &[("page_size", "5"), ("order_by", "-id"), ("page_size", "2")],
    );
    assert_eq!(w.pages(&w.owner, &first).await.concat(), [f, e, d, c, b, a]);
}

#[tokio::test]
async fn fields_and_excluded_fields_shape_listed_and_read_objects() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let a = w.contract(json!({"title": "Griffin", "reward": 5})).await;
    let list = objects_path("contracts");
    w.get(&url(&list, &[("fields", "id,title,nope")]), &w.owner)
        .await
        .assert(
            200,
            json!({"objects": [{"id": a, "title": "Griffin"}], "next": null, "prev": null}),
        );
    w.get(
        &url(
            &object_path("contracts", a),
            &[("fields", "id,reward,links"), ("excluded_fields", "links")],
        ),
        &w.owner,
    )
    .await
    .assert(200, json!({"id": a, "reward": 5}));
}

// ================================================================ query

/// Objects of `contracts` with known built-in and custom values, for query tests.
struct Seeded {
    w: World,
    geralt: Who,
    ciri: Who,
    witchers: i64,
    /// owner geralt, group witchers, channel board, reward 100, title "Griffin", ...
    a: i64,
    /// owner ciri, channel witchers room "novigrad", reward 200, title "Leshen", updated once
    b: i64,
    /// no owner, nothing set
    c: i64,
    /// no owner, reward 300, title "griffin", parent a
    d: i64,
}

async fn seeded() -> Seeded {
    let w = World::new().await;
    w.contracts(json!({})).await;
    let geralt = w.user("geralt").await;
    let ciri = w.user("ciri").await;
    let witchers = w.group("witchers").await;
    w.channel(json!({"name": "board"})).await;
    w.channel(json!({"name": "witchers", "type": "separate_rooms"}))
        .await;
    let a = w
        .object(
            "contracts",
            &w.trusted,
            json!({"owner": geralt.id(), "group": witchers, "channel": "board",
                   "reward": 100, "title": "Griffin", "weight": 1.5, "done": true,
                   "due": "2016-03-17T20:00:00Z"}),
        )
        .await;
    let b = w
        .object(
            "contracts",
            &w.trusted,
            json!({"owner": ciri.id(), "channel": "witchers", "channel_room": "Novigrad",
                   "reward": 200, "title": "Leshen", "weight": 2.5, "done": false,
                   "due": "2017-03-17T20:00:00Z"}),
        )
        .await;
    let c = w.contract(json!({})).await;
    let d = w
        .contract(json!({"reward": 300, "title": "griffin", "weight": 1, "parent": a}))
        .await;
    w.patch(
        &object_path("contracts", b),
        &w.owner,
        json!({"notes": "x"}),
    )
    .await
    .assert_status(200);
    Seeded {
        w,
        geralt,
        ciri,
        witchers,
        a,
        b,
        c,
        d,
    }
}

impl Seeded {
    async fn expect(&self, query: Value, expected: &[i64]) {
        assert_eq!(
            self.w
                .found(&self.w.owner, "contracts", query.clone())
                .await,
            expected,
            "query {query}"
        );
    }
}

#[tokio::test]
async fn query_lookups_on_id() {
    let s = seeded().await;
    let (a, b, c, d) = (s.a, s.b, s.c, s.d);
    s.expect(json!({"id": {"_eq": b}}), &[b]).await;
    s.expect(json!({"id": {"_neq": b}}), &[a, c, d]).await;
    s.expect(json!({"id": {"_gt": b}}), &[c, d]).await;
    s.expect(json!({"id": {"_gte": b}}), &[b, c, d]).await;
    s.expect(json!({"id": {"_lt": c}}), &[a, b]).await;
    s.expect(json!({"id": {"_lte": c}}), &[a, b, c]).await;
    s.expect(json!({"id": {"_in": [a, d, d + 1000]}}), &[a, d])
        .await;
    s.expect(json!({"id": {"_nin": [a, d]}}), &[b, c]).await;
    s.expect(json!({"id": {"_exists": true}}), &[a, b, c, d])
        .await;
    s.expect(json!({"id": {"_exists": false}}), &[]).await;
}

#[tokio::test]
async fn query_lookups_on_timestamps_and_revision() {
    let s = seeded().await;
    let (a, b, c, d) = (s.a, s.b, s.c, s.d);
    let read = |x| s.w.read("contracts", x);
    let b_created = read(b).await["created_at"].clone();
    let b_updated = read(b).await["updated_at"].clone();
    let d_updated = read(d).await["updated_at"].clone();
    s.expect(json!({"created_at": {"_eq": b_created}}), &[b])
        .await;
    s.expect(json!({"created_at": {"_gt": b_created}}), &[c, d])
        .await;
    s.expect(json!({"created_at": {"_gte": b_created}}), &[b, c, d])
        .await;
    s.expect(json!({"created_at": {"_lt": b_created}}), &[a])
        .await;
    s.expect(json!({"created_at": {"_lte": b_created}}), &[a, b])
        .await;
    s.expect(json!({"created_at": {"_neq": b_created}}), &[a, c, d])
        .await;
    s.expect(json!({"created_at": {"_in": [b_created]}}), &[b])
        .await;
    s.expect(json!({"created_at": {"_nin": [b_created]}}), &[a, c, d])
        .await;
    s.expect(
        json!({"created_at": {"_gt": "2000-01-01T00:00:00Z"}}),
        &[a, b, c, d],
    )
    .await;
    // b was updated after d was created.
    s.expect(json!({"updated_at": {"_gt": d_updated}}), &[b])
        .await;
    s.expect(json!({"updated_at": {"_eq": b_updated}}), &[b])
        .await;
    s.expect(json!({"updated_at": {"_lte": d_updated}}), &[a, c, d])
        .await;
    s.expect(json!({"revision": {"_eq": 2}}), &[b]).await;
    s.expect(json!({"revision": {"_gt": 1}}), &[b]).await;
    s.expect(json!({"revision": {"_lt": 2}}), &[a, c, d]).await;
    s.expect(json!({"revision": {"_in": [1]}}), &[a, c, d])
        .await;
}

#[tokio::test]
async fn query_lookups_on_owner_and_group() {
    let s = seeded().await;
    let (a, b, c, d) = (s.a, s.b, s.c, s.d);
    let (geralt, ciri) = (s.geralt.id(), s.ciri.id());
    s.expect(json!({"owner": {"_eq": geralt}}), &[a]).await;
    s.expect(json!({"owner": {"_in": [geralt, ciri]}}), &[a, b])
        .await;
    s.expect(json!({"owner": {"_gte": geralt.min(ciri)}}), &[a, b])
        .await;
    s.expect(json!({"owner": {"_exists": false}}), &[c, d])
        .await;
    s.expect(json!({"owner": {"_exists": true}}), &[a, b]).await;
    // A null owner is not equal to geralt (Herald's documented choice).
    s.expect(json!({"owner": {"_neq": geralt}}), &[b, c, d])
        .await;
    s.expect(json!({"owner": {"_nin": [geralt]}}), &[b, c, d])
        .await;
    s.expect(json!({"group": {"_eq": s.witchers}}), &[a]).await;
    s.expect(json!({"group": {"_neq": s.witchers}}), &[b, c, d])
        .await;
    s.expect(json!({"group": {"_exists": true}}), &[a]).await;
    s.expect(json!({"group": {"_lt": s.witchers}}), &[]).await;
}

#[tokio::test]
async fn query_lookups_on_channel_and_channel_room() {
    let s = seeded().await;
    let (a, b, c, d) = (s.a, s.b, s.c, s.d);
    s.expect(json!({"channel": {"_eq": "witchers"}}), &[b])
        .await;
    s.expect(json!({"channel": {"_in": ["board", "witchers"]}}), &[a, b])
        .await;
    s.expect(json!({"channel": {"_neq": "board"}}), &[b, c, d])
        .await;
    s.expect(json!({"channel": {"_nin": ["witchers"]}}), &[a, c, d])
        .await;
    s.expect(json!({"channel": {"_gt": "board"}}), &[b]).await;
    s.expect(json!({"channel": {"_exists": false}}), &[c, d])
        .await;
    s.expect(json!({"channel": {"_exists": true}}), &[a, b])
        .await;
    s.expect(json!({"channel_room": {"_eq": "novigrad"}}), &[b])
        .await;
    s.expect(json!({"channel_room": {"_exists": true}}), &[b])
        .await;
    s.expect(json!({"channel_room": {"_neq": "novigrad"}}), &[a, c, d])
        .await;
}

#[tokio::test]
async fn query_lookups_on_an_integer_field() {
    let s = seeded().await;
    let (a, b, c, d) = (s.a, s.b, s.c, s.d);
    s.expect(json!({"reward": {"_eq": 200}}), &[b]).await;
    s.expect(json!({"reward": {"_neq": 200}}), &[a, c, d]).await;
    s.expect(json!({"reward": {"_gt": 100}}), &[b, d]).await;
    s.expect(json!({"reward": {"_gte": 100}}), &[a, b, d]).await;
    s.expect(json!({"reward": {"_lt": 300}}), &[a, b]).await;
    s.expect(json!({"reward": {"_lte": 300}}), &[a, b, d]).await;
    s.expect(json!({"reward": {"_in": [100, 300, 5]}}), &[a, d])
        .await;
    s.expect(json!({"reward": {"_nin": [100, 300]}}), &[b, c])
        .await;
    s.expect(json!({"reward": {"_exists": true}}), &[a, b, d])
        .await;
    s.expect(json!({"reward": {"_exists": false}}), &[c]).await;
}

#[tokio::test]
async fn query_lookups_on_string_float_boolean_datetime_and_reference_fields() {
    let s = seeded().await;
    let (a, b, c, d) = (s.a, s.b, s.c, s.d);
    s.expect(json!({"title": {"_eq": "Griffin"}}), &[a]).await;
    s.expect(json!({"title": {"_in": ["griffin", "Leshen"]}}), &[b, d])
        .await;
    s.expect(json!({"title": {"_gt": "Griffin"}}), &[b, d])
        .await;
    s.expect(json!({"title": {"_lt": "a"}}), &[a, b]).await;
    s.expect(json!({"weight": {"_gte": 1.5}}), &[a, b]).await;
    s.expect(json!({"weight": {"_lt": 2}}), &[a, d]).await;
    s.expect(json!({"weight": {"_eq": 1}}), &[d]).await;
    s.expect(json!({"done": {"_eq": true}}), &[a]).await;
    s.expect(json!({"done": {"_eq": false}}), &[b]).await;
    s.expect(json!({"done": {"_neq": true}}), &[b, c, d]).await;
    s.expect(json!({"due": {"_gt": "2016-06-01T00:00:00Z"}}), &[b])
        .await;
    s.expect(json!({"due": {"_eq": "2016-03-17T21:00:00+01:00"}}), &[a])
        .await;
    s.expect(
        json!({"due": {"_lte": "2017-03-17T20:00:00.000000Z"}}),
        &[a, b],
    )
    .await;
    s.expect(json!({"parent": {"_eq": a}}), &[d]).await;
    s.expect(json!({"parent": {"_exists": false}}), &[a, b, c])
        .await;
}

#[tokio::test]
async fn a_null_value_matches_only_neq_nin_and_exists_false() {
    let s = seeded().await;
    let c = s.c;
    for (lookup, value, matches) in [
        ("_eq", json!(5), false),
        ("_neq", json!(5), true),
        ("_gt", json!(-1_000_000), false),
        ("_gte", json!(-1_000_000), false),
        ("_lt", json!(1_000_000), false),
        ("_lte", json!(1_000_000), false),
        ("_in", json!([5]), false),
        ("_nin", json!([5]), true),
        ("_exists", json!(true), false),
        ("_exists", json!(false), true),
    ] {
        let query = json!({"reward": {lookup: value}});
        let found = s.w.found(&s.w.owner, "contracts", query.clone()).await;
        assert_eq!(found.contains(&c), matches, "query {query}: {found:?}");
    }
}

#[tokio::test]
async fn conditions_of_one_query_and_of_repeated_queries_are_anded() {
    let s = seeded().await;
    let (b, d) = (s.b, s.d);
    s.expect(json!({"reward": {"_gt": 100, "_lt": 300}}), &[b])
        .await;
    s.expect(
        json!({"reward": {"_gte": 100}, "title": {"_in": ["griffin", "Griffin"]}}),
        &[s.a, d],
    )
    .await;
    let list = objects_path("contracts");
    let path = url(
        &list,
        &[
            ("query", r#"{"reward": {"_gte": 200}}"#),
            ("query", r#"{"reward": {"_lte": 200}}"#),
        ],
    );
    assert_eq!(s.w.listed(&s.w.owner, &path).await, [b]);
    let path = url(
        &list,
        &[
            ("query", r#"{"reward": {"_gte": 200}}"#),
            ("query", r#"{"owner": {"_exists": false}}"#),
        ],
    );
    assert_eq!(s.w.listed(&s.w.owner, &path).await, [d]);
}

#[tokio::test]
async fn a_query_sees_only_objects_the_caller_may_read_and_pages_keep_it() {
    let s = seeded().await;
    let (a, b) = (s.a, s.b);
    // Only their own objects (owner_permissions full) are readable to the users.
    assert_eq!(
        s.w.found(&s.geralt, "contracts", json!({"reward": {"_exists": true}}))
            .await,
        [a]
    );
    assert_eq!(
        s.w.found(&s.ciri, "contracts", json!({"title": {"_neq": "x"}}))
            .await,
        [b]
    );
    let first = url(
        &objects_path("contracts"),
        &[
            ("query", r#"{"reward": {"_gte": 100}}"#),
            ("page_size", "1"),
            ("order_by", "-reward"),
        ],
    );
    assert_eq!(s.w.pages(&s.w.owner, &first).await.concat(), [s.d, b, a]);
}

#[tokio::test]
async fn query_errors_answer_400_with_a_string_message() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    w.class(json!({"name": "wide", "schema": (0..9)
        .map(|i| json!({"name": format!("f{i}"), "type": "integer", "filter_index": true}))
        .collect::<Vec<_>>()}))
        .await;
    let refused = |class: &'static str, query: String, message: String| {
        let w = &w;
        async move {
            w.get(&url(&objects_path(class), &[("query", &query)]), &w.owner)
                .await
                .assert(400, json!({"query": message}));
        }
    };
    let long_name = "a".repeat(65);
    refused(
        "contracts",
        "nope".into(),
        "Not a valid JSON string.".into(),
    )
    .await;
    refused(
        "contracts",
        "{\"reward\":".into(),
        "Not a valid JSON string.".into(),
    )
    .await;
    for not_an_object in ["[1]", "5", "\"x\"", "null"] {
        refused(
            "contracts",
            not_an_object.into(),
            "Query passed in invalid format.".into(),
        )
        .await;
    }
    // 17 fields, every one filterable.
    let mut wide = json!({});
    for name in [
        "id",
        "created_at",
        "updated_at",
        "revision",
        "owner",
        "group",
        "channel",
        "channel_room",
    ] {
        wide[name] = json!({"_exists": true});
    }
    for i in 0..9 {
        wide[format!("f{i}")] = json!({"_exists": true});
    }
    refused(
        "wide",
        wide.to_string(),
        "Too many keys defined (exceeds 16).".into(),
    )
    .await;
    wide.as_object_mut().unwrap().remove("id");
    w.get(
        &url(&objects_path("wide"), &[("query", &wide.to_string())]),
        &w.owner,
    )
    .await
    .assert_status(200);
    for (query, message) in [
        (
            json!({"nope": {"_eq": 1}}),
            "Invalid field name defined: \"nope\".",
        ),
        (
            json!({"owner_permissions": {"_eq": "full"}}),
            "Invalid field name defined: \"owner_permissions\".",
        ),
        (
            json!({"Reward": {"_eq": 1}}),
            "Invalid field name defined: \"Reward\".",
        ),
        (
            json!({"plain": {"_eq": 1}}),
            "Field \"plain\" cannot be used in a query as it is not indexed.",
        ),
        (
            json!({"notes": {"_exists": true}}),
            "Field \"notes\" cannot be used in a query as it is not indexed.",
        ),
        (
            json!({"reward": 5}),
            "Invalid field \"reward\" lookup type. Expected JSON object.",
        ),
        (
            json!({"id": [1]}),
            "Invalid field \"id\" lookup type. Expected JSON object.",
        ),
        (
            json!({"reward": {"_equal": 5}}),
            "Invalid lookup \"_equal\" defined for field \"reward\".",
        ),
        (
            json!({"reward": {"eq": 5}}),
            "Invalid lookup \"eq\" defined for field \"reward\".",
        ),
        (
            json!({"reward": {"_gt": "a"}}),
            "Invalid value type provided for \"gt\" lookup of field \"reward\".",
        ),
        (
            json!({"reward": {"_in": 5}}),
            "Invalid value type provided for \"in\" lookup of field \"reward\".",
        ),
        (
            json!({"reward": {"_nin": [1, "a"]}}),
            "Invalid value type provided for \"nin\" lookup of field \"reward\".",
        ),
        (
            json!({"reward": {"_exists": "yes"}}),
            "Invalid value type provided for \"exists\" lookup of field \"reward\".",
        ),
        (
            json!({"reward": {"_in": (0..129).collect::<Vec<_>>()}}),
            "Too many values provided for \"in\" lookup of field \"reward\". Max 128.",
        ),
        (
            json!({"id": {"_nin": (0..129).collect::<Vec<_>>()}}),
            "Too many values provided for \"nin\" lookup of field \"id\". Max 128.",
        ),
        (
            json!({"title": {"_in": vec!["t".repeat(70); 120]}}),
            "Too long value defined for key title (exceeds 8192).",
        ),
        (
            json!({long_name: {"_eq": 1}}),
            "Too long key defined (exceeds 64).",
        ),
    ] {
        refused("contracts", query.to_string(), message.into()).await;
    }
    w.get(
        &url(
            &objects_path("contracts"),
            &[(
                "query",
                &json!({"reward": {"_in": (0..128).collect::<Vec<_>>()}}).to_string(),
            )],
        ),
        &w.owner,
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn query_values_are_validated_against_the_field_type() {
    let w = World::new().await;
    w.contracts(json!({})).await;
    for (field, lookup, value) in [
        ("id", "_eq", json!("x")),
        ("id", "_gt", json!(1.5)),
        ("created_at", "_gt", json!("not a date")),
        ("updated_at", "_lt", json!(5)),
        ("revision", "_eq", json!(true)),
        ("owner", "_eq", json!({"id": 1})),
        ("group", "_in", json!([null])),
        ("channel", "_eq", json!(5)),
        ("channel_room", "_eq", json!("r".repeat(129))),
        ("title", "_eq", json!("t".repeat(129))),
        ("title", "_gt", json!(5)),
        ("reward", "_eq", json!(1.5)),
        ("reward", "_eq", json!(2_147_483_648_i64)),
        ("reward", "_lt", json!("5")),
        ("weight", "_gte", json!("1.5")),
        ("done", "_eq", json!(1)),
        ("due", "_gt", json!("yesterday")),
        ("due", "_lt", json!(0)),
        ("parent", "_eq", json!("x")),
    ] {
        let query = json!({field: {lookup: value}}).to_string();
        let bare = lookup.trim_start_matches('_');
        w.get(
            &url(&objects_path("contracts"), &[("query", &query)]),
            &w.owner,
        )
        .await
        .assert(
            400,
            json!({"query":
                format!("Invalid value type provided for \"{bare}\" lookup of field \"{field}\".")}),
        );
    }
}

// ================================================================ profiles through users

#[tokio::test]
async fn a_user_created_with_a_profile_gets_its_permissions_and_custom_fields() {
    let w = World::new().await;
    w.patch(
        &class_path("user_profile"),
        &w.owner,
        json!({"schema": [
            {"name": "nickname", "type": "string", "filter_index": true},
            {"name": "level", "type": "integer"}
        ]}),
    )
    .await
    .assert_status(200);
    let resp = w
        .post(
            "/v1.1/instances/rivia/users/",
            &w.owner,
            json!({"username": "geralt", "password": PASSWORD, "profile": {
                "nickname": "White Wolf", "level": 3, "other_permissions": "read"
            }}),
        )
        .await;
    let user = resp.assert_status(201).clone();
    let (user_id, profile_id) = (id(&user), id(&user["profile"]));
    let expected = repr(
        "user_profile",
        profile_id,
        json!({"owner": user_id, "nickname": "White Wolf", "level": 3,
               "other_permissions": "read"}),
    );
    assert_eq!(without_timestamps(&user["profile"]), expected);
    assert_object(
        &w.get(&object_path("user_profile", profile_id), &w.owner)
            .await,
        200,
        expected.clone(),
    );
    let ciri = w.user("ciri").await;
    assert_object(
        &w.get(&object_path("user_profile", profile_id), &ciri).await,
        200,
        expected,
    );
    assert_eq!(
        w.found(
            &ciri,
            "user_profile",
            json!({"nickname": {"_eq": "White Wolf"}})
        )
        .await,
        [profile_id]
    );
}

#[tokio::test]
async fn a_user_updating_themself_with_a_profile_changes_its_custom_fields() {
    let w = World::new().await;
    w.patch(
        &class_path("user_profile"),
        &w.owner,
        json!({"schema": [{"name": "nickname", "type": "string"},
                          {"name": "level", "type": "integer"}]}),
    )
    .await
    .assert_status(200);
    let geralt = w.user("geralt").await;
    let resp = w
        .patch(
            &user_link(geralt.id()),
            &geralt,
            json!({"profile": {"nickname": "Butcher", "level": 1}}),
        )
        .await;
    let expected = repr(
        "user_profile",
        geralt.profile(),
        json!({"owner": geralt.id(), "nickname": "Butcher", "level": 1, "revision": 2}),
    );
    assert_eq!(
        without_timestamps(&resp.assert_status(200)["profile"]),
        expected
    );
    let resp = w
        .patch(
            "/v1.1/instances/rivia/user/",
            &geralt,
            json!({"profile": {"level": {"_increment": 2}}}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["profile"]["level"], 3);
    assert_eq!(w.read("user_profile", geralt.profile()).await["level"], 3);
    w.patch(
        &user_link(geralt.id()),
        &w.owner,
        json!({"profile": {"level": "x", "nickname": "n".repeat(129)}}),
    )
    .await
    .assert(
        400,
        json!({"profile": {"level": ["A valid integer is required."],
                           "nickname": ["Ensure this field has no more than 128 characters."]}}),
    );
}
