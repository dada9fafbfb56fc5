//! Groups and memberships, from both sides (docs/api.md §8).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::users::{
    Keys, as_user, create_user, forbidden, id, not_found, setup, user_key, user_path,
};

const GROUPS: &str = "/v1.1/instances/rivia/groups/";

fn group_path(id: i64) -> String {
    format!("{GROUPS}{id}/")
}

/// `/groups/{group}/users/`
fn members_path(group: i64) -> String {
    format!("{GROUPS}{group}/users/")
}

/// `/users/{user}/groups/`
fn groups_of_path(user: i64) -> String {
    format!("{}groups/", user_path(user))
}

/// The §8.1 representation of a group of `rivia`.
fn group_repr(id: i64, name: Value, label: &str, description: &str) -> Value {
    json!({
        "id": id, "name": name, "label": label, "description": description,
        "links": {"self": group_path(id), "users": members_path(id)},
    })
}

/// Creates a group of `rivia` through the superuser.
pub(crate) async fn create_group(app: &TestApp, body: Value) -> Value {
    app.post(GROUPS, Some(&app.admin_key), body)
        .await
        .assert_status(201)
        .clone()
}

/// Adds `user` to `group` through the superuser (group view).
pub(crate) async fn add_member(app: &TestApp, group: i64, user: i64) -> Value {
    app.post(
        &members_path(group),
        Some(&app.admin_key),
        json!({"user": user}),
    )
    .await
    .assert_status(201)
    .clone()
}

async fn read_user(app: &TestApp, user: i64) -> Value {
    app.get(&user_path(user), Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone()
}

/// Every API key of the instance, plus one with a user key, as (key, user key) pairs.
fn readers<'a>(keys: &'a Keys, user_key: &'a str) -> Vec<(&'a str, Option<&'a str>)> {
    vec![
        (keys.trusted.as_str(), None),
        (keys.signup.as_str(), None),
        (keys.group_create.as_str(), None),
        (keys.reader.as_str(), None),
        (keys.bare.as_str(), None),
        (keys.bare.as_str(), Some(user_key)),
    ]
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    user: Option<&str>,
    body: Option<Value>,
) -> crate::helpers::Resp {
    match user {
        Some(user) => as_user(app, method, path, key.expect("api key"), user, body).await,
        None => {
            let mut builder = app.request(method, path, key);
            if let Some(body) = body {
                builder = builder.json(&body);
            }
            app.send(builder).await
        }
    }
}

// ---- groups: create ----

#[tokio::test]
async fn owner_creates_a_group_with_the_exact_representation() {
    let (app, _) = setup().await;
    let resp = app
        .post(
            GROUPS,
            Some(&app.admin_key),
            json!({"name": " Witchers ", "label": "Witchers", "description": "School of the Wolf"}),
        )
        .await;
    let group = resp.assert_status(201).clone();
    assert_eq!(
        group,
        group_repr(
            id(&group),
            json!("witchers"),
            "Witchers",
            "School of the Wolf"
        )
    );
    app.get(&group_path(id(&group)), Some(&app.admin_key))
        .await
        .assert(200, group);
}

#[tokio::test]
async fn trusted_keys_and_keys_with_allow_group_create_create_groups() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let resp = app
        .post(GROUPS, Some(&keys.trusted), json!({"label": "Sorceresses"}))
        .await;
    let group = resp.assert_status(201).clone();
    assert_eq!(
        group,
        group_repr(id(&group), Value::Null, "Sorceresses", "")
    );
    let resp = app
        .post(GROUPS, Some(&keys.group_create), json!({"name": "lodge"}))
        .await;
    let group = resp.assert_status(201).clone();
    assert_eq!(group, group_repr(id(&group), json!("lodge"), "", ""));
    let resp = as_user(
        &app,
        Method::POST,
        GROUPS,
        &keys.group_create,
        &user_key(&geralt),
        Some(json!({"name": "wolves"})),
    )
    .await;
    assert_eq!(resp.assert_status(201)["name"], "wolves");
}

