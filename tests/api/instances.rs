//! docs/api.md §5: instances — list, create, detail, update, delete, rename.

use serde_json::{Value, json};

use crate::helpers::TestApp;

const GENERIC_403: &str = "You do not have permission to perform this action.";

fn denied() -> Value {
    json!({"detail": GENERIC_403})
}

fn not_found() -> Value {
    json!({"detail": "Not found."})
}

fn links(name: &str) -> Value {
    json!({
        "self": format!("/v1.1/instances/{name}/"),
        "api_keys": format!("/v1.1/instances/{name}/api_keys/"),
        "users": format!("/v1.1/instances/{name}/users/"),
        "groups": format!("/v1.1/instances/{name}/groups/"),
        "channels": format!("/v1.1/instances/{name}/channels/"),
        "classes": format!("/v1.1/instances/{name}/classes/"),
        "rename": format!("/v1.1/instances/{name}/rename/"),
    })
}

#[track_caller]
fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp: {value}"));
    // 2016-03-17T20:13:46.695378Z
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 27, "timestamp {text}");
    for (i, b) in bytes.iter().enumerate() {
        let ok = match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'.',
            26 => *b == b'Z',
            _ => b.is_ascii_digit(),
        };
        assert!(ok, "timestamp {text}");
    }
}

/// Asserts the full §5 representation: exact fields, values, owner object and links.
#[track_caller]
fn assert_instance(
    body: &Value,
    name: &str,
    description: &str,
    metadata: Value,
    role: &str,
    owner: &Value,
) {
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
            "created_at",
            "description",
            "links",
            "metadata",
            "name",
            "owner",
            "role",
            "updated_at"
        ],
        "fields of {body}"
    );
    assert_eq!(body["name"], name);
    assert_eq!(body["description"], description);
    assert_eq!(body["metadata"], metadata);
    assert_eq!(body["role"], role);
    assert_eq!(&body["owner"], owner);
    assert_eq!(body["links"], links(name));
    assert_timestamp(&body["created_at"]);
    assert_timestamp(&body["updated_at"]);
}

/// The account representation of `key` as `GET /v1.1/account/` shows it.
async fn account_of(app: &TestApp, key: &str) -> Value {
    app.get("/v1.1/account/", Some(key))
        .await
        .assert_status(200)
        .clone()
}

fn names(list: &Value) -> Vec<String> {
    list["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("list envelope: {list}"))
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------- create (§5.2)

#[tokio::test]
async fn create_returns_201_with_the_exact_representation() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    let resp = app
        .post(
            "/v1.1/instances/",
            Some(&app.admin_key),
            json!({"name": "rivia", "description": "Witcher app", "metadata": {"color": "red"}}),
        )
        .await;
    let body = resp.assert_status(201);
    assert_instance(
        body,
        "rivia",
        "Witcher app",
        json!({"color": "red"}),
        "full",
        &owner,
    );
}

#[tokio::test]
async fn create_defaults_description_and_metadata() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    let body = app.create_instance("rivia").await;
    assert_instance(&body, "rivia", "", json!({}), "full", &owner);
}

#[tokio::test]
async fn create_shows_the_creating_account_as_owner() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    let owner = account_of(&app, &key).await;
    assert_eq!(owner["email"], "yen@vengerberg.io");
    let resp = app
        .post(
            "/v1.1/instances/",
            Some(&key),
            json!({"name": "vengerberg"}),
        )
        .await;
    assert_instance(
        resp.assert_status(201),
        "vengerberg",
        "",
        json!({}),
        "full",
        &owner,
    );
}

#[tokio::test]
async fn create_accepts_a_form_body() {
    let app = TestApp::spawn().await;
    let resp = app
        .send(
            app.request(
                reqwest::Method::POST,
                "/v1.1/instances/",
                Some(&app.admin_key),
            )
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("name=demo1&description=From+curl"),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["name"], "demo1");
    assert_eq!(body["description"], "From curl");
}

