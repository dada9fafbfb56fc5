//! Classes (docs/api.md §10.1, §10.2, §10.5 definition keys, §10.9): the resource, its schema, who
//! may manage and see it, lists, the class limit and the built-in `user_profile`.

use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};
use crate::objects::{
    CLASSES, Who, World, class_path, forbidden, ids, merge, not_found, object_path, objects_path,
    url, without_timestamps,
};

/// The docs/api.md §10.1 representation (without timestamps) of a new class of `rivia` with only a
/// name, then `overrides`.
fn class_repr(name: &str, overrides: Value) -> Value {
    let base = class_path(name);
    let mut class = json!({
        "name": name, "description": "", "status": "ready", "revision": 1,
        "objects_count": 0, "group": null, "group_permissions": "create_objects",
        "other_permissions": "create_objects", "metadata": {}, "schema": [],
        "links": {"self": base, "objects": format!("{base}objects/")},
    });
    merge(&mut class, overrides);
    class
}

#[track_caller]
fn assert_class(resp: &Resp, status: u16, expected: Value) {
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

async fn listed_names(w: &World, who: &Who, path: &str) -> Vec<String> {
    names(w.get(path, who).await.assert_status(200))
}

/// The body of a schema error about field definition `#index` named `name`.
fn field_error(name: &str, index: usize, reason: &str) -> Value {
    json!({"schema": [format!("Error processing field definition \"{name}\" #{index}: {reason}")]})
}

/// Creating class `c` with `schema` is refused with `expected`.
async fn schema_refused(w: &World, schema: Value, expected: Value) {
    w.post(CLASSES, &w.owner, json!({"name": "c", "schema": schema}))
        .await
        .assert(400, expected);
}

/// Creating class `c` with `schema` succeeds; returns the stored schema.
async fn schema_stored(w: &World, schema: Value) -> Value {
    let resp = w
        .post(CLASSES, &w.owner, json!({"name": "c", "schema": schema}))
        .await;
    let stored = resp.assert_status(201)["schema"].clone();
    w.delete(&class_path("c"), &w.owner)
        .await
        .assert_status(204);
    stored
}

async fn rivia_with_a_user(app: &TestApp) -> String {
    app.create_instance("rivia").await;
    let key = app.create_api_key("rivia", json!({})).await;
    app.post(
        "/v1.1/instances/rivia/users/",
        Some(&app.admin_key),
        json!({"username": "geralt", "password": "roach"}),
    )
    .await
    .assert_status(201);
    key
}

// ================================================================ user_profile

#[tokio::test]
async fn every_instance_has_the_user_profile_class() {
    let app = TestApp::spawn().await;
    let bare_key = rivia_with_a_user(&app).await;
    for key in [&app.admin_key, &bare_key] {
        let resp = app
            .get("/v1.1/instances/rivia/classes/user_profile/", Some(key))
            .await;
        let class = resp.assert_status(200);
        assert_eq!(class["name"], "user_profile");
        assert_eq!(class["status"], "ready");
        assert_eq!(class["schema"], json!([]));
        assert_eq!(class["objects_count"], 1);
        assert_eq!(
            class["links"],
            json!({"self": "/v1.1/instances/rivia/classes/user_profile/",
                   "objects": "/v1.1/instances/rivia/classes/user_profile/objects/"})
        );
        let list = app.get("/v1.1/instances/rivia/classes/", Some(key)).await;
        let names: Vec<_> = list.assert_status(200)["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, [json!("user_profile")]);
    }
}

#[tokio::test]
async fn user_profile_is_readable_by_others_and_holds_one_profile_per_user() {
    let w = World::new().await;
    // Herald's choice for the built-in's description and permissions: others may read.
    assert_class(
        &w.get(&class_path("user_profile"), &w.owner).await,
        200,
        class_repr(
            "user_profile",
            json!({"description": "Class that holds profiles for users.",
                   "group_permissions": "none", "other_permissions": "read"}),
        ),
    );
    w.user("geralt").await;
    w.user("ciri").await;
    let resp = w.get(&class_path("user_profile"), &w.reader).await;
    assert_eq!(resp.assert_status(200)["objects_count"], 2);
}

#[tokio::test]
async fn user_profile_cannot_be_deleted_but_its_schema_can_change() {
    let w = World::new().await;
    let geralt = w.user("geralt").await;
    w.delete(&class_path("user_profile"), &w.owner)
        .await
        .assert(403, forbidden());
    let resp = w
        .patch(
            &class_path("user_profile"),
            &w.owner,
            json!({"schema": [{"name": "nickname", "type": "string", "filter_index": true}],
                   "description": "Profiles"}),
        )
        .await;
    assert_class(
        &resp,
        200,
        class_repr(
            "user_profile",
            json!({"description": "Profiles", "group_permissions": "none",
                   "other_permissions": "read", "revision": 2, "objects_count": 1,
                   "schema": [{"name": "nickname", "type": "string", "filter_index": true}]}),
        ),
    );
    let profile = w
        .get(&object_path("user_profile", geralt.profile()), &geralt)
        .await;
    assert_eq!(profile.assert_status(200)["nickname"], Value::Null);
    w.get(&class_path("user_profile"), &w.owner)
        .await
        .assert(200, resp.json.clone());
}

// ================================================================ create

#[tokio::test]
async fn the_owner_creates_a_class_with_only_a_name_and_gets_the_defaults() {
    let w = World::new().await;
    let resp = w
        .post(CLASSES, &w.owner, json!({"name": "contracts"}))
        .await;
    assert_class(&resp, 201, class_repr("contracts", json!({})));
    assert_eq!(resp.json["created_at"], resp.json["updated_at"]);
    w.get(&class_path("contracts"), &w.owner)
        .await
        .assert(200, resp.json.clone());
}

#[tokio::test]
async fn a_class_created_with_every_writable_field_echoes_them() {
    let w = World::new().await;
    let witchers = w.group("witchers").await;
    let schema = json!([
        {"name": "title", "type": "string", "filter_index": true},
        {"name": "reward", "type": "integer", "order_index": true, "filter_index": true},
        {"name": "notes", "type": "text"},
        {"name": "parent", "type": "reference", "target": "self"}
    ]);
    let resp = w
        .post(
            CLASSES,
            &w.owner,
            json!({"name": "contracts", "description": "Monster contracts",
                   "schema": schema, "group": witchers, "group_permissions": "read",
                   "other_permissions": "none", "metadata": {"color": "red"},
                   "objects_count": 41, "status": "broken", "revision": 7}),
        )
        .await;
    // Herald's choice: a class's links are always `self` and `objects`, group or not.
    assert_class(
        &resp,
        201,
        class_repr(
            "contracts",
            json!({"description": "Monster contracts", "schema": schema, "group": witchers,
                   "group_permissions": "read", "other_permissions": "none",
                   "metadata": {"color": "red"}}),
        ),
    );
}

#[tokio::test]
async fn api_keys_and_users_may_not_create_change_or_delete_classes() {
    let w = World::new().await;
    let geralt = w.user("geralt").await;
    w.class(json!({"name": "contracts"})).await;
    let before = w
        .get(&class_path("contracts"), &w.owner)
        .await
        .assert_status(200)
        .clone();
    for who in [&w.trusted, &w.reader, &w.bare, &geralt] {
        w.post(CLASSES, who, json!({"name": "monsters"}))
            .await
            .assert(403, forbidden());
        w.patch(&class_path("contracts"), who, json!({"description": "x"}))
            .await
            .assert(403, forbidden());
        w.put(&class_path("contracts"), who, json!({"description": "x"}))
            .await
            .assert(403, forbidden());
        w.delete(&class_path("contracts"), who)
            .await
            .assert(403, forbidden());
        w.delete(&class_path("user_profile"), who)
            .await
            .assert(403, forbidden());
    }
    w.get(&class_path("contracts"), &w.owner)
        .await
        .assert(200, before);
    w.get(&class_path("monsters"), &w.owner)
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn class_names_are_validated() {
    let w = World::new().await;
    let charset = "Enter a valid value consisting of letters, numbers, underscores.";
    let reserved = "Unable to use that value. Please choose a different one.";
    for (name, message) in [
        (json!(""), "This field may not be blank."),
        (json!("   "), "This field may not be blank."),
        (json!("1contracts"), "Value has to start with a letter."),
        (json!("_contracts"), "Value has to start with a letter."),
        (
            json!("contracts_"),
            "Value has to end with a letter or a number.",
        ),
        (json!("con-tracts"), charset),
        (json!("con tracts"), charset),
        (json!("contracts!"), charset),
        (json!("kontrakté"), charset),
        (json!("self"), reserved),
        (json!("user"), reserved),
        (json!("users"), reserved),
        (json!("acl"), reserved),
        (json!("USERS"), reserved),
        (
            json!("c".repeat(65)),
            "Ensure this field has no more than 64 characters.",
        ),
        (json!(null), "This field may not be null."),
    ] {
        w.post(CLASSES, &w.owner, json!({"name": name}))
            .await
            .assert(400, json!({"name": [message]}));
    }
    w.post(CLASSES, &w.owner, json!({"description": "x"}))
        .await
        .assert(400, json!({"name": ["This field is required."]}));
    for name in ["c", "c1", "a_b_9", &"c".repeat(64)] {
        let resp = w.post(CLASSES, &w.owner, json!({"name": name})).await;
        assert_eq!(resp.assert_status(201)["name"], name);
    }
    assert_eq!(
        listed_names(&w, &w.owner, CLASSES).await,
        ["user_profile", "c", "c1", "a_b_9", &"c".repeat(64)]
    );
}

#[tokio::test]
async fn class_names_are_trimmed_and_lower_cased() {
    let w = World::new().await;
    let resp = w
        .post(CLASSES, &w.owner, json!({"name": "  Monster_Contracts "}))
        .await;
    assert_class(&resp, 201, class_repr("monster_contracts", json!({})));
    w.get("/v1.1/instances/rivia/classes/MONSTER_contracts", &w.owner)
        .await
        .assert(200, resp.json.clone());
}

#[tokio::test]
async fn a_duplicate_class_name_is_refused() {
    let w = World::new().await;
    w.class(json!({"name": "contracts"})).await;
    for name in ["contracts", "Contracts ", "user_profile"] {
        w.post(CLASSES, &w.owner, json!({"name": name}))
            .await
            .assert(400, json!({"name": ["This field must be unique."]}));
    }
    assert_eq!(
        listed_names(&w, &w.owner, CLASSES).await,
        ["user_profile", "contracts"]
    );
}

#[tokio::test]
async fn a_classes_name_is_read_only_after_create() {
    let w = World::new().await;
    w.class(json!({"name": "contracts"})).await;
    let resp = w
        .patch(
            &class_path("contracts"),
            &w.owner,
            json!({"name": "monsters"}),
        )
        .await;
    assert_class(&resp, 200, class_repr("contracts", json!({})));
    w.get(&class_path("monsters"), &w.owner)
        .await
        .assert(404, not_found());
}

// ================================================================ schema

#[tokio::test]
async fn reserved_field_names_are_refused_whatever_their_case() {
    let w = World::new().await;
    for name in [
        "id",
        "created_at",
        "updated_at",
        "revision",
        "owner",
        "owner_permissions",
        "group",
        "group_permissions",
        "other_permissions",
        "channel",
        "channel_room",
        "expected_revision",
        "links",
        "self",
        "ID",
        "Created_At",
        "SELF",
    ] {
        schema_refused(
            &w,
            json!([{"name": "ok", "type": "string"}, {"name": name, "type": "string"}]),
            field_error(name, 1, &format!("Field name \"{name}\" is reserved.")),
        )
        .await;
    }
    // Names that only contain a reserved word are fine.
    let schema = json!([{"name": "owner_id", "type": "integer"}, {"name": "ids", "type": "text"}]);
    assert_eq!(schema_stored(&w, schema.clone()).await, schema);
}

#[tokio::test]
async fn a_field_defined_twice_is_refused() {
    let w = World::new().await;
    schema_refused(
        &w,
        json!([
            {"name": "title", "type": "string"},
            {"name": "reward", "type": "integer"},
            {"name": "title", "type": "text"}
        ]),
        field_error("title", 2, "Field \"title\" defined more than once."),
    )
    .await;
}

#[tokio::test]
async fn field_names_with_wrong_characters_are_refused() {
    let w = World::new().await;
    for name in [
        "1st",
        "_hidden",
        "my-field",
        "my field",
        "zażółć",
        "",
        "a.b",
    ] {
        schema_refused(
            &w,
            json!([{"name": name, "type": "string"}]),
            field_error(
                name,
                0,
                &format!(
                    "Wrong characters used in field name \"{name}\". Allowed characters are: \
                     letters, numbers and underscores. Name has to start with a letter."
                ),
            ),
        )
        .await;
    }
    // Case is kept.
    let schema = json!([{"name": "Title_2", "type": "string"}, {"name": "x", "type": "text"}]);
    assert_eq!(schema_stored(&w, schema.clone()).await, schema);
}

#[tokio::test]
async fn field_names_over_64_characters_are_refused() {
    let w = World::new().await;
    let long = "f".repeat(65);
    schema_refused(
        &w,
        json!([{"name": long, "type": "string"}]),
        field_error(
            &long,
            0,
            "Value of field name is too long, maximum length is 64.",
        ),
    )
    .await;
    let schema = json!([{"name": "f".repeat(64), "type": "string"}]);
    assert_eq!(schema_stored(&w, schema.clone()).await, schema);
}

#[tokio::test]
async fn an_unknown_field_type_is_refused_with_every_possible_type() {
    let w = World::new().await;
    for kind in ["strin", "int", "", "list"] {
        schema_refused(
            &w,
            json!([{"name": "x", "type": kind}]),
            field_error(
                "x",
                0,
                "Invalid field type value. Possible types: string, text, integer, float, \
                 boolean, datetime, file, reference, object, array, geopoint, relation.",
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn field_name_and_type_are_required_and_must_be_strings() {
    let w = World::new().await;
    let required = "Field name and type is required.";
    schema_refused(&w, json!([{"name": "x"}]), field_error("x", 0, required)).await;
    schema_refused(
        &w,
        json!([{"name": "ok", "type": "text"}, {"name": "x", "type": null}]),
        field_error("x", 1, required),
    )
    .await;
    // Herald's choice: a definition without a usable name is reported with an empty name or
    // the name's JSON.
    schema_refused(
        &w,
        json!([{"type": "string"}]),
        field_error("", 0, required),
    )
    .await;
    schema_refused(
        &w,
        json!([{"name": 5, "type": "string"}]),
        field_error("5", 0, "Invalid type of field name. Expected string."),
    )
    .await;
    schema_refused(
        &w,
        json!([{"name": "x", "type": 5}]),
        field_error("x", 0, "Invalid type of field type. Expected string."),
    )
    .await;
}

#[tokio::test]
async fn definition_keys_the_type_does_not_allow_are_refused() {
    let w = World::new().await;
    for (definition, kind, keys) in [
        (
            json!({"type": "string", "target": "self"}),
            "string",
            "name, type, order_index, filter_index",
        ),
        (
            json!({"type": "integer", "unique": true}),
            "integer",
            "name, type, order_index, filter_index",
        ),
        (
            json!({"type": "float", "target": "self"}),
            "float",
            "name, type, order_index, filter_index",
        ),
        (
            json!({"type": "boolean", "description": "x"}),
            "boolean",
            "name, type, order_index, filter_index",
        ),
        (
            json!({"type": "datetime", "unique": true}),
            "datetime",
            "name, type, order_index, filter_index",
        ),
        (
            json!({"type": "reference", "target": "self", "unique": true}),
            "reference",
            "name, type, target, order_index, filter_index",
        ),
        (
            json!({"type": "relation", "target": "self", "order_index": true}),
            "relation",
            "name, type, target, filter_index",
        ),
        (
            json!({"type": "array", "order_index": true}),
            "array",
            "name, type, filter_index",
        ),
        (
            json!({"type": "geopoint", "order_index": true}),
            "geopoint",
            "name, type, filter_index",
        ),
        (
            json!({"type": "text", "filter_index": true}),
            "text",
            "name, type",
        ),
        (
            json!({"type": "object", "order_index": true}),
            "object",
            "name, type",
        ),
        (
            json!({"type": "file", "filter_index": true}),
            "file",
            "name, type",
        ),
        (
            json!({"type": "text", "target": "self"}),
            "text",
            "name, type",
        ),
    ] {
        let mut definition = definition;
        definition["name"] = json!("f");
        schema_refused(
            &w,
            json!([definition]),
            field_error(
                "f",
                0,
                &format!("Field {kind} definition can only consist of {keys}."),
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn an_index_key_set_to_false_is_accepted_and_dropped() {
    let w = World::new().await;
    let stored = schema_stored(
        &w,
        json!([
            {"name": "notes", "type": "text", "filter_index": false, "order_index": false},
            {"name": "title", "type": "string", "filter_index": true, "order_index": false},
            {"name": "tags", "type": "array", "order_index": false},
            {"name": "sketch", "type": "file", "filter_index": false}
        ]),
    )
    .await;
    assert_eq!(
        stored,
        json!([
            {"name": "notes", "type": "text"},
            {"name": "title", "type": "string", "filter_index": true},
            {"name": "tags", "type": "array"},
            {"name": "sketch", "type": "file"}
        ])
    );
}

#[tokio::test]
async fn a_non_boolean_index_value_is_refused() {
    let w = World::new().await;
    for (key, label, value) in [
        ("order_index", "order index", json!("yes")),
        ("order_index", "order index", json!(1)),
        ("filter_index", "filter index", json!("true")),
        ("filter_index", "filter index", json!([true])),
    ] {
        schema_refused(
            &w,
            json!([{"name": "x", "type": "integer", key: value}]),
            field_error(
                "x",
                0,
                &format!("Invalid type of field \"{label}\". Expected boolean."),
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn reference_and_relation_targets_are_validated() {
    let w = World::new().await;
    w.class(json!({"name": "monsters"})).await;
    for kind in ["reference", "relation"] {
        for (target, reason) in [
            (None, "Target must specify class name or \"self\"."),
            (
                Some(json!(null)),
                "Target must specify class name or \"self\".",
            ),
            (
                Some(json!("")),
                "Invalid value of target. Expected non-empty string.",
            ),
            (
                Some(json!(5)),
                "Invalid value of target. Expected non-empty string.",
            ),
            (
                Some(json!("users")),
                "Target cannot be set to \"users\". Use \"user\" instead.",
            ),
            (
                Some(json!("Users")),
                "Target cannot be set to \"users\". Use \"user\" instead.",
            ),
            (
                Some(json!("dragons")),
                "Class specified by target is missing.",
            ),
        ] {
            let mut definition = json!({"name": "r", "type": kind});
            if let Some(target) = target {
                definition["target"] = target;
            }
            schema_refused(&w, json!([definition]), field_error("r", 0, reason)).await;
        }
        for target in ["self", "user", "monsters", "user_profile"] {
            let schema = json!([{"name": "r", "type": kind, "target": target}]);
            assert_eq!(schema_stored(&w, schema.clone()).await, schema);
        }
    }
}

#[tokio::test]
async fn types_and_targets_are_case_insensitive_and_stored_lower_case() {
    let w = World::new().await;
    w.class(json!({"name": "monsters"})).await;
    let stored = schema_stored(
        &w,
        json!([
            {"name": "Title", "type": "STRING", "filter_index": true},
            {"name": "m", "type": "Reference", "target": "Monsters"},
            {"name": "s", "type": "reference", "target": "SELF"},
            {"name": "u", "type": "Relation", "target": "User"}
        ]),
    )
    .await;
    assert_eq!(
        stored,
        json!([
            {"name": "Title", "type": "string", "filter_index": true},
            {"name": "m", "type": "reference", "target": "monsters"},
            {"name": "s", "type": "reference", "target": "self"},
            {"name": "u", "type": "relation", "target": "user"}
        ])
    );
}

#[tokio::test]
async fn a_schema_has_at_most_16_indexes_each_index_key_counting_one() {
    let w = World::new().await;
    let both = |i: usize| {
        json!({"name": format!("f{i}"), "type": "integer", "order_index": true,
               "filter_index": true})
    };
    let sixteen: Vec<Value> = (0..8).map(both).collect();
    assert_eq!(
        schema_stored(&w, Value::Array(sixteen.clone())).await,
        Value::Array(sixteen.clone())
    );
    let mut seventeen = sixteen.clone();
    seventeen.push(json!({"name": "f8", "type": "string", "filter_index": true}));
    schema_refused(
        &w,
        Value::Array(seventeen),
        field_error("f8", 8, "Too many indexes defined (exceeds 16)."),
    )
    .await;
    let mut with_text = sixteen;
    with_text.insert(3, json!({"name": "notes", "type": "text"}));
    with_text.push(json!({"name": "last", "type": "boolean", "order_index": true}));
    schema_refused(
        &w,
        Value::Array(with_text),
        field_error("last", 9, "Too many indexes defined (exceeds 16)."),
    )
    .await;
}

#[tokio::test]
async fn at_most_one_geopoint_field_has_a_filter_index() {
    let w = World::new().await;
    schema_refused(
        &w,
        json!([
            {"name": "a", "type": "geopoint", "filter_index": true},
            {"name": "t", "type": "text"},
            {"name": "b", "type": "geopoint", "filter_index": true}
        ]),
        field_error(
            "b",
            2,
            "Too many indexes defined on field type geopoint (exceeds 1).",
        ),
    )
    .await;
    let schema = json!([
        {"name": "a", "type": "geopoint", "filter_index": true},
        {"name": "b", "type": "geopoint"}
    ]);
    assert_eq!(schema_stored(&w, schema.clone()).await, schema);
}

#[tokio::test]
async fn a_schema_has_at_most_32_fields() {
    let w = World::new().await;
    let fields = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("f{i}"), "type": "text"}))
            .collect()
    };
    schema_refused(
        &w,
        Value::Array(fields(33)),
        json!({"schema": ["Too many fields defined (exceeds 32)."]}),
    )
    .await;
    assert_eq!(
        schema_stored(&w, Value::Array(fields(32))).await,
        Value::Array(fields(32))
    );
}

#[tokio::test]
async fn a_schema_is_a_list_or_a_string_holding_one() {
    let w = World::new().await;
    let invalid = json!({"schema": ["Schema passed in invalid format."]});
    for schema in [
        json!({}),
        json!(5),
        json!(true),
        json!(["title"]),
        json!("{}"),
    ] {
        schema_refused(&w, schema, invalid.clone()).await;
    }
    schema_refused(
        &w,
        json!("[{not json"),
        json!({"schema": ["Not a valid JSON string."]}),
    )
    .await;
    let stored = schema_stored(&w, json!("[{\"name\": \"title\", \"type\": \"string\"}]")).await;
    assert_eq!(stored, json!([{"name": "title", "type": "string"}]));
    assert_eq!(schema_stored(&w, json!([])).await, json!([]));
}

#[tokio::test]
async fn schema_errors_name_the_first_failing_definition_counting_from_zero() {
    let w = World::new().await;
    schema_refused(
        &w,
        json!([
            {"name": "a", "type": "string"},
            {"name": "b", "type": "text"},
            {"name": "c", "type": "nope"},
            {"name": "id", "type": "string"}
        ]),
        field_error(
            "c",
            2,
            "Invalid field type value. Possible types: string, text, integer, float, boolean, \
             datetime, file, reference, object, array, geopoint, relation.",
        ),
    )
    .await;
    w.get(&class_path("c"), &w.owner)
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn a_schema_error_on_update_changes_nothing() {
    let w = World::new().await;
    let created = w
        .class(json!({"name": "contracts", "schema": [{"name": "title", "type": "string"}]}))
        .await;
    w.patch(
        &class_path("contracts"),
        &w.owner,
        json!({"description": "x", "schema": [{"name": "owner", "type": "string"}]}),
    )
    .await
    .assert(
        400,
        field_error("owner", 0, "Field name \"owner\" is reserved."),
    );
    w.patch(&class_path("contracts"), &w.owner, json!({"schema": null}))
        .await
        .assert(400, json!({"schema": ["This field may not be null."]}));
    let now = w
        .get(&class_path("contracts"), &w.owner)
        .await
        .assert_status(200)
        .clone();
    assert_eq!(without_timestamps(&now), without_timestamps(&created));
}

// ================================================================ update

#[tokio::test]
async fn revision_grows_only_when_the_schema_changes() {
    let w = World::new().await;
    let schema = json!([{"name": "title", "type": "string"}]);
    let created = w
        .class(json!({"name": "contracts", "schema": schema}))
        .await;
    assert_eq!(created["revision"], 1);
    let path = class_path("contracts");
    let revision = |resp: Resp| resp.assert_status(200)["revision"].clone();
    assert_eq!(
        revision(
            w.patch(
                &path,
                &w.owner,
                json!({"description": "x", "other_permissions": "read", "metadata": {"a": 1}})
            )
            .await
        ),
        1
    );
    assert_eq!(
        revision(w.patch(&path, &w.owner, json!({"schema": schema})).await),
        1
    );
    assert_eq!(
        revision(
            w.put(&path, &w.owner, json!({"schema": schema.to_string()}))
                .await
        ),
        1
    );
    let indexed = json!([{"name": "title", "type": "string", "filter_index": true}]);
    assert_eq!(
        revision(w.patch(&path, &w.owner, json!({"schema": indexed})).await),
        2
    );
    let added = json!([{"name": "title", "type": "string", "filter_index": true},
                       {"name": "reward", "type": "integer"}]);
    assert_eq!(
        revision(w.put(&path, &w.owner, json!({"schema": added})).await),
        3
    );
    assert_eq!(
        revision(w.patch(&path, &w.owner, json!({"schema": []})).await),
        4
    );
    assert_eq!(
        revision(w.patch(&path, &w.owner, json!({"description": "y"})).await),
        4
    );
}

#[tokio::test]
async fn expected_revision_must_match_the_classes_revision() {
    let w = World::new().await;
    w.class(json!({"name": "contracts"})).await;
    let path = class_path("contracts");
    for i in 0..3 {
        w.patch(
            &path,
            &w.owner,
            json!({"schema": [{"name": format!("f{i}"), "type": "text"}]}),
        )
        .await
        .assert_status(200);
    }
    w.patch(
        &path,
        &w.owner,
        json!({"expected_revision": 3, "description": "changed"}),
    )
    .await
    .assert(
        400,
        json!({"expected_revision": "Revision mismatch. Expected 3, got 4."}),
    );
    w.put(
        &path,
        &w.owner,
        json!({"expected_revision": 5, "schema": []}),
    )
    .await
    .assert(
        400,
        json!({"expected_revision": "Revision mismatch. Expected 5, got 4."}),
    );
    let now = w.get(&path, &w.owner).await.assert_status(200).clone();
    assert_eq!(
        (&now["description"], &now["revision"], &now["schema"]),
        (
            &json!(""),
            &json!(4),
            &json!([{"name": "f2", "type": "text"}])
        )
    );
    let resp = w
        .patch(
            &path,
            &w.owner,
            json!({"expected_revision": 4, "description": "changed", "schema": []}),
        )
        .await;
    let body = resp.assert_status(200);
    assert_eq!(
        (&body["description"], &body["revision"]),
        (&json!("changed"), &json!(5))
    );
    let resp = w
        .put(
            &path,
            &w.owner,
            json!({"expected_revision": "5", "description": "again"}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["description"], "again");
}

#[tokio::test]
async fn a_classes_group_must_exist() {
    let w = World::new().await;
    let witchers = w.group("witchers").await;
    let missing = witchers + 1000;
    let refused = json!({"group": [format!("Invalid pk \"{missing}\" - object does not exist.")]});
    w.post(
        CLASSES,
        &w.owner,
        json!({"name": "contracts", "group": missing}),
    )
    .await
    .assert(400, refused.clone());
    w.class(json!({"name": "contracts", "group": witchers}))
        .await;
    w.patch(
        &class_path("contracts"),
        &w.owner,
        json!({"group": missing}),
    )
    .await
    .assert(400, refused);
    let resp = w
        .patch(&class_path("contracts"), &w.owner, json!({"group": null}))
        .await;
    assert_class(&resp, 200, class_repr("contracts", json!({})));
    w.post(
        CLASSES,
        &w.owner,
        json!({"name": "monsters", "group": "abc"}),
    )
    .await
    .assert(
        400,
        json!({"group": ["Incorrect type. Expected pk value, received str."]}),
    );
}

#[tokio::test]
async fn class_permissions_take_names_or_numeric_codes() {
    let w = World::new().await;
    w.class(json!({"name": "contracts"})).await;
    let path = class_path("contracts");
    for (input, shown) in [
        (json!("none"), "none"),
        (json!("read"), "read"),
        (json!("create_objects"), "create_objects"),
        (json!(0), "none"),
        (json!(1), "read"),
        (json!(2), "create_objects"),
        (json!("1"), "read"),
    ] {
        let resp = w
            .patch(
                &path,
                &w.owner,
                json!({"group_permissions": input, "other_permissions": input}),
            )
            .await;
        let body = resp.assert_status(200);
        assert_eq!(
            (&body["group_permissions"], &body["other_permissions"]),
            (&json!(shown), &json!(shown)),
            "given {input}"
        );
    }
    w.post(
        CLASSES,
        &w.owner,
        json!({"name": "monsters", "other_permissions": "write", "group_permissions": 3}),
    )
    .await
    .assert(
        400,
        json!({"other_permissions": ["\"write\" is not a valid choice."],
               "group_permissions": ["\"3\" is not a valid choice."]}),
    );
}

#[tokio::test]
async fn put_and_patch_both_change_only_the_fields_sent() {
    let w = World::new().await;
    let schema = json!([{"name": "title", "type": "string"}]);
    w.class(
        json!({"name": "contracts", "description": "Board", "schema": schema,
                   "other_permissions": "read", "metadata": {"a": 1}}),
    )
    .await;
    let path = class_path("contracts");
    let resp = w
        .put(&path, &w.owner, json!({"description": "New board"}))
        .await;
    assert_class(
        &resp,
        200,
        class_repr(
            "contracts",
            json!({"description": "New board", "schema": schema,
                   "other_permissions": "read", "metadata": {"a": 1}}),
        ),
    );
    let resp = w
        .patch(&path, &w.owner, json!({"metadata": {"b": 2}}))
        .await;
    assert_class(
        &resp,
        200,
        class_repr(
            "contracts",
            json!({"description": "New board", "schema": schema,
                   "other_permissions": "read", "metadata": {"b": 2}}),
        ),
    );
    let resp = w.put(&path, &w.owner, json!({})).await;
    assert_eq!(
        without_timestamps(&resp.json),
        without_timestamps(&w.get(&path, &w.owner).await.json)
    );
    assert_eq!(resp.assert_status(200)["description"], "New board");
}

#[tokio::test]
async fn an_unknown_class_answers_404_on_every_detail_method() {
    let w = World::new().await;
    let path = class_path("nope");
    w.get(&path, &w.owner).await.assert(404, not_found());
    w.patch(&path, &w.owner, json!({"description": "x"}))
        .await
        .assert(404, not_found());
    w.put(&path, &w.owner, json!({"description": "x"}))
        .await
        .assert(404, not_found());
    w.delete(&path, &w.owner).await.assert(404, not_found());
    w.get(&path, &w.trusted).await.assert(404, not_found());
}

// ================================================================ objects_count, delete, schema changes

#[tokio::test]
async fn objects_count_is_exact_in_the_detail_and_the_list() {
    let w = World::new().await;
    w.class(json!({"name": "contracts"})).await;
    w.class(json!({"name": "monsters"})).await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(w.object("contracts", &w.owner, json!({})).await);
    }
    let count = |name: &'static str| {
        let w = &w;
        async move {
            w.get(&class_path(name), &w.owner).await.assert_status(200)["objects_count"].clone()
        }
    };
    assert_eq!(count("contracts").await, 3);
    assert_eq!(count("monsters").await, 0);
    w.delete(&object_path("contracts", made[0]), &w.owner)
        .await
        .assert_status(204);
    assert_eq!(count("contracts").await, 2);
    let list = w.get(CLASSES, &w.owner).await.assert_status(200).clone();
    let counts: Vec<(String, Value)> = list["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["objects_count"].clone(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("user_profile".to_owned(), json!(0)),
            ("contracts".to_owned(), json!(2)),
            ("monsters".to_owned(), json!(0))
        ]
    );
}

#[tokio::test]
async fn deleting_a_class_deletes_its_objects() {
    let w = World::new().await;
    w.class(json!({"name": "contracts", "schema": [{"name": "title", "type": "string"}]}))
        .await;
    let a = w
        .object("contracts", &w.owner, json!({"title": "Griffin"}))
        .await;
    let resp = w.delete(&class_path("contracts"), &w.owner).await;
    assert_eq!((resp.status, resp.text.as_str()), (204, ""));
    w.get(&class_path("contracts"), &w.owner)
        .await
        .assert(404, not_found());
    w.get(&objects_path("contracts"), &w.owner)
        .await
        .assert(404, json!({"detail": "Class was not found."}));
    w.get(&object_path("contracts", a), &w.owner)
        .await
        .assert(404, json!({"detail": "Class was not found."}));
    w.delete(&class_path("contracts"), &w.owner)
        .await
        .assert(404, not_found());
    assert_eq!(listed_names(&w, &w.owner, CLASSES).await, ["user_profile"]);
    // A class created again under the name starts empty.
    let again = w
        .class(json!({"name": "contracts", "schema": [{"name": "title", "type": "string"}]}))
        .await;
    assert_eq!(again["objects_count"], 0);
    assert_eq!(
        ids(w
            .get(&objects_path("contracts"), &w.owner)
            .await
            .assert_status(200)),
        Vec::<i64>::new()
    );
    w.get(&object_path("contracts", a), &w.owner)
        .await
        .assert(404, not_found());
}

#[tokio::test]
async fn removing_a_field_discards_its_values() {
    let w = World::new().await;
    w.class(json!({"name": "contracts", "schema": [
        {"name": "title", "type": "string"},
        {"name": "reward", "type": "integer", "filter_index": true}
    ]}))
    .await;
    let a = w
        .object(
            "contracts",
            &w.owner,
            json!({"title": "Griffin", "reward": 300}),
        )
        .await;
    let path = object_path("contracts", a);
    let before = w.get(&path, &w.owner).await.assert_status(200).clone();
    assert_eq!(
        (&before["title"], &before["reward"]),
        (&json!("Griffin"), &json!(300))
    );
    w.patch(
        &class_path("contracts"),
        &w.owner,
        json!({"schema": [{"name": "title", "type": "string"}]}),
    )
    .await
    .assert_status(200);
    let after = w.get(&path, &w.owner).await.assert_status(200).clone();
    assert_eq!(after.get("reward"), None);
    assert_eq!(after["title"], "Griffin");
    // Defined again, the field starts out null: the old value is gone.
    w.patch(
        &class_path("contracts"),
        &w.owner,
        json!({"schema": [{"name": "title", "type": "string"},
                          {"name": "reward", "type": "integer", "filter_index": true}]}),
    )
    .await
    .assert_status(200);
    let again = w.get(&path, &w.owner).await.assert_status(200).clone();
    assert_eq!(
        (&again["title"], &again["reward"]),
        (&json!("Griffin"), &Value::Null)
    );
    let query = json!({"reward": {"_exists": true}}).to_string();
    let found = w
        .get(
            &url(&objects_path("contracts"), &[("query", &query)]),
            &w.owner,
        )
        .await;
    assert_eq!(ids(found.assert_status(200)), Vec::<i64>::new());
}

#[tokio::test]
async fn changing_a_fields_type_or_target_discards_its_values() {
    let w = World::new().await;
    w.class(json!({"name": "monsters"})).await;
    w.class(json!({"name": "contracts", "schema": [
        {"name": "reward", "type": "integer"},
        {"name": "title", "type": "string"},
        {"name": "parent", "type": "reference", "target": "self"}
    ]}))
    .await;
    let a = w.object("contracts", &w.owner, json!({})).await;
    let b = w
        .object(
            "contracts",
            &w.owner,
            json!({"reward": 300, "title": "Griffin", "parent": a}),
        )
        .await;
    let path = object_path("contracts", b);
    w.patch(
        &class_path("contracts"),
        &w.owner,
        json!({"schema": [
            {"name": "reward", "type": "string"},
            {"name": "title", "type": "string", "filter_index": true, "order_index": true},
            {"name": "parent", "type": "reference", "target": "monsters"}
        ]}),
    )
    .await
    .assert_status(200);
    let now = w.get(&path, &w.owner).await.assert_status(200).clone();
    // Only the index changed for `title`: its value stays.
    assert_eq!(
        (&now["reward"], &now["title"], &now["parent"]),
        (&Value::Null, &json!("Griffin"), &Value::Null)
    );
    assert_eq!(now["revision"], 1);
}

#[tokio::test]
async fn an_index_change_takes_effect_at_once() {
    let w = World::new().await;
    w.class(json!({"name": "contracts", "schema": [{"name": "reward", "type": "integer"}]}))
        .await;
    let a = w.object("contracts", &w.owner, json!({"reward": 2})).await;
    let b = w.object("contracts", &w.owner, json!({"reward": 1})).await;
    let list = objects_path("contracts");
    let query = json!({"reward": {"_gte": 2}}).to_string();
    w.get(&url(&list, &[("query", &query)]), &w.owner)
        .await
        .assert(
            400,
            json!({"query": "Field \"reward\" cannot be used in a query as it is not indexed."}),
        );
    let resp = w
        .patch(
            &class_path("contracts"),
            &w.owner,
            json!({"schema": [{"name": "reward", "type": "integer", "filter_index": true,
                               "order_index": true}]}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["status"], "ready");
    let found = w.get(&url(&list, &[("query", &query)]), &w.owner).await;
    assert_eq!(ids(found.assert_status(200)), [a]);
    let ordered = w
        .get(&url(&list, &[("order_by", "reward")]), &w.owner)
        .await;
    assert_eq!(ids(ordered.assert_status(200)), [b, a]);
    w.patch(
        &class_path("contracts"),
        &w.owner,
        json!({"schema": [{"name": "reward", "type": "integer"}]}),
    )
    .await
    .assert_status(200);
    w.get(&url(&list, &[("order_by", "reward")]), &w.owner)
        .await
        .assert(
            400,
            json!({"detail":
                "Cannot use specified order_by field. Set required index on schema first."}),
        );
}

// ================================================================ who sees which classes

/// Classes `open` (others read), `members` (group read), `hidden` (group none), `closed`;
/// geralt is in the group, ciri is not.
async fn visibility() -> (World, Who, Who) {
    let w = World::new().await;
    let witchers = w.group("witchers").await;
    let geralt = w.user("geralt").await;
    let ciri = w.user("ciri").await;
    w.join(&geralt, witchers).await;
    w.class(json!({"name": "open", "other_permissions": "read", "group_permissions": "none"}))
        .await;
    w.class(
        json!({"name": "members", "other_permissions": "none", "group": witchers,
                   "group_permissions": "read"}),
    )
    .await;
    w.class(
        json!({"name": "hidden", "other_permissions": "none", "group": witchers,
                   "group_permissions": "none"}),
    )
    .await;
    w.class(json!({"name": "closed", "other_permissions": "none", "group_permissions": "create_objects"}))
        .await;
    w.class(json!({"name": "creatable", "other_permissions": "create_objects"}))
        .await;
    (w, geralt, ciri)
}

#[tokio::test]
async fn the_owner_and_trusted_keys_list_and_read_every_class() {
    let (w, _, _) = visibility().await;
    let all = [
        "user_profile",
        "open",
        "members",
        "hidden",
        "closed",
        "creatable",
    ];
    for who in [&w.owner, &w.trusted] {
        assert_eq!(listed_names(&w, who, CLASSES).await, all);
        for name in all {
            let resp = w.get(&class_path(name), who).await;
            assert_eq!(resp.assert_status(200)["name"], name);
        }
    }
    let owner_view = w.get(&class_path("hidden"), &w.owner).await;
    w.get(&class_path("hidden"), &w.trusted)
        .await
        .assert(200, owner_view.json.clone());
}

#[tokio::test]
async fn users_see_classes_others_may_read_or_their_groups_may_read() {
    let (w, geralt, ciri) = visibility().await;
    assert_eq!(
        listed_names(&w, &geralt, CLASSES).await,
        ["user_profile", "open", "members", "creatable"]
    );
    assert_eq!(
        listed_names(&w, &ciri, CLASSES).await,
        ["user_profile", "open", "creatable"]
    );
    let owner_view = w.get(&class_path("members"), &w.owner).await;
    w.get(&class_path("members"), &geralt)
        .await
        .assert(200, owner_view.json.clone());
    for name in ["members", "hidden", "closed"] {
        w.get(&class_path(name), &ciri)
            .await
            .assert(404, not_found());
    }
    for name in ["hidden", "closed"] {
        w.get(&class_path(name), &geralt)
            .await
            .assert(404, not_found());
    }
}

#[tokio::test]
async fn anonymous_readers_and_bare_keys_see_classes_others_may_read() {
    let (w, _, _) = visibility().await;
    for who in [&w.reader, &w.bare] {
        assert_eq!(
            listed_names(&w, who, CLASSES).await,
            ["user_profile", "open", "creatable"]
        );
        let resp = w.get(&class_path("open"), who).await;
        assert_eq!(resp.assert_status(200)["name"], "open");
        for name in ["members", "hidden", "closed"] {
            w.get(&class_path(name), who).await.assert(404, not_found());
        }
    }
    w.get(CLASSES, &Who::Key("0".repeat(39) + "1"))
        .await
        .assert(403, json!({"detail": "No such API Key."}));
}

#[tokio::test]
async fn unknown_classes_and_foreign_keys_are_refused() {
    let app = TestApp::spawn().await;
    rivia_with_a_user(&app).await;
    app.get(
        "/v1.1/instances/rivia/classes/contracts/",
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
    app.create_instance("kaer-morhen").await;
    let foreign = app.create_api_key("kaer-morhen", json!({})).await;
    app.get(
        "/v1.1/instances/rivia/classes/user_profile/",
        Some(&foreign),
    )
    .await
    .assert(403, json!({"detail": "No such API Key."}));
    app.get("/v1.1/instances/rivia/classes/", None)
        .await
        .assert(
            403,
            json!({"detail": "You do not have permission to perform this action."}),
        );
}

// ================================================================ lists

#[tokio::test]
async fn name_startswith_filters_classes_by_a_case_sensitive_prefix() {
    let w = World::new().await;
    for name in ["contracts", "monsters", "contacts", "cont"] {
        w.class(json!({"name": name})).await;
    }
    for (prefix, expected) in [
        ("con", vec!["contracts", "contacts", "cont"]),
        ("contr", vec!["contracts"]),
        ("u", vec!["user_profile"]),
        ("Con", vec![]),
        ("x", vec![]),
    ] {
        assert_eq!(
            listed_names(&w, &w.owner, &url(CLASSES, &[("name__startswith", prefix)])).await,
            expected,
            "name__startswith={prefix}"
        );
    }
}

#[tokio::test]
async fn class_lists_page_with_links_and_page_size_zero_is_empty() {
    let w = World::new().await;
    for name in ["a1", "a2", "a3", "a4"] {
        w.class(json!({"name": name})).await;
    }
    let all = ["user_profile", "a1", "a2", "a3", "a4"];
    let mut seen = Vec::new();
    let mut link = Some(url(CLASSES, &[("page_size", "2")]));
    let mut pages = 0;
    while let Some(next) = link {
        let body = w.get(&next, &w.owner).await.assert_status(200).clone();
        if pages == 0 {
            assert_eq!(body["prev"], Value::Null);
        }
        seen.extend(names(&body));
        link = body["next"].as_str().map(str::to_owned);
        pages += 1;
        assert!(pages < 10, "next links never end");
    }
    assert_eq!(seen, all);
    assert_eq!(pages, 3);
    let desc = w
        .get(
            &url(CLASSES, &[("ordering", "desc"), ("page_size", "3")]),
            &w.owner,
        )
        .await;
    assert_eq!(names(desc.assert_status(200)), ["a4", "a3", "a2"]);
    for who in [&w.owner, &w.bare] {
        w.get(&url(CLASSES, &[("page_size", "0")]), who)
            .await
            .assert(200, json!({"objects": [], "next": null, "prev": null}));
    }
    let filtered = url(CLASSES, &[("name__startswith", "a"), ("page_size", "3")]);
    let body = w.get(&filtered, &w.owner).await.assert_status(200).clone();
    assert_eq!(names(&body), ["a1", "a2", "a3"]);
    let next = w
        .get(body["next"].as_str().expect("a next link"), &w.owner)
        .await;
    assert_eq!(names(next.assert_status(200)), ["a4"]);
    // A repeated parameter takes its last value (docs/api.md §10.9).
    let repeated = url(
        CLASSES,
        &[
            ("page_size", "1"),
            ("ordering", "desc"),
            ("page_size", "2"),
            ("ordering", "asc"),
        ],
    );
    let body = w.get(&repeated, &w.owner).await;
    assert_eq!(names(body.assert_status(200)), ["user_profile", "a1"]);
    w.get(&url(CLASSES, &[("page_size", "-1")]), &w.owner)
        .await
        .assert(400, json!({"detail": "Incorrect page parameter provided."}));
}

// ================================================================ the class limit

#[tokio::test]
async fn the_class_count_is_limited_without_counting_user_profile() {
    let app = TestApp::spawn_with(|args| args.max_classes_per_instance = 2).await;
    let w = World::on(app).await;
    w.class(json!({"name": "contracts"})).await;
    w.class(json!({"name": "monsters"})).await;
    w.post(CLASSES, &w.owner, json!({"name": "witchers"}))
        .await
        .assert(400, json!({"detail": "Class count exceeded (2)."}));
    assert_eq!(
        listed_names(&w, &w.owner, CLASSES).await,
        ["user_profile", "contracts", "monsters"]
    );
    w.delete(&class_path("monsters"), &w.owner)
        .await
        .assert_status(204);
    let resp = w.post(CLASSES, &w.owner, json!({"name": "witchers"})).await;
    assert_class(&resp, 201, class_repr("witchers", json!({})));
}

#[tokio::test]
async fn a_class_and_its_objects_are_reached_by_name_in_any_case() {
    let w = World::new().await;
    w.class(json!({"name": "contracts"})).await;
    let a = w.object("contracts", &w.owner, json!({})).await;
    let resp = w
        .get("/v1.1/instances/rivia/classes/Contracts", &w.owner)
        .await;
    assert_class(
        &resp,
        200,
        class_repr("contracts", json!({"objects_count": 1})),
    );
    let list = w
        .get("/v1.1/instances/rivia/classes/CONTRACTS/objects/", &w.owner)
        .await;
    assert_eq!(ids(list.assert_status(200)), [a]);
}