#[tokio::test]
async fn other_api_keys_cannot_create_groups() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let body = json!({"name": "witchers"});
    for key in [&keys.bare, &keys.reader, &keys.signup] {
        app.post(GROUPS, Some(key), body.clone())
            .await
            .assert(403, forbidden());
    }
    as_user(
        &app,
        Method::POST,
        GROUPS,
        &keys.bare,
        &user_key(&geralt),
        Some(body.clone()),
    )
    .await
    .assert(403, forbidden());
    app.post(GROUPS, None, body).await.assert(403, forbidden());
    app.get(GROUPS, Some(&app.admin_key))
        .await
        .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn a_group_needs_no_fields_and_defaults_to_a_null_name() {
    let (app, _) = setup().await;
    let resp = app.post(GROUPS, Some(&app.admin_key), json!({})).await;
    let group = resp.assert_status(201).clone();
    assert_eq!(group, group_repr(id(&group), Value::Null, "", ""));
}

#[tokio::test]
async fn group_names_are_validated_like_channel_names() {
    let (app, _) = setup().await;
    let cases = [
        ("1witchers", "Value has to start with a letter."),
        ("witchers-", "Value has to end with a letter or a number."),
        (
            "wolf school",
            "Enter a valid value consisting of letters, numbers, underscores, hyphens.",
        ),
    ];
    for (name, message) in cases {
        app.post(GROUPS, Some(&app.admin_key), json!({"name": name}))
            .await
            .assert(400, json!({"name": [message]}));
    }
    app.post(
        GROUPS,
        Some(&app.admin_key),
        json!({"name": "w".repeat(65)}),
    )
    .await
    .assert(
        400,
        json!({"name": ["Ensure this field has no more than 64 characters."]}),
    );
    let resp = app
        .post(
            GROUPS,
            Some(&app.admin_key),
            json!({"name": "School_of-the-Wolf2"}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["name"], "school_of-the-wolf2");
}

#[tokio::test]
async fn a_group_name_must_be_unique_when_set() {
    let (app, _) = setup().await;
    create_group(&app, json!({"name": "witchers"})).await;
    app.post(GROUPS, Some(&app.admin_key), json!({"name": "WITCHERS"}))
        .await
        .assert(400, json!({"name": ["This field must be unique."]}));
    // Any number of groups may have no name.
    create_group(&app, json!({"label": "a"})).await;
    create_group(&app, json!({"label": "b", "name": null})).await;
}

#[tokio::test]
async fn group_label_and_description_lengths_are_limited() {
    let (app, _) = setup().await;
    let key = Some(app.admin_key.as_str());
    app.post(GROUPS, key, json!({"label": "l".repeat(65)}))
        .await
        .assert(
            400,
            json!({"label": ["Ensure this field has no more than 64 characters."]}),
        );
    app.post(GROUPS, key, json!({"description": "d".repeat(257)}))
        .await
        .assert(
            400,
            json!({"description": ["Ensure this field has no more than 256 characters."]}),
        );
    let resp = app
        .post(
            GROUPS,
            key,
            json!({"label": "l".repeat(64), "description": "d".repeat(256)}),
        )
        .await;
    let group = resp.assert_status(201);
    assert_eq!(group["label"], "l".repeat(64));
    assert_eq!(group["description"], "d".repeat(256));
}

// ---- groups: read ----

#[tokio::test]
async fn the_owner_and_every_api_key_of_the_instance_read_groups() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let witchers = create_group(&app, json!({"name": "witchers", "label": "Witchers"})).await;
    let lodge = create_group(&app, json!({"label": "Lodge"})).await;
    let list = json!({"objects": [witchers.clone(), lodge.clone()], "next": null, "prev": null});
    app.get(GROUPS, Some(&app.admin_key))
        .await
        .assert(200, list.clone());
    let uk = user_key(&geralt);
    for (key, user) in readers(&keys, &uk) {
        send(&app, Method::GET, GROUPS, Some(key), user, None)
            .await
            .assert(200, list.clone());
        send(
            &app,
            Method::GET,
            &group_path(id(&lodge)),
            Some(key),
            user,
            None,
        )
        .await
        .assert(200, lodge.clone());
    }
}

#[tokio::test]
async fn groups_cannot_be_read_without_a_key_of_the_instance() {
    let (app, _) = setup().await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    app.get(GROUPS, None).await.assert(403, forbidden());
    app.get(&group_path(id(&group)), None)
        .await
        .assert(403, forbidden());
    app.create_instance("kaer-morhen").await;
    let foreign = app.create_api_key("kaer-morhen", json!({})).await;
    app.get(GROUPS, Some(&foreign))
        .await
        .assert(403, json!({"detail": "No such API Key."}));
}

