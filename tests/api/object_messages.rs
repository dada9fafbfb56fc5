//! Change messages of data objects (docs/api.md §10.4): exact payloads, delivery on every transport.
//!
//! A data object with a `channel` stores a message in that channel (room = its `channel_room`)
//! in the same transaction as each create, update and delete; the message is delivered like any
//! published one (§9.5–§9.11). Messages are compared whole: `created_at` is checked for the
//! §2.3 form and set aside, every other key is exact.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};
use crate::poll::{id_of, read_resp, spawn_get, within, without_links};
use crate::sse::{sse_connect, sse_path};
use crate::websocket::{Ws, next_json, ws_open, ws_request, ws_url};

const OBJECTS: &str = "/v1.1/instances/rivia/classes/contracts/objects/";
const NO_CHANNEL_PUBLISH: &str = "You do not have permission to publish data to specified channel.";

fn object_path(id: i64) -> String {
    format!("{OBJECTS}{id}/")
}

fn channel_path(channel: &str) -> String {
    format!("/v1.1/instances/rivia/channels/{channel}/")
}

fn poll_path(channel: &str, query: &str) -> String {
    format!("/v1.1/instances/rivia/channels/{channel}/poll/?{query}")
}

// ---------------------------------------------------------------------------------------------
// Callers and fixtures.

/// Who is calling: the key for the API-key slot and, optionally, a user key.
#[derive(Clone, Debug)]
struct Creds {
    api_key: String,
    user_key: Option<String>,
}

impl Creds {
    fn key(api_key: &str) -> Creds {
        Creds {
            api_key: api_key.to_owned(),
            user_key: None,
        }
    }
}

/// Sends a request with `X-API-KEY` and, when given, `X-USER-KEY`.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    creds: &Creds,
    body: Option<Value>,
) -> Resp {
    let mut builder = app.request(method, path, Some(&creds.api_key));
    if let Some(user_key) = &creds.user_key {
        builder = builder.header("X-USER-KEY", user_key);
    }
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    app.send(builder).await
}

/// Instance `rivia` as the tests find it.
struct Rivia {
    /// The owner's account key, and the account's id.
    owner: Creds,
    owner_id: i64,
    /// An `ignore_acl` API key, and its id.
    trusted: Creds,
    trusted_id: i64,
    /// A flagless API key users call with, and its id.
    plain_key: String,
    plain_id: i64,
}

#[derive(Clone, Debug)]
struct User {
    id: i64,
    /// The instance's plain API key plus the user's key.
    creds: Creds,
}

/// Creates an API key with `flags`; returns `(id, key)`.
async fn api_key_with_id(app: &TestApp, flags: Value) -> (i64, String) {
    let resp = app
        .post(
            "/v1.1/instances/rivia/api_keys/",
            Some(&app.admin_key),
            flags,
        )
        .await;
    let body = resp.assert_status(201);
    (
        body["id"].as_i64().expect("api key id"),
        body["api_key"].as_str().expect("api_key").to_owned(),
    )
}

/// Instance `rivia` with:
/// - `witchers`, a `separate_rooms` channel with `custom_publish` on, that users may subscribe
///   to but not publish to;
/// - `board`, a `default` channel with `custom_publish` off and no permissions for users;
/// - `contracts`, a class with a field of every §10.3 type, in which users may create objects.
async fn rivia(app: &TestApp) -> Rivia {
    app.create_instance("rivia").await;
    app.create_channel(
        "rivia",
        json!({"name": "witchers", "type": "separate_rooms", "custom_publish": true,
               "other_permissions": "subscribe"}),
    )
    .await;
    app.create_channel("rivia", json!({"name": "board"})).await;
    app.post(
        "/v1.1/instances/rivia/classes/",
        Some(&app.admin_key),
        json!({"name": "contracts", "schema": [
            {"name": "title", "type": "string"},
            {"name": "reward", "type": "integer"},
            {"name": "n", "type": "integer"},
            {"name": "weight", "type": "float"},
            {"name": "done", "type": "boolean"},
            {"name": "due", "type": "datetime"},
            {"name": "notes", "type": "text"},
            {"name": "details", "type": "object"},
            {"name": "parent", "type": "reference", "target": "self"},
        ]}),
    )
    .await
    .assert_status(201);
    let owner_id = app
        .get("/v1.1/account/", Some(&app.admin_key))
        .await
        .assert_status(200)["id"]
        .as_i64()
        .expect("account id");
    let (trusted_id, trusted) = api_key_with_id(app, json!({"ignore_acl": true})).await;
    let (plain_id, plain_key) = api_key_with_id(app, json!({})).await;
    Rivia {
        owner: Creds::key(&app.admin_key),
        owner_id,
        trusted: Creds::key(&trusted),
        trusted_id,
        plain_key,
        plain_id,
    }
}

impl Rivia {
    /// Creates a user as the owner; the user calls with the plain API key.
    async fn user(&self, app: &TestApp, username: &str) -> User {
        let resp = app
            .post(
                "/v1.1/instances/rivia/users/",
                Some(&app.admin_key),
                json!({"username": username, "password": "user-password"}),
            )
            .await;
        let body = resp.assert_status(201);
        User {
            id: body["id"].as_i64().expect("user id"),
            creds: Creds {
                api_key: self.plain_key.clone(),
                user_key: Some(body["user_key"].as_str().expect("user_key").to_owned()),
            },
        }
    }
}

/// Creates a group and returns its id.
async fn create_group(app: &TestApp, name: &str) -> i64 {
    app.post(
        "/v1.1/instances/rivia/groups/",
        Some(&app.admin_key),
        json!({ "name": name }),
    )
    .await
    .assert_status(201)["id"]
        .as_i64()
        .expect("group id")
}

async fn add_member(app: &TestApp, group: i64, user: i64) {
    app.post(
        &format!("/v1.1/instances/rivia/groups/{group}/users/"),
        Some(&app.admin_key),
        json!({ "user": user }),
    )
    .await
    .assert_status(201);
}

async fn patch_channel(app: &TestApp, channel: &str, body: Value) {
    app.patch(&channel_path(channel), Some(&app.admin_key), body)
        .await
        .assert_status(200);
}

/// Creates an object, which must succeed; returns it as the API did.
async fn create(app: &TestApp, creds: &Creds, body: Value) -> Value {
    let object = call(app, Method::POST, OBJECTS, creds, Some(body))
        .await
        .assert_status(201)
        .clone();
    assert_timestamp(&object["created_at"]);
    assert_timestamp(&object["updated_at"]);
    object
}

