//! Durability (docs/api.md §9.11): a publish answered 201 survives the process being killed, and ids
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

/// One acknowledged object write, as the writer saw it.
#[derive(Clone, Copy, Debug)]
enum ObjectAck {
    Created { id: i64 },
    Updated { id: i64, revision: i64 },
    Deleted { id: i64 },
}

const OBJECTS: &str = "/v1.1/instances/crash-test/classes/counters/objects/";

/// Writes objects of `counters` (creates, `_increment` updates, deletes) until a request fails,
/// recording every acknowledged write.
async fn write_objects_until_failure(
    client: reqwest::Client,
    base: String,
    acked: Arc<Mutex<Vec<ObjectAck>>>,
    n: usize,
) {
    let mut live: Vec<i64> = Vec::new();
    for i in 0_usize.. {
        let step = (i * 7 + n) % 10;
        let (method, url, body) = if live.is_empty() || step < 3 {
            let body = json!({"n": 0, "channel": "log", "channel_room": format!("w{n}")});
            (reqwest::Method::POST, format!("{base}{OBJECTS}"), body)
        } else if step < 9 {
            let id = live[i % live.len()];
            let body = json!({"n": {"_increment": 1}});
            (
                reqwest::Method::PATCH,
                format!("{base}{OBJECTS}{id}/"),
                body,
            )
        } else {
            let id = live.remove(i % live.len());
            (
                reqwest::Method::DELETE,
                format!("{base}{OBJECTS}{id}/"),
                json!({}),
            )
        };
        let sent = client
            .request(method.clone(), &url)
            .header("X-API-KEY", ADMIN_KEY)
            .json(&body)
            .send()
            .await;
        let Ok(resp) = sent else { return };
        let status = resp.status().as_u16();
        let Ok(text) = resp.text().await else { return };
        let ack = match (method, status) {
            (reqwest::Method::DELETE, 204) => {
                let id = url.trim_end_matches('/').rsplit('/').next().unwrap();
                ObjectAck::Deleted {
                    id: id.parse().unwrap(),
                }
            }
            (reqwest::Method::POST | reqwest::Method::PATCH, 200 | 201) => {
                let object: Value = serde_json::from_str(&text).unwrap();
                let id = object["id"].as_i64().unwrap();
                let revision = object["revision"].as_i64().unwrap();
                if status == 201 {
                    live.push(id);
                    ObjectAck::Created { id }
                } else {
                    ObjectAck::Updated { id, revision }
                }
            }
            _ => return,
        };
        acked.lock().unwrap().push(ack);
    }
}

/// Every message of the `log` channel, oldest first, across the writers' rooms.
async fn all_messages(client: &reqwest::Client, server: &ChildServer, rooms: usize) -> Vec<Value> {
    let mut messages = Vec::new();
    for room in 0..rooms {
        let mut path = format!(
            "/v1.1/instances/crash-test/channels/log/history/?room=w{room}&ordering=asc&page_size=100"
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
            messages.extend(page["objects"].as_array().unwrap().iter().cloned());
            match page["next"].as_str() {
                Some(next) => path = next.to_owned(),
                None => break,
            }
        }
    }
    messages.sort_by_key(|m| m["id"].as_i64().unwrap());
    messages
}

/// Every stored object of `counters`: id → (revision, n).
async fn stored_objects(
    client: &reqwest::Client,
    server: &ChildServer,
) -> std::collections::BTreeMap<i64, (i64, i64)> {
    let mut objects = std::collections::BTreeMap::new();
    let mut path = format!("{OBJECTS}?page_size=100");
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
        for object in page["objects"].as_array().unwrap() {
            objects.insert(
                object["id"].as_i64().unwrap(),
                (
                    object["revision"].as_i64().unwrap(),
                    object["n"].as_i64().unwrap(),
                ),
            );
        }
        match page["next"].as_str() {
            Some(next) => path = next.to_owned(),
            None => return objects,
        }
    }
}