#[tokio::test]
async fn create_adds_the_built_in_default_and_eventlog_channels() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let list = app
        .get("/v1.1/instances/rivia/channels/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&list), ["default", "eventlog"]);
    let default = app
        .get(
            "/v1.1/instances/rivia/channels/default/",
            Some(&app.admin_key),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(default["type"], "separate_rooms");
    assert_eq!(default["custom_publish"], true);
    assert_eq!(default["group"], Value::Null);
    assert_eq!(default["group_permissions"], "none");
    assert_eq!(default["other_permissions"], "none");
    let eventlog = app
        .get(
            "/v1.1/instances/rivia/channels/eventlog/",
            Some(&app.admin_key),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(eventlog["type"], "separate_rooms");
    assert_eq!(eventlog["custom_publish"], false);
    assert_eq!(eventlog["group"], Value::Null);
    assert_eq!(eventlog["group_permissions"], "none");
    assert_eq!(eventlog["other_permissions"], "none");
}

#[tokio::test]
async fn create_lower_cases_and_trims_the_name() {
    let app = TestApp::spawn().await;
    let body = app
        .post(
            "/v1.1/instances/",
            Some(&app.admin_key),
            json!({"name": "  Kaer-Morhen "}),
        )
        .await
        .assert_status(201)
        .clone();
    assert_eq!(body["name"], "kaer-morhen");
    assert_eq!(body["links"], links("kaer-morhen"));
    app.get("/v1.1/instances/kaer-morhen/", Some(&app.admin_key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn create_accepts_names_at_the_length_bounds() {
    let app = TestApp::spawn().await;
    app.create_instance("a1234").await;
    let long = format!("a{}", "b".repeat(63));
    assert_eq!(long.len(), 64);
    app.create_instance(&long).await;
    app.create_instance("a-b-c-9").await;
}

#[tokio::test]
async fn create_rejects_invalid_names_with_the_documented_messages() {
    let app = TestApp::spawn().await;
    let cases: Vec<(String, &str)> = vec![
        (
            "abcd".into(),
            "Ensure this field has at least 5 characters.",
        ),
        (
            format!("a{}", "b".repeat(64)),
            "Ensure this field has no more than 64 characters.",
        ),
        ("1rivia".into(), "Value has to start with a letter."),
        ("-rivia".into(), "Value has to start with a letter."),
        (
            "rivia-".into(),
            "Value has to end with a letter or a number.",
        ),
        (
            "riv_ia".into(),
            "Enter a valid value consisting of letters, numbers, hyphens.",
        ),
        (
            "riv ia".into(),
            "Enter a valid value consisting of letters, numbers, hyphens.",
        ),
        (
            "riv.ia".into(),
            "Enter a valid value consisting of letters, numbers, hyphens.",
        ),
        ("riv--ia".into(), "Double hyphens are reserved."),
        ("".into(), "This field may not be blank."),
    ];
    for (name, message) in cases {
        let resp = app
            .post(
                "/v1.1/instances/",
                Some(&app.admin_key),
                json!({"name": name}),
            )
            .await;
        assert_eq!(
            (resp.status, &resp.json),
            (400, &json!({"name": [message]})),
            "name {name:?}: {}",
            resp.text
        );
    }
    // None of them was created.
    let list = app
        .get("/v1.1/instances/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&list), Vec::<String>::new());
}

#[tokio::test]
async fn create_rejects_every_reserved_name() {
    let app = TestApp::spawn().await;
    // Reserved names that are otherwise valid instance names (the others, such as
    // `my_instance`, already fail the character rule).
    for name in [
        "devcenter",
        "support",
        "sentry",
        "admin",
        "platform",
        "redirect",
        "media",
        "signup",
        "login",
        "myinstance",
        "panel",
        "account",
        "noinstance",
        "public",
        "template1",
        "status",
        "Admin",
    ] {
        let resp = app
            .post(
                "/v1.1/instances/",
                Some(&app.admin_key),
                json!({"name": name}),
            )
            .await;
        assert_eq!(
            (resp.status, &resp.json),
            (
                400,
                &json!({"name": ["Unable to use that value. Please choose a different one."]})
            ),
            "name {name:?}: {}",
            resp.text
        );
    }
}

#[tokio::test]
async fn create_requires_a_name() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"description": "x"}),
    )
    .await
    .assert(400, json!({"name": ["This field is required."]}));
}

#[tokio::test]
async fn create_rejects_a_duplicate_name() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"name": "rivia"}),
    )
    .await
    .assert(400, json!({"name": ["This field must be unique."]}));
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"name": "RIVIA"}),
    )
    .await
    .assert(400, json!({"name": ["This field must be unique."]}));
}

