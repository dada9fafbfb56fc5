//! Graceful shutdown (docs/api.md §11.3): waiting polls answer 204, WebSockets close with 1001, SSE
//! streams end, in-flight publishes finish, and the server is done within `shutdown_grace`.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::TestApp;
use crate::poll::{QUIET, id_of, publish_to, rivia, spawn_get, within, without_links};
use crate::sse::{Block, sse_connect, sse_path};
use crate::websocket::{ws_connect, ws_connect_slow_reader};

const GRACE: Duration = Duration::from_secs(2);
/// Scheduling slack on top of the grace period.
const MARGIN: Duration = Duration::from_millis(1500);

/// A publish whose headers the server has read and whose body it is waiting for: it sends
/// `Expect: 100-continue` and returns once the server asked for the body.
async fn start_publish(app: &TestApp, body: &Value) -> TcpStream {
    let body = body.to_string();
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!(
        "POST /v1.1/instances/rivia/channels/witchers/publish/ HTTP/1.1\r\n\
         Host: {}\r\nX-API-KEY: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        app.addr,
        app.admin_key,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("send head");
    let interim = within("100 Continue", read_head(&mut tcp)).await;
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "expected 100 Continue, got {interim:?}"
    );
    tcp
}

/// Reads one response head, byte by byte, up to and including the blank line.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tcp.read_u8().await.expect("read response head");
        head.push(byte);
    }
    String::from_utf8(head).expect("UTF-8 head")
}

/// Sends the body of a started publish and reads the whole response: (status line, body).
async fn finish_publish(mut tcp: TcpStream, body: &Value) -> (String, Value) {
    tcp.write_all(body.to_string().as_bytes())
        .await
        .expect("send body");
    let mut response = Vec::new();
    within("the publish response", tcp.read_to_end(&mut response))
        .await
        .expect("read response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, payload) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_owned();
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_owned()
    };
    let json = serde_json::from_str(&payload)
        .unwrap_or_else(|_| panic!("non-JSON publish response: {response:?}"));
    (status, json)
}

fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = raw.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        raw = &rest[size + 2..];
    }
}

#[tokio::test]
async fn shutdown_answers_polls_204_closes_websockets_1001_ends_sse_and_finishes_publishes() {
    let app = TestApp::spawn_with(|a| a.shutdown_grace = GRACE).await;
    let key = rivia(&app).await;
    let last = id_of(&publish_to(&app, "lobby", 0).await);

    let mut poll = spawn_get(
        &app,
        &format!("/v1.1/instances/rivia/channels/witchers/poll/?room=lobby&last_id={last}"),
        Some(&key),
    );
    if let Ok(answer) = tokio::time::timeout(QUIET, &mut poll).await {
        panic!("the poll answered before anything happened: {answer:?}");
    }
    let mut ws = ws_connect(&app, &format!("api_key={key}&room=lobby&last_id={last}")).await;
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", &format!("room=lobby&last_id={last}")),
        Some(&key),
        &[],
    )
    .await;
    let in_flight = json!({"room": "lobby", "payload": {"n": "in flight"}});
    let publish = start_publish(&app, &in_flight).await;

    let started = Instant::now();
    let stop = tokio::spawn(app.stop());

    // The poll's 204 shows that shutdown has begun; only then does the publish send its body.
    let resp = within("the poll to end", poll).await.expect("poll task");
    assert_eq!(
        (resp.status, resp.text.as_str()),
        (204, ""),
        "a waiting poll ends with an empty 204"
    );
    let (status, message) = finish_publish(publish, &in_flight).await;
    assert!(
        status.starts_with("HTTP/1.1 201"),
        "the in-flight publish got {status:?}: {message}"
    );
    assert_eq!(message["payload"], in_flight["payload"]);
    assert!(id_of(&message) > last);

    // Streams: the WebSocket closes with 1001 and no error frame; the SSE response ends
    // without an error event. The in-flight message may or may not reach them first.
    let close = within("the WebSocket to close", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    assert_eq!(frame, without_links(&message), "unexpected frame");
                }
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    loop {
        match sse.next_event().await {
            Block::End => break,
            Block::Text(text) => assert!(
                text.starts_with(&format!("id: {}\n", id_of(&message))),
                "unexpected SSE block during shutdown: {text:?}"
            ),
        }
    }

    match timeout_at(started + GRACE + MARGIN, stop).await {
        Ok(result) => result
            .expect("server task")
            .expect("server stopped cleanly"),
        Err(_) => panic!("the server was still running after the {GRACE:?} grace period"),
    }
}

#[tokio::test]
async fn shutdown_finishes_within_the_grace_period_even_if_stream_clients_never_read() {
    let app = TestApp::spawn_with(|a| a.shutdown_grace = GRACE).await;
    let key = rivia(&app).await;
    // A WebSocket client that never reads, with the server's writes to it stuck on full
    // socket buffers, and a waiting SSE stream that is never read either.
    let _stuck = ws_connect_slow_reader(&app, &format!("api_key={key}&room=lobby&last_id=0")).await;
    let sse_resp = app
        .request(
            reqwest::Method::GET,
            &sse_path("witchers", "room=lobby&last_id=0"),
            Some(&key),
        )
        .send()
        .await
        .expect("SSE request");
    assert_eq!(sse_resp.status(), 200);
    let filler = "x".repeat(60_000);
    for n in 0..100 {
        within(
            "a publish",
            app.post(
                "/v1.1/instances/rivia/channels/witchers/publish/",
                Some(&app.admin_key),
                json!({"room": "lobby", "payload": {"n": n, "filler": filler}}),
            ),
        )
        .await
        .assert_status(201);
    }

    let started = Instant::now();
    match timeout_at(started + GRACE + MARGIN, app.stop()).await {
        Ok(result) => result.expect("server stopped cleanly"),
        Err(_) => panic!("the server was still running after the {GRACE:?} grace period"),
    }
    drop(sse_resp);
}