/// Updates an object with PATCH, which must succeed; returns it as the API did.
async fn patch(app: &TestApp, creds: &Creds, id: i64, body: Value) -> Value {
    let object = call(app, Method::PATCH, &object_path(id), creds, Some(body))
        .await
        .assert_status(200)
        .clone();
    assert_timestamp(&object["updated_at"]);
    object
}

async fn delete(app: &TestApp, creds: &Creds, id: i64) {
    call(app, Method::DELETE, &object_path(id), creds, None)
        .await
        .assert_status(204);
}

async fn get_object(app: &TestApp, id: i64) -> Value {
    app.get(&object_path(id), Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone()
}

fn object_id(object: &Value) -> i64 {
    object["id"].as_i64().expect("object id")
}

/// Publishes `{"n": n}` to a room of `witchers` as the owner; returns the stored message.
async fn publish_custom(app: &TestApp, room: &str, n: i64) -> Value {
    app.publish(
        "rivia",
        "witchers",
        json!({"room": room, "payload": {"n": n}}),
    )
    .await
}

/// The id the next message of `witchers` gets: ids are consecutive per channel across its rooms
/// (§9.5), so a probe published after some writes shows how many messages they stored in *any*
/// room of the channel.
async fn probe(app: &TestApp) -> i64 {
    id_of(&publish_custom(app, "probe", -1).await)
}

// ---------------------------------------------------------------------------------------------
// Messages.

/// Asserts `2016-03-17T20:13:46.695378Z` form (docs/api.md §2.3).
#[track_caller]
fn assert_timestamp(value: &Value) {
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

/// `message` with its `created_at` checked for the §2.3 form and removed.
#[track_caller]
fn sans_created_at(message: &Value) -> Value {
    let original = message;
    let mut message = message.clone();
    let created_at = message
        .as_object_mut()
        .unwrap_or_else(|| panic!("not a message: {original}"))
        .remove("created_at")
        .unwrap_or_else(|| panic!("a message has a created_at"));
    assert_timestamp(&created_at);
    message
}

/// A change message of class `contracts` as delivered (no `links`, no `created_at`).
fn change(id: i64, action: &str, author: Value, payload: Value, room: Option<&str>) -> Value {
    json!({
        "id": id,
        "action": action,
        "author": author,
        "metadata": {"type": "object", "class": "contracts"},
        "payload": payload,
        "room": room,
    })
}

/// `message` as history shows it: with its `self` link.
fn with_self_link(channel: &str, message: Value) -> Value {
    let mut message = message;
    let link = format!(
        "/v1.1/instances/rivia/channels/{channel}/history/{}/",
        id_of(&message)
    );
    message["links"] = json!({ "self": link });
    message
}

/// The payload of a `create` message: the object as returned, without `links`, `channel`,
/// `channel_room`.
fn create_payload(object: &Value) -> Value {
    let mut payload = object.clone();
    let map = payload.as_object_mut().expect("object");
    for key in ["links", "channel", "channel_room"] {
        assert!(map.remove(key).is_some(), "the object has {key}: {object}");
    }
    payload
}

/// The payload of an `update` message: `id`, `revision` and `updated_at` of the object as the
/// update returned it, plus `changed` (field → value in output form).
fn update_payload(object: &Value, changed: Value) -> Value {
    let mut payload = json!({
        "id": object["id"],
        "revision": object["revision"],
        "updated_at": object["updated_at"],
    });
    for (key, value) in changed.as_object().expect("changed fields") {
        payload[key] = value.clone();
    }
    payload
}

fn history_query(room: Option<&str>, last_id: Option<i64>) -> String {
    let mut query = "ordering=asc&page_size=100".to_owned();
    if let Some(room) = room {
        query.push_str(&format!("&room={room}"));
    }
    if let Some(last_id) = last_id {
        query.push_str(&format!("&last_id={last_id}"));
    }
    query
}

/// Every retained message of a channel (room), oldest first, following `next` links.
async fn history(app: &TestApp, channel: &str, room: Option<&str>) -> Vec<Value> {
    history_from(app, channel, room, None).await
}

/// The retained messages of a channel (room) after `last_id`, oldest first.
async fn history_after(
    app: &TestApp,
    channel: &str,
    room: Option<&str>,
    last_id: i64,
) -> Vec<Value> {
    history_from(app, channel, room, Some(last_id)).await
}

async fn history_from(
    app: &TestApp,
    channel: &str,
    room: Option<&str>,
    last_id: Option<i64>,
) -> Vec<Value> {
    let mut url = format!(
        "/v1.1/instances/rivia/channels/{channel}/history/?{}",
        history_query(room, last_id)
    );
    let mut messages = Vec::new();
    loop {
        let resp = app.get(&url, Some(&app.admin_key)).await;
        let page = resp.assert_status(200);
        let objects = page["objects"].as_array().expect("objects");
        messages.extend(objects.iter().cloned());
        match page["next"].as_str() {
            Some(next) if !objects.is_empty() => url = next.to_owned(),
            _ => return messages,
        }
    }
}

fn ids(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(id_of).collect()
}

/// Asserts that `messages` (from history) are exactly `expected` (as delivered, without
/// `created_at`), each with its self link.
#[track_caller]
fn assert_history(channel: &str, messages: &[Value], expected: &[Value]) {
    let actual: Vec<Value> = messages.iter().map(sans_created_at).collect();
    let expected: Vec<Value> = expected
        .iter()
        .map(|message| with_self_link(channel, message.clone()))
        .collect();
    assert_eq!(actual, expected);
}

/// Opens a WebSocket on a channel of `rivia` with `query` (keys included).
async fn ws(app: &TestApp, channel: &str, query: &str) -> Ws {
    ws_open(ws_request(&ws_url(app, channel, query), None)).await
}

/// A long-poll answer: 200 with `message` (no links) and its `X-Last-Id`.
#[track_caller]
fn assert_polled(resp: &Resp, message: &Value) {
    assert_eq!(resp.status, 200, "unexpected poll answer: {}", resp.text);
    assert_eq!(&resp.json, message);
    let id = id_of(message).to_string();
    assert_eq!(resp.header("x-last-id"), Some(id.as_str()), "X-Last-Id");
}

// ---------------------------------------------------------------------------------------------
// create

#[tokio::test]
async fn creating_an_object_with_a_channel_stores_a_create_message_holding_the_object() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let parent = create(&app, &rivia.owner, json!({"title": "Nest"})).await;
    let object = create(
        &app,
        &rivia.owner,
        json!({
            "title": "Griffin", "reward": 300, "weight": 1.5, "done": false,
            "due": "2016-03-17T22:10:00+01:00", "notes": "  near the crossroads  ",
            "details": {"village": "White Orchard", "heads": [1, 2]},
            "parent": object_id(&parent),
            "channel": "witchers", "channel_room": "  Novigrad ",
        }),
    )
    .await;
    let id = object_id(&object);
    assert_eq!(object["channel"], "witchers");
    assert_eq!(object["channel_room"], "novigrad", "the room is normalised");
    assert_eq!(
        object["due"],
        json!({"type": "datetime", "value": "2016-03-17T21:10:00.000000Z"})
    );
    assert_eq!(
        object["parent"],
        json!({"type": "reference", "target": "self", "value": object_id(&parent)})
    );
    assert_eq!(object["revision"], 1);

    let messages = history(&app, "witchers", Some("novigrad")).await;
    assert_eq!(messages.len(), 1, "one message: {messages:?}");
    let message_id = id_of(&messages[0]);
    assert!(message_id > 0);
    let expected = change(
        message_id,
        "create",
        json!({"admin": rivia.owner_id}),
        json!({
            "id": id, "created_at": object["created_at"], "updated_at": object["updated_at"],
            "revision": 1, "owner": null, "owner_permissions": "full", "group": null,
            "group_permissions": "none", "other_permissions": "none",
            "title": "Griffin", "reward": 300, "n": null, "weight": 1.5, "done": false,
            "due": {"type": "datetime", "value": "2016-03-17T21:10:00.000000Z"},
            "notes": "  near the crossroads  ",
            "details": {"village": "White Orchard", "heads": [1, 2]},
            "parent": {"type": "reference", "target": "self", "value": object_id(&parent)},
        }),
        Some("novigrad"),
    );
    assert_eq!(expected["payload"], create_payload(&object));
    assert_history("witchers", &messages, std::slice::from_ref(&expected));
    assert!(
        messages[0]["created_at"].as_str() >= object["created_at"].as_str(),
        "the message is stored with the object, not before it"
    );

    // The self link resolves to the same message.
    let link = messages[0]["links"]["self"].as_str().expect("self link");
    app.get(link, Some(&app.admin_key))
        .await
        .assert(200, messages[0].clone());
    // The object without a channel stored nothing, and neither did anything else.
    assert_eq!(probe(&app).await, message_id + 1);
}

#[tokio::test]
async fn on_a_default_channel_the_message_has_no_room_and_custom_publish_is_not_needed() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    // `board` has custom_publish off: publishing to it is refused, object messages are not.
    app.post(
        "/v1.1/instances/rivia/channels/board/publish/",
        Some(&app.admin_key),
        json!({"payload": {"n": 1}}),
    )
    .await
    .assert(
        403,
        json!({"detail": "Custom publish not allowed on this channel."}),
    );
    let mut stream = ws(
        &app,
        "board",
        &format!("api_key={}&last_id=0", app.admin_key),
    )
    .await;
    let poll = spawn_get(&app, &poll_path("board", "last_id=0"), Some(&app.admin_key));

    let object = create(
        &app,
        &rivia.owner,
        json!({"title": "Notice", "channel": "board", "channel_room": "ignored"}),
    )
    .await;
    assert_eq!(object["channel"], "board");
    assert_eq!(object["channel_room"], Value::Null, "stored as null");

    let messages = history(&app, "board", None).await;
    let expected = change(
        id_of(&messages[0]),
        "create",
        json!({"admin": rivia.owner_id}),
        create_payload(&object),
        None,
    );
    assert_history("board", &messages, std::slice::from_ref(&expected));
    let live = without_links(&messages[0]);
    assert_eq!(next_json(&mut stream).await, live);
    let polled = within("the poll to answer", poll).await.expect("poll task");
    assert_polled(&polled, &live);
}