#[tokio::test]
async fn instance_names_are_unique_across_accounts() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let other = app.create_account("yen@vengerberg.io").await;
    app.post("/v1.1/instances/", Some(&other), json!({"name": "rivia"}))
        .await
        .assert(400, json!({"name": ["This field must be unique."]}));
}

#[tokio::test]
async fn create_limits_description_and_metadata() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"name": "rivia", "description": "d".repeat(257)}),
    )
    .await
    .assert(
        400,
        json!({"description": ["Ensure this field has no more than 256 characters."]}),
    );
    let nine: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("k{i}"), json!(i))).collect();
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"name": "rivia", "metadata": nine}),
    )
    .await
    .assert(
        400,
        json!({"metadata": ["Too many keys defined (exceeds 8)."]}),
    );
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"name": "rivia", "metadata": {"k".repeat(17): 1}}),
    )
    .await
    .assert(
        400,
        json!({"metadata": ["Too long key defined (exceeds 16)."]}),
    );
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"name": "rivia", "metadata": "not json"}),
    )
    .await
    .assert(400, json!({"metadata": ["Not a valid JSON string."]}));
    // Metadata given as a string holding JSON is accepted.
    let body = app
        .post(
            "/v1.1/instances/",
            Some(&app.admin_key),
            json!({"name": "rivia", "metadata": "{\"color\": \"red\"}"}),
        )
        .await
        .assert_status(201)
        .clone();
    assert_eq!(body["metadata"], json!({"color": "red"}));
}

#[tokio::test]
async fn create_ignores_read_only_fields() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    let body = app
        .post(
            "/v1.1/instances/",
            Some(&app.admin_key),
            json!({"name": "rivia", "role": "api_key", "owner": 999,
                   "created_at": "2001-01-01T00:00:00.000000Z", "links": {}}),
        )
        .await
        .assert_status(201)
        .clone();
    assert_instance(&body, "rivia", "", json!({}), "full", &owner);
    assert_ne!(body["created_at"], "2001-01-01T00:00:00.000000Z");
}

#[tokio::test]
async fn create_is_refused_to_api_keys_and_to_requests_without_a_key() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let api_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    app.post(
        "/v1.1/instances/",
        Some(&api_key),
        json!({"name": "kaer-morhen"}),
    )
    .await
    .assert(403, denied());
    app.post("/v1.1/instances/", None, json!({"name": "kaer-morhen"}))
        .await
        .assert(403, denied());
    app.get("/v1.1/instances/kaer-morhen/", Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn create_beyond_max_instances_per_account_is_instance_count_exceeded() {
    let app = TestApp::spawn_with(|args| args.max_instances_per_account = 2).await;
    app.create_instance("first").await;
    app.create_instance("second").await;
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"name": "third"}),
    )
    .await
    .assert(400, json!({"detail": "Instance count exceeded (2)."}));
    app.get("/v1.1/instances/third/", Some(&app.admin_key))
        .await
        .assert(404, not_found());
    // The limit is per account: another account still has its own allowance.
    let other = app.create_account("yen@vengerberg.io").await;
    app.post("/v1.1/instances/", Some(&other), json!({"name": "third"}))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn instances_are_unlimited_by_default() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        app.create_instance(&format!("instance{i}")).await;
    }
    let list = app
        .get("/v1.1/instances/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&list).len(), 5);
}

