//! Durability (SPEC §9.11): a publish answered 201 survives the process being killed, and ids
//! stay consecutive across the crash.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::cli::ChildServer;
use crate::helpers::TestDb;

const ADMIN_KEY: &str = "d00dfeedd00dfeedd00dfeedd00dfeedd00dfee0";
const PUBLISHERS: usize = 4;
/// Acknowledged publishes to wait for before the kill.
const ACKED_BEFORE_KILL: usize = 300;

async fn publish_until_failure(
    client: reqwest::Client,
    url: String,
    acked: Arc<Mutex<Vec<i64>>>,
    n: usize,
) {
    for i in 0.. {
        let sent = client
            .post(&url)
            .header("X-API-KEY", ADMIN_KEY)
            .json(&json!({"room": format!("r{}", i % 3), "payload": {"publisher": n, "i": i}}))
            .send()
            .await;
        let Ok(resp) = sent else { return };
        if resp.status() != 201 {
            return;
        }
        let Ok(body) = resp.json::<Value>().await else {
            return;
        };
        acked.lock().unwrap().push(body["id"].as_i64().expect("id"));
    }
}

/// Every id stored in the channel, across its rooms, following `next` links.
async fn stored_ids(client: &reqwest::Client, server: &ChildServer) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    for room in ["r0", "r1", "r2"] {
        let mut path = format!(
            "/v1.1/instances/crash-test/channels/log/history/?room={room}&ordering=asc&page_size=100"
        );
        loop {
            let page: Value = client
                .get(server.url(&path))
                .header("X-API-KEY", ADMIN_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for message in page["objects"].as_array().unwrap() {
                assert_eq!(message["room"], room);
                assert!(ids.insert(message["id"].as_i64().unwrap()), "duplicate id");
            }
            match page["next"].as_str() {
                Some(next) => path = next.to_owned(),
                None => break,
            }
        }
    }
    ids
}

#[tokio::test]
async fn acknowledged_publishes_survive_sigkill_with_consecutive_ids() {
    let db = TestDb::new().await;
    let env = [("HERALD_ADMIN_KEY", ADMIN_KEY)];
    let mut server = ChildServer::start(&db, &env).await;
    let client = reqwest::Client::new();
    let resp = client
        .post(server.url("/v1.1/instances/"))
        .header("X-API-KEY", ADMIN_KEY)
        .json(&json!({"name": "crash-test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = client
        .post(server.url("/v1.1/instances/crash-test/channels/"))
        .header("X-API-KEY", ADMIN_KEY)
        .json(&json!({"name": "log", "type": "separate_rooms", "custom_publish": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    let acked = Arc::new(Mutex::new(Vec::new()));
    let url = server.url("/v1.1/instances/crash-test/channels/log/publish/");
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|n| {
            tokio::spawn(publish_until_failure(
                client.clone(),
                url.clone(),
                acked.clone(),
                n,
            ))
        })
        .collect();
    // Kill mid-stream, as soon as enough publishes were acknowledged.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().unwrap().len() < ACKED_BEFORE_KILL {
        assert!(tokio::time::Instant::now() < deadline, "publishing stalled");
        tokio::task::yield_now().await;
    }
    server.child.start_kill().unwrap(); // SIGKILL
    server.child.wait().await.unwrap();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let acked: BTreeSet<i64> = acked.lock().unwrap().iter().copied().collect();
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    let mut restarted = ChildServer::start(&db, &env).await;
    let stored = stored_ids(&client, &restarted).await;
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // Ids are consecutive from 1: nothing allocated was skipped or half-written.
    let max = *stored.last().unwrap();
    assert_eq!(stored, (1..=max).collect::<BTreeSet<_>>());

    // The sequence continues after the crash.
    let resp = client
        .post(restarted.url("/v1.1/instances/crash-test/channels/log/publish/"))
        .header("X-API-KEY", ADMIN_KEY)
        .json(&json!({"room": "r0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], max + 1);
    restarted.child.kill().await.unwrap();
}
