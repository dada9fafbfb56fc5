//! Users: create, list, detail, key reset, login and the current user (docs/api.md §7), with the user
//! key rules of §3.2–§3.4.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};

pub(crate) const FORBIDDEN: &str = "You do not have permission to perform this action.";
pub(crate) const NO_SUCH_USER_KEY: &str = "No such User Key.";
pub(crate) const PASSWORD: &str = "roach-and-silver";
pub(crate) const USERS: &str = "/v1.1/instances/rivia/users/";
const CURRENT: &str = "/v1.1/instances/rivia/user/";
const LOGIN: &str = "/v1.1/instances/rivia/user/auth/";

pub(crate) fn forbidden() -> Value {
    json!({"detail": FORBIDDEN})
}

pub(crate) fn not_found() -> Value {
    json!({"detail": "Not found."})
}

pub(crate) fn no_such_user_key() -> Value {
    json!({"detail": NO_SUCH_USER_KEY})
}

pub(crate) fn user_path(id: i64) -> String {
    format!("{USERS}{id}/")
}

/// The API keys of instance `rivia`, one per caller class of §3.4 (besides owner and user).
pub(crate) struct Keys {
    /// `ignore_acl: true`
    pub trusted: String,
    /// `allow_user_create: true`
    pub signup: String,
    /// `allow_group_create: true`
    pub group_create: String,
    /// `allow_anonymous_read: true`
    pub reader: String,
    /// no flags
    pub bare: String,
}

pub(crate) async fn setup() -> (TestApp, Keys) {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let keys = Keys {
        trusted: app
            .create_api_key("rivia", json!({"ignore_acl": true}))
            .await,
        signup: app
            .create_api_key("rivia", json!({"allow_user_create": true}))
            .await,
        group_create: app
            .create_api_key("rivia", json!({"allow_group_create": true}))
            .await,
        reader: app
            .create_api_key("rivia", json!({"allow_anonymous_read": true}))
            .await,
        bare: app.create_api_key("rivia", json!({})).await,
    };
    (app, keys)
}

/// Creates a user of `instance` with [`PASSWORD`] through the superuser.
pub(crate) async fn create_user_in(app: &TestApp, instance: &str, username: &str) -> Value {
    app.post(
        &format!("/v1.1/instances/{instance}/users/"),
        Some(&app.admin_key),
        json!({"username": username, "password": PASSWORD}),
    )
    .await
    .assert_status(201)
    .clone()
}

/// Creates a user of `rivia` with [`PASSWORD`] through the superuser.
pub(crate) async fn create_user(app: &TestApp, username: &str) -> Value {
    create_user_in(app, "rivia", username).await
}

pub(crate) fn id(object: &Value) -> i64 {
    object["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id: {object}"))
}

pub(crate) fn user_key(user: &Value) -> String {
    user["user_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no user_key: {user}"))
        .to_owned()
}

/// Sends a request with an API key and `X-USER-KEY`, with a JSON body when given.
pub(crate) async fn as_user(
    app: &TestApp,
    method: Method,
    path: &str,
    api_key: &str,
    user_key: &str,
    body: Option<Value>,
) -> Resp {
    let mut builder = app
        .request(method, path, Some(api_key))
        .header("X-USER-KEY", user_key);
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    app.send(builder).await
}

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

/// Asserts a user key is 40 lower-case hex digits ending in an even digit (§2.6).
#[track_caller]
pub(crate) fn assert_user_key(value: &Value) {
    let key = value
        .as_str()
        .unwrap_or_else(|| panic!("not a key: {value}"));
    assert_eq!(key.len(), 40, "user key length: {key}");
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "user key is not lower-case hex: {key}"
    );
    let last = u8::from_str_radix(&key[39..], 16).expect("hex digit");
    assert_eq!(last % 2, 0, "a user key ends in an even digit: {key}");
}

/// A user representation with its key and profile timestamps checked and removed.
#[track_caller]
pub(crate) fn stripped(user: &Value) -> Value {
    let mut user = user.clone();
    let object = user.as_object_mut().expect("a user object");
    assert_user_key(&object.remove("user_key").expect("user_key"));
    let profile = object
        .get_mut("profile")
        .and_then(Value::as_object_mut)
        .expect("a profile object");
    assert_timestamp(&profile.remove("created_at").expect("created_at"));
    assert_timestamp(&profile.remove("updated_at").expect("updated_at"));
    user
}

