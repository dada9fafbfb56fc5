//! docs/api.md §3 (where keys are read, failures), the §2.4 check order and §2.8 rate limiting.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};

const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";
const NO_SUCH_API_KEY: &str = "No such API Key.";
const NO_SUCH_USER_KEY: &str = "No such User Key.";
const THROTTLED: &str = "Request was throttled. Expected available in 1 second.";

const CHANNELS: &str = "/v1.1/instances/rivia/channels/";

/// 40 hex characters, well formed but issued to nobody: odd last digit (API key) or even
/// (account or user key).
const UNKNOWN_API_KEY: &str = "0123456789abcdef0123456789abcdef01234567";
const UNKNOWN_EVEN_KEY: &str = "0123456789abcdef0123456789abcdef01234568";

/// An instance `rivia` with an open `witchers` channel and a trusted (`ignore_acl`) API key.
async fn rivia() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    rivia_in(&app).await;
    let key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    (app, key)
}

async fn rivia_in(app: &TestApp) {
    app.create_instance("rivia").await;
    app.create_channel(
        "rivia",
        json!({"name": "witchers", "custom_publish": true, "other_permissions": "publish"}),
    )
    .await;
}

fn detail(message: &str) -> Value {
    json!({"detail": message})
}

/// GETs the channel list with only the given headers (no `X-API-KEY` unless listed).
async fn list_with_headers(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut builder = app.request(Method::GET, path, None);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    app.send(builder).await
}

