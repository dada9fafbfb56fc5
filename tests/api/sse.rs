//! Server-Sent Events (docs/api.md §9.10): headers, `retry:` first, one `id:`/`data:` event per
//! message, keepalive comments, `Last-Event-ID`, replay then live, `event: error` endings; and
//! the origin check of stream handshakes (§2.9).

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};

use crate::helpers::{Resp, TestApp};
use crate::poll::{
    PERMISSION_DENIED, QUIET, ROOM_REQUIRED, WAIT, id_of, publish_many, publish_to, read_resp,
    rivia, spawn_publisher, within, without_links,
};
use crate::websocket::{next_json, ws_open, ws_refused, ws_request, ws_url};

pub(crate) fn sse_path(channel: &str, query: &str) -> String {
    format!("/v1.1/instances/rivia/channels/{channel}/poll/?transport=sse&{query}")
}

/// An open event stream, read block by block.
pub(crate) struct Sse {
    pub headers: HeaderMap,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: Vec<u8>,
}

/// What the stream had to say next.
#[derive(Debug, PartialEq)]
pub(crate) enum Block {
    /// One block (an event or a comment), without its terminating blank line.
    Text(String),
    /// The response ended cleanly.
    End,
}

impl Sse {
    /// The next block within `bound`. A body that breaks off instead of ending fails the test.
    pub(crate) async fn next_block_within(&mut self, bound: Duration) -> Block {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(at) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..at + 2).take(at).collect();
                return Block::Text(String::from_utf8(block).expect("UTF-8 event stream"));
            }
            match timeout(deadline - Instant::now(), self.body.next()).await {
                Err(_) => panic!("no SSE block within {bound:?}"),
                Ok(None) => {
                    assert!(
                        self.buffer.is_empty(),
                        "the stream ended inside a block: {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    );
                    return Block::End;
                }
                Ok(Some(Ok(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Some(Err(err))) => panic!("the event stream broke off: {err}"),
            }
        }
    }

    pub(crate) async fn next_block(&mut self) -> Block {
        self.next_block_within(WAIT).await
    }

    /// The next block other than a keepalive comment.
    pub(crate) async fn next_event(&mut self) -> Block {
        self.next_event_within(WAIT).await
    }

    /// The next block other than a keepalive comment, each block within `bound`.
    pub(crate) async fn next_event_within(&mut self, bound: Duration) -> Block {
        loop {
            match self.next_block_within(bound).await {
                Block::Text(text) if text == ": keepalive" => {}
                other => return other,
            }
        }
    }

    /// The next message event, checked for the exact shape `id: <id>\ndata: <json>`; returns
    /// the parsed data.
    pub(crate) async fn next_message(&mut self) -> Value {
        self.next_message_within(WAIT).await
    }

    /// [`Sse::next_message`] with a bound of its own.
    pub(crate) async fn next_message_within(&mut self, bound: Duration) -> Value {
        let Block::Text(text) = self.next_event_within(bound).await else {
            panic!("the stream ended while a message was expected");
        };
        let lines: Vec<&str> = text.split('\n').collect();
        let [id_line, data_line] = lines[..] else {
            panic!("a message event has exactly an id and one data line: {text:?}");
        };
        let id = id_line
            .strip_prefix("id: ")
            .unwrap_or_else(|| panic!("expected `id: `: {text:?}"));
        let data = data_line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("expected `data: `: {text:?}"));
        let message: Value =
            serde_json::from_str(data).unwrap_or_else(|_| panic!("data is not JSON: {text:?}"));
        assert_eq!(id, id_of(&message).to_string(), "id field vs message id");
        message
    }

    pub(crate) async fn next_ids(&mut self, count: usize) -> Vec<i64> {
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(id_of(&self.next_message().await));
        }
        ids
    }

    /// Asserts an `event: error` with `{"detail": detail}` and then the end of the response.
    pub(crate) async fn expect_error_then_end(&mut self, detail: &str) {
        let block = self.next_event().await;
        let expected = format!("event: error\ndata: {}", json!({"detail": detail}));
        assert_eq!(block, Block::Text(expected));
        assert_eq!(self.next_event().await, Block::End);
    }
}

