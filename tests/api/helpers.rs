//! The test harness: a real Herald on an ephemeral port with its own database, and a small
//! HTTP client whose helpers return the response for the test to assert on.
//!
//! The database is a SQLite file in a temporary directory, or, with
//! `HERALD_TEST_API_BACKEND=postgres`, a fresh schema of the PostgreSQL database at
//! `HERALD_TEST_DATABASE_URL`, dropped when the `TestApp` is.

use std::net::SocketAddr;

use herald::config::{DatabaseUrl, ServeArgs};
use herald::keys::{Key, KeyKind};
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::pg_schema::{self, PgSchema};

/// Connections each PostgreSQL-backed server may open: tests start many servers at once, and
/// the database allows 100 connections in all.
const PG_POOL: u32 = 4;

/// Whether this run stores in PostgreSQL (`HERALD_TEST_API_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    match std::env::var("HERALD_TEST_API_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => {
            panic!("HERALD_TEST_API_BACKEND must be `sqlite` or `postgres`, not `{other}`")
        }
    }
}

/// For tests that only make sense on SQLite: true (after saying why) when they should skip.
pub fn skip_on_postgres(reason: &str) -> bool {
    if on_postgres() {
        println!("skipped on PostgreSQL: {reason}");
    }
    on_postgres()
}

/// A database a stopped server leaves behind, for another to start on.
pub enum KeptDatabase {
    Sqlite(TempDir),
    Postgres(PgSchema),
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// The superuser account key created on first start.
    pub admin_key: String,
    pub client: reqwest::Client,
    /// The server's own directory (its database file, on SQLite).
    pub dir: TempDir,
    schema: Option<PgSchema>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A response, read whole. `json` is `Value::Null` for an empty or non-JSON body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts status and exact JSON body, printing both on failure.
    #[track_caller]
    pub fn assert(&self, status: u16, body: Value) {
        assert_eq!(
            (self.status, &self.json),
            (status, &body),
            "unexpected response: {}",
            self.text
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected response: {}", self.text);
        &self.json
    }
}

impl TestApp {
    /// A server with default settings, except that the anonymous and log-in rate limits are off
    /// (tests send many requests from one IP; the rate-limit tests turn them back on).
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
        let database = if on_postgres() {
            KeptDatabase::Postgres(PgSchema::create(&postgres_base_url()).await)
        } else {
            KeptDatabase::Sqlite(tempfile::tempdir().expect("temp dir"))
        };
        TestApp::spawn_on(database, configure).await
    }

    /// A server on a database another server left behind (see [`TestApp::stop_keeping_database`]).
    pub async fn spawn_on(
        database: KeptDatabase,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        TestApp::spawn_listening(listener, database, configure).await
    }