// ---------------------------------------------------------------- list (§5.1)

#[tokio::test]
async fn list_with_an_account_key_shows_only_the_accounts_own_instances() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    app.create_instance("rivia").await;
    app.create_instance("kaer-morhen").await;
    let other = app.create_account("yen@vengerberg.io").await;
    app.post(
        "/v1.1/instances/",
        Some(&other),
        json!({"name": "vengerberg"}),
    )
    .await
    .assert_status(201);

    let list = app
        .get("/v1.1/instances/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(list["next"], Value::Null);
    assert_eq!(list["prev"], Value::Null);
    assert_eq!(names(&list), ["rivia", "kaer-morhen"]);
    for object in list["objects"].as_array().unwrap() {
        let name = object["name"].as_str().unwrap();
        assert_instance(object, name, "", json!({}), "full", &owner);
    }

    let others = app
        .get("/v1.1/instances/", Some(&other))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&others), ["vengerberg"]);
}

#[tokio::test]
async fn list_for_an_account_without_instances_is_empty() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let other = app.create_account("yen@vengerberg.io").await;
    app.get("/v1.1/instances/", Some(&other))
        .await
        .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn list_with_an_api_key_shows_only_the_keys_instance() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    app.create_instance("rivia").await;
    app.create_instance("kaer-morhen").await;
    let api_key = app.create_api_key("kaer-morhen", json!({})).await;
    let list = app
        .get("/v1.1/instances/", Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&list), ["kaer-morhen"]);
    assert_instance(
        &list["objects"][0],
        "kaer-morhen",
        "",
        json!({}),
        "api_key",
        &owner,
    );
}

#[tokio::test]
async fn list_with_an_api_key_honours_page_size_zero_and_the_name_prefix() {
    let app = TestApp::spawn().await;
    app.create_instance("kaer-morhen").await;
    let api_key = app.create_api_key("kaer-morhen", json!({})).await;
    let body = app
        .get("/v1.1/instances/?page_size=0", Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        body["objects"],
        json!([]),
        "page_size=0 returns no objects (§2.5)"
    );
    let body = app
        .get("/v1.1/instances/?name__startswith=riv", Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        body["objects"],
        json!([]),
        "the prefix filter applies (§2.5)"
    );
    let body = app
        .get("/v1.1/instances/?name__startswith=kaer", Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&body), ["kaer-morhen"]);
}

#[tokio::test]
async fn following_next_on_an_api_keys_instance_list_does_not_repeat_the_instance() {
    let app = TestApp::spawn().await;
    app.create_instance("kaer-morhen").await;
    let api_key = app.create_api_key("kaer-morhen", json!({})).await;
    let first = app
        .get("/v1.1/instances/?page_size=1", Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&first), ["kaer-morhen"]);
    let next = first["next"]
        .as_str()
        .unwrap_or_else(|| panic!("a full page has a next link: {first}"))
        .to_owned();
    let second = app
        .get(&next, Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(second["objects"], json!([]), "followed {next}");
}

#[tokio::test]
async fn list_for_the_owner_pages_and_follows_next_without_repeats() {
    let app = TestApp::spawn().await;
    for name in ["alpha", "bravo", "charlie"] {
        app.create_instance(name).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1.1/instances/?page_size=2".to_owned();
    for _ in 0..4 {
        let page = app
            .get(&path, Some(&app.admin_key))
            .await
            .assert_status(200)
            .clone();
        seen.extend(names(&page));
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, ["alpha", "bravo", "charlie"]);
}

#[tokio::test]
async fn list_without_a_key_is_forbidden() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.get("/v1.1/instances/", None)
        .await
        .assert(403, denied());
}