#[tokio::test]
async fn an_unknown_group_is_not_found() {
    let (app, _) = setup().await;
    app.get(&group_path(999), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn label_startswith_filters_groups_by_a_case_sensitive_prefix() {
    let (app, keys) = setup().await;
    let witchers = create_group(&app, json!({"label": "Witchers"})).await;
    create_group(&app, json!({"label": "witch hunters"})).await;
    create_group(&app, json!({"label": "Sorceresses"})).await;
    let witcher_schools = create_group(&app, json!({"label": "Witch schools"})).await;
    let resp = app
        .get(
            &format!("{GROUPS}?label__startswith=Witch"),
            Some(&keys.bare),
        )
        .await;
    assert_eq!(
        resp.assert_status(200)["objects"],
        json!([witchers, witcher_schools])
    );
}

#[tokio::test]
async fn the_group_list_pages_with_page_size_and_next_links() {
    let (app, _) = setup().await;
    let mut groups = Vec::new();
    for label in ["a", "b", "c"] {
        groups.push(create_group(&app, json!({"label": label})).await);
    }
    let first = app
        .get(&format!("{GROUPS}?page_size=2"), Some(&app.admin_key))
        .await;
    let first = first.assert_status(200).clone();
    assert_eq!(first["objects"], json!([groups[0], groups[1]]));
    assert_eq!(first["prev"], Value::Null);
    let next = first["next"].as_str().expect("a full page links onward");
    let second = app.get(next, Some(&app.admin_key)).await;
    let second = second.assert_status(200);
    assert_eq!(second["objects"], json!([groups[2]]));
    assert_eq!(second["next"], Value::Null);
    let desc = app
        .get(&format!("{GROUPS}?ordering=desc"), Some(&app.admin_key))
        .await;
    assert_eq!(
        desc.assert_status(200)["objects"],
        json!([groups[2], groups[1], groups[0]])
    );
}

// ---- groups: update and delete ----

#[tokio::test]
async fn owner_and_trusted_key_update_groups_with_put_and_patch() {
    let (app, keys) = setup().await;
    let group = create_group(
        &app,
        json!({"name": "witchers", "label": "Witchers", "description": "Wolves"}),
    )
    .await;
    let gid = id(&group);
    app.patch(
        &group_path(gid),
        Some(&app.admin_key),
        json!({"label": "Wolf School"}),
    )
    .await
    .assert(
        200,
        group_repr(gid, json!("witchers"), "Wolf School", "Wolves"),
    );
    // PUT also changes only what is sent (§2.2); a group has no field required on PUT.
    app.put(
        &group_path(gid),
        Some(&keys.trusted),
        json!({"description": "Kaer Morhen"}),
    )
    .await
    .assert(
        200,
        group_repr(gid, json!("witchers"), "Wolf School", "Kaer Morhen"),
    );
    app.patch(
        &group_path(gid),
        Some(&keys.trusted),
        json!({"name": "Wolves"}),
    )
    .await
    .assert(
        200,
        group_repr(gid, json!("wolves"), "Wolf School", "Kaer Morhen"),
    );
    app.get(&group_path(gid), Some(&keys.bare)).await.assert(
        200,
        group_repr(gid, json!("wolves"), "Wolf School", "Kaer Morhen"),
    );
}

#[tokio::test]
async fn renaming_a_group_to_a_taken_name_is_refused() {
    let (app, _) = setup().await;
    create_group(&app, json!({"name": "witchers"})).await;
    let lodge = create_group(&app, json!({"name": "lodge"})).await;
    app.patch(
        &group_path(id(&lodge)),
        Some(&app.admin_key),
        json!({"name": "witchers"}),
    )
    .await
    .assert(400, json!({"name": ["This field must be unique."]}));
}

#[tokio::test]
async fn updating_an_unknown_group_is_not_found() {
    let (app, _) = setup().await;
    app.patch(
        &group_path(999),
        Some(&app.admin_key),
        json!({"label": "x"}),
    )
    .await
    .assert(404, not_found());
    app.delete(&group_path(999), Some(&app.admin_key))
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn other_callers_cannot_update_or_delete_groups() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let path = group_path(id(&group));
    let uk = user_key(&geralt);
    let callers = [
        (keys.group_create.as_str(), None),
        (keys.signup.as_str(), None),
        (keys.reader.as_str(), None),
        (keys.bare.as_str(), None),
        (keys.bare.as_str(), Some(uk.as_str())),
    ];
    for (key, user) in callers {
        for method in [Method::PUT, Method::PATCH] {
            send(
                &app,
                method,
                &path,
                Some(key),
                user,
                Some(json!({"label": "x"})),
            )
            .await
            .assert(403, forbidden());
        }
        send(&app, Method::DELETE, &path, Some(key), user, None)
            .await
            .assert(403, forbidden());
    }
    app.get(&path, Some(&app.admin_key))
        .await
        .assert(200, group);
}

#[tokio::test]
async fn owner_and_trusted_key_delete_groups() {
    let (app, keys) = setup().await;
    for key in [&app.admin_key, &keys.trusted] {
        let group = create_group(&app, json!({"name": "witchers"})).await;
        let path = group_path(id(&group));
        let resp = app.delete(&path, Some(key)).await;
        resp.assert_status(204);
        assert_eq!(resp.text, "");
        app.get(&path, Some(key)).await.assert(404, not_found());
    }
}

#[tokio::test]
async fn deleting_a_group_removes_its_memberships_but_not_its_users() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let uid = id(&geralt);
    let witchers = create_group(&app, json!({"name": "witchers"})).await;
    let lodge = create_group(&app, json!({"name": "lodge"})).await;
    add_member(&app, id(&witchers), uid).await;
    add_member(&app, id(&lodge), uid).await;
    app.delete(&group_path(id(&witchers)), Some(&app.admin_key))
        .await
        .assert_status(204);
    let user = read_user(&app, uid).await;
    assert_eq!(user["groups"], json!([lodge.clone()]));
    let list = app.get(&groups_of_path(uid), Some(&app.admin_key)).await;
    let objects = &list.assert_status(200)["objects"];
    assert_eq!(objects.as_array().map(Vec::len), Some(1), "{objects}");
    assert_eq!(objects[0]["group"], lodge);
    app.get(&members_path(id(&witchers)), Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Group was not found."}));
}

#[tokio::test]
async fn deleting_a_group_leaves_its_channels_without_a_group() {
    let (app, _) = setup().await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let gid = id(&group);
    let channel = app
        .create_channel(
            "rivia",
            json!({"name": "contracts", "group": gid, "group_permissions": "publish",
                   "other_permissions": "subscribe"}),
        )
        .await;
    assert_eq!(channel["group"], gid);
    assert_eq!(
        channel["links"]["group"],
        format!("/v1.1/instances/rivia/groups/{gid}/")
    );
    app.delete(&group_path(gid), Some(&app.admin_key))
        .await
        .assert_status(204);
    let path = "/v1.1/instances/rivia/channels/contracts/";
    let resp = app.get(path, Some(&app.admin_key)).await;
    let channel = resp.assert_status(200);
    assert_eq!(channel["group"], Value::Null, "{channel}");
    assert_eq!(channel["group_permissions"], "publish");
    assert_eq!(channel["other_permissions"], "subscribe");
    assert!(
        channel["links"].get("group").is_none(),
        "no group link once the group is gone: {channel}"
    );
}

#[tokio::test]
async fn deleting_a_group_clears_it_from_user_profiles() {
    let (app, _) = setup().await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let resp = app
        .post(
            "/v1.1/instances/rivia/users/",
            Some(&app.admin_key),
            json!({"username": "geralt", "password": "pw",
                   "profile": {"group": id(&group), "group_permissions": "read"}}),
        )
        .await;
    let geralt = resp.assert_status(201).clone();
    assert_eq!(geralt["profile"]["group"], id(&group));
    app.delete(&group_path(id(&group)), Some(&app.admin_key))
        .await
        .assert_status(204);
    let user = read_user(&app, id(&geralt)).await;
    assert_eq!(user["profile"]["group"], Value::Null, "{user}");
    assert_eq!(user["profile"]["group_permissions"], "read");
}

// ---- memberships: create ----

#[tokio::test]
async fn adding_a_user_to_a_group_returns_the_user_with_a_membership_link() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers", "label": "Witchers"})).await;
    let (uid, gid) = (id(&geralt), id(&group));
    let resp = app
        .post(
            &members_path(gid),
            Some(&app.admin_key),
            json!({"user": uid}),
        )
        .await;
    let mut user = geralt.clone();
    user["groups"] = json!([group.clone()]);
    resp.assert(
        201,
        json!({"user": user.clone(),
               "links": {"self": format!("/v1.1/instances/rivia/groups/{gid}/users/{uid}/")}}),
    );
    assert_eq!(read_user(&app, uid).await, user, "the user lists its group");
}

#[tokio::test]
async fn adding_a_group_to_a_user_returns_the_group_with_a_membership_link() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers", "label": "Witchers"})).await;
    let (uid, gid) = (id(&geralt), id(&group));
    let resp = app
        .post(
            &groups_of_path(uid),
            Some(&app.admin_key),
            json!({"group": gid}),
        )
        .await;
    resp.assert(
        201,
        json!({"group": group.clone(),
               "links": {"self": format!("/v1.1/instances/rivia/users/{uid}/groups/{gid}/")}}),
    );
    let mut user = geralt.clone();
    user["groups"] = json!([group]);
    assert_eq!(read_user(&app, uid).await, user);
}

