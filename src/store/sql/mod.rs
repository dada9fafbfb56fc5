//! The SQL both backends share, and the small layer that lets it be written once.
//!
//! A statement is an [`Sql`]: text with a `?` wherever a value goes, plus the values. When it
//! runs, the driver's `QueryBuilder` writes each backend's own placeholder (`?` on SQLite, `$n` on
//! PostgreSQL) as it binds the values, so the stores in this folder hold one copy of every
//! statement. The few constructs the two dialects spell differently (a prefix match, a JSON
//! document parameter, a field of one) come from [`Dialect`]; free text is escaped for PostgreSQL
//! when bound and unescaped when read (see `postgres::enc`), so callers never see the difference.
//!
//! Rows come back as [`Row`], read by column name with the few types the schema uses.

mod accounts;
mod channels;
mod classes;
mod identity;
mod instances;
mod messages;
mod objects;
mod rows;
mod users;

use serde_json::{Map, Value};
use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Postgres, QueryBuilder, Row as _, Sqlite};

use async_trait::async_trait;

use super::postgres::{Clustered, dec, enc};
use super::sqlite::Embedded;
use super::{ClusterIdentity, CommitListener, PoolConnections, Store, StoreResult};
use crate::access::Change;

pub(super) use objects::run_write;
pub(super) use rows::*;

/// The store of both backends: the shared SQL runs on `db`; `backend` holds what only one of
/// them has (its writer task, locks, pruning state).
pub struct SqlStore {
    pub(super) db: Db,
    pub(super) backend: Backend,
    /// Told of every committed change (see [`SqlStore::commit_logged`]).
    pub(super) listener: std::sync::Arc<dyn CommitListener>,
}

pub(super) enum Backend {
    Sqlite(Embedded),
    Postgres(Clustered),
}

impl SqlStore {
    /// How the database would run the list `query` of `class` (see `ObjectStore::list_objects`):
    /// its plan, one line per row (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL).
    pub async fn explain_object_list(
        &self,
        class: &crate::objects::Class,
        query: &super::ObjectQuery,
    ) -> StoreResult<Vec<String>> {
        objects::explain(&self.db, class, query, false).await
    }

    /// As [`SqlStore::explain_object_list`], for the statement that counts the query's matches
    /// (`include_count`).
    pub async fn explain_object_count(
        &self,
        class: &crate::objects::Class,
        query: &super::ObjectQuery,
    ) -> StoreResult<Vec<String>> {
        objects::explain(&self.db, class, query, true).await
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        self.db.read().run(Sql::new("SELECT 1")).await?;
        Ok(())
    }

    fn pool_connections(&self) -> PoolConnections {
        fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> PoolConnections {
            let idle = pool.num_idle();
            PoolConnections {
                idle,
                busy: (pool.size() as usize).saturating_sub(idle),
            }
        }
        match &self.db {
            Db::Sqlite { reader, writer } => {
                let (r, w) = (of(reader), of(writer));
                PoolConnections {
                    idle: r.idle + w.idle,
                    busy: r.busy + w.busy,
                }
            }
            Db::Postgres(pool) => of(pool),
        }
    }

    async fn cluster_identity(&self) -> StoreResult<ClusterIdentity> {
        identity::cluster_identity(&self.db).await
    }

    async fn access_version(&self) -> StoreResult<i64> {
        let sql = Sql::new("SELECT version FROM access_version WHERE id = 1");
        Ok(self.db.read().one(sql).await?.int("version")?)
    }

    async fn access_log_after(
        &self,
        version: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, Option<Change>)>> {
        let sql = Sql::new(
            "SELECT version, change FROM access_log WHERE version > ? ORDER BY version LIMIT ?",
        )
        .bind(version)
        .bind(limit);
        let rows = self.db.read().all(sql).await?;
        rows.iter()
            .map(|row| {
                let change = serde_json::from_str(&row.raw("change")?).ok();
                Ok((row.int("version")?, change))
            })
            .collect()
    }
}

impl SqlStore {
    /// Runs `sql`, which must change exactly one row, and logs `change` with it.
    pub(super) async fn logged(&self, sql: Sql, change: Change) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        super::touched_one(tx.exec().run(sql).await?)?;
        self.commit_logged(tx, change).await
    }

    /// The one way a change to credentials, permissions or schemas is committed: written to
    /// the access log in its transaction (for every process on the database), then, once
    /// committed, told to this process's listener (so the caller's next request sees it).
    pub(super) async fn commit_logged(&self, mut tx: Tx, change: Change) -> StoreResult<()> {
        log_access_change(&mut tx, &change).await?;
        tx.commit().await?;
        self.listener.changed(&change);
        Ok(())
    }
}