#[tokio::test]
async fn list_filters_by_name_prefix() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.create_instance("riverdell").await;
    app.create_instance("kaer-morhen").await;
    let list = app
        .get(
            "/v1.1/instances/?name__startswith=riv",
            Some(&app.admin_key),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&list), ["rivia", "riverdell"]);
}

// ---------------------------------------------------------------- detail (§5.3)

#[tokio::test]
async fn detail_for_the_owner_has_role_full() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    let created = app
        .post(
            "/v1.1/instances/",
            Some(&app.admin_key),
            json!({"name": "rivia", "description": "Witcher app"}),
        )
        .await
        .assert_status(201)
        .clone();
    let body = app
        .get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_instance(&body, "rivia", "Witcher app", json!({}), "full", &owner);
    assert_eq!(body, created);
}

#[tokio::test]
async fn detail_for_an_api_key_has_role_api_key() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    let created = app.create_instance("rivia").await;
    let api_key = app.create_api_key("rivia", json!({})).await;
    let body = app
        .get("/v1.1/instances/rivia/", Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_instance(&body, "rivia", "", json!({}), "api_key", &owner);
    assert_eq!(body["created_at"], created["created_at"]);
}

#[tokio::test]
async fn detail_matches_the_name_case_insensitively() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let body = app
        .get("/v1.1/instances/RiViA/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["name"], "rivia");
}

