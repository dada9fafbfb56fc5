//! Hostile input: random JSON, random bytes, huge strings, deep nesting, odd content types and odd
//! unicode names thrown at the channel write endpoints. The server must never answer 5xx, never
//! drop the connection, always answer JSON in one of the two docs/api.md §2.4 error shapes, and keep
//! every message it acknowledged with 201.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, on_postgres};

const CASES: u32 = 96;

/// `default`-type channel open for publishing.
const OPEN: &str = "/v1.1/instances/rivia/channels/open";
/// `separate_rooms` channel open for publishing.
const ROOMS: &str = "/v1.1/instances/rivia/channels/rooms";
const CHANNELS: &str = "/v1.1/instances/rivia/channels/";

/// A response that arrived whole; `Err` when the connection failed.
struct Answer {
    status: u16,
    content_type: Option<String>,
    text: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

async fn setup() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.create_channel("rivia", json!({"name": "open", "custom_publish": true}))
        .await;
    app.create_channel(
        "rivia",
        json!({"name": "rooms", "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
    app
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    })
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Answer, TestCaseError> {
    let mut builder = app
        .client
        .request(method.clone(), app.url(path))
        .header("X-API-KEY", &app.admin_key)
        .body(body);
    if let Some(ct) = content_type {
        builder = builder.header("Content-Type", ct);
    }
    let resp = builder
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("{method} {path}: connection failed: {e}")))?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp
        .text()
        .await
        .map_err(|e| TestCaseError::fail(format!("{method} {path}: body cut off: {e}")))?;
    Ok(Answer {
        status,
        content_type,
        text,
    })
}

/// Checks the invariants every answer must keep and returns its JSON body.
fn check(answer: &Answer, what: &str) -> Result<Value, TestCaseError> {
    let brief: String = answer.text.chars().take(300).collect();
    prop_assert!(
        answer.status < 500,
        "{what}: server error {}: {brief}",
        answer.status
    );
    prop_assert_eq!(
        answer.content_type.as_deref(),
        Some("application/json; charset=utf-8"),
        "{}: status {}: {}",
        what,
        answer.status,
        brief
    );
    let body: Value = serde_json::from_str(&answer.text)
        .map_err(|e| TestCaseError::fail(format!("{what}: not JSON ({e}): {brief}")))?;
    let object = body
        .as_object()
        .ok_or_else(|| TestCaseError::fail(format!("{what}: not an object: {brief}")))?;
    if answer.status >= 400 {
        prop_assert!(!object.is_empty(), "{what}: empty error body");
        if object.contains_key("detail") {
            prop_assert!(
                object.len() == 1 && object["detail"].is_string(),
                "{what}: malformed general error: {brief}"
            );
        } else {
            for (field, messages) in object {
                let ok = messages.is_string()
                    || messages
                        .as_array()
                        .is_some_and(|list| !list.is_empty() && list.iter().all(Value::is_string));
                prop_assert!(ok, "{what}: field {field} does not hold messages: {brief}");
            }
        }
    }
    Ok(body)
}

/// After a 201 publish, the message must be readable from history with the same payload.
async fn check_published(
    app: &TestApp,
    channel: &str,
    message: &Value,
) -> Result<(), TestCaseError> {
    let id = message["id"]
        .as_i64()
        .ok_or_else(|| TestCaseError::fail(format!("publish without id: {message}")))?;
    let path = format!("{channel}/history/{id}/");
    let answer = send(app, Method::GET, &path, None, Vec::new()).await?;
    let stored = check(&answer, &path)?;
    prop_assert_eq!(answer.status, 200, "history lost message {}", id);
    prop_assert!(
        same_json(&stored["payload"], &message["payload"]),
        "history payload {} differs from the published {}",
        stored["payload"],
        message["payload"]
    );
    prop_assert_eq!(&stored["room"], &message["room"]);
    Ok(())
}

