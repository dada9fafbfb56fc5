//! docs/api.md §4: accounts — register, log in, details, key reset, password change, superuser.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const GENERIC_403: &str = "You do not have permission to perform this action.";

/// A server whose `account/register/` is open to anyone.
async fn open_registration() -> TestApp {
    TestApp::spawn_with(|args| args.allow_registration = true).await
}

fn is_key(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|k| k.len() == 40 && k.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
}

fn ends_in_even_hex_digit(key: &str) -> bool {
    let last = key.chars().last().and_then(|c| c.to_digit(16)).unwrap();
    last.is_multiple_of(2)
}

/// Asserts the §4 representation: exactly these fields (plus `account_key` when `with_key`).
#[track_caller]
fn assert_account(body: &Value, email: &str, first: &str, last: &str, with_key: bool) {
    let mut fields: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    let mut expected = vec![
        "email",
        "first_name",
        "has_password",
        "id",
        "is_active",
        "last_name",
        "metadata",
    ];
    if with_key {
        expected.push("account_key");
        expected.sort_unstable();
    }
    assert_eq!(fields, expected, "fields of {body}");
    assert!(body["id"].as_i64().is_some_and(|id| id > 0), "id of {body}");
    assert_eq!(body["email"], email);
    assert_eq!(body["first_name"], first);
    assert_eq!(body["last_name"], last);
    assert_eq!(body["is_active"], true);
    assert_eq!(body["has_password"], true);
    assert_eq!(body["metadata"], json!({}));
    if with_key {
        assert!(is_key(&body["account_key"]), "account_key of {body}");
        assert!(ends_in_even_hex_digit(
            body["account_key"].as_str().unwrap()
        ));
    }
}

/// Registers through open registration and returns the 201 body.
async fn register(app: &TestApp, email: &str, password: &str) -> Value {
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": email, "password": password}),
    )
    .await
    .assert_status(201)
    .clone()
}

// ---------------------------------------------------------------- register (§4.1)

#[tokio::test]
async fn registration_is_disabled_by_default_for_anonymous_callers() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "lilac-and-gooseberries"}),
    )
    .await
    .assert(400, json!({"detail": "Registration disabled."}));
    // Nothing was created: logging in with that e-mail finds no account.
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "lilac-and-gooseberries"}),
    )
    .await
    .assert(401, json!({"detail": "Invalid email."}));
}

#[tokio::test]
async fn open_registration_returns_the_account_with_its_key() {
    let app = open_registration().await;
    let resp = app
        .post(
            "/v1.1/account/register/",
            None,
            json!({"email": "yen@vengerberg.io", "password": "lilac-and-gooseberries",
                   "first_name": "Yennefer", "last_name": "of Vengerberg"}),
        )
        .await;
    let body = resp.assert_status(201).clone();
    assert_account(
        &body,
        "yen@vengerberg.io",
        "Yennefer",
        "of Vengerberg",
        true,
    );
    // The returned key is a working account key for this very account.
    let key = body["account_key"].as_str().unwrap();
    let me = app.get("/v1.1/account/", Some(key)).await;
    assert_eq!(me.assert_status(200)["id"], body["id"]);
}

#[tokio::test]
async fn register_defaults_names_to_blank_and_ignores_an_invitation_key() {
    let app = open_registration().await;
    let body = app
        .post(
            "/v1.1/account/register/",
            None,
            json!({"email": "geralt@rivia.io", "password": "roach",
                   "invitation_key": "whatever"}),
        )
        .await
        .assert_status(201)
        .clone();
    assert_account(&body, "geralt@rivia.io", "", "", true);
}

#[tokio::test]
async fn register_lower_cases_and_trims_the_email() {
    let app = open_registration().await;
    let body = register(&app, "  Yen@Vengerberg.IO ", "lilac").await;
    assert_eq!(body["email"], "yen@vengerberg.io");
}

#[tokio::test]
async fn register_accepts_a_form_body() {
    let app = open_registration().await;
    let resp = app
        .send(
            app.request(Method::POST, "/v1.1/account/register/", None)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("email=ciri%40cintra.io&password=swallow"),
        )
        .await;
    assert_account(resp.assert_status(201), "ciri@cintra.io", "", "", true);
}

#[tokio::test]
async fn accounts_get_distinct_ids_and_distinct_keys() {
    let app = open_registration().await;
    let a = register(&app, "a@example.com", "password-a").await;
    let b = register(&app, "b@example.com", "password-b").await;
    assert_ne!(a["id"], b["id"]);
    assert_ne!(a["account_key"], b["account_key"]);
}

