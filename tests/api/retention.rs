//! History retention (docs/api.md §9.11): the pruner enforces count and age limits, and pruning never
//! affects id allocation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Ids in a room's history, ascending.
async fn history_ids(app: &TestApp, channel: &str, room: &str) -> Vec<i64> {
    let resp = app
        .get(
            &format!("/v1.1/instances/rivia/channels/{channel}/history/?room={room}&ordering=asc"),
            Some(&app.admin_key),
        )
        .await;
    crate::history::ids(resp.assert_status(200))
}

/// Polls until `done` holds for the room's ids, or fails after ten seconds.
async fn wait_for_history(app: &TestApp, room: &str, done: impl Fn(&[i64]) -> bool) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ids = history_ids(app, "news", room).await;
        if done(&ids) {
            return ids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never reached the expected state; history of {room}: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rooms_channel(app: &TestApp) {
    app.create_instance("rivia").await;
    app.create_channel(
        "rivia",
        json!({"name": "news", "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
}

async fn publish_to(app: &TestApp, room: &str, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let message: Value = app
            .publish("rivia", "news", json!({"room": room, "payload": {"n": i}}))
            .await;
        ids.push(message["id"].as_i64().expect("id"));
    }
    ids
}

#[tokio::test]
async fn the_count_limit_keeps_the_newest_messages_of_each_room() {
    let app = TestApp::spawn_with(|args| {
        args.history_max_messages = 5;
        args.prune_interval = Duration::from_millis(50);
    })
    .await;
    rooms_channel(&app).await;
    let crowded = publish_to(&app, "crowded", 12).await;
    let quiet = publish_to(&app, "quiet", 3).await;

    let kept = wait_for_history(&app, "crowded", |ids| ids.len() == 5).await;
    assert_eq!(kept, crowded[7..]);
    assert_eq!(history_ids(&app, "news", "quiet").await, quiet);

    // Pruning never touches id allocation.
    let next = publish_to(&app, "crowded", 1).await;
    assert_eq!(next, [quiet[2] + 1]);
}

#[tokio::test]
async fn the_age_limit_removes_old_messages_and_ids_keep_growing() {
    let app = TestApp::spawn_with(|args| {
        args.history_max_age = Duration::from_secs(1);
        args.prune_interval = Duration::from_millis(50);
    })
    .await;
    rooms_channel(&app).await;
    let old = publish_to(&app, "lobby", 3).await;
    assert_eq!(history_ids(&app, "news", "lobby").await, old);

    wait_for_history(&app, "lobby", <[i64]>::is_empty).await;

    let fresh = publish_to(&app, "lobby", 1).await;
    assert_eq!(fresh, [old[2] + 1]);
    assert_eq!(history_ids(&app, "news", "lobby").await, fresh);
}
