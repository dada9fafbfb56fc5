//! Channel history: list, paging, shaping, detail, permissions and retention (docs/api.md §9.7, §2.5,
//! §9.11).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::TestApp;

const FORBIDDEN: &str = "You do not have permission to perform this action.";
const ROOM_REQUIRED: &str = "This field is required for channels with separate rooms.";
const BAD_PAGE: &str = "Incorrect page parameter provided.";

fn forbidden() -> Value {
    json!({"detail": FORBIDDEN})
}

fn history_path(channel: &str) -> String {
    format!("/v1.1/instances/rivia/channels/{channel}/history/")
}

fn envelope(objects: &[Value]) -> Value {
    json!({"objects": objects, "next": null, "prev": null})
}

struct Keys {
    trusted: String,
    reader: String,
    bare: String,
}

/// An instance `rivia` with keys of each class and two channels with custom publish and no
/// permissions for others: `plain` (default type) and `rooms` (separate_rooms).
async fn setup_with(app: TestApp) -> (TestApp, Keys) {
    app.create_instance("rivia").await;
    let trusted = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    let reader = app
        .create_api_key("rivia", json!({"allow_anonymous_read": true}))
        .await;
    let bare = app.create_api_key("rivia", json!({})).await;
    app.create_channel("rivia", json!({"name": "plain", "custom_publish": true}))
        .await;
    app.create_channel(
        "rivia",
        json!({"name": "rooms", "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
    (
        app,
        Keys {
            trusted,
            reader,
            bare,
        },
    )
}

async fn setup() -> (TestApp, Keys) {
    setup_with(TestApp::spawn().await).await
}

/// Publishes `n` messages (payload `{"n": i}`) as the owner and returns them in publish order.
async fn publish_n(app: &TestApp, channel: &str, room: Option<&str>, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut body = json!({"payload": {"n": i}});
        if let Some(room) = room {
            body["room"] = json!(room);
        }
        out.push(app.publish("rivia", channel, body).await);
    }
    out
}

fn id_of(message: &Value) -> i64 {
    message["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id: {message}"))
}

/// The message ids of a list page, in its order.
pub(crate) fn ids(page: &Value) -> Vec<i64> {
    page["objects"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list envelope: {page}"))
        .iter()
        .map(id_of)
        .collect()
}

fn reversed(messages: &[Value]) -> Vec<Value> {
    messages.iter().rev().cloned().collect()
}

/// The decoded query parameters of a relative link.
fn link_params(link: &str) -> BTreeMap<String, String> {
    let query = link.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn get_ok(app: &TestApp, url: &str) -> Value {
    app.get(url, Some(&app.admin_key))
        .await
        .assert_status(200)
        .clone()
}

// ---------------------------------------------------------------- list and filters

#[tokio::test]
async fn history_lists_messages_newest_first_by_default() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 3).await;
    app.get(&history_path("plain"), Some(&app.admin_key))
        .await
        .assert(200, envelope(&reversed(&sent)));
}

#[tokio::test]
async fn history_of_a_channel_without_messages_is_an_empty_list() {
    let (app, _) = setup().await;
    app.get(&history_path("plain"), Some(&app.admin_key))
        .await
        .assert(200, envelope(&[]));
}

#[tokio::test]
async fn listed_messages_carry_their_self_link() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "rooms", Some("lobby"), 1).await;
    let page = get_ok(&app, &format!("{}?room=lobby", history_path("rooms"))).await;
    let id = id_of(&sent[0]);
    assert_eq!(
        page["objects"][0]["links"],
        json!({"self": format!("/v1.1/instances/rivia/channels/rooms/history/{id}/")})
    );
}

#[tokio::test]
async fn ordering_asc_lists_oldest_first_and_is_case_insensitive() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 3).await;
    for ordering in ["asc", "ASC", "Asc"] {
        app.get(
            &format!("{}?ordering={ordering}", history_path("plain")),
            Some(&app.admin_key),
        )
        .await
        .assert(200, envelope(&sent));
    }
    app.get(
        &format!("{}?ordering=DESC", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&reversed(&sent)));
}

#[tokio::test]
async fn an_unknown_ordering_falls_back_to_newest_first() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 3).await;
    app.get(
        &format!("{}?ordering=sideways", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&reversed(&sent)));
}