/// The §7 representation of a user of `rivia` (without `user_key` and profile timestamps);
/// `profile` overrides profile fields.
pub(crate) fn user_repr(
    id: i64,
    username: &str,
    profile_id: i64,
    groups: Value,
    profile: Value,
) -> Value {
    let base = format!("/v1.1/instances/rivia/users/{id}/");
    let profile_link = format!("/v1.1/instances/rivia/classes/user_profile/objects/{profile_id}/");
    let mut profile_json = json!({
        "id": profile_id, "owner": id, "owner_permissions": "full", "group": null,
        "group_permissions": "none", "other_permissions": "none", "channel": null,
        "channel_room": null, "revision": 1,
        "links": {"self": profile_link, "owner": base},
    });
    for (field, value) in profile.as_object().expect("overrides") {
        profile_json[field] = value.clone();
    }
    json!({
        "id": id,
        "username": username,
        "groups": groups,
        "profile": profile_json,
        "links": {
            "self": base,
            "groups": format!("{base}groups/"),
            "reset-key": format!("{base}reset_key/"),
            "profile": profile_link,
        },
    })
}

/// The representation `user` must have given its id and profile id, default profile, no groups.
#[track_caller]
fn assert_plain_user(user: &Value, username: &str) {
    let expected = user_repr(
        id(user),
        username,
        id(&user["profile"]),
        json!([]),
        json!({}),
    );
    assert_eq!(stripped(user), expected);
}

fn long(n: usize) -> String {
    "g".repeat(n)
}

// ---- create ----

#[tokio::test]
async fn owner_creates_a_user_with_the_exact_representation_and_lower_cased_username() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            USERS,
            Some(&app.admin_key),
            json!({"username": "  Geralt ", "password": PASSWORD}),
        )
        .await;
    let user = resp.assert_status(201).clone();
    assert_plain_user(&user, "geralt");
    assert!(
        !resp.text.contains(PASSWORD) && user.get("password").is_none(),
        "the password is never returned: {}",
        resp.text
    );
}

#[tokio::test]
async fn trusted_key_creates_a_user() {
    let (app, keys) = setup().await;
    let resp = app
        .post(
            USERS,
            Some(&keys.trusted),
            json!({"username": "ciri", "password": PASSWORD}),
        )
        .await;
    assert_plain_user(resp.assert_status(201), "ciri");
}

#[tokio::test]
async fn api_key_with_allow_user_create_signs_up_users_with_or_without_a_user_key() {
    let (app, keys) = setup().await;
    let resp = app
        .post(
            USERS,
            Some(&keys.signup),
            json!({"username": "yennefer", "password": PASSWORD}),
        )
        .await;
    let yen = resp.assert_status(201).clone();
    assert_plain_user(&yen, "yennefer");
    let resp = as_user(
        &app,
        Method::POST,
        USERS,
        &keys.signup,
        &user_key(&yen),
        Some(json!({"username": "triss", "password": PASSWORD})),
    )
    .await;
    assert_plain_user(resp.assert_status(201), "triss");
}