#[track_caller]
fn assert_listed_channels(resp: &Resp) {
    let body = resp.assert_status(200);
    let names: Vec<&str> = body["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"witchers"), "{names:?}");
}

// §3.2 Where keys are read

#[tokio::test]
async fn the_key_is_read_from_the_x_api_key_header() {
    let (app, key) = rivia().await;
    assert_listed_channels(&list_with_headers(&app, CHANNELS, &[("X-API-KEY", &key)]).await);
}

#[tokio::test]
async fn the_key_is_read_from_the_api_key_and_apikey_query_parameters() {
    let (app, key) = rivia().await;
    assert_listed_channels(&app.get(&format!("{CHANNELS}?api_key={key}"), None).await);
    assert_listed_channels(&app.get(&format!("{CHANNELS}?apikey={key}"), None).await);
}

#[tokio::test]
async fn the_key_is_read_from_a_two_part_authorization_header_whatever_the_scheme() {
    let (app, key) = rivia().await;
    for scheme in ["token", "Token", "Bearer", "ApiKey"] {
        let value = format!("{scheme} {key}");
        assert_listed_channels(
            &list_with_headers(&app, CHANNELS, &[("Authorization", &value)]).await,
        );
    }
    let account = format!("token {}", app.admin_key);
    assert_listed_channels(
        &list_with_headers(&app, CHANNELS, &[("Authorization", &account)]).await,
    );
}

#[tokio::test]
async fn an_authorization_header_that_is_not_exactly_two_parts_is_ignored() {
    let (app, key) = rivia().await;
    let three = format!("token {key} extra");
    for value in ["a b c", key.as_str(), three.as_str()] {
        list_with_headers(&app, CHANNELS, &[("Authorization", value)])
            .await
            .assert(403, detail(PERMISSION_DENIED));
    }
    // Ignored means absent: a later source still supplies the key.
    let resp = app
        .send(
            app.request(Method::POST, CHANNELS, None)
                .header("Authorization", "a b c")
                .json(&json!({"name": "later", "_api_key": key})),
        )
        .await;
    assert_eq!(resp.assert_status(201)["name"], "later");
}

#[tokio::test]
async fn the_key_is_read_from_the_api_key_body_field_of_json_and_form_bodies() {
    let (app, key) = rivia().await;
    let resp = app
        .post(
            CHANNELS,
            None,
            json!({"name": "from-json", "_api_key": key}),
        )
        .await;
    assert_eq!(resp.assert_status(201)["name"], "from-json");
    let resp = app
        .send(
            app.request(Method::POST, CHANNELS, None)
                .form(&[("name", "from-form"), ("_api_key", key.as_str())]),
        )
        .await;
    assert_eq!(resp.assert_status(201)["name"], "from-form");
    let resp = app
        .post(
            "/v1.1/instances/rivia/channels/witchers/publish/",
            None,
            json!({"payload": {"n": 1}, "_api_key": key}),
        )
        .await;
    let message = resp.assert_status(201);
    assert_eq!(message["payload"], json!({"n": 1}));
    assert!(message["author"]["api_key"].is_i64(), "{message}");
}

#[tokio::test]
async fn the_first_non_empty_source_wins() {
    let (app, key) = rivia().await;
    // A bad header key is not rescued by a good query key.
    let resp = list_with_headers(
        &app,
        &format!("{CHANNELS}?api_key={key}"),
        &[("X-API-KEY", UNKNOWN_API_KEY)],
    )
    .await;
    resp.assert(403, detail(NO_SUCH_API_KEY));
    // A good header key wins over a bad query key.
    assert_listed_channels(
        &list_with_headers(
            &app,
            &format!("{CHANNELS}?api_key={UNKNOWN_API_KEY}"),
            &[("X-API-KEY", &key)],
        )
        .await,
    );
    // An empty header is skipped.
    assert_listed_channels(
        &list_with_headers(
            &app,
            &format!("{CHANNELS}?api_key={key}"),
            &[("X-API-KEY", "")],
        )
        .await,
    );
    // `api_key` comes before `apikey`; an empty `api_key` is skipped.
    app.get(
        &format!("{CHANNELS}?apikey={key}&api_key={UNKNOWN_API_KEY}"),
        None,
    )
    .await
    .assert(403, detail(NO_SUCH_API_KEY));
    assert_listed_channels(
        &app.get(&format!("{CHANNELS}?api_key=&apikey={key}"), None)
            .await,
    );
    // The query comes before `Authorization`.
    let auth = format!("token {key}");
    list_with_headers(
        &app,
        &format!("{CHANNELS}?apikey={UNKNOWN_API_KEY}"),
        &[("Authorization", &auth)],
    )
    .await
    .assert(403, detail(NO_SUCH_API_KEY));
    // `Authorization` comes before the body.
    let resp = app
        .send(
            app.request(Method::POST, CHANNELS, None)
                .header("Authorization", format!("token {UNKNOWN_API_KEY}"))
                .json(&json!({"name": "bodykey", "_api_key": key})),
        )
        .await;
    resp.assert(403, detail(NO_SUCH_API_KEY));
    let resp = app
        .send(
            app.request(Method::POST, CHANNELS, Some(&key))
                .json(&json!({"name": "headerkey", "_api_key": UNKNOWN_API_KEY})),
        )
        .await;
    resp.assert_status(201);
}

#[tokio::test]
async fn keys_are_case_insensitive() {
    let (app, key) = rivia().await;
    let upper = key.to_ascii_uppercase();
    assert_ne!(upper, key);
    assert_listed_channels(&app.get(CHANNELS, Some(&upper)).await);
    assert_listed_channels(&app.get(&format!("{CHANNELS}?api_key={upper}"), None).await);
    let admin_upper = app.admin_key.to_ascii_uppercase();
    assert_listed_channels(&app.get(CHANNELS, Some(&admin_upper)).await);
    app.get("/v1.1/account/", Some(&admin_upper))
        .await
        .assert_status(200);
}

// §3.3 Failures

#[tokio::test]
async fn a_request_without_a_key_gets_the_generic_403() {
    let (app, _) = rivia().await;
    for path in [
        "/v1.1/account/",
        "/v1.1/instances/",
        "/v1.1/instances/rivia/",
        "/v1.1/instances/rivia/api_keys/",
        CHANNELS,
        "/v1.1/instances/rivia/channels/witchers/",
        "/v1.1/instances/rivia/channels/witchers/history/",
    ] {
        app.get(path, None)
            .await
            .assert(403, detail(PERMISSION_DENIED));
    }
    app.post(
        "/v1.1/instances/rivia/channels/witchers/publish/",
        None,
        json!({"payload": {}}),
    )
    .await
    .assert(403, detail(PERMISSION_DENIED));
}

#[tokio::test]
async fn a_malformed_or_unknown_key_is_no_such_api_key() {
    let (app, key) = rivia().await;
    let too_long = format!("{key}1");
    let non_hex = format!("{}zz", &key[..38]);
    for bad in [
        "abc",
        "not-a-key",
        too_long.as_str(),
        &key[..39],
        non_hex.as_str(),
        UNKNOWN_API_KEY,
        UNKNOWN_EVEN_KEY,
    ] {
        for path in [CHANNELS, "/v1.1/instances/rivia/", "/v1.1/instances/"] {
            app.get(path, Some(bad))
                .await
                .assert(403, detail(NO_SUCH_API_KEY));
        }
    }
}

#[tokio::test]
async fn an_api_key_of_another_instance_is_no_such_api_key() {
    let (app, _) = rivia().await;
    app.create_instance("kaedwen").await;
    let foreign = app
        .create_api_key("kaedwen", json!({"ignore_acl": true}))
        .await;
    for path in [
        "/v1.1/instances/rivia/",
        CHANNELS,
        "/v1.1/instances/rivia/channels/witchers/",
        "/v1.1/instances/rivia/api_keys/",
    ] {
        app.get(path, Some(&foreign))
            .await
            .assert(403, detail(NO_SUCH_API_KEY));
    }
    app.post(
        "/v1.1/instances/rivia/channels/witchers/publish/",
        Some(&foreign),
        json!({"payload": {}}),
    )
    .await
    .assert(403, detail(NO_SUCH_API_KEY));
    // The same key works on its own instance.
    app.get("/v1.1/instances/kaedwen/channels/", Some(&foreign))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_unknown_user_key_with_a_valid_api_key_is_no_such_user_key() {
    let (app, key) = rivia().await;
    list_with_headers(
        &app,
        CHANNELS,
        &[("X-API-KEY", &key), ("X-USER-KEY", UNKNOWN_EVEN_KEY)],
    )
    .await
    .assert(403, detail(NO_SUCH_USER_KEY));
    for param in ["user_key", "userkey"] {
        app.get(
            &format!("{CHANNELS}?{param}={UNKNOWN_EVEN_KEY}"),
            Some(&key),
        )
        .await
        .assert(403, detail(NO_SUCH_USER_KEY));
    }
    app.post(
        "/v1.1/instances/rivia/channels/witchers/publish/",
        Some(&key),
        json!({"payload": {}, "_user_key": UNKNOWN_EVEN_KEY}),
    )
    .await
    .assert(403, detail(NO_SUCH_USER_KEY));
    list_with_headers(
        &app,
        CHANNELS,
        &[("X-API-KEY", &key), ("X-USER-KEY", "garbage")],
    )
    .await
    .assert(403, detail(NO_SUCH_USER_KEY));
}

#[tokio::test]
async fn a_user_key_sent_with_an_account_key_is_ignored() {
    let (app, _) = rivia().await;
    let resp = list_with_headers(
        &app,
        CHANNELS,
        &[
            ("X-API-KEY", &app.admin_key),
            ("X-USER-KEY", UNKNOWN_EVEN_KEY),
        ],
    )
    .await;
    assert_listed_channels(&resp);
    app.get(
        &format!("/v1.1/instances/rivia/?user_key={UNKNOWN_EVEN_KEY}"),
        Some(&app.admin_key),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn an_account_key_that_does_not_own_the_instance_sees_no_instance_detail() {
    let (app, _) = rivia().await;
    let other = app.create_account("ciri@cintra.io").await;
    app.get("/v1.1/instances/rivia/", Some(&other))
        .await
        .assert(404, detail("Not found."));
    let listed = app.get("/v1.1/instances/", Some(&other)).await;
    assert_eq!(listed.assert_status(200)["objects"], json!([]));
}

// §2.4 Check order

#[tokio::test]
async fn a_missing_instance_is_reported_before_the_missing_key() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1.1/instances/nowhere/channels/",
        "/v1.1/instances/nowhere/channels/witchers/",
        "/v1.1/instances/nowhere/channels/witchers/history/",
        "/v1.1/instances/nowhere/api_keys/",
    ] {
        app.get(path, None)
            .await
            .assert(404, detail("Instance was not found."));
        app.get(path, Some(UNKNOWN_API_KEY))
            .await
            .assert(404, detail("Instance was not found."));
    }
    app.post(
        "/v1.1/instances/nowhere/channels/witchers/publish/",
        None,
        json!({"payload": {}}),
    )
    .await
    .assert(404, detail("Instance was not found."));
    app.get("/v1.1/instances/nowhere/", None)
        .await
        .assert(404, detail("Not found."));
}

#[tokio::test]
async fn a_missing_channel_without_a_key_is_403_not_404() {
    let (app, _) = rivia().await;
    for path in [
        "/v1.1/instances/rivia/channels/ghosts/",
        "/v1.1/instances/rivia/channels/ghosts/history/",
        "/v1.1/instances/rivia/channels/ghosts/history/1/",
    ] {
        app.get(path, None)
            .await
            .assert(403, detail(PERMISSION_DENIED));
        app.get(path, Some(UNKNOWN_API_KEY))
            .await
            .assert(403, detail(NO_SUCH_API_KEY));
    }
    app.post(
        "/v1.1/instances/rivia/channels/ghosts/publish/",
        None,
        json!({"payload": {}}),
    )
    .await
    .assert(403, detail(PERMISSION_DENIED));
}

async fn post_raw(app: &TestApp, path: &str, key: Option<&str>, ctype: &str, body: &str) -> Resp {
    app.send(
        app.request(Method::POST, path, key)
            .header("Content-Type", ctype)
            .body(body.to_owned()),
    )
    .await
}

#[tokio::test]
async fn an_unparseable_body_without_a_valid_key_gets_the_403_first() {
    let (app, key) = rivia().await;
    post_raw(&app, CHANNELS, None, "application/json", "{\"name\": ")
        .await
        .assert(403, detail(PERMISSION_DENIED));
    post_raw(&app, CHANNELS, None, "application/json", "[1, 2]")
        .await
        .assert(403, detail(PERMISSION_DENIED));
    post_raw(&app, CHANNELS, None, "text/plain", "name=x")
        .await
        .assert(403, detail(PERMISSION_DENIED));
    post_raw(
        &app,
        CHANNELS,
        Some(UNKNOWN_API_KEY),
        "application/json",
        "{\"name\": ",
    )
    .await
    .assert(403, detail(NO_SUCH_API_KEY));
    // With a valid key the same body reaches validation.
    let resp = post_raw(
        &app,
        CHANNELS,
        Some(&key),
        "application/json",
        "{\"name\": ",
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.text);
}

#[tokio::test]
async fn an_api_key_inside_an_unparseable_body_contributes_no_key() {
    let (app, key) = rivia().await;
    let broken = format!("{{\"_api_key\": \"{key}\", \"name\": \"broken\"");
    post_raw(&app, CHANNELS, None, "application/json", &broken)
        .await
        .assert(403, detail(PERMISSION_DENIED));
    let plain = format!("_api_key={key}&name=plain");
    post_raw(&app, CHANNELS, None, "text/plain", &plain)
        .await
        .assert(403, detail(PERMISSION_DENIED));
    app.get("/v1.1/instances/rivia/channels/broken/", Some(&key))
        .await
        .assert(404, detail("Not found."));
}

#[tokio::test]
async fn a_bare_api_key_is_refused_on_every_channel_endpoint() {
    let (app, _) = rivia().await;
    let bare = app.create_api_key("rivia", json!({})).await;
    let message = app
        .publish("rivia", "witchers", json!({"payload": {"n": 1}}))
        .await;
    let id = message["id"].as_i64().unwrap();
    // The key itself is valid: it may read its instance.
    app.get("/v1.1/instances/rivia/", Some(&bare))
        .await
        .assert_status(200);
    let denied = detail(PERMISSION_DENIED);
    let key = Some(bare.as_str());
    let base = "/v1.1/instances/rivia/channels/witchers";
    app.get(CHANNELS, key).await.assert(403, denied.clone());
    app.post(CHANNELS, key, json!({"name": "bare"}))
        .await
        .assert(403, denied.clone());
    app.get(&format!("{base}/"), key)
        .await
        .assert(403, denied.clone());
    app.put(&format!("{base}/"), key, json!({"description": "x"}))
        .await
        .assert(403, denied.clone());
    app.patch(&format!("{base}/"), key, json!({"description": "x"}))
        .await
        .assert(403, denied.clone());
    app.post(&format!("{base}/publish/"), key, json!({"payload": {}}))
        .await
        .assert(403, denied.clone());
    app.get(&format!("{base}/history/"), key)
        .await
        .assert(403, denied.clone());
    app.get(&format!("{base}/history/{id}/"), key)
        .await
        .assert(403, denied.clone());
    app.delete(&format!("{base}/"), key)
        .await
        .assert(403, denied.clone());
    // The caller class is checked before the channel is looked up.
    app.get("/v1.1/instances/rivia/channels/ghosts/", key)
        .await
        .assert(403, denied.clone());
    app.get(
        "/v1.1/instances/rivia/channels/witchers/",
        Some(&app.admin_key),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn a_bare_api_key_cannot_open_a_poll() {
    let (app, _) = rivia().await;
    let bare = app.create_api_key("rivia", json!({})).await;
    // A poll that were wrongly accepted would wait; the guard turns that into a failure.
    let poll = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.get("/v1.1/instances/rivia/channels/witchers/poll/", Some(&bare)),
    )
    .await
    .expect("a refused poll answers at once");
    poll.assert(403, detail(PERMISSION_DENIED));
}

// §2.8 Rate limiting

/// Sends `n` requests back to back and returns them in order.
async fn burst<F, Fut>(n: usize, mut send: F) -> Vec<Resp>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(send().await);
    }
    out
}

#[track_caller]
fn assert_some_throttled(responses: &[Resp]) {
    let throttled: Vec<&Resp> = responses.iter().filter(|r| r.status == 429).collect();
    assert!(
        !throttled.is_empty(),
        "no 429 among {:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for resp in throttled {
        resp.assert(429, detail(THROTTLED));
        assert_eq!(resp.header("retry-after"), Some("1"));
    }
}

#[track_caller]
fn assert_none_throttled(responses: &[Resp], status: u16) {
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == status), "{statuses:?}");
}

