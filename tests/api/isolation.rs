//! docs/api.md §5 (intro) and §3.3: instances are isolated namespaces. An API key of one instance and an
//! account key that does not own an instance can neither read nor change it, on every endpoint.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const GENERIC_403: &str = "You do not have permission to perform this action.";

/// Two instances with data: `alpha` owned by the superuser (account A), `bravo` owned by
/// account B. Each has a trusted API key, a `witchers` channel and one published message.
struct World {
    app: TestApp,
    /// Account B's key.
    b_account: String,
    alpha: Side,
    bravo: Side,
}

struct Side {
    name: &'static str,
    owner_key: String,
    api_key: String,
    api_key_id: i64,
    message_id: i64,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let b_account = app.create_account("b@bravo.io").await;
    let alpha = side(
        &app,
        "alpha",
        app.admin_key.clone(),
        json!({"from": "alpha"}),
    )
    .await;
    let bravo = side(&app, "bravo", b_account.clone(), json!({"from": "bravo"})).await;
    World {
        app,
        b_account,
        alpha,
        bravo,
    }
}

async fn side(app: &TestApp, name: &'static str, owner_key: String, payload: Value) -> Side {
    app.post(
        "/v1.1/instances/",
        Some(&owner_key),
        json!({"name": name, "description": format!("{name} app"), "metadata": {"side": name}}),
    )
    .await
    .assert_status(201);
    let key = app
        .post(
            &format!("/v1.1/instances/{name}/api_keys/"),
            Some(&owner_key),
            json!({"description": format!("{name} key"), "ignore_acl": true}),
        )
        .await
        .assert_status(201)
        .clone();
    app.post(
        &format!("/v1.1/instances/{name}/channels/"),
        Some(&owner_key),
        json!({"name": "witchers", "description": format!("{name} board"),
               "custom_publish": true}),
    )
    .await
    .assert_status(201);
    let message = app
        .post(
            &format!("/v1.1/instances/{name}/channels/witchers/publish/"),
            Some(&owner_key),
            json!({"payload": payload}),
        )
        .await
        .assert_status(201)
        .clone();
    Side {
        name,
        owner_key,
        api_key: key["api_key"].as_str().unwrap().to_owned(),
        api_key_id: key["id"].as_i64().unwrap(),
        message_id: message["id"].as_i64().unwrap(),
    }
}

/// Everything an owner can read about an instance, to compare before and after an attack.
async fn snapshot(app: &TestApp, side: &Side) -> Vec<(String, Value)> {
    let base = format!("/v1.1/instances/{}", side.name);
    let mut out = Vec::new();
    for path in [
        format!("{base}/"),
        format!("{base}/api_keys/"),
        format!("{base}/api_keys/{}/", side.api_key_id),
        format!("{base}/channels/"),
        format!("{base}/channels/witchers/"),
        format!("{base}/channels/witchers/history/"),
        format!("{base}/channels/witchers/history/{}/", side.message_id),
    ] {
        let body = app
            .get(&path, Some(&side.owner_key))
            .await
            .assert_status(200)
            .clone();
        out.push((path, body));
    }
    out
}

/// One request of the table: method, path, optional JSON body, and whether the path is the
/// instance detail URL itself (where a foreign account key gets 404 rather than 403).
struct Row {
    method: Method,
    path: String,
    body: Option<Value>,
    instance_detail: bool,
}