#[tokio::test]
async fn last_id_returns_only_later_messages() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 4).await;
    let first = id_of(&sent[0]);
    app.get(
        &format!("{}?ordering=asc&last_id={first}", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&sent[1..]));
    app.get(
        &format!("{}?last_id={first}", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&reversed(&sent[1..])));
    let last = id_of(&sent[3]);
    app.get(
        &format!("{}?last_id={last}", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&[]));
    app.get(
        &format!("{}?ordering=asc&last_id=0", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&sent));
}

#[tokio::test]
async fn an_empty_last_id_or_room_counts_as_absent() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 2).await;
    for query in ["last_id=", "last_id", "last_id=&room=", "room"] {
        app.get(
            &format!("{}?ordering=asc&{query}", history_path("plain")),
            Some(&app.admin_key),
        )
        .await
        .assert(200, envelope(&sent));
    }
}

#[tokio::test]
async fn a_non_integer_last_id_is_rejected() {
    let (app, _) = setup().await;
    for last_id in ["abc", "1.5", "1e3", "0x10"] {
        app.get(
            &format!("{}?last_id={last_id}", history_path("plain")),
            Some(&app.admin_key),
        )
        .await
        .assert(400, json!({"last_id": ["A valid integer is required."]}));
    }
}

#[tokio::test]
async fn a_negative_last_id_is_rejected() {
    let (app, _) = setup().await;
    app.get(
        &format!("{}?last_id=-1", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(
        400,
        json!({"last_id": ["Ensure this value is greater than or equal to 0."]}),
    );
}

#[tokio::test]
async fn a_separate_rooms_channel_requires_a_room() {
    let (app, keys) = setup().await;
    publish_n(&app, "rooms", Some("lobby"), 1).await;
    for query in ["", "?room=", "?room", "?room=%20%20", "?ordering=asc"] {
        app.get(
            &format!("{}{query}", history_path("rooms")),
            Some(&app.admin_key),
        )
        .await
        .assert(400, json!({"room": ROOM_REQUIRED}));
    }
    app.get(&history_path("rooms"), Some(&keys.trusted))
        .await
        .assert(400, json!({"room": ROOM_REQUIRED}));
}

#[tokio::test]
async fn a_bad_last_id_is_reported_before_a_missing_room() {
    let (app, _) = setup().await;
    app.get(
        &format!("{}?last_id=abc", history_path("rooms")),
        Some(&app.admin_key),
    )
    .await
    .assert(400, json!({"last_id": ["A valid integer is required."]}));
}

#[tokio::test]
async fn the_room_is_matched_case_insensitively_and_trimmed() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "rooms", Some("Lobby"), 2).await;
    for room in ["lobby", "LOBBY", "%20Lobby%20"] {
        app.get(
            &format!("{}?room={room}&ordering=asc", history_path("rooms")),
            Some(&app.admin_key),
        )
        .await
        .assert(200, envelope(&sent));
    }
}

#[tokio::test]
async fn rooms_are_isolated_from_each_other() {
    let (app, _) = setup().await;
    let a1 = app
        .publish("rivia", "rooms", json!({"payload": {"n": 1}, "room": "a"}))
        .await;
    let b1 = app
        .publish("rivia", "rooms", json!({"payload": {"n": 2}, "room": "b"}))
        .await;
    let a2 = app
        .publish("rivia", "rooms", json!({"payload": {"n": 3}, "room": "a"}))
        .await;
    app.get(
        &format!("{}?room=a", history_path("rooms")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&[a2.clone(), a1.clone()]));
    app.get(
        &format!("{}?room=b", history_path("rooms")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&[b1]));
    app.get(
        &format!("{}?room=c", history_path("rooms")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&[]));
    // last_id is per channel: an id from another room still filters by id.
    app.get(
        &format!("{}?room=a&last_id={}", history_path("rooms"), id_of(&a1)),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&[a2]));
}

#[tokio::test]
async fn a_default_channel_ignores_the_room_parameter() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 2).await;
    app.get(
        &format!("{}?room=anything&ordering=asc", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&sent));
}

#[tokio::test]
async fn history_of_another_channel_is_not_mixed_in() {
    let (app, _) = setup().await;
    let plain = publish_n(&app, "plain", None, 2).await;
    publish_n(&app, "rooms", Some("x"), 2).await;
    app.get(
        &format!("{}?ordering=asc", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&plain));
}

