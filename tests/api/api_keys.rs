//! docs/api.md §6: instance API keys — list, create, detail, update, delete, reset_key; flags, parity,
//! case-insensitive keys.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const GENERIC_403: &str = "You do not have permission to perform this action.";
const KEYS: &str = "/v1.1/instances/rivia/api_keys/";

fn denied() -> Value {
    json!({"detail": GENERIC_403})
}

fn no_such_key() -> Value {
    json!({"detail": "No such API Key."})
}

fn last_hex_digit(key: &str) -> u32 {
    key.chars().last().and_then(|c| c.to_digit(16)).unwrap()
}

fn is_hex40(key: &str) -> bool {
    key.len() == 40 && key.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'))
}

/// Asserts the exact §6 representation.
#[track_caller]
fn assert_api_key(body: &Value, instance: &str, description: &str, flags: [bool; 4]) {
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "allow_anonymous_read",
            "allow_group_create",
            "allow_user_create",
            "api_key",
            "created_at",
            "description",
            "id",
            "ignore_acl",
            "links"
        ],
        "fields of {body}"
    );
    let id = body["id"].as_i64().unwrap_or_else(|| panic!("id: {body}"));
    assert!(id > 0);
    let key = body["api_key"].as_str().unwrap();
    assert!(is_hex40(key), "api_key {key}");
    assert_eq!(
        last_hex_digit(key) % 2,
        1,
        "API keys end in an odd digit: {key}"
    );
    assert_eq!(body["description"], description);
    assert_eq!(body["ignore_acl"], flags[0], "ignore_acl of {body}");
    assert_eq!(
        body["allow_user_create"], flags[1],
        "allow_user_create of {body}"
    );
    assert_eq!(
        body["allow_group_create"], flags[2],
        "allow_group_create of {body}"
    );
    assert_eq!(
        body["allow_anonymous_read"], flags[3],
        "allow_anonymous_read of {body}"
    );
    let created = body["created_at"].as_str().unwrap();
    assert_eq!(
        created.len(),
        "2016-03-17T20:05:00.000000Z".len(),
        "{created}"
    );
    assert!(created.ends_with('Z'), "{created}");
    assert_eq!(
        body["links"],
        json!({"self": format!("/v1.1/instances/{instance}/api_keys/{id}/"),
               "reset_key": format!("/v1.1/instances/{instance}/api_keys/{id}/reset_key/")})
    );
}

/// Creates a key as the owner and returns its full representation.
async fn create_key(app: &TestApp, body: Value) -> Value {
    app.post(KEYS, Some(&app.admin_key), body)
        .await
        .assert_status(201)
        .clone()
}

async fn spawn_with_instance() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app
}

fn detail(id: &Value) -> String {
    format!("{KEYS}{id}/")
}

// ---------------------------------------------------------------- create

#[tokio::test]
async fn create_with_an_empty_body_returns_a_key_with_defaults() {
    let app = spawn_with_instance().await;
    let body = create_key(&app, json!({})).await;
    assert_api_key(&body, "rivia", "", [false; 4]);
}

#[tokio::test]
async fn create_with_every_flag_and_a_description() {
    let app = spawn_with_instance().await;
    let body = create_key(
        &app,
        json!({"description": "web app", "ignore_acl": true, "allow_user_create": true,
               "allow_group_create": true, "allow_anonymous_read": true}),
    )
    .await;
    assert_api_key(&body, "rivia", "web app", [true; 4]);
}

#[tokio::test]
async fn create_sets_each_flag_independently() {
    let app = spawn_with_instance().await;
    let names = [
        "ignore_acl",
        "allow_user_create",
        "allow_group_create",
        "allow_anonymous_read",
    ];
    for (i, name) in names.iter().enumerate() {
        let body = create_key(&app, json!({ *name: true })).await;
        let mut flags = [false; 4];
        flags[i] = true;
        assert_api_key(&body, "rivia", "", flags);
    }
}