/// docs/api.md §9.11 "no phantom messages", §10.4: a data change and its change message commit
/// together. Writers create, update and delete objects until the server is SIGKILLed; after a
/// restart every acknowledged change is stored, each object revision has exactly one message,
/// and no message tells of a change that was not committed.
#[tokio::test]
async fn object_changes_and_their_messages_survive_sigkill_together() {
    const WRITERS: usize = 4;
    let db = TestDb::new().await;
    let env = [("HERALD_ADMIN_KEY", ADMIN_KEY)];
    let mut server = ChildServer::start(&db, &env).await;
    let client = reqwest::Client::new();
    for (path, body) in [
        ("/v1.1/instances/", json!({"name": "crash-test"})),
        (
            "/v1.1/instances/crash-test/channels/",
            json!({"name": "log", "type": "separate_rooms"}),
        ),
        (
            "/v1.1/instances/crash-test/classes/",
            json!({"name": "counters", "schema": [{"name": "n", "type": "integer"}]}),
        ),
    ] {
        let resp = client
            .post(server.url(path))
            .header("X-API-KEY", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{path}");
    }

    let acked = Arc::new(Mutex::new(Vec::new()));
    let base = server.url("");
    let base = base.trim_end_matches('/').to_owned();
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            tokio::spawn(write_objects_until_failure(
                client.clone(),
                base.clone(),
                acked.clone(),
                n,
            ))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().unwrap().len() < ACKED_BEFORE_KILL {
        assert!(tokio::time::Instant::now() < deadline, "writing stalled");
        tokio::task::yield_now().await;
    }
    server.child.start_kill().unwrap(); // SIGKILL
    server.child.wait().await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let mut restarted = ChildServer::start(&db, &env).await;
    let messages = all_messages(&client, &restarted, WRITERS).await;
    let objects = stored_objects(&client, &restarted).await;

    // The channel's ids are consecutive: no message was half-written or skipped.
    let ids: Vec<i64> = messages.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as i64).collect::<Vec<_>>());

    // The messages of each object, in order: (action, revision, n).
    let mut told: std::collections::BTreeMap<i64, Vec<(String, i64, i64)>> = Default::default();
    for message in &messages {
        let payload = &message["payload"];
        let id = payload["id"].as_i64().unwrap();
        let action = message["action"].as_str().unwrap().to_owned();
        let revision = payload["revision"].as_i64().unwrap_or(-1);
        let n = payload["n"].as_i64().unwrap_or(-1);
        told.entry(id).or_default().push((action, revision, n));
    }
    for (id, story) in &told {
        // Created once, then one update per revision, and — only if gone — one delete.
        assert_eq!(story[0].0, "create", "object {id}: {story:?}");
        assert_eq!((story[0].1, story[0].2), (1, 0), "object {id}: {story:?}");
        let updates: Vec<_> = story[1..].iter().filter(|s| s.0 == "update").collect();
        for (k, update) in updates.iter().enumerate() {
            let revision = k as i64 + 2;
            assert_eq!(
                (update.1, update.2),
                (revision, revision - 1),
                "object {id}: {story:?}"
            );
        }
        let deleted = story.last().is_some_and(|s| s.0 == "delete");
        assert_eq!(
            story.iter().filter(|s| s.0 == "delete").count(),
            usize::from(deleted),
            "object {id}: {story:?}"
        );
        match objects.get(id) {
            // A stored object's messages tell exactly its committed revisions.
            Some((revision, n)) => {
                assert!(!deleted, "object {id} is stored but has a delete message");
                assert_eq!(
                    (updates.len() as i64 + 1, *n),
                    (*revision, revision - 1),
                    "object {id}: stored revision {revision} but messages {story:?}"
                );
            }
            // A message for an object that is not stored must be its delete's.
            None => assert!(
                deleted,
                "object {id} has messages but was never deleted: {story:?}"
            ),
        }
    }
    // Every stored object has its messages, and every acknowledged change is stored.
    for id in objects.keys() {
        assert!(
            told.contains_key(id),
            "object {id} is stored without a create message"
        );
    }
    for ack in &acked {
        match *ack {
            ObjectAck::Created { id } => assert!(told.contains_key(&id), "{ack:?} lost"),
            ObjectAck::Updated { id, revision } => {
                let story = &told[&id];
                assert!(
                    story.iter().any(|s| s.0 == "update" && s.1 == revision),
                    "{ack:?} lost: {story:?}"
                );
            }
            ObjectAck::Deleted { id } => {
                assert!(
                    !objects.contains_key(&id),
                    "{ack:?} but the object is stored"
                );
                assert_eq!(told[&id].last().unwrap().0, "delete", "{ack:?} lost");
            }
        }
    }
    assert!(acked.len() >= ACKED_BEFORE_KILL);
    restarted.child.kill().await.unwrap();
}