#[tokio::test]
async fn history_of_a_missing_channel_is_channel_not_found() {
    let (app, keys) = setup().await;
    for key in [&app.admin_key, &keys.trusted, &keys.reader] {
        app.get(&history_path("ghost"), Some(key))
            .await
            .assert(404, json!({"detail": "Channel was not found."}));
        app.get(&format!("{}1/", history_path("ghost")), Some(key))
            .await
            .assert(404, json!({"detail": "Channel was not found."}));
    }
}

#[tokio::test]
async fn the_channel_name_in_the_history_path_is_case_insensitive() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 1).await;
    app.get(&history_path("PLAIN"), Some(&app.admin_key))
        .await
        .assert(200, envelope(&sent));
}

// ---------------------------------------------------------------- paging

#[tokio::test]
async fn a_full_page_has_a_next_link_and_no_prev_link() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 5).await;
    let page = get_ok(&app, &format!("{}?page_size=2", history_path("plain"))).await;
    assert_eq!(ids(&page), [id_of(&sent[4]), id_of(&sent[3])]);
    assert_eq!(page["prev"], Value::Null);
    let next = page["next"].as_str().expect("a next link on a full page");
    assert!(
        next.starts_with(&history_path("plain")),
        "next must be a relative path to the same list: {next}"
    );
    let params = link_params(next);
    assert_eq!(params.get("page_size").map(String::as_str), Some("2"));
    let page = get_ok(&app, next).await;
    assert_eq!(ids(&page), [id_of(&sent[2]), id_of(&sent[1])]);
}

#[tokio::test]
async fn a_short_page_has_no_next_link() {
    let (app, _) = setup().await;
    publish_n(&app, "plain", None, 3).await;
    let page = get_ok(&app, &format!("{}?page_size=5", history_path("plain"))).await;
    assert_eq!(ids(&page).len(), 3);
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["prev"], Value::Null);
}

#[tokio::test]
async fn the_next_link_keeps_room_last_id_ordering_and_page_size() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "rooms", Some("lobby"), 6).await;
    let after = id_of(&sent[0]);
    let url = format!(
        "{}?room=Lobby&last_id={after}&ordering=asc&page_size=2",
        history_path("rooms")
    );
    let page = get_ok(&app, &url).await;
    assert_eq!(ids(&page), [id_of(&sent[1]), id_of(&sent[2])]);
    let next = page["next"].as_str().expect("a next link").to_owned();
    let params = link_params(&next);
    assert_eq!(
        params.get("room").map(|r| r.to_lowercase()).as_deref(),
        Some("lobby"),
        "next: {next}"
    );
    assert_eq!(
        params.get("last_id").map(String::as_str),
        Some(after.to_string().as_str()),
        "next: {next}"
    );
    assert_eq!(
        params.get("ordering").map(|o| o.to_lowercase()).as_deref(),
        Some("asc"),
        "next: {next}"
    );
    assert_eq!(
        params.get("page_size").map(String::as_str),
        Some("2"),
        "next: {next}"
    );
    assert!(
        !next.contains(&app.admin_key),
        "links must not carry keys: {next}"
    );
    let page = get_ok(&app, &next).await;
    assert_eq!(ids(&page), [id_of(&sent[3]), id_of(&sent[4])]);
    let next = page["next"].as_str().expect("a next link").to_owned();
    let page = get_ok(&app, &next).await;
    assert_eq!(ids(&page), [id_of(&sent[5])]);
    assert_eq!(page["next"], Value::Null);
}

