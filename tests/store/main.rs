//! The storage contract, tested directly against every backend: each test runs on SQLite (a
//! temporary file) and, when `HERALD_TEST_DATABASE_URL` is set, on PostgreSQL in a schema of its
//! own that is dropped afterwards.

#[path = "../common/pg_schema.rs"]
mod pg_schema;

mod access;
mod accounts;
mod channels;
mod cluster;
mod messages;
mod objects;
mod users;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use herald::keys::{Key, KeyKind};
use herald::model::{ChannelType, Permission};
use herald::store::*;

use pg_schema::PgSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Hears committed messages: `(channel id, message id)` in the order the store told them.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<(i64, i64)>>);

impl Recorder {
    pub fn heard(&self) -> Vec<(i64, i64)> {
        self.0.lock().unwrap().clone()
    }

    /// The ids heard for one channel, in the order heard.
    pub fn ids(&self, channel_id: i64) -> Vec<i64> {
        self.heard()
            .into_iter()
            .filter(|(channel, _)| *channel == channel_id)
            .map(|(_, id)| id)
            .collect()
    }
}

impl CommitListener for Recorder {
    fn committed(&self, channel_id: i64, message: &Message) {
        self.0.lock().unwrap().push((channel_id, message.id));
    }
}

/// What a test case gets: a fresh, migrated store and the listener it tells.
pub struct Ctx {
    pub backend: Backend,
    pub store: Arc<dyn Store>,
    /// The same store, for what only the concrete type offers (`explain_object_list`).
    pub sql: Arc<SqlStore>,
    pub heard: Arc<Recorder>,
}

const POOL: u32 = 4;

/// Runs `case` on a fresh SQLite store, then on a fresh PostgreSQL schema when one is
/// configured. A failure on either fails the test and names the backend.
pub async fn on_each_backend<F, Fut>(test: &str, case: F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let heard = Arc::new(Recorder::default());
    let store = SqlStore::open_sqlite(&dir.path().join("store.db"), false, POOL, heard.clone())
        .await
        .expect("open SQLite store");
    let sql = Arc::new(store);
    let outcome = AssertUnwindSafe(case(Ctx {
        backend: Backend::Sqlite,
        store: sql.clone(),
        sql,
        heard,
    }))
    .catch_unwind()
    .await;
    if let Err(panic) = outcome {
        eprintln!("{test} failed on SQLite");
        std::panic::resume_unwind(panic);
    }

    let case = &case;
    on_postgres(test, move |url| async move {
        let heard = Arc::new(Recorder::default());
        let store = SqlStore::open_postgres(&url, POOL, heard.clone())
            .await
            .expect("open PostgreSQL store");
        let sql = Arc::new(store);
        case(Ctx {
            backend: Backend::Postgres,
            store: sql.clone(),
            sql,
            heard,
        })
        .await;
    })
    .await;
}

/// Runs `case` with the URL of a fresh PostgreSQL schema (dropped afterwards, pass or fail), or
/// says why it was skipped.
pub async fn on_postgres<F, Fut>(test: &str, case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(base) = pg_schema::database_url() else {
        println!("skipped: HERALD_TEST_DATABASE_URL not set ({test} on PostgreSQL)");
        return;
    };
    let schema = PgSchema::create(&base).await;
    let outcome = AssertUnwindSafe(case(schema.url())).catch_unwind().await;
    schema.drop().await;
    if let Err(panic) = outcome {
        eprintln!("{test} failed on PostgreSQL");
        std::panic::resume_unwind(panic);
    }
}

/// Declares tests that run a case of the same name on every backend.
macro_rules! store_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::on_each_backend(stringify!($case), super::$case).await;
            }
        )*
    };
}
pub(crate) use store_tests;

// Fixtures.

pub fn new_account(email: &str) -> NewAccount {
    let key = Key::generate(KeyKind::Account);
    NewAccount {
        email: email.to_owned(),
        first_name: String::new(),
        last_name: String::new(),
        password_hash: Some("hash".into()),
        account_key: key.as_str().to_owned(),
        key_digest: key.digest(),
        is_superuser: false,
    }
}

pub async fn account(store: &dyn Store, email: &str) -> Account {
    store
        .create_account(new_account(email))
        .await
        .expect("create account")
}

pub async fn instance(store: &dyn Store, owner: &Account, name: &str) -> Instance {
    store
        .create_instance(owner.id, name, InstanceChanges::default(), 0)
        .await
        .expect("create instance")
}

pub fn new_channel(name: &str, kind: ChannelType) -> NewChannel {
    NewChannel {
        name: name.to_owned(),
        kind,
        description: String::new(),
        group_id: None,
        group_permissions: Permission::None,
        other_permissions: Permission::None,
        custom_publish: false,
    }
}

pub async fn channel(store: &dyn Store, instance: &Instance, name: &str) -> Channel {
    store
        .create_channel(instance.id, new_channel(name, ChannelType::SeparateRooms))
        .await
        .expect("create channel")
}

/// A new instance (with an owner) for tests that need only one.
pub async fn fixture(store: &dyn Store) -> (Account, Instance) {
    let owner = account(store, "owner@example.com").await;
    let instance = instance(store, &owner, "inst").await;
    (owner, instance)
}

pub fn message(room: Option<&str>, payload: &str) -> NewMessage {
    NewMessage {
        room: room.map(str::to_owned),
        action: "custom",
        author: r#"{"admin":1}"#.into(),
        metadata: r#"{"type":"message"}"#.into(),
        payload: payload.to_owned(),
    }
}

pub async fn publish(store: &dyn Store, channel: &Channel, room: Option<&str>) -> Message {
    store
        .publish(channel, message(room, "{}"))
        .await
        .expect("publish")
}

pub fn page(after: Option<i64>, before: Option<i64>, descending: bool, limit: i64) -> IdPage {
    IdPage {
        after,
        before,
        descending,
        limit,
    }
}

/// Retention by room count and age, without a per-channel cap.
pub fn limits(max_per_room: u64, created_before: Option<i64>) -> RetentionLimits {
    RetentionLimits {
        max_per_room,
        max_per_channel: 0,
        created_before,
    }
}

/// Everything, ascending.
pub const ALL: IdPage = IdPage {
    after: None,
    before: None,
    descending: false,
    limit: 1000,
};

/// The `StoreError` variant as text, for asserting errors without `PartialEq`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(result: StoreResult<T>, expected: &str) {
    match result {
        Err(err) => {
            let shown = match &err {
                StoreError::NotFound => "NotFound".to_owned(),
                StoreError::Conflict(field) => format!("Conflict({field})"),
                StoreError::LimitExceeded => "LimitExceeded".to_owned(),
                other => format!("{other:?}"),
            };
            assert_eq!(shown, expected, "unexpected error: {err}");
        }
        Ok(value) => panic!("expected {expected}, got Ok({value:?})"),
    }
}