#[tokio::test]
async fn a_users_representation_lists_all_its_groups_in_id_order() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let uid = id(&geralt);
    let a = create_group(&app, json!({"name": "a"})).await;
    // A group the user is not in is not listed.
    create_group(&app, json!({"name": "b"})).await;
    let c = create_group(&app, json!({"name": "c"})).await;
    add_member(&app, id(&c), uid).await;
    add_member(&app, id(&a), uid).await;
    let user = read_user(&app, uid).await;
    assert_eq!(user["groups"], json!([a.clone(), c.clone()]));
    // The same groups show wherever the user is shown.
    let me = as_user(
        &app,
        Method::GET,
        "/v1.1/instances/rivia/user/",
        &keys.bare,
        &user_key(&geralt),
        None,
    )
    .await;
    me.assert(200, user.clone());
    app.post(
        "/v1.1/instances/rivia/user/auth/",
        Some(&keys.bare),
        json!({"username": "geralt", "password": crate::users::PASSWORD}),
    )
    .await
    .assert(200, user);
}

#[tokio::test]
async fn trusted_keys_manage_memberships_from_both_sides() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let gid = id(&group);
    app.post(
        &members_path(gid),
        Some(&keys.trusted),
        json!({"user": id(&geralt)}),
    )
    .await
    .assert_status(201);
    app.post(
        &groups_of_path(id(&ciri)),
        Some(&keys.trusted),
        json!({"group": gid}),
    )
    .await
    .assert_status(201);
    let list = app.get(&members_path(gid), Some(&keys.trusted)).await;
    let ids: Vec<Value> = list.assert_status(200)["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|m| m["user"]["id"].clone())
        .collect();
    assert_eq!(ids, vec![geralt["id"].clone(), ciri["id"].clone()]);
    let item = format!("{}{}/", groups_of_path(id(&ciri)), gid);
    app.get(&item, Some(&keys.trusted)).await.assert_status(200);
    app.delete(&item, Some(&keys.trusted))
        .await
        .assert_status(204);
    let item = format!("{}{}/", members_path(gid), id(&geralt));
    app.delete(&item, Some(&keys.trusted))
        .await
        .assert_status(204);
    app.get(&members_path(gid), Some(&keys.trusted))
        .await
        .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

// ---- memberships: read ----

#[tokio::test]
async fn memberships_are_listed_and_read_from_both_sides() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    let witchers = create_group(&app, json!({"name": "witchers"})).await;
    let lodge = create_group(&app, json!({"name": "lodge"})).await;
    let (g, c) = (id(&geralt), id(&ciri));
    let (w, l) = (id(&witchers), id(&lodge));
    add_member(&app, w, g).await;
    add_member(&app, w, c).await;
    add_member(&app, l, c).await;
    let key = Some(app.admin_key.as_str());
    let geralt = read_user(&app, g).await;
    let ciri = read_user(&app, c).await;
    let member = |user: &Value, group: i64| {
        json!({"user": user, "links": {"self": format!(
            "/v1.1/instances/rivia/groups/{group}/users/{}/", id(user))}})
    };
    let belongs = |group: &Value, user: i64| {
        json!({"group": group, "links": {"self": format!(
            "/v1.1/instances/rivia/users/{user}/groups/{}/", id(group))}})
    };
    app.get(&members_path(w), key).await.assert(
        200,
        json!({"objects": [member(&geralt, w), member(&ciri, w)], "next": null, "prev": null}),
    );
    app.get(&groups_of_path(c), key).await.assert(
        200,
        json!({"objects": [belongs(&witchers, c), belongs(&lodge, c)], "next": null, "prev": null}),
    );
    app.get(&format!("{}{c}/", members_path(l)), key)
        .await
        .assert(200, member(&ciri, l));
    app.get(&format!("{}{w}/", groups_of_path(g)), key)
        .await
        .assert(200, belongs(&witchers, g));
}