#[tokio::test]
async fn api_keys_without_allow_user_create_cannot_create_users() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let body = json!({"username": "ciri", "password": PASSWORD});
    for key in [&keys.bare, &keys.reader, &keys.group_create] {
        app.post(USERS, Some(key), body.clone())
            .await
            .assert(403, forbidden());
    }
    as_user(
        &app,
        Method::POST,
        USERS,
        &keys.bare,
        &user_key(&geralt),
        Some(body.clone()),
    )
    .await
    .assert(403, forbidden());
    app.post(USERS, None, body).await.assert(403, forbidden());
    let list = app.get(USERS, Some(&app.admin_key)).await;
    assert_eq!(
        list.assert_status(200)["objects"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn a_username_already_taken_in_any_case_is_refused_as_not_unique() {
    let (app, _) = setup().await;
    create_user(&app, "geralt").await;
    app.post(
        USERS,
        Some(&app.admin_key),
        json!({"username": "GERALT", "password": PASSWORD}),
    )
    .await
    .assert(400, json!({"username": ["This field must be unique."]}));
}

#[tokio::test]
async fn the_same_username_may_exist_in_two_instances() {
    let (app, _) = setup().await;
    app.create_instance("kaer-morhen").await;
    create_user(&app, "geralt").await;
    let other = create_user_in(&app, "kaer-morhen", "geralt").await;
    assert_eq!(other["username"], "geralt");
}

#[tokio::test]
async fn creating_a_user_without_password_or_username_reports_each_missing_field() {
    let (app, _) = setup().await;
    let key = Some(app.admin_key.as_str());
    app.post(USERS, key, json!({"username": "geralt"}))
        .await
        .assert(400, json!({"password": ["This field is required."]}));
    app.post(USERS, key, json!({"password": PASSWORD}))
        .await
        .assert(400, json!({"username": ["This field is required."]}));
    app.post(USERS, key, json!({})).await.assert(
        400,
        json!({"username": ["This field is required."], "password": ["This field is required."]}),
    );
}

#[tokio::test]
async fn blank_username_or_password_is_refused() {
    let (app, _) = setup().await;
    let key = Some(app.admin_key.as_str());
    app.post(USERS, key, json!({"username": "geralt", "password": ""}))
        .await
        .assert(400, json!({"password": ["This field may not be blank."]}));
    app.post(USERS, key, json!({"username": "  ", "password": PASSWORD}))
        .await
        .assert(400, json!({"username": ["This field may not be blank."]}));
}

#[tokio::test]
async fn a_username_over_64_characters_is_refused_and_64_is_accepted() {
    let (app, _) = setup().await;
    let key = Some(app.admin_key.as_str());
    app.post(
        USERS,
        key,
        json!({"username": long(65), "password": PASSWORD}),
    )
    .await
    .assert(
        400,
        json!({"username": ["Ensure this field has no more than 64 characters."]}),
    );
    let resp = app
        .post(
            USERS,
            key,
            json!({"username": long(64), "password": PASSWORD}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["username"], long(64));
}

#[tokio::test]
async fn a_password_over_1024_characters_is_refused() {
    let (app, _) = setup().await;
    app.post(
        USERS,
        Some(&app.admin_key),
        json!({"username": "geralt", "password": "p".repeat(1025)}),
    )
    .await
    .assert(
        400,
        json!({"password": ["Ensure this field has no more than 1024 characters."]}),
    );
}

async fn create_group_as_owner(app: &TestApp, name: &str) -> Value {
    app.post(
        "/v1.1/instances/rivia/groups/",
        Some(&app.admin_key),
        json!({"name": name, "label": name}),
    )
    .await
    .assert_status(201)
    .clone()
}

#[tokio::test]
async fn profile_permissions_and_group_can_be_set_when_creating_a_user() {
    let (app, _) = setup().await;
    let group = create_group_as_owner(&app, "witchers").await;
    let resp = app
        .post(
            USERS,
            Some(&app.admin_key),
            json!({"username": "geralt", "password": PASSWORD, "profile": {
                "owner_permissions": "write", "group": id(&group),
                "group_permissions": "read", "other_permissions": "none",
            }}),
        )
        .await;
    let user = resp.assert_status(201).clone();
    let expected = user_repr(
        id(&user),
        "geralt",
        id(&user["profile"]),
        json!([]),
        json!({"owner_permissions": "write", "group": id(&group),
               "group_permissions": "read", "other_permissions": "none"}),
    );
    assert_eq!(stripped(&user), expected);
    let read = app.get(&user_path(id(&user)), Some(&app.admin_key)).await;
    assert_eq!(stripped(read.assert_status(200)), expected);
}

#[tokio::test]
async fn every_object_permission_choice_is_accepted_in_a_profile() {
    let (app, _) = setup().await;
    for (i, level) in ["none", "read", "write", "full"].into_iter().enumerate() {
        let resp = app
            .post(
                USERS,
                Some(&app.admin_key),
                json!({"username": format!("user{i}"), "password": PASSWORD,
                       "profile": {"other_permissions": level, "group_permissions": level}}),
            )
            .await;
        let profile = &resp.assert_status(201)["profile"];
        assert_eq!(profile["other_permissions"], level);
        assert_eq!(profile["group_permissions"], level);
    }
}

#[tokio::test]
async fn a_profile_given_as_a_json_string_is_accepted() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            USERS,
            Some(&app.admin_key),
            json!({"username": "geralt", "password": PASSWORD,
                   "profile": "{\"other_permissions\": \"read\"}"}),
        )
        .await;
    assert_eq!(
        resp.assert_status(201)["profile"]["other_permissions"],
        "read"
    );
}

#[tokio::test]
async fn a_profile_string_that_is_not_json_is_refused() {
    let (app, _) = setup().await;
    app.post(
        USERS,
        Some(&app.admin_key),
        json!({"username": "geralt", "password": PASSWORD, "profile": "{not json"}),
    )
    .await
    .assert(400, json!({"profile": ["Not a valid JSON string."]}));
}

#[tokio::test]
async fn a_bad_profile_permission_choice_is_reported_nested_under_profile() {
    let (app, _) = setup().await;
    app.post(
        USERS,
        Some(&app.admin_key),
        json!({"username": "geralt", "password": PASSWORD,
               "profile": {"other_permissions": "publish"}}),
    )
    .await
    .assert(
        400,
        json!({"profile": {"other_permissions": ["\"publish\" is not a valid choice."]}}),
    );
    let list = app.get(USERS, Some(&app.admin_key)).await;
    assert_eq!(
        list.assert_status(200)["objects"],
        json!([]),
        "nothing was created"
    );
}

#[tokio::test]
async fn an_unknown_profile_group_is_reported_nested_under_profile() {
    let (app, _) = setup().await;
    app.post(
        USERS,
        Some(&app.admin_key),
        json!({"username": "geralt", "password": PASSWORD, "profile": {"group": 9}}),
    )
    .await
    .assert(
        400,
        json!({"profile": {"group": ["Invalid pk \"9\" - object does not exist."]}}),
    );
}

#[tokio::test]
async fn a_group_of_another_instance_is_an_unknown_profile_group() {
    let (app, _) = setup().await;
    app.create_instance("kaer-morhen").await;
    let foreign = app
        .post(
            "/v1.1/instances/kaer-morhen/groups/",
            Some(&app.admin_key),
            json!({"label": "wolves"}),
        )
        .await
        .assert_status(201)
        .clone();
    let gid = id(&foreign);
    app.post(
        USERS,
        Some(&app.admin_key),
        json!({"username": "geralt", "password": PASSWORD, "profile": {"group": gid}}),
    )
    .await
    .assert(
        400,
        json!({"profile": {"group": [format!("Invalid pk \"{gid}\" - object does not exist.")]}}),
    );
}

// ---- list ----

#[tokio::test]
async fn owner_and_trusted_key_list_every_user_in_id_order() {
    let (app, keys) = setup().await;
    let mut expected = Vec::new();
    for name in ["geralt", "ciri", "yennefer"] {
        expected.push(create_user(&app, name).await);
    }
    for key in [&app.admin_key, &keys.trusted] {
        let resp = app.get(USERS, Some(key)).await;
        resp.assert(
            200,
            json!({"objects": expected.clone(), "next": null, "prev": null}),
        );
    }
}

#[tokio::test]
async fn username_startswith_filters_users_by_a_case_sensitive_prefix() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    create_user(&app, "ciri").await;
    let gerwant = create_user(&app, "gerwant").await;
    let resp = app
        .get(
            &format!("{USERS}?username__startswith=ger"),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(resp.assert_status(200)["objects"], json!([geralt, gerwant]));
    // Usernames are stored lower-case; the prefix is compared as given.
    let resp = app
        .get(
            &format!("{USERS}?username__startswith=Ger"),
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(resp.assert_status(200)["objects"], json!([]));
}

#[tokio::test]
async fn the_user_list_pages_with_page_size_and_next_links() {
    let (app, _) = setup().await;
    let mut users = Vec::new();
    for name in ["geralt", "ciri", "yennefer"] {
        users.push(create_user(&app, name).await);
    }
    let first = app
        .get(&format!("{USERS}?page_size=2"), Some(&app.admin_key))
        .await;
    let first = first.assert_status(200).clone();
    assert_eq!(first["objects"], json!([users[0], users[1]]));
    assert_eq!(first["prev"], Value::Null);
    let next = first["next"].as_str().expect("a full page links onward");
    let second = app.get(next, Some(&app.admin_key)).await;
    let second = second.assert_status(200);
    assert_eq!(second["objects"], json!([users[2]]));
    assert_eq!(second["next"], Value::Null);
}

#[tokio::test]
async fn following_a_next_link_keeps_the_username_prefix() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    create_user(&app, "ciri").await;
    let gerwant = create_user(&app, "gerwant").await;
    let first = app
        .get(
            &format!("{USERS}?username__startswith=ger&page_size=1"),
            Some(&app.admin_key),
        )
        .await;
    let first = first.assert_status(200).clone();
    assert_eq!(first["objects"], json!([geralt]));
    let next = first["next"].as_str().expect("a next link");
    let second = app.get(next, Some(&app.admin_key)).await;
    assert_eq!(second.assert_status(200)["objects"], json!([gerwant]));
}

#[tokio::test]
async fn a_user_lists_only_themself() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    create_user(&app, "yennefer").await;
    let resp = as_user(&app, Method::GET, USERS, &keys.bare, &user_key(&ciri), None).await;
    resp.assert(200, json!({"objects": [ciri], "next": null, "prev": null}));
}