#[tokio::test]
async fn register_rejects_a_duplicate_email() {
    let app = open_registration().await;
    register(&app, "yen@vengerberg.io", "lilac").await;
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "other"}),
    )
    .await
    .assert(400, json!({"email": ["This field must be unique."]}));
}

#[tokio::test]
async fn register_treats_an_email_differing_only_in_case_as_a_duplicate() {
    let app = open_registration().await;
    register(&app, "yen@vengerberg.io", "lilac").await;
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "YEN@Vengerberg.io", "password": "other"}),
    )
    .await
    .assert(400, json!({"email": ["This field must be unique."]}));
}

#[tokio::test]
async fn register_rejects_the_superusers_email_as_a_duplicate() {
    let app = open_registration().await;
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "admin@localhost", "password": "other"}),
    )
    .await
    .assert(400, json!({"email": ["This field must be unique."]}));
}

#[tokio::test]
async fn register_rejects_a_malformed_email() {
    let app = open_registration().await;
    for email in [
        "not-an-email",
        "yen@",
        "@vengerberg.io",
        "yen vengerberg@io",
    ] {
        app.post(
            "/v1.1/account/register/",
            None,
            json!({"email": email, "password": "lilac"}),
        )
        .await
        .assert(400, json!({"email": ["Enter a valid email address."]}));
    }
}

#[tokio::test]
async fn register_requires_email_and_password() {
    let app = open_registration().await;
    app.post("/v1.1/account/register/", None, json!({}))
        .await
        .assert(
            400,
            json!({"email": ["This field is required."], "password": ["This field is required."]}),
        );
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "yen@vengerberg.io"}),
    )
    .await
    .assert(400, json!({"password": ["This field is required."]}));
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"password": "lilac"}),
    )
    .await
    .assert(400, json!({"email": ["This field is required."]}));
}

#[tokio::test]
async fn register_rejects_a_blank_password() {
    let app = open_registration().await;
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "yen@vengerberg.io", "password": ""}),
    )
    .await
    .assert(400, json!({"password": ["This field may not be blank."]}));
}

#[tokio::test]
async fn register_rejects_a_blank_email() {
    let app = open_registration().await;
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "", "password": "lilac"}),
    )
    .await
    .assert(400, json!({"email": ["This field may not be blank."]}));
}

#[tokio::test]
async fn register_limits_password_to_1024_characters() {
    let app = open_registration().await;
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "p".repeat(1025)}),
    )
    .await
    .assert(
        400,
        json!({"password": ["Ensure this field has no more than 1024 characters."]}),
    );
    // Exactly 1024 is fine, and that password logs in.
    let password = "p".repeat(1024);
    register(&app, "yen@vengerberg.io", &password).await;
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": password}),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn register_limits_names_to_64_characters() {
    let app = open_registration().await;
    app.post(
        "/v1.1/account/register/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "lilac",
               "first_name": "y".repeat(65), "last_name": "v".repeat(65)}),
    )
    .await
    .assert(
        400,
        json!({"first_name": ["Ensure this field has no more than 64 characters."],
               "last_name": ["Ensure this field has no more than 64 characters."]}),
    );
}

// ---------------------------------------------------------------- superuser (§4.6)

#[tokio::test]
async fn the_superuser_can_register_accounts_while_registration_is_disabled() {
    let app = TestApp::spawn().await;
    let body = app
        .post(
            "/v1.1/account/register/",
            Some(&app.admin_key),
            json!({"email": "yen@vengerberg.io", "password": "lilac"}),
        )
        .await
        .assert_status(201)
        .clone();
    assert_account(&body, "yen@vengerberg.io", "", "", true);
    // The new account logs in with its own password.
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "lilac"}),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn a_non_superuser_account_key_cannot_register_while_registration_is_disabled() {
    let app = TestApp::spawn().await;
    let ordinary = app.create_account("geralt@rivia.io").await;
    app.post(
        "/v1.1/account/register/",
        Some(&ordinary),
        json!({"email": "yen@vengerberg.io", "password": "lilac"}),
    )
    .await
    .assert(400, json!({"detail": "Registration disabled."}));
}

#[tokio::test]
async fn an_api_key_cannot_register_while_registration_is_disabled() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let api_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    app.post(
        "/v1.1/account/register/",
        Some(&api_key),
        json!({"email": "yen@vengerberg.io", "password": "lilac"}),
    )
    .await
    .assert(400, json!({"detail": "Registration disabled."}));
}