/// Entries the access log keeps; a node further behind forgets all its caches instead.
const ACCESS_LOG_KEPT: i64 = 10_000;

/// Records a change to credentials or permissions in the transaction that makes it (docs/api.md
/// §11.5). The counter row stays locked until the transaction ends, so concurrent changes take
/// versions in commit order.
async fn log_access_change(tx: &mut Tx, change: &Change) -> StoreResult<()> {
    let sql =
        Sql::new("UPDATE access_version SET version = version + 1 WHERE id = 1 RETURNING version");
    let version = tx.exec().one(sql).await?.int("version")?;
    // Serialising a plain enum cannot fail; were it to, "everything" is the safe reading.
    let text = serde_json::to_string(change).unwrap_or_else(|_| r#"{"kind":"everything"}"#.into());
    let sql = Sql::new("INSERT INTO access_log (version, change, created_at) VALUES (?, ?, ?)")
        .bind(version)
        .bind(raw(text))
        .bind(crate::model::now_micros());
    tx.exec().run(sql).await?;
    let sql = Sql::new("DELETE FROM access_log WHERE version <= ?").bind(version - ACCESS_LOG_KEPT);
    tx.exec().run(sql).await?;
    Ok(())
}

/// On PostgreSQL, locks a row until the transaction ends, so that checks and writes made under
/// it by concurrent transactions (of any node) take turns. SQLite needs nothing: it has one
/// writer.
pub(super) async fn lock_row(tx: &mut Tx, table: &str, id: i64) -> sqlx::Result<()> {
    if let Tx::Postgres(_) = tx {
        tx.exec()
            .run(
                Sql::new(format!(
                    "SELECT id FROM {table} WHERE id = ? FOR NO KEY UPDATE"
                ))
                .bind(id),
            )
            .await?;
    }
    Ok(())
}

/// Which SQL dialect a statement is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a statement. `None` binds a typed NULL.
#[derive(Debug)]
pub(super) enum Arg {
    Int(Option<i64>),
    Float(Option<f64>),
    Bool(Option<bool>),
    /// Free text: escaped on PostgreSQL, which cannot store U+0000.
    Text(Option<String>),
    /// Text stored byte for byte: JSON documents of TEXT columns, keys, hashes.
    Raw(Option<String>),
    Bytes(Vec<u8>),
}

/// Text stored byte for byte (see [`Arg::Raw`]).
pub(super) fn raw(text: impl Into<String>) -> Arg {
    Arg::Raw(Some(text.into()))
}

/// Optional text stored byte for byte.
pub(super) fn raw_opt(text: Option<String>) -> Arg {
    Arg::Raw(text)
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::Float(Some(v))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(Some(v))
    }
}
impl From<Option<bool>> for Arg {
    fn from(v: Option<bool>) -> Arg {
        Arg::Bool(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Arg {
        Arg::Bytes(v.to_vec())
    }
}

/// A statement: SQL text with `?` where each value goes, and the values in order.
#[derive(Debug)]
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }

    /// Binds the value of the next `?`.
    pub fn bind(mut self, arg: impl Into<Arg>) -> Sql {
        self.args.push(arg.into());
        self
    }

    /// Appends text (which may hold further `?`).
    pub fn push(mut self, text: &str) -> Sql {
        self.text.push_str(text);
        self
    }

    /// Appends ` AND <column> starts with <prefix>`, case-sensitively.
    pub fn and_prefix(self, dialect: Dialect, column: &str, prefix: &str) -> Sql {
        match dialect {
            // SQLite's LIKE ignores ASCII case, and its GLOB gives `*` and `?` meaning.
            Dialect::Sqlite => self
                .push(&format!(" AND substr({column}, 1, ?) = ?"))
                .bind(prefix.chars().count() as i64)
                .bind(prefix),
            Dialect::Postgres => self
                .push(&format!(" AND starts_with({column}, ?)"))
                .bind(prefix),
        }
    }

    /// Appends the id window and order of `page` to a statement whose WHERE clause is open.
    pub fn and_page(mut self, column: &str, page: super::IdPage) -> Sql {
        if let Some(after) = page.after {
            self = self.push(&format!(" AND {column} > ?")).bind(after);
        }
        if let Some(before) = page.before {
            self = self.push(&format!(" AND {column} < ?")).bind(before);
        }
        let order = if page.descending { "DESC" } else { "ASC" };
        self.push(&format!(" ORDER BY {column} {order} LIMIT ?"))
            .bind(page.limit)
    }