/// Sends an SSE request; `headers` are added as given.
pub(crate) async fn sse_request(
    app: &TestApp,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.request(Method::GET, path, key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    within("the SSE response head", request.send())
        .await
        .expect("request failed")
}

/// Opens a stream that must succeed, and checks that it starts with `retry: 2000`.
pub(crate) async fn sse_connect(
    app: &TestApp,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> Sse {
    sse_open(sse_request(app, path, key, headers).await).await
}

/// Takes over a stream's response, which must be a 200 that starts with `retry: 2000`.
pub(crate) async fn sse_open(resp: reqwest::Response) -> Sse {
    if resp.status() != 200 {
        let refused = read_resp(resp).await;
        panic!("SSE refused: {} {}", refused.status, refused.text);
    }
    let mut sse = Sse {
        headers: resp.headers().clone(),
        body: Box::pin(resp.bytes_stream()),
        buffer: Vec::new(),
    };
    assert_eq!(
        sse.next_block().await,
        Block::Text("retry: 2000".into()),
        "the stream starts with the retry field"
    );
    sse
}

/// A refused stream: the whole plain HTTP response.
async fn sse_refused(
    app: &TestApp,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    read_resp(sse_request(app, path, key, headers).await).await
}

#[tokio::test]
async fn an_sse_stream_answers_200_with_event_stream_headers_and_starts_with_retry() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let resp = sse_request(&app, &sse_path("witchers", "room=lobby"), Some(&key), &[]).await;
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").expect("Content-Type");
    assert_eq!(
        content_type.split(';').next().map(str::trim),
        Some("text/event-stream"),
        "Content-Type: {content_type}"
    );
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));

    let mut sse = Sse {
        headers: resp.headers().clone(),
        body: Box::pin(resp.bytes_stream()),
        buffer: Vec::new(),
    };
    assert_eq!(sse.next_block().await, Block::Text("retry: 2000".into()));
}

#[tokio::test]
async fn the_retry_field_follows_the_sse_retry_setting() {
    let app = TestApp::spawn_with(|a| a.sse_retry = Duration::from_millis(1500)).await;
    let key = rivia(&app).await;
    let resp = sse_request(&app, &sse_path("witchers", "room=lobby"), Some(&key), &[]).await;
    assert_eq!(resp.status(), 200);
    let mut sse = Sse {
        headers: resp.headers().clone(),
        body: Box::pin(resp.bytes_stream()),
        buffer: Vec::new(),
    };
    assert_eq!(sse.next_block().await, Block::Text("retry: 1500".into()));
}

#[tokio::test]
async fn each_message_is_one_event_with_its_id_and_one_line_of_json_without_links() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", "room=lobby&last_id=0"),
        Some(&key),
        &[],
    )
    .await;
    let published = app
        .publish(
            "rivia",
            "witchers",
            json!({"room": "lobby", "payload": {"text": "two\nlines", "nested": {"a": [1, 2]}}}),
        )
        .await;
    // `next_message` insists on exactly `id: <id>` and a single `data:` line, no `event:`.
    assert_eq!(sse.next_message().await, without_links(&published));
}

#[tokio::test]
async fn a_keepalive_comment_is_sent_every_sse_keepalive() {
    let app = TestApp::spawn_with(|a| a.sse_keepalive = Duration::from_millis(200)).await;
    let key = rivia(&app).await;
    let mut sse = sse_connect(&app, &sse_path("witchers", "room=lobby"), Some(&key), &[]).await;
    for _ in 0..2 {
        assert_eq!(
            sse.next_block_within(Duration::from_secs(2)).await,
            Block::Text(": keepalive".into())
        );
    }
}

