//! SQLite backend for embedded mode: opening the file, its lock and checkpoints. The SQL is
//! shared (`sql/`); what only SQLite needs is here: `writer` (group commit on the one write
//! connection) and `prune` (which rooms to trim).
//!
//! Two pools: one connection for every write, so writers queue inside the process instead of
//! fighting over SQLite's lock (no SQLITE_BUSY, and a publish's id allocation and insert can
//! never interleave with another's), and a pool of readers that WAL lets run beside the writer.

mod prune;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqliteConnection};
use tokio_util::sync::CancellationToken;

use super::sql::{Backend, Db, SqlStore};
use super::{CommitListener, StoreError, StoreResult};
pub(super) use prune::{ActiveRooms, prune};
pub(super) use writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// What a store needs only in embedded mode.
pub(in crate::store) struct Embedded {
    /// Stores publishes and object writes (with group commit) and tells the commit listener.
    pub writer: Writer,
    /// Channel rooms that received messages since the pruner last looked at them.
    pub active_rooms: Arc<ActiveRooms>,
    /// The pools of `Db::Sqlite`, for pruning.
    reader: SqlitePool,
    writer_pool: SqlitePool,
    /// Stops the checkpointer when the store goes away (a server's store only).
    _checkpointer: Option<tokio_util::sync::DropGuard>,
    /// Held for a server's store's lifetime: one server per database file (docs/api.md §11.5). An
    /// advisory `flock` on the file itself, independent of SQLite's own `fcntl` locks.
    _lock: Option<std::fs::File>,
}

/// Parses `sqlite://<path>` (also `sqlite:<path>`) into a file path.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database file for a server, applies pending
    /// migrations and locks the file: a second server on it is refused.
    pub async fn open_sqlite(
        path: &Path,
        synchronous_full: bool,
        pool_size: u32,
        listener: Arc<dyn CommitListener>,
    ) -> StoreResult<SqlStore> {
        let lock = lock_database_file(path)?;
        SqlStore::open_sqlite_file(path, synchronous_full, pool_size, listener, Some(lock)).await
    }

    /// Opens the SQLite database file for a short command (`herald account ...`), which may
    /// run beside a server on the same file (docs/api.md §11.5): no file lock and no checkpoints of
    /// its own; its writes wait their turn for SQLite's write lock.
    pub async fn open_sqlite_beside_server(
        path: &Path,
        synchronous_full: bool,
    ) -> StoreResult<SqlStore> {
        let listener = Arc::new(super::NoListener);
        SqlStore::open_sqlite_file(path, synchronous_full, 1, listener, None).await
    }

    async fn open_sqlite_file(
        path: &Path,
        synchronous_full: bool,
        pool_size: u32,
        listener: Arc<dyn CommitListener>,
        lock: Option<std::fs::File>,
    ) -> StoreResult<SqlStore> {
        if lock.is_none() {
            create_private_file(path)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Checkpoints run beside the writer (see `checkpoint`), never inside a publish.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        MIGRATOR.run(&writer).await?;
        let checkpointer = match lock {
            Some(_) => {
                let stop = CancellationToken::new();
                let connection = SqliteConnection::connect_with(&options).await?;
                tokio::spawn(checkpoint(connection, writer.clone(), stop.clone()));
                Some(stop.drop_guard())
            }
            None => None,
        };
        let active_rooms = Arc::new(ActiveRooms::default());
        let reader = SqlitePoolOptions::new()
            .max_connections(pool_size.max(1))
            .connect_with(options)
            .await?;
        let embedded = Embedded {
            writer: Writer::start(writer.clone(), listener.clone(), active_rooms.clone()),
            active_rooms,
            reader: reader.clone(),
            writer_pool: writer.clone(),
            _checkpointer: checkpointer,
            _lock: lock,
        };
        Ok(SqlStore {
            db: Db::Sqlite { reader, writer },
            backend: Backend::Sqlite(embedded),
            listener,
        })
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// How often the query planner's statistics are brought up to date.
const OPTIMIZE_EVERY: Duration = Duration::from_secs(60);

async fn optimize(writer: &SqlitePool) -> sqlx::Result<()> {
    let mut connection = writer.acquire().await?;
    sqlx::query("PRAGMA analysis_limit = 1000")
        .execute(&mut *connection)
        .await?;
    sqlx::query("PRAGMA optimize = 0x10002")
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Copies the WAL into the database file from a connection of its own. SQLite would otherwise
/// checkpoint inside whichever commit crosses its threshold, holding that publish (and every
/// publish queued behind it) for the whole copy and its fsync. A passive checkpoint never
/// blocks the writer; the writer starts the WAL over once a checkpoint has caught up.
///
/// The same task keeps the query planner's statistics fresh (`PRAGMA optimize`, bounded by
/// `analysis_limit`, at start and then every `OPTIMIZE_EVERY`): the planner needs them to pick a
/// class's filter index for a selective range. It runs on the write connection, because
/// `ANALYZE` writes; when nothing changed much it does nothing.
async fn checkpoint(mut connection: SqliteConnection, writer: SqlitePool, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(CHECKPOINT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_optimized: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut connection)
            .await
        {
            tracing::warn!("WAL checkpoint failed: {err}");
        }
        if last_optimized.is_none_or(|at| at.elapsed() >= OPTIMIZE_EVERY) {
            last_optimized = Some(tokio::time::Instant::now());
            if let Err(err) = optimize(&writer).await {
                tracing::warn!("refreshing query planner statistics failed: {err}");
            }
        }
    }
    let _ = connection.close().await;
}

/// Opens the database file, creating it readable by its owner only: it holds keys and password
/// hashes. SQLite gives the WAL and shared-memory files the database file's mode.
fn create_private_file(path: &Path) -> StoreResult<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|err| StoreError::Unavailable(format!("cannot open {}: {err}", path.display())))
}

/// Opens (see [`create_private_file`]) and locks the database file.
fn lock_database_file(path: &Path) -> StoreResult<std::fs::File> {
    let file = create_private_file(path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "the database file {} is in use by another Herald process; stop that process \
             first, or give this one its own file with --database-url sqlite://<other path>",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(err)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {err}",
            path.display()
        ))),
    }
}