/// Spends the anonymous budget of 127.0.0.1 and checks that it is spent.
async fn exhaust_anonymous(app: &TestApp) {
    let responses = burst(20, || app.get(CHANNELS, None)).await;
    assert_some_throttled(&responses);
}

#[tokio::test]
async fn keyless_requests_over_the_anonymous_budget_are_throttled() {
    let app = TestApp::spawn_with(|a| a.rate_anon = 3).await;
    rivia_in(&app).await;
    let responses = burst(20, || app.get(CHANNELS, None)).await;
    responses[0].assert(403, detail(PERMISSION_DENIED));
    for resp in responses.iter().filter(|r| r.status != 429) {
        resp.assert(403, detail(PERMISSION_DENIED));
    }
    assert_some_throttled(&responses);
}

#[tokio::test]
async fn requests_with_a_bad_key_spend_the_anonymous_budget_and_are_throttled_before_403() {
    let app = TestApp::spawn_with(|a| a.rate_anon = 3).await;
    rivia_in(&app).await;
    let responses = burst(20, || app.get(CHANNELS, Some(UNKNOWN_API_KEY))).await;
    responses[0].assert(403, detail(NO_SUCH_API_KEY));
    for resp in responses.iter().filter(|r| r.status != 429) {
        resp.assert(403, detail(NO_SUCH_API_KEY));
    }
    assert_some_throttled(&responses);
}