#[tokio::test]
async fn the_last_event_id_header_wins_over_the_last_id_query() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let published = publish_many(&app, "lobby", 5).await;
    let query = format!("room=lobby&last_id={}", id_of(&published[0]));
    let header = id_of(&published[2]).to_string();
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", &query),
        Some(&key),
        &[("Last-Event-ID", &header)],
    )
    .await;
    assert_eq!(sse.next_message().await, without_links(&published[3]));
    assert_eq!(sse.next_message().await, without_links(&published[4]));

    // Without the header, the query applies.
    let mut sse = sse_connect(&app, &sse_path("witchers", &query), Some(&key), &[]).await;
    assert_eq!(sse.next_message().await, without_links(&published[1]));
}

#[tokio::test]
async fn an_invalid_last_event_id_header_is_rejected_with_400() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    for bad in ["abc", "-1", "2.5"] {
        sse_refused(
            &app,
            &sse_path("witchers", "room=lobby&last_id=0"),
            Some(&key),
            &[("Last-Event-ID", bad)],
        )
        .await
        .assert(400, json!({"detail": "Invalid Last-Event-ID header."}));
    }
}

#[tokio::test]
async fn replay_then_live_has_no_gap_and_no_duplicate_at_the_seam() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let before: Vec<i64> = publish_many(&app, "lobby", 40)
        .await
        .iter()
        .map(id_of)
        .collect();
    let last_id = before[9];
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", &format!("room=lobby&last_id={last_id}")),
        Some(&key),
        &[],
    )
    .await;
    let during = spawn_publisher(&app, "lobby", 40);
    assert_eq!(sse.next_ids(30).await, before[10..]);
    let during = within("the publisher", during).await.expect("publisher");
    assert_eq!(sse.next_ids(during.len()).await, during);

    let sentinel = publish_to(&app, "lobby", 99).await;
    assert_eq!(sse.next_message().await, without_links(&sentinel));
}

#[tokio::test]
async fn without_last_id_only_messages_published_after_connecting_are_sent() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let old = publish_many(&app, "lobby", 3).await;
    let mut sse = sse_connect(&app, &sse_path("witchers", "room=lobby"), Some(&key), &[]).await;

    // The subscription starts shortly after the response head; publish until an event arrives.
    let mut newer = Vec::new();
    let first = loop {
        newer.push(publish_to(&app, "lobby", 10 + newer.len()).await);
        if let Ok(message) = timeout(Duration::from_secs(1), sse.next_message()).await {
            break message;
        }
        assert!(newer.len() < 5, "no event arrived");
    };
    assert!(
        old.iter().all(|m| m["id"] != first["id"]),
        "history was replayed: {first}"
    );
    let position = newer
        .iter()
        .position(|m| m["id"] == first["id"])
        .unwrap_or_else(|| panic!("not a message published after connecting: {first}"));
    assert_eq!(first, without_links(&newer[position]));
    for later in &newer[position + 1..] {
        assert_eq!(sse.next_message().await, without_links(later));
    }
}

#[tokio::test]
async fn a_stream_follows_only_its_lower_cased_room() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", "room=LOBBY&last_id=0"),
        Some(&key),
        &[],
    )
    .await;
    publish_to(&app, "kitchen", 0).await;
    let mine = app
        .publish(
            "rivia",
            "witchers",
            json!({"room": "Lobby", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(sse.next_message().await, without_links(&mine));
}

#[tokio::test]
async fn deleting_the_channel_sends_an_error_event_and_ends_the_stream() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let mut sse = sse_connect(&app, &sse_path("witchers", "room=lobby"), Some(&key), &[]).await;
    app.delete(
        "/v1.1/instances/rivia/channels/witchers/",
        Some(&app.admin_key),
    )
    .await
    .assert_status(204);
    sse.expect_error_then_end("Not found.").await;
}

#[tokio::test]
async fn deleting_the_streams_api_key_sends_a_permission_error_event_and_ends_the_stream() {
    let app = TestApp::spawn().await;
    rivia(&app).await;
    let created = app
        .post(
            "/v1.1/instances/rivia/api_keys/",
            Some(&app.admin_key),
            json!({"ignore_acl": true}),
        )
        .await;
    let created = created.assert_status(201);
    let key = created["api_key"].as_str().expect("api_key").to_owned();
    let id = created["id"].as_i64().expect("id");
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", &format!("room=lobby&api_key={key}")),
        None,
        &[],
    )
    .await;
    app.delete(
        &format!("/v1.1/instances/rivia/api_keys/{id}/"),
        Some(&app.admin_key),
    )
    .await
    .assert_status(204);
    within(
        "the stream to end",
        sse.expect_error_then_end(PERMISSION_DENIED),
    )
    .await;
}