#[tokio::test]
async fn the_superuser_flag_is_not_shown_by_the_api() {
    let app = TestApp::spawn().await;
    let body = app
        .get("/v1.1/account/", Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone();
    assert_account(&body, "admin@localhost", "", "", false);
}

#[tokio::test]
async fn the_superuser_logs_in_with_the_configured_password() {
    let app = TestApp::spawn().await;
    let body = app
        .post(
            "/v1.1/account/auth/",
            None,
            json!({"email": "admin@localhost", "password": "admin-password"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_account(&body, "admin@localhost", "", "", true);
    assert_eq!(body["account_key"], app.admin_key.as_str());
}

// ---------------------------------------------------------------- log in (§4.2)

#[tokio::test]
async fn log_in_returns_the_account_with_its_current_key() {
    let app = open_registration().await;
    let registered = register(&app, "yen@vengerberg.io", "lilac").await;
    let body = app
        .post(
            "/v1.1/account/auth/",
            None,
            json!({"email": "yen@vengerberg.io", "password": "lilac"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_account(&body, "yen@vengerberg.io", "", "", true);
    assert_eq!(body["id"], registered["id"]);
    assert_eq!(body["account_key"], registered["account_key"]);
}

#[tokio::test]
async fn log_in_matches_the_email_case_insensitively() {
    let app = open_registration().await;
    register(&app, "yen@vengerberg.io", "lilac").await;
    let body = app
        .post(
            "/v1.1/account/auth/",
            None,
            json!({"email": " Yen@VENGERBERG.io ", "password": "lilac"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["email"], "yen@vengerberg.io");
}

#[tokio::test]
async fn log_in_with_an_unknown_email_is_401_invalid_email() {
    let app = open_registration().await;
    register(&app, "yen@vengerberg.io", "lilac").await;
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "triss@maribor.io", "password": "lilac"}),
    )
    .await
    .assert(401, json!({"detail": "Invalid email."}));
}

#[tokio::test]
async fn log_in_with_a_wrong_password_is_401_invalid_password() {
    let app = open_registration().await;
    register(&app, "yen@vengerberg.io", "lilac").await;
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "gooseberries"}),
    )
    .await
    .assert(401, json!({"detail": "Invalid password."}));
    // Passwords are case-sensitive.
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "LILAC"}),
    )
    .await
    .assert(401, json!({"detail": "Invalid password."}));
}

#[tokio::test]
async fn log_in_rejects_a_malformed_email() {
    let app = TestApp::spawn().await;
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "not-an-email", "password": "lilac"}),
    )
    .await
    .assert(400, json!({"email": ["Enter a valid email address."]}));
}

#[tokio::test]
async fn log_in_requires_email_and_password() {
    let app = TestApp::spawn().await;
    app.post("/v1.1/account/auth/", None, json!({}))
        .await
        .assert(
            400,
            json!({"email": ["This field is required."], "password": ["This field is required."]}),
        );
}

#[tokio::test]
async fn log_in_ignores_any_key_sent_with_it() {
    let app = open_registration().await;
    register(&app, "yen@vengerberg.io", "lilac").await;
    let bogus = "0".repeat(40);
    app.post(
        "/v1.1/account/auth/",
        Some(&bogus),
        json!({"email": "yen@vengerberg.io", "password": "lilac"}),
    )
    .await
    .assert_status(200);
}

// ---------------------------------------------------------------- details (§4.3)

#[tokio::test]
async fn get_account_returns_the_representation_without_the_key() {
    let app = open_registration().await;
    let registered = app
        .post(
            "/v1.1/account/register/",
            None,
            json!({"email": "yen@vengerberg.io", "password": "lilac", "first_name": "Yennefer"}),
        )
        .await
        .assert_status(201)
        .clone();
    let key = registered["account_key"].as_str().unwrap();
    let body = app
        .get("/v1.1/account/", Some(key))
        .await
        .assert_status(200)
        .clone();
    assert_account(&body, "yen@vengerberg.io", "Yennefer", "", false);
    assert_eq!(body["id"], registered["id"]);
}

