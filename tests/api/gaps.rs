//! Retention gaps (docs/api.md §9.12): a reader resuming after `last_id` is told which messages
//! retention removed before it read them, once, before any message, on every surface.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::{Resp, TestApp};
use crate::poll::{publish_to, rivia};
use crate::sse::{Block, sse_connect, sse_path};
use crate::websocket::{next_json, ws_connect};

/// Rooms `alone` (id 1, then removed by the per-channel cap) and `lobby` (ids 2–7, of which
/// retention keeps the newest 3): `lobby` has `pruned_through` 4, `alone` 1. Returns the
/// server and a trusted key.
async fn pruned() -> (TestApp, String) {
    let app = TestApp::spawn_with(|args| {
        args.history_max_messages = 3;
        args.history_max_channel_messages = 3;
        args.prune_interval = Duration::from_millis(50);
        args.poll_timeout = Duration::from_secs(1);
    })
    .await;
    let key = rivia(&app).await;
    publish_to(&app, "alone", 0).await;
    for n in 0..6 {
        publish_to(&app, "lobby", n).await;
    }
    // Awaited, bounded: the pruner runs every 50 ms.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lobby = ids(&app.get(&history("lobby", ""), Some(&key)).await);
        let alone = ids(&app.get(&history("alone", ""), Some(&key)).await);
        if lobby == [5, 6, 7] && alone.is_empty() {
            return (app, key);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never pruned: lobby {lobby:?}, alone {alone:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn history(room: &str, query: &str) -> String {
    format!("/v1.1/instances/rivia/channels/witchers/history/?room={room}&ordering=asc{query}")
}

fn poll(room: &str, query: &str) -> String {
    format!("/v1.1/instances/rivia/channels/witchers/poll/?room={room}{query}")
}

fn ids(resp: &Resp) -> Vec<i64> {
    crate::history::ids(resp.assert_status(200))
}

#[tokio::test]
async fn a_poll_after_removed_messages_says_which_were_removed() {
    let (app, key) = pruned().await;
    let resp = app.get(&poll("lobby", "&last_id=2"), Some(&key)).await;
    assert_eq!(resp.assert_status(200)["id"], 5);
    assert_eq!(resp.header("x-herald-gap"), Some("3-4"));
    assert_eq!(resp.header("x-last-id"), Some("5"));
    // From the edge of what was removed on, and without last_id, nothing is said.
    let resp = app.get(&poll("lobby", "&last_id=4"), Some(&key)).await;
    assert_eq!(resp.assert_status(200)["id"], 5);
    assert_eq!(resp.header("x-herald-gap"), None);
    // A room retention emptied: the poll waits, answers 204, and still says what it missed.
    let resp = app.get(&poll("alone", "&last_id=0"), Some(&key)).await;
    assert_eq!((resp.status, resp.text.as_str()), (204, ""));
    assert_eq!(resp.header("x-herald-gap"), Some("1-1"));
}

#[tokio::test]
async fn history_says_it_on_the_first_page_only() {
    let (app, key) = pruned().await;
    let first = app
        .get(&history("lobby", "&last_id=1&page_size=2"), Some(&key))
        .await;
    assert_eq!(ids(&first), [5, 6]);
    assert_eq!(first.header("x-herald-gap"), Some("2-4"));
    // The same read in the default (newest first) order says the same.
    let newest = app
        .get(
            "/v1.1/instances/rivia/channels/witchers/history/?room=lobby&last_id=1",
            Some(&key),
        )
        .await;
    assert_eq!(ids(&newest), [7, 6, 5]);
    assert_eq!(newest.header("x-herald-gap"), Some("2-4"));
    // A page reached through `next` does not repeat it.
    let next = first.json["next"].as_str().expect("next link");
    let second = app.get(next, Some(&key)).await;
    assert_eq!(ids(&second), [7]);
    assert_eq!(second.header("x-herald-gap"), None);
    for query in ["", "&last_id=4", "&last_id=6"] {
        let resp = app.get(&history("lobby", query), Some(&key)).await;
        resp.assert_status(200);
        assert_eq!(resp.header("x-herald-gap"), None, "{query}");
    }
    // Gap headers are readable by browsers.
    let resp = app.get(&history("lobby", "&last_id=0"), Some(&key)).await;
    assert_eq!(
        resp.header("access-control-expose-headers"),
        Some("X-Last-Id, X-Herald-Gap, Retry-After")
    );
    assert_eq!(resp.header("x-herald-gap"), Some("1-4"));
}

#[tokio::test]
async fn an_event_stream_sends_a_gap_event_before_the_replay() {
    let (app, key) = pruned().await;
    for headers in [vec![], vec![("last-event-id", "2")]] {
        let query = if headers.is_empty() {
            "room=lobby&last_id=2"
        } else {
            "room=lobby&last_id=6"
        };
        let mut sse = sse_connect(&app, &sse_path("witchers", query), Some(&key), &headers).await;
        assert_eq!(
            sse.next_event().await,
            Block::Text("event: gap\ndata: {\"from\":3,\"to\":4}".into())
        );
        assert_eq!(sse.next_ids(3).await, [5, 6, 7]);
    }
    // Nothing is said to a reader that missed nothing.
    let mut sse = sse_connect(
        &app,
        &sse_path("witchers", "room=lobby&last_id=4"),
        Some(&key),
        &[],
    )
    .await;
    assert_eq!(sse.next_ids(1).await, [5]);
}

#[tokio::test]
async fn a_websocket_sends_the_gap_frame_only_when_asked() {
    let (app, key) = pruned().await;
    let mut ws = ws_connect(
        &app,
        &format!("api_key={key}&room=lobby&last_id=2&gaps=true"),
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"gap": {"from": 3, "to": 4}})
    );
    assert_eq!(next_json(&mut ws).await["id"], 5);
    // Syncano-era clients take a frame without `id` for an error: without gaps=true, none.
    let mut ws = ws_connect(&app, &format!("api_key={key}&room=lobby&last_id=2")).await;
    assert_eq!(next_json(&mut ws).await["id"], 5);
    let mut ws = ws_connect(
        &app,
        &format!("api_key={key}&room=lobby&last_id=4&gaps=true"),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["id"], 5);
    let refused = app
        .get(
            &poll("lobby", "&transport=websocket&gaps=maybe"),
            Some(&key),
        )
        .await;
    refused.assert(400, json!({"gaps": ["\"maybe\" is not a valid boolean."]}));
}

#[tokio::test]
async fn herald_tail_prints_the_gap_on_stderr() {
    let (app, key) = pruned().await;
    let mut tail = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "tail",
            "rivia",
            "witchers",
            "--room",
            "lobby",
            "--last-id",
            "2",
        ])
        .args(["--url", &format!("http://{}", app.addr), "--api-key", &key])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn herald tail");
    let mut out = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let mut err = BufReader::new(tail.stderr.take().expect("stderr")).lines();
    let first: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("tail printed nothing")
            .expect("read")
            .expect("tail exited"),
    )
    .expect("JSON line");
    assert_eq!(first["id"], 5);
    let said = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(line) = err.next_line().await.expect("read") {
            if line.starts_with("gap:") {
                return line;
            }
        }
        panic!("tail ended without a gap line");
    })
    .await
    .expect("no gap line on stderr");
    assert_eq!(
        said,
        "gap: messages 3-4 were removed by retention before they were read"
    );
    tail.kill().await.expect("kill tail");
}