/// Structural equality, with floats compared to a relative 1e-12: float precision has its own
/// exact test below, and must not mask every other finding of the property runs.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Publishes `body` and checks the answer (and the history when it was accepted).
async fn publish_and_check(
    app: &TestApp,
    channel: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<u16, TestCaseError> {
    let path = format!("{channel}/publish/");
    let answer = send(app, Method::POST, &path, content_type, body).await?;
    let value = check(&answer, &path)?;
    if answer.status == 201 {
        check_published(app, channel, &value).await?;
    }
    Ok(answer.status)
}

async fn assert_healthy(app: &TestApp) {
    app.get("/health", None).await.assert(
        200,
        json!({"status": "ok", "version": "0.1.0", "storage": "ok", "fanout": "local"}),
    );
}

// Strategies

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        prop_oneof![
            Just("payload"),
            Just("room"),
            Just("{}"),
            Just("[]"),
            Just("null"),
            Just("{\"a\": 1}"),
            Just("  "),
            Just("true"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 256, 24, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..24).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("payload".to_owned()),
                    Just("room".to_owned()),
                    Just("name".to_owned()),
                    Just("type".to_owned()),
                    Just("description".to_owned()),
                    Just("custom_publish".to_owned()),
                    Just("group".to_owned()),
                    Just("other_permissions".to_owned()),
                    Just("_api_key".to_owned()),
                    ".{0,12}",
                ],
                inner,
                0..24
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A publish body built around the fields the endpoint reads.
fn publish_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_json(),
        (any_json(), any_json())
            .prop_map(|(payload, room)| json!({"payload": payload, "room": room})),
        (any_json(), ".{0,140}")
            .prop_map(|(payload, room)| json!({"payload": payload, "room": room})),
        (any_json(), ".{0,20}")
            .prop_map(|(payload, room)| json!({"payload": payload.to_string(), "room": room})),
    ]
}

fn odd_content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        Just(None),
        Just(Some("application/json")),
        Just(Some("application/json; charset=utf-8")),
        Just(Some("application/json; charset=latin1")),
        Just(Some("APPLICATION/JSON")),
        Just(Some("application/x-www-form-urlencoded")),
        Just(Some("multipart/form-data")),
        Just(Some("multipart/form-data; boundary=xyz")),
        Just(Some("multipart/form-data; boundary=")),
        Just(Some("text/plain")),
        Just(Some("*/*")),
        Just(Some("application")),
        Just(Some("")),
        Just(Some(";;;")),
        Just(Some("application/json; boundary=\"")),
        Just(Some("image/png")),
    ]
}

fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        // Bytes that look like the start of something.
        (
            prop_oneof![
                Just(b"{".to_vec()),
                Just(b"[".to_vec()),
                Just(b"--xyz\r\n".to_vec()),
                Just(b"payload=".to_vec()),
                Just(b"\xef\xbb\xbf{".to_vec()),
            ],
            prop::collection::vec(any::<u8>(), 0..256),
        )
            .prop_map(|(mut head, tail)| {
                head.extend(tail);
                head
            }),
    ]
}

/// Names that stress decoding and normalisation.
fn odd_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("🐺".to_owned()),
        Just("👩‍👩‍👧".to_owned()),
        Just("\u{202E}".to_owned()),
        Just("שלום".to_owned()),
        Just("مرحبا".to_owned()),
        Just("\u{0000}".to_owned()),
        Just("e\u{0301}".to_owned()),
        Just("\u{0301}\u{0308}\u{20DD}".to_owned()),
        Just("İ".to_owned()),
        Just("ß".to_owned()),
        Just("\u{FEFF}".to_owned()),
        Just("%".to_owned()),
        Just("%2F".to_owned()),
        Just("/".to_owned()),
        Just("..".to_owned()),
        Just("?#".to_owned()),
        Just(" ".to_owned()),
        Just("\t\n".to_owned()),
        Just("a".to_owned()),
        Just("Witchers".to_owned()),
        Just("-".to_owned()),
        Just("_".to_owned()),
        "[a-z0-9_-]{1,8}",
        "\\PC{1,4}",
    ];
    prop_oneof![
        prop::collection::vec(piece.clone(), 1..8).prop_map(|p| p.concat()),
        (piece, 20usize..400).prop_map(|(p, n)| p.repeat(n)),
    ]
}