#[tokio::test]
async fn membership_lists_page_with_page_size() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let uid = id(&geralt);
    let mut groups = Vec::new();
    for name in ["a", "b", "c"] {
        let group = create_group(&app, json!({"name": name})).await;
        add_member(&app, id(&group), uid).await;
        groups.push(group);
    }
    let first = app
        .get(
            &format!("{}?page_size=2", groups_of_path(uid)),
            Some(&app.admin_key),
        )
        .await;
    let first = first.assert_status(200).clone();
    let ids: Vec<Value> = first["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|m| m["group"]["id"].clone())
        .collect();
    assert_eq!(ids, vec![groups[0]["id"].clone(), groups[1]["id"].clone()]);
    let next = first["next"].as_str().expect("a next link");
    let second = app.get(next, Some(&app.admin_key)).await;
    let second = second.assert_status(200);
    assert_eq!(second["objects"].as_array().map(Vec::len), Some(1));
    assert_eq!(second["objects"][0]["group"], groups[2]);
    assert_eq!(second["next"], Value::Null);
}

// ---- memberships: delete ----

#[tokio::test]
async fn deleting_a_membership_removes_only_the_membership() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let (witchers, lodge) = (
        create_group(&app, json!({"name": "witchers"})).await,
        create_group(&app, json!({"name": "lodge"})).await,
    );
    let uid = id(&geralt);
    add_member(&app, id(&witchers), uid).await;
    add_member(&app, id(&lodge), uid).await;
    let key = Some(app.admin_key.as_str());
    let resp = app
        .delete(&format!("{}{}/", groups_of_path(uid), id(&witchers)), key)
        .await;
    resp.assert_status(204);
    assert_eq!(resp.text, "");
    let mut expected = geralt.clone();
    expected["groups"] = json!([lodge.clone()]);
    assert_eq!(read_user(&app, uid).await, expected);
    app.get(&group_path(id(&witchers)), key)
        .await
        .assert(200, witchers.clone());
    app.delete(&format!("{}{uid}/", members_path(id(&lodge))), key)
        .await
        .assert_status(204);
    assert_eq!(read_user(&app, uid).await, geralt);
    app.get(&group_path(id(&lodge)), key)
        .await
        .assert(200, lodge);
}

