//! Connections and timeouts (docs/api.md §2.10), shown over raw sockets: what a slowloris client sends,
//! byte by byte, and when the server hangs up on it.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::TestApp;
use crate::poll::{publish_to, rivia};
use crate::websocket::ws_connect;

const AT_LIMIT: &str = "Server is at its connection limit.";

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.expect("connect")
}

/// Reads until the server closes the connection (or resets it), failing after `limit`.
/// Returns what was read and how long the server took to close.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(started + limit, stream.read(&mut buf)).await {
            Err(_) => {
                let text = String::from_utf8_lossy(&received);
                let tail: String = text
                    .chars()
                    .rev()
                    .take(300)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                panic!(
                    "the server kept the connection open for {limit:?}; it sent {} bytes, ending {tail:?}",
                    received.len()
                )
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// The JSON body of a raw HTTP/1.1 response.
fn body_of(response: &str) -> Value {
    let (_, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no body in {response:?}"));
    serde_json::from_str(body).unwrap_or_else(|_| panic!("non-JSON body in {response:?}"))
}

/// A complete keyless request on a raw socket, and its answer's status line.
async fn health_over(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The server answers 408 with `detail` and closes, about a second (the timeout) from now.
async fn closed_with_408_after_a_second(stream: &mut TcpStream, detail: &str) {
    let (response, took) = read_until_closed(stream, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
    assert_eq!(body_of(&response), json!({ "detail": detail }));
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|args| args.header_read_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    closed_with_408_after_a_second(&mut stream, "Request header timeout.").await;
    let samples = crate::metrics::scrape(&app).await;
    let sample = "herald_connections_rejected_total{reason=\"header_timeout\"}";
    assert_eq!(crate::metrics::value(&samples, sample), 1.0);
}

#[tokio::test]
async fn a_request_that_stops_halfway_through_its_headers_is_answered_408_and_closed() {
    let app = TestApp::spawn_with(|args| args.header_read_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (response, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
}

#[tokio::test]
async fn dribbling_one_header_line_at_a_time_does_not_extend_the_header_timeout() {
    let app = TestApp::spawn_with(|args| args.header_read_timeout = Duration::from_secs(2)).await;
    let stream = connect(&app).await;
    let (mut reader, mut writer) = stream.into_split();
    let dribbler = tokio::spawn(async move {
        let _ = writer.write_all(b"GET /health HTTP/1.1\r\n").await;
        for n in 0.. {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let line = format!("X-Dribble-{n}: {n}\r\n");
            if writer.write_all(line.as_bytes()).await.is_err() {
                return n;
            }
        }
        unreachable!()
    });
    let started = Instant::now();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), reader.read_to_end(&mut received));
    let _ = read
        .await
        .expect("the server kept the dribbling connection open");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    assert!(took >= Duration::from_millis(1800), "closed after {took:?}");
    assert!(
        String::from_utf8_lossy(&received).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    dribbler.abort();
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_request_body_timeout_and_closed() {
    let app = TestApp::spawn_with(|args| args.body_read_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    // Headers complete, then 10 of the 100 promised bytes, then nothing.
    stream
        .write_all(
            b"POST /v1.1/account/auth/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"email\": ",
        )
        .await
        .unwrap();
    closed_with_408_after_a_second(&mut stream, "Request body timeout.").await;
    let samples = crate::metrics::scrape(&app).await;
    let sample = "herald_connections_rejected_total{reason=\"body_timeout\"}";
    assert_eq!(crate::metrics::value(&samples, sample), 1.0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|args| {
        args.idle_timeout = Duration::from_secs(1);
        args.header_read_timeout = Duration::from_secs(10);
    })
    .await;
    let mut stream = connect(&app).await;
    // A kept-alive connection serves several requests while it is used...
    for _ in 0..3 {
        let answer = health_over(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // ...and is closed, quietly, once it has been idle for the idle timeout.
    let (rest, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    assert!(took >= Duration::from_millis(400), "closed after {took:?}");
    assert_eq!(rest, "");
}

#[tokio::test]
async fn waiting_polls_and_open_streams_outlive_the_header_and_idle_timeouts() {
    let app = TestApp::spawn_with(|args| {
        args.header_read_timeout = Duration::from_secs(1);
        args.idle_timeout = Duration::from_secs(1);
        args.body_read_timeout = Duration::from_secs(1);
        args.poll_timeout = Duration::from_secs(3);
    })
    .await;
    let key = rivia(&app).await;
    let mut ws = ws_connect(&app, &format!("room=lobby&api_key={key}")).await;
    let started = Instant::now();
    let path = format!("/v1.1/instances/rivia/channels/witchers/poll/?room=hall&api_key={key}");
    let resp = app.get(&path, None).await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert!(started.elapsed() >= Duration::from_millis(2900));
    // The WebSocket, open for over three timeouts, still delivers.
    let published = publish_to(&app, "lobby", 7).await;
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a frame")
        .expect("open")
        .expect("frame");
    let message: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(message["id"], published["id"]);
}

/// Opens connections that send nothing until one is refused; returns how many were let in.
async fn fill(app: &TestApp, up_to: usize) -> (Vec<TcpStream>, String) {
    let mut held = Vec::new();
    for _ in 0..=up_to {
        let mut stream = connect(app).await;
        // A refused connection is answered as soon as it sends its request.
        let answer = health_over(&mut stream).await;
        if answer.starts_with("HTTP/1.1 503") {
            return (held, answer);
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        held.push(stream);
    }
    panic!("{} connections were all let in", up_to + 1);
}

/// Fills the server up to a limit, shows the next connection refused, then shows the places
/// given back. The test client's own kept-alive connection may hold one of them.
async fn refused_over_the_limit(app: TestApp, limit: usize, reason: &str) {
    let (held, refused) = fill(&app, limit).await;
    assert!(
        (limit - 1..=limit).contains(&held.len()),
        "{} let in",
        held.len()
    );
    assert_eq!(body_of(&refused), json!({"detail": AT_LIMIT}));
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = health_over(&mut connect(&app).await).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let samples = crate::metrics::scrape(&app).await;
    let sample = format!("herald_connections_rejected_total{{reason=\"{reason}\"}}");
    assert_eq!(crate::metrics::value(&samples, &sample), 1.0);
}

#[tokio::test]
async fn connections_over_max_connections_are_answered_503() {
    let app = TestApp::spawn_with(|args| args.max_connections = 4).await;
    refused_over_the_limit(app, 4, "max_connections").await;
}

#[tokio::test]
async fn connections_over_max_connections_per_ip_are_answered_503() {
    let app = TestApp::spawn_with(|args| args.max_connections_per_ip = 3).await;
    refused_over_the_limit(app, 3, "per_ip").await;
}

/// Behind a trusted proxy every client shares the proxy's address: the per-IP limit counts
/// each forwarded client's requests in flight, waiting polls included.
#[tokio::test]
async fn behind_a_proxy_waiting_polls_count_against_the_forwarded_clients_limit() {
    let app = TestApp::spawn_with(|args| {
        args.max_connections_per_ip = 2;
        args.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        args.poll_timeout = Duration::from_secs(30);
    })
    .await;
    let key = rivia(&app).await;
    let poll_as = |client: &str| {
        let request = app
            .request(
                reqwest::Method::GET,
                &format!("/v1.1/instances/rivia/channels/witchers/poll/?room=hall&api_key={key}"),
                None,
            )
            .header("X-Forwarded-For", client);
        tokio::spawn(async move {
            let resp = request.send().await.expect("poll");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    let first = poll_as("203.0.113.7");
    let second = poll_as("203.0.113.7");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = poll_as("203.0.113.7").await.unwrap();
    assert_eq!(third, (503, json!({"detail": AT_LIMIT})));
    // Another client behind the same proxy is not affected.
    let other = poll_as("198.51.100.1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let published = publish_to(&app, "hall", 1).await;
    for poll in [first, second, other] {
        let (status, message) = poll.await.unwrap();
        assert_eq!(status, 200, "{message}");
        assert_eq!(message["id"], published["id"]);
    }
    // The places were given back with the answers.
    let again = poll_as("203.0.113.7");
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_to(&app, "hall", 2).await;
    assert_eq!(again.await.unwrap().0, 200);
}

/// A subscriber that stops reading: whatever fills the socket buffers, the server gives up on
/// the blocked write after `ws_send_timeout` and closes, instead of holding the stream forever.
async fn a_stream_that_stops_reading_is_closed(transport: &str) {
    let app = TestApp::spawn_with(|args| {
        args.ws_send_timeout = Duration::from_secs(1);
        // Far more than is published, so the queue never overflows: only the timeout can end it.
        args.stream_queue = 100_000;
    })
    .await;
    let key = rivia(&app).await;
    // A small receive buffer: the kernel would otherwise grow it to tens of megabytes.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(app.addr).await.expect("connect");
    let path = format!("/v1.1/instances/rivia/channels/witchers/poll/?room=lobby&api_key={key}");
    let request = match transport {
        "websocket" => format!(
            "GET {path}&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
        _ => format!("GET {path}&transport=sse HTTP/1.1\r\nHost: x\r\n\r\n"),
    };
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // About 24 MB of messages, far more than the socket buffers and the stream's queue hold.
    let payload = "x".repeat(60_000);
    let total = 400;
    for n in 0..total {
        app.publish(
            "rivia",
            "witchers",
            json!({"room": "lobby", "payload": {"n": n, "pad": payload}}),
        )
        .await;
    }
    // The buffers may have filled only just now: give the blocked write its full timeout
    // before reading, since reading unblocks it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Reading now drains what the buffers hold, then finds the connection closed.
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    let delivered = received.matches("\"pad\"").count();
    assert!(
        delivered < total,
        "all {total} messages arrived: the blocked stream was never closed"
    );
}

#[tokio::test]
async fn a_websocket_that_stops_reading_is_closed_after_ws_send_timeout() {
    a_stream_that_stops_reading_is_closed("websocket").await;
}

#[tokio::test]
async fn an_event_stream_that_stops_reading_is_closed_after_ws_send_timeout() {
    a_stream_that_stops_reading_is_closed("sse").await;
}
