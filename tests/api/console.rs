//! The web console (docs/api.md §11.6): how its files are served, `--console false`, and a person's
//! walk through it in headless Chromium against a real server — sign in, create an instance, a
//! key and a channel, follow the channel live, publish, read history, survive a server restart.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them);
//! without `/usr/bin/chromedriver` it says it was skipped and passes. It saves a screenshot of
//! every page under `target/console-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::helpers::{TestApp, skip_on_postgres};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the page may take to show what a step waits for.
const UI_WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn console_redirects_and_serves_its_files_under_a_strict_policy() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let bare = client.get(app.url("/console")).send().await.expect("get");
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/console/");

    for (path, content_type) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/channel.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let resp = client.get(app.url(path)).send().await.expect("get");
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        let policy = headers["content-security-policy"].to_str().expect("ascii");
        assert!(policy.starts_with("default-src 'none';"), "{policy}");
        assert!(policy.contains("connect-src 'self'"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }

    let head = client
        .head(app.url("/console/"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);

    // Anything else under /console/ is the API's 404, and the API itself is unchanged.
    app.get("/console/missing.js", None)
        .await
        .assert(404, json!({"detail": "Not found."}));
    app.get("/v1.1/", None).await.assert_status(200);
}

#[tokio::test]
async fn console_false_turns_the_console_off() {
    let app = TestApp::spawn_with(|args| args.console = false).await;
    for path in ["/console/", "/console", "/console/app.js"] {
        app.get(path, None)
            .await
            .assert(404, json!({"detail": "Not found."}));
    }
}

#[tokio::test]
async fn a_person_runs_a_channel_from_the_console_in_chromium() {
    if skip_on_postgres("the console is a client of the API; one backend is enough") {
        return;
    }
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        // CI installs both and says so: there, a missing browser is a failure, not a skip.
        assert!(
            std::env::var_os("HERALD_TEST_REQUIRE_BROWSER").is_none(),
            "HERALD_TEST_REQUIRE_BROWSER is set but {CHROMIUM} or {CHROMEDRIVER} is missing"
        );
        println!(
            "skipped: the browser test needs {CHROMIUM} and {CHROMEDRIVER} \
             (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    let result = walk_through(&browser).await;
    if result.is_err() {
        let _ = shot(&browser, "failure").await;
    }
    let _ = browser.close().await;
    result.expect("console walk-through");
}

async fn walk_through(browser: &Client) -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    let addr = app.addr;
    let key = app.admin_key.clone();
    browser.set_window_size(1280, 900).await?;

    // Sign in with the first account's e-mail and password.
    browser.goto(&app.url("/console")).await?;
    let email = wait_for(browser, "#signin-email").await?;
    assert_eq!(browser.current_url().await?.path(), "/console/");
    email.send_keys("admin@localhost").await?;
    browser
        .find(Locator::Css("#signin-password"))
        .await?
        .send_keys("admin-password")
        .await?;
    shot(browser, "01-sign-in").await?;
    click(browser, "#signin-submit").await?;

    // An instance.
    type_into(browser, "#instance-create-name", "console-demo").await?;
    type_into(browser, "#instance-create-description", "Made in Chromium").await?;
    click(browser, "#instance-create-submit").await?;
    wait_for(browser, r#"tr[data-instance="console-demo"]"#).await?;
    shot(browser, "02-instances").await?;
    click(browser, r#"tr[data-instance="console-demo"] a"#).await?;

    // A trusted API key, shown once.
    wait_for(browser, "#channels-table").await?;
    click(browser, "#tab-keys").await?;
    type_into(browser, "#key-create-description", "backend").await?;
    click(browser, "#key-create-ignore_acl").await?;
    click(browser, "#key-create-submit").await?;
    let shown = wait_for(browser, "#new-key-value").await?;
    let api_key = shown.prop("value").await?.unwrap_or_default();
    assert!(
        api_key.len() == 40 && api_key.bytes().all(|b| b.is_ascii_hexdigit()),
        "the new key is shown: {api_key:?}"
    );
    wait_for(browser, "#keys-table tbody tr").await?;
    shot(browser, "03-api-keys").await?;

    // A separate_rooms channel that accepts publishing.
    click(browser, "#tab-channels").await?;
    type_into(browser, "#channel-create-name", "chat").await?;
    select(browser, "#channel-create-type", "separate_rooms").await?;
    select(browser, "#channel-create-other_permissions", "subscribe").await?;
    click(browser, "#channel-create-custom_publish").await?;
    click(browser, "#channel-create-submit").await?;
    wait_for(browser, r#"tr[data-channel="chat"]"#).await?;
    shot(browser, "04-channels").await?;
    let channel = app
        .get(
            "/v1.1/instances/console-demo/channels/chat/",
            Some(&api_key),
        )
        .await;
    assert_eq!(channel.status, 200, "{}", channel.text);
    assert_eq!(
        (&channel.json["type"], &channel.json["custom_publish"]),
        (&json!("separate_rooms"), &json!(true))
    );

    // The channel view: follow room lobby, publish from the form, see it live and in history.
    click(browser, r#"tr[data-channel="chat"] a"#).await?;
    type_into(browser, "#room-room", "lobby").await?;
    click(browser, "#room-submit").await?;
    wait_for(browser, r#"#tail-status[data-state="live"]"#).await?;
    assert_eq!(value_of(browser, "#publish-room").await?, "lobby");
    publish_from_form(browser, r#"{"text": "hello from the console"}"#).await?;
    let live = wait_for(browser, r#"#tail-list li[data-id="1"]"#).await?;
    assert!(live.text().await?.contains("hello from the console"));
    wait_for(browser, r#"#history-list li[data-id="1"]"#).await?;

    // JSON that does not parse is refused next to the editor and never sent.
    publish_from_form(browser, r#"{"text": "unfinished"#).await?;
    let error = wait_for(browser, "#publish-payload-error:not([hidden])").await?;
    assert!(
        error.text().await?.contains("Invalid JSON"),
        "{}",
        error.text().await?
    );
    assert_eq!(
        browser
            .find(Locator::Css("#publish-payload"))
            .await?
            .attr("aria-invalid")
            .await?
            .as_deref(),
        Some("true")
    );
    shot(browser, "05-invalid-json").await?;
    // The API's own field error lands next to its control too.
    type_into(browser, "#publish-room", "").await?;
    publish_from_form(browser, r#"{"text": "no room"}"#).await?;
    let room_error = wait_for(browser, "#publish-room-error:not([hidden])").await?;
    assert_eq!(
        room_error.text().await?,
        "This field is required for channels with separate rooms."
    );
    type_into(browser, "#publish-room", "lobby").await?;
    let stored = app
        .get(
            "/v1.1/instances/console-demo/channels/chat/history/?room=lobby",
            Some(&key),
        )
        .await;
    assert_eq!(ids(&stored.json), [1], "nothing else was published");

    // Cut the tail: restart the server on the same port and database. The browser reconnects
    // with Last-Event-ID; the next message appears once and nothing is repeated.
    let database = app.stop_keeping_database().await?;
    // The new server keeps two messages per room, so that a gap can be made below.
    let app = TestApp::spawn_on_at(database, addr, |args| {
        args.history_max_messages = 2;
        args.prune_interval = Duration::from_millis(100);
    })
    .await;
    wait_for(
        browser,
        r#"#tail-status[data-state="live"][data-reconnects="1"]"#,
    )
    .await?;
    publish_from_form(browser, r#"{"text": "after the restart"}"#).await?;
    wait_for(browser, r#"#tail-list li[data-id="2"]"#).await?;
    wait_for(browser, r#"#history-list li[data-id="2"]"#).await?;
    assert_eq!(
        tail_ids(browser).await?,
        [2, 1],
        "each message once, newest first"
    );
    let duplicates = browser
        .find(Locator::Css("#tail-status"))
        .await?
        .attr("data-duplicates")
        .await?;
    assert_eq!(
        duplicates.as_deref(),
        Some("0"),
        "the server resumed after the last id: the browser had nothing to drop"
    );

    // A retention gap: while the tail is paused, three more messages come and retention keeps
    // the newest two, so message 3 is gone before the tail resumes after message 2.
    click(browser, "#tail-toggle").await?;
    wait_for(browser, r#"#tail-status[data-state="paused"]"#).await?;
    // (The restarted server's `admin_key` was never stored: the first server's key still is.)
    for n in 3..=5 {
        app.post(
            "/v1.1/instances/console-demo/channels/chat/publish/",
            Some(&key),
            json!({"payload": {"n": n}, "room": "lobby"}),
        )
        .await
        .assert_status(201);
    }
    let history = "/v1.1/instances/console-demo/channels/chat/history/?room=lobby";
    let deadline = Instant::now() + UI_WAIT;
    while ids(&app.get(history, Some(&key)).await.json) != [5, 4] {
        assert!(Instant::now() < deadline, "retention did not prune");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    click(browser, "#tail-toggle").await?;
    wait_for(browser, r#"#tail-list li[data-id="5"]"#).await?;
    let gap = wait_for(browser, "#tail-list li.gap").await?;
    assert!(
        gap.text()
            .await?
            .contains("message 3 was removed by retention"),
        "{}",
        gap.text().await?
    );
    assert_eq!(tail_ids(browser).await?, [5, 4, 2, 1]);
    click(browser, "#history-refresh").await?;
    wait_for(browser, r#"#history-list li[data-id="5"]"#).await?;
    // A window tall enough for the whole channel view.
    browser.set_window_size(1280, 1500).await?;
    shot(browser, "06-channel").await?;

    // The same page on a phone.
    browser.set_window_size(390, 844).await?;
    shot(browser, "07-channel-phone").await?;
    browser.set_window_size(1280, 900).await?;

    // The server view: health, and the metrics this server has.
    click(browser, r#"a[data-nav="server"]"#).await?;
    let health = wait_for(browser, "#health-status .value").await?;
    assert_eq!(health.text().await?, "ok");
    wait_for(browser, "#metrics-note, #metric-connections").await?;
    shot(browser, "08-server").await?;
    // How the view reads Prometheus text, whether or not this server serves /metrics: the
    // page's fetch of /metrics answers a stand-in whose publish counter grows 6 per scrape.
    browser.execute(STAND_IN_METRICS, vec![]).await?;
    // The figures are drawn anew on every scrape: read them in one go.
    let deadline = Instant::now() + UI_WAIT;
    loop {
        let figures = browser
            .execute(
                "return ['publish-rate', 'connections', 'subscribers-sse'].map((id) => \
                 document.querySelector(`#metric-${id} .value`)?.textContent ?? null);",
                vec![],
            )
            .await?;
        if figures == json!(["2.0/s", "7", "3"]) {
            break;
        }
        assert!(Instant::now() < deadline, "metrics shown: {figures}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shot(browser, "08-server-metrics").await?;

    // Users, groups and a membership.
    browser
        .goto(&app.url("/console/#/i/console-demo/users"))
        .await?;
    type_into(browser, "#user-create-username", "geralt").await?;
    type_into(browser, "#user-create-password", "roach").await?;
    click(browser, "#user-create-submit").await?;
    wait_for(browser, "#users-table tbody tr").await?;
    shot(browser, "09-users").await?;
    click(browser, "#tab-groups").await?;
    type_into(browser, "#group-create-name", "witchers").await?;
    type_into(browser, "#group-create-label", "School of the Wolf").await?;
    click(browser, "#group-create-submit").await?;
    click(browser, "#groups-table tbody tr button").await?;
    click(browser, "#member-add-submit").await?;
    let member = wait_for(browser, "#members li").await?;
    assert!(member.text().await?.starts_with("geralt"));
    shot(browser, "10-groups").await?;

    // Deleting an instance asks first, naming it.
    click(browser, r#"a[data-nav="instances"]"#).await?;
    click(browser, r#"tr[data-instance="console-demo"] button.danger"#).await?;
    let question = wait_for(browser, "dialog[open] h2").await?;
    assert_eq!(question.text().await?, "Delete instance “console-demo”?");
    shot(browser, "11-delete-instance").await?;
    click(browser, "#confirm-ok").await?;
    wait_for(browser, "#instances p.muted").await?;
    app.get("/v1.1/instances/console-demo/", Some(&key))
        .await
        .assert_status(404);

    // Signing out forgets the key.
    click(browser, "#sign-out").await?;
    wait_for(browser, "#signin-email").await?;
    let kept = browser
        .execute("return sessionStorage.length;", vec![])
        .await?;
    assert_eq!(kept, json!(0));

    // Signing in with a pasted key: an instance API key is refused next to the field, the
    // account key is taken.
    type_into(browser, "#keyin-account_key", &api_key).await?;
    click(browser, "#keyin-submit").await?;
    let refused = wait_for(browser, "#keyin-account_key-error:not([hidden])").await?;
    assert!(refused.text().await?.contains("instance API key"));
    type_into(browser, "#keyin-account_key", &key).await?;
    click(browser, "#keyin-submit").await?;
    wait_for(browser, "#instance-create-name").await?;
    Ok(())
}

/// Makes the page's `fetch("/metrics")` answer Prometheus text whose publish counter grows by
/// 6 on every scrape (one every 3 s: 2.0/s).
const STAND_IN_METRICS: &str = r##"
    const realFetch = window.fetch;
    let published = 100;
    window.fetch = (url, init) => {
        if (String(url) !== "/metrics") return realFetch(url, init);
        published += 6;
        const body = [
            "# TYPE herald_connections gauge",
            "herald_connections 7",
            'herald_subscribers{transport="poll"} 1',
            'herald_subscribers{transport="websocket"} 2',
            'herald_subscribers{transport="sse"} 3',
            "# TYPE herald_messages_published_total counter",
            `herald_messages_published_total{action="custom"} ${published}`,
            'herald_messages_published_total{action="create"} 4',
        ].join("\n");
        return Promise.resolve(new Response(body, { status: 200 }));
    };
"##;

/// The ids of the messages in the live tail, top (newest) first.
async fn tail_ids(browser: &Client) -> anyhow::Result<Vec<i64>> {
    let ids = browser
        .execute(
            "return [...document.querySelectorAll('#tail-list li[data-id]')]\
             .map((li) => Number(li.dataset.id));",
            vec![],
        )
        .await?;
    Ok(serde_json::from_value(ids)?)
}

fn ids(page: &Value) -> Vec<i64> {
    page["objects"]
        .as_array()
        .map(|objects| objects.iter().filter_map(|m| m["id"].as_i64()).collect())
        .unwrap_or_default()
}

async fn publish_from_form(browser: &Client, payload: &str) -> anyhow::Result<()> {
    type_into(browser, "#publish-payload", payload).await?;
    click(browser, "#publish-submit").await
}

/// Waits until `selector` matches, then returns the first match.
async fn wait_for(
    browser: &Client,
    selector: &str,
) -> anyhow::Result<fantoccini::elements::Element> {
    let deadline = Instant::now() + UI_WAIT;
    loop {
        match browser.find(Locator::Css(selector)).await {
            Ok(found) => return Ok(found),
            Err(err) if Instant::now() >= deadline => {
                anyhow::bail!("{selector} did not appear within {UI_WAIT:?}: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn click(browser: &Client, selector: &str) -> anyhow::Result<()> {
    wait_for(browser, selector).await?.click().await?;
    Ok(())
}

/// Replaces the value of a text field with `text`, typed as a person would.
async fn type_into(browser: &Client, selector: &str, text: &str) -> anyhow::Result<()> {
    let input = wait_for(browser, selector).await?;
    input.clear().await?;
    if !text.is_empty() {
        input.send_keys(text).await?;
    }
    Ok(())
}

async fn select(browser: &Client, selector: &str, value: &str) -> anyhow::Result<()> {
    wait_for(browser, selector)
        .await?
        .select_by_value(value)
        .await?;
    Ok(())
}

async fn value_of(browser: &Client, selector: &str) -> anyhow::Result<String> {
    Ok(wait_for(browser, selector)
        .await?
        .prop("value")
        .await?
        .unwrap_or_default())
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

/// Saves what the window shows, from the top of the page.
async fn shot(browser: &Client, name: &str) -> anyhow::Result<()> {
    browser.execute("window.scrollTo(0, 0);", vec![]).await?;
    let png = browser.screenshot().await?;
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.png")), png)?;
    Ok(())
}

/// A chromedriver of this test's own, on a free port, ended when dropped.
struct Driver {
    url: String,
    _process: Child,
    profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            if let Ok(resp) = client.get(format!("{url}/status")).send().await
                && resp.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver {
            url,
            _process: process,
            profile: tempfile::tempdir().expect("profile dir"),
        }
    }

    /// A headless Chromium with a fresh profile that makes no request of its own.
    async fn browser(&self) -> Client {
        let profile = self.profile.path().display().to_string();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={profile}"),
                ],
            }),
        );
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        builder
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}