#[tokio::test]
async fn the_author_names_the_account_the_api_key_or_the_api_key_and_the_user() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let geralt = rivia.user(&app, "geralt").await;
    patch_channel(&app, "witchers", json!({"other_permissions": "publish"})).await;
    let trusted_as_geralt = Creds {
        api_key: rivia.trusted.api_key.clone(),
        user_key: geralt.creds.user_key.clone(),
    };

    let room = json!({"channel": "witchers", "channel_room": "novigrad"});
    let by_owner = create(&app, &rivia.owner, room.clone()).await;
    let by_trusted = create(&app, &rivia.trusted, room.clone()).await;
    let by_trusted_user = create(&app, &trusted_as_geralt, room.clone()).await;
    let by_user = create(&app, &geralt.creds, room.clone()).await;
    assert_eq!(by_user["owner"], geralt.id, "the calling user owns it");

    let updated = patch(
        &app,
        &geralt.creds,
        object_id(&by_user),
        json!({"reward": 1}),
    )
    .await;
    delete(&app, &rivia.trusted, object_id(&by_owner)).await;
    delete(&app, &rivia.owner, object_id(&by_user)).await;

    let messages = history(&app, "witchers", Some("novigrad")).await;
    assert_eq!(messages.len(), 7, "{messages:?}");
    let first = id_of(&messages[0]);
    let owner = json!({"admin": rivia.owner_id});
    let trusted = json!({"api_key": rivia.trusted_id});
    let trusted_user = json!({"api_key": rivia.trusted_id, "user": geralt.id});
    let user = json!({"api_key": rivia.plain_id, "user": geralt.id});
    let room = Some("novigrad");
    let expected = [
        change(
            first,
            "create",
            owner.clone(),
            create_payload(&by_owner),
            room,
        ),
        change(
            first + 1,
            "create",
            trusted.clone(),
            create_payload(&by_trusted),
            room,
        ),
        change(
            first + 2,
            "create",
            trusted_user,
            create_payload(&by_trusted_user),
            room,
        ),
        change(
            first + 3,
            "create",
            user.clone(),
            create_payload(&by_user),
            room,
        ),
        change(
            first + 4,
            "update",
            user,
            update_payload(&updated, json!({"reward": 1})),
            room,
        ),
        change(
            first + 5,
            "delete",
            trusted,
            json!({"id": by_owner["id"]}),
            room,
        ),
        change(
            first + 6,
            "delete",
            owner,
            json!({"id": by_user["id"]}),
            room,
        ),
    ];
    assert_history("witchers", &messages, &expected);
}

// ---------------------------------------------------------------------------------------------
// update

