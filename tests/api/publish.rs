//! Publishing messages (docs/api.md §9.5, §9.6) and the message-id guarantees (§9.11).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};

const FORBIDDEN: &str = "You do not have permission to perform this action.";
const NO_CUSTOM_PUBLISH: &str = "Custom publish not allowed on this channel.";
const ROOM_REQUIRED: &str = "This field is required for channels with separate rooms.";

fn forbidden() -> Value {
    json!({"detail": FORBIDDEN})
}

fn publish_path(channel: &str) -> String {
    format!("/v1.1/instances/rivia/channels/{channel}/publish/")
}

fn history_path(channel: &str) -> String {
    format!("/v1.1/instances/rivia/channels/{channel}/history/")
}

struct Keys {
    trusted: String,
    reader: String,
    bare: String,
}

/// An instance `rivia` with keys of each class and two channels open to everyone:
/// `rooms` (separate_rooms) and `plain` (default type), both with custom publish.
async fn setup_with(app: TestApp) -> (TestApp, Keys) {
    app.create_instance("rivia").await;
    let trusted = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    let reader = app
        .create_api_key("rivia", json!({"allow_anonymous_read": true}))
        .await;
    let bare = app.create_api_key("rivia", json!({})).await;
    app.create_channel(
        "rivia",
        json!({"name": "rooms", "type": "separate_rooms", "custom_publish": true,
               "other_permissions": "publish"}),
    )
    .await;
    app.create_channel(
        "rivia",
        json!({"name": "plain", "custom_publish": true, "other_permissions": "publish"}),
    )
    .await;
    (
        app,
        Keys {
            trusted,
            reader,
            bare,
        },
    )
}

async fn setup() -> (TestApp, Keys) {
    setup_with(TestApp::spawn().await).await
}

async fn admin_id(app: &TestApp) -> i64 {
    app.get("/v1.1/account/", Some(&app.admin_key))
        .await
        .assert_status(200)["id"]
        .as_i64()
        .expect("account id")
}

/// Sends `body` verbatim as JSON (with a Content-Length).
async fn post_raw(app: &TestApp, path: &str, key: Option<&str>, body: String) -> Resp {
    app.send(
        app.request(Method::POST, path, key)
            .header(CONTENT_TYPE, "application/json")
            .body(body),
    )
    .await
}

/// Sends `body` as JSON in chunks, without a Content-Length.
async fn post_chunked(app: &TestApp, path: &str, key: Option<&str>, body: String) -> Resp {
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .as_bytes()
        .chunks(4096)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream = futures_util::stream::iter(chunks);
    app.send(
        app.request(Method::POST, path, key)
            .header(CONTENT_TYPE, "application/json")
            .body(reqwest::Body::wrap_stream(stream)),
    )
    .await
}

/// A valid publish body of exactly `len` bytes.
fn body_of_len(len: usize) -> String {
    let prefix = r#"{"room":"r","payload":{"x":""#;
    let suffix = r#""}}"#;
    let body = format!(
        "{prefix}{}{suffix}",
        "a".repeat(len - prefix.len() - suffix.len())
    );
    assert_eq!(body.len(), len);
    body
}

fn too_large(limit: usize) -> Value {
    json!({"detail": format!("Request size limit exceeded ({limit}).")})
}

/// Checks the shape of a stored message (docs/api.md §9.5) and returns its id.
#[track_caller]
fn assert_message(body: &Value, channel: &str, room: Value, payload: Value, author: Value) -> i64 {
    let id = body["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id: {body}"));
    assert!(id > 0, "id not positive: {body}");
    let created = body["created_at"].as_str().expect("created_at");
    assert_eq!(created.len(), 27, "created_at form: {created}");
    assert!(created.ends_with('Z'), "created_at form: {created}");
    let mut rest = body.clone();
    rest.as_object_mut().unwrap().remove("created_at");
    assert_eq!(
        rest,
        json!({
            "id": id,
            "action": "custom",
            "author": author,
            "metadata": {"type": "message"},
            "payload": payload,
            "room": room,
            "links": {"self": format!("/v1.1/instances/rivia/channels/{channel}/history/{id}/")},
        })
    );
    id
}

