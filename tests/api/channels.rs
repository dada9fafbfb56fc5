//! Channels: the resource, built-ins, permissions and CRUD (docs/api.md §9.1–§9.4).

use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};

const FORBIDDEN: &str = "You do not have permission to perform this action.";

fn forbidden() -> Value {
    json!({"detail": FORBIDDEN})
}

fn not_found() -> Value {
    json!({"detail": "Not found."})
}

const CHANNELS: &str = "/v1.1/instances/rivia/channels/";

fn channel_path(name: &str) -> String {
    format!("{CHANNELS}{name}/")
}

/// The keys of one instance, one per caller class of docs/api.md §3.4 (besides the owner).
struct Keys {
    trusted: String,
    reader: String,
    bare: String,
}

async fn setup() -> (TestApp, Keys) {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let trusted = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    let reader = app
        .create_api_key("rivia", json!({"allow_anonymous_read": true}))
        .await;
    let bare = app.create_api_key("rivia", json!({})).await;
    (
        app,
        Keys {
            trusted,
            reader,
            bare,
        },
    )
}

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

/// A channel representation with its timestamps checked and removed.
#[track_caller]
fn without_timestamps(body: &Value) -> Value {
    let mut body = body.clone();
    let object = body.as_object_mut().expect("an object");
    assert_timestamp(&object.remove("created_at").expect("created_at"));
    assert_timestamp(&object.remove("updated_at").expect("updated_at"));
    body
}

/// The docs/api.md §9.1 representation (without timestamps) of a channel of `rivia` with no group.
fn representation(name: &str, overrides: Value) -> Value {
    let base = channel_path(name);
    let mut body = json!({
        "name": name,
        "description": "",
        "type": "default",
        "group": null,
        "group_permissions": "none",
        "other_permissions": "none",
        "custom_publish": false,
        "links": {
            "self": base,
            "poll": format!("{base}poll/"),
            "publish": format!("{base}publish/"),
            "history": format!("{base}history/"),
        },
    });
    for (k, v) in overrides.as_object().expect("overrides object") {
        body[k] = v.clone();
    }
    body
}

#[track_caller]
fn assert_channel(resp: &Resp, status: u16, expected: Value) {
    let body = resp.assert_status(status);
    assert_eq!(without_timestamps(body), expected, "body: {}", resp.text);
}

fn names(list: &Value) -> Vec<String> {
    list["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list envelope: {list}"))
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_owned())
        .collect()
}

// ---------------------------------------------------------------- create

#[tokio::test]
async fn creating_a_channel_with_only_a_name_returns_201_with_the_defaults_and_links() {
    let (app, _) = setup().await;
    let resp = app
        .post(CHANNELS, Some(&app.admin_key), json!({"name": "witchers"}))
        .await;
    assert_channel(&resp, 201, representation("witchers", json!({})));
    let body = resp.json.clone();
    assert_eq!(body["created_at"], body["updated_at"]);
    assert!(
        body["links"].get("group").is_none(),
        "links.group must be omitted when group is null"
    );
}

#[tokio::test]
async fn creating_a_channel_with_every_writable_field_echoes_them() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            CHANNELS,
            Some(&app.admin_key),
            json!({
                "name": "witchers",
                "description": "Contract board",
                "type": "separate_rooms",
                "group": null,
                "group_permissions": "publish",
                "other_permissions": "subscribe",
                "custom_publish": true,
            }),
        )
        .await;
    assert_channel(
        &resp,
        201,
        representation(
            "witchers",
            json!({
                "description": "Contract board",
                "type": "separate_rooms",
                "group_permissions": "publish",
                "other_permissions": "subscribe",
                "custom_publish": true,
            }),
        ),
    );
}

