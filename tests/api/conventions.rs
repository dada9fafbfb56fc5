//! docs/api.md §2: URLs, request bodies, responses, common errors, limits, CORS and health.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp};

const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";
const JSON_UTF8: &str = "application/json; charset=utf-8";

/// An instance `rivia` with a `default`-type channel `witchers` that anyone with a key may
/// publish to.
async fn rivia() -> TestApp {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    app.create_channel(
        "rivia",
        json!({"name": "witchers", "custom_publish": true, "description": "Contract board"}),
    )
    .await;
    app
}

/// A client that reports redirects instead of following them.
fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Sends a request with a raw body and an explicit `Content-Type`.
async fn post_raw(app: &TestApp, path: &str, key: Option<&str>, ctype: &str, body: &str) -> Resp {
    app.send(
        app.request(Method::POST, path, key)
            .header("Content-Type", ctype)
            .body(body.to_owned()),
    )
    .await
}

/// A response read from a raw socket: status line code, header block and decoded body.
struct RawResp {
    status: u16,
    head: String,
    body: String,
}

/// Writes `request` verbatim to the server and reads the whole answer (the request must ask for
/// `Connection: close`). Decodes a chunked body if the server chose one.
async fn raw_http(app: &TestApp, request: &[u8]) -> RawResp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.expect("read");
    let text = String::from_utf8(bytes).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex size");
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    RawResp {
        status,
        head: head.to_owned(),
        body,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, digits where digits belong.
fn is_spec_timestamp(value: &Value) -> bool {
    let Some(s) = value.as_str() else {
        return false;
    };
    let pattern = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    s.len() == pattern.len()
        && s.bytes().zip(pattern.iter()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            other => c == *other,
        })
}

#[track_caller]
fn assert_json_content_type(resp: &Resp) {
    assert_eq!(
        resp.header("content-type"),
        Some(JSON_UTF8),
        "status {} body {}",
        resp.status,
        resp.text
    );
}

// §2.1 URLs

#[tokio::test]
async fn every_path_is_served_identically_with_and_without_the_trailing_slash() {
    let app = rivia().await;
    let client = no_redirect_client();
    let key = app.admin_key.clone();
    for path in [
        "/v1.1/instances/rivia/channels/witchers",
        "/v1.1/instances/rivia",
        "/v1.1/instances",
        "/v1.1",
        "/health",
    ] {
        let without = app
            .send(client.get(app.url(path)).header("X-API-KEY", &key))
            .await;
        let with = app
            .send(
                client
                    .get(app.url(&format!("{path}/")))
                    .header("X-API-KEY", &key),
            )
            .await;
        assert_eq!(without.status, 200, "{path}: {}", without.text);
        assert_eq!(with.status, 200, "{path}/: {}", with.text);
        assert_eq!(without.json, with.json, "{path}");
    }
}