/// Walks `start` forward through `next`, then back through `prev` from the last page, and checks
/// both walks cover `expected` exactly once, in order.
async fn walk_both_ways(app: &TestApp, start: &str, expected: &[i64], page_size: usize) {
    let mut url = start.to_owned();
    let mut forward: Vec<i64> = Vec::new();
    let mut page = Value::Null;
    for step in 0..=expected.len() + 2 {
        page = get_ok(app, &url).await;
        if step == 0 {
            assert_eq!(page["prev"], Value::Null, "first page has no prev: {page}");
        }
        let page_ids = ids(&page);
        assert!(page_ids.len() <= page_size, "page too long: {page}");
        forward.extend(&page_ids);
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(
                    page_ids.len(),
                    page_size,
                    "next link on a short page: {page}"
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(forward, expected, "forward walk through next links");
    assert!(page["next"].is_null(), "forward walk did not end");

    let last_page = ids(&page);
    let mut backward_pages: Vec<Vec<i64>> = Vec::new();
    for _ in 0..=expected.len() + 2 {
        match page["prev"].as_str() {
            Some(prev) => {
                page = get_ok(app, prev).await;
                backward_pages.push(ids(&page));
            }
            None => break,
        }
    }
    assert!(page["prev"].is_null(), "backward walk did not end");
    let mut backward: Vec<i64> = backward_pages.into_iter().rev().flatten().collect();
    backward.extend(last_page);
    assert_eq!(backward, expected, "backward walk through prev links");
}

#[tokio::test]
async fn next_and_prev_links_walk_the_whole_room_history_newest_first() {
    let (app, _) = setup().await;
    publish_n(&app, "rooms", Some("other"), 2).await;
    let sent = publish_n(&app, "rooms", Some("lobby"), 7).await;
    publish_n(&app, "rooms", Some("other"), 2).await;
    let expected: Vec<i64> = sent.iter().rev().map(id_of).collect();
    walk_both_ways(
        &app,
        &format!("{}?room=lobby&page_size=3", history_path("rooms")),
        &expected,
        3,
    )
    .await;
}

#[tokio::test]
async fn next_and_prev_links_walk_the_whole_room_history_oldest_first() {
    let (app, _) = setup().await;
    publish_n(&app, "rooms", Some("other"), 2).await;
    let sent = publish_n(&app, "rooms", Some("lobby"), 7).await;
    publish_n(&app, "rooms", Some("other"), 2).await;
    let expected: Vec<i64> = sent.iter().map(id_of).collect();
    walk_both_ways(
        &app,
        &format!(
            "{}?room=lobby&ordering=asc&page_size=3",
            history_path("rooms")
        ),
        &expected,
        3,
    )
    .await;
}

#[tokio::test]
async fn next_and_prev_links_walk_a_default_channel_with_last_id() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 9).await;
    let after = id_of(&sent[1]);
    let expected: Vec<i64> = sent[2..].iter().map(id_of).collect();
    walk_both_ways(
        &app,
        &format!(
            "{}?last_id={after}&ordering=asc&page_size=2",
            history_path("plain")
        ),
        &expected,
        2,
    )
    .await;
}

#[tokio::test]
async fn page_size_above_100_is_treated_as_100() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 101).await;
    let newest_100: Vec<i64> = sent.iter().rev().take(100).map(id_of).collect();
    for page_size in ["101", "1000", "100000000000000000000000000000"] {
        let page = get_ok(
            &app,
            &format!("{}?page_size={page_size}", history_path("plain")),
        )
        .await;
        assert_eq!(ids(&page), newest_100, "page_size={page_size}");
        assert!(page["next"].is_string(), "a full page has next: {page}");
    }
    let page = get_ok(&app, &history_path("plain")).await;
    assert_eq!(ids(&page), newest_100, "default page size");
}

#[tokio::test]
async fn page_size_zero_returns_no_objects() {
    let (app, _) = setup().await;
    publish_n(&app, "plain", None, 2).await;
    let page = get_ok(&app, &format!("{}?page_size=0", history_path("plain"))).await;
    assert_eq!(page["objects"], json!([]));
}

#[tokio::test]
async fn bad_paging_parameters_are_rejected() {
    let (app, _) = setup().await;
    publish_n(&app, "plain", None, 1).await;
    for query in [
        "page_size=-1",
        "page_size=abc",
        "page_size=1.5",
        "direction=2",
        "direction=-1",
        "direction=forward",
        "last_pk=-1",
        "last_pk=abc",
        "direction=1&last_pk=x",
    ] {
        app.get(
            &format!("{}?{query}", history_path("plain")),
            Some(&app.admin_key),
        )
        .await
        .assert(400, json!({"detail": BAD_PAGE}));
    }
}

#[tokio::test]
async fn fields_restricts_the_keys_of_each_message() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 2).await;
    let expected: Vec<Value> = sent
        .iter()
        .rev()
        .map(|m| json!({"id": m["id"], "payload": m["payload"]}))
        .collect();
    app.get(
        &format!("{}?fields=id,payload", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&expected));
}