#[tokio::test]
async fn an_update_message_holds_id_revision_updated_at_and_exactly_the_changed_fields() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let parent = create(&app, &rivia.owner, json!({"title": "Nest"})).await;
    let object = create(
        &app,
        &rivia.owner,
        json!({
            "title": "Griffin", "reward": 300, "weight": 1.5, "done": false,
            "notes": "bring silver", "details": {"a": 1},
            "channel": "witchers", "channel_room": "novigrad",
        }),
    )
    .await;
    let id = object_id(&object);

    // Fields sent with their current value are not changes; the others are, in output form.
    let first = patch(
        &app,
        &rivia.owner,
        id,
        json!({
            "title": "Griffin", "done": false,
            "reward": {"_increment": 50},
            "due": "2016-03-17T22:10:00+01:00",
            "notes": null,
            "details": {"a": 2},
            "parent": object_id(&parent),
        }),
    )
    .await;
    let first_changes = json!({
        "reward": 350,
        "due": {"type": "datetime", "value": "2016-03-17T21:10:00.000000Z"},
        "notes": null,
        "details": {"a": 2},
        "parent": {"type": "reference", "target": "self", "value": object_id(&parent)},
    });
    assert_eq!(first["revision"], 2);
    for (field, value) in first_changes.as_object().expect("changes") {
        assert_eq!(&first[field], value, "the response carries the new {field}");
    }

    // A detail POST is an update too (PUT semantics: only the fields present).
    let second = call(
        &app,
        Method::POST,
        &object_path(id),
        &rivia.owner,
        Some(json!({"weight": 2.5, "title": "Griffin"})),
    )
    .await
    .assert_status(200)
    .clone();
    assert_eq!(second["revision"], 3);
    assert_eq!(second["title"], "Griffin");

    // Output forms given back as input are the same value.
    let third = patch(
        &app,
        &rivia.owner,
        id,
        json!({
            "due": {"type": "datetime", "value": "2016-03-17T21:10:00.000000Z"},
            "parent": {"type": "reference", "target": "self", "value": object_id(&parent)},
            "reward": {"_increment": -350},
        }),
    )
    .await;
    assert_eq!(third["reward"], 0);

    let messages = history(&app, "witchers", Some("novigrad")).await;
    let base = id_of(&messages[0]);
    let room = Some("novigrad");
    let owner = json!({"admin": rivia.owner_id});
    let expected = [
        change(base, "create", owner.clone(), create_payload(&object), room),
        change(
            base + 1,
            "update",
            owner.clone(),
            update_payload(&first, first_changes),
            room,
        ),
        change(
            base + 2,
            "update",
            owner.clone(),
            update_payload(&second, json!({"weight": 2.5})),
            room,
        ),
        change(
            base + 3,
            "update",
            owner,
            update_payload(&third, json!({"reward": 0})),
            room,
        ),
    ];
    assert_history("witchers", &messages, &expected);
    for (message, revision) in messages[1..].iter().zip(2..) {
        assert_eq!(message["payload"]["revision"], revision);
    }
    // The object now is what the last update said.
    assert_eq!(get_object(&app, id).await, third);
}

#[tokio::test]
async fn changes_of_built_in_fields_are_in_the_update_payload() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let geralt = rivia.user(&app, "geralt").await;
    let guild = create_group(&app, "guild").await;
    let object = create(
        &app,
        &rivia.owner,
        json!({"title": "Griffin", "channel": "witchers", "channel_room": "novigrad"}),
    )
    .await;
    let id = object_id(&object);

    let first = patch(
        &app,
        &rivia.owner,
        id,
        json!({
            "owner": geralt.id, "owner_permissions": "write", "group": guild,
            "group_permissions": "read", "other_permissions": "read",
        }),
    )
    .await;
    assert_eq!(first["owner"], geralt.id);
    let second = patch(
        &app,
        &rivia.trusted,
        id,
        json!({"group": null, "other_permissions": "read", "owner_permissions": "full"}),
    )
    .await;

    let messages = history(&app, "witchers", Some("novigrad")).await;
    let base = id_of(&messages[0]);
    let room = Some("novigrad");
    let expected = [
        change(
            base,
            "create",
            json!({"admin": rivia.owner_id}),
            create_payload(&object),
            room,
        ),
        change(
            base + 1,
            "update",
            json!({"admin": rivia.owner_id}),
            update_payload(
                &first,
                json!({
                    "owner": geralt.id, "owner_permissions": "write", "group": guild,
                    "group_permissions": "read", "other_permissions": "read",
                }),
            ),
            room,
        ),
        change(
            base + 2,
            "update",
            json!({"api_key": rivia.trusted_id}),
            update_payload(&second, json!({"group": null, "owner_permissions": "full"})),
            room,
        ),
    ];
    assert_history("witchers", &messages, &expected);
}

#[tokio::test]
async fn an_update_that_changes_nothing_keeps_the_revision_and_publishes_nothing() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let object = create(
        &app,
        &rivia.owner,
        json!({
            "title": "Griffin", "reward": 300, "due": "2016-03-17T21:10:00Z",
            "details": {"a": 1}, "channel": "witchers", "channel_room": "novigrad",
        }),
    )
    .await;
    let id = object_id(&object);
    let created_message = history(&app, "witchers", Some("novigrad")).await;

    for body in [
        json!({}),
        json!({"title": "Griffin", "reward": 300}),
        json!({"reward": {"_increment": 0}}),
        json!({"due": "2016-03-17T22:10:00+01:00", "details": {"a": 1}}),
        json!({"notes": null, "other_permissions": "none"}),
        json!({"channel": "board", "channel_room": "oxenfurt"}),
        json!({"channel": null}),
    ] {
        let resp = call(
            &app,
            Method::PATCH,
            &object_path(id),
            &rivia.owner,
            Some(body.clone()),
        )
        .await;
        assert_eq!(resp.status, 200, "{body}: {}", resp.text);
        assert_eq!(resp.json, object, "{body} changes nothing");
    }
    // docs/api.md §2.2: a detail POST with no changing field is an update that changes nothing, too.
    call(
        &app,
        Method::POST,
        &object_path(id),
        &rivia.owner,
        Some(json!({"title": "Griffin"})),
    )
    .await
    .assert(200, object.clone());

    assert_eq!(get_object(&app, id).await, object);
    assert_eq!(
        history(&app, "witchers", Some("novigrad")).await,
        created_message
    );
    assert_eq!(history(&app, "board", None).await, Vec::<Value>::new());
    assert_eq!(probe(&app).await, id_of(&created_message[0]) + 1);
}

