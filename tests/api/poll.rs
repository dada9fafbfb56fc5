//! Long-poll (docs/api.md §9.8): answer at once with the oldest message after `last_id`, or wait for the
//! next one, or 204 after `poll_timeout`; errors in the order of §2.4.
//!
//! The shared fixtures of the realtime tests (poll, WebSocket, SSE, shutdown) live here.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::helpers::{Resp, TestApp};

/// Bound for anything that should happen promptly.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// How long a poll or stream is watched to show it does *not* answer.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

pub(crate) const ROOM_REQUIRED: &str = "This field is required for channels with separate rooms.";
pub(crate) const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Instance `rivia` with a `separate_rooms` channel `witchers` that allows publish; returns a
/// trusted (`ignore_acl`) API key of the instance.
pub(crate) async fn rivia(app: &TestApp) -> String {
    app.create_instance("rivia").await;
    app.create_channel(
        "rivia",
        json!({"name": "witchers", "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
    app.create_api_key("rivia", json!({"ignore_acl": true}))
        .await
}

/// Publishes `{"n": n}` to a room of `rivia/witchers` as the superuser.
pub(crate) async fn publish_to(app: &TestApp, room: &str, n: usize) -> Value {
    app.publish(
        "rivia",
        "witchers",
        json!({"room": room, "payload": {"n": n}}),
    )
    .await
}

/// Publishes `count` messages to a room of `rivia/witchers`, returning the stored messages.
pub(crate) async fn publish_many(app: &TestApp, room: &str, count: usize) -> Vec<Value> {
    let mut published = Vec::with_capacity(count);
    for n in 0..count {
        published.push(publish_to(app, room, n).await);
    }
    published
}

pub(crate) fn id_of(message: &Value) -> i64 {
    message["id"].as_i64().expect("message id")
}

/// A stored message as poll, WebSocket and SSE deliver it: without `links` (§9.5).
pub(crate) fn without_links(message: &Value) -> Value {
    let mut message = message.clone();
    let links = message
        .as_object_mut()
        .expect("message object")
        .remove("links");
    assert!(links.is_some(), "a stored message carries links: {message}");
    message
}

/// Reads a whole response into a [`Resp`] (what `TestApp::send` does, usable in spawned tasks).
pub(crate) async fn read_resp(resp: reqwest::Response) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        text,
        json,
    }
}

/// Starts a GET on its own task, so the test can act while it waits.
pub(crate) fn spawn_get(app: &TestApp, path: &str, key: Option<&str>) -> JoinHandle<Resp> {
    let request = app.request(Method::GET, path, key);
    tokio::spawn(async move { read_resp(request.send().await.expect("request failed")).await })
}

/// Publishes `count` messages to a room of `rivia/witchers` on its own task, one after the
/// other, returning their ids.
pub(crate) fn spawn_publisher(app: &TestApp, room: &str, count: usize) -> JoinHandle<Vec<i64>> {
    let client = app.client.clone();
    let url = app.url("/v1.1/instances/rivia/channels/witchers/publish/");
    let key = app.admin_key.clone();
    let room = room.to_owned();
    tokio::spawn(async move {
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let request = client
                .post(&url)
                .header("X-API-KEY", &key)
                .json(&json!({"room": room, "payload": {"n": n}}));
            let resp = read_resp(request.send().await.expect("publish")).await;
            ids.push(id_of(resp.assert_status(201)));
        }
        ids
    })
}

fn poll_path(channel: &str, query: &str) -> String {
    format!("/v1.1/instances/rivia/channels/{channel}/poll/?{query}")
}

/// Asserts a 200 poll answer delivering `published` (a message as stored, with `links`).
#[track_caller]
fn assert_delivered(resp: &Resp, published: &Value) {
    assert_eq!(resp.status, 200, "unexpected response: {}", resp.text);
    assert_eq!(resp.json, without_links(published), "body: {}", resp.text);
    assert!(
        resp.json.get("links").is_none(),
        "poll bodies carry no links"
    );
    let id = id_of(published).to_string();
    assert_eq!(resp.header("x-last-id"), Some(id.as_str()), "X-Last-Id");
    assert_eq!(
        resp.header("cache-control"),
        Some("no-cache"),
        "Cache-Control"
    );
}

/// Asserts that a spawned poll has not answered within [`QUIET`].
pub(crate) async fn assert_waiting(poll: &mut JoinHandle<Resp>) {
    if let Ok(answer) = timeout(QUIET, poll).await {
        panic!(
            "the poll answered although nothing new was published: {:?}",
            answer.expect("poll task")
        );
    }
}