#[tokio::test]
async fn anonymous_readers_bare_keys_and_keyless_callers_cannot_list_users() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    for key in [
        Some(&keys.reader),
        Some(&keys.bare),
        Some(&keys.signup),
        None,
    ] {
        app.get(USERS, key.map(String::as_str))
            .await
            .assert(403, forbidden());
    }
}

// ---- detail ----

#[tokio::test]
async fn owner_and_trusted_key_read_any_user() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    for key in [&app.admin_key, &keys.trusted] {
        app.get(&user_path(id(&geralt)), Some(key))
            .await
            .assert(200, geralt.clone());
    }
}

#[tokio::test]
async fn an_unknown_user_id_is_not_found() {
    let (app, _) = setup().await;
    app.get(&user_path(999), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn anonymous_readers_and_bare_keys_cannot_read_update_or_delete_users() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let path = user_path(id(&geralt));
    for key in [&keys.reader, &keys.bare, &keys.signup] {
        app.get(&path, Some(key)).await.assert(403, forbidden());
        app.patch(&path, Some(key), json!({"username": "wolf"}))
            .await
            .assert(403, forbidden());
        app.delete(&path, Some(key)).await.assert(403, forbidden());
    }
    app.get(&path, Some(&app.admin_key))
        .await
        .assert(200, geralt);
}

#[tokio::test]
async fn a_user_reads_and_updates_their_own_record() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let key = user_key(&geralt);
    let path = user_path(id(&geralt));
    as_user(&app, Method::GET, &path, &keys.bare, &key, None)
        .await
        .assert(200, geralt.clone());
    let resp = as_user(
        &app,
        Method::PATCH,
        &path,
        &keys.bare,
        &key,
        Some(json!({"username": "White-Wolf"})),
    )
    .await;
    assert_eq!(resp.assert_status(200)["username"], "white-wolf");
    let resp = as_user(
        &app,
        Method::PUT,
        &path,
        &keys.bare,
        &key,
        Some(json!({"username": "gwynbleidd"})),
    )
    .await;
    let updated = resp.assert_status(200).clone();
    let mut expected = geralt.clone();
    expected["username"] = json!("gwynbleidd");
    assert_eq!(updated, expected);
}