#[tokio::test]
async fn a_valid_account_key_outside_an_instance_is_never_limited() {
    let app = TestApp::spawn_with(|a| a.rate_anon = 3).await;
    rivia_in(&app).await;
    exhaust_anonymous(&app).await;
    let key = app.admin_key.clone();
    let responses = burst(20, || app.get("/v1.1/instances/", Some(&key))).await;
    assert_none_throttled(&responses, 200);
    let responses = burst(20, || app.get("/v1.1/account/", Some(&key))).await;
    assert_none_throttled(&responses, 200);
}

#[tokio::test]
async fn valid_api_keys_do_not_spend_the_anonymous_budget() {
    let app = TestApp::spawn_with(|a| a.rate_anon = 3).await;
    rivia_in(&app).await;
    let key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    exhaust_anonymous(&app).await;
    let responses = burst(20, || app.get(CHANNELS, Some(&key))).await;
    assert_none_throttled(&responses, 200);
}

#[tokio::test]
async fn health_is_never_limited() {
    let app = TestApp::spawn_with(|a| a.rate_anon = 3).await;
    rivia_in(&app).await;
    exhaust_anonymous(&app).await;
    let responses = burst(20, || app.get("/health", None)).await;
    assert_none_throttled(&responses, 200);
    let responses = burst(20, || app.get("/health/live", None)).await;
    assert_none_throttled(&responses, 200);
}