async fn answer(poll: JoinHandle<Resp>) -> Resp {
    within("the poll to answer", poll).await.expect("poll task")
}

#[tokio::test]
async fn a_poll_with_last_id_answers_at_once_with_the_oldest_message_after_it() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let published = publish_many(&app, "lobby", 3).await;
    let first = id_of(&published[0]);

    let resp = app
        .get(
            &poll_path("witchers", &format!("room=lobby&last_id={first}")),
            Some(&key),
        )
        .await;
    assert_delivered(&resp, &published[1]);

    // `transport=poll` is the default spelled out; `last_id=0` starts from the beginning.
    let resp = app
        .get(
            &poll_path("witchers", "room=lobby&last_id=0&transport=poll"),
            Some(&key),
        )
        .await;
    assert_delivered(&resp, &published[0]);
}

#[tokio::test]
async fn a_waiting_poll_is_answered_by_the_next_publish() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let before = publish_to(&app, "lobby", 0).await;

    let mut poll = spawn_get(
        &app,
        &poll_path(
            "witchers",
            &format!("room=lobby&last_id={}", id_of(&before)),
        ),
        Some(&key),
    );
    assert_waiting(&mut poll).await;
    let published = publish_to(&app, "lobby", 1).await;
    assert_delivered(&answer(poll).await, &published);
}

#[tokio::test]
async fn a_poll_that_sees_nothing_answers_204_with_an_empty_body_after_the_poll_timeout() {
    let app = TestApp::spawn_with(|a| a.poll_timeout = Duration::from_secs(1)).await;
    let key = rivia(&app).await;
    let last = publish_to(&app, "lobby", 0).await;

    for query in [
        format!("room=lobby&last_id={}", id_of(&last)),
        "room=lobby".to_owned(),
    ] {
        let started = Instant::now();
        let resp = within(
            "the poll timeout",
            app.get(&poll_path("witchers", &query), Some(&key)),
        )
        .await;
        let waited = started.elapsed();
        assert_eq!(resp.status, 204, "unexpected response: {}", resp.text);
        assert_eq!(resp.text, "", "a 204 has an empty body");
        assert!(
            waited >= Duration::from_millis(900),
            "answered 204 after {waited:?}, before the 1 s poll timeout"
        );
    }
}

#[tokio::test]
async fn a_publish_to_another_room_does_not_wake_a_poller() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let last = publish_to(&app, "lobby", 0).await;

    let mut poll = spawn_get(
        &app,
        &poll_path("witchers", &format!("room=lobby&last_id={}", id_of(&last))),
        Some(&key),
    );
    assert_waiting(&mut poll).await;
    publish_to(&app, "kitchen", 1).await;
    assert_waiting(&mut poll).await;
    let mine = publish_to(&app, "lobby", 2).await;
    assert_delivered(&answer(poll).await, &mine);
}

#[tokio::test]
async fn rooms_are_lower_cased_so_a_publish_to_lobby_wakes_a_poller_of_lobby_and_vice_versa() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let last = publish_to(&app, "lobby", 0).await;

    let mut poll = spawn_get(
        &app,
        &poll_path("witchers", &format!("room=lobby&last_id={}", id_of(&last))),
        Some(&key),
    );
    assert_waiting(&mut poll).await;
    let upper = app
        .publish(
            "rivia",
            "witchers",
            json!({"room": "Lobby", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(upper["room"], "lobby");
    assert_delivered(&answer(poll).await, &upper);

    let mut poll = spawn_get(
        &app,
        &poll_path("witchers", &format!("room=Lobby&last_id={}", id_of(&upper))),
        Some(&key),
    );
    assert_waiting(&mut poll).await;
    let lower = publish_to(&app, "lobby", 2).await;
    assert_delivered(&answer(poll).await, &lower);
}

#[tokio::test]
async fn a_default_channel_ignores_the_room_of_polls_and_publishes() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    app.create_channel(
        "rivia",
        json!({"name": "news", "type": "default", "custom_publish": true}),
    )
    .await;
    let first = app
        .publish("rivia", "news", json!({"room": "x", "payload": {"n": 0}}))
        .await;
    assert_eq!(first["room"], Value::Null);

    for query in ["last_id=0", "room=y&last_id=0"] {
        let resp = app.get(&poll_path("news", query), Some(&key)).await;
        assert_delivered(&resp, &first);
    }

    let mut poll = spawn_get(
        &app,
        &poll_path("news", &format!("room=z&last_id={}", id_of(&first))),
        Some(&key),
    );
    assert_waiting(&mut poll).await;
    let second = app
        .publish("rivia", "news", json!({"room": "w", "payload": {"n": 1}}))
        .await;
    assert_delivered(&answer(poll).await, &second);
}

#[tokio::test]
async fn a_poll_without_last_id_returns_only_a_message_committed_after_it() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let old = publish_to(&app, "lobby", 0).await;

    let mut poll = spawn_get(&app, &poll_path("witchers", "room=lobby"), Some(&key));
    assert_waiting(&mut poll).await;
    // The server may accept the request a little after it was sent; publish until it answers,
    // which must be with one of the messages published after the request, never the old one.
    let mut newer = Vec::new();
    let resp = loop {
        newer.push(publish_to(&app, "lobby", newer.len() + 1).await);
        if let Ok(resp) = timeout(Duration::from_secs(1), &mut poll).await {
            break resp.expect("poll task");
        }
        assert!(newer.len() < 5, "the poll never answered");
    };
    assert_ne!(resp.json["id"], old["id"], "older history was returned");
    let delivered = newer
        .iter()
        .find(|m| m["id"] == resp.json["id"])
        .unwrap_or_else(|| panic!("not a message published after the poll: {}", resp.text));
    assert_delivered(&resp, delivered);
}