#[tokio::test]
async fn an_update_cannot_move_an_object_to_another_channel_or_room() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let object = create(
        &app,
        &rivia.owner,
        json!({"title": "Griffin", "channel": "witchers", "channel_room": "novigrad"}),
    )
    .await;
    let id = object_id(&object);
    let updated = patch(
        &app,
        &rivia.owner,
        id,
        json!({"title": "Leshen", "channel": "board", "channel_room": "oxenfurt"}),
    )
    .await;
    assert_eq!(updated["channel"], "witchers");
    assert_eq!(updated["channel_room"], "novigrad");
    let replaced = call(
        &app,
        Method::POST,
        &object_path(id),
        &rivia.owner,
        Some(json!({"title": "Bruxa", "channel": null, "channel_room": null})),
    )
    .await
    .assert_status(200)
    .clone();
    assert_eq!(replaced["channel"], "witchers");
    assert_eq!(replaced["channel_room"], "novigrad");

    let messages = history(&app, "witchers", Some("novigrad")).await;
    let base = id_of(&messages[0]);
    let owner = json!({"admin": rivia.owner_id});
    let room = Some("novigrad");
    let expected = [
        change(base, "create", owner.clone(), create_payload(&object), room),
        change(
            base + 1,
            "update",
            owner.clone(),
            update_payload(&updated, json!({"title": "Leshen"})),
            room,
        ),
        change(
            base + 2,
            "update",
            owner,
            update_payload(&replaced, json!({"title": "Bruxa"})),
            room,
        ),
    ];
    assert_history("witchers", &messages, &expected);
    assert_eq!(
        history(&app, "witchers", Some("oxenfurt")).await,
        Vec::<Value>::new()
    );
    assert_eq!(history(&app, "board", None).await, Vec::<Value>::new());
    assert_eq!(probe(&app).await, base + 3);
}

#[tokio::test]
async fn a_write_that_fails_publishes_nothing() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let object = create(
        &app,
        &rivia.owner,
        json!({"title": "Griffin", "reward": 300, "channel": "witchers", "channel_room": "novigrad"}),
    )
    .await;
    let id = object_id(&object);
    let created_message = history(&app, "witchers", Some("novigrad")).await;

    call(
        &app,
        Method::PATCH,
        &object_path(id),
        &rivia.owner,
        Some(json!({"title": "Leshen", "reward": "many"})),
    )
    .await
    .assert(400, json!({"reward": ["A valid integer is required."]}));
    call(
        &app,
        Method::PATCH,
        &object_path(id),
        &rivia.owner,
        Some(json!({"title": "Leshen", "reward": {"_increment": 2147483647}})),
    )
    .await
    .assert(
        400,
        json!({"reward": ["Ensure this value is less than or equal to 2147483647."]}),
    );
    let stale = call(
        &app,
        Method::PATCH,
        &object_path(id),
        &rivia.owner,
        Some(json!({"title": "Leshen", "expected_revision": 7})),
    )
    .await;
    assert_eq!(stale.status, 400, "{}", stale.text);
    assert!(
        stale.json.get("expected_revision").is_some(),
        "{}",
        stale.text
    );
    // Creates that fail store no object and no message.
    call(
        &app,
        Method::POST,
        OBJECTS,
        &rivia.owner,
        Some(json!({"reward": "many", "channel": "witchers", "channel_room": "novigrad"})),
    )
    .await
    .assert(400, json!({"reward": ["A valid integer is required."]}));
    call(
        &app,
        Method::POST,
        OBJECTS,
        &rivia.owner,
        Some(json!({"title": "Kikimora", "channel": "witchers"})),
    )
    .await
    .assert(
        400,
        json!({"non_field_errors":
            ["Channel room field is required for channels with separate rooms."]}),
    );
    call(
        &app,
        Method::POST,
        OBJECTS,
        &rivia.owner,
        Some(json!({"title": "Kikimora", "channel": "nowhere", "channel_room": "novigrad"})),
    )
    .await
    .assert(
        400,
        json!({"channel": ["Object with name=nowhere does not exist."]}),
    );

    assert_eq!(get_object(&app, id).await, object);
    let list = app.get(OBJECTS, Some(&app.admin_key)).await;
    assert_eq!(list.assert_status(200)["objects"], json!([object]));
    assert_eq!(
        history(&app, "witchers", Some("novigrad")).await,
        created_message
    );
    assert_eq!(probe(&app).await, id_of(&created_message[0]) + 1);
}

// ---------------------------------------------------------------------------------------------
// delete

#[tokio::test]
async fn deleting_an_object_stores_a_delete_message_holding_only_its_id() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let object = create(
        &app,
        &rivia.owner,
        json!({"title": "Griffin", "channel": "witchers", "channel_room": "Novigrad"}),
    )
    .await;
    let id = object_id(&object);
    delete(&app, &rivia.owner, id).await;
    app.get(&object_path(id), Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Not found."}));

    let messages = history(&app, "witchers", Some("novigrad")).await;
    let base = id_of(&messages[0]);
    let owner = json!({"admin": rivia.owner_id});
    let expected = [
        change(
            base,
            "create",
            owner.clone(),
            create_payload(&object),
            Some("novigrad"),
        ),
        change(
            base + 1,
            "delete",
            owner,
            json!({ "id": id }),
            Some("novigrad"),
        ),
    ];
    assert_history("witchers", &messages, &expected);
    // The message outlives the object.
    let link = format!(
        "/v1.1/instances/rivia/channels/witchers/history/{}/",
        base + 1
    );
    app.get(&link, Some(&app.admin_key))
        .await
        .assert(200, messages[1].clone());
}

// ---------------------------------------------------------------------------------------------
// What publishes nothing

/// Creates (as `creds`), updates and deletes an object from `body`, which has no channel, and
/// asserts that none of it stored a message in `witchers`, `board` or `default`.
async fn assert_publishes_nothing(app: &TestApp, creds: &Creds, body: Value) {
    let before = probe(app).await;
    let default_probe = json!({"room": "probe"});
    let before_default = id_of(&app.publish("rivia", "default", default_probe.clone()).await);

    let object = create(app, creds, body).await;
    assert_eq!(object["channel"], Value::Null);
    assert_eq!(object["channel_room"], Value::Null);
    assert!(object["links"].get("channel").is_none(), "{object}");
    let id = object_id(&object);
    patch(app, creds, id, json!({"reward": {"_increment": 5}})).await;
    patch(
        app,
        creds,
        id,
        json!({"title": "Bruxa", "other_permissions": "read"}),
    )
    .await;
    delete(app, creds, id).await;

    assert_eq!(probe(app).await, before + 1);
    let after_default = id_of(&app.publish("rivia", "default", default_probe).await);
    assert_eq!(after_default, before_default + 1);
    assert_eq!(history(app, "board", None).await, Vec::<Value>::new());
    assert_eq!(
        history(app, "witchers", Some("novigrad")).await,
        Vec::<Value>::new()
    );
}