#[tokio::test]
async fn create_coerces_every_documented_boolean_spelling() {
    let app = spawn_with_instance().await;
    let truthy = [
        json!(true),
        json!("true"),
        json!("True"),
        json!("TRUE"),
        json!("t"),
        json!("T"),
        json!("yes"),
        json!("y"),
        json!("on"),
        json!("1"),
        json!(1),
    ];
    let falsy = [
        json!(false),
        json!("false"),
        json!("False"),
        json!("FALSE"),
        json!("f"),
        json!("F"),
        json!("no"),
        json!("n"),
        json!("off"),
        json!("0"),
        json!(0),
    ];
    for value in truthy {
        let body = create_key(
            &app,
            json!({"ignore_acl": value, "allow_user_create": value,
                   "allow_group_create": value, "allow_anonymous_read": value}),
        )
        .await;
        assert_api_key(&body, "rivia", "", [true; 4]);
    }
    for value in falsy {
        let body = create_key(
            &app,
            json!({"ignore_acl": value, "allow_user_create": value,
                   "allow_group_create": value, "allow_anonymous_read": value}),
        )
        .await;
        assert_api_key(&body, "rivia", "", [false; 4]);
    }
}

#[tokio::test]
async fn create_accepts_flags_in_a_form_body() {
    let app = spawn_with_instance().await;
    let resp = app
        .send(
            app.request(Method::POST, KEYS, Some(&app.admin_key))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("description=form+key&ignore_acl=true&allow_user_create=on&allow_group_create=0&allow_anonymous_read=False"),
        )
        .await;
    assert_api_key(
        resp.assert_status(201),
        "rivia",
        "form key",
        [true, true, false, false],
    );
}