    /// Like [`TestApp::spawn_on`], on the address a stopped server listened on, so that its
    /// clients (a browser's event stream) come back to the new one. The old listener is closed
    /// once `stop` returns; binding is retried briefly all the same.
    pub async fn spawn_on_at(
        database: KeptDatabase,
        addr: SocketAddr,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> TestApp {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(err) => panic!("cannot bind {addr} again: {err}"),
            }
        };
        TestApp::spawn_listening(listener, database, configure).await
    }

    async fn spawn_listening(
        listener: tokio::net::TcpListener,
        database: KeptDatabase,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> TestApp {
        let addr = listener.local_addr().expect("local addr");
        let (dir, schema) = match database {
            KeptDatabase::Sqlite(dir) => (dir, None),
            KeptDatabase::Postgres(schema) => {
                (tempfile::tempdir().expect("temp dir"), Some(schema))
            }
        };
        let mut args = ServeArgs::with_database(addr, dir.path().join("herald.db"));
        if let Some(schema) = &schema {
            args.database.database_url = DatabaseUrl::Postgres(schema.url());
            args.database.db_pool = PG_POOL;
        }
        args.rate_anon = 0;
        // Tests log in from one address far more than a person would; the password tests
        // turn the budget back on.
        args.rate_login = 0;
        let admin_key = Key::generate(KeyKind::Account);
        args.admin.key = Some(admin_key.as_str().to_owned());
        args.admin.password = Some("admin-password".into());
        configure(&mut args);
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(herald::run(args, listener, async move {
            let _ = rx.await;
        }));
        let app = TestApp {
            addr,
            admin_key: admin_key.as_str().to_owned(),
            client: reqwest::Client::new(),
            dir,
            schema,
            shutdown: Some(tx),
            server: Some(server),
        };
        // The listener is bound already; wait only until the database is open and bootstrapped.
        app.wait_until_ready().await;
        app
    }

    async fn wait_until_ready(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(resp) = self.client.get(self.url("/health")).send().await
                && resp.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never became ready"
            );
            tokio::task::yield_now().await;
        }
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(server) => server.await?,
            None => Ok(()),
        }
    }

    /// Stops the server gracefully and keeps its database for [`TestApp::spawn_on`].
    pub async fn stop_keeping_database(mut self) -> anyhow::Result<KeptDatabase> {
        let database = match self.schema.take() {
            Some(schema) => KeptDatabase::Postgres(schema),
            None => KeptDatabase::Sqlite(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("temp dir"),
            )),
        };
        self.stop().await?;
        Ok(database)
    }

    /// Every byte the database holds, as stored: the SQLite files (main file, WAL, shared
    /// memory), or every row of the PostgreSQL schema in its text form. For asserting what is
    /// (not) stored in plain text.
    pub async fn stored_bytes(&self) -> Vec<u8> {
        let mut stored = Vec::new();
        match &self.schema {
            None => {
                for entry in std::fs::read_dir(self.dir.path()).expect("database dir") {
                    stored.extend(
                        std::fs::read(entry.expect("entry").path()).expect("database file"),
                    );
                }
            }
            Some(schema) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&schema.url())
                    .await
                    .expect("connect to the test schema");
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema()",
                )
                .fetch_all(&mut conn)
                .await
                .expect("list tables");
                for table in tables {
                    let rows: Vec<String> =
                        sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                            .fetch_all(&mut conn)
                            .await
                            .expect("read rows");
                    for row in rows {
                        stored.extend(row.into_bytes());
                    }
                }
                let _ = conn.close().await;
            }
        }
        stored
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request builder with `X-API-KEY` set when `key` is given.
    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match key {
            Some(key) => builder.header("X-API-KEY", key),
            None => builder,
        }
    }

    pub async fn send(&self, builder: RequestBuilder) -> Resp {
        let resp = builder.send().await.expect("request failed");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> Resp {
        self.send(self.request(Method::GET, path, key)).await
    }

    pub async fn delete(&self, path: &str, key: Option<&str>) -> Resp {
        self.send(self.request(Method::DELETE, path, key)).await
    }

    /// Sends `body` as JSON with `method`.
    pub async fn json(&self, method: Method, path: &str, key: Option<&str>, body: Value) -> Resp {
        self.send(self.request(method, path, key).json(&body)).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> Resp {
        self.json(Method::POST, path, key, body).await
    }

    pub async fn patch(&self, path: &str, key: Option<&str>, body: Value) -> Resp {
        self.json(Method::PATCH, path, key, body).await
    }

    pub async fn put(&self, path: &str, key: Option<&str>, body: Value) -> Resp {
        self.json(Method::PUT, path, key, body).await
    }

    // Fixtures: each asserts success, so a test fails where the setup broke.

    /// Creates an instance owned by the superuser.
    pub async fn create_instance(&self, name: &str) -> Value {
        self.post(
            "/v1.1/instances/",
            Some(&self.admin_key),
            json!({"name": name}),
        )
        .await
        .assert_status(201)
        .clone()
    }

    /// Creates an API key with the given flags and returns its key value.
    pub async fn create_api_key(&self, instance: &str, flags: Value) -> String {
        let resp = self
            .post(
                &format!("/v1.1/instances/{instance}/api_keys/"),
                Some(&self.admin_key),
                flags,
            )
            .await;
        resp.assert_status(201)["api_key"]
            .as_str()
            .expect("api_key")
            .to_owned()
    }

    pub async fn create_channel(&self, instance: &str, body: Value) -> Value {
        self.post(
            &format!("/v1.1/instances/{instance}/channels/"),
            Some(&self.admin_key),
            body,
        )
        .await
        .assert_status(201)
        .clone()
    }

    /// Publishes as the superuser and returns the stored message.
    pub async fn publish(&self, instance: &str, channel: &str, body: Value) -> Value {
        self.post(
            &format!("/v1.1/instances/{instance}/channels/{channel}/publish/"),
            Some(&self.admin_key),
            body,
        )
        .await
        .assert_status(201)
        .clone()
    }

    /// Registers another account (through the superuser) and returns its key.
    pub async fn create_account(&self, email: &str) -> String {
        let resp = self
            .post(
                "/v1.1/account/register/",
                Some(&self.admin_key),
                json!({"email": email, "password": "secret-password"}),
            )
            .await;
        resp.assert_status(201)["account_key"]
            .as_str()
            .expect("account_key")
            .to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(schema) = self.schema.take() {
            drop_schema_now(schema);
        }
    }
}

/// Drops a test schema from synchronous code (`Drop`), which may run on the test's only runtime
/// thread: a thread of its own does it, ending the server's connections first.
fn drop_schema_now(schema: PgSchema) {
    let dropped = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(schema.drop());
    })
    .join();
    if dropped.is_err() && !std::thread::panicking() {
        panic!("could not drop the test schema");
    }
}

/// A database for `herald` child processes: a SQLite file in a temporary directory, or a
/// fresh PostgreSQL schema on the PostgreSQL run (dropped with this value).
pub struct TestDb {
    dir: TempDir,
    schema: Option<PgSchema>,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let schema = match on_postgres() {
            true => Some(PgSchema::create(&postgres_base_url()).await),
            false => None,
        };
        TestDb {
            dir: tempfile::tempdir().expect("temp dir"),
            schema,
        }
    }

    /// A fresh schema of the PostgreSQL database at `base_url`, whatever the run's backend (the
    /// cluster tests need PostgreSQL).
    pub async fn postgres(base_url: &str) -> TestDb {
        TestDb {
            dir: tempfile::tempdir().expect("temp dir"),
            schema: Some(PgSchema::create(base_url).await),
        }
    }

    /// The `--database-url` of this database.
    pub fn url(&self) -> String {
        match &self.schema {
            Some(schema) => schema.url(),
            None => format!("sqlite://{}", self.dir.path().join("h.db").display()),
        }
    }

    /// Settings a child process on this database needs beside the URL.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("HERALD_DATABASE_URL", self.url())];
        if self.schema.is_some() {
            env.push(("HERALD_DB_POOL", PG_POOL.to_string()));
        }
        env
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            drop_schema_now(schema);
        }
    }
}

fn postgres_base_url() -> String {
    pg_schema::database_url().expect(
        "HERALD_TEST_API_BACKEND=postgres needs HERALD_TEST_DATABASE_URL \
         (e.g. postgres://postgres@127.0.0.1:5432/test)",
    )
}
