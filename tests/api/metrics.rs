//! Metrics (docs/api.md §11.2): every family moves with real traffic, labels never carry names or
//! keys, the token and the separate listener.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;
use crate::poll::{publish_to, rivia, within};
use crate::sse::{sse_connect, sse_path};
use crate::websocket::{next_json, ws_connect};

/// `/metrics` of `app`, parsed: each sample (`name{labels}` as written) and its value.
pub(crate) async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let resp = app.get("/metrics", None).await;
    assert_eq!(resp.status, 200, "/metrics answered {}", resp.text);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&resp.text)
}

fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (sample, value) = line.rsplit_once(' ').expect("sample and value");
            (sample.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of one sample, 0 when it is absent (a labelled child not yet touched).
pub(crate) fn value(samples: &HashMap<String, f64>, sample: &str) -> f64 {
    samples.get(sample).copied().unwrap_or(0.0)
}

/// Scrapes until `sample` reaches `at_least` (counters move after the answer that caused
/// them, or on another task).
pub(crate) async fn wait_for(app: &TestApp, sample: &str, at_least: f64) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(app).await;
        if value(&samples, sample) >= at_least {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sample} stayed at {} (wanted {at_least})",
            value(&samples, sample)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const PUBLISH_ROUTE: &str = "/v1.1/instances/{instance}/channels/{channel}/publish";

#[tokio::test]
async fn publishes_and_every_transport_move_their_families() {
    // Gone clients are noticed at the next ping or keepalive.
    let app = TestApp::spawn_with(|args| {
        args.ws_ping_interval = Duration::from_millis(200);
        args.sse_keepalive = Duration::from_millis(200);
    })
    .await;
    let key = rivia(&app).await;
    let mut ws = ws_connect(&app, &format!("api_key={key}&room=lobby")).await;
    let mut sse = sse_connect(&app, &sse_path("witchers", "room=lobby"), Some(&key), &[]).await;
    let poll = {
        let app_url = app.url("/v1.1/instances/rivia/channels/witchers/poll/?room=lobby");
        let client = app.client.clone();
        let key = key.clone();
        tokio::spawn(async move {
            client
                .get(app_url)
                .header("X-API-KEY", key)
                .send()
                .await
                .expect("poll")
                .status()
        })
    };
    for transport in ["poll", "websocket", "sse"] {
        wait_for(
            &app,
            &format!("herald_subscribers{{transport=\"{transport}\"}}"),
            1.0,
        )
        .await;
    }

    for n in 0..3 {
        publish_to(&app, "lobby", n).await;
    }
    for _ in 0..3 {
        next_json(&mut ws).await;
        sse.next_message().await;
    }
    assert_eq!(within("the waiting poll", poll).await.unwrap(), 200);

    let samples = wait_for(
        &app,
        "herald_messages_delivered_total{transport=\"sse\"}",
        3.0,
    )
    .await;
    assert_eq!(
        value(
            &samples,
            "herald_messages_published_total{action=\"custom\"}"
        ),
        3.0
    );
    assert_eq!(
        value(&samples, "herald_publish_duration_seconds_count"),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "herald_messages_delivered_total{transport=\"websocket\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "herald_messages_delivered_total{transport=\"poll\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            &format!(
                "herald_http_requests_total{{method=\"POST\",route=\"{PUBLISH_ROUTE}\",status=\"201\"}}"
            )
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            &format!(
                "herald_http_request_duration_seconds_count{{method=\"POST\",route=\"{PUBLISH_ROUTE}\"}}"
            )
        ),
        3.0
    );
    // The answered poll no longer waits; the streams still count.
    assert_eq!(
        value(&samples, "herald_subscribers{transport=\"poll\"}"),
        0.0
    );
    assert_eq!(
        value(&samples, "herald_subscribers{transport=\"websocket\"}"),
        1.0
    );
    assert!(value(&samples, "herald_connections") >= 2.0);
    assert!(
        samples
            .keys()
            .any(|s| s.starts_with("herald_db_pool_connections{state=\"idle\"}")),
        "no pool gauge in {samples:?}"
    );

    // Closing the streams brings the gauges back down.
    drop(ws);
    drop(sse);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(&app).await;
        let open = value(&samples, "herald_subscribers{transport=\"websocket\"}")
            + value(&samples, "herald_subscribers{transport=\"sse\"}");
        if open == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "streams still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn labels_never_carry_names_rooms_or_keys() {
    let app = TestApp::spawn().await;
    app.create_instance("secretinstance").await;
    app.create_channel(
        "secretinstance",
        json!({"name": "secretchannel", "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
    let key = app
        .create_api_key("secretinstance", json!({"ignore_acl": true}))
        .await;
    app.post(
        "/v1.1/instances/secretinstance/channels/secretchannel/publish/",
        Some(&key),
        json!({"room": "secretroom", "payload": {}}),
    )
    .await
    .assert_status(201);
    app.get(
        "/v1.1/instances/secretinstance/channels/secretchannel/history/?room=secretroom",
        Some(&key),
    )
    .await
    .assert_status(200);
    app.get("/v1.1/no/such/secretpath/", Some(&key))
        .await
        .assert_status(404);
    app.send(app.request(Method::from_bytes(b"SECRETMETHOD").unwrap(), "/", None))
        .await;

    let text = app.get("/metrics", None).await.text;
    for secret in [
        "secretinstance",
        "secretchannel",
        "secretroom",
        "secretpath",
        "SECRETMETHOD",
        key.as_str(),
        app.admin_key.as_str(),
    ] {
        assert!(!text.contains(secret), "/metrics shows {secret}:\n{text}");
    }
    let samples = parse(&text);
    assert_eq!(
        value(
            &samples,
            "herald_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        1.0
    );
    assert!(
        value(
            &samples,
            "herald_http_requests_total{method=\"GET\",route=\"/v1.1/instances/{instance}/channels/{channel}/history\",status=\"200\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn rate_limits_and_log_in_throttles_are_counted_by_scope() {
    let app = TestApp::spawn_with(|args| {
        args.rate_anon = 1;
        args.rate_instance = 1;
        args.rate_login = 1;
        args.login_max_failures = 0;
    })
    .await;
    // Two anonymous requests in one second: the second is refused.
    let mut anon_refused = 0;
    for _ in 0..3 {
        if app.get("/v1.1/instances/", None).await.status == 429 {
            anon_refused += 1;
        }
    }
    assert!(anon_refused >= 1);
    // Requests with a key spend its instance's budget, one a second here: set up slowly.
    app.create_instance("rivia").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let key = app.create_api_key("rivia", json!({})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut instance_refused = 0;
    for _ in 0..3 {
        let resp = app.get("/v1.1/instances/rivia/channels/", Some(&key)).await;
        if resp.status == 429 {
            instance_refused += 1;
        }
    }
    // The log-in budget: one check a minute from this address. A second apart, so that the
    // anonymous budget (one a second) is fresh for each: the second and third are refused by
    // the log-in budget.
    let mut logins_refused = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let resp = app
            .post(
                "/v1.1/account/auth/",
                None,
                json!({"email": "nobody@example.com", "password": "wrong"}),
            )
            .await;
        if resp.status == 429 {
            logins_refused += 1;
        }
    }
    let samples = scrape(&app).await;
    assert!(
        value(&samples, "herald_rate_limited_total{limit=\"anon\"}") >= f64::from(anon_refused)
    );
    assert!(instance_refused >= 1, "the instance budget never refused");
    assert!(
        value(&samples, "herald_rate_limited_total{limit=\"instance\"}")
            >= f64::from(instance_refused)
    );
    assert_eq!(logins_refused, 2);
    assert_eq!(
        value(&samples, "herald_login_throttled_total{scope=\"ip\"}"),
        2.0
    );
    assert_eq!(
        value(&samples, "herald_login_throttled_total{scope=\"identity\"}"),
        0.0
    );
}

#[tokio::test]
async fn the_token_guards_metrics() {
    let app = TestApp::spawn_with(|args| {
        args.metrics_token = Some(herald::config::MetricsToken("s3cret-token".into()));
    })
    .await;
    for authorization in [
        None,
        Some("Bearer wrong"),
        Some("s3cret-token"),
        Some("Basic s3cret-token"),
    ] {
        let mut request = app.request(Method::GET, "/metrics", None);
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let resp = app.send(request).await;
        assert_eq!(resp.status, 401, "{authorization:?}");
        assert_eq!(resp.text, "", "a 401 has an empty body");
    }
    let resp = app
        .send(
            app.request(Method::GET, "/metrics", None)
                .header("authorization", "Bearer s3cret-token"),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert!(resp.text.contains("# TYPE herald_connections gauge"));
}

#[tokio::test]
async fn metrics_listen_moves_metrics_to_their_own_port() {
    // A free port: bound, then released for the server.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = probe.local_addr().unwrap();
    drop(probe);
    let app = TestApp::spawn_with(|args| args.metrics_listen = Some(metrics_addr)).await;
    app.get("/metrics", None).await.assert_status(404);
    let url = format!("http://{metrics_addr}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        match app.client.get(&url).send().await {
            Ok(resp) if resp.status() == 200 => break resp.text().await.unwrap(),
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("the metrics port never answered: {other:?}"),
        }
    };
    assert!(text.contains("# TYPE herald_http_requests_total counter"));
    // The API's own requests are counted; the one to the metrics port is not API traffic.
    assert!(text.contains("route=\"unmatched\",status=\"404\""));
}

#[tokio::test]
async fn pruning_and_resume_gaps_are_counted() {
    let app = TestApp::spawn_with(|args| {
        args.history_max_channel_messages = 2;
        args.prune_interval = Duration::from_millis(50);
        args.poll_timeout = Duration::from_secs(1);
    })
    .await;
    let key = rivia(&app).await;
    for n in 0..5 {
        publish_to(&app, "lobby", n).await;
    }
    wait_for(&app, "herald_history_pruned_total", 3.0).await;
    app.get(
        "/v1.1/instances/rivia/channels/witchers/poll/?room=lobby&last_id=1",
        Some(&key),
    )
    .await
    .assert_status(200);
    app.get(
        "/v1.1/instances/rivia/channels/witchers/history/?room=lobby&last_id=1",
        Some(&key),
    )
    .await
    .assert_status(200);
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", "room=lobby&last_id=1"),
        Some(&key),
        &[],
    )
    .await;
    sse.next_event().await;
    let samples = wait_for(&app, "herald_resume_gaps_total{transport=\"sse\"}", 1.0).await;
    assert_eq!(value(&samples, "herald_history_pruned_total"), 3.0);
    for transport in ["poll", "history", "sse"] {
        assert_eq!(
            value(
                &samples,
                &format!("herald_resume_gaps_total{{transport=\"{transport}\"}}")
            ),
            1.0,
            "{transport}"
        );
    }
}

#[tokio::test]
async fn refused_poll_opens_are_counted_under_poll() {
    let app = TestApp::spawn_with(|args| args.rate_poll = 1).await;
    let key = rivia(&app).await;
    publish_to(&app, "lobby", 0).await;
    // A message waits, so every poll that is let in answers at once.
    let mut refused = 0;
    for _ in 0..3 {
        let resp = app
            .get(
                "/v1.1/instances/rivia/channels/witchers/poll/?room=lobby&last_id=0",
                Some(&key),
            )
            .await;
        if resp.status == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 1, "the poll budget never refused");
    let samples = scrape(&app).await;
    assert_eq!(
        value(&samples, "herald_rate_limited_total{limit=\"poll\"}"),
        f64::from(refused)
    );
}