// ---- memberships: errors ----

#[tokio::test]
async fn a_missing_parent_user_or_group_is_reported_by_kind() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let key = Some(app.admin_key.as_str());
    let no_group = json!({"detail": "Group was not found."});
    let no_user = json!({"detail": "User was not found."});
    app.get(&members_path(999), key)
        .await
        .assert(404, no_group.clone());
    app.post(&members_path(999), key, json!({"user": id(&geralt)}))
        .await
        .assert(404, no_group.clone());
    app.get(&format!("{}{}/", members_path(999), id(&geralt)), key)
        .await
        .assert(404, no_group.clone());
    app.delete(&format!("{}{}/", members_path(999), id(&geralt)), key)
        .await
        .assert(404, no_group);
    app.get(&groups_of_path(999), key)
        .await
        .assert(404, no_user.clone());
    app.post(&groups_of_path(999), key, json!({"group": id(&group)}))
        .await
        .assert(404, no_user.clone());
    app.get(&format!("{}{}/", groups_of_path(999), id(&group)), key)
        .await
        .assert(404, no_user.clone());
    app.delete(&format!("{}{}/", groups_of_path(999), id(&group)), key)
        .await
        .assert(404, no_user);
}

#[tokio::test]
async fn an_unknown_membership_target_is_an_invalid_pk() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let key = Some(app.admin_key.as_str());
    app.post(&groups_of_path(id(&geralt)), key, json!({"group": 9}))
        .await
        .assert(
            400,
            json!({"group": ["Invalid pk \"9\" - object does not exist."]}),
        );
    app.post(&members_path(id(&group)), key, json!({"user": 9}))
        .await
        .assert(
            400,
            json!({"user": ["Invalid pk \"9\" - object does not exist."]}),
        );
}

