//! The `herald` binary as a user runs it: first start, settings errors, the one-process lock,
//! and the account commands, offline and beside a running server (docs/api.md §4.6, §11.3–§11.5).

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{TestDb, skip_on_postgres};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// A `herald serve` child process on an ephemeral port.
pub struct ChildServer {
    pub child: Child,
    pub addr: String,
    /// Everything the process printed to stdout before it reported its address.
    pub stdout: String,
    /// The last lines of its log (stderr), for reporting a failure.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Log lines a [`ChildServer`] keeps.
const LOG_LINES: usize = 200;

impl ChildServer {
    /// Starts `herald serve` on `db` and waits for its "listening on" log line.
    pub async fn start(db: &TestDb, env: &[(&str, &str)]) -> ChildServer {
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .env_clear()
            .env("HERALD_LISTEN", "127.0.0.1:0")
            .envs(db.env())
            .env("HERALD_RATE_ANON", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn herald");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut printed = String::new();
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let keep = {
            let log = log.clone();
            move |line: String| {
                let mut log = log.lock().unwrap();
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        };
        let mut stdout_open = true;
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                // stdout first: the key block is written before the "listening" log line, so
                // by the time that line is readable the whole block is already in the pipe.
                tokio::select! {
                    biased;
                    line = stdout.next_line(), if stdout_open => match line {
                        Ok(Some(line)) => {
                            printed.push_str(&line);
                            printed.push('\n');
                        }
                        _ => stdout_open = false,
                    },
                    line = stderr.next_line() => {
                        let line = line.expect("read stderr").unwrap_or_else(|| {
                            panic!("herald exited before listening:\n{}", tail(&log))
                        });
                        if let Some(rest) = line.split("listening on http://").nth(1) {
                            return rest.trim().to_owned();
                        }
                        keep(line);
                    }
                }
            }
        })
        .await
        .expect("herald did not start within 30 s");
        // Keep draining both pipes so the child never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                keep(line);
            }
        });
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        ChildServer {
            child,
            addr,
            stdout: printed,
            log,
        }
    }

    /// The last lines the process logged.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

fn tail(log: &Mutex<VecDeque<String>>) -> String {
    let log = log.lock().unwrap();
    log.iter().map(|line| format!("{line}\n")).collect()
}

/// Runs the binary to completion: (exit code, stdout, stderr).
pub async fn run_herald(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run herald");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn key_from(printed: &str) -> String {
    printed
        .lines()
        .find_map(|line| line.trim().strip_prefix("account key:"))
        .map(|key| key.trim().to_owned())
        .unwrap_or_else(|| panic!("no account key in output:\n{printed}"))
}