/// Every endpoint that exists today, aimed at `target`'s own objects. Destructive rows come last
/// so that a wrongly allowed one cannot mask the others.
fn rows(target: &Side) -> Vec<Row> {
    let base = format!("/v1.1/instances/{}", target.name);
    let key = format!("{base}/api_keys/{}/", target.api_key_id);
    let channel = format!("{base}/channels/witchers/");
    let row = |method: Method, path: &str, body: Option<Value>| Row {
        instance_detail: path == format!("{base}/"),
        method,
        path: path.to_owned(),
        body,
    };
    let hacked = || Some(json!({"description": "hacked"}));
    vec![
        row(Method::GET, &format!("{base}/"), None),
        row(Method::GET, &format!("{base}/api_keys/"), None),
        row(Method::GET, &key, None),
        row(Method::GET, &format!("{base}/channels/"), None),
        row(Method::GET, &channel, None),
        row(Method::GET, &format!("{channel}history/"), None),
        row(
            Method::GET,
            &format!("{channel}history/{}/", target.message_id),
            None,
        ),
        row(Method::PUT, &format!("{base}/"), hacked()),
        row(Method::PATCH, &format!("{base}/"), hacked()),
        row(
            Method::PUT,
            &key,
            Some(json!({"description": "hacked", "ignore_acl": false})),
        ),
        row(Method::PATCH, &key, Some(json!({"ignore_acl": false}))),
        row(Method::PUT, &channel, hacked()),
        row(
            Method::PATCH,
            &channel,
            Some(json!({"other_permissions": "publish"})),
        ),
        row(
            Method::POST,
            &format!("{base}/api_keys/"),
            Some(json!({"ignore_acl": true})),
        ),
        row(
            Method::POST,
            &format!("{base}/channels/"),
            Some(json!({"name": "stolen", "custom_publish": true})),
        ),
        row(
            Method::POST,
            &format!("{channel}publish/"),
            Some(json!({"payload": {"from": "intruder"}})),
        ),
        row(Method::POST, &format!("{key}reset_key/"), Some(json!({}))),
        row(Method::DELETE, &key, None),
        row(Method::DELETE, &channel, None),
        row(
            Method::POST,
            &format!("{base}/rename/"),
            Some(json!({"new_name": "stolen-name"})),
        ),
        row(Method::DELETE, &format!("{base}/"), None),
    ]
}

/// Sends one row with `key` and returns a description of the mismatch, if any.
async fn check(
    app: &TestApp,
    who: &str,
    key: &str,
    row: &Row,
    expected: (u16, Value),
) -> Option<String> {
    let mut builder = app.request(row.method.clone(), &row.path, Some(key));
    if let Some(body) = &row.body {
        builder = builder.json(body);
    }
    // A bound, not a wait: a correct server answers these at once.
    let resp = match builder.timeout(Duration::from_secs(30)).send().await {
        Ok(resp) => resp,
        Err(err) => return Some(format!("{who}: {} {} -> error {err}", row.method, row.path)),
    };
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if (status, &json) == (expected.0, &expected.1) {
        None
    } else {
        Some(format!(
            "{who}: {} {} -> {status} {text}  (expected {} {})",
            row.method, row.path, expected.0, expected.1
        ))
    }
}

/// Expectation for an API key of another instance: 403 `No such API Key.` everywhere.
fn foreign_api_key(_: &Row) -> (u16, Value) {
    (403, json!({"detail": "No such API Key."}))
}

/// Expectation for an account key that does not own the instance: 404 on the instance detail
/// URL, 403 (generic) on every path below it.
fn foreign_account(row: &Row) -> (u16, Value) {
    if row.instance_detail {
        (404, json!({"detail": "Not found."}))
    } else {
        (403, json!({"detail": GENERIC_403}))
    }
}

async fn run_table(
    world: &World,
    who: &str,
    key: &str,
    target: &Side,
    expect: fn(&Row) -> (u16, Value),
) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows(target) {
        if let Some(failure) = check(&world.app, who, key, &row, expect(&row)).await {
            failures.push(failure);
        }
    }
    failures
}