/// Percent-encodes everything but unreserved ASCII, so the name reaches the server intact.
fn path_segment(name: &str) -> String {
    let mut out = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// Properties

#[test]
fn random_json_bodies_never_break_publish_and_accepted_messages_reach_history() {
    let rt = runtime();
    let app = rt.block_on(setup());
    let strategy = (publish_body(), prop::bool::ANY);
    let accepted = std::cell::Cell::new(0u32);
    runner()
        .run(&strategy, |(body, rooms)| {
            rt.block_on(async {
                let channel = if rooms { ROOMS } else { OPEN };
                let path = format!("{channel}/publish/");
                let bytes = serde_json::to_vec(&body).unwrap();
                let answer =
                    send(&app, Method::POST, &path, Some("application/json"), bytes).await?;
                let message = check(&answer, &path)?;
                if answer.status == 201 {
                    accepted.set(accepted.get() + 1);
                    check_published(&app, channel, &message).await?;
                    // An object payload is stored as sent; an absent or null one becomes {}.
                    let expected = match body.get("payload") {
                        Some(Value::Object(object)) => Some(Value::Object(object.clone())),
                        None | Some(Value::Null) => Some(json!({})),
                        Some(_) => None,
                    };
                    if let Some(expected) = expected {
                        prop_assert!(
                            same_json(&message["payload"], &expected),
                            "stored payload {} differs from the sent {}",
                            message["payload"],
                            expected
                        );
                    }
                }
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    assert!(accepted.get() > 0, "no generated publish was ever accepted");
    rt.block_on(assert_healthy(&app));
}

#[test]
fn random_json_bodies_never_break_channel_create_and_update() {
    let rt = runtime();
    let app = rt.block_on(setup());
    runner()
        .run(&(any_json(), any_json()), |(create, update)| {
            rt.block_on(async {
                let answer = send(
                    &app,
                    Method::POST,
                    CHANNELS,
                    Some("application/json"),
                    serde_json::to_vec(&create).unwrap(),
                )
                .await?;
                let created = check(&answer, "create")?;
                if answer.status == 201 {
                    let name = created["name"].as_str().unwrap_or_default().to_owned();
                    let path = format!("{CHANNELS}{}/", path_segment(&name));
                    let read = send(&app, Method::GET, &path, None, Vec::new()).await?;
                    check(&read, &path)?;
                    prop_assert_eq!(read.status, 200, "created channel {} unreadable", name);
                }
                let path = format!("{OPEN}/");
                let answer = send(
                    &app,
                    Method::PATCH,
                    &path,
                    Some("application/json"),
                    serde_json::to_vec(&update).unwrap(),
                )
                .await?;
                check(&answer, "patch")?;
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    rt.block_on(assert_healthy(&app));
}

#[test]
fn random_bytes_with_odd_content_types_never_break_the_write_endpoints() {
    let rt = runtime();
    let app = rt.block_on(setup());
    let strategy = (random_bytes(), odd_content_type(), 0usize..4);
    runner()
        .run(&strategy, |(bytes, content_type, target)| {
            rt.block_on(async {
                match target {
                    0 => {
                        publish_and_check(&app, OPEN, content_type, bytes).await?;
                    }
                    1 => {
                        publish_and_check(&app, ROOMS, content_type, bytes).await?;
                    }
                    2 => {
                        let answer =
                            send(&app, Method::POST, CHANNELS, content_type, bytes).await?;
                        check(&answer, "create")?;
                    }
                    _ => {
                        let path = format!("{OPEN}/");
                        let answer = send(&app, Method::PATCH, &path, content_type, bytes).await?;
                        check(&answer, "patch")?;
                    }
                }
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    rt.block_on(assert_healthy(&app));
    // After the abuse the server still shuts down cleanly, its database file in place.
    assert!(on_postgres() || app.dir.path().join("herald.db").is_file());
    rt.block_on(app.stop()).expect("graceful shutdown");
}

#[test]
fn huge_strings_around_the_publish_limit_never_break_publish() {
    let rt = runtime();
    let app = rt.block_on(setup());
    let strategy = (
        0usize..70_000,
        prop_oneof![Just('x'), Just('ż'), Just('🐺'), Just('"'), Just('\u{0}')],
        0usize..3,
    );
    let mut cfg = Config::with_cases(48);
    cfg.failure_persistence = None;
    cfg.max_shrink_iters = 64;
    TestRunner::new(cfg)
        .run(&strategy, |(len, ch, shape)| {
            rt.block_on(async {
                let text: String = std::iter::repeat_n(ch, len / ch.len_utf8().max(1)).collect();
                let (channel, body) = match shape {
                    0 => (OPEN, json!({"payload": {"text": text}})),
                    1 => (ROOMS, json!({"payload": {"n": 1}, "room": text})),
                    _ => (OPEN, json!({"payload": text})),
                };
                let status = publish_and_check(
                    &app,
                    channel,
                    Some("application/json"),
                    serde_json::to_vec(&body).unwrap(),
                )
                .await?;
                let size = serde_json::to_vec(&body).unwrap().len();
                if size > 65_536 {
                    prop_assert_eq!(status, 413, "{} bytes", size);
                }
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    rt.block_on(assert_healthy(&app));
}

#[test]
fn odd_unicode_names_never_break_the_channel_endpoints() {
    let rt = runtime();
    let app = rt.block_on(setup());
    runner()
        .run(&odd_name(), |name| {
            rt.block_on(async {
                let answer = send(
                    &app,
                    Method::POST,
                    CHANNELS,
                    Some("application/json"),
                    serde_json::to_vec(&json!({"name": name, "custom_publish": true})).unwrap(),
                )
                .await?;
                let created = check(&answer, "create")?;
                if answer.status == 201 {
                    let stored = created["name"].as_str().unwrap_or_default();
                    prop_assert_eq!(stored, name.trim().to_lowercase());
                }
                let segment = path_segment(&name);
                let publish = format!("{CHANNELS}{segment}/publish/");
                let answer = send(
                    &app,
                    Method::POST,
                    &publish,
                    Some("application/json"),
                    br#"{"payload": {"n": 1}, "room": "r"}"#.to_vec(),
                )
                .await?;
                let message = check(&answer, &publish)?;
                if answer.status == 201 {
                    let channel = format!("{CHANNELS}{segment}");
                    check_published(&app, &channel, &message).await?;
                }
                let detail = format!("{CHANNELS}{segment}/");
                let answer = send(
                    &app,
                    Method::PATCH,
                    &detail,
                    Some("application/json"),
                    serde_json::to_vec(&json!({"description": name})).unwrap(),
                )
                .await?;
                check(&answer, &detail)?;
                // The name as a room, where any characters are allowed.
                publish_and_check(
                    &app,
                    ROOMS,
                    Some("application/json"),
                    serde_json::to_vec(&json!({"payload": {"n": 2}, "room": name})).unwrap(),
                )
                .await?;
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    rt.block_on(assert_healthy(&app));
}

#[test]
fn deeply_nested_bodies_are_refused_without_harm() {
    let rt = runtime();
    let app = rt.block_on(setup());
    rt.block_on(async {
        let depth = 10_000;
        // What the SPEC demands of each body, whatever depth limit a parser may have.
        #[derive(Clone, Copy, PartialEq)]
        enum Expect {
            /// Malformed, or never an object: 400 on every endpoint.
            Refused,
            /// The publish payload can never be an object: 400 on publish.
            PublishRefused,
            /// Valid JSON a parser may or may not accept: only the general invariants.
            Anything,
        }
        let bodies: Vec<(&str, String, Expect)> = vec![
            ("arrays", "[".repeat(depth), Expect::Refused),
            (
                "closed arrays",
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
                Expect::Refused,
            ),
            ("objects", "{\"a\":".repeat(depth), Expect::Refused),
            (
                "closed objects",
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)),
                Expect::Anything,
            ),
            (
                "deep payload",
                format!(
                    "{{\"payload\": {}{}}}",
                    "[".repeat(depth),
                    "]".repeat(depth)
                ),
                Expect::PublishRefused,
            ),
            (
                "deep payload string",
                serde_json::to_string(&json!({
                    "payload": format!("{}{}", "[".repeat(depth), "]".repeat(depth))
                }))
                .unwrap(),
                Expect::PublishRefused,
            ),
        ];
        for (label, body, expect) in bodies {
            for (method, path, is_publish) in [
                (Method::POST, format!("{OPEN}/publish/"), true),
                (Method::POST, CHANNELS.to_owned(), false),
                (Method::PATCH, format!("{OPEN}/"), false),
            ] {
                let what = format!("{label} {method} {path}");
                let answer = send(
                    &app,
                    method.clone(),
                    &path,
                    Some("application/json"),
                    body.clone().into_bytes(),
                )
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
                let value = check(&answer, &what).unwrap_or_else(|e| panic!("{e}"));
                if expect == Expect::Refused || (expect == Expect::PublishRefused && is_publish) {
                    assert_eq!(answer.status, 400, "{what}: {}", answer.text);
                }
                if is_publish && answer.status == 201 {
                    check_published(&app, OPEN, &value)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                }
            }
        }
        // Moderately nested payloads are fine and come back intact.
        let mut payload = json!({"leaf": true});
        for _ in 0..30 {
            payload = json!({"next": [payload]});
        }
        let message = app
            .publish("rivia", "open", json!({"payload": payload}))
            .await;
        let id = message["id"].as_i64().unwrap();
        let stored = app
            .get(&format!("{OPEN}/history/{id}/"), Some(&app.admin_key))
            .await;
        assert_eq!(stored.assert_status(200)["payload"], payload);
        assert_healthy(&app).await;
    });
}

/// Extracts `payload.x` from a message body without going through `serde_json::Value`, and parses
/// it with the standard library's correctly rounded float parser.
fn payload_x(text: &str) -> f64 {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        payload: std::collections::HashMap<String, &'a serde_json::value::RawValue>,
    }
    let message: Message = serde_json::from_str(text).expect("message");
    message.payload["x"].get().parse().expect("a number")
}

#[test]
fn numbers_in_a_payload_are_stored_and_returned_exactly() {
    let rt = runtime();
    let app = rt.block_on(setup());
    rt.block_on(async {
        let mut wrong = Vec::new();
        // A JSON number means the double nearest to it (correctly rounded, as `str::parse`
        // does); storing and returning it must not move it to a neighbouring double.
        for literal in [
            "6.06344244595404e-172",
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
            "2.2250738585072014e-308",
            "9007199254740993.0",
            "123456.789e3",
        ] {
            let expected: f64 = literal.parse().unwrap();
            let body = format!(r#"{{"payload": {{"x": {literal}}}}}"#);
            let answer = send(
                &app,
                Method::POST,
                &format!("{OPEN}/publish/"),
                Some("application/json"),
                body.into_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(answer.status, 201, "{}", answer.text);
            let published = payload_x(&answer.text);
            let id: Value = serde_json::from_str(&answer.text).unwrap();
            let path = format!("{OPEN}/history/{}/", id["id"]);
            let stored = app.get(&path, Some(&app.admin_key)).await;
            stored.assert_status(200);
            let history = payload_x(&stored.text);
            if published != expected || history != expected {
                wrong.push(format!(
                    "{literal}: published {published:e}, history {history:e}"
                ));
            }
        }
        assert!(wrong.is_empty(), "numbers changed:\n{}", wrong.join("\n"));
    });
}