#[tokio::test]
async fn account_endpoints_refuse_api_keys() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let api_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    let denied = json!({"detail": GENERIC_403});
    app.get("/v1.1/account/", Some(&api_key))
        .await
        .assert(403, denied.clone());
    app.put("/v1.1/account/", Some(&api_key), json!({"first_name": "x"}))
        .await
        .assert(403, denied.clone());
    app.patch("/v1.1/account/", Some(&api_key), json!({"first_name": "x"}))
        .await
        .assert(403, denied.clone());
    app.post("/v1.1/account/reset_key/", Some(&api_key), json!({}))
        .await
        .assert(403, denied.clone());
    app.post(
        "/v1.1/account/password/",
        Some(&api_key),
        json!({"current_password": "admin-password", "new_password": "x"}),
    )
    .await
    .assert(403, denied.clone());
    // Nothing changed for the owner.
    let me = app.get("/v1.1/account/", Some(&app.admin_key)).await;
    assert_eq!(me.assert_status(200)["first_name"], "");
}

#[tokio::test]
async fn account_endpoints_refuse_requests_without_a_key() {
    let app = TestApp::spawn().await;
    let denied = json!({"detail": GENERIC_403});
    app.get("/v1.1/account/", None)
        .await
        .assert(403, denied.clone());
    app.patch("/v1.1/account/", None, json!({"first_name": "x"}))
        .await
        .assert(403, denied.clone());
    app.post("/v1.1/account/reset_key/", None, json!({}))
        .await
        .assert(403, denied.clone());
    app.post(
        "/v1.1/account/password/",
        None,
        json!({"current_password": "admin-password", "new_password": "x"}),
    )
    .await
    .assert(403, denied);
}

#[tokio::test]
async fn an_unknown_account_key_is_no_such_api_key() {
    let app = TestApp::spawn().await;
    let unknown = "2".repeat(40);
    app.get("/v1.1/account/", Some(&unknown))
        .await
        .assert(403, json!({"detail": "No such API Key."}));
}

#[tokio::test]
async fn patch_account_changes_names_and_metadata() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    let body = app
        .patch(
            "/v1.1/account/",
            Some(&key),
            json!({"first_name": "Yennefer", "last_name": "of Vengerberg",
                   "metadata": {"color": "lilac"}}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(
        body.as_object().unwrap().keys().len(),
        7,
        "no account_key on update: {body}"
    );
    assert_eq!(body["first_name"], "Yennefer");
    assert_eq!(body["last_name"], "of Vengerberg");
    assert_eq!(body["metadata"], json!({"color": "lilac"}));
    assert_eq!(body["email"], "yen@vengerberg.io");
    assert_eq!(body["is_active"], true);
    assert_eq!(body["has_password"], true);
    // The change is stored.
    let stored = app.get("/v1.1/account/", Some(&key)).await;
    assert_eq!(stored.assert_status(200), &body);
}

#[tokio::test]
async fn patch_account_updates_only_the_fields_sent() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    app.patch(
        "/v1.1/account/",
        Some(&key),
        json!({"first_name": "Yennefer", "last_name": "of Vengerberg"}),
    )
    .await
    .assert_status(200);
    let body = app
        .patch(
            "/v1.1/account/",
            Some(&key),
            json!({"last_name": "Vengerberg"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["first_name"], "Yennefer");
    assert_eq!(body["last_name"], "Vengerberg");
}

#[tokio::test]
async fn put_account_changes_the_email_and_the_new_email_logs_in() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    let body = app
        .put(
            "/v1.1/account/",
            Some(&key),
            json!({"email": "Yennefer@Aretuza.io", "first_name": "Yennefer"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_account(&body, "yennefer@aretuza.io", "Yennefer", "", false);
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yennefer@aretuza.io", "password": "secret-password"}),
    )
    .await
    .assert_status(200);
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "secret-password"}),
    )
    .await
    .assert(401, json!({"detail": "Invalid email."}));
}

#[tokio::test]
async fn updating_the_account_email_to_a_taken_one_is_rejected() {
    let app = TestApp::spawn().await;
    app.create_account("geralt@rivia.io").await;
    let key = app.create_account("yen@vengerberg.io").await;
    app.patch(
        "/v1.1/account/",
        Some(&key),
        json!({"email": "geralt@rivia.io"}),
    )
    .await
    .assert(400, json!({"email": ["This field must be unique."]}));
    app.patch("/v1.1/account/", Some(&key), json!({"email": "nonsense"}))
        .await
        .assert(400, json!({"email": ["Enter a valid email address."]}));
    let stored = app.get("/v1.1/account/", Some(&key)).await;
    assert_eq!(stored.assert_status(200)["email"], "yen@vengerberg.io");
}