#[tokio::test]
async fn an_object_without_a_channel_publishes_nothing() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    assert_publishes_nothing(&app, &rivia.owner, json!({"title": "Griffin"})).await;
    // A room without a channel is no room (SPEC silent; Herald stores null).
    assert_publishes_nothing(
        &app,
        &rivia.trusted,
        json!({"title": "Leshen", "channel_room": "novigrad"}),
    )
    .await;
}

#[tokio::test]
async fn an_object_created_with_a_null_channel_has_none_and_publishes_nothing() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    // §10.3: `channel` is "channel name or null".
    assert_publishes_nothing(
        &app,
        &rivia.owner,
        json!({"title": "Griffin", "channel": null, "channel_room": null}),
    )
    .await;
}

#[tokio::test]
async fn deleting_a_class_publishes_nothing_for_its_objects() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let room = json!({"channel": "witchers", "channel_room": "novigrad"});
    let first = create(&app, &rivia.owner, room.clone()).await;
    let second = create(&app, &rivia.owner, room).await;
    let on_board = create(&app, &rivia.owner, json!({"channel": "board"})).await;
    let before = history(&app, "witchers", Some("novigrad")).await;
    assert_eq!(before.len(), 2);
    let board_before = history(&app, "board", None).await;
    assert_eq!(board_before.len(), 1);

    app.delete(
        "/v1.1/instances/rivia/classes/contracts/",
        Some(&app.admin_key),
    )
    .await
    .assert_status(204);

    assert_eq!(history(&app, "witchers", Some("novigrad")).await, before);
    assert_eq!(history(&app, "board", None).await, board_before);
    assert_eq!(probe(&app).await, id_of(&before[1]) + 1);
    let base = id_of(&before[0]);
    let owner = json!({"admin": rivia.owner_id});
    assert_history(
        "witchers",
        &before,
        &[
            change(
                base,
                "create",
                owner.clone(),
                create_payload(&first),
                Some("novigrad"),
            ),
            change(
                base + 1,
                "create",
                owner.clone(),
                create_payload(&second),
                Some("novigrad"),
            ),
        ],
    );
    assert_history(
        "board",
        &board_before,
        &[change(
            id_of(&board_before[0]),
            "create",
            owner,
            create_payload(&on_board),
            None,
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// Live delivery

#[tokio::test]
async fn change_messages_arrive_live_on_poll_websocket_and_sse_in_id_order_between_custom_ones() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let key = rivia.trusted.api_key.clone();
    let start = id_of(&publish_custom(&app, "novigrad", 0).await);
    // Room names are normalised everywhere (§9.5): each subscriber spells it differently.
    let mut stream = ws(
        &app,
        "witchers",
        &format!("api_key={key}&room=NOVIGRAD&last_id={start}"),
    )
    .await;
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", &format!("room=Novigrad&last_id={start}")),
        Some(&key),
        &[],
    )
    .await;

    // Each write happens while a long-poll for the message after the previous one waits.
    let mut delivered = Vec::new();
    let mut last_id = start;
    let mut created = Value::Null;
    let mut updated = Value::Null;
    let mut customs = Vec::new();
    for step in 0..5 {
        let poll = spawn_get(
            &app,
            &poll_path("witchers", &format!("room=%20novigrad&last_id={last_id}")),
            Some(&key),
        );
        match step {
            0 => {
                created = create(
                    &app,
                    &rivia.owner,
                    json!({"title": "Griffin", "reward": 300,
                           "channel": "witchers", "channel_room": "Novigrad"}),
                )
                .await;
            }
            1 | 3 => customs.push(publish_custom(&app, "novigrad", step).await),
            2 => {
                updated = patch(
                    &app,
                    &rivia.trusted,
                    object_id(&created),
                    json!({"reward": {"_increment": 50}}),
                )
                .await;
            }
            _ => delete(&app, &rivia.owner, object_id(&created)).await,
        }
        let resp = within("the poll to answer", poll).await.expect("poll task");
        assert_eq!(resp.status, 200, "{}", resp.text);
        last_id = id_of(&resp.json);
        delivered.push(resp);
    }

    let stored = history_after(&app, "witchers", Some("novigrad"), start).await;
    assert_eq!(ids(&stored), (start + 1..=start + 5).collect::<Vec<_>>());
    let room = Some("novigrad");
    let expected = [
        change(
            start + 1,
            "create",
            json!({"admin": rivia.owner_id}),
            create_payload(&created),
            room,
        ),
        sans_created_at(&without_links(&customs[0])),
        change(
            start + 3,
            "update",
            json!({"api_key": rivia.trusted_id}),
            update_payload(&updated, json!({"reward": 350})),
            room,
        ),
        sans_created_at(&without_links(&customs[1])),
        change(
            start + 5,
            "delete",
            json!({"admin": rivia.owner_id}),
            json!({"id": created["id"]}),
            room,
        ),
    ];
    assert_history("witchers", &stored, &expected);

    let live: Vec<Value> = stored.iter().map(without_links).collect();
    for (resp, message) in delivered.iter().zip(&live) {
        assert_polled(resp, message);
    }
    for message in &live {
        assert_eq!(&next_json(&mut stream).await, message, "WebSocket");
    }
    for message in &live {
        assert_eq!(&sse.next_message().await, message, "SSE");
    }
}

#[tokio::test]
async fn a_subscriber_of_one_room_gets_no_change_messages_of_another_room() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let key = rivia.trusted.api_key.clone();
    let mut stream = ws(
        &app,
        "witchers",
        &format!("api_key={key}&room=oxenfurt&last_id=0"),
    )
    .await;
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", "room=oxenfurt&last_id=0"),
        Some(&key),
        &[],
    )
    .await;
    let poll = spawn_get(
        &app,
        &poll_path("witchers", "room=oxenfurt&last_id=0"),
        Some(&key),
    );

    let elsewhere = create(
        &app,
        &rivia.owner,
        json!({"title": "Griffin", "channel": "witchers", "channel_room": "novigrad"}),
    )
    .await;
    patch(
        &app,
        &rivia.owner,
        object_id(&elsewhere),
        json!({"title": "Leshen"}),
    )
    .await;
    let here = create(
        &app,
        &rivia.owner,
        json!({"title": "Bruxa", "channel": "witchers", "channel_room": "Oxenfurt"}),
    )
    .await;

    let stored = history(&app, "witchers", Some("oxenfurt")).await;
    let novigrad = history(&app, "witchers", Some("novigrad")).await;
    assert_eq!(novigrad.len(), 2);
    assert_history(
        "witchers",
        &stored,
        &[change(
            id_of(&novigrad[1]) + 1,
            "create",
            json!({"admin": rivia.owner_id}),
            create_payload(&here),
            Some("oxenfurt"),
        )],
    );
    let live = without_links(&stored[0]);
    assert_eq!(
        next_json(&mut stream).await,
        live,
        "the first frame is this room's"
    );
    assert_eq!(
        sse.next_message().await,
        live,
        "the first event is this room's"
    );
    let polled = within("the poll to answer", poll).await.expect("poll task");
    assert_polled(&polled, &live);
}