#[tokio::test]
async fn a_post_without_the_trailing_slash_is_served_not_redirected() {
    let app = rivia().await;
    let client = no_redirect_client();
    let resp = app
        .send(
            client
                .post(app.url("/v1.1/instances/rivia/channels"))
                .header("X-API-KEY", &app.admin_key)
                .json(&json!({"name": "no-slash"})),
        )
        .await;
    assert_eq!(resp.assert_status(201)["name"], "no-slash");
    let resp = app
        .send(
            client
                .post(app.url("/v1.1/instances/rivia/channels/witchers/publish"))
                .header("X-API-KEY", &app.admin_key)
                .json(&json!({"payload": {"n": 1}})),
        )
        .await;
    assert_eq!(resp.assert_status(201)["payload"], json!({"n": 1}));
    app.get(
        "/v1.1/instances/rivia/channels/no-slash/",
        Some(&app.admin_key),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn names_in_paths_are_matched_case_insensitively() {
    let app = rivia().await;
    let resp = app
        .get(
            "/v1.1/instances/RIVIA/channels/Witchers/",
            Some(&app.admin_key),
        )
        .await;
    let body = resp.assert_status(200);
    assert_eq!(body["name"], "witchers");
    assert_eq!(
        body["links"]["self"],
        "/v1.1/instances/rivia/channels/witchers/"
    );
    let message = app
        .post(
            "/v1.1/instances/Rivia/channels/WITCHERS/publish/",
            Some(&app.admin_key),
            json!({"payload": {"hello": "world"}}),
        )
        .await;
    let id = message.assert_status(201)["id"].as_i64().unwrap();
    app.get(
        &format!("/v1.1/instances/rivia/channels/witchers/history/{id}/"),
        Some(&app.admin_key),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn an_empty_query_parameter_counts_as_absent() {
    let app = rivia().await;
    app.publish("rivia", "witchers", json!({"payload": {"n": 1}}))
        .await;
    for query in ["last_id=", "last_id", "room=&last_id=&page_size="] {
        let resp = app
            .get(
                &format!("/v1.1/instances/rivia/channels/witchers/history/?{query}"),
                Some(&app.admin_key),
            )
            .await;
        let body = resp.assert_status(200);
        assert_eq!(body["objects"].as_array().unwrap().len(), 1, "{query}");
    }
    app.create_channel(
        "rivia",
        json!({"name": "rooms", "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
    for query in ["room=", "room"] {
        app.get(
            &format!("/v1.1/instances/rivia/channels/rooms/history/?{query}"),
            Some(&app.admin_key),
        )
        .await
        .assert(
            400,
            json!({"room": "This field is required for channels with separate rooms."}),
        );
    }
}

// §2.2 Request bodies

#[tokio::test]
async fn a_channel_can_be_created_from_a_form_body_with_string_flags() {
    let app = rivia().await;
    let resp = app
        .send(
            app.request(
                Method::POST,
                "/v1.1/instances/rivia/channels/",
                Some(&app.admin_key),
            )
            .form(&[
                ("name", "Formed"),
                ("type", "separate_rooms"),
                ("custom_publish", "true"),
                ("other_permissions", "subscribe"),
                ("description", "from a form"),
            ]),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["name"], "formed");
    assert_eq!(body["type"], "separate_rooms");
    assert_eq!(body["custom_publish"], true);
    assert_eq!(body["other_permissions"], "subscribe");
    assert_eq!(body["description"], "from a form");
}

#[tokio::test]
async fn a_channel_can_be_created_from_a_multipart_body_with_string_flags() {
    let app = rivia().await;
    let form = reqwest::multipart::Form::new()
        .text("name", "multi")
        .text("custom_publish", "1")
        .text("group_permissions", "publish");
    let resp = app
        .send(
            app.request(
                Method::POST,
                "/v1.1/instances/rivia/channels/",
                Some(&app.admin_key),
            )
            .multipart(form),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["name"], "multi");
    assert_eq!(body["custom_publish"], true);
    assert_eq!(body["group_permissions"], "publish");
    assert_eq!(body["type"], "default");
}

#[tokio::test]
async fn an_api_key_can_be_created_from_form_and_multipart_bodies_with_string_flags() {
    let app = rivia().await;
    let resp = app
        .send(
            app.request(
                Method::POST,
                "/v1.1/instances/rivia/api_keys/",
                Some(&app.admin_key),
            )
            .form(&[
                ("ignore_acl", "true"),
                ("allow_user_create", "t"),
                ("allow_group_create", "1"),
                ("allow_anonymous_read", "false"),
                ("description", "form key"),
            ]),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["ignore_acl"], true);
    assert_eq!(body["allow_user_create"], true);
    assert_eq!(body["allow_group_create"], true);
    assert_eq!(body["allow_anonymous_read"], false);
    assert_eq!(body["description"], "form key");

    let form = reqwest::multipart::Form::new()
        .text("ignore_acl", "f")
        .text("allow_user_create", "0")
        .text("allow_group_create", "yes")
        .text("allow_anonymous_read", "on");
    let resp = app
        .send(
            app.request(
                Method::POST,
                "/v1.1/instances/rivia/api_keys/",
                Some(&app.admin_key),
            )
            .multipart(form),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["ignore_acl"], false);
    assert_eq!(body["allow_user_create"], false);
    assert_eq!(body["allow_group_create"], true);
    assert_eq!(body["allow_anonymous_read"], true);
}

#[tokio::test]
async fn booleans_accept_every_documented_spelling() {
    let app = rivia().await;
    let truthy = [
        json!(true),
        json!("true"),
        json!("True"),
        json!("TRUE"),
        json!("t"),
        json!("T"),
        json!("yes"),
        json!("y"),
        json!("on"),
        json!("1"),
        json!(1),
    ];
    let falsy = [
        json!(false),
        json!("false"),
        json!("False"),
        json!("FALSE"),
        json!("f"),
        json!("F"),
        json!("no"),
        json!("n"),
        json!("off"),
        json!("0"),
        json!(0),
    ];
    for (inputs, expected) in [(&truthy, true), (&falsy, false)] {
        for input in inputs.iter() {
            let resp = app
                .post(
                    "/v1.1/instances/rivia/api_keys/",
                    Some(&app.admin_key),
                    json!({"allow_anonymous_read": input}),
                )
                .await;
            assert_eq!(
                resp.assert_status(201)["allow_anonymous_read"],
                expected,
                "input {input}"
            );
        }
    }
}

#[tokio::test]
async fn an_invalid_boolean_is_a_field_error_quoting_the_input() {
    let app = rivia().await;
    app.post(
        "/v1.1/instances/rivia/api_keys/",
        Some(&app.admin_key),
        json!({"ignore_acl": "maybe"}),
    )
    .await
    .assert(
        400,
        json!({"ignore_acl": ["\"maybe\" is not a valid boolean."]}),
    );
    app.post(
        "/v1.1/instances/rivia/channels/",
        Some(&app.admin_key),
        json!({"name": "flags", "custom_publish": "sometimes"}),
    )
    .await
    .assert(
        400,
        json!({"custom_publish": ["\"sometimes\" is not a valid boolean."]}),
    );
}

#[tokio::test]
async fn an_empty_body_with_a_json_content_type_counts_as_an_empty_object() {
    let app = rivia().await;
    let created = app
        .post(
            "/v1.1/instances/rivia/api_keys/",
            Some(&app.admin_key),
            json!({"ignore_acl": true}),
        )
        .await;
    let created = created.assert_status(201).clone();
    let id = created["id"].as_i64().unwrap();
    let old_key = created["api_key"].as_str().unwrap().to_owned();
    let resp = app
        .send(
            app.request(
                Method::POST,
                &format!("/v1.1/instances/rivia/api_keys/{id}/reset_key/"),
                Some(&app.admin_key),
            )
            .header("Content-Type", "application/json"),
        )
        .await;
    let body = resp.assert_status(200);
    let new_key = body["api_key"].as_str().unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(new_key.len(), 40);
    // Whatever the content type, an empty body is never parsed.
    let resp = app
        .send(
            app.request(
                Method::POST,
                &format!("/v1.1/instances/rivia/api_keys/{id}/reset_key/"),
                Some(&app.admin_key),
            )
            .header("Content-Type", "text/plain"),
        )
        .await;
    resp.assert_status(200);
    let resp = app
        .send(
            app.request(
                Method::POST,
                "/v1.1/instances/rivia/channels/witchers/publish/",
                Some(&app.admin_key),
            )
            .header("Content-Type", "application/json"),
        )
        .await;
    assert_eq!(resp.assert_status(201)["payload"], json!({}));
}

#[tokio::test]
async fn another_content_type_is_refused_with_415_naming_the_type() {
    let app = rivia().await;
    post_raw(
        &app,
        "/v1.1/instances/rivia/channels/",
        Some(&app.admin_key),
        "text/plain",
        "name=plain",
    )
    .await
    .assert(
        415,
        json!({"detail": "Unsupported media type \"text/plain\" in request."}),
    );
    post_raw(
        &app,
        "/v1.1/instances/rivia/channels/witchers/publish/",
        Some(&app.admin_key),
        "application/xml",
        "<payload/>",
    )
    .await
    .assert(
        415,
        json!({"detail": "Unsupported media type \"application/xml\" in request."}),
    );
    app.get(
        "/v1.1/instances/rivia/channels/plain/",
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn the_415_message_quotes_the_media_type_without_parameters() {
    let app = rivia().await;
    post_raw(
        &app,
        "/v1.1/instances/rivia/channels/",
        Some(&app.admin_key),
        "text/plain; charset=utf-8",
        "name=plain",
    )
    .await
    .assert(
        415,
        json!({"detail": "Unsupported media type \"text/plain\" in request."}),
    );
}

#[tokio::test]
async fn a_non_empty_body_without_a_content_type_is_refused_with_415() {
    let app = rivia().await;
    let body = r#"{"name": "untyped"}"#;
    let request = format!(
        "POST /v1.1/instances/rivia/channels/ HTTP/1.1\r\nHost: {}\r\nX-API-KEY: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        app.addr,
        app.admin_key,
        body.len()
    );
    let resp = raw_http(&app, request.as_bytes()).await;
    assert_eq!(resp.status, 415, "{}\n\n{}", resp.head, resp.body);
    let json: Value = serde_json::from_str(&resp.body).expect("JSON body");
    assert_eq!(
        json,
        json!({"detail": "Unsupported media type \"\" in request."})
    );
    app.get(
        "/v1.1/instances/rivia/channels/untyped/",
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn malformed_json_is_a_400_with_a_parse_error_detail() {
    let app = rivia().await;
    for body in [r#"{"name": "#, "{name: 'x'}", r#"{"name": "x",}"#, "nul"] {
        let resp = post_raw(
            &app,
            "/v1.1/instances/rivia/channels/",
            Some(&app.admin_key),
            "application/json",
            body,
        )
        .await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text);
        let object = resp.json.as_object().expect("JSON object");
        assert_eq!(object.len(), 1, "{}", resp.text);
        let detail = object["detail"].as_str().expect("detail string");
        assert!(
            detail.starts_with("JSON parse error - "),
            "{body}: {detail}"
        );
    }
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_refused_naming_its_type() {
    let app = rivia().await;
    for (body, kind) in [
        ("[]", "list"),
        (r#"[{"name": "x"}]"#, "list"),
        (r#""witchers""#, "str"),
        ("12", "int"),
        ("1.5", "float"),
        ("true", "bool"),
    ] {
        for path in [
            "/v1.1/instances/rivia/channels/",
            "/v1.1/instances/rivia/channels/witchers/publish/",
        ] {
            post_raw(&app, path, Some(&app.admin_key), "application/json", body)
                .await
                .assert(
                    400,
                    json!({"non_field_errors": [
                        format!("Invalid data. Expected a dictionary, but got {kind}.")
                    ]}),
                );
        }
    }
}

#[tokio::test]
async fn unknown_and_read_only_fields_are_ignored() {
    let app = rivia().await;
    let resp = app
        .post(
            "/v1.1/instances/rivia/channels/",
            Some(&app.admin_key),
            json!({
                "name": "extra",
                "colour": "red",
                "created_at": "2001-01-01T00:00:00.000000Z",
                "links": {"self": "/elsewhere/"},
            }),
        )
        .await;
    let body = resp.assert_status(201);
    assert!(body.get("colour").is_none());
    assert_ne!(body["created_at"], "2001-01-01T00:00:00.000000Z");
    assert_eq!(
        body["links"]["self"],
        "/v1.1/instances/rivia/channels/extra/"
    );
}

#[tokio::test]
async fn string_fields_have_surrounding_whitespace_trimmed() {
    let app = rivia().await;
    let resp = app
        .post(
            "/v1.1/instances/rivia/channels/",
            Some(&app.admin_key),
            json!({"name": "  Trimmed \n", "description": "\t Contract board  "}),
        )
        .await;
    let body = resp.assert_status(201);
    assert_eq!(body["name"], "trimmed");
    assert_eq!(body["description"], "Contract board");
    let resp = app
        .patch(
            "/v1.1/instances/rivia/",
            Some(&app.admin_key),
            json!({"description": "  Witcher app  "}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["description"], "Witcher app");
}

// §2.3 Responses

#[tokio::test]
async fn json_responses_are_utf8_with_non_ascii_unescaped() {
    let app = rivia().await;
    let description = "Zażółć gęślą jaźń — 狼 🐺";
    let resp = app
        .patch(
            "/v1.1/instances/rivia/channels/witchers/",
            Some(&app.admin_key),
            json!({"description": description}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["description"], description);
    assert_json_content_type(&resp);
    assert!(
        resp.text.contains(description),
        "non-ASCII was escaped: {}",
        resp.text
    );
    assert!(!resp.text.contains("\\u"), "{}", resp.text);
}

#[tokio::test]
async fn every_json_response_declares_utf8_json_whatever_its_status() {
    let app = rivia().await;
    let key = Some(app.admin_key.as_str());
    let responses = [
        app.get("/v1.1/", None).await,
        app.get("/v1.1/instances/rivia/channels/", key).await,
        app.post(
            "/v1.1/instances/rivia/channels/",
            key,
            json!({"name": "typed"}),
        )
        .await,
        app.get("/v1.1/instances/rivia/channels/nope/", key).await,
        app.get("/v1.1/instances/rivia/channels/", None).await,
        app.put(
            "/v1.1/instances/rivia/channels/witchers/publish/",
            key,
            json!({}),
        )
        .await,
        post_raw(
            &app,
            "/v1.1/instances/rivia/channels/",
            key,
            "application/json",
            "{",
        )
        .await,
        post_raw(
            &app,
            "/v1.1/instances/rivia/channels/",
            key,
            "text/csv",
            "a,b",
        )
        .await,
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 201, 404, 403, 405, 400, 415]);
    for resp in &responses {
        assert_json_content_type(resp);
    }
}

#[tokio::test]
async fn a_204_response_has_an_empty_body() {
    let app = rivia().await;
    let resp = app
        .delete(
            "/v1.1/instances/rivia/channels/witchers/",
            Some(&app.admin_key),
        )
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text);
    assert_eq!(resp.text, "");
}

#[tokio::test]
async fn timestamps_are_utc_with_microseconds_and_a_z_suffix() {
    let app = rivia().await;
    let key = Some(app.admin_key.as_str());
    let instance = app.get("/v1.1/instances/rivia/", key).await;
    let instance = instance.assert_status(200);
    let channel = app
        .get("/v1.1/instances/rivia/channels/witchers/", key)
        .await;
    let channel = channel.assert_status(200);
    let api_key = app
        .post("/v1.1/instances/rivia/api_keys/", key, json!({}))
        .await;
    let api_key = api_key.assert_status(201);
    let message = app
        .publish("rivia", "witchers", json!({"payload": {"n": 1}}))
        .await;
    for value in [
        &instance["created_at"],
        &instance["updated_at"],
        &channel["created_at"],
        &channel["updated_at"],
        &api_key["created_at"],
        &message["created_at"],
    ] {
        assert!(is_spec_timestamp(value), "not a SPEC timestamp: {value}");
    }
}

#[tokio::test]
async fn the_api_root_lists_its_links_without_a_key() {
    let app = TestApp::spawn().await;
    for path in ["/v1.1/", "/v1.1"] {
        let resp = app.get(path, None).await;
        resp.assert(
            200,
            json!({"links": {"instances": "/v1.1/instances/", "account": "/v1.1/account/"}}),
        );
        assert_json_content_type(&resp);
    }
}

#[tokio::test]
async fn the_server_root_links_to_v1_1() {
    let app = TestApp::spawn().await;
    app.get("/", None)
        .await
        .assert(200, json!({"links": {"v1.1": "/v1.1/"}}));
}

#[tokio::test]
async fn head_is_accepted_wherever_get_is() {
    let app = rivia().await;
    let message = app
        .publish("rivia", "witchers", json!({"payload": {"n": 1}}))
        .await;
    let id = message["id"].as_i64().unwrap();
    let history_detail = format!("/v1.1/instances/rivia/channels/witchers/history/{id}/");
    for path in [
        "/",
        "/v1.1/",
        "/health",
        "/health/live",
        "/v1.1/account/",
        "/v1.1/instances/",
        "/v1.1/instances/rivia/",
        "/v1.1/instances/rivia/api_keys/",
        "/v1.1/instances/rivia/channels/",
        "/v1.1/instances/rivia/channels/witchers/",
        "/v1.1/instances/rivia/channels/witchers/history/",
        history_detail.as_str(),
    ] {
        let resp = app
            .send(app.request(Method::HEAD, path, Some(&app.admin_key)))
            .await;
        assert_eq!(resp.status, 200, "HEAD {path}");
        assert_eq!(resp.text, "", "HEAD {path} sent a body");
    }
}

// §2.4 Errors

#[tokio::test]
async fn an_unknown_route_is_404_not_found() {
    let app = rivia().await;
    for path in [
        "/nope",
        "/v1.1/nope/",
        "/v1.1/instances/rivia/nope/",
        "/v1.1/instances/rivia/channels/witchers/nope/",
        "/v1.1/instances/rivia/channels/witchers/publish/extra/",
        "/health/dead",
    ] {
        for key in [None, Some(app.admin_key.as_str())] {
            let resp = app.get(path, key).await;
            resp.assert(404, json!({"detail": "Not found."}));
            assert_json_content_type(&resp);
        }
    }
}

#[tokio::test]
async fn syncano_paths_herald_does_not_serve_are_404_not_found() {
    let app = rivia().await;
    for path in [
        "/v1/",
        "/v1/instances/",
        "/v2/",
        "/v2/instances/rivia/",
        "/v1.1/instances/x/triggers/",
        "/v1.1/instances/rivia/triggers/",
        "/v1.1/instances/rivia/codeboxes/",
        "/v1.1/instances/rivia/snippets/scripts/",
        "/v1.1/instances/rivia/webhooks/",
        "/v1.1/instances/rivia/schedules/",
        "/v1.1/instances/rivia/push_notifications/",
        "/v1.1/instances/rivia/backups/",
        "/v1.1/instances/rivia/batch/",
        "/v1.1/instances/rivia/hosting/",
        "/v1.1/instances/rivia/admins/",
        "/v1.1/instances/rivia/invitations/",
    ] {
        for key in [None, Some(app.admin_key.as_str())] {
            app.get(path, key)
                .await
                .assert(404, json!({"detail": "Not found."}));
        }
    }
    app.post(
        "/v1.1/instances/rivia/triggers/",
        Some(&app.admin_key),
        json!({"label": "t"}),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
}

#[track_caller]
fn allow_methods(resp: &Resp) -> Vec<String> {
    let allow = resp.header("allow").expect("an Allow header");
    allow
        .split(',')
        .map(|m| m.trim().to_ascii_uppercase())
        .collect()
}

#[tokio::test]
async fn a_method_the_route_lacks_is_405_with_an_allow_header() {
    let app = rivia().await;
    let resp = app
        .put(
            "/v1.1/instances/rivia/channels/witchers/publish/",
            Some(&app.admin_key),
            json!({}),
        )
        .await;
    resp.assert(405, json!({"detail": "Method \"PUT\" not allowed."}));
    let allow = allow_methods(&resp);
    assert!(allow.contains(&"POST".to_owned()), "{allow:?}");
    assert!(!allow.contains(&"PUT".to_owned()), "{allow:?}");

    let resp = app
        .delete("/v1.1/instances/rivia/channels/", Some(&app.admin_key))
        .await;
    resp.assert(405, json!({"detail": "Method \"DELETE\" not allowed."}));
    let allow = allow_methods(&resp);
    assert!(allow.contains(&"GET".to_owned()), "{allow:?}");
    assert!(allow.contains(&"POST".to_owned()), "{allow:?}");
    assert!(!allow.contains(&"DELETE".to_owned()), "{allow:?}");

    let resp = app
        .post(
            "/v1.1/instances/rivia/channels/witchers/history/",
            None,
            json!({}),
        )
        .await;
    resp.assert(405, json!({"detail": "Method \"POST\" not allowed."}));
    assert!(allow_methods(&resp).contains(&"GET".to_owned()));
}

#[tokio::test]
async fn the_method_is_checked_before_the_instance_and_the_key() {
    let app = TestApp::spawn().await;
    let resp = app
        .put(
            "/v1.1/instances/nowhere/channels/x/publish/",
            None,
            json!({}),
        )
        .await;
    resp.assert(405, json!({"detail": "Method \"PUT\" not allowed."}));
    assert!(resp.header("allow").is_some());
    app.delete("/v1.1/", None)
        .await
        .assert(405, json!({"detail": "Method \"DELETE\" not allowed."}));
}

// §2.7 Limits

fn padded_channel(name: &str, total: usize) -> String {
    let skeleton = format!(r#"{{"name": "{name}", "padding": ""}}"#);
    let pad = "x".repeat(total - skeleton.len());
    let body = format!(r#"{{"name": "{name}", "padding": "{pad}"}}"#);
    assert_eq!(body.len(), total);
    body
}

#[tokio::test]
async fn a_body_over_max_body_bytes_is_413_by_content_length() {
    let app = TestApp::spawn_with(|a| a.max_body_bytes = 4096).await;
    app.create_instance("rivia").await;
    post_raw(
        &app,
        "/v1.1/instances/rivia/channels/",
        Some(&app.admin_key),
        "application/json",
        &padded_channel("big", 4097),
    )
    .await
    .assert(
        413,
        json!({"detail": "Request size limit exceeded (4096)."}),
    );
    let resp = post_raw(
        &app,
        "/v1.1/instances/rivia/channels/",
        Some(&app.admin_key),
        "application/json",
        &padded_channel("exact", 4096),
    )
    .await;
    assert_eq!(resp.assert_status(201)["name"], "exact");
    app.get("/v1.1/instances/rivia/channels/big/", Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn the_body_size_is_checked_before_the_instance_and_the_key() {
    let app = TestApp::spawn_with(|a| a.max_body_bytes = 4096).await;
    post_raw(
        &app,
        "/v1.1/instances/nowhere/channels/",
        None,
        "application/json",
        &padded_channel("big", 5000),
    )
    .await
    .assert(
        413,
        json!({"detail": "Request size limit exceeded (4096)."}),
    );
}

fn chunked_body(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

#[tokio::test]
async fn a_chunked_body_cannot_bypass_the_size_limit() {
    let app = TestApp::spawn_with(|a| a.max_body_bytes = 4096).await;
    app.create_instance("rivia").await;
    let chunks = vec![
        br#"{"name": "chunky", "padding": ""#.to_vec(),
        vec![b'x'; 3000],
        vec![b'x'; 3000],
        br#""}"#.to_vec(),
    ];
    let resp = app
        .send(
            app.request(
                Method::POST,
                "/v1.1/instances/rivia/channels/",
                Some(&app.admin_key),
            )
            .header("Content-Type", "application/json")
            .body(chunked_body(chunks)),
        )
        .await;
    resp.assert(
        413,
        json!({"detail": "Request size limit exceeded (4096)."}),
    );
    app.get(
        "/v1.1/instances/rivia/channels/chunky/",
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));

    // The same shape under the limit is read and served.
    let chunks = vec![
        br#"{"name": "small", "padding": ""#.to_vec(),
        vec![b'x'; 1000],
        vec![b'x'; 1000],
        br#""}"#.to_vec(),
    ];
    let resp = app
        .send(
            app.request(
                Method::POST,
                "/v1.1/instances/rivia/channels/",
                Some(&app.admin_key),
            )
            .header("Content-Type", "application/json")
            .body(chunked_body(chunks)),
        )
        .await;
    assert_eq!(resp.assert_status(201)["name"], "small");
}

#[tokio::test]
async fn the_default_body_limit_is_one_mebibyte_and_publish_has_its_own() {
    let app = rivia().await;
    let key = Some(app.admin_key.as_str());
    post_raw(
        &app,
        "/v1.1/instances/rivia/channels/",
        key,
        "application/json",
        &padded_channel("huge", 1_048_577),
    )
    .await
    .assert(
        413,
        json!({"detail": "Request size limit exceeded (1048576)."}),
    );
    let resp = post_raw(
        &app,
        "/v1.1/instances/rivia/channels/",
        key,
        "application/json",
        &padded_channel("roomy", 200_000),
    )
    .await;
    assert_eq!(resp.assert_status(201)["name"], "roomy");

    let big_payload = json!({"payload": {"text": "x".repeat(65_536)}}).to_string();
    post_raw(
        &app,
        "/v1.1/instances/rivia/channels/witchers/publish/",
        key,
        "application/json",
        &big_payload,
    )
    .await
    .assert(
        413,
        json!({"detail": "Request size limit exceeded (65536)."}),
    );
}

#[tokio::test]
async fn instance_metadata_over_the_limits_is_refused_with_the_documented_messages() {
    let app = rivia().await;
    let key = Some(app.admin_key.as_str());
    let nine: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("k{i}"), json!(i))).collect();
    let eight: serde_json::Map<String, Value> =
        (0..8).map(|i| (format!("k{i}"), json!(i))).collect();
    let cases = [
        (
            json!(nine),
            json!({"metadata": ["Too many keys defined (exceeds 8)."]}),
        ),
        (
            json!({"abcdefghijklmnopq": 1}),
            json!({"metadata": ["Too long key defined (exceeds 16)."]}),
        ),
        (
            json!({"big": "x".repeat(4095)}),
            json!({"metadata": ["Too long value defined for key big (exceeds 4096)."]}),
        ),
        (
            json!([1, 2]),
            json!({"metadata": ["Metadata passed in invalid format."]}),
        ),
        (
            json!("[1, 2]"),
            json!({"metadata": ["Metadata passed in invalid format."]}),
        ),
        (
            json!("{not json"),
            json!({"metadata": ["Not a valid JSON string."]}),
        ),
    ];
    for (metadata, error) in cases {
        app.patch(
            "/v1.1/instances/rivia/",
            key,
            json!({"metadata": metadata.clone()}),
        )
        .await
        .assert(400, error.clone());
        app.post(
            "/v1.1/instances/",
            key,
            json!({"name": "novigrad", "metadata": metadata}),
        )
        .await
        .assert(400, error);
    }
    // At the limits exactly, metadata is accepted (a 4094-char string encodes to 4096).
    for metadata in [
        json!(eight),
        json!({"abcdefghijklmnop": 1}),
        json!({"big": "x".repeat(4094)}),
    ] {
        let resp = app
            .patch(
                "/v1.1/instances/rivia/",
                key,
                json!({"metadata": metadata.clone()}),
            )
            .await;
        assert_eq!(resp.assert_status(200)["metadata"], metadata);
    }
    // A string holding a JSON object is a JSON-typed field's other accepted form.
    let resp = app
        .patch(
            "/v1.1/instances/rivia/",
            key,
            json!({"metadata": "{\"color\": \"red\"}"}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["metadata"], json!({"color": "red"}));
}

#[tokio::test]
async fn a_description_over_256_characters_is_refused() {
    let app = rivia().await;
    let key = Some(app.admin_key.as_str());
    let error = json!({"description": ["Ensure this field has no more than 256 characters."]});
    let long = "d".repeat(257);
    app.patch("/v1.1/instances/rivia/", key, json!({"description": long}))
        .await
        .assert(400, error.clone());
    app.patch(
        "/v1.1/instances/rivia/channels/witchers/",
        key,
        json!({"description": long}),
    )
    .await
    .assert(400, error.clone());
    app.post(
        "/v1.1/instances/rivia/channels/",
        key,
        json!({"name": "wordy", "description": long}),
    )
    .await
    .assert(400, error.clone());
    app.post(
        "/v1.1/instances/rivia/api_keys/",
        key,
        json!({"description": long}),
    )
    .await
    .assert(400, error);
    // The limit counts characters, not bytes.
    let wide = "ż".repeat(256);
    let resp = app
        .patch(
            "/v1.1/instances/rivia/channels/witchers/",
            key,
            json!({"description": wide}),
        )
        .await;
    assert_eq!(resp.assert_status(200)["description"], wide);
}

// §2.9 CORS, OPTIONS

#[track_caller]
fn assert_cors_star(resp: &Resp) {
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("*"),
        "status {}",
        resp.status
    );
    assert_eq!(
        resp.header("access-control-expose-headers"),
        Some("X-Last-Id, X-Herald-Gap, Retry-After"),
        "status {}",
        resp.status
    );
}

#[tokio::test]
async fn every_response_carries_the_cors_headers() {
    let app = rivia().await;
    let key = Some(app.admin_key.as_str());
    let responses = [
        app.get("/v1.1/", None).await,
        app.get("/health", None).await,
        app.post(
            "/v1.1/instances/rivia/channels/",
            key,
            json!({"name": "cors"}),
        )
        .await,
        app.delete("/v1.1/instances/rivia/channels/cors/", key)
            .await,
        app.get("/v1.1/instances/rivia/channels/", None).await,
        app.get("/v1.1/nope/", None).await,
        app.put("/v1.1/", None, json!({})).await,
        post_raw(
            &app,
            "/v1.1/instances/rivia/channels/",
            key,
            "text/plain",
            "x",
        )
        .await,
        app.send(
            app.request(Method::GET, "/v1.1/instances/rivia/", key)
                .header("Origin", "https://anywhere.example"),
        )
        .await,
    ];
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 201, 204, 403, 404, 405, 415, 200]);
    for resp in &responses {
        assert_cors_star(resp);
    }
}

#[tokio::test]
async fn a_preflight_needs_no_key_and_answers_with_the_documented_headers() {
    let app = rivia().await;
    for path in [
        "/v1.1/instances/rivia/channels/witchers/publish/",
        "/v1.1/instances/rivia/channels/",
        "/v1.1/",
    ] {
        let resp = app
            .send(
                app.request(Method::OPTIONS, path, None)
                    .header("Origin", "https://app.example")
                    .header("Access-Control-Request-Method", "POST")
                    .header("Access-Control-Request-Headers", "x-api-key, content-type"),
            )
            .await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.text);
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("DELETE, GET, OPTIONS, PATCH, POST, PUT")
        );
        assert_eq!(
            resp.header("access-control-allow-headers"),
            Some(
                "accept, accept-encoding, authorization, content-type, dnt, origin, \
                 user-agent, x-csrftoken, x-requested-with, x-api-key, x-user-key, last-event-id"
            )
        );
        assert_eq!(resp.header("access-control-max-age"), Some("86400"));
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
        assert!(
            resp.header("access-control-allow-credentials").is_none(),
            "no credentials are used"
        );
    }
}

#[tokio::test]
async fn a_listed_origin_is_echoed_with_vary_and_an_unlisted_one_is_not() {
    let app = TestApp::spawn_with(|a| {
        a.cors_origins = herald::config::CorsOrigins::List(vec!["https://a.example".into()]);
    })
    .await;
    app.create_instance("rivia").await;
    for method in [Method::GET, Method::OPTIONS] {
        let mut builder = app
            .request(
                method.clone(),
                "/v1.1/instances/rivia/",
                Some(&app.admin_key),
            )
            .header("Origin", "https://a.example");
        if method == Method::OPTIONS {
            builder = builder.header("Access-Control-Request-Method", "GET");
        }
        let resp = app.send(builder).await;
        assert_eq!(resp.status, 200, "{method}: {}", resp.text);
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("https://a.example"),
            "{method}"
        );
        let vary: Vec<String> = resp
            .headers
            .get_all("vary")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect();
        assert!(vary.contains(&"origin".to_owned()), "{method}: {vary:?}");
        assert_eq!(
            resp.header("access-control-expose-headers"),
            Some("X-Last-Id, X-Herald-Gap, Retry-After")
        );

        let mut builder = app
            .request(
                method.clone(),
                "/v1.1/instances/rivia/",
                Some(&app.admin_key),
            )
            .header("Origin", "https://b.example");
        if method == Method::OPTIONS {
            builder = builder.header("Access-Control-Request-Method", "GET");
        }
        let resp = app.send(builder).await;
        let allowed = resp.header("access-control-allow-origin");
        assert_ne!(allowed, Some("https://b.example"), "{method}");
        assert_ne!(allowed, Some("*"), "{method}");
    }
}

#[tokio::test]
async fn a_plain_options_request_describes_the_route() {
    let app = rivia().await;
    let resp = app
        .send(app.request(
            Method::OPTIONS,
            "/v1.1/instances/rivia/channels/",
            Some(&app.admin_key),
        ))
        .await;
    resp.assert(
        200,
        json!({
            "renders": ["application/json"],
            "parses": ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"],
        }),
    );
    assert_json_content_type(&resp);
    let allow = allow_methods(&resp);
    assert!(allow.contains(&"GET".to_owned()), "{allow:?}");
    assert!(allow.contains(&"POST".to_owned()), "{allow:?}");
    assert!(!allow.contains(&"DELETE".to_owned()), "{allow:?}");

    let resp = app
        .send(app.request(
            Method::OPTIONS,
            "/v1.1/instances/rivia/channels/witchers/publish/",
            Some(&app.admin_key),
        ))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let allow = allow_methods(&resp);
    assert!(allow.contains(&"POST".to_owned()), "{allow:?}");
    assert!(!allow.contains(&"GET".to_owned()), "{allow:?}");
}

// §11.1 Health

#[tokio::test]
async fn health_reports_storage_and_local_fanout_without_a_key() {
    let app = TestApp::spawn().await;
    let resp = app.get("/health", None).await;
    resp.assert(
        200,
        json!({"status": "ok", "version": "0.1.0", "storage": "ok", "fanout": "local"}),
    );
    assert_json_content_type(&resp);
    app.get("/health/live", None)
        .await
        .assert(200, json!({"status": "ok"}));
}

#[tokio::test]
async fn a_keyless_channel_list_is_refused_with_the_generic_detail() {
    let app = rivia().await;
    app.get("/v1.1/instances/rivia/channels/", None)
        .await
        .assert(403, json!({"detail": PERMISSION_DENIED}));
}
