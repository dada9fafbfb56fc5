//! PostgreSQL backend for cluster mode.
//!
//! Several Herald processes share one database. Everything the SQLite backend gets from having
//! the only writer is taken from PostgreSQL instead: row locks where a check and a write must not
//! interleave (a channel's id sequence, an owner's instance count, a user's memberships) and
//! advisory locks for work that one node at a time does (migrations, pruning, the first account).
//! Herald's own advisory lock keys (pruning, first account) are derived from the schema, so
//! deployments in different schemas of one database do not skip each other's work; sqlx's
//! migration lock is per database, so their migrations merely take turns. The SQL is shared
//! (`sql/`); here are connecting, the advisory locks, how free text is stored, the writer (group
//! commit per channel stripe) and pruning.

mod prune;
mod writer;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};

use super::sql::{Backend, Db, SqlStore};
use super::{CommitListener, StoreError, StoreResult};
pub(super) use prune::prune;
pub(super) use writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long start-up waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a pooled connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// What an advisory lock protects; combined with the schema into the lock key.
#[derive(Clone, Copy, Debug)]
pub enum LockPurpose {
    Prune = 1,
    Bootstrap = 2,
}

/// The advisory lock key Herald uses for `purpose` in `schema`: a fixed tag in the high half,
/// the schema's FNV-1a hash in the low half.
pub fn advisory_lock_key(purpose: LockPurpose, schema: &str) -> i64 {
    let hash = schema.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    (i64::from(0x4845_5200_u32 | purpose as u32) << 32) | i64::from(hash)
}

/// What a store needs only in cluster mode.
pub(in crate::store) struct Clustered {
    /// Stores publishes and object writes (with group commit) and tells the commit listener.
    pub writer: Arc<Writer>,
    /// The pool of `Db::Postgres`, for pruning.
    pub pool: sqlx::PgPool,
    /// Advisory lock keys of this schema (see `advisory_lock_key`).
    pub prune_lock: i64,
    pub bootstrap_lock: i64,
}

/// `host:port`, or the socket path, for messages.
fn server_address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// PostgreSQL text cannot hold U+0000, which SQLite stores and the API accepts (in rooms,
/// descriptions, ...). Free text is therefore stored with a character-wise escape: U+0000
/// becomes `ESC 0` and ESC itself `ESC ESC`, where ESC is the noncharacter U+10FFFF. The code is
/// prefix-free, so equality and prefix matches on stored text answer as on the original text.
const ESC: char = '\u{10FFFF}';

/// Free text as stored.
pub(in crate::store) fn enc(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\0', ESC]) {
        return text.into();
    }
    let mut stored = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => stored.extend([ESC, '0']),
            ESC => stored.extend([ESC, ESC]),
            c => stored.push(c),
        }
    }
    stored.into()
}

/// Stored free text back to the original.
pub(in crate::store) fn dec(stored: String) -> String {
    if !stored.contains(ESC) {
        return stored;
    }
    let mut text = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(c) = chars.next() {
        match (c, c == ESC) {
            (_, true) => match chars.next() {
                Some('0') => text.push('\0'),
                Some(other) => text.push(other),
                None => text.push(ESC),
            },
            (c, false) => text.push(c),
        }
    }
    text
}

impl SqlStore {
    /// Connects to PostgreSQL (the URL's `options`, e.g. `-c search_path=...`, apply to every
    /// connection), applies pending migrations under sqlx's advisory lock, and opens a pool of
    /// `pool_size`.
    pub async fn open_postgres(
        url: &str,
        pool_size: u32,
        listener: Arc<dyn CommitListener>,
    ) -> StoreResult<SqlStore> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| StoreError::Unavailable(format!("invalid PostgreSQL URL: {err}")))?;
        let address = server_address(&options);
        // One connection first, to tell why the database cannot be used: the pool would retry
        // a refused connection until its timeout and then report only the timeout.
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
            }
            Ok(Err(sqlx::Error::Database(db))) => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL at {address} refused the connection: {}",
                    db.message()
                )));
            }
            Ok(Err(err)) => {
                return Err(StoreError::Unavailable(format!(
                    "could not connect to PostgreSQL at {address}: {err}; is it running?"
                )));
            }
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "could not connect to PostgreSQL at {address}: no answer within {}s; \
                     is it running?",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let Some(schema) = schema else {
            return Err(StoreError::Unavailable(
                "PostgreSQL has no schema to use: the search_path names no existing schema".into(),
            ));
        };
        // Nodes starting together: the migrator holds an advisory lock while it works, and the
        // others then find every migration applied.
        MIGRATOR.run(&pool).await?;
        let clustered = Clustered {
            writer: Writer::new(pool.clone(), listener.clone()),
            pool: pool.clone(),
            prune_lock: advisory_lock_key(LockPurpose::Prune, &schema),
            bootstrap_lock: advisory_lock_key(LockPurpose::Bootstrap, &schema),
        };
        Ok(SqlStore {
            db: Db::Postgres(pool),
            backend: Backend::Postgres(clustered),
            listener,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_escapes_nul_and_round_trips() {
        for original in [
            "",
            "plain",
            "\0",
            "a\0b",
            "\u{10FFFF}",
            "\u{10FFFF}0",
            "x\u{10FFFF}\0\u{10FFFF}\u{10FFFF}0\0",
        ] {
            let stored = enc(original);
            assert!(!stored.contains('\0'), "{stored:?}");
            assert_eq!(dec(stored.into_owned()), original);
        }
        assert!(matches!(enc("plain"), std::borrow::Cow::Borrowed(_)));
        // Prefix-free: a stored prefix is a prefix of the stored text exactly when the original
        // prefix is one of the original text.
        let texts = ["", "\0", "\u{10FFFF}", "\u{10FFFF}0", "0", "\0\0", "a\0"];
        for a in texts {
            for b in texts {
                assert_eq!(
                    enc(a).starts_with(&*enc(b)),
                    a.starts_with(b),
                    "{a:?} / {b:?}"
                );
            }
        }
    }

    #[test]
    fn lock_keys_differ_by_purpose_and_schema() {
        let prune = advisory_lock_key(LockPurpose::Prune, "public");
        assert_ne!(prune, advisory_lock_key(LockPurpose::Bootstrap, "public"));
        assert_ne!(prune, advisory_lock_key(LockPurpose::Prune, "herald"));
        assert_eq!(prune, advisory_lock_key(LockPurpose::Prune, "public"));
    }
}