#[tokio::test]
async fn a_user_gets_not_found_for_any_other_user() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    let key = user_key(&geralt);
    let path = user_path(id(&ciri));
    as_user(&app, Method::GET, &path, &keys.bare, &key, None)
        .await
        .assert(404, not_found());
    as_user(
        &app,
        Method::PATCH,
        &path,
        &keys.bare,
        &key,
        Some(json!({"username": "swallow"})),
    )
    .await
    .assert(404, not_found());
    as_user(
        &app,
        Method::PUT,
        &path,
        &keys.bare,
        &key,
        Some(json!({"username": "swallow"})),
    )
    .await
    .assert(404, not_found());
    app.get(&path, Some(&app.admin_key)).await.assert(200, ciri);
}

#[tokio::test]
async fn a_user_cannot_delete_any_user_not_even_themself() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    let key = user_key(&geralt);
    for target in [&geralt, &ciri] {
        as_user(
            &app,
            Method::DELETE,
            &user_path(id(target)),
            &keys.bare,
            &key,
            None,
        )
        .await
        .assert(403, forbidden());
    }
    as_user(
        &app,
        Method::GET,
        &user_path(id(&geralt)),
        &keys.bare,
        &key,
        None,
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn owner_deletes_a_user_whose_key_then_stops_working() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let key = user_key(&geralt);
    let path = user_path(id(&geralt));
    // The key works before the deletion.
    as_user(&app, Method::GET, CURRENT, &keys.bare, &key, None)
        .await
        .assert_status(200);
    let resp = app.delete(&path, Some(&app.admin_key)).await;
    resp.assert_status(204);
    assert_eq!(resp.text, "", "204 has an empty body");
    app.get(&path, Some(&app.admin_key))
        .await
        .assert(404, not_found());
    as_user(&app, Method::GET, CURRENT, &keys.bare, &key, None)
        .await
        .assert(403, no_such_user_key());
    app.post(
        LOGIN,
        Some(&keys.bare),
        json!({"username": "geralt", "password": PASSWORD}),
    )
    .await
    .assert(401, json!({"detail": "Invalid username."}));
}

#[tokio::test]
async fn trusted_key_deletes_a_user() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let path = user_path(id(&geralt));
    app.delete(&path, Some(&keys.trusted))
        .await
        .assert_status(204);
    app.get(&path, Some(&keys.trusted))
        .await
        .assert(404, not_found());
    as_user(
        &app,
        Method::GET,
        USERS,
        &keys.bare,
        &user_key(&geralt),
        None,
    )
    .await
    .assert(403, no_such_user_key());
}

#[tokio::test]
async fn deleting_an_unknown_user_is_not_found() {
    let (app, _) = setup().await;
    app.delete(&user_path(999), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn a_deleted_username_can_be_used_again() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    app.delete(&user_path(id(&geralt)), Some(&app.admin_key))
        .await
        .assert_status(204);
    let again = create_user(&app, "geralt").await;
    assert_ne!(user_key(&again), user_key(&geralt));
}

#[tokio::test]
async fn put_requires_the_username_but_patch_does_not() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let path = user_path(id(&geralt));
    app.put(
        &path,
        Some(&app.admin_key),
        json!({"password": "new-password"}),
    )
    .await
    .assert(400, json!({"username": ["This field is required."]}));
    app.patch(&path, Some(&app.admin_key), json!({}))
        .await
        .assert(200, geralt);
}

#[tokio::test]
async fn put_without_a_password_keeps_the_old_one() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    app.put(
        &user_path(id(&geralt)),
        Some(&app.admin_key),
        json!({"username": "gwynbleidd"}),
    )
    .await
    .assert_status(200);
    let resp = app
        .post(
            LOGIN,
            Some(&keys.bare),
            json!({"username": "gwynbleidd", "password": PASSWORD}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["id"], geralt["id"]);
}

