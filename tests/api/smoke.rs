use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_seed_publish_returns_exactly_the_documented_fields() {
    let app = TestApp::spawn().await;
    app.create_instance("rivia").await;
    let key = app
        .create_api_key("rivia", json!({"ignore_acl": true}))
        .await;
    app.create_channel(
        "rivia",
        json!({"name": "witchers", "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
    let resp = app
        .post(
            "/v1.1/instances/rivia/channels/witchers/publish/",
            Some(&key),
            json!({"payload": {"message": "Hello Witchers!", "type": "welcome"}, "room": "secret-room"}),
        )
        .await;
    let body = resp.assert_status(201).clone();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "action",
            "author",
            "created_at",
            "id",
            "links",
            "metadata",
            "payload",
            "room"
        ]
    );
    assert_eq!(body["action"], "custom");
    assert_eq!(body["metadata"], json!({"type": "message"}));
    assert_eq!(
        body["payload"],
        json!({"message": "Hello Witchers!", "type": "welcome"})
    );
    assert_eq!(body["room"], "secret-room");
    let id = body["id"].as_i64().unwrap();
    assert_eq!(
        body["links"],
        json!({"self": format!("/v1.1/instances/rivia/channels/witchers/history/{id}/")})
    );
    assert!(body["author"]["api_key"].is_i64());
    let created = body["created_at"].as_str().unwrap();
    assert_eq!(created.len(), "2016-03-17T20:13:46.695378Z".len());
    assert!(created.ends_with('Z'));
}