// ---------------------------------------------------------------------------------------------
// Channel publish permission (§10.3)

#[tokio::test]
async fn a_user_without_publish_level_on_the_channel_may_not_create_an_object_in_it() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let geralt = rivia.user(&app, "geralt").await;
    let before = probe(&app).await;

    // `witchers` lets users subscribe only; `board` gives them nothing.
    for body in [
        json!({"title": "Griffin", "channel": "witchers", "channel_room": "novigrad"}),
        json!({"title": "Griffin", "channel": "board"}),
    ] {
        call(&app, Method::POST, OBJECTS, &geralt.creds, Some(body))
            .await
            .assert(403, json!({ "detail": NO_CHANNEL_PUBLISH }));
    }

    let list = app.get(OBJECTS, Some(&app.admin_key)).await;
    assert_eq!(list.assert_status(200)["objects"], json!([]));
    assert_eq!(probe(&app).await, before + 1);
    assert_eq!(history(&app, "board", None).await, Vec::<Value>::new());
    // Without a channel the same user creates freely.
    let own = create(&app, &geralt.creds, json!({"title": "Griffin"})).await;
    assert_eq!(own["owner"], geralt.id);
}

#[tokio::test]
async fn a_user_without_publish_level_on_the_channel_may_not_update_or_delete_an_object_in_it() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let geralt = rivia.user(&app, "geralt").await;
    let object = create(
        &app,
        &rivia.owner,
        json!({"title": "Griffin", "reward": 300, "owner": geralt.id,
               "channel": "witchers", "channel_room": "novigrad"}),
    )
    .await;
    let id = object_id(&object);
    assert_eq!(object["owner"], geralt.id);
    assert_eq!(object["owner_permissions"], "full");
    // Geralt may read (and as owner write and delete) the object itself.
    call(&app, Method::GET, &object_path(id), &geralt.creds, None)
        .await
        .assert(200, object.clone());
    let created_message = history(&app, "witchers", Some("novigrad")).await;

    for (method, body) in [
        (Method::PATCH, Some(json!({"title": "Leshen"}))),
        (Method::PATCH, Some(json!({"reward": {"_increment": 1}}))),
        (Method::POST, Some(json!({"title": "Leshen"}))),
        (Method::DELETE, None),
    ] {
        call(&app, method.clone(), &object_path(id), &geralt.creds, body)
            .await
            .assert(403, json!({ "detail": NO_CHANNEL_PUBLISH }));
    }

    assert_eq!(get_object(&app, id).await, object, "nothing changed");
    assert_eq!(
        history(&app, "witchers", Some("novigrad")).await,
        created_message
    );
    assert_eq!(probe(&app).await, id_of(&created_message[0]) + 1);
}

#[tokio::test]
async fn a_user_with_publish_level_from_other_permissions_writes_without_custom_publish() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let geralt = rivia.user(&app, "geralt").await;
    app.create_channel(
        "rivia",
        json!({"name": "notices", "type": "separate_rooms", "other_permissions": "publish"}),
    )
    .await;
    // custom_publish is off: the user may not publish there...
    call(
        &app,
        Method::POST,
        "/v1.1/instances/rivia/channels/notices/publish/",
        &geralt.creds,
        Some(json!({"room": "novigrad", "payload": {"n": 1}})),
    )
    .await
    .assert(
        403,
        json!({"detail": "Custom publish not allowed on this channel."}),
    );

    // ...but data changes publish.
    let object = create(
        &app,
        &geralt.creds,
        json!({"title": "Griffin", "channel": "notices", "channel_room": "novigrad"}),
    )
    .await;
    let id = object_id(&object);
    let updated = patch(&app, &geralt.creds, id, json!({"title": "Leshen"})).await;
    delete(&app, &geralt.creds, id).await;

    let messages = history(&app, "notices", Some("novigrad")).await;
    let base = id_of(&messages[0]);
    let user = json!({"api_key": rivia.plain_id, "user": geralt.id});
    let room = Some("novigrad");
    assert_history(
        "notices",
        &messages,
        &[
            change(base, "create", user.clone(), create_payload(&object), room),
            change(
                base + 1,
                "update",
                user.clone(),
                update_payload(&updated, json!({"title": "Leshen"})),
                room,
            ),
            change(base + 2, "delete", user, json!({ "id": id }), room),
        ],
    );
}