#[tokio::test]
async fn first_start_prints_a_working_superuser_key_once() {
    let db = TestDb::new().await;
    let mut server = ChildServer::start(&db, &[]).await;
    assert!(
        server.stdout.contains("admin@localhost"),
        "{}",
        server.stdout
    );
    assert!(server.stdout.contains("password:"), "{}", server.stdout);
    let key = key_from(&server.stdout);
    assert_eq!(key.len(), 40);

    let client = reqwest::Client::new();
    let resp = client
        .post(server.url("/v1.1/instances/"))
        .header("X-API-KEY", &key)
        .form(&[("name", "demo1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    server.child.kill().await.unwrap();

    let mut again = ChildServer::start(&db, &[]).await;
    assert!(!again.stdout.contains("account key"), "{}", again.stdout);
    let resp = client
        .get(again.url("/v1.1/instances/demo1/"))
        .header("X-API-KEY", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    again.child.kill().await.unwrap();
}

#[tokio::test]
async fn admin_variables_choose_the_first_account() {
    let db = TestDb::new().await;
    let key = format!("{}2", "c".repeat(39));
    let mut server = ChildServer::start(
        &db,
        &[
            ("HERALD_ADMIN_EMAIL", "Yen@Vengerberg.io"),
            ("HERALD_ADMIN_PASSWORD", "lilac-and-gooseberries"),
            ("HERALD_ADMIN_KEY", &key),
        ],
    )
    .await;
    assert!(!server.stdout.contains("password:"), "{}", server.stdout);
    assert_eq!(key_from(&server.stdout), key);
    let resp = reqwest::Client::new()
        .post(server.url("/v1.1/account/auth/"))
        .json(&json!({"email": "yen@vengerberg.io", "password": "lilac-and-gooseberries"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["account_key"], key.as_str());
    server.child.kill().await.unwrap();
}

#[tokio::test]
async fn an_odd_admin_key_stops_startup_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("h.db").display());
    let bad = format!("{}1", "c".repeat(39));
    let (code, _, stderr) = run_herald(
        &["serve", "--listen", "127.0.0.1:0", "--database-url", &db],
        &[("HERALD_ADMIN_KEY", &bad)],
    )
    .await;
    assert_ne!(code, 0);
    assert!(stderr.contains("HERALD_ADMIN_KEY"), "{stderr}");
}

#[tokio::test]
async fn a_second_process_on_the_same_database_refuses_to_start() {
    if skip_on_postgres("the one-process lock is SQLite's; PostgreSQL is shared by design") {
        return;
    }
    let db = TestDb::new().await;
    let mut first = ChildServer::start(&db, &[]).await;
    let url = db.url();
    let (code, _, stderr) = run_herald(
        &["serve", "--listen", "127.0.0.1:0", "--database-url", &url],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("in use by another Herald process"),
        "{stderr}"
    );
    first.child.kill().await.unwrap();
}

/// docs/api.md §11.5: `herald account reset-key` may run beside a running server; the server applies
/// it (the old key refused, its streams closed) within `access_check_interval`, with no message
/// from the CLI to the server other than the database's access log.
#[tokio::test]
async fn account_reset_key_beside_a_running_server_takes_effect_within_the_check_interval() {
    use futures_util::StreamExt;
    let db = TestDb::new().await;
    let url = db.url();
    let created = |email: &'static str| {
        let url = url.clone();
        async move {
            let args = ["account", "create", "--email", email, "--password", "pw"];
            let (code, out, err) =
                run_herald(&[&args[..], &["--database-url", &url]].concat(), &[]).await;
            assert_eq!(code, 0, "{err}");
            key_from(&out)
        }
    };
    let old_key = created("geralt@rivia.io").await;
    let other_key = created("yen@vengerberg.io").await;
    let mut server = ChildServer::start(&db, &[("HERALD_ACCESS_CHECK_INTERVAL", "1s")]).await;
    let client = reqwest::Client::new();
    let status = |key: String| {
        let request = client
            .get(server.url("/v1.1/account/"))
            .header("X-API-KEY", key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // The old key works, and is cached by the server.
    assert_eq!(status(old_key.clone()).await, 200);
    let resp = client
        .post(server.url("/v1.1/instances/"))
        .header("X-API-KEY", &old_key)
        .json(&json!({"name": "kaer-morhen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = client
        .post(server.url("/v1.1/instances/kaer-morhen/channels/"))
        .header("X-API-KEY", &old_key)
        .json(&json!({"name": "news"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let ws_url = format!(
        "ws://{}/v1.1/instances/kaer-morhen/channels/news/poll/?transport=websocket&api_key={old_key}",
        server.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("stream");

    let (code, reset, stderr) = run_herald(
        &[
            "account",
            "reset-key",
            "--email",
            "geralt@rivia.io",
            "--database-url",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(
        code, 0,
        "reset-key beside a running server failed: {stderr}"
    );
    let new_key = key_from(&reset);
    let reset_at = tokio::time::Instant::now();

    // Within the interval (1 s, plus a margin for a loaded machine) the old key is refused...
    loop {
        match status(old_key.clone()).await {
            403 => break,
            200 => assert!(
                reset_at.elapsed() < Duration::from_millis(2500),
                "the old key still worked {:?} after the reset",
                reset_at.elapsed()
            ),
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...its stream is closed as denied...
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(frame) = ws.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(Some(close))) = frame {
                return u16::from(close.code);
            }
        }
        0
    })
    .await
    .expect("the old key's stream stayed open");
    assert_eq!(closed, 1008);
    // ...and the new key and other accounts work.
    assert_eq!(status(new_key).await, 200);
    assert_eq!(status(other_key).await, 200);
    server.child.kill().await.unwrap();
}

#[tokio::test]
async fn invalid_settings_stop_startup_naming_the_setting() {
    let (code, _, stderr) = run_herald(&["serve", "--history-max-age", "7w"], &[]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("--history-max-age"), "{stderr}");

    let (code, _, stderr) = run_herald(&["serve"], &[("HERALD_SHUTDOWN_GRACE", "soon")]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("--shutdown-grace"), "{stderr}");

    let (code, _, stderr) = run_herald(
        &[
            "serve",
            "--database-url",
            "postgres://herald:Secret-Pass-2@localhost:port/herald",
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(!stderr.contains("Secret-Pass-2"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_postgresql_stops_startup_with_a_clear_message() {
    let (code, _, stderr) = run_herald(
        &[
            "migrate",
            "--database-url",
            "postgres://herald:Secret-Pass-1@127.0.0.1:1/herald",
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("could not connect to PostgreSQL at 127.0.0.1:1: ")
            && stderr.contains("; is it running?"),
        "{stderr}"
    );
    assert!(!stderr.contains("Secret-Pass-1"), "{stderr}");
}

/// `--help` shows the environment's values of settings; never the URLs, which hold passwords.
#[tokio::test]
async fn help_never_shows_the_database_or_redis_password() {
    let (code, stdout, _) = run_herald(
        &["serve", "--help"],
        &[
            (
                "HERALD_DATABASE_URL",
                "postgres://herald:Secret-Pass-4@db/herald",
            ),
            ("HERALD_REDIS_URL", "redis://:Secret-Pass-5@cache:6379"),
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert!(stdout.contains("HERALD_REDIS_URL"), "{stdout}");
    assert!(!stdout.contains("Secret-Pass"), "{stdout}");
}

#[tokio::test]
async fn version_prints_the_package_version() {
    let (code, stdout, _) = run_herald(&["--version"], &[]).await;
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        format!("herald {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn account_commands_create_list_and_reset_keys_offline() {
    let db = TestDb::new().await;
    let url = db.url();

    let (code, _, stderr) = run_herald(&["migrate", "--database-url", &url], &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("up to date"), "{stderr}");

    let (code, created, stderr) = run_herald(
        &[
            "account",
            "create",
            "--email",
            "Ciri@Cintra.io",
            "--database-url",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(created.contains("password:"), "{created}");
    let old_key = key_from(&created);

    let (code, _, stderr) = run_herald(
        &[
            "account",
            "create",
            "--email",
            "ciri@cintra.io",
            "--database-url",
            &url,
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(stderr.contains("already exists"), "{stderr}");

    let (code, listed, _) = run_herald(&["account", "list", "--database-url", &url], &[]).await;
    assert_eq!(code, 0);
    assert!(listed.contains("ciri@cintra.io"), "{listed}");

    let (code, reset, _) = run_herald(
        &[
            "account",
            "reset-key",
            "--email",
            "ciri@cintra.io",
            "--database-url",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0);
    let new_key = key_from(&reset);
    assert_ne!(new_key, old_key);

    let (code, _, stderr) = run_herald(
        &[
            "account",
            "reset-key",
            "--email",
            "nobody@cintra.io",
            "--database-url",
            &url,
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(stderr.contains("no account"), "{stderr}");

    // The server accepts the new key and refuses the old one.
    let mut server = ChildServer::start(&db, &[]).await;
    let client = reqwest::Client::new();
    for (key, status) in [(&new_key, 200), (&old_key, 403)] {
        let resp = client
            .get(server.url("/v1.1/account/"))
            .header("X-API-KEY", key.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status);
    }
    server.child.kill().await.unwrap();
}

/// The id of the next JSON line `herald tail` prints.
async fn next_id(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> i64 {
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("tail printed nothing")
        .unwrap()
        .expect("tail exited");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(value.get("links").is_none(), "{line}");
    value["id"].as_i64().unwrap()
}

/// A port that was free a moment ago, for a server that must come back on the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn tail_prints_every_message_once_across_a_server_restart() {
    let db = TestDb::new().await;
    let key = format!("{}4", "e".repeat(39));
    let listen = format!("127.0.0.1:{}", free_port());
    let env = [
        ("HERALD_ADMIN_KEY", key.as_str()),
        ("HERALD_LISTEN", listen.as_str()),
    ];
    let mut server = ChildServer::start(&db, &env).await;
    let client = reqwest::Client::new();
    let post = |url: String, body: serde_json::Value| {
        let request = client.post(url).header("X-API-KEY", &key).json(&body);
        async move {
            let status = request.send().await.unwrap().status();
            assert_eq!(status, 201);
        }
    };
    post(server.url("/v1.1/instances/"), json!({"name": "rivia"})).await;
    post(
        server.url("/v1.1/instances/rivia/channels/"),
        json!({"name": "news", "type": "separate_rooms", "custom_publish": true}),
    )
    .await;
    let publish = format!("http://{listen}/v1.1/instances/rivia/channels/news/publish/");
    for n in 1..=2 {
        post(
            publish.clone(),
            json!({"room": "Lobby", "payload": {"n": n}}),
        )
        .await;
    }

    let mut tail = Command::new(BIN)
        .args(["tail", "rivia", "news", "--room", "lobby", "--last-id", "0"])
        .args(["--url", &format!("http://{listen}"), "--api-key", &key])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    assert_eq!(next_id(&mut lines).await, 1);
    assert_eq!(next_id(&mut lines).await, 2);
    post(
        publish.clone(),
        json!({"room": "lobby", "payload": {"n": 3}}),
    )
    .await;
    assert_eq!(next_id(&mut lines).await, 3);

    // The server goes away and comes back on the same address; tail resumes after id 3.
    server.child.kill().await.unwrap();
    let mut server = ChildServer::start(&db, &env).await;
    for n in 4..=5 {
        post(
            publish.clone(),
            json!({"room": "lobby", "payload": {"n": n}}),
        )
        .await;
    }
    assert_eq!(next_id(&mut lines).await, 4);
    assert_eq!(next_id(&mut lines).await, 5);
    tail.kill().await.unwrap();
    server.child.kill().await.unwrap();
}