#[tokio::test]
async fn updating_the_account_to_its_own_email_is_not_a_duplicate() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    let body = app
        .patch(
            "/v1.1/account/",
            Some(&key),
            json!({"email": "Yen@Vengerberg.io", "first_name": "Yennefer"}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["email"], "yen@vengerberg.io");
    assert_eq!(body["first_name"], "Yennefer");
}

#[tokio::test]
async fn updating_the_account_ignores_read_only_fields() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    let before = app
        .get("/v1.1/account/", Some(&key))
        .await
        .assert_status(200)
        .clone();
    let body = app
        .patch(
            "/v1.1/account/",
            Some(&key),
            json!({"id": 9999, "is_active": false, "has_password": false,
                   "account_key": "4".repeat(40)}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body, before);
    // The key was not replaced.
    app.get("/v1.1/account/", Some(&key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn account_metadata_limits_apply() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    let nine: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("k{i}"), json!(i))).collect();
    app.patch("/v1.1/account/", Some(&key), json!({"metadata": nine}))
        .await
        .assert(
            400,
            json!({"metadata": ["Too many keys defined (exceeds 8)."]}),
        );
    app.patch("/v1.1/account/", Some(&key), json!({"metadata": [1, 2]}))
        .await
        .assert(
            400,
            json!({"metadata": ["Metadata passed in invalid format."]}),
        );
    app.patch(
        "/v1.1/account/",
        Some(&key),
        json!({"metadata": {"k".repeat(17): 1}}),
    )
    .await
    .assert(
        400,
        json!({"metadata": ["Too long key defined (exceeds 16)."]}),
    );
    app.patch(
        "/v1.1/account/",
        Some(&key),
        json!({"metadata": {"bio": "x".repeat(4100)}}),
    )
    .await
    .assert(
        400,
        json!({"metadata": ["Too long value defined for key bio (exceeds 4096)."]}),
    );
    // Eight keys is the limit, not over it.
    let eight: serde_json::Map<String, Value> =
        (0..8).map(|i| (format!("k{i}"), json!(i))).collect();
    let body = app
        .patch(
            "/v1.1/account/",
            Some(&key),
            json!({"metadata": eight.clone()}),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(body["metadata"], Value::Object(eight));
}

#[tokio::test]
async fn updating_account_names_is_limited_to_64_characters() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    app.patch(
        "/v1.1/account/",
        Some(&key),
        json!({"first_name": "y".repeat(65)}),
    )
    .await
    .assert(
        400,
        json!({"first_name": ["Ensure this field has no more than 64 characters."]}),
    );
}

// ---------------------------------------------------------------- reset key (§4.4)

#[tokio::test]
async fn reset_key_returns_a_new_even_key_with_the_representation() {
    let app = TestApp::spawn().await;
    let old = app.create_account("yen@vengerberg.io").await;
    let body = app
        .post("/v1.1/account/reset_key/", Some(&old), json!({}))
        .await
        .assert_status(200)
        .clone();
    assert_account(&body, "yen@vengerberg.io", "", "", true);
    assert_ne!(body["account_key"], old.as_str());
}

#[tokio::test]
async fn reset_key_makes_the_old_account_key_stop_working_immediately() {
    let app = TestApp::spawn().await;
    let old = app.create_account("yen@vengerberg.io").await;
    // Use the key first, so any cache has seen it.
    app.get("/v1.1/account/", Some(&old))
        .await
        .assert_status(200);
    let body = app
        .post("/v1.1/account/reset_key/", Some(&old), json!({}))
        .await
        .assert_status(200)
        .clone();
    let new = body["account_key"].as_str().unwrap();
    app.get("/v1.1/account/", Some(&old))
        .await
        .assert(403, json!({"detail": "No such API Key."}));
    app.get("/v1.1/instances/", Some(&old))
        .await
        .assert(403, json!({"detail": "No such API Key."}));
    let me = app.get("/v1.1/account/", Some(new)).await;
    assert_eq!(me.assert_status(200)["email"], "yen@vengerberg.io");
    // Logging in now hands out the new key.
    let login = app
        .post(
            "/v1.1/account/auth/",
            None,
            json!({"email": "yen@vengerberg.io", "password": "secret-password"}),
        )
        .await;
    assert_eq!(login.assert_status(200)["account_key"], new);
}