#[tokio::test]
async fn excluded_fields_removes_keys_such_as_links() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 2).await;
    let expected: Vec<Value> = sent
        .iter()
        .rev()
        .map(|m| {
            let mut m = m.clone();
            m.as_object_mut().unwrap().remove("links");
            m
        })
        .collect();
    app.get(
        &format!("{}?excluded_fields=links", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&expected));
}

#[tokio::test]
async fn the_next_link_keeps_field_shaping() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 2).await;
    let page = get_ok(
        &app,
        &format!("{}?fields=id&page_size=1", history_path("plain")),
    )
    .await;
    assert_eq!(page["objects"], json!([{"id": sent[1]["id"]}]));
    let next = page["next"].as_str().expect("a next link");
    assert_eq!(
        link_params(next).get("fields").map(String::as_str),
        Some("id")
    );
    let page = get_ok(&app, next).await;
    assert_eq!(page["objects"], json!([{"id": sent[0]["id"]}]));
}

// ---------------------------------------------------------------- detail

#[tokio::test]
async fn a_message_is_read_by_id_with_its_links() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 2).await;
    for m in &sent {
        app.get(
            &format!("{}{}/", history_path("plain"), id_of(m)),
            Some(&app.admin_key),
        )
        .await
        .assert(200, m.clone());
    }
}

#[tokio::test]
async fn the_self_link_of_a_message_resolves_without_a_room() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "rooms", Some("lobby"), 1).await;
    let link = sent[0]["links"]["self"].as_str().expect("self link");
    app.get(link, Some(&app.admin_key))
        .await
        .assert(200, sent[0].clone());
}