#[tokio::test]
async fn a_cors_preflight_is_never_limited() {
    let app = TestApp::spawn_with(|a| a.rate_anon = 3).await;
    rivia_in(&app).await;
    exhaust_anonymous(&app).await;
    let responses = burst(20, || {
        app.send(
            app.request(Method::OPTIONS, CHANNELS, None)
                .header("Origin", "https://app.example")
                .header("Access-Control-Request-Method", "GET"),
        )
    })
    .await;
    assert_none_throttled(&responses, 200);
}

#[tokio::test]
async fn the_instance_budget_throttles_one_instance_without_touching_another() {
    let app = TestApp::spawn_with(|a| a.rate_instance = 3).await;
    app.create_instance("rivia").await;
    app.create_instance("kaedwen").await;
    let rivia_key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    let kaedwen_key = app
        .create_api_key("kaedwen", json!({"ignore_acl": true}))
        .await;
    let responses = burst(20, || app.get(CHANNELS, Some(&rivia_key))).await;
    responses[0].assert_status(200);
    for resp in responses.iter().filter(|r| r.status != 429) {
        resp.assert_status(200);
    }
    assert_some_throttled(&responses);
    app.get("/v1.1/instances/kaedwen/channels/", Some(&kaedwen_key))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn the_instance_budget_is_charged_to_account_keys_inside_the_instance() {
    let app = TestApp::spawn_with(|a| a.rate_instance = 3).await;
    app.create_instance("rivia").await;
    let key = app.admin_key.clone();
    let responses = burst(20, || app.get(CHANNELS, Some(&key))).await;
    responses[0].assert_status(200);
    assert_some_throttled(&responses);
}