#[tokio::test]
async fn a_user_or_group_of_another_instance_is_an_invalid_pk() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    app.create_instance("kaer-morhen").await;
    let vesemir = crate::users::create_user_in(&app, "kaer-morhen", "vesemir").await;
    let wolves = app
        .post(
            "/v1.1/instances/kaer-morhen/groups/",
            Some(&app.admin_key),
            json!({"name": "wolves"}),
        )
        .await
        .assert_status(201)
        .clone();
    let key = Some(app.admin_key.as_str());
    let vid = id(&vesemir);
    let wid = id(&wolves);
    app.post(&members_path(id(&group)), key, json!({"user": vid}))
        .await
        .assert(
            400,
            json!({"user": [format!("Invalid pk \"{vid}\" - object does not exist.")]}),
        );
    app.post(&groups_of_path(id(&geralt)), key, json!({"group": wid}))
        .await
        .assert(
            400,
            json!({"group": [format!("Invalid pk \"{wid}\" - object does not exist.")]}),
        );
}

#[tokio::test]
async fn a_membership_create_without_its_target_is_refused() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let key = Some(app.admin_key.as_str());
    app.post(&groups_of_path(id(&geralt)), key, json!({}))
        .await
        .assert(400, json!({"group": ["This field is required."]}));
    app.post(&members_path(id(&group)), key, json!({}))
        .await
        .assert(400, json!({"user": ["This field is required."]}));
    app.post(&members_path(id(&group)), key, json!({"user": "abc"}))
        .await
        .assert(
            400,
            json!({"user": ["Incorrect type. Expected pk value, received str."]}),
        );
}

#[tokio::test]
async fn adding_an_existing_membership_again_is_refused_from_either_side() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let (uid, gid) = (id(&geralt), id(&group));
    add_member(&app, gid, uid).await;
    let duplicate = json!({"detail": "User is already a part of that group."});
    let key = Some(app.admin_key.as_str());
    app.post(&members_path(gid), key, json!({"user": uid}))
        .await
        .assert(400, duplicate.clone());
    app.post(&groups_of_path(uid), key, json!({"group": gid}))
        .await
        .assert(400, duplicate);
    assert_eq!(
        read_user(&app, uid).await["groups"],
        json!([group]),
        "still exactly one membership"
    );
}

#[tokio::test]
async fn a_user_can_be_in_at_most_32_groups() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let uid = id(&geralt);
    let mut groups = Vec::new();
    for i in 0..34 {
        groups.push(create_group(&app, json!({"name": format!("g{i}")})).await);
    }
    for group in &groups[..32] {
        app.post(
            &groups_of_path(uid),
            Some(&app.admin_key),
            json!({"group": id(group)}),
        )
        .await
        .assert_status(201);
    }
    let exceeded = json!({"detail": "User's group count exceeded (32)."});
    app.post(
        &groups_of_path(uid),
        Some(&app.admin_key),
        json!({"group": id(&groups[32])}),
    )
    .await
    .assert(400, exceeded.clone());
    app.post(
        &members_path(id(&groups[33])),
        Some(&app.admin_key),
        json!({"user": uid}),
    )
    .await
    .assert(400, exceeded);
    let user = read_user(&app, uid).await;
    assert_eq!(user["groups"].as_array().map(Vec::len), Some(32));
    // Leaving one group makes room again.
    app.delete(
        &format!("{}{}/", groups_of_path(uid), id(&groups[0])),
        Some(&app.admin_key),
    )
    .await
    .assert_status(204);
    app.post(
        &groups_of_path(uid),
        Some(&app.admin_key),
        json!({"group": id(&groups[32])}),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn a_missing_membership_is_not_found() {
    let (app, _) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let (uid, gid) = (id(&geralt), id(&group));
    let key = Some(app.admin_key.as_str());
    for path in [
        format!("{}{gid}/", groups_of_path(uid)),
        format!("{}{uid}/", members_path(gid)),
        format!("{}999/", groups_of_path(uid)),
        format!("{}999/", members_path(gid)),
    ] {
        app.get(&path, key).await.assert(404, not_found());
        app.delete(&path, key).await.assert(404, not_found());
    }
}

// ---- memberships: permissions ----

#[tokio::test]
async fn a_user_lists_and_reads_their_own_memberships() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    let (g, c, gid) = (id(&geralt), id(&ciri), id(&group));
    add_member(&app, gid, g).await;
    add_member(&app, gid, c).await;
    let key = user_key(&ciri);
    let ciri = read_user(&app, c).await;
    let belongs = json!({"group": group.clone(), "links": {"self": format!(
        "/v1.1/instances/rivia/users/{c}/groups/{gid}/")}});
    as_user(
        &app,
        Method::GET,
        &groups_of_path(c),
        &keys.bare,
        &key,
        None,
    )
    .await
    .assert(
        200,
        json!({"objects": [belongs.clone()], "next": null, "prev": null}),
    );
    as_user(
        &app,
        Method::GET,
        &format!("{}{gid}/", groups_of_path(c)),
        &keys.bare,
        &key,
        None,
    )
    .await
    .assert(200, belongs);
    // The group's member list shows them only their own membership.
    let member = json!({"user": ciri, "links": {"self": format!(
        "/v1.1/instances/rivia/groups/{gid}/users/{c}/")}});
    as_user(
        &app,
        Method::GET,
        &members_path(gid),
        &keys.bare,
        &key,
        None,
    )
    .await
    .assert(
        200,
        json!({"objects": [member.clone()], "next": null, "prev": null}),
    );
    as_user(
        &app,
        Method::GET,
        &format!("{}{c}/", members_path(gid)),
        &keys.bare,
        &key,
        None,
    )
    .await
    .assert(200, member);
}