#[tokio::test]
async fn create_rejects_values_that_are_not_booleans() {
    let app = spawn_with_instance().await;
    app.post(KEYS, Some(&app.admin_key), json!({"ignore_acl": "maybe"}))
        .await
        .assert(
            400,
            json!({"ignore_acl": ["\"maybe\" is not a valid boolean."]}),
        );
    app.post(
        KEYS,
        Some(&app.admin_key),
        json!({"allow_user_create": "2"}),
    )
    .await
    .assert(
        400,
        json!({"allow_user_create": ["\"2\" is not a valid boolean."]}),
    );
    app.post(
        KEYS,
        Some(&app.admin_key),
        json!({"allow_group_create": "nope", "allow_anonymous_read": "si"}),
    )
    .await
    .assert(
        400,
        json!({"allow_group_create": ["\"nope\" is not a valid boolean."],
               "allow_anonymous_read": ["\"si\" is not a valid boolean."]}),
    );
    // Nothing was created.
    app.get(KEYS, Some(&app.admin_key))
        .await
        .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn create_limits_the_description_to_256_characters() {
    let app = spawn_with_instance().await;
    app.post(
        KEYS,
        Some(&app.admin_key),
        json!({"description": "d".repeat(257)}),
    )
    .await
    .assert(
        400,
        json!({"description": ["Ensure this field has no more than 256 characters."]}),
    );
    let body = create_key(&app, json!({"description": "d".repeat(256)})).await;
    assert_api_key(&body, "rivia", &"d".repeat(256), [false; 4]);
}

#[tokio::test]
async fn create_trims_the_description() {
    let app = spawn_with_instance().await;
    let body = create_key(&app, json!({"description": "  web app "})).await;
    assert_eq!(body["description"], "web app");
}

#[tokio::test]
async fn create_ignores_read_only_fields() {
    let app = spawn_with_instance().await;
    let chosen = format!("{}1", "a".repeat(39));
    let body = create_key(
        &app,
        json!({"id": 4242, "api_key": chosen, "created_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_api_key(&body, "rivia", "", [false; 4]);
    assert_ne!(body["api_key"], chosen.as_str());
    assert_ne!(body["created_at"], "2001-01-01T00:00:00.000000Z");
}

#[tokio::test]
async fn each_created_key_is_distinct_and_works_at_once() {
    let app = spawn_with_instance().await;
    let a = create_key(&app, json!({})).await;
    let b = create_key(&app, json!({})).await;
    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["api_key"], b["api_key"]);
    for key in [&a, &b] {
        let resp = app
            .get("/v1.1/instances/rivia/", key["api_key"].as_str())
            .await;
        assert_eq!(resp.assert_status(200)["role"], "api_key");
    }
}

#[tokio::test]
async fn create_by_an_api_key_is_forbidden() {
    let app = spawn_with_instance().await;
    let trusted = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    app.post(KEYS, Some(&trusted), json!({"ignore_acl": true}))
        .await
        .assert(403, denied());
    let list = app
        .get(KEYS, Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(list["objects"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn create_without_a_key_is_forbidden() {
    let app = spawn_with_instance().await;
    app.post(KEYS, None, json!({})).await.assert(403, denied());
}

#[tokio::test]
async fn create_in_a_missing_instance_is_instance_not_found() {
    let app = TestApp::spawn().await;
    app.post(KEYS, Some(&app.admin_key), json!({}))
        .await
        .assert(404, json!({"detail": "Instance was not found."}));
}

// ---------------------------------------------------------------- list

#[tokio::test]
async fn list_for_the_owner_shows_every_key_in_id_order() {
    let app = spawn_with_instance().await;
    let a = create_key(&app, json!({"description": "a"})).await;
    let b = create_key(&app, json!({"description": "b", "ignore_acl": true})).await;
    let c = create_key(&app, json!({"description": "c"})).await;
    app.get(KEYS, Some(&app.admin_key)).await.assert(
        200,
        json!({"objects": [a, b, c], "next": null, "prev": null}),
    );
}

#[tokio::test]
async fn list_for_an_api_key_shows_only_itself() {
    let app = spawn_with_instance().await;
    create_key(&app, json!({"description": "other"})).await;
    let me = create_key(&app, json!({"description": "me", "ignore_acl": true})).await;
    create_key(&app, json!({"description": "another"})).await;
    let key = me["api_key"].as_str().unwrap();
    app.get(KEYS, Some(key))
        .await
        .assert(200, json!({"objects": [me], "next": null, "prev": null}));
}

#[tokio::test]
async fn list_for_a_bare_api_key_also_shows_only_itself() {
    let app = spawn_with_instance().await;
    let me = create_key(&app, json!({})).await;
    create_key(&app, json!({"ignore_acl": true})).await;
    app.get(KEYS, me["api_key"].as_str())
        .await
        .assert(200, json!({"objects": [me], "next": null, "prev": null}));
}

#[tokio::test]
async fn list_pages_with_page_size() {
    let app = spawn_with_instance().await;
    let a = create_key(&app, json!({})).await;
    let b = create_key(&app, json!({})).await;
    create_key(&app, json!({})).await;
    let page = app
        .get(&format!("{KEYS}?page_size=2"), Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(page["objects"], json!([a, b]));
    assert!(page["next"].is_string(), "a full page links onward: {page}");
    assert_eq!(page["prev"], Value::Null);
}

#[tokio::test]
async fn list_without_a_key_is_forbidden() {
    let app = spawn_with_instance().await;
    app.get(KEYS, None).await.assert(403, denied());
}

// ---------------------------------------------------------------- detail

#[tokio::test]
async fn detail_for_the_owner_returns_the_representation() {
    let app = spawn_with_instance().await;
    let created = create_key(
        &app,
        json!({"description": "web app", "allow_user_create": true}),
    )
    .await;
    app.get(&detail(&created["id"]), Some(&app.admin_key))
        .await
        .assert(200, created.clone());
}

#[tokio::test]
async fn an_api_key_may_read_itself() {
    let app = spawn_with_instance().await;
    let me = create_key(&app, json!({"description": "me"})).await;
    app.get(&detail(&me["id"]), me["api_key"].as_str())
        .await
        .assert(200, me.clone());
}

#[tokio::test]
async fn an_api_key_reading_another_key_id_gets_not_found() {
    let app = spawn_with_instance().await;
    let me = create_key(&app, json!({"ignore_acl": true})).await;
    let other = create_key(&app, json!({})).await;
    app.get(&detail(&other["id"]), me["api_key"].as_str())
        .await
        .assert(404, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn detail_of_a_missing_id_is_not_found() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({})).await;
    let missing = created["id"].as_i64().unwrap() + 1000;
    app.get(&format!("{KEYS}{missing}/"), Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Not found."}));
}

// ---------------------------------------------------------------- update

#[tokio::test]
async fn patch_by_the_owner_changes_flags_and_description() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({"description": "web app"})).await;
    let body = app
        .patch(
            &detail(&created["id"]),
            Some(&app.admin_key),
            json!({"description": "backend", "ignore_acl": "yes", "allow_anonymous_read": 1}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_api_key(&body, "rivia", "backend", [true, false, false, true]);
    assert_eq!(body["id"], created["id"]);
    assert_eq!(
        body["api_key"], created["api_key"],
        "updating keeps the key value"
    );
    assert_eq!(body["created_at"], created["created_at"]);
    app.get(&detail(&created["id"]), Some(&app.admin_key))
        .await
        .assert(200, body);
}

#[tokio::test]
async fn patch_updates_only_the_fields_sent() {
    let app = spawn_with_instance().await;
    let created = create_key(
        &app,
        json!({"description": "web app", "allow_user_create": true, "allow_group_create": true}),
    )
    .await;
    let body = app
        .patch(
            &detail(&created["id"]),
            Some(&app.admin_key),
            json!({"allow_group_create": false}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_api_key(&body, "rivia", "web app", [false, true, false, false]);
}

#[tokio::test]
async fn put_by_the_owner_updates_the_key() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({"allow_user_create": true})).await;
    let body = app
        .put(
            &detail(&created["id"]),
            Some(&app.admin_key),
            json!({"description": "put", "ignore_acl": true, "allow_user_create": false,
                   "allow_group_create": true, "allow_anonymous_read": false}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_api_key(&body, "rivia", "put", [true, false, true, false]);
    assert_eq!(body["api_key"], created["api_key"]);
}

#[tokio::test]
async fn update_rejects_values_that_are_not_booleans_and_changes_nothing() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({})).await;
    app.patch(
        &detail(&created["id"]),
        Some(&app.admin_key),
        json!({"description": "changed", "ignore_acl": "sure"}),
    )
    .await
    .assert(
        400,
        json!({"ignore_acl": ["\"sure\" is not a valid boolean."]}),
    );
    app.get(&detail(&created["id"]), Some(&app.admin_key))
        .await
        .assert(200, created);
}

#[tokio::test]
async fn update_ignores_the_read_only_key_value() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({})).await;
    let chosen = format!("{}3", "b".repeat(39));
    let body = app
        .patch(
            &detail(&created["id"]),
            Some(&app.admin_key),
            json!({"api_key": chosen, "id": 9999}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body, created);
    app.get("/v1.1/instances/rivia/", Some(&chosen))
        .await
        .assert(403, no_such_key());
}

#[tokio::test]
async fn a_flag_change_takes_effect_on_the_next_request() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({})).await;
    let key = created["api_key"].as_str().unwrap();
    // A bare key may not list channels (§9.3)...
    app.get("/v1.1/instances/rivia/channels/", Some(key))
        .await
        .assert(403, denied());
    app.patch(
        &detail(&created["id"]),
        Some(&app.admin_key),
        json!({"ignore_acl": true}),
    )
    .await
    .assert_status(200);
    // ...a trusted key may.
    app.get("/v1.1/instances/rivia/channels/", Some(key))
        .await
        .assert_status(200);
    app.patch(
        &detail(&created["id"]),
        Some(&app.admin_key),
        json!({"ignore_acl": false}),
    )
    .await
    .assert_status(200);
    app.get("/v1.1/instances/rivia/channels/", Some(key))
        .await
        .assert(403, denied());
}

#[tokio::test]
async fn writes_by_an_api_key_are_forbidden_even_on_itself() {
    let app = spawn_with_instance().await;
    let me = create_key(&app, json!({"ignore_acl": true, "description": "me"})).await;
    let other = create_key(&app, json!({"description": "other"})).await;
    let key = me["api_key"].as_str().unwrap();
    for target in [&me, &other] {
        let path = detail(&target["id"]);
        app.put(&path, Some(key), json!({"description": "hacked"}))
            .await
            .assert(403, denied());
        app.patch(&path, Some(key), json!({"description": "hacked"}))
            .await
            .assert(403, denied());
        app.post(&format!("{path}reset_key/"), Some(key), json!({}))
            .await
            .assert(403, denied());
        app.delete(&path, Some(key)).await.assert(403, denied());
    }
    // Nothing changed.
    app.get(KEYS, Some(&app.admin_key)).await.assert(
        200,
        json!({"objects": [me, other], "next": null, "prev": null}),
    );
}

#[tokio::test]
async fn update_of_a_missing_id_is_not_found() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({})).await;
    let missing = created["id"].as_i64().unwrap() + 1000;
    let path = format!("{KEYS}{missing}/");
    app.patch(&path, Some(&app.admin_key), json!({"description": "x"}))
        .await
        .assert(404, json!({"detail": "Not found."}));
    app.delete(&path, Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Not found."}));
    app.post(
        &format!("{path}reset_key/"),
        Some(&app.admin_key),
        json!({}),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
}

// ---------------------------------------------------------------- delete

#[tokio::test]
async fn delete_by_the_owner_answers_204_and_the_key_stops_working() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({"ignore_acl": true})).await;
    let key = created["api_key"].as_str().unwrap();
    // Use the key first, so any cache has seen it.
    app.get("/v1.1/instances/rivia/", Some(key))
        .await
        .assert_status(200);
    let resp = app
        .delete(&detail(&created["id"]), Some(&app.admin_key))
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert_eq!(resp.text, "");
    app.get("/v1.1/instances/rivia/", Some(key))
        .await
        .assert(403, no_such_key());
    app.get("/v1.1/instances/rivia/channels/", Some(key))
        .await
        .assert(403, no_such_key());
    app.get(&detail(&created["id"]), Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Not found."}));
    app.get(KEYS, Some(&app.admin_key))
        .await
        .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn deleting_one_key_leaves_the_others_working() {
    let app = spawn_with_instance().await;
    let doomed = create_key(&app, json!({})).await;
    let kept = create_key(&app, json!({})).await;
    app.delete(&detail(&doomed["id"]), Some(&app.admin_key))
        .await
        .assert_status(204);
    app.get("/v1.1/instances/rivia/", kept["api_key"].as_str())
        .await
        .assert_status(200);
}

// ---------------------------------------------------------------- reset_key

#[tokio::test]
async fn reset_key_returns_a_new_key_value_for_the_same_key() {
    let app = spawn_with_instance().await;
    let created = create_key(
        &app,
        json!({"description": "web app", "allow_user_create": true}),
    )
    .await;
    let body = app
        .post(
            &format!("{}reset_key/", detail(&created["id"])),
            Some(&app.admin_key),
            json!({}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_api_key(&body, "rivia", "web app", [false, true, false, false]);
    assert_eq!(body["id"], created["id"]);
    assert_eq!(body["created_at"], created["created_at"]);
    assert_ne!(body["api_key"], created["api_key"]);
    app.get(&detail(&created["id"]), Some(&app.admin_key))
        .await
        .assert(200, body);
}

#[tokio::test]
async fn reset_key_makes_the_old_key_stop_working() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({"ignore_acl": true})).await;
    let old = created["api_key"].as_str().unwrap();
    // Use the key first, so any cache has seen it.
    app.get("/v1.1/instances/rivia/", Some(old))
        .await
        .assert_status(200);
    let body = app
        .post(
            &format!("{}reset_key/", detail(&created["id"])),
            Some(&app.admin_key),
            json!({}),
        )
        .await
        .assert_status(200)
        .clone();
    let new = body["api_key"].as_str().unwrap();
    app.get("/v1.1/instances/rivia/", Some(old))
        .await
        .assert(403, no_such_key());
    app.get("/v1.1/instances/", Some(old))
        .await
        .assert(403, no_such_key());
    let resp = app.get("/v1.1/instances/rivia/", Some(new)).await;
    assert_eq!(resp.assert_status(200)["role"], "api_key");
    app.get("/v1.1/instances/rivia/channels/", Some(new))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn reset_key_accepts_a_bodiless_post_with_a_json_content_type() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({})).await;
    let resp = app
        .send(
            app.request(
                Method::POST,
                &format!("{}reset_key/", detail(&created["id"])),
                Some(&app.admin_key),
            )
            .header("Content-Type", "application/json"),
        )
        .await;
    assert_api_key(resp.assert_status(200), "rivia", "", [false; 4]);
}

// ---------------------------------------------------------------- key format

#[tokio::test]
async fn api_keys_end_in_an_odd_hex_digit_and_account_keys_in_an_even_one() {
    let app = spawn_with_instance().await;
    let mut api_keys = Vec::new();
    for _ in 0..12 {
        api_keys.push(create_key(&app, json!({})).await);
    }
    let first = api_keys[0]["id"].clone();
    for _ in 0..8 {
        let reset = app
            .post(
                &format!("{}reset_key/", detail(&first)),
                Some(&app.admin_key),
                json!({}),
            )
            .await
            .assert_status(200)
            .clone();
        api_keys.push(reset);
    }
    for body in &api_keys {
        let key = body["api_key"].as_str().unwrap();
        assert!(is_hex40(key), "{key}");
        assert_eq!(last_hex_digit(key) % 2, 1, "API key {key}");
    }

    let mut account_keys = vec![app.admin_key.clone()];
    for i in 0..6 {
        account_keys.push(app.create_account(&format!("user{i}@example.com")).await);
    }
    let mut current = account_keys[1].clone();
    for _ in 0..6 {
        current = app
            .post("/v1.1/account/reset_key/", Some(&current), json!({}))
            .await
            .assert_status(200)["account_key"]
            .as_str()
            .unwrap()
            .to_owned();
        account_keys.push(current.clone());
    }
    for key in &account_keys {
        assert!(is_hex40(key), "{key}");
        assert_eq!(last_hex_digit(key) % 2, 0, "account key {key}");
    }
}

#[tokio::test]
async fn keys_are_case_insensitive_on_input() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({"ignore_acl": true})).await;
    let upper_api = created["api_key"].as_str().unwrap().to_uppercase();
    let resp = app.get("/v1.1/instances/rivia/", Some(&upper_api)).await;
    assert_eq!(resp.assert_status(200)["role"], "api_key");
    app.get(
        &format!("/v1.1/instances/rivia/channels/?api_key={upper_api}"),
        None,
    )
    .await
    .assert_status(200);

    let upper_account = app.admin_key.to_uppercase();
    let resp = app
        .get("/v1.1/instances/rivia/", Some(&upper_account))
        .await;
    assert_eq!(resp.assert_status(200)["role"], "full");
    app.get("/v1.1/account/", Some(&upper_account))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_api_key_with_its_parity_flipped_is_no_such_api_key() {
    let app = spawn_with_instance().await;
    let created = create_key(&app, json!({"ignore_acl": true})).await;
    let key = created["api_key"].as_str().unwrap();
    // Replace the odd last digit with an even one: now it reads as an (unknown) account key.
    let flipped = format!("{}{:x}", &key[..39], last_hex_digit(key) - 1);
    app.get("/v1.1/instances/rivia/", Some(&flipped))
        .await
        .assert(403, no_such_key());
}

#[tokio::test]
async fn malformed_and_unknown_keys_are_no_such_api_key() {
    let app = spawn_with_instance().await;
    for key in [
        "123".to_owned(),
        "g".repeat(40),
        format!("{}1", "a".repeat(40)),
        format!("{}1", "a".repeat(39)),
    ] {
        let resp = app.get("/v1.1/instances/rivia/", Some(&key)).await;
        assert_eq!(
            (resp.status, &resp.json),
            (403, &no_such_key()),
            "key {key}: {}",
            resp.text
        );
    }
}

// ---------------------------------------------------------------- paging of an API key's own list

#[tokio::test]
async fn an_api_keys_own_list_returns_nothing_for_page_size_zero() {
    let app = spawn_with_instance().await;
    let me = create_key(&app, json!({})).await;
    let body = app
        .get(&format!("{KEYS}?page_size=0"), me["api_key"].as_str())
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        body["objects"],
        json!([]),
        "page_size=0 returns no objects (§2.5)"
    );
    // The owner's list behaves the same way.
    let body = app
        .get(&format!("{KEYS}?page_size=0"), Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["objects"], json!([]));
}

#[tokio::test]
async fn following_next_on_an_api_keys_own_list_does_not_repeat_the_key() {
    let app = spawn_with_instance().await;
    let me = create_key(&app, json!({})).await;
    let key = me["api_key"].as_str().unwrap();
    let first = app
        .get(&format!("{KEYS}?page_size=1"), Some(key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(first["objects"], json!([me]));
    // A full page links onward (§2.5); the next page lies past the only key there is.
    let next = first["next"]
        .as_str()
        .unwrap_or_else(|| panic!("a full page has a next link: {first}"))
        .to_owned();
    let second = app.get(&next, Some(key)).await.assert_status(200).clone();
    assert_eq!(second["objects"], json!([]), "followed {next}");
}

#[tokio::test]
async fn an_api_keys_own_list_honours_the_cursor() {
    let app = spawn_with_instance().await;
    let me = create_key(&app, json!({})).await;
    let id = me["id"].as_i64().unwrap();
    let body = app
        .get(
            &format!("{KEYS}?direction=1&last_pk={id}"),
            me["api_key"].as_str(),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        body["objects"],
        json!([]),
        "last_pk is an exclusive bound (§2.5)"
    );
}

#[tokio::test]
async fn a_key_id_that_is_not_a_positive_integer_is_not_found() {
    let app = spawn_with_instance().await;
    create_key(&app, json!({})).await;
    for id in ["abc", "0", "-1", "1.5", "99999999999999999999999"] {
        let resp = app.get(&format!("{KEYS}{id}/"), Some(&app.admin_key)).await;
        assert_eq!(
            (resp.status, &resp.json),
            (404, &json!({"detail": "Not found."})),
            "id {id}: {}",
            resp.text
        );
    }
}