fn id_of(body: &Value) -> i64 {
    body["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id: {body}"))
}

// ---------------------------------------------------------------- success

#[tokio::test]
async fn the_owner_publishes_and_gets_201_with_the_stored_message() {
    let (app, _) = setup().await;
    let admin = admin_id(&app).await;
    let resp = app
        .post(
            &publish_path("rooms"),
            Some(&app.admin_key),
            json!({"payload": {"message": "Hello Witchers!"}, "room": "secret-room"}),
        )
        .await;
    let body = resp.assert_status(201).clone();
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let id = assert_message(
        &body,
        "rooms",
        json!("secret-room"),
        json!({"message": "Hello Witchers!"}),
        json!({"admin": admin}),
    );
    // Stored before told (§9.11): the 201 means history already has it.
    app.get(
        &format!("{}{id}/", history_path("rooms")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, body);
}

#[tokio::test]
async fn a_trusted_key_publishes_with_its_key_id_as_author() {
    let (app, _) = setup().await;
    let created = app
        .post(
            "/v1.1/instances/rivia/api_keys/",
            Some(&app.admin_key),
            json!({"ignore_acl": true}),
        )
        .await
        .assert_status(201)
        .clone();
    let key = created["api_key"].as_str().expect("api_key");
    let key_id = created["id"].as_i64().expect("id");
    let resp = app
        .post(
            &publish_path("plain"),
            Some(key),
            json!({"payload": {"n": 1}}),
        )
        .await;
    assert_message(
        resp.assert_status(201),
        "plain",
        Value::Null,
        json!({"n": 1}),
        json!({"api_key": key_id}),
    );
}

#[tokio::test]
async fn a_message_published_by_another_account_names_that_account_as_author() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    app.post(
        "/v1.1/instances/",
        Some(&key),
        json!({"name": "vengerberg"}),
    )
    .await
    .assert_status(201);
    let account = app
        .get("/v1.1/account/", Some(&key))
        .await
        .assert_status(200)["id"]
        .as_i64()
        .expect("account id");
    assert_ne!(account, admin_id(&app).await);
    let resp = app
        .post(
            "/v1.1/instances/vengerberg/channels/default/publish/",
            Some(&key),
            json!({"payload": {"n": 1}, "room": "r"}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["author"], json!({"admin": account}));
}

#[tokio::test]
async fn a_trusted_key_may_publish_where_others_may_not() {
    let (app, keys) = setup().await;
    app.create_channel("rivia", json!({"name": "closed", "custom_publish": true}))
        .await;
    app.post(
        &publish_path("closed"),
        Some(&keys.trusted),
        json!({"payload": {"n": 1}}),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn the_owner_may_publish_to_the_default_built_in_channel() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            &publish_path("default"),
            Some(&app.admin_key),
            json!({"payload": {"n": 1}, "room": "lobby"}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["room"], "lobby");
}

#[tokio::test]
async fn the_channel_name_in_the_publish_path_is_case_insensitive() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            &publish_path("PLAIN"),
            Some(&app.admin_key),
            json!({"payload": {"n": 1}}),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(
        body["links"]["self"],
        format!(
            "/v1.1/instances/rivia/channels/plain/history/{}/",
            id_of(body)
        )
    );
}

// ---------------------------------------------------------------- size limit

#[tokio::test]
async fn a_body_of_exactly_65536_bytes_is_accepted() {
    let (app, _) = setup().await;
    post_raw(
        &app,
        &publish_path("rooms"),
        Some(&app.admin_key),
        body_of_len(65536),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn a_body_over_65536_bytes_is_413() {
    let (app, _) = setup().await;
    post_raw(
        &app,
        &publish_path("rooms"),
        Some(&app.admin_key),
        body_of_len(65537),
    )
    .await
    .assert(413, too_large(65536));
    app.get(
        &format!("{}?room=r", history_path("rooms")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn the_size_check_comes_before_every_other_check() {
    let (app, keys) = setup().await;
    let body = body_of_len(70_000);
    // permission (bare key, anonymous reader, no key), custom publish (eventlog),
    // a missing channel and a missing instance all lose to the size limit.
    for key in [Some(keys.bare.as_str()), Some(keys.reader.as_str()), None] {
        post_raw(&app, &publish_path("rooms"), key, body.clone())
            .await
            .assert(413, too_large(65536));
    }
    for channel in ["eventlog", "ghost"] {
        post_raw(
            &app,
            &publish_path(channel),
            Some(&app.admin_key),
            body.clone(),
        )
        .await
        .assert(413, too_large(65536));
    }
    post_raw(
        &app,
        "/v1.1/instances/nowhere/channels/rooms/publish/",
        Some(&app.admin_key),
        body,
    )
    .await
    .assert(413, too_large(65536));
}

#[tokio::test]
async fn a_smaller_publish_max_bytes_is_enforced_and_named_in_the_message() {
    let app = TestApp::spawn_with(|args| args.publish_max_bytes = 2048).await;
    let (app, _) = setup_with(app).await;
    post_raw(
        &app,
        &publish_path("rooms"),
        Some(&app.admin_key),
        body_of_len(2048),
    )
    .await
    .assert_status(201);
    post_raw(
        &app,
        &publish_path("rooms"),
        Some(&app.admin_key),
        body_of_len(2049),
    )
    .await
    .assert(413, too_large(2048));
}

#[tokio::test]
async fn a_chunked_body_without_content_length_cannot_bypass_the_limit() {
    let (app, _) = setup().await;
    post_chunked(
        &app,
        &publish_path("rooms"),
        Some(&app.admin_key),
        body_of_len(65536 + 4096),
    )
    .await
    .assert(413, too_large(65536));
}

#[tokio::test]
async fn a_chunked_body_within_the_limit_is_published() {
    let (app, _) = setup().await;
    let resp = post_chunked(
        &app,
        &publish_path("rooms"),
        Some(&app.admin_key),
        body_of_len(65536),
    )
    .await;
    assert_eq!(resp.assert_status(201)["room"], "r");
}

#[tokio::test]
async fn a_chunked_body_over_a_smaller_limit_is_413() {
    let app = TestApp::spawn_with(|args| args.publish_max_bytes = 2048).await;
    let (app, _) = setup_with(app).await;
    post_chunked(
        &app,
        &publish_path("rooms"),
        Some(&app.admin_key),
        body_of_len(2049),
    )
    .await
    .assert(413, too_large(2048));
    post_chunked(
        &app,
        &publish_path("rooms"),
        Some(&app.admin_key),
        body_of_len(2048),
    )
    .await
    .assert_status(201);
}

// ---------------------------------------------------------------- permission

#[tokio::test]
async fn a_bare_key_may_not_publish_even_to_an_open_channel() {
    let (app, keys) = setup().await;
    app.post(
        &publish_path("plain"),
        Some(&keys.bare),
        json!({"payload": {"n": 1}}),
    )
    .await
    .assert(403, forbidden());
}

#[tokio::test]
async fn an_anonymous_reader_never_publishes() {
    let (app, keys) = setup().await;
    app.post(
        &publish_path("plain"),
        Some(&keys.reader),
        json!({"payload": {"n": 1}}),
    )
    .await
    .assert(403, forbidden());
    app.post(
        &publish_path("rooms"),
        Some(&keys.reader),
        json!({"payload": {"n": 1}, "room": "r"}),
    )
    .await
    .assert(403, forbidden());
}

#[tokio::test]
async fn a_request_without_a_key_may_not_publish() {
    let (app, _) = setup().await;
    app.post(&publish_path("plain"), None, json!({"payload": {"n": 1}}))
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn nothing_is_stored_when_publish_is_refused() {
    let (app, keys) = setup().await;
    for key in [&keys.bare, &keys.reader] {
        app.post(
            &publish_path("plain"),
            Some(key),
            json!({"payload": {"n": 1}}),
        )
        .await
        .assert_status(403);
    }
    app.get(&history_path("plain"), Some(&app.admin_key))
        .await
        .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn the_permission_check_comes_before_the_custom_publish_check() {
    let (app, keys) = setup().await;
    app.create_channel(
        "rivia",
        json!({"name": "quiet", "other_permissions": "publish", "custom_publish": false}),
    )
    .await;
    for key in [&keys.bare, &keys.reader] {
        app.post(
            &publish_path("quiet"),
            Some(key),
            json!({"payload": {"n": 1}}),
        )
        .await
        .assert(403, forbidden());
        app.post(
            &publish_path("eventlog"),
            Some(key),
            json!({"payload": {"n": 1}, "room": "r"}),
        )
        .await
        .assert(403, forbidden());
    }
}

#[tokio::test]
async fn a_channel_without_custom_publish_refuses_publishing() {
    let (app, keys) = setup().await;
    app.create_channel("rivia", json!({"name": "quiet"})).await;
    for key in [&app.admin_key, &keys.trusted] {
        app.post(
            &publish_path("quiet"),
            Some(key),
            json!({"payload": {"n": 1}}),
        )
        .await
        .assert(403, json!({"detail": NO_CUSTOM_PUBLISH}));
    }
}

#[tokio::test]
async fn publishing_to_eventlog_is_always_refused() {
    let (app, keys) = setup().await;
    for key in [&app.admin_key, &keys.trusted] {
        app.post(
            &publish_path("eventlog"),
            Some(key),
            json!({"payload": {"n": 1}, "room": "r"}),
        )
        .await
        .assert(403, json!({"detail": NO_CUSTOM_PUBLISH}));
    }
    // Even when it is opened to everyone.
    app.patch(
        "/v1.1/instances/rivia/channels/eventlog/",
        Some(&app.admin_key),
        json!({"other_permissions": "publish"}),
    )
    .await
    .assert_status(200);
    app.post(
        &publish_path("eventlog"),
        Some(&app.admin_key),
        json!({"payload": {"n": 1}, "room": "r"}),
    )
    .await
    .assert(403, json!({"detail": NO_CUSTOM_PUBLISH}));
}

#[tokio::test]
async fn the_custom_publish_check_comes_before_payload_and_room_validation() {
    let (app, _) = setup().await;
    app.create_channel("rivia", json!({"name": "quiet", "type": "separate_rooms"}))
        .await;
    app.post(
        &publish_path("quiet"),
        Some(&app.admin_key),
        json!({"payload": "not json"}),
    )
    .await
    .assert(403, json!({"detail": NO_CUSTOM_PUBLISH}));
    app.post(
        &publish_path("eventlog"),
        Some(&app.admin_key),
        json!({"payload": [1]}),
    )
    .await
    .assert(403, json!({"detail": NO_CUSTOM_PUBLISH}));
}

#[tokio::test]
async fn turning_custom_publish_on_allows_publishing() {
    let (app, _) = setup().await;
    app.create_channel("rivia", json!({"name": "quiet"})).await;
    app.patch(
        "/v1.1/instances/rivia/channels/quiet/",
        Some(&app.admin_key),
        json!({"custom_publish": true}),
    )
    .await
    .assert_status(200);
    app.post(
        &publish_path("quiet"),
        Some(&app.admin_key),
        json!({"payload": {"n": 1}}),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn publishing_to_a_missing_channel_is_not_found() {
    let (app, keys) = setup().await;
    for key in [&app.admin_key, &keys.trusted] {
        app.post(
            &publish_path("ghost"),
            Some(key),
            json!({"payload": {"n": 1}}),
        )
        .await
        .assert(404, json!({"detail": "Not found."}));
    }
}

#[tokio::test]
async fn publishing_in_a_missing_instance_is_instance_not_found() {
    let (app, _) = setup().await;
    app.post(
        "/v1.1/instances/nowhere/channels/plain/publish/",
        Some(&app.admin_key),
        json!({"payload": {"n": 1}}),
    )
    .await
    .assert(404, json!({"detail": "Instance was not found."}));
}

// ---------------------------------------------------------------- payload

#[tokio::test]
async fn a_payload_given_as_a_json_string_is_decoded() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            &publish_path("plain"),
            Some(&app.admin_key),
            json!({"payload": "{\"message\": \"hi\", \"nested\": {\"a\": [1, 2]}}"}),
        )
        .await;
    assert_eq!(
        resp.assert_status(201)["payload"],
        json!({"message": "hi", "nested": {"a": [1, 2]}})
    );
}

#[tokio::test]
async fn an_absent_null_or_empty_payload_becomes_an_empty_object() {
    let (app, _) = setup().await;
    for body in [json!({}), json!({"payload": null}), json!({"payload": ""})] {
        let resp = app
            .post(&publish_path("plain"), Some(&app.admin_key), body.clone())
            .await;
        assert_eq!(resp.assert_status(201)["payload"], json!({}), "body {body}");
    }
}

#[tokio::test]
async fn a_bodiless_publish_is_stored_with_an_empty_payload() {
    let (app, _) = setup().await;
    let resp = app
        .send(
            app.request(Method::POST, &publish_path("plain"), Some(&app.admin_key))
                .header(CONTENT_TYPE, "application/json"),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["payload"], json!({}));
    assert_eq!(body["room"], Value::Null);
}

#[tokio::test]
async fn a_payload_string_that_is_not_json_is_rejected() {
    let (app, _) = setup().await;
    for payload in ["not json", "{\"a\": ", "{'a': 1}"] {
        app.post(
            &publish_path("plain"),
            Some(&app.admin_key),
            json!({"payload": payload}),
        )
        .await
        .assert(400, json!({"payload": ["Not a valid JSON string."]}));
    }
}

#[tokio::test]
async fn a_payload_that_is_not_an_object_is_in_invalid_format() {
    let (app, _) = setup().await;
    for payload in [
        json!([1, 2]),
        json!(5),
        json!(true),
        json!("[1, 2]"),
        json!("5"),
        json!("\"text\""),
    ] {
        app.post(
            &publish_path("plain"),
            Some(&app.admin_key),
            json!({"payload": payload}),
        )
        .await
        .assert(
            400,
            json!({"payload": ["Payload passed in invalid format."]}),
        );
    }
    app.get(&history_path("plain"), Some(&app.admin_key))
        .await
        .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn a_payload_error_is_reported_before_a_missing_room() {
    let (app, _) = setup().await;
    app.post(
        &publish_path("rooms"),
        Some(&app.admin_key),
        json!({"payload": "not json"}),
    )
    .await
    .assert(400, json!({"payload": ["Not a valid JSON string."]}));
    app.post(
        &publish_path("rooms"),
        Some(&app.admin_key),
        json!({"payload": [1]}),
    )
    .await
    .assert(
        400,
        json!({"payload": ["Payload passed in invalid format."]}),
    );
}

#[tokio::test]
async fn unknown_fields_are_ignored_and_an_unwrapped_message_has_an_empty_payload() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            &publish_path("plain"),
            Some(&app.admin_key),
            json!({"message": "Hello", "id": 999_999, "author": {"admin": 42}, "action": "delete"}),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["payload"], json!({}));
    assert_eq!(body["action"], "custom");
    assert_ne!(body["id"], 999_999);
    assert_eq!(body["author"], json!({"admin": admin_id(&app).await}));
}

#[tokio::test]
async fn a_form_encoded_publish_decodes_the_payload_string() {
    let (app, _) = setup().await;
    let resp = app
        .send(
            app.request(Method::POST, &publish_path("rooms"), Some(&app.admin_key))
                .form(&[
                    ("payload", r#"{"message": "hi", "n": 3}"#),
                    ("room", " Lobby "),
                ]),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["payload"], json!({"message": "hi", "n": 3}));
    assert_eq!(body["room"], "lobby");
}

#[tokio::test]
async fn a_multipart_publish_decodes_the_payload_string() {
    let (app, _) = setup().await;
    let form = reqwest::multipart::Form::new()
        .text("payload", r#"{"message": "hi"}"#)
        .text("room", "Lobby");
    let resp = app
        .send(
            app.request(Method::POST, &publish_path("rooms"), Some(&app.admin_key))
                .multipart(form),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["payload"], json!({"message": "hi"}));
    assert_eq!(body["room"], "lobby");
}

#[tokio::test]
async fn a_form_encoded_payload_that_is_not_json_is_rejected() {
    let (app, _) = setup().await;
    app.send(
        app.request(Method::POST, &publish_path("plain"), Some(&app.admin_key))
            .form(&[("payload", "hello")]),
    )
    .await
    .assert(400, json!({"payload": ["Not a valid JSON string."]}));
}

// ---------------------------------------------------------------- rooms

#[tokio::test]
async fn a_room_is_trimmed_and_lower_cased() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            &publish_path("rooms"),
            Some(&app.admin_key),
            json!({"payload": {}, "room": "  Lobby "}),
        )
        .await;
    let body = resp.assert_status(201).clone();
    assert_eq!(body["room"], "lobby");
    app.get(
        &format!("{}?room=lobby", history_path("rooms")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, json!({"objects": [body], "next": null, "prev": null}));
}

#[tokio::test]
async fn a_room_of_128_characters_is_accepted_after_trimming() {
    let (app, _) = setup().await;
    let room = "r".repeat(128);
    let resp = app
        .post(
            &publish_path("rooms"),
            Some(&app.admin_key),
            json!({"payload": {}, "room": format!("  {room}  ")}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["room"], room);
}

#[tokio::test]
async fn a_room_is_measured_in_characters_not_bytes() {
    let (app, _) = setup().await;
    let room = "é".repeat(128);
    let resp = app
        .post(
            &publish_path("rooms"),
            Some(&app.admin_key),
            json!({"payload": {}, "room": room}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["room"], room);
    app.post(
        &publish_path("rooms"),
        Some(&app.admin_key),
        json!({"payload": {}, "room": "é".repeat(129)}),
    )
    .await
    .assert(
        400,
        json!({"room": ["Ensure this field has no more than 128 characters."]}),
    );
}

#[tokio::test]
async fn a_room_over_128_characters_is_too_long() {
    let (app, _) = setup().await;
    app.post(
        &publish_path("rooms"),
        Some(&app.admin_key),
        json!({"payload": {}, "room": "r".repeat(129)}),
    )
    .await
    .assert(
        400,
        json!({"room": ["Ensure this field has no more than 128 characters."]}),
    );
}

#[tokio::test]
async fn a_separate_rooms_channel_requires_a_room() {
    let (app, _) = setup().await;
    for body in [
        json!({"payload": {"n": 1}}),
        json!({"payload": {"n": 1}, "room": null}),
        json!({"payload": {"n": 1}, "room": ""}),
        json!({"payload": {"n": 1}, "room": "   "}),
    ] {
        app.post(&publish_path("rooms"), Some(&app.admin_key), body)
            .await
            .assert(400, json!({"room": ROOM_REQUIRED}));
    }
}

#[tokio::test]
async fn a_default_channel_ignores_the_room_and_stores_null() {
    let (app, _) = setup().await;
    let admin = admin_id(&app).await;
    let resp = app
        .post(
            &publish_path("plain"),
            Some(&app.admin_key),
            json!({"payload": {"n": 1}, "room": "Lobby"}),
        )
        .await;
    assert_message(
        resp.assert_status(201),
        "plain",
        Value::Null,
        json!({"n": 1}),
        json!({"admin": admin}),
    );
}

// ---------------------------------------------------------------- ids

#[tokio::test]
async fn ids_are_consecutive_within_a_channel_across_its_rooms() {
    let (app, _) = setup().await;
    let mut ids = Vec::new();
    for room in ["a", "b", "a", "c", "B"] {
        let m = app
            .publish("rivia", "rooms", json!({"payload": {}, "room": room}))
            .await;
        ids.push(id_of(&m));
    }
    let first = ids[0];
    assert!(first > 0);
    assert_eq!(ids, (first..first + 5).collect::<Vec<_>>());
}

#[tokio::test]
async fn each_channel_has_its_own_id_sequence() {
    let (app, _) = setup().await;
    let p1 = id_of(&app.publish("rivia", "plain", json!({})).await);
    let r1 = id_of(&app.publish("rivia", "rooms", json!({"room": "x"})).await);
    for _ in 0..3 {
        app.publish("rivia", "rooms", json!({"room": "x"})).await;
    }
    let p2 = id_of(&app.publish("rivia", "plain", json!({})).await);
    let r2 = id_of(&app.publish("rivia", "rooms", json!({"room": "y"})).await);
    assert_eq!(p2, p1 + 1, "publishes elsewhere consumed ids of `plain`");
    assert_eq!(r2, r1 + 4);
}

#[tokio::test]
async fn concurrent_publishers_get_unique_consecutive_ids_and_history_has_them_all_in_order() {
    const TASKS: i64 = 8;
    const PER_TASK: i64 = 50;
    const ROOMS: i64 = 4;
    let (app, _) = setup().await;
    let app = Arc::new(app);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let app = Arc::clone(&app);
        set.spawn(async move {
            let mut got = Vec::new();
            for i in 0..PER_TASK {
                let room = format!("room{}", (t + i) % ROOMS);
                let resp = app
                    .post(
                        &publish_path("rooms"),
                        Some(&app.admin_key),
                        json!({"payload": {"t": t, "i": i}, "room": room}),
                    )
                    .await;
                let body = resp.assert_status(201).clone();
                got.push((id_of(&body), body));
            }
            got
        });
    }
    let mut by_id: BTreeMap<i64, Value> = BTreeMap::new();
    while let Some(result) = set.join_next().await {
        let got = result.expect("publisher task");
        let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one publisher's sequential ids are not increasing: {ids:?}"
        );
        for (id, body) in got {
            assert!(by_id.insert(id, body).is_none(), "id {id} handed out twice");
        }
    }
    let total = TASKS * PER_TASK;
    assert_eq!(by_id.len() as i64, total);
    let first = *by_id.keys().next().unwrap();
    assert!(first >= 1);
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        (first..first + total).collect::<Vec<_>>(),
        "ids are not consecutive"
    );

    // History of every room, ascending, paged through `next`, equals what was published.
    let mut seen = BTreeSet::new();
    for r in 0..ROOMS {
        let room = format!("room{r}");
        let expected: Vec<&Value> = by_id.values().filter(|m| m["room"] == room).collect();
        let mut url = format!(
            "{}?room={room}&ordering=asc&page_size=30",
            history_path("rooms")
        );
        let mut listed: Vec<Value> = Vec::new();
        for _ in 0..100 {
            let page = app.get(&url, Some(&app.admin_key)).await;
            let page = page.assert_status(200).clone();
            listed.extend(page["objects"].as_array().expect("objects").iter().cloned());
            match page["next"].as_str() {
                Some(next) => url = next.to_owned(),
                None => break,
            }
        }
        assert_eq!(
            listed.iter().collect::<Vec<_>>(),
            expected,
            "history of {room} differs"
        );
        seen.extend(listed.iter().map(id_of));
    }
    assert_eq!(seen.len() as i64, total);
}