#[tokio::test]
async fn detail_of_a_missing_instance_is_not_found() {
    let app = TestApp::spawn().await;
    app.get("/v1.1/instances/nowhere/", Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn detail_of_another_accounts_instance_is_not_found() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let other = app.create_account("yen@vengerberg.io").await;
    app.get("/v1.1/instances/rivia/", Some(&other))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn detail_without_a_key_is_forbidden() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.get("/v1.1/instances/rivia/", None)
        .await
        .assert(403, denied());
}

// ---------------------------------------------------------------- update (§5.3)

#[tokio::test]
async fn patch_by_the_owner_updates_description_and_metadata_and_ignores_name() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    let created = app.create_instance("rivia").await;
    let body = app
        .patch(
            "/v1.1/instances/rivia/",
            Some(&app.admin_key),
            json!({"name": "kaer-morhen", "description": "Witcher app",
                   "metadata": {"color": "red"}}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_instance(
        &body,
        "rivia",
        "Witcher app",
        json!({"color": "red"}),
        "full",
        &owner,
    );
    assert_eq!(body["created_at"], created["created_at"]);
    assert!(
        body["updated_at"].as_str() >= created["updated_at"].as_str(),
        "updated_at went backwards: {body}"
    );
    let stored = app
        .get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(stored, body);
    app.get("/v1.1/instances/kaer-morhen/", Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn patch_updates_only_the_fields_sent() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1.1/instances/",
        Some(&app.admin_key),
        json!({"name": "rivia", "description": "Witcher app", "metadata": {"color": "red"}}),
    )
    .await
    .assert_status(201);
    let body = app
        .patch(
            "/v1.1/instances/rivia/",
            Some(&app.admin_key),
            json!({"description": "Contracts"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["description"], "Contracts");
    assert_eq!(body["metadata"], json!({"color": "red"}));
}

#[tokio::test]
async fn put_by_the_owner_updates_the_instance_and_ignores_name() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    app.create_instance("rivia").await;
    let body = app
        .put(
            "/v1.1/instances/rivia/",
            Some(&app.admin_key),
            json!({"name": "kaer-morhen", "description": "Witcher app",
                   "metadata": {"color": "red"}}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_instance(
        &body,
        "rivia",
        "Witcher app",
        json!({"color": "red"}),
        "full",
        &owner,
    );
    // PUT, like PATCH, leaves omitted fields alone (§2.2).
    let body = app
        .put(
            "/v1.1/instances/rivia/",
            Some(&app.admin_key),
            json!({"description": "Contracts"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["metadata"], json!({"color": "red"}));
    assert_eq!(body["description"], "Contracts");
}

#[tokio::test]
async fn update_validates_description_and_metadata() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.patch(
        "/v1.1/instances/rivia/",
        Some(&app.admin_key),
        json!({"description": "d".repeat(257)}),
    )
    .await
    .assert(
        400,
        json!({"description": ["Ensure this field has no more than 256 characters."]}),
    );
    app.patch(
        "/v1.1/instances/rivia/",
        Some(&app.admin_key),
        json!({"metadata": [1]}),
    )
    .await
    .assert(
        400,
        json!({"metadata": ["Metadata passed in invalid format."]}),
    );
    let stored = app
        .get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(stored["description"], "");
    assert_eq!(stored["metadata"], json!({}));
}

#[tokio::test]
async fn writes_with_an_api_key_are_forbidden() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let api_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    app.put(
        "/v1.1/instances/rivia/",
        Some(&api_key),
        json!({"description": "hacked"}),
    )
    .await
    .assert(403, denied());
    app.patch(
        "/v1.1/instances/rivia/",
        Some(&api_key),
        json!({"description": "hacked"}),
    )
    .await
    .assert(403, denied());
    app.delete("/v1.1/instances/rivia/", Some(&api_key))
        .await
        .assert(403, denied());
    app.post(
        "/v1.1/instances/rivia/rename/",
        Some(&api_key),
        json!({"new_name": "kaer-morhen"}),
    )
    .await
    .assert(403, denied());
    let stored = app
        .get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(stored["description"], "");
    assert_eq!(stored["name"], "rivia");
}

#[tokio::test]
async fn update_of_a_missing_instance_is_not_found() {
    let app = TestApp::spawn().await;
    app.patch(
        "/v1.1/instances/nowhere/",
        Some(&app.admin_key),
        json!({"description": "x"}),
    )
    .await
    .assert(404, not_found());
    app.delete("/v1.1/instances/nowhere/", Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

// ---------------------------------------------------------------- delete (§5.3)

#[tokio::test]
async fn delete_by_the_owner_answers_204_and_the_name_stops_resolving() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let resp = app
        .delete("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert_eq!(resp.text, "");
    app.get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert(404, not_found());
    app.get("/v1.1/instances/rivia/channels/", Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Instance was not found."}));
    let list = app
        .get("/v1.1/instances/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&list), Vec::<String>::new());
}

#[tokio::test]
async fn delete_makes_the_instances_api_keys_stop_working() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let api_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    // Use the key first, so any cache has seen it.
    app.get("/v1.1/instances/", Some(&api_key))
        .await
        .assert_status(200);
    app.delete("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(204);
    app.get("/v1.1/instances/", Some(&api_key))
        .await
        .assert(403, json!({"detail": "No such API Key."}));
    // A new instance under the same name starts empty: the old key is not one of its keys,
    // and the old data is gone.
    app.create_instance("rivia").await;
    app.get("/v1.1/instances/rivia/", Some(&api_key))
        .await
        .assert(403, json!({"detail": "No such API Key."}));
    let keys = app
        .get("/v1.1/instances/rivia/api_keys/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(keys["objects"], json!([]));
}

#[tokio::test]
async fn delete_removes_the_instances_channels_and_messages() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.create_channel("rivia", json!({"name": "witchers", "custom_publish": true}))
        .await;
    app.publish("rivia", "witchers", json!({"payload": {"a": 1}}))
        .await;
    app.delete("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(204);
    app.create_instance("rivia").await;
    let channels = app
        .get("/v1.1/instances/rivia/channels/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&channels), ["default", "eventlog"]);
    app.get(
        "/v1.1/instances/rivia/channels/witchers/history/",
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Channel was not found."}));
}

#[tokio::test]
async fn delete_of_another_accounts_instance_is_not_found_and_keeps_it() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let other = app.create_account("yen@vengerberg.io").await;
    app.delete("/v1.1/instances/rivia/", Some(&other))
        .await
        .assert(404, not_found());
    app.get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(200);
}

// ---------------------------------------------------------------- rename (§5.4)

#[tokio::test]
async fn rename_returns_the_representation_under_the_new_name() {
    let app = TestApp::spawn().await;
    let owner = account_of(&app, &app.admin_key).await;
    let created = app
        .post(
            "/v1.1/instances/",
            Some(&app.admin_key),
            json!({"name": "rivia", "description": "Witcher app", "metadata": {"color": "red"}}),
        )
        .await
        .assert_status(201)
        .clone();
    let body = app
        .post(
            "/v1.1/instances/rivia/rename/",
            Some(&app.admin_key),
            json!({"new_name": "kaer-morhen"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_instance(
        &body,
        "kaer-morhen",
        "Witcher app",
        json!({"color": "red"}),
        "full",
        &owner,
    );
    assert_eq!(body["created_at"], created["created_at"]);
    let stored = app
        .get("/v1.1/instances/kaer-morhen/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_instance(
        &stored,
        "kaer-morhen",
        "Witcher app",
        json!({"color": "red"}),
        "full",
        &owner,
    );
}

#[tokio::test]
async fn rename_makes_the_old_name_stop_resolving() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    // Resolve the old name first, so any cache holds it.
    app.get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(200);
    app.post(
        "/v1.1/instances/rivia/rename/",
        Some(&app.admin_key),
        json!({"new_name": "kaer-morhen"}),
    )
    .await
    .assert_status(200);
    app.get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert(404, not_found());
    app.get("/v1.1/instances/rivia/channels/", Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Instance was not found."}));
    let list = app
        .get("/v1.1/instances/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&list), ["kaer-morhen"]);
    // The old name is free again.
    app.create_instance("rivia").await;
}

#[tokio::test]
async fn after_a_rename_the_old_name_reused_by_a_new_instance_does_not_accept_the_old_keys() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let api_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    app.get("/v1.1/instances/rivia/channels/", Some(&api_key))
        .await
        .assert_status(200);
    app.post(
        "/v1.1/instances/rivia/rename/",
        Some(&app.admin_key),
        json!({"new_name": "kaer-morhen"}),
    )
    .await
    .assert_status(200);
    app.create_instance("rivia").await;
    app.get("/v1.1/instances/rivia/channels/", Some(&api_key))
        .await
        .assert(403, json!({"detail": "No such API Key."}));
    app.get("/v1.1/instances/kaer-morhen/channels/", Some(&api_key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn after_a_rename_publishing_works_under_the_new_name() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let api_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    app.create_channel("rivia", json!({"name": "witchers", "custom_publish": true}))
        .await;
    app.publish("rivia", "witchers", json!({"payload": {"n": 1}}))
        .await;
    app.post(
        "/v1.1/instances/rivia/rename/",
        Some(&app.admin_key),
        json!({"new_name": "kaer-morhen"}),
    )
    .await
    .assert_status(200);
    let message = app
        .post(
            "/v1.1/instances/kaer-morhen/channels/witchers/publish/",
            Some(&api_key),
            json!({"payload": {"n": 2}}),
        )
        .await
        .assert_status(201)
        .clone();
    let id = message["id"].as_i64().unwrap();
    assert_eq!(
        message["links"],
        json!({"self": format!("/v1.1/instances/kaer-morhen/channels/witchers/history/{id}/")})
    );
    app.post(
        "/v1.1/instances/rivia/channels/witchers/publish/",
        Some(&api_key),
        json!({"payload": {"n": 3}}),
    )
    .await
    .assert(404, json!({"detail": "Instance was not found."}));
}

#[tokio::test]
async fn rename_keeps_api_keys_channels_and_messages() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let api_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    app.create_channel("rivia", json!({"name": "witchers", "custom_publish": true}))
        .await;
    let message = app
        .publish("rivia", "witchers", json!({"payload": {"hello": "world"}}))
        .await;
    app.get("/v1.1/instances/rivia/", Some(&api_key))
        .await
        .assert_status(200);
    app.post(
        "/v1.1/instances/rivia/rename/",
        Some(&app.admin_key),
        json!({"new_name": "kaer-morhen"}),
    )
    .await
    .assert_status(200);

    let body = app
        .get("/v1.1/instances/kaer-morhen/", Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["name"], "kaer-morhen");
    assert_eq!(body["role"], "api_key");
    let keys = app
        .get(
            "/v1.1/instances/kaer-morhen/api_keys/",
            Some(&app.admin_key),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(keys["objects"][0]["api_key"], api_key.as_str());
    let channels = app
        .get("/v1.1/instances/kaer-morhen/channels/", Some(&api_key))
        .await
        .assert_status(200)
        .clone();
    assert_eq!(names(&channels), ["default", "eventlog", "witchers"]);
    let history = app
        .get(
            "/v1.1/instances/kaer-morhen/channels/witchers/history/",
            Some(&api_key),
        )
        .await
        .assert_status(200)
        .clone();
    let messages = history["objects"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{history}");
    assert_eq!(messages[0]["id"], message["id"]);
    assert_eq!(messages[0]["payload"], json!({"hello": "world"}));
    // Links now point at the new name.
    let id = message["id"].as_i64().unwrap();
    assert_eq!(
        messages[0]["links"],
        json!({"self": format!("/v1.1/instances/kaer-morhen/channels/witchers/history/{id}/")})
    );
}

#[tokio::test]
async fn rename_lower_cases_the_new_name() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let body = app
        .post(
            "/v1.1/instances/rivia/rename/",
            Some(&app.admin_key),
            json!({"new_name": " Kaer-Morhen "}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["name"], "kaer-morhen");
}

#[tokio::test]
async fn rename_validates_new_name_under_the_key_new_name() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.create_instance("kaer-morhen").await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "This field is required."),
        (json!({"new_name": ""}), "This field may not be blank."),
        (
            json!({"new_name": "abcd"}),
            "Ensure this field has at least 5 characters.",
        ),
        (
            json!({"new_name": "1rivia"}),
            "Value has to start with a letter.",
        ),
        (
            json!({"new_name": "rivia-"}),
            "Value has to end with a letter or a number.",
        ),
        (
            json!({"new_name": "riv_ia"}),
            "Enter a valid value consisting of letters, numbers, hyphens.",
        ),
        (
            json!({"new_name": "riv--ia"}),
            "Double hyphens are reserved.",
        ),
        (
            json!({"new_name": "signup"}),
            "Unable to use that value. Please choose a different one.",
        ),
        (
            json!({"new_name": "kaer-morhen"}),
            "This field must be unique.",
        ),
        (
            json!({"new_name": "KAER-MORHEN"}),
            "This field must be unique.",
        ),
    ];
    for (body, message) in cases {
        let resp = app
            .post(
                "/v1.1/instances/rivia/rename/",
                Some(&app.admin_key),
                body.clone(),
            )
            .await;
        assert_eq!(
            (resp.status, &resp.json),
            (400, &json!({"new_name": [message]})),
            "body {body}: {}",
            resp.text
        );
    }
    // Still under its old name.
    app.get("/v1.1/instances/rivia/", Some(&app.admin_key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn rename_of_a_missing_instance_is_instance_not_found() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1.1/instances/nowhere/rename/",
        Some(&app.admin_key),
        json!({"new_name": "somewhere"}),
    )
    .await
    .assert(404, json!({"detail": "Instance was not found."}));
}
