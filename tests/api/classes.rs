//! The built-in `user_profile` class (SPEC §5.2, §10.1), read-only in this version.

use serde_json::json;

use crate::helpers::TestApp;

async fn rivia_with_a_user(app: &TestApp) -> String {
    app.create_instance("rivia").await;
    let key = app.create_api_key("rivia", json!({})).await;
    app.post(
        "/v1.1/instances/rivia/users/",
        Some(&app.admin_key),
        json!({"username": "geralt", "password": "roach"}),
    )
    .await
    .assert_status(201);
    key
}

#[tokio::test]
async fn every_instance_has_the_user_profile_class() {
    let app = TestApp::spawn().await;
    let bare_key = rivia_with_a_user(&app).await;
    for key in [&app.admin_key, &bare_key] {
        let resp = app
            .get("/v1.1/instances/rivia/classes/user_profile/", Some(key))
            .await;
        let class = resp.assert_status(200);
        assert_eq!(class["name"], "user_profile");
        assert_eq!(class["status"], "ready");
        assert_eq!(class["schema"], json!([]));
        assert_eq!(class["objects_count"], 1);
        assert_eq!(
            class["links"],
            json!({"self": "/v1.1/instances/rivia/classes/user_profile/",
                   "objects": "/v1.1/instances/rivia/classes/user_profile/objects/"})
        );
        let list = app.get("/v1.1/instances/rivia/classes/", Some(key)).await;
        let names: Vec<_> = list.assert_status(200)["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, [json!("user_profile")]);
    }
}

#[tokio::test]
async fn unknown_classes_and_foreign_keys_are_refused() {
    let app = TestApp::spawn().await;
    rivia_with_a_user(&app).await;
    app.get(
        "/v1.1/instances/rivia/classes/contracts/",
        Some(&app.admin_key),
    )
    .await
    .assert(404, json!({"detail": "Not found."}));
    app.create_instance("kaer-morhen").await;
    let foreign = app.create_api_key("kaer-morhen", json!({})).await;
    app.get(
        "/v1.1/instances/rivia/classes/user_profile/",
        Some(&foreign),
    )
    .await
    .assert(403, json!({"detail": "No such API Key."}));
    app.get("/v1.1/instances/rivia/classes/", None)
        .await
        .assert(
            403,
            json!({"detail": "You do not have permission to perform this action."}),
        );
}