    fn pieces(&self) -> impl Iterator<Item = (&str, Option<&Arg>)> {
        let mut args = self.args.iter();
        let mut pieces = self.text.split('?').peekable();
        std::iter::from_fn(move || {
            let piece = pieces.next()?;
            let arg = if pieces.peek().is_some() {
                args.next()
            } else {
                None
            };
            Some((piece, arg))
        })
    }

    fn for_sqlite(&self) -> QueryBuilder<'_, Sqlite> {
        build!(self, |text: &str| text)
    }

    fn for_postgres(&self) -> QueryBuilder<'_, Postgres> {
        build!(self, enc)
    }
}

/// Builds the driver's query from an [`Sql`]: its text, with each value bound where its `?` was
/// (the builder writes the backend's placeholder). `$text` maps free text to its stored form.
macro_rules! build {
    ($sql:expr, $text:expr) => {{
        let mut query = QueryBuilder::new("");
        for (piece, arg) in $sql.pieces() {
            query.push(piece);
            match arg {
                None => {}
                Some(Arg::Int(v)) => {
                    query.push_bind(*v);
                }
                Some(Arg::Float(v)) => {
                    query.push_bind(*v);
                }
                Some(Arg::Bool(v)) => {
                    query.push_bind(*v);
                }
                Some(Arg::Text(v)) => {
                    query.push_bind(v.as_deref().map($text));
                }
                Some(Arg::Raw(v)) => {
                    query.push_bind(v.as_deref());
                }
                Some(Arg::Bytes(v)) => {
                    query.push_bind(&v[..]);
                }
            }
        }
        query
    }};
}
use build;

impl Dialect {
    /// An object's custom fields as a statement value, and the SQL that takes it (`?` on
    /// SQLite; on PostgreSQL a JSONB cast, with strings escaped like free text).
    pub(super) fn document(self, data: &Map<String, Value>) -> (Arg, &'static str) {
        match self {
            Dialect::Sqlite => (raw(Value::Object(data.clone()).to_string()), "?"),
            Dialect::Postgres => {
                let stored = map_strings(Value::Object(data.clone()), &|s| enc(&s).into_owned());
                (raw(stored.to_string()), "CAST(? AS jsonb)")
            }
        }
    }
}

/// Applies `f` to every string (and object key) of a JSON value.
fn map_strings(value: Value, f: &dyn Fn(String) -> String) -> Value {
    match value {
        Value::String(s) => Value::String(f(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| map_strings(v, f)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (f(k), map_strings(v, f)))
                .collect(),
        ),
        other => other,
    }
}

/// A row of either backend.
pub(super) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    fn get<T>(&self, column: &str) -> sqlx::Result<T>
    where
        T: for<'r> sqlx::Decode<'r, Sqlite>
            + sqlx::Type<Sqlite>
            + for<'r> sqlx::Decode<'r, Postgres>
            + sqlx::Type<Postgres>,
    {
        match self {
            Row::Sqlite(row) => row.try_get(column),
            Row::Postgres(row) => row.try_get(column),
        }
    }

    pub fn int(&self, column: &str) -> sqlx::Result<i64> {
        self.get(column)
    }

    pub fn opt_int(&self, column: &str) -> sqlx::Result<Option<i64>> {
        self.get(column)
    }

    pub fn boolean(&self, column: &str) -> sqlx::Result<bool> {
        self.get(column)
    }

    /// Free text (unescaped on PostgreSQL).
    pub fn text(&self, column: &str) -> sqlx::Result<String> {
        Ok(self.opt_text(column)?.unwrap_or_default())
    }

    pub fn opt_text(&self, column: &str) -> sqlx::Result<Option<String>> {
        let stored: Option<String> = self.get(column)?;
        Ok(match self {
            Row::Sqlite(_) => stored,
            Row::Postgres(_) => stored.map(dec),
        })
    }

    /// Text stored byte for byte.
    pub fn raw(&self, column: &str) -> sqlx::Result<String> {
        self.get(column)
    }

    pub fn opt_raw(&self, column: &str) -> sqlx::Result<Option<String>> {
        self.get(column)
    }

    pub fn bytes(&self, column: &str) -> sqlx::Result<Vec<u8>> {
        self.get(column)
    }

    /// An object's custom fields (selected as text; on PostgreSQL their strings unescaped).
    pub fn document(&self, column: &str) -> sqlx::Result<Map<String, Value>> {
        let mut value = self.json(column)?;
        if let Row::Postgres(_) = self {
            value = map_strings(value, &|s| dec(s));
        }
        match value {
            Value::Object(map) => Ok(map),
            _ => Err(super::decode_error("object document")),
        }
    }

    /// A JSON document kept in a TEXT column.
    pub fn json(&self, column: &str) -> sqlx::Result<Value> {
        let text = self.raw(column)?;
        serde_json::from_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
    }
}