#[tokio::test]
async fn put_with_a_password_replaces_the_login_password() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    app.put(
        &user_path(id(&geralt)),
        Some(&app.admin_key),
        json!({"username": "geralt", "password": "toss-a-coin"}),
    )
    .await
    .assert_status(200);
    let resp = app
        .post(
            LOGIN,
            Some(&keys.bare),
            json!({"username": "geralt", "password": "toss-a-coin"}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["id"], geralt["id"]);
    app.post(
        LOGIN,
        Some(&keys.bare),
        json!({"username": "geralt", "password": PASSWORD}),
    )
    .await
    .assert(401, json!({"detail": "Invalid password."}));
}

#[tokio::test]
async fn renaming_a_user_to_a_taken_username_is_refused() {
    let (app, _) = setup().await;
    create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    app.patch(
        &user_path(id(&ciri)),
        Some(&app.admin_key),
        json!({"username": "Geralt"}),
    )
    .await
    .assert(400, json!({"username": ["This field must be unique."]}));
}

#[tokio::test]
async fn patching_profile_permissions_changes_only_them_and_bumps_the_profile_revision() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let resp = app
        .patch(
            &user_path(id(&geralt)),
            Some(&app.admin_key),
            json!({"profile": {"other_permissions": "read"}}),
        )
        .await;
    let updated = resp.assert_status(200).clone();
    assert_eq!(
        stripped(&updated),
        user_repr(
            id(&geralt),
            "geralt",
            id(&geralt["profile"]),
            json!([]),
            json!({"other_permissions": "read", "revision": 2}),
        )
    );
    assert_eq!(updated["user_key"], geralt["user_key"]);
}

// ---- reset_key ----

fn reset_path(user: &Value) -> String {
    format!("{}reset_key/", user_path(id(user)))
}

#[tokio::test]
async fn owner_and_trusted_key_reset_a_user_key_and_the_old_key_stops_working() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let mut old = user_key(&geralt);
    for key in [&app.admin_key, &keys.trusted] {
        let resp = app.post(&reset_path(&geralt), Some(key), json!({})).await;
        let reset = resp.assert_status(200).clone();
        let fresh = user_key(&reset);
        assert_ne!(fresh, old, "a new key is issued");
        let mut expected = geralt.clone();
        expected["user_key"] = json!(fresh);
        assert_eq!(reset, expected);
        assert_plain_user(&reset, "geralt");
        as_user(&app, Method::GET, CURRENT, &keys.bare, &old, None)
            .await
            .assert(403, no_such_user_key());
        as_user(&app, Method::GET, CURRENT, &keys.bare, &fresh, None)
            .await
            .assert(200, reset.clone());
        old = fresh;
    }
}

#[tokio::test]
async fn a_user_resets_their_own_key() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let old = user_key(&geralt);
    let resp = as_user(
        &app,
        Method::POST,
        &reset_path(&geralt),
        &keys.bare,
        &old,
        None,
    )
    .await;
    let fresh = user_key(resp.assert_status(200));
    assert_ne!(fresh, old);
    as_user(&app, Method::GET, CURRENT, &keys.bare, &old, None)
        .await
        .assert(403, no_such_user_key());
    let me = as_user(&app, Method::GET, CURRENT, &keys.bare, &fresh, None).await;
    assert_eq!(me.assert_status(200)["id"], geralt["id"]);
}

#[tokio::test]
async fn a_user_cannot_reset_another_users_key() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    as_user(
        &app,
        Method::POST,
        &reset_path(&ciri),
        &keys.bare,
        &user_key(&geralt),
        None,
    )
    .await
    .assert(404, not_found());
    app.get(&user_path(id(&ciri)), Some(&app.admin_key))
        .await
        .assert(200, ciri);
}

#[tokio::test]
async fn anonymous_readers_and_bare_keys_cannot_reset_user_keys() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    for key in [&keys.reader, &keys.bare] {
        app.post(&reset_path(&geralt), Some(key), json!({}))
            .await
            .assert(403, forbidden());
    }
    app.get(&user_path(id(&geralt)), Some(&app.admin_key))
        .await
        .assert(200, geralt);
}

#[tokio::test]
async fn resetting_the_key_of_an_unknown_user_is_not_found() {
    let (app, _) = setup().await;
    app.post(
        "/v1.1/instances/rivia/users/999/reset_key/",
        Some(&app.admin_key),
        json!({}),
    )
    .await
    .assert(404, not_found());
}

// ---- login ----

#[tokio::test]
async fn any_api_key_of_the_instance_logs_a_user_in_whatever_its_flags() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    for key in [
        &keys.bare,
        &keys.reader,
        &keys.signup,
        &keys.group_create,
        &keys.trusted,
    ] {
        app.post(
            LOGIN,
            Some(key),
            json!({"username": "geralt", "password": PASSWORD}),
        )
        .await
        .assert(200, geralt.clone());
    }
}

#[tokio::test]
async fn the_owners_account_key_logs_a_user_in() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    app.post(
        LOGIN,
        Some(&app.admin_key),
        json!({"username": "geralt", "password": PASSWORD}),
    )
    .await
    .assert(200, geralt);
}

