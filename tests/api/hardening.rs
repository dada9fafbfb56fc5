//! Hardening (issue 11): small holes closed — the database file's mode, key headers that are
//! not text, cursors at the edge of the id range.

use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::json;

use crate::helpers::{TestApp, skip_on_postgres};
use crate::poll::{publish_to, rivia};

#[tokio::test]
async fn the_sqlite_file_and_its_journals_are_readable_by_their_owner_only() {
    if skip_on_postgres("the file mode is SQLite's") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    rivia(&app).await;
    publish_to(&app, "lobby", 1).await;
    for name in ["herald.db", "herald.db-wal", "herald.db-shm"] {
        let path = app.dir.path().join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
}

#[tokio::test]
async fn a_key_header_that_is_not_text_is_no_such_api_key() {
    let app = TestApp::spawn().await;
    rivia(&app).await;
    let key = HeaderValue::from_bytes("ąęółśżźćń".as_bytes()).expect("header bytes");
    let resp = app
        .send(
            app.request(Method::GET, "/v1.1/instances/rivia/channels/", None)
                .header("X-API-KEY", key),
        )
        .await;
    resp.assert(403, json!({"detail": "No such API Key."}));
}

#[tokio::test]
async fn cursors_at_the_edge_of_the_id_range_answer_normally() {
    let app = TestApp::spawn().await;
    let key = rivia(&app).await;
    publish_to(&app, "lobby", 1).await;
    let max = i64::MAX;
    for query in [
        format!("last_pk={max}&direction=0"),
        format!("last_pk={max}&direction=1"),
        format!("last_pk={max}&direction=1&ordering=desc"),
        "last_pk=0&direction=0&ordering=desc".to_owned(),
        format!("last_id={max}"),
        format!("last_id={max}&last_pk={max}&direction=0"),
    ] {
        let path = format!("/v1.1/instances/rivia/channels/witchers/history/?room=lobby&{query}");
        let resp = app.get(&path, Some(&key)).await;
        assert_eq!(resp.status, 200, "{query}: {}", resp.text);
        let path = format!("/v1.1/instances/rivia/api_keys/?{query}");
        let resp = app.get(&path, Some(&app.admin_key)).await;
        assert_eq!(resp.status, 200, "{query}: {}", resp.text);
        let path = format!("/v1.1/instances/rivia/classes/user_profile/objects/?{query}");
        let resp = app.get(&path, Some(&app.admin_key)).await;
        assert_eq!(resp.status, 200, "{query}: {}", resp.text);
    }
}

/// docs/api.md §2.8: behind a trusted proxy, the client is the rightmost hop the proxy vouches for;
/// what the client writes into `X-Forwarded-For` itself cannot buy it a fresh budget.
#[tokio::test]
async fn a_spoofed_forwarded_for_is_still_limited() {
    let app = TestApp::spawn_with(|args| {
        args.rate_anon = 3;
        args.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let keyless = |forwarded: String| {
        let app = &app;
        async move {
            app.send(
                app.request(Method::GET, "/v1.1/instances/", None)
                    .header("x-forwarded-for", forwarded),
            )
            .await
        }
    };
    // The proxy (127.0.0.1) appends the client's real address to whatever the client sent.
    for n in 0..3 {
        let resp = keyless(format!("1.2.3.{n}, 198.51.100.7")).await;
        assert_eq!(resp.status, 403, "{}", resp.text);
    }
    let resp = keyless("9.9.9.9, 198.51.100.7".into()).await;
    assert_eq!(resp.status, 429, "{}", resp.text);
    // Another client behind the same proxy has its own budget.
    let resp = keyless("9.9.9.9, 198.51.100.8".into()).await;
    assert_eq!(resp.status, 403, "{}", resp.text);
}