#[tokio::test]
async fn a_user_sees_an_empty_member_list_of_a_group_they_are_not_in() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    add_member(&app, id(&group), id(&geralt)).await;
    as_user(
        &app,
        Method::GET,
        &members_path(id(&group)),
        &keys.bare,
        &user_key(&ciri),
        None,
    )
    .await
    .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn a_user_cannot_list_another_users_groups() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let ciri = create_user(&app, "ciri").await;
    let group = create_group(&app, json!({"name": "witchers"})).await;
    add_member(&app, id(&group), id(&geralt)).await;
    let key = user_key(&ciri);
    as_user(
        &app,
        Method::GET,
        &groups_of_path(id(&geralt)),
        &keys.bare,
        &key,
        None,
    )
    .await
    .assert(403, forbidden());
    as_user(
        &app,
        Method::GET,
        &format!("{}{}/", groups_of_path(id(&geralt)), id(&group)),
        &keys.bare,
        &key,
        None,
    )
    .await
    .assert(403, forbidden());
}

#[tokio::test]
async fn users_cannot_create_or_delete_memberships_even_their_own() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let witchers = create_group(&app, json!({"name": "witchers"})).await;
    let lodge = create_group(&app, json!({"name": "lodge"})).await;
    let (uid, w, l) = (id(&geralt), id(&witchers), id(&lodge));
    add_member(&app, w, uid).await;
    let key = user_key(&geralt);
    as_user(
        &app,
        Method::POST,
        &groups_of_path(uid),
        &keys.bare,
        &key,
        Some(json!({"group": l})),
    )
    .await
    .assert(403, forbidden());
    as_user(
        &app,
        Method::POST,
        &members_path(l),
        &keys.bare,
        &key,
        Some(json!({"user": uid})),
    )
    .await
    .assert(403, forbidden());
    for path in [
        format!("{}{w}/", groups_of_path(uid)),
        format!("{}{uid}/", members_path(w)),
    ] {
        as_user(&app, Method::DELETE, &path, &keys.bare, &key, None)
            .await
            .assert(403, forbidden());
    }
    assert_eq!(read_user(&app, uid).await["groups"], json!([witchers]));
}

#[tokio::test]
async fn anonymous_readers_and_bare_keys_cannot_touch_memberships() {
    let (app, keys) = setup().await;
    let geralt = create_user(&app, "geralt").await;
    let witchers = create_group(&app, json!({"name": "witchers"})).await;
    let lodge = create_group(&app, json!({"name": "lodge"})).await;
    let (uid, w, l) = (id(&geralt), id(&witchers), id(&lodge));
    add_member(&app, w, uid).await;
    for key in [&keys.reader, &keys.bare, &keys.group_create, &keys.signup] {
        let key = Some(key.as_str());
        for path in [groups_of_path(uid), members_path(w)] {
            app.get(&path, key).await.assert(403, forbidden());
        }
        for path in [
            format!("{}{w}/", groups_of_path(uid)),
            format!("{}{uid}/", members_path(w)),
        ] {
            app.get(&path, key).await.assert(403, forbidden());
            app.delete(&path, key).await.assert(403, forbidden());
        }
        app.post(&groups_of_path(uid), key, json!({"group": l}))
            .await
            .assert(403, forbidden());
        app.post(&members_path(l), key, json!({"user": uid}))
            .await
            .assert(403, forbidden());
    }
    app.get(&members_path(w), None)
        .await
        .assert(403, forbidden());
    assert_eq!(read_user(&app, uid).await["groups"], json!([witchers]));
}