#[tokio::test]
async fn login_matches_the_username_case_insensitively() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    app.post(
        LOGIN,
        Some(&keys.bare),
        json!({"username": "GeRaLt", "password": PASSWORD}),
    )
    .await
    .assert(200, geralt);
}

#[tokio::test]
async fn login_with_an_unknown_username_is_unauthorized() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    app.post(
        LOGIN,
        Some(&keys.bare),
        json!({"username": "lambert", "password": PASSWORD}),
    )
    .await
    .assert(401, json!({"detail": "Invalid username."}));
}

#[tokio::test]
async fn login_with_a_wrong_password_is_unauthorized() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    app.post(
        LOGIN,
        Some(&keys.bare),
        json!({"username": "geralt", "password": "Roach-And-Silver"}),
    )
    .await
    .assert(401, json!({"detail": "Invalid password."}));
}

#[tokio::test]
async fn login_without_username_or_password_reports_the_missing_fields() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    app.post(LOGIN, Some(&keys.bare), json!({})).await.assert(
        400,
        json!({"username": ["This field is required."], "password": ["This field is required."]}),
    );
    app.post(LOGIN, Some(&keys.bare), json!({"username": "geralt"}))
        .await
        .assert(400, json!({"password": ["This field is required."]}));
}

#[tokio::test]
async fn login_needs_a_key_of_the_instance() {
    let (app, _) = setup().await;
    create_user(&app, "geralt").await;
    let body = json!({"username": "geralt", "password": PASSWORD});
    app.post(LOGIN, None, body.clone())
        .await
        .assert(403, forbidden());
    app.create_instance("kaer-morhen").await;
    let foreign = app.create_api_key("kaer-morhen", json!({})).await;
    app.post(LOGIN, Some(&foreign), body.clone())
        .await
        .assert(403, json!({"detail": "No such API Key."}));
    let stranger = app.create_account("dandelion@oxenfurt.edu").await;
    app.post(LOGIN, Some(&stranger), body)
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn a_user_of_another_instance_cannot_log_in_here() {
    let (app, keys) = setup().await;
    app.create_instance("kaer-morhen").await;
    create_user_in(&app, "kaer-morhen", "vesemir").await;
    app.post(
        LOGIN,
        Some(&keys.bare),
        json!({"username": "vesemir", "password": PASSWORD}),
    )
    .await
    .assert(401, json!({"detail": "Invalid username."}));
}

// ---- current user ----

#[tokio::test]
async fn the_current_user_endpoint_returns_the_caller() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    as_user(
        &app,
        Method::GET,
        CURRENT,
        &keys.bare,
        &user_key(&ciri),
        None,
    )
    .await
    .assert(200, ciri);
}

#[tokio::test]
async fn the_current_user_updates_themself_with_put_and_patch() {
    let (app, keys) = setup().await;
    let ciri = create_user(&app, "ciri").await;
    let key = user_key(&ciri);
    let resp = as_user(
        &app,
        Method::PATCH,
        CURRENT,
        &keys.bare,
        &key,
        Some(json!({"username": "Zireael"})),
    )
    .await;
    let mut expected = ciri.clone();
    expected["username"] = json!("zireael");
    resp.assert(200, expected.clone());
    as_user(
        &app,
        Method::PUT,
        CURRENT,
        &keys.bare,
        &key,
        Some(json!({"password": "lady-of-space"})),
    )
    .await
    .assert(400, json!({"username": ["This field is required."]}));
    let resp = as_user(
        &app,
        Method::PUT,
        CURRENT,
        &keys.bare,
        &key,
        Some(json!({"username": "ciri", "password": "lady-of-space"})),
    )
    .await;
    resp.assert(200, ciri.clone());
    app.post(
        LOGIN,
        Some(&keys.bare),
        json!({"username": "ciri", "password": "lady-of-space"}),
    )
    .await
    .assert(200, ciri);
}

#[tokio::test]
async fn the_current_user_endpoint_needs_a_user_key() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    for key in [&keys.bare, &keys.reader, &keys.trusted, &app.admin_key] {
        app.get(CURRENT, Some(key)).await.assert(403, forbidden());
        app.patch(CURRENT, Some(key), json!({"username": "wolf"}))
            .await
            .assert(403, forbidden());
    }
    app.get(CURRENT, None).await.assert(403, forbidden());
}

#[tokio::test]
async fn deleting_the_current_user_is_not_allowed() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let resp = as_user(
        &app,
        Method::DELETE,
        CURRENT,
        &keys.bare,
        &user_key(&geralt),
        None,
    )
    .await;
    resp.assert(405, json!({"detail": "Method \"DELETE\" not allowed."}));
    let allow = resp.header("allow").expect("an Allow header").to_owned();
    for method in ["GET", "PUT", "PATCH"] {
        assert!(allow.contains(method), "Allow: {allow}");
    }
    assert!(!allow.contains("DELETE"), "Allow: {allow}");
    // The method check comes before credentials (§2.4).
    app.delete(CURRENT, None)
        .await
        .assert(405, json!({"detail": "Method \"DELETE\" not allowed."}));
    app.get(&user_path(id(&geralt)), Some(&app.admin_key))
        .await
        .assert(200, geralt);
}

