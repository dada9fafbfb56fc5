//! Password guessing (docs/api.md §3.3): per-identity lock-out, a per-IP budget of checks, a bounded
//! Argon2 pool, and the same cost for unknown identities.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Resp, TestApp};

const LOG_IN: &str = "/v1.1/account/auth/";

async fn log_in(app: &TestApp, email: &str, password: &str) -> Resp {
    app.post(LOG_IN, None, json!({"email": email, "password": password}))
        .await
}

fn assert_locked(resp: &Resp) {
    assert_eq!(resp.status, 429, "{}", resp.text);
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        resp.json,
        json!({"detail": format!("Too many failed logins. Try again in {retry} seconds.")})
    );
}

#[tokio::test]
async fn two_hundred_wrong_passwords_lock_the_account_but_no_one_else() {
    let app = TestApp::spawn_with(|args| args.rate_login = 0).await;
    app.create_account("yen@vengerberg.io").await;
    app.create_account("triss@maribor.io").await;
    let mut statuses = Vec::new();
    for _ in 0..200 {
        statuses.push(log_in(&app, "yen@vengerberg.io", "wrong").await);
    }
    // Ten failures, then the lock.
    for resp in &statuses[..10] {
        resp.assert(401, json!({"detail": "Invalid password."}));
    }
    for resp in &statuses[10..] {
        assert_locked(resp);
    }
    // The right password is refused while the lock lasts; another account is not affected.
    assert_locked(&log_in(&app, "yen@vengerberg.io", "secret-password").await);
    log_in(&app, "triss@maribor.io", "secret-password")
        .await
        .assert_status(200);
}

#[tokio::test]
async fn user_log_ins_lock_per_instance_and_username_and_a_success_clears_the_count() {
    let app = TestApp::spawn_with(|args| {
        args.rate_login = 0;
        args.login_max_failures = 3;
    })
    .await;
    for instance in ["rivia", "kaer-morhen"] {
        app.create_instance(instance).await;
        app.post(
            &format!("/v1.1/instances/{instance}/users/"),
            Some(&app.admin_key),
            json!({"username": "geralt", "password": "roach"}),
        )
        .await
        .assert_status(201);
    }
    let attempt = |instance: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.post(
                &format!("/v1.1/instances/{instance}/user/auth/"),
                Some(&app.admin_key),
                json!({"username": "geralt", "password": password}),
            )
            .await
        }
    };
    // Two failures, a success, two more: never locked.
    for password in ["x", "y", "roach", "x", "y"] {
        let resp = attempt("rivia", password).await;
        assert_ne!(resp.status, 429, "{}", resp.text);
    }
    attempt("rivia", "z")
        .await
        .assert(401, json!({"detail": "Invalid password."}));
    assert_locked(&attempt("rivia", "roach").await);
    // The same username in another instance is another identity.
    attempt("kaer-morhen", "roach").await.assert_status(200);
    // Unknown usernames are counted too, and answered as before.
    for _ in 0..3 {
        app.post(
            "/v1.1/instances/rivia/user/auth/",
            Some(&app.admin_key),
            json!({"username": "ciri", "password": "x"}),
        )
        .await
        .assert(401, json!({"detail": "Invalid username."}));
    }
    let resp = app
        .post(
            "/v1.1/instances/rivia/user/auth/",
            Some(&app.admin_key),
            json!({"username": "ciri", "password": "x"}),
        )
        .await;
    assert_locked(&resp);
}

#[tokio::test]
async fn each_address_may_check_rate_login_passwords_a_minute() {
    let app = TestApp::spawn_with(|args| {
        args.rate_login = 5;
        args.login_max_failures = 0;
    })
    .await;
    app.create_account("yen@vengerberg.io").await;
    for n in 0..5 {
        let email = format!("nobody{n}@example.com");
        log_in(&app, &email, "x")
            .await
            .assert(401, json!({"detail": "Invalid email."}));
    }
    // Across identities, even with the right password: the budget is the address's.
    let resp = log_in(&app, "yen@vengerberg.io", "secret-password").await;
    assert_eq!(resp.status, 429, "{}", resp.text);
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let unit = if retry == 1 { "second" } else { "seconds" };
    assert_eq!(
        resp.json,
        json!({"detail": format!("Request was throttled. Expected available in {retry} {unit}.")})
    );
    // A password change's current password is a check too.
    let resp = app
        .post(
            "/v1.1/account/password/",
            Some(&app.admin_key),
            json!({"current_password": "admin-password", "new_password": "n"}),
        )
        .await;
    assert_eq!(resp.status, 429, "{}", resp.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_log_ins_queues_for_one_hashing_slot_and_other_requests_go_on() {
    let app = Arc::new(
        TestApp::spawn_with(|args| {
            args.rate_login = 0;
            args.login_max_failures = 0;
            args.hash_concurrency = Some(1);
        })
        .await,
    );
    let burst: Vec<_> = (0..1000)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move { log_in(&app, &format!("n{n}@example.com"), "x").await })
        })
        .collect();
    // While 1 000 checks wait for the one slot, the API answers at once.
    let started = tokio::time::Instant::now();
    app.get("/v1.1/", None).await.assert_status(200);
    app.get("/v1.1/account/", Some(&app.admin_key))
        .await
        .assert_status(200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the API waited {:?} behind the password checks",
        started.elapsed()
    );
    let (mut checked, mut busy) = (0, 0);
    for task in burst {
        let resp = task.await.expect("log-in task");
        match resp.status {
            401 => {
                resp.assert(401, json!({"detail": "Invalid email."}));
                checked += 1;
            }
            503 => {
                resp.assert(503, json!({"detail": "Server is busy. Try again."}));
                busy += 1;
            }
            other => panic!("unexpected {other}: {}", resp.text),
        }
    }
    // One slot and 256 places in line: most of the burst is turned away at once.
    assert!(busy > 0, "{checked} checked, none turned away");
    assert_eq!(checked + busy, 1000);
}