#[tokio::test]
async fn reset_key_accepts_a_bodiless_post_with_a_json_content_type() {
    let app = TestApp::spawn().await;
    let old = app.create_account("yen@vengerberg.io").await;
    let resp = app
        .send(
            app.request(Method::POST, "/v1.1/account/reset_key/", Some(&old))
                .header("Content-Type", "application/json"),
        )
        .await;
    assert!(is_key(&resp.assert_status(200)["account_key"]));
}

#[tokio::test]
async fn reset_key_keeps_the_accounts_instances() {
    let app = TestApp::spawn().await;
    let old = app.create_account("yen@vengerberg.io").await;
    app.post(
        "/v1.1/instances/",
        Some(&old),
        json!({"name": "vengerberg"}),
    )
    .await
    .assert_status(201);
    let new = app
        .post("/v1.1/account/reset_key/", Some(&old), json!({}))
        .await
        .assert_status(200)["account_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = app.get("/v1.1/instances/vengerberg/", Some(&new)).await;
    assert_eq!(detail.assert_status(200)["role"], "full");
}

// ---------------------------------------------------------------- password (§4.5)

#[tokio::test]
async fn change_password_answers_204_and_the_new_password_logs_in() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    let resp = app
        .post(
            "/v1.1/account/password/",
            Some(&key),
            json!({"current_password": "secret-password", "new_password": "lilac-and-gooseberries"}),
        )
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert_eq!(resp.text, "");
    let login = app
        .post(
            "/v1.1/account/auth/",
            None,
            json!({"email": "yen@vengerberg.io", "password": "lilac-and-gooseberries"}),
        )
        .await;
    assert_account(login.assert_status(200), "yen@vengerberg.io", "", "", true);
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "secret-password"}),
    )
    .await
    .assert(401, json!({"detail": "Invalid password."}));
    // Changing the password does not rotate the key.
    app.get("/v1.1/account/", Some(&key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn change_password_with_a_wrong_current_password_is_rejected() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    app.post(
        "/v1.1/account/password/",
        Some(&key),
        json!({"current_password": "not-it", "new_password": "lilac"}),
    )
    .await
    .assert(400, json!({"current_password": ["Invalid password."]}));
    // The old password still works; the attempted one does not.
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "secret-password"}),
    )
    .await
    .assert_status(200);
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "lilac"}),
    )
    .await
    .assert(401, json!({"detail": "Invalid password."}));
}

#[tokio::test]
async fn change_password_requires_both_fields() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    app.post("/v1.1/account/password/", Some(&key), json!({}))
        .await
        .assert(
            400,
            json!({"current_password": ["This field is required."],
                   "new_password": ["This field is required."]}),
        );
    app.post(
        "/v1.1/account/password/",
        Some(&key),
        json!({"current_password": "secret-password", "new_password": ""}),
    )
    .await
    .assert(
        400,
        json!({"new_password": ["This field may not be blank."]}),
    );
    // The password is unchanged.
    app.post(
        "/v1.1/account/auth/",
        None,
        json!({"email": "yen@vengerberg.io", "password": "secret-password"}),
    )
    .await
    .assert_status(200);
}

// ---------------------------------------------------------------- storage and wire format

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes_never_in_plain_text() {
    let app = open_registration().await;
    let password = "Distinctive-Plaintext-Password-7319";
    register(&app, "yen@vengerberg.io", password).await;
    app.post(
        "/v1.1/account/password/",
        Some(&app.admin_key),
        json!({"current_password": "admin-password", "new_password": "Another-Plaintext-Secret-2288"}),
    )
    .await
    .assert_status(204);
    // Everything the database holds, read while the server runs.
    let stored = app.stored_bytes().await;
    let contains = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("$argon2id$"), "no Argon2id hash stored");
    assert!(!contains(password), "a password is stored in plain text");
    assert!(
        !contains("Another-Plaintext-Secret-2288"),
        "a password is stored in plain text"
    );
    app.stop().await.expect("the server stops cleanly");
}

#[tokio::test]
async fn account_responses_are_utf8_json_and_echo_non_ascii_unescaped() {
    let app = TestApp::spawn().await;
    let key = app.create_account("yen@vengerberg.io").await;
    let resp = app
        .patch(
            "/v1.1/account/",
            Some(&key),
            json!({"first_name": "Yennefer z Vengerbergu ż"}),
        )
        .await;
    resp.assert_status(200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(resp.text.contains("Vengerbergu ż"), "{}", resp.text);
    assert_eq!(resp.json["first_name"], "Yennefer z Vengerbergu ż");
}