// ---- where user keys are read ----

#[tokio::test]
async fn the_user_key_is_read_from_the_header_both_query_parameters_and_the_body() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    let key = user_key(&ciri);
    as_user(&app, Method::GET, CURRENT, &keys.bare, &key, None)
        .await
        .assert(200, ciri.clone());
    for param in ["user_key", "userkey"] {
        app.get(&format!("{CURRENT}?{param}={key}"), Some(&keys.bare))
            .await
            .assert(200, ciri.clone());
    }
    app.patch(CURRENT, Some(&keys.bare), json!({"_user_key": key}))
        .await
        .assert(200, ciri.clone());
    // Form bodies carry it too.
    let form = app
        .request(Method::PATCH, CURRENT, Some(&keys.bare))
        .form(&[("_user_key", key.as_str())]);
    app.send(form).await.assert(200, ciri);
}

#[tokio::test]
async fn user_keys_are_case_insensitive_on_input() {
    let (app, keys) = setup().await;
    let ciri = create_user(&app, "ciri").await;
    let upper = user_key(&ciri).to_uppercase();
    as_user(&app, Method::GET, CURRENT, &keys.bare, &upper, None)
        .await
        .assert(200, ciri);
}

#[tokio::test]
async fn a_user_key_beside_an_account_key_is_ignored() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    // The owner stays the owner: every user is listed, not just the user of the key.
    as_user(
        &app,
        Method::GET,
        USERS,
        &app.admin_key,
        &user_key(&ciri),
        None,
    )
    .await
    .assert(
        200,
        json!({"objects": [geralt.clone(), ciri.clone()], "next": null, "prev": null}),
    );
    // Even an unknown user key is not looked at.
    let unknown = "0".repeat(40);
    as_user(&app, Method::GET, USERS, &app.admin_key, &unknown, None)
        .await
        .assert_status(200);
    // And it does not make the owner a current user.
    as_user(
        &app,
        Method::GET,
        CURRENT,
        &app.admin_key,
        &user_key(&ciri),
        None,
    )
    .await
    .assert(403, forbidden());
}

#[tokio::test]
async fn a_user_key_of_another_instance_is_no_such_user_key() {
    let (app, keys) = setup().await;
    app.create_instance("kaer-morhen").await;
    let vesemir = create_user_in(&app, "kaer-morhen", "vesemir").await;
    as_user(
        &app,
        Method::GET,
        CURRENT,
        &keys.bare,
        &user_key(&vesemir),
        None,
    )
    .await
    .assert(403, no_such_user_key());
    as_user(
        &app,
        Method::GET,
        USERS,
        &keys.bare,
        &user_key(&vesemir),
        None,
    )
    .await
    .assert(403, no_such_user_key());
}

#[tokio::test]
async fn an_unknown_or_malformed_user_key_is_no_such_user_key() {
    let (app, keys) = setup().await;
    create_user(&app, "geralt").await;
    for bad in ["0".repeat(40), "not-a-key".to_owned()] {
        as_user(&app, Method::GET, CURRENT, &keys.bare, &bad, None)
            .await
            .assert(403, no_such_user_key());
        // Even where the key alone would do.
        as_user(
            &app,
            Method::POST,
            LOGIN,
            &keys.bare,
            &bad,
            Some(json!({"username": "geralt", "password": PASSWORD})),
        )
        .await
        .assert(403, no_such_user_key());
    }
}

// ---- storage ----

#[tokio::test]
async fn user_passwords_are_stored_hashed() {
    let (app, keys) = setup().await;
    let first = "Distinctive-User-Password-4417";
    let second = "Replacement-User-Password-9052";
    let user = app
        .post(
            USERS,
            Some(&keys.signup),
            json!({"username": "plaintext-check-user", "password": first}),
        )
        .await
        .assert_status(201)
        .clone();
    app.patch(
        &user_path(id(&user)),
        Some(&app.admin_key),
        json!({"password": second}),
    )
    .await
    .assert_status(200);
    app.post(
        LOGIN,
        Some(&keys.bare),
        json!({"username": "plaintext-check-user", "password": second}),
    )
    .await
    .assert_status(200);
    // Everything the database holds, read while the server runs.
    let stored = app.stored_bytes().await;
    let contains = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains("plaintext-check-user"),
        "the user row was not found in the database files"
    );
    assert!(!contains(first), "a user password is stored in plain text");
    assert!(!contains(second), "a user password is stored in plain text");
}