#[tokio::test]
async fn a_room_given_to_the_detail_must_match() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "rooms", Some("lobby"), 1).await;
    let path = format!("{}{}/", history_path("rooms"), id_of(&sent[0]));
    for room in ["lobby", "LOBBY"] {
        app.get(&format!("{path}?room={room}"), Some(&app.admin_key))
            .await
            .assert(200, sent[0].clone());
    }
    app.get(&format!("{path}?room=kitchen"), Some(&app.admin_key))
        .await
        .assert(404, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn the_id_of_another_channels_message_is_not_found() {
    let (app, _) = setup().await;
    let other = publish_n(&app, "rooms", Some("lobby"), 3).await;
    let plain = publish_n(&app, "plain", None, 1).await;
    // Ids are per channel, so pick one that only `rooms` has.
    let id = other
        .iter()
        .map(id_of)
        .find(|id| *id != id_of(&plain[0]))
        .expect("an id of rooms only");
    app.get(
        &format!("{}{id}/", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
}

#[tokio::test]
async fn an_unknown_message_id_is_not_found() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 1).await;
    let id = id_of(&sent[0]) + 1000;
    app.get(
        &format!("{}{id}/", history_path("plain")),
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
}

// ---------------------------------------------------------------- permissions

#[tokio::test]
async fn a_trusted_key_reads_the_history_of_any_channel() {
    let (app, keys) = setup().await;
    let sent = publish_n(&app, "plain", None, 2).await;
    app.get(&history_path("plain"), Some(&keys.trusted))
        .await
        .assert(200, envelope(&reversed(&sent)));
    app.get(
        &format!("{}{}/", history_path("plain"), id_of(&sent[0])),
        Some(&keys.trusted),
    )
    .await
    .assert(200, sent[0].clone());
}

#[tokio::test]
async fn an_anonymous_reader_reads_history_when_others_may_subscribe() {
    let (app, keys) = setup().await;
    for perm in ["subscribe", "publish"] {
        let channel = format!("open-{perm}");
        app.create_channel(
            "rivia",
            json!({"name": channel, "other_permissions": perm, "custom_publish": true}),
        )
        .await;
        let sent = publish_n(&app, &channel, None, 2).await;
        app.get(&history_path(&channel), Some(&keys.reader))
            .await
            .assert(200, envelope(&reversed(&sent)));
        app.get(
            &format!("{}{}/", history_path(&channel), id_of(&sent[0])),
            Some(&keys.reader),
        )
        .await
        .assert(200, sent[0].clone());
    }
}

#[tokio::test]
async fn an_anonymous_reader_is_refused_history_when_others_may_not_subscribe() {
    let (app, keys) = setup().await;
    let sent = publish_n(&app, "plain", None, 1).await;
    app.get(&history_path("plain"), Some(&keys.reader))
        .await
        .assert(403, forbidden());
    app.get(
        &format!("{}{}/", history_path("plain"), id_of(&sent[0])),
        Some(&keys.reader),
    )
    .await
    .assert(403, forbidden());
    // The permission check comes before the room check.
    app.get(&history_path("rooms"), Some(&keys.reader))
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn a_bare_key_is_refused_history_even_on_an_open_channel() {
    let (app, keys) = setup().await;
    app.create_channel(
        "rivia",
        json!({"name": "open", "other_permissions": "publish", "custom_publish": true}),
    )
    .await;
    let sent = publish_n(&app, "open", None, 1).await;
    app.get(&history_path("open"), Some(&keys.bare))
        .await
        .assert(403, forbidden());
    app.get(
        &format!("{}{}/", history_path("open"), id_of(&sent[0])),
        Some(&keys.bare),
    )
    .await
    .assert(403, forbidden());
    app.get(&history_path("ghost"), Some(&keys.bare))
        .await
        .assert(403, forbidden());
}

#[tokio::test]
async fn a_request_without_a_key_is_refused_history() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 1).await;
    app.get(&history_path("plain"), None)
        .await
        .assert(403, forbidden());
    app.get(
        &format!("{}{}/", history_path("plain"), id_of(&sent[0])),
        None,
    )
    .await
    .assert(403, forbidden());
}

// ---------------------------------------------------------------- retention (§9.11)

/// Polls the history at `url` until it lists exactly `count` messages (the pruner runs in the
/// background) and returns that page.
async fn wait_for_count(app: &TestApp, url: &str, count: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = get_ok(app, url).await;
        if ids(&page).len() == count {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history never reached {count} messages: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn history_keeps_only_the_newest_messages_per_room_and_ids_continue() {
    let app = TestApp::spawn_with(|args| {
        args.history_max_messages = 2;
        args.prune_interval = Duration::from_millis(20);
    })
    .await;
    let (app, _) = setup_with(app).await;
    let a = publish_n(&app, "rooms", Some("a"), 4).await;
    let b = publish_n(&app, "rooms", Some("b"), 1).await;
    let page = wait_for_count(&app, &format!("{}?room=a", history_path("rooms")), 2).await;
    assert_eq!(page, envelope(&[a[3].clone(), a[2].clone()]));
    // The limit is per room: `b` keeps its single message.
    app.get(
        &format!("{}?room=b", history_path("rooms")),
        Some(&app.admin_key),
    )
    .await
    .assert(200, envelope(&b));
    app.get(
        &format!("{}{}/", history_path("rooms"), id_of(&a[0])),
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
    // Pruning never affects id allocation.
    let next = app
        .publish("rivia", "rooms", json!({"payload": {}, "room": "a"}))
        .await;
    assert_eq!(id_of(&next), id_of(&b[0]) + 1);
}

#[tokio::test]
async fn history_drops_messages_older_than_the_maximum_age_and_ids_continue() {
    let app = TestApp::spawn_with(|args| {
        args.history_max_age = Duration::from_secs(1);
        args.prune_interval = Duration::from_millis(20);
    })
    .await;
    let (app, _) = setup_with(app).await;
    let sent = publish_n(&app, "plain", None, 2).await;
    wait_for_count(&app, &history_path("plain"), 0).await;
    let next = app.publish("rivia", "plain", json!({})).await;
    assert_eq!(id_of(&next), id_of(&sent[1]) + 1);
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart_and_ids_continue() {
    let (app, _) = setup().await;
    let sent = publish_n(&app, "plain", None, 3).await;
    let admin_key = app.admin_key.clone();
    let database = app
        .stop_keeping_database()
        .await
        .expect("graceful shutdown");
    let app = TestApp::spawn_on(database, |_| {}).await;
    app.get(&history_path("plain"), Some(&admin_key))
        .await
        .assert(200, envelope(&reversed(&sent)));
    let next = app
        .post(
            "/v1.1/instances/rivia/channels/plain/publish/",
            Some(&admin_key),
            json!({"payload": {"after": "restart"}}),
        )
        .await;
    assert_eq!(id_of(next.assert_status(201)), id_of(&sent[2]) + 1);
}