#[tokio::test]
async fn repeated_polls_with_the_previous_id_receive_every_message_exactly_once_in_order() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let start = publish_to(&app, "lobby", 0).await;
    const COUNT: usize = 30;

    // A concurrent publisher; the poller sometimes finds messages waiting, sometimes waits.
    let publisher = spawn_publisher(&app, "lobby", COUNT);

    let mut received = Vec::new();
    let mut last = id_of(&start);
    while received.len() < COUNT {
        let resp = within(
            "the next poll answer",
            app.get(
                &poll_path("witchers", &format!("room=lobby&last_id={last}")),
                Some(&key),
            ),
        )
        .await;
        assert_eq!(resp.status, 200, "unexpected response: {}", resp.text);
        last = id_of(&resp.json);
        assert_eq!(resp.header("x-last-id"), Some(last.to_string().as_str()));
        received.push(last);
    }
    let published = within("the publisher", publisher).await.expect("publisher");
    assert_eq!(received, published);
}

#[tokio::test]
async fn deleting_the_channel_ends_a_waiting_poll_with_404() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let last = publish_to(&app, "lobby", 0).await;

    let mut poll = spawn_get(
        &app,
        &poll_path("witchers", &format!("room=lobby&last_id={}", id_of(&last))),
        Some(&key),
    );
    assert_waiting(&mut poll).await;
    app.delete(
        "/v1.1/instances/rivia/channels/witchers/",
        Some(&app.admin_key),
    )
    .await
    .assert_status(204);
    answer(poll)
        .await
        .assert(404, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn a_separate_rooms_poll_without_a_room_is_rejected() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    for query in [
        "last_id=0",
        "room=&last_id=0",
        "room&last_id=0",
        "room=%20%20",
    ] {
        app.get(&poll_path("witchers", query), Some(&key))
            .await
            .assert(400, json!({"room": ROOM_REQUIRED}));
    }
}

#[tokio::test]
async fn a_bad_last_id_is_rejected_with_a_field_error() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    for bad in ["abc", "1.5", "1e3"] {
        app.get(
            &poll_path("witchers", &format!("room=lobby&last_id={bad}")),
            Some(&key),
        )
        .await
        .assert(400, json!({"last_id": ["A valid integer is required."]}));
    }
    app.get(&poll_path("witchers", "room=lobby&last_id=-1"), Some(&key))
        .await
        .assert(
            400,
            json!({"last_id": ["Ensure this value is greater than or equal to 0."]}),
        );
}

#[tokio::test]
async fn an_unknown_transport_is_rejected_with_a_field_error() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    app.get(
        &poll_path("witchers", "room=lobby&transport=foo"),
        Some(&key),
    )
    .await
    .assert(
        400,
        json!({"transport": ["\"foo\" is not a valid choice."]}),
    );
}