#[tokio::test]
async fn the_created_channel_is_what_a_later_get_returns() {
    let (app, _) = setup().await;
    let created = app
        .create_channel(
            "rivia",
            json!({"name": "witchers", "description": "d", "custom_publish": true}),
        )
        .await;
    app.get(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert(200, created);
}

#[tokio::test]
async fn a_trusted_key_may_create_a_channel() {
    let (app, keys) = setup().await;
    let resp = app
        .post(CHANNELS, Some(&keys.trusted), json!({"name": "witchers"}))
        .await;
    assert_channel(&resp, 201, representation("witchers", json!({})));
}

#[tokio::test]
async fn an_anonymous_reader_or_bare_key_may_not_create_a_channel() {
    let (app, keys) = setup().await;
    for key in [&keys.reader, &keys.bare] {
        app.post(CHANNELS, Some(key), json!({"name": "witchers"}))
            .await
            .assert(403, forbidden());
    }
    app.post(CHANNELS, None, json!({"name": "witchers"}))
        .await
        .assert(403, forbidden());
    app.get(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn numeric_type_codes_are_accepted_and_names_are_output() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            CHANNELS,
            Some(&app.admin_key),
            json!({"name": "zero", "type": 0}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["type"], "default");
    let resp = app
        .post(
            CHANNELS,
            Some(&app.admin_key),
            json!({"name": "one", "type": 1}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["type"], "separate_rooms");
}

#[tokio::test]
async fn numeric_permission_codes_are_accepted_and_names_are_output() {
    let (app, _) = setup().await;
    for (code, name) in [(0, "none"), (1, "subscribe"), (2, "publish")] {
        let channel = format!("perm{code}");
        let resp = app
            .post(
                CHANNELS,
                Some(&app.admin_key),
                json!({"name": channel, "group_permissions": code, "other_permissions": code}),
            )
            .await;
        let body = resp.assert_status(201);
        assert_eq!(body["group_permissions"], name, "code {code}");
        assert_eq!(body["other_permissions"], name, "code {code}");
    }
}

#[tokio::test]
async fn an_unknown_type_is_not_a_valid_choice() {
    let (app, _) = setup().await;
    app.post(
        CHANNELS,
        Some(&app.admin_key),
        json!({"name": "witchers", "type": "foo"}),
    )
    .await
    .assert(400, json!({"type": ["\"foo\" is not a valid choice."]}));
}

#[tokio::test]
async fn an_unknown_permission_is_not_a_valid_choice() {
    let (app, _) = setup().await;
    app.post(
        CHANNELS,
        Some(&app.admin_key),
        json!({"name": "witchers", "other_permissions": "admin"}),
    )
    .await
    .assert(
        400,
        json!({"other_permissions": ["\"admin\" is not a valid choice."]}),
    );
    app.post(
        CHANNELS,
        Some(&app.admin_key),
        json!({"name": "witchers", "group_permissions": "owner"}),
    )
    .await
    .assert(
        400,
        json!({"group_permissions": ["\"owner\" is not a valid choice."]}),
    );
}

#[tokio::test]
async fn a_duplicate_name_must_be_unique_even_in_another_case() {
    let (app, _) = setup().await;
    app.create_channel("rivia", json!({"name": "witchers"}))
        .await;
    for name in ["witchers", "Witchers", " WITCHERS "] {
        app.post(CHANNELS, Some(&app.admin_key), json!({"name": name}))
            .await
            .assert(400, json!({"name": ["This field must be unique."]}));
    }
}

#[tokio::test]
async fn the_built_in_names_are_taken() {
    let (app, _) = setup().await;
    for name in ["default", "eventlog"] {
        app.post(CHANNELS, Some(&app.admin_key), json!({"name": name}))
            .await
            .assert(400, json!({"name": ["This field must be unique."]}));
    }
}

#[tokio::test]
async fn the_name_is_trimmed_and_lower_cased() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            CHANNELS,
            Some(&app.admin_key),
            json!({"name": "  Witchers_Of-Kaer9 "}),
        )
        .await;
    assert_channel(&resp, 201, representation("witchers_of-kaer9", json!({})));
    app.get(&channel_path("witchers_of-kaer9"), Some(&app.admin_key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_missing_name_is_required() {
    let (app, _) = setup().await;
    app.post(CHANNELS, Some(&app.admin_key), json!({"description": "x"}))
        .await
        .assert(400, json!({"name": ["This field is required."]}));
}

#[tokio::test]
async fn a_blank_or_whitespace_name_may_not_be_blank() {
    let (app, _) = setup().await;
    for name in ["", "   "] {
        app.post(CHANNELS, Some(&app.admin_key), json!({"name": name}))
            .await
            .assert(400, json!({"name": ["This field may not be blank."]}));
    }
}

#[tokio::test]
async fn a_null_name_may_not_be_null() {
    let (app, _) = setup().await;
    app.post(CHANNELS, Some(&app.admin_key), json!({"name": null}))
        .await
        .assert(400, json!({"name": ["This field may not be null."]}));
}

#[tokio::test]
async fn a_name_of_64_characters_is_accepted_and_65_is_too_long() {
    let (app, _) = setup().await;
    let ok = "a".repeat(64);
    let resp = app
        .post(CHANNELS, Some(&app.admin_key), json!({"name": ok}))
        .await;
    assert_eq!(resp.assert_status(201)["name"], ok);
    app.post(
        CHANNELS,
        Some(&app.admin_key),
        json!({"name": "b".repeat(65)}),
    )
    .await
    .assert(
        400,
        json!({"name": ["Ensure this field has no more than 64 characters."]}),
    );
}

#[tokio::test]
async fn a_one_letter_name_is_accepted() {
    let (app, _) = setup().await;
    let resp = app
        .post(CHANNELS, Some(&app.admin_key), json!({"name": "x"}))
        .await;
    assert_channel(&resp, 201, representation("x", json!({})));
}

#[tokio::test]
async fn a_name_must_start_with_a_letter() {
    let (app, _) = setup().await;
    for name in ["9lives", "_witchers", "-witchers"] {
        app.post(CHANNELS, Some(&app.admin_key), json!({"name": name}))
            .await
            .assert(400, json!({"name": ["Value has to start with a letter."]}));
    }
}

#[tokio::test]
async fn a_name_must_end_with_a_letter_or_a_number() {
    let (app, _) = setup().await;
    for name in ["witchers_", "witchers-"] {
        app.post(CHANNELS, Some(&app.admin_key), json!({"name": name}))
            .await
            .assert(
                400,
                json!({"name": ["Value has to end with a letter or a number."]}),
            );
    }
}

#[tokio::test]
async fn a_name_may_contain_only_letters_numbers_underscores_and_hyphens() {
    let (app, _) = setup().await;
    for name in ["wit chers", "wit.chers", "witch!rs", "wiedźmin"] {
        app.post(CHANNELS, Some(&app.admin_key), json!({"name": name}))
            .await
            .assert(
                400,
                json!({"name": [
                    "Enter a valid value consisting of letters, numbers, underscores, hyphens."
                ]}),
            );
    }
}

#[tokio::test]
async fn double_hyphens_and_underscores_are_allowed_in_channel_names() {
    // docs/api.md §2.6: the double-hyphen rule applies to instance names only.
    let (app, _) = setup().await;
    let resp = app
        .post(CHANNELS, Some(&app.admin_key), json!({"name": "a--b__c"}))
        .await;
    assert_channel(&resp, 201, representation("a--b__c", json!({})));
}

#[tokio::test]
async fn a_description_of_256_characters_is_accepted_and_257_is_too_long() {
    let (app, _) = setup().await;
    let ok = "d".repeat(256);
    let resp = app
        .post(
            CHANNELS,
            Some(&app.admin_key),
            json!({"name": "witchers", "description": ok}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["description"], ok);
    app.post(
        CHANNELS,
        Some(&app.admin_key),
        json!({"name": "wizards", "description": "d".repeat(257)}),
    )
    .await
    .assert(
        400,
        json!({"description": ["Ensure this field has no more than 256 characters."]}),
    );
}

#[tokio::test]
async fn an_unknown_group_is_an_invalid_pk() {
    let (app, _) = setup().await;
    app.post(
        CHANNELS,
        Some(&app.admin_key),
        json!({"name": "witchers", "group": 9}),
    )
    .await
    .assert(
        400,
        json!({"group": ["Invalid pk \"9\" - object does not exist."]}),
    );
    app.get(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn custom_publish_accepts_boolean_strings() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            CHANNELS,
            Some(&app.admin_key),
            json!({"name": "witchers", "custom_publish": "true"}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["custom_publish"], true);
}

#[tokio::test]
async fn a_form_encoded_create_works_like_json() {
    let (app, _) = setup().await;
    let builder = app
        .request(reqwest::Method::POST, CHANNELS, Some(&app.admin_key))
        .form(&[
            ("name", "Witchers"),
            ("type", "separate_rooms"),
            ("other_permissions", "subscribe"),
            ("custom_publish", "true"),
        ]);
    let resp = app.send(builder).await;
    assert_channel(
        &resp,
        201,
        representation(
            "witchers",
            json!({"type": "separate_rooms", "other_permissions": "subscribe", "custom_publish": true}),
        ),
    );
}

// ---------------------------------------------------------------- list

#[tokio::test]
async fn the_owner_lists_all_channels_ordered_by_id_with_the_built_ins_first() {
    let (app, _) = setup().await;
    let zeta = app.create_channel("rivia", json!({"name": "zeta"})).await;
    let alpha = app
        .create_channel("rivia", json!({"name": "alpha", "type": "separate_rooms"}))
        .await;
    let mid = app.create_channel("rivia", json!({"name": "mid"})).await;
    let resp = app.get(CHANNELS, Some(&app.admin_key)).await;
    let body = resp.assert_status(200).clone();
    assert_eq!(body["next"], Value::Null, "body: {body}");
    assert_eq!(body["prev"], Value::Null, "body: {body}");
    let objects = body["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 5, "body: {body}");
    let mut built_ins = names(&body)[..2].to_vec();
    built_ins.sort();
    assert_eq!(built_ins, ["default", "eventlog"]);
    assert_eq!(objects[2..], [zeta, alpha, mid]);
}

#[tokio::test]
async fn the_built_in_channels_have_their_documented_settings() {
    let (app, _) = setup().await;
    let resp = app
        .get(&channel_path("default"), Some(&app.admin_key))
        .await;
    assert_channel(
        &resp,
        200,
        representation(
            "default",
            json!({"type": "separate_rooms", "custom_publish": true}),
        ),
    );
    let resp = app
        .get(&channel_path("eventlog"), Some(&app.admin_key))
        .await;
    assert_channel(
        &resp,
        200,
        representation(
            "eventlog",
            json!({"type": "separate_rooms", "custom_publish": false}),
        ),
    );
}

#[tokio::test]
async fn a_trusted_key_lists_every_channel_including_the_built_ins() {
    let (app, keys) = setup().await;
    app.create_channel("rivia", json!({"name": "witchers"}))
        .await;
    let owner = app.get(CHANNELS, Some(&app.admin_key)).await;
    let trusted = app.get(CHANNELS, Some(&keys.trusted)).await;
    trusted.assert(200, owner.assert_status(200).clone());
    assert_eq!(names(&trusted.json).len(), 3);
}

#[tokio::test]
async fn an_anonymous_reader_lists_only_channels_others_may_subscribe_to() {
    let (app, keys) = setup().await;
    app.create_channel("rivia", json!({"name": "closed"})).await;
    let sub = app
        .create_channel(
            "rivia",
            json!({"name": "subscribable", "other_permissions": "subscribe"}),
        )
        .await;
    let publ = app
        .create_channel(
            "rivia",
            json!({"name": "publishable", "other_permissions": "publish", "custom_publish": true}),
        )
        .await;
    app.create_channel(
        "rivia",
        json!({"name": "groupy", "group_permissions": "publish"}),
    )
    .await;
    app.get(CHANNELS, Some(&keys.reader)).await.assert(
        200,
        json!({"objects": [sub, publ], "next": null, "prev": null}),
    );
}

#[tokio::test]
async fn an_anonymous_reader_sees_a_built_in_once_it_is_opened() {
    let (app, keys) = setup().await;
    app.patch(
        &channel_path("default"),
        Some(&app.admin_key),
        json!({"other_permissions": "subscribe"}),
    )
    .await
    .assert_status(200);
    let resp = app.get(CHANNELS, Some(&keys.reader)).await;
    resp.assert_status(200);
    assert_eq!(names(&resp.json), ["default"]);
}

#[tokio::test]
async fn a_bare_key_may_not_list_channels() {
    let (app, keys) = setup().await;
    app.create_channel(
        "rivia",
        json!({"name": "open", "other_permissions": "publish"}),
    )
    .await;
    app.get(CHANNELS, Some(&keys.bare))
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn a_request_without_a_key_may_not_list_channels() {
    let (app, _) = setup().await;
    app.get(CHANNELS, None).await.assert(403, forbidden());
}

#[tokio::test]
async fn name_startswith_filters_by_a_case_sensitive_prefix() {
    let (app, _) = setup().await;
    let witchers = app
        .create_channel("rivia", json!({"name": "witchers"}))
        .await;
    app.create_channel("rivia", json!({"name": "sorceresses"}))
        .await;
    let wizards = app
        .create_channel("rivia", json!({"name": "wizards"}))
        .await;
    app.get(
        &format!("{CHANNELS}?name__startswith=wi"),
        Some(&app.admin_key),
    )
    .await
    .assert(
        200,
        json!({"objects": [witchers, wizards], "next": null, "prev": null}),
    );
    app.get(
        &format!("{CHANNELS}?name__startswith=Wi"),
        Some(&app.admin_key),
    )
    .await
    .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn the_channel_list_pages_and_its_next_link_keeps_the_prefix_filter() {
    let (app, _) = setup().await;
    for name in ["wa", "sorceresses", "wb", "wc"] {
        app.create_channel("rivia", json!({"name": name})).await;
    }
    let first = app
        .get(
            &format!("{CHANNELS}?name__startswith=w&page_size=2"),
            Some(&app.admin_key),
        )
        .await;
    first.assert_status(200);
    assert_eq!(names(&first.json), ["wa", "wb"]);
    assert_eq!(first.json["prev"], Value::Null);
    let next = first.json["next"].as_str().expect("a next link").to_owned();
    assert!(next.starts_with(CHANNELS), "relative link: {next}");
    assert!(next.contains("name__startswith=w"), "next: {next}");
    assert!(next.contains("page_size=2"), "next: {next}");
    let second = app.get(&next, Some(&app.admin_key)).await;
    second.assert_status(200);
    assert_eq!(names(&second.json), ["wc"]);
    assert_eq!(second.json["next"], Value::Null);
}

// ---------------------------------------------------------------- detail

#[tokio::test]
async fn the_owner_and_a_trusted_key_read_any_channel() {
    let (app, keys) = setup().await;
    let created = app
        .create_channel("rivia", json!({"name": "witchers"}))
        .await;
    app.get(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert(200, created.clone());
    app.get(&channel_path("witchers"), Some(&keys.trusted))
        .await
        .assert(200, created);
    app.get(&channel_path("eventlog"), Some(&keys.trusted))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_anonymous_reader_reads_a_channel_others_may_subscribe_to() {
    let (app, keys) = setup().await;
    for perm in ["subscribe", "publish"] {
        let created = app
            .create_channel(
                "rivia",
                json!({"name": format!("open-{perm}"), "other_permissions": perm}),
            )
            .await;
        app.get(&channel_path(&format!("open-{perm}")), Some(&keys.reader))
            .await
            .assert(200, created);
    }
}

#[tokio::test]
async fn an_anonymous_reader_is_refused_a_channel_others_may_not_subscribe_to() {
    let (app, keys) = setup().await;
    app.create_channel(
        "rivia",
        json!({"name": "closed", "group_permissions": "publish"}),
    )
    .await;
    app.get(&channel_path("closed"), Some(&keys.reader))
        .await
        .assert(403, forbidden());
    app.get(&channel_path("default"), Some(&keys.reader))
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn a_bare_key_is_refused_even_an_open_channel() {
    let (app, keys) = setup().await;
    app.create_channel(
        "rivia",
        json!({"name": "open", "other_permissions": "publish"}),
    )
    .await;
    app.get(&channel_path("open"), Some(&keys.bare))
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn a_bare_key_gets_403_before_a_missing_channel_would_be_reported() {
    let (app, keys) = setup().await;
    app.get(&channel_path("ghost"), Some(&keys.bare))
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn an_unknown_channel_is_not_found() {
    let (app, keys) = setup().await;
    app.get(&channel_path("ghost"), Some(&app.admin_key))
        .await
        .assert(404, not_found());
    app.get(&channel_path("ghost"), Some(&keys.trusted))
        .await
        .assert(404, not_found());
    app.get(&channel_path("ghost"), Some(&keys.reader))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn the_channel_name_in_the_path_is_case_insensitive() {
    let (app, _) = setup().await;
    let created = app
        .create_channel("rivia", json!({"name": "witchers"}))
        .await;
    app.get(&channel_path("WiTcHeRs"), Some(&app.admin_key))
        .await
        .assert(200, created);
}

// ---------------------------------------------------------------- update

#[tokio::test]
async fn the_owner_patches_a_channel_and_the_change_persists() {
    let (app, _) = setup().await;
    let created = app
        .create_channel("rivia", json!({"name": "witchers"}))
        .await;
    let resp = app
        .patch(
            &channel_path("witchers"),
            Some(&app.admin_key),
            json!({"description": "Contract board", "other_permissions": "subscribe", "custom_publish": true}),
        )
        .await;
    assert_channel(
        &resp,
        200,
        representation(
            "witchers",
            json!({"description": "Contract board", "other_permissions": "subscribe", "custom_publish": true}),
        ),
    );
    assert_eq!(resp.json["created_at"], created["created_at"]);
    app.get(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert(200, resp.json.clone());
}

#[tokio::test]
async fn a_trusted_key_may_put_and_patch_a_channel() {
    let (app, keys) = setup().await;
    app.create_channel("rivia", json!({"name": "witchers"}))
        .await;
    let resp = app
        .put(
            &channel_path("witchers"),
            Some(&keys.trusted),
            json!({"description": "by put", "group_permissions": 1}),
        )
        .await;
    assert_channel(
        &resp,
        200,
        representation(
            "witchers",
            json!({"description": "by put", "group_permissions": "subscribe"}),
        ),
    );
    let resp = app
        .patch(
            &channel_path("witchers"),
            Some(&keys.trusted),
            json!({"other_permissions": 2}),
        )
        .await;
    assert_channel(
        &resp,
        200,
        representation(
            "witchers",
            json!({"description": "by put", "group_permissions": "subscribe", "other_permissions": "publish"}),
        ),
    );
}

#[tokio::test]
async fn put_leaves_omitted_fields_unchanged() {
    let (app, _) = setup().await;
    app.create_channel(
        "rivia",
        json!({
            "name": "witchers", "description": "old", "type": "separate_rooms",
            "group_permissions": "publish", "other_permissions": "subscribe", "custom_publish": true,
        }),
    )
    .await;
    let resp = app
        .put(
            &channel_path("witchers"),
            Some(&app.admin_key),
            json!({"description": "new"}),
        )
        .await;
    let expected = representation(
        "witchers",
        json!({
            "description": "new", "type": "separate_rooms",
            "group_permissions": "publish", "other_permissions": "subscribe", "custom_publish": true,
        }),
    );
    assert_channel(&resp, 200, expected.clone());
    let resp = app
        .get(&channel_path("witchers"), Some(&app.admin_key))
        .await;
    assert_channel(&resp, 200, expected);
}

#[tokio::test]
async fn name_and_type_are_read_only_and_ignored_on_update() {
    let (app, _) = setup().await;
    app.create_channel("rivia", json!({"name": "witchers"}))
        .await;
    let resp = app
        .patch(
            &channel_path("witchers"),
            Some(&app.admin_key),
            json!({"name": "renamed", "type": "separate_rooms", "description": "kept"}),
        )
        .await;
    assert_channel(
        &resp,
        200,
        representation("witchers", json!({"description": "kept"})),
    );
    let resp = app
        .put(
            &channel_path("witchers"),
            Some(&app.admin_key),
            json!({"name": "renamed2", "type": 1}),
        )
        .await;
    assert_channel(
        &resp,
        200,
        representation("witchers", json!({"description": "kept"})),
    );
    app.get(&channel_path("renamed"), Some(&app.admin_key))
        .await
        .assert(404, not_found());
    app.get(&channel_path("renamed2"), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn an_update_with_a_bad_choice_is_rejected_and_changes_nothing() {
    let (app, _) = setup().await;
    let created = app
        .create_channel("rivia", json!({"name": "witchers"}))
        .await;
    app.patch(
        &channel_path("witchers"),
        Some(&app.admin_key),
        json!({"description": "changed", "other_permissions": "foo"}),
    )
    .await
    .assert(
        400,
        json!({"other_permissions": ["\"foo\" is not a valid choice."]}),
    );
    app.get(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert(200, created);
}

#[tokio::test]
async fn an_anonymous_reader_or_bare_key_may_not_update_a_channel() {
    let (app, keys) = setup().await;
    let created = app
        .create_channel(
            "rivia",
            json!({"name": "open", "other_permissions": "publish"}),
        )
        .await;
    for key in [&keys.reader, &keys.bare] {
        app.patch(
            &channel_path("open"),
            Some(key),
            json!({"description": "x"}),
        )
        .await
        .assert(403, forbidden());
        app.put(
            &channel_path("open"),
            Some(key),
            json!({"description": "x"}),
        )
        .await
        .assert(403, forbidden());
    }
    app.get(&channel_path("open"), Some(&app.admin_key))
        .await
        .assert(200, created);
}

#[tokio::test]
async fn updating_an_unknown_channel_is_not_found() {
    let (app, _) = setup().await;
    app.patch(
        &channel_path("ghost"),
        Some(&app.admin_key),
        json!({"description": "x"}),
    )
    .await
    .assert(404, not_found());
}

#[tokio::test]
async fn custom_publish_cannot_be_enabled_on_the_eventlog_channel() {
    let (app, keys) = setup().await;
    for key in [&app.admin_key, &keys.trusted] {
        app.patch(
            &channel_path("eventlog"),
            Some(key),
            json!({"custom_publish": true}),
        )
        .await
        .assert(
            400,
            json!({"custom_publish": ["Custom publish cannot be enabled on the eventlog channel."]}),
        );
    }
    app.put(
        &channel_path("eventlog"),
        Some(&app.admin_key),
        json!({"custom_publish": true}),
    )
    .await
    .assert(
        400,
        json!({"custom_publish": ["Custom publish cannot be enabled on the eventlog channel."]}),
    );
    let resp = app
        .get(&channel_path("eventlog"), Some(&app.admin_key))
        .await;
    assert_eq!(resp.assert_status(200)["custom_publish"], false);
}

#[tokio::test]
async fn the_built_ins_may_otherwise_be_updated() {
    let (app, _) = setup().await;
    let resp = app
        .patch(
            &channel_path("eventlog"),
            Some(&app.admin_key),
            json!({"description": "events", "other_permissions": "subscribe", "custom_publish": false}),
        )
        .await;
    assert_channel(
        &resp,
        200,
        representation(
            "eventlog",
            json!({"type": "separate_rooms", "description": "events", "other_permissions": "subscribe"}),
        ),
    );
    let resp = app
        .patch(
            &channel_path("default"),
            Some(&app.admin_key),
            json!({"custom_publish": false, "other_permissions": "publish"}),
        )
        .await;
    assert_channel(
        &resp,
        200,
        representation(
            "default",
            json!({"type": "separate_rooms", "other_permissions": "publish"}),
        ),
    );
}

// ---------------------------------------------------------------- delete

#[tokio::test]
async fn the_owner_deletes_a_channel_with_204_and_an_empty_body() {
    let (app, _) = setup().await;
    app.create_channel("rivia", json!({"name": "witchers"}))
        .await;
    let resp = app
        .delete(&channel_path("witchers"), Some(&app.admin_key))
        .await;
    assert_eq!(resp.status, 204, "body: {}", resp.text);
    assert_eq!(resp.text, "");
    app.get(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert(404, not_found());
    let list = app.get(CHANNELS, Some(&app.admin_key)).await;
    list.assert_status(200);
    assert!(!names(&list.json).contains(&"witchers".to_owned()));
}

#[tokio::test]
async fn a_trusted_key_may_delete_a_channel_by_any_case_of_its_name() {
    let (app, keys) = setup().await;
    app.create_channel("rivia", json!({"name": "witchers"}))
        .await;
    let resp = app
        .delete(&channel_path("WITCHERS"), Some(&keys.trusted))
        .await;
    assert_eq!(resp.status, 204, "body: {}", resp.text);
    app.get(&channel_path("witchers"), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn an_anonymous_reader_or_bare_key_may_not_delete_a_channel() {
    let (app, keys) = setup().await;
    app.create_channel(
        "rivia",
        json!({"name": "open", "other_permissions": "publish"}),
    )
    .await;
    for key in [&keys.reader, &keys.bare] {
        app.delete(&channel_path("open"), Some(key))
            .await
            .assert(403, forbidden());
    }
    app.get(&channel_path("open"), Some(&app.admin_key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn the_built_in_channels_cannot_be_deleted() {
    let (app, keys) = setup().await;
    for key in [&app.admin_key, &keys.trusted] {
        for name in ["default", "eventlog"] {
            app.delete(&channel_path(name), Some(key))
                .await
                .assert(403, forbidden());
        }
    }
    for name in ["default", "eventlog"] {
        app.get(&channel_path(name), Some(&app.admin_key))
            .await
            .assert_status(200);
    }
}

#[tokio::test]
async fn deleting_an_unknown_channel_is_not_found() {
    let (app, _) = setup().await;
    app.delete(&channel_path("ghost"), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn deleting_a_channel_deletes_its_history() {
    let (app, _) = setup().await;
    app.create_channel("rivia", json!({"name": "witchers", "custom_publish": true}))
        .await;
    let message = app
        .publish("rivia", "witchers", json!({"payload": {"n": 1}}))
        .await;
    let id = message["id"].as_i64().expect("id");
    let resp = app
        .delete(&channel_path("witchers"), Some(&app.admin_key))
        .await;
    assert_eq!(resp.status, 204, "body: {}", resp.text);
    app.get(
        &format!("{}history/", channel_path("witchers")),
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Channel was not found."}));

    app.create_channel("rivia", json!({"name": "witchers", "custom_publish": true}))
        .await;
    app.get(
        &format!("{}history/", channel_path("witchers")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, json!({"objects": [], "next": null, "prev": null}));
    app.get(
        &format!("{}history/{id}/", channel_path("witchers")),
        Some(&app.admin_key),
    )
    .await
    .assert(404, not_found());
}

#[tokio::test]
async fn a_re_created_channel_continues_the_id_sequence_of_its_predecessor() {
    let (app, _) = setup().await;
    let body = json!({"name": "witchers", "type": "separate_rooms", "custom_publish": true});
    app.create_channel("rivia", body.clone()).await;
    let mut last = 0;
    for n in 0..3 {
        let m = app
            .publish(
                "rivia",
                "witchers",
                json!({"payload": {"n": n}, "room": "r"}),
            )
            .await;
        last = m["id"].as_i64().expect("id");
    }
    let resp = app
        .delete(&channel_path("witchers"), Some(&app.admin_key))
        .await;
    assert_eq!(resp.status, 204, "body: {}", resp.text);
    app.create_channel("rivia", body).await;
    let m = app
        .publish("rivia", "witchers", json!({"payload": {}, "room": "r"}))
        .await;
    let id = m["id"].as_i64().expect("id");
    assert!(id > last, "id {id} after re-create is not above {last}");
}