#[tokio::test]
async fn a_user_with_publish_level_through_the_channel_group_writes_and_others_may_not() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let geralt = rivia.user(&app, "geralt").await;
    let dandelion = rivia.user(&app, "dandelion").await;
    let guild = create_group(&app, "guild").await;
    add_member(&app, guild, geralt.id).await;
    patch_channel(
        &app,
        "board",
        json!({"group": guild, "group_permissions": "publish"}),
    )
    .await;

    let object = create(
        &app,
        &geralt.creds,
        json!({"title": "Griffin", "other_permissions": "full", "channel": "board"}),
    )
    .await;
    let id = object_id(&object);
    // Dandelion may write and delete the object, but not publish to its channel.
    call(
        &app,
        Method::POST,
        OBJECTS,
        &dandelion.creds,
        Some(json!({"title": "Ballad", "channel": "board"})),
    )
    .await
    .assert(403, json!({ "detail": NO_CHANNEL_PUBLISH }));
    call(
        &app,
        Method::PATCH,
        &object_path(id),
        &dandelion.creds,
        Some(json!({"title": "Ballad"})),
    )
    .await
    .assert(403, json!({ "detail": NO_CHANNEL_PUBLISH }));
    call(
        &app,
        Method::DELETE,
        &object_path(id),
        &dandelion.creds,
        None,
    )
    .await
    .assert(403, json!({ "detail": NO_CHANNEL_PUBLISH }));
    assert_eq!(get_object(&app, id).await, object);

    let updated = patch(&app, &geralt.creds, id, json!({"title": "Leshen"})).await;
    delete(&app, &geralt.creds, id).await;

    let messages = history(&app, "board", None).await;
    let base = id_of(&messages[0]);
    let user = json!({"api_key": rivia.plain_id, "user": geralt.id});
    assert_history(
        "board",
        &messages,
        &[
            change(base, "create", user.clone(), create_payload(&object), None),
            change(
                base + 1,
                "update",
                user.clone(),
                update_payload(&updated, json!({"title": "Leshen"})),
                None,
            ),
            change(base + 2, "delete", user, json!({ "id": id }), None),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Channel deletion (§9.4)

#[tokio::test]
async fn deleting_the_channel_detaches_its_objects_which_then_publish_nothing() {
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let geralt = rivia.user(&app, "geralt").await;
    let mine = create(
        &app,
        &rivia.owner,
        json!({"title": "Griffin", "channel": "witchers", "channel_room": "novigrad"}),
    )
    .await;
    let his = create(
        &app,
        &rivia.owner,
        json!({"title": "Leshen", "owner": geralt.id,
               "channel": "witchers", "channel_room": "novigrad"}),
    )
    .await;
    let old = history(&app, "witchers", Some("novigrad")).await;
    assert_eq!(old.len(), 2);
    let last_old_id = id_of(&old[1]);

    app.delete(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert_status(204);
    for object in [&mine, &his] {
        let mut detached = object.clone();
        detached["channel"] = Value::Null;
        detached["channel_room"] = Value::Null;
        detached["links"]
            .as_object_mut()
            .expect("links")
            .remove("channel");
        assert_eq!(get_object(&app, object_id(object)).await, detached);
    }

    // A new channel of the same name (users may subscribe, not publish) is not theirs.
    app.create_channel(
        "rivia",
        json!({"name": "witchers", "type": "separate_rooms", "custom_publish": true,
               "other_permissions": "subscribe"}),
    )
    .await;
    let mut stream = ws(
        &app,
        "witchers",
        &format!("api_key={}&room=novigrad&last_id=0", app.admin_key),
    )
    .await;

    let updated = patch(&app, &rivia.owner, object_id(&mine), json!({"reward": 1})).await;
    assert_eq!(updated["revision"], 2);
    assert_eq!(updated["channel"], Value::Null);
    assert_eq!(updated["channel_room"], Value::Null);
    // Geralt needs no publish level for an object that has no channel any more.
    let his_update = patch(
        &app,
        &geralt.creds,
        object_id(&his),
        json!({"title": "Bruxa"}),
    )
    .await;
    assert_eq!(his_update["channel"], Value::Null);
    delete(&app, &geralt.creds, object_id(&his)).await;
    delete(&app, &rivia.owner, object_id(&mine)).await;

    // Nothing took an id of the channel's sequence, which continues after the old messages.
    let custom = publish_custom(&app, "novigrad", 1).await;
    assert_eq!(id_of(&custom), last_old_id + 1);
    assert_eq!(next_json(&mut stream).await, without_links(&custom));
    assert_eq!(
        history(&app, "witchers", Some("novigrad")).await,
        vec![custom]
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency (§10.7, §9.11)

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_publish_one_message_per_increment_in_the_order_they_applied() {
    const TASKS: i64 = 4;
    const EACH: i64 = 25;
    let app = TestApp::spawn().await;
    let rivia = rivia(&app).await;
    let object = create(
        &app,
        &rivia.owner,
        json!({"n": 0, "channel": "witchers", "channel_room": "novigrad"}),
    )
    .await;
    let id = object_id(&object);
    let create_id = id_of(&history(&app, "witchers", Some("novigrad")).await[0]);
    let mut stream = ws(
        &app,
        "witchers",
        &format!(
            "api_key={}&room=novigrad&last_id={create_id}",
            rivia.trusted.api_key
        ),
    )
    .await;
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", &format!("room=novigrad&last_id={create_id}")),
        Some(&rivia.trusted.api_key),
        &[],
    )
    .await;

    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let request = app.request(Method::PATCH, &object_path(id), Some(&app.admin_key));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..EACH {
                    let request = request
                        .try_clone()
                        .expect("clonable request")
                        .json(&json!({"n": {"_increment": 1}}));
                    let resp = read_resp(request.send().await.expect("PATCH")).await;
                    answers.push(resp.assert_status(200).clone());
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("increment task"));
    }

    // Every increment applied once, each on the value the one before left.
    let total = TASKS * EACH;
    let mut seen = BTreeSet::new();
    for answer in &answers {
        let n = answer["n"].as_i64().expect("n");
        assert_eq!(answer["revision"], n + 1, "{answer}");
        assert!(seen.insert(n), "two increments answered n = {n}");
    }
    assert_eq!(seen, (1..=total).collect::<BTreeSet<_>>());
    let last = get_object(&app, id).await;
    assert_eq!(last["n"], total);
    assert_eq!(last["revision"], total + 1);

    // The messages tell the same story: n = 1, 2, … 100 in id order, one per answer.
    let messages = history_after(&app, "witchers", Some("novigrad"), create_id).await;
    assert_eq!(
        ids(&messages),
        (create_id + 1..=create_id + total).collect::<Vec<_>>()
    );
    let by_n: std::collections::BTreeMap<i64, &Value> = answers
        .iter()
        .map(|answer| (answer["n"].as_i64().expect("n"), answer))
        .collect();
    let expected: Vec<Value> = (1..=total)
        .map(|n| {
            change(
                create_id + n,
                "update",
                json!({"admin": rivia.owner_id}),
                update_payload(by_n[&n], json!({ "n": n })),
                Some("novigrad"),
            )
        })
        .collect();
    assert_history("witchers", &messages, &expected);
    for message in &messages {
        assert_eq!(
            next_json(&mut stream).await,
            without_links(message),
            "WebSocket"
        );
    }
    for message in &messages {
        assert_eq!(sse.next_message().await, without_links(message), "SSE");
    }
    assert_eq!(probe(&app).await, create_id + total + 1);
}