#[tokio::test]
async fn failed_checks_are_answered_with_plain_http() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    let bare = app.create_api_key("rivia", json!({})).await;
    let reader = app
        .create_api_key("rivia", json!({"allow_anonymous_read": true}))
        .await;
    let denied = json!({"detail": PERMISSION_DENIED});
    let path = sse_path("witchers", "room=lobby");
    sse_refused(&app, &path, None, &[])
        .await
        .assert(403, denied.clone());
    sse_refused(&app, &path, Some(&bare), &[])
        .await
        .assert(403, denied.clone());
    sse_refused(&app, &path, Some(&reader), &[])
        .await
        .assert(403, denied.clone());
    sse_refused(&app, &sse_path("ghosts", "room=lobby"), Some(&key), &[])
        .await
        .assert(404, json!({"detail": "Not found."}));
    sse_refused(&app, &sse_path("witchers", ""), Some(&key), &[])
        .await
        .assert(400, json!({"room": ROOM_REQUIRED}));
    sse_refused(
        &app,
        &sse_path("witchers", "room=lobby&last_id=z"),
        Some(&key),
        &[],
    )
    .await
    .assert(400, json!({"last_id": ["A valid integer is required."]}));
}

fn listed_origin(a: &mut herald::config::ServeArgs) {
    a.cors_origins = herald::config::CorsOrigins::List(vec!["https://ok.example".into()]);
}

#[tokio::test]
async fn a_stream_handshake_from_an_unlisted_origin_is_refused_with_403() {
    let app = TestApp::spawn_with(listed_origin).await;
    let key = rivia(&app).await;
    let refusal = json!({"detail": "Origin not allowed."});

    sse_refused(
        &app,
        &sse_path("witchers", "room=lobby"),
        Some(&key),
        &[("Origin", "https://evil.example")],
    )
    .await
    .assert(403, refusal.clone());

    let url = ws_url(&app, "witchers", &format!("room=lobby&api_key={key}"));
    assert_eq!(
        ws_refused(ws_request(&url, Some("https://evil.example"))).await,
        (403, refusal)
    );
}

#[tokio::test]
async fn a_listed_origin_or_no_origin_may_open_a_stream() {
    let app = TestApp::spawn_with(listed_origin).await;
    let key = rivia(&app).await;
    let path = sse_path("witchers", "room=lobby&last_id=0");
    let mut listed =
        sse_connect(&app, &path, Some(&key), &[("Origin", "https://ok.example")]).await;
    assert_eq!(
        listed
            .headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://ok.example")
    );
    let mut anywhere = sse_connect(&app, &path, Some(&key), &[]).await;

    let url = ws_url(
        &app,
        "witchers",
        &format!("room=lobby&last_id=0&api_key={key}"),
    );
    let mut ws_listed = ws_open(ws_request(&url, Some("https://ok.example"))).await;
    let mut ws_anywhere = ws_open(ws_request(&url, None)).await;

    let message = without_links(&publish_to(&app, "lobby", 0).await);
    assert_eq!(listed.next_message().await, message);
    assert_eq!(anywhere.next_message().await, message);
    assert_eq!(next_json(&mut ws_listed).await, message);
    assert_eq!(next_json(&mut ws_anywhere).await, message);
}

#[tokio::test]
async fn an_idle_stream_sends_nothing_but_keepalives() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    publish_many(&app, "lobby", 2).await;
    // Without last_id the history above is not sent; the stream stays silent.
    let mut sse = sse_connect(&app, &sse_path("witchers", "room=lobby"), Some(&key), &[]).await;
    if let Ok(block) = timeout(QUIET, sse.next_event()).await {
        panic!("unexpected block on an idle stream: {block:?}");
    }
}