/// Asserts that both instances look exactly as before, that nothing new appeared, and that both
/// API keys still work.
async fn assert_untouched(
    world: &World,
    before_alpha: &[(String, Value)],
    before_bravo: &[(String, Value)],
) {
    let app = &world.app;
    assert_eq!(snapshot(app, &world.alpha).await, before_alpha);
    assert_eq!(snapshot(app, &world.bravo).await, before_bravo);
    for side in [&world.alpha, &world.bravo] {
        app.get(
            &format!("/v1.1/instances/{}/channels/stolen/", side.name),
            Some(&side.owner_key),
        )
        .await
        .assert(404, json!({"detail": "Not found."}));
        let resp = app
            .get(
                &format!("/v1.1/instances/{}/", side.name),
                Some(&side.api_key),
            )
            .await;
        assert_eq!(resp.assert_status(200)["role"], "api_key");
    }
    app.get("/v1.1/instances/stolen-name/", Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Not found."}));
    app.get("/v1.1/instances/stolen-name/", Some(&world.b_account))
        .await
        .assert(404, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn an_api_key_of_another_instance_is_no_such_api_key_on_every_endpoint() {
    let world = world().await;
    let before_alpha = snapshot(&world.app, &world.alpha).await;
    let before_bravo = snapshot(&world.app, &world.bravo).await;

    let mut failures = run_table(
        &world,
        "alpha's API key on bravo",
        &world.alpha.api_key,
        &world.bravo,
        foreign_api_key,
    )
    .await;
    failures.extend(
        run_table(
            &world,
            "bravo's API key on alpha",
            &world.bravo.api_key,
            &world.alpha,
            foreign_api_key,
        )
        .await,
    );
    assert!(
        failures.is_empty(),
        "{} requests crossed the instance boundary:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_untouched(&world, &before_alpha, &before_bravo).await;
}

#[tokio::test]
async fn an_api_key_of_an_instance_of_the_same_account_is_no_such_api_key_too() {
    let app = TestApp::spawn().await;
    let mut sides = Vec::new();
    for name in ["alpha", "bravo"] {
        sides.push(side(&app, name, app.admin_key.clone(), json!({"from": name})).await);
    }
    let (alpha, bravo) = (&sides[0], &sides[1]);
    let before = snapshot(&app, bravo).await;
    let mut failures = Vec::new();
    for row in rows(bravo) {
        if let Some(failure) = check(
            &app,
            "alpha's API key on bravo (same owner)",
            &alpha.api_key,
            &row,
            foreign_api_key(&row),
        )
        .await
        {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(snapshot(&app, bravo).await, before);
}

#[tokio::test]
async fn an_account_key_that_does_not_own_the_instance_is_refused_on_every_endpoint() {
    let world = world().await;
    let before_alpha = snapshot(&world.app, &world.alpha).await;
    let before_bravo = snapshot(&world.app, &world.bravo).await;

    let mut failures = run_table(
        &world,
        "account B on alpha",
        &world.b_account,
        &world.alpha,
        foreign_account,
    )
    .await;
    // The superuser has no extra power over instances (§4.6).
    failures.extend(
        run_table(
            &world,
            "account A (superuser) on bravo",
            &world.app.admin_key,
            &world.bravo,
            foreign_account,
        )
        .await,
    );
    assert!(
        failures.is_empty(),
        "{} requests crossed the ownership boundary:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_untouched(&world, &before_alpha, &before_bravo).await;
}

#[tokio::test]
async fn instance_lists_show_nothing_of_the_other_instance() {
    let world = world().await;
    let app = &world.app;
    let listed = |body: &Value| -> Vec<String> {
        body["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for (key, expected) in [
        (&app.admin_key, "alpha"),
        (&world.b_account, "bravo"),
        (&world.alpha.api_key, "alpha"),
        (&world.bravo.api_key, "bravo"),
    ] {
        let body = app
            .get("/v1.1/instances/", Some(key))
            .await
            .assert_status(200)
            .clone();
        assert_eq!(listed(&body), [expected]);
    }
}

#[tokio::test]
async fn an_api_key_list_never_includes_keys_of_another_instance() {
    let world = world().await;
    let app = &world.app;
    for side in [&world.alpha, &world.bravo] {
        let path = format!("/v1.1/instances/{}/api_keys/", side.name);
        for key in [&side.owner_key, &side.api_key] {
            let body = app.get(&path, Some(key)).await.assert_status(200).clone();
            let ids: Vec<i64> = body["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_i64().unwrap())
                .collect();
            assert_eq!(ids, [side.api_key_id], "{path} with {key}");
        }
    }
}

#[tokio::test]
async fn another_instances_api_key_id_cannot_be_addressed_through_ones_own_instance() {
    let world = world().await;
    let app = &world.app;
    let before = snapshot(app, &world.alpha).await;
    // Account B owns bravo and addresses alpha's key id under bravo's path.
    let path = format!("/v1.1/instances/bravo/api_keys/{}/", world.alpha.api_key_id);
    let not_found = json!({"detail": "Not found."});
    app.get(&path, Some(&world.b_account))
        .await
        .assert(404, not_found.clone());
    app.patch(
        &path,
        Some(&world.b_account),
        json!({"description": "hacked"}),
    )
    .await
    .assert(404, not_found.clone());
    app.put(
        &path,
        Some(&world.b_account),
        json!({"description": "hacked"}),
    )
    .await
    .assert(404, not_found.clone());
    app.post(
        &format!("{path}reset_key/"),
        Some(&world.b_account),
        json!({}),
    )
    .await
    .assert(404, not_found.clone());
    app.delete(&path, Some(&world.b_account))
        .await
        .assert(404, not_found.clone());
    // Bravo's API key may read only itself; alpha's id is just another id to it.
    app.get(&path, Some(&world.bravo.api_key))
        .await
        .assert(404, not_found);
    assert_eq!(snapshot(app, &world.alpha).await, before);
}

#[tokio::test]
async fn channels_with_the_same_name_in_two_instances_are_independent() {
    let world = world().await;
    let app = &world.app;
    for (side, other) in [(&world.alpha, "bravo"), (&world.bravo, "alpha")] {
        let history = app
            .get(
                &format!("/v1.1/instances/{}/channels/witchers/history/", side.name),
                Some(&side.api_key),
            )
            .await
            .assert_status(200)
            .clone();
        let payloads: Vec<&Value> = history["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["payload"])
            .collect();
        assert_eq!(
            payloads,
            [&json!({"from": side.name})],
            "no message from {other}"
        );
    }
    // Deleting the channel in one instance leaves the other's alone.
    app.delete(
        "/v1.1/instances/alpha/channels/witchers/",
        Some(&world.alpha.owner_key),
    )
    .await
    .assert_status(204);
    app.get(
        "/v1.1/instances/bravo/channels/witchers/",
        Some(&world.bravo.owner_key),
    )
    .await
    .assert_status(200);
    let history = app
        .get(
            "/v1.1/instances/bravo/channels/witchers/history/",
            Some(&world.bravo.owner_key),
        )
        .await
        .assert_status(200)
        .clone();
    assert_eq!(history["objects"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_message_id_of_another_instance_is_not_found_in_ones_own_channel() {
    let app = TestApp::spawn().await;
    let b_account = app.create_account("b@bravo.io").await;
    let alpha = side(&app, "alpha", app.admin_key.clone(), json!({"n": 0})).await;
    let mut ids = vec![alpha.message_id];
    for n in 1..3 {
        ids.push(
            app.publish("alpha", "witchers", json!({"payload": {"n": n}}))
                .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // Bravo's channel of the same name holds no messages at all.
    app.post(
        "/v1.1/instances/",
        Some(&b_account),
        json!({"name": "bravo"}),
    )
    .await
    .assert_status(201);
    app.post(
        "/v1.1/instances/bravo/channels/",
        Some(&b_account),
        json!({"name": "witchers", "custom_publish": true}),
    )
    .await
    .assert_status(201);
    for id in ids {
        app.get(
            &format!("/v1.1/instances/bravo/channels/witchers/history/{id}/"),
            Some(&b_account),
        )
        .await
        .assert(404, json!({"detail": "Not found."}));
    }
    app.get(
        "/v1.1/instances/bravo/channels/witchers/history/",
        Some(&b_account),
    )
    .await
    .assert(200, json!({"objects": [], "next": null, "prev": null}));
}

#[tokio::test]
async fn deleting_one_instance_leaves_the_other_intact() {
    let world = world().await;
    let app = &world.app;
    let before = snapshot(app, &world.bravo).await;
    app.delete("/v1.1/instances/alpha/", Some(&app.admin_key))
        .await
        .assert_status(204);
    assert_eq!(snapshot(app, &world.bravo).await, before);
    app.get("/v1.1/instances/bravo/", Some(&world.bravo.api_key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_missing_instance_answers_404_to_every_caller_before_any_key_check() {
    let world = world().await;
    let app = &world.app;
    for key in [
        &app.admin_key,
        &world.b_account,
        &world.alpha.api_key,
        &world.bravo.api_key,
    ] {
        app.get("/v1.1/instances/nowhere/", Some(key))
            .await
            .assert(404, json!({"detail": "Not found."}));
        app.get("/v1.1/instances/nowhere/channels/", Some(key))
            .await
            .assert(404, json!({"detail": "Instance was not found."}));
        app.get("/v1.1/instances/nowhere/api_keys/", Some(key))
            .await
            .assert(404, json!({"detail": "Instance was not found."}));
    }
}