/// Where a statement runs: a pool, or a connection (in a transaction).
pub(super) enum Exec<'a> {
    SqlitePool(&'a SqlitePool),
    PostgresPool(&'a PgPool),
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

macro_rules! on_each {
    ($exec:expr, $sql:expr, |$query:ident, $target:ident| $body:expr) => {
        match $exec {
            Exec::SqlitePool($target) => {
                let mut $query = $sql.for_sqlite();
                $body
            }
            Exec::Sqlite($target) => {
                let mut $query = $sql.for_sqlite();
                let $target = &mut *$target;
                $body
            }
            Exec::PostgresPool($target) => {
                let mut $query = $sql.for_postgres();
                $body
            }
            Exec::Postgres($target) => {
                let mut $query = $sql.for_postgres();
                let $target = &mut *$target;
                $body
            }
        }
    };
}

impl Exec<'_> {
    pub async fn all(self, sql: Sql) -> sqlx::Result<Vec<Row>> {
        on_each!(self, sql, |query, target| {
            Ok(query
                .build()
                .fetch_all(target)
                .await?
                .into_iter()
                .map(Row::from)
                .collect())
        })
    }

    pub async fn opt(self, sql: Sql) -> sqlx::Result<Option<Row>> {
        on_each!(self, sql, |query, target| {
            Ok(query.build().fetch_optional(target).await?.map(Row::from))
        })
    }

    /// The first row; `RowNotFound` when there is none.
    pub async fn one(self, sql: Sql) -> sqlx::Result<Row> {
        self.opt(sql).await?.ok_or(sqlx::Error::RowNotFound)
    }

    /// Runs a statement; the number of rows it changed.
    pub async fn run(self, sql: Sql) -> sqlx::Result<u64> {
        on_each!(self, sql, |query, target| {
            Ok(query.build().execute(target).await?.rows_affected())
        })
    }
}

impl From<SqliteRow> for Row {
    fn from(row: SqliteRow) -> Row {
        Row::Sqlite(row)
    }
}

impl From<PgRow> for Row {
    fn from(row: PgRow) -> Row {
        Row::Postgres(row)
    }
}

/// The database of a store. SQLite keeps its one write connection apart from its readers (see
/// `sqlite`); PostgreSQL has one pool for both.
#[derive(Clone)]
pub(super) enum Db {
    Sqlite {
        reader: SqlitePool,
        writer: SqlitePool,
    },
    Postgres(PgPool),
}

impl Db {
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite { .. } => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    pub fn read(&self) -> Exec<'_> {
        match self {
            Db::Sqlite { reader, .. } => Exec::SqlitePool(reader),
            Db::Postgres(pool) => Exec::PostgresPool(pool),
        }
    }

    pub fn write(&self) -> Exec<'_> {
        match self {
            Db::Sqlite { writer, .. } => Exec::SqlitePool(writer),
            Db::Postgres(pool) => Exec::PostgresPool(pool),
        }
    }

    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            // IMMEDIATE: the write lock is taken (waiting up to the busy timeout) before the
            // first read. A deferred transaction that reads and then writes cannot wait: it fails
            // at once with SQLITE_BUSY if another connection (`herald account` beside the
            // server, the statistics refresh) holds the lock at that moment.
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }
}

/// A write transaction; dropped without `commit`, it rolls back.
pub(super) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(tx) => Exec::Sqlite(&mut *tx),
            Tx::Postgres(tx) => Exec::Postgres(&mut *tx),
        }
    }

    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// A connection inside a transaction that someone else commits (the group-commit writers run
/// several writes in one transaction).
pub(super) enum Conn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

impl Conn<'_> {
    pub fn exec(&mut self) -> Exec<'_> {
        match self {
            Conn::Sqlite(conn) => Exec::Sqlite(conn),
            Conn::Postgres(conn) => Exec::Postgres(conn),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_where_the_question_marks_are() {
        let sql = Sql::new("SELECT * FROM t WHERE a = ? AND b = ?")
            .bind(1_i64)
            .bind("x")
            .push(" LIMIT ?")
            .bind(5_i64);
        assert_eq!(
            sql.for_postgres().sql(),
            "SELECT * FROM t WHERE a = $1 AND b = $2 LIMIT $3"
        );
        assert_eq!(
            sql.for_sqlite().sql(),
            "SELECT * FROM t WHERE a = ? AND b = ? LIMIT ?"
        );
    }
}