#[tokio::test]
async fn validation_errors_come_before_the_missing_room_error() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    app.get(&poll_path("witchers", "last_id=abc"), Some(&key))
        .await
        .assert(400, json!({"last_id": ["A valid integer is required."]}));
    app.get(&poll_path("witchers", "transport=foo"), Some(&key))
        .await
        .assert(
            400,
            json!({"transport": ["\"foo\" is not a valid choice."]}),
        );
}

#[tokio::test]
async fn polling_an_unknown_channel_or_instance_answers_404() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    app.get(&poll_path("ghosts", "room=lobby"), Some(&key))
        .await
        .assert(404, json!({"detail": "Not found."}));
    // Validation comes after existence.
    app.get(&poll_path("ghosts", "transport=foo&last_id=-1"), Some(&key))
        .await
        .assert(404, json!({"detail": "Not found."}));
    app.get(
        "/v1.1/instances/novigrad/channels/witchers/poll/?room=lobby",
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Instance was not found."}));
}

#[tokio::test]
async fn a_poll_without_valid_credentials_is_refused() {
    let app = TestApp::spawn().await;
    rivia(&app).await;
    app.get(&poll_path("witchers", "room=lobby"), None)
        .await
        .assert(403, json!({"detail": PERMISSION_DENIED}));
    app.get(
        &poll_path("witchers", "room=lobby"),
        Some("0123456789abcdef0123456789abcdef01234567"),
    )
    .await
    .assert(403, json!({"detail": "No such API Key."}));
}

#[tokio::test]
async fn a_bare_key_may_not_poll_even_an_unknown_channel() {
    let app = TestApp::spawn().await;
    rivia(&app).await;
    let bare = app.create_api_key("rivia", json!({})).await;
    app.patch(
        "/v1.1/instances/rivia/channels/witchers/",
        Some(&app.admin_key),
        json!({"other_permissions": "publish"}),
    )
    .await
    .assert_status(200);
    publish_to(&app, "lobby", 0).await;
    for channel in ["witchers", "ghosts"] {
        app.get(&poll_path(channel, "room=lobby&last_id=0"), Some(&bare))
            .await
            .assert(403, json!({"detail": PERMISSION_DENIED}));
    }
}

#[tokio::test]
async fn an_anonymous_reader_may_poll_only_channels_others_may_subscribe_to() {
    let app = TestApp::spawn().await;
    rivia(&app).await;
    let reader = app
        .create_api_key("rivia", json!({"allow_anonymous_read": true}))
        .await;
    let message = publish_to(&app, "lobby", 0).await;
    let path = poll_path("witchers", "room=lobby&last_id=0");

    app.get(&path, Some(&reader))
        .await
        .assert(403, json!({"detail": PERMISSION_DENIED}));
    // Permission (step 8) is checked before the missing room (step 10).
    app.get(&poll_path("witchers", "last_id=0"), Some(&reader))
        .await
        .assert(403, json!({"detail": PERMISSION_DENIED}));
    // An existing check (step 7) comes before permission.
    app.get(&poll_path("ghosts", "room=lobby"), Some(&reader))
        .await
        .assert(404, json!({"detail": "Not found."}));

    for level in ["subscribe", "publish"] {
        app.patch(
            "/v1.1/instances/rivia/channels/witchers/",
            Some(&app.admin_key),
            json!({"other_permissions": level}),
        )
        .await
        .assert_status(200);
        assert_delivered(&app.get(&path, Some(&reader)).await, &message);
    }
    // The key is accepted as a query parameter too (browsers).
    let resp = app
        .get(
            &format!("/v1.1/instances/rivia/channels/witchers/poll/?room=lobby&last_id=0&api_key={reader}"),
            None,
        )
        .await;
    assert_delivered(&resp, &message);
}

#[tokio::test]
async fn poll_opens_beyond_rate_poll_per_second_are_throttled() {
    let app = TestApp::spawn_with(|a| a.rate_poll = 2).await;
    let key = rivia(&app).await;
    let message = publish_to(&app, "lobby", 0).await;
    let path = poll_path("witchers", "room=lobby&last_id=0");

    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(app.get(&path, Some(&key)).await);
    }
    assert_delivered(&answers[0], &message);
    let throttled: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    assert!(
        !throttled.is_empty(),
        "10 polls in a row with rate_poll = 2 were all admitted"
    );
    for resp in throttled {
        resp.assert(
            429,
            json!({"detail": "Request was throttled. Expected available in 1 second."}),
        );
        assert_eq!(resp.header("retry-after"), Some("1"));
    }
    for resp in answers.iter().filter(|r| r.status != 429) {
        assert_delivered(resp, &message);
    }
}
