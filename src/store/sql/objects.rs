//! Data objects (docs/api.md §10.3, §10.4): reads and lists, and the writes that store a data change
//! together with its change message.
//!
//! [`run_write`] runs one write on a connection inside a transaction that its caller (a
//! backend's writer) commits: it checks the rules that depend on the stored row (`objects::rules`),
//! changes the data and, when the object has a channel, allocates the channel's next id and
//! stores the message, in that same transaction. The writer tells the commit listener about the
//! message only after the commit.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::classes::{Operand, index_name, order_key, presence_expr, value_operand};
use super::messages::store_message;
use super::rows::{self, object_columns};
use super::{Backend, Conn, Db, Dialect, Sql, SqlStore, all, raw};
use crate::model;
use crate::objects::query::{Builtin, Comparison, Condition, Field, Lookup, Order, Scalar};
use crate::objects::render::{change_metadata, created_payload, deleted_payload, updated_payload};
use crate::objects::rules::{check_delete, plan_update};
use crate::objects::schema::{FieldIndex, FieldType, IndexKind};
use crate::objects::{Access, Class, DataObject};
use crate::store::writer::Committed;
use crate::store::{
    Cursor, NewMessage, NewObject, ObjectChanges, ObjectQuery, Refusal, StoreError, StoreResult,
    User, Write, Written, conflict, missing_parent_or, not_found, touched_one,
};

static COLUMNS: LazyLock<String> = LazyLock::new(|| object_columns("o", "ch", ""));
static SELECT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM objects o LEFT JOIN channels ch ON ch.id = o.channel_id",
        *COLUMNS
    )
});

pub(super) async fn object(db: &Db, class: &Class, id: i64) -> StoreResult<DataObject> {
    let sql = Sql::new(format!("{} WHERE o.class_id = ? AND o.id = ?", *SELECT))
        .bind(class.id)
        .bind(id);
    let row = db.read().one(sql).await.map_err(not_found)?;
    Ok(rows::object(&row)?)
}

/// The object's row, locked until the transaction ends (PostgreSQL; SQLite has one writer).
async fn locked(conn: &mut Conn<'_>, class: &Class, id: i64) -> StoreResult<DataObject> {
    let locking = match conn.dialect() {
        Dialect::Postgres => " FOR UPDATE OF o",
        Dialect::Sqlite => "",
    };
    let sql = Sql::new(format!(
        "{} WHERE o.class_id = ? AND o.id = ?{locking}",
        *SELECT
    ))
    .bind(class.id)
    .bind(id);
    let row = conn.exec().one(sql).await.map_err(not_found)?;
    Ok(rows::object(&row)?)
}

fn builtin_column(builtin: Builtin) -> &'static str {
    match builtin {
        Builtin::Id => "o.id",
        Builtin::CreatedAt => "o.created_at",
        Builtin::UpdatedAt => "o.updated_at",
        Builtin::Revision => "o.revision",
        Builtin::Owner => "o.owner_id",
        Builtin::Group => "o.group_id",
        Builtin::Channel => "ch.name",
        Builtin::ChannelRoom => "o.channel_room",
    }
}

/// What a condition tests.
fn condition_operand(dialect: Dialect, condition: &Condition) -> Operand {
    match &condition.field {
        Field::Builtin(builtin) => Operand::column(builtin_column(*builtin)),
        Field::Custom(def) => match (&condition.lookup, value_operand(dialect, def, "o.")) {
            (Lookup::Exists(_), _) | (_, None) => {
                Operand::column(&presence_expr(dialect, def, "o."))
            }
            (_, Some(operand)) => operand,
        },
    }
}

fn placeholders(param: &str, n: usize) -> String {
    vec![param; n].join(", ")
}

/// Appends the query's conditions (ANDed). A null value matches `_neq` and `_nin` (it is not
/// equal to the value), and nothing else but `_exists: false`.
fn and_conditions(mut sql: Sql, dialect: Dialect, conditions: &[Condition]) -> Sql {
    for condition in conditions {
        let operand = condition_operand(dialect, condition);
        let (expr, param) = (&operand.expr, operand.param());
        let bind = |sql: Sql, value: &Scalar| operand.bind(sql, value);
        sql = match &condition.lookup {
            Lookup::Compare(Comparison::Neq, value) => bind(
                sql.push(&format!(" AND ({expr} IS NULL OR {expr} <> {param})")),
                value,
            ),
            Lookup::Compare(comparison, value) => bind(
                sql.push(&format!(" AND {expr} {} {param}", comparison.sql())),
                value,
            ),
            Lookup::In(values) if values.is_empty() => sql.push(" AND 1 = 0"),
            Lookup::In(values) => {
                let list = placeholders(param, values.len());
                let sql = sql.push(&format!(" AND {expr} IN ({list})"));
                values.iter().fold(sql, bind)
            }
            Lookup::NotIn(values) if values.is_empty() => sql,
            Lookup::NotIn(values) => {
                let list = placeholders(param, values.len());
                let sql = sql.push(&format!(" AND ({expr} IS NULL OR {expr} NOT IN ({list}))"));
                values.iter().fold(sql, bind)
            }
            Lookup::Exists(true) => sql.push(&format!(" AND {expr} IS NOT NULL")),
            Lookup::Exists(false) => sql.push(&format!(" AND {expr} IS NULL")),
        };
    }
    sql
}

/// Appends the condition of the objects `access` may read (docs/api.md §10.3).
fn and_readable(sql: Sql, access: &Access) -> Sql {
    match access {
        Access::Full => sql,
        Access::Anonymous => sql.push(" AND o.other_permissions >= 1"),
        Access::User { id, groups } => {
            let mut readable = format!(
                "o.other_permissions >= 1 OR (o.owner_id = {id} AND o.owner_permissions >= 1)"
            );
            if !groups.is_empty() {
                let ids: Vec<String> = groups.iter().map(i64::to_string).collect();
                readable.push_str(&format!(
                    " OR (o.group_permissions >= 1 AND o.group_id IN ({}))",
                    ids.join(", ")
                ));
            }
            sql.push(&format!(" AND ({readable})"))
        }
    }
}

/// The class index SQLite is told to use (`INDEXED BY`). For a page: the filter index of the
/// first equality or `_in` condition on an indexed custom field, else the order index of a
/// custom `order_by`. For a count, which reads every match anyway: the filter index of the first
/// indexed condition of any comparison. Without statistics (a new database, or data grown since
/// the last `PRAGMA optimize`) SQLite takes the class's id index for just as good and reads the
/// whole class; these indexes never read more than their matches (a range paged in id order is
/// left to the planner: its matches may be most of the class). PostgreSQL needs no hint: it has
/// the expressions' statistics (see `classes::create_index`).
fn sqlite_index(class: &Class, query: &ObjectQuery, page: bool) -> Option<String> {
    let filter = query.conditions.iter().find_map(|condition| {
        let Field::Custom(def) = &condition.field else {
            return None;
        };
        let served = match &condition.lookup {
            Lookup::Compare(Comparison::Eq, _) | Lookup::In(_) => true,
            Lookup::Compare(Comparison::Neq, _) | Lookup::NotIn(_) | Lookup::Exists(_) => false,
            Lookup::Compare(_, _) => !page,
        };
        (served && def.filter_index && value_operand(Dialect::Sqlite, def, "o.").is_some()).then(
            || FieldIndex {
                field: def.clone(),
                kind: IndexKind::Filter,
            },
        )
    });
    let order = match &query.order.field {
        Field::Custom(def) if page && def.order_index => Some(FieldIndex {
            field: def.clone(),
            kind: IndexKind::Order,
        }),
        _ => None,
    };
    filter.or(order).map(|index| index_name(class.id, &index))
}

/// `SELECT <columns> FROM objects o ... WHERE` the class's rows matching a query's conditions
/// and permissions (the WHERE clause is left open). The class id is a literal: partial indexes
/// are only used when the condition shows. `page`: the statement reads a page in the query's
/// order (else it counts).
fn matching(
    columns: &str,
    channel: bool,
    dialect: Dialect,
    class: &Class,
    query: &ObjectQuery,
    page: bool,
) -> Sql {
    let hint = match dialect {
        Dialect::Sqlite => sqlite_index(class, query, page)
            .map(|name| format!(" INDEXED BY \"{name}\""))
            .unwrap_or_default(),
        Dialect::Postgres => String::new(),
    };
    let join = if channel {
        " LEFT JOIN channels ch ON ch.id = o.channel_id"
    } else {
        ""
    };
    let sql = Sql::new(format!(
        "SELECT {columns} FROM objects o{hint}{join} WHERE o.class_id = {}",
        class.id
    ));
    and_readable(
        and_conditions(sql, dialect, &query.conditions),
        &query.access,
    )
}

/// The value an order is by, for custom fields (which may be null) and built-in timestamps,
/// and whether it may be null.
fn order_operand(dialect: Dialect, order: &Order) -> Option<(Operand, bool)> {
    match &order.field {
        Field::Builtin(Builtin::CreatedAt) => Some((Operand::column("o.created_at"), false)),
        Field::Builtin(Builtin::UpdatedAt) => Some((Operand::column("o.updated_at"), false)),
        Field::Builtin(_) => None,
        Field::Custom(def) => value_operand(dialect, def, "o.").map(|operand| (operand, true)),
    }
}

/// Appends the page's cursor condition, order and limit. Ascending order puts nulls last and
/// descending first (docs/api.md §10.9): the key is `(value IS NULL, value, id)`, ascending or
/// exactly reversed.
fn and_page(mut sql: Sql, dialect: Dialect, query: &ObjectQuery) -> Sql {
    let order = &query.order;
    let (gt, direction) = if order.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    match order_operand(dialect, order) {
        None => {
            if let Some(after) = &query.after {
                sql = sql.push(&format!(" AND o.id {gt} ?")).bind(after.id);
            }
            sql.push(&format!(" ORDER BY o.id {direction} LIMIT ?"))
                .bind(query.limit)
        }
        Some((operand, nullable)) => {
            let expr = operand.expr.clone();
            sql = match (&query.after, nullable) {
                (None, _) => sql,
                (
                    Some(Cursor {
                        value: Some(value),
                        id,
                    }),
                    _,
                ) => {
                    let tuple = format!("({expr}, o.id) {gt} ({}, ?)", operand.param());
                    let condition = match (nullable, order.descending) {
                        (true, false) => format!(" AND ({expr} IS NULL OR {tuple})"),
                        _ => format!(" AND {tuple}"),
                    };
                    operand.bind(sql.push(&condition), value).bind(*id)
                }
                (Some(Cursor { value: None, id }), _) if order.descending => sql
                    .push(&format!(" AND ({expr} IS NOT NULL OR o.id < ?)"))
                    .bind(*id),
                (Some(Cursor { value: None, id }), _) => sql
                    .push(&format!(" AND ({expr} IS NULL AND o.id > ?)"))
                    .bind(*id),
            };
            let key = if nullable {
                order_key(&expr, "o.").to_vec()
            } else {
                vec![expr, "o.id".to_owned()]
            };
            let key: Vec<String> = key
                .into_iter()
                .map(|k| format!("{k} {direction}"))
                .collect();
            sql.push(&format!(" ORDER BY {} LIMIT ?", key.join(", ")))
                .bind(query.limit)
        }
    }
}

/// The statement that reads one page of a class's objects.
fn list_statement(dialect: Dialect, class: &Class, query: &ObjectQuery) -> Sql {
    let sql = matching(&COLUMNS, true, dialect, class, query, true);
    and_page(sql, dialect, query)
}

pub(super) async fn list(
    db: &Db,
    class: &Class,
    query: &ObjectQuery,
) -> StoreResult<Vec<DataObject>> {
    let sql = list_statement(db.dialect(), class, query);
    all(db.read().all(sql).await?, rows::object)
}

/// The database's plan for the statement [`list`] runs (or, with `count`, [`count`]):
/// `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on PostgreSQL, one line per row. For benchmarks
/// and operators checking that a class's indexes serve a query.
pub(super) async fn explain(
    db: &Db,
    class: &Class,
    query: &ObjectQuery,
    count: bool,
) -> StoreResult<Vec<String>> {
    let dialect = db.dialect();
    let statement = if count {
        count_statement(dialect, class, query)
    } else {
        list_statement(dialect, class, query)
    };
    let (prefix, column) = match dialect {
        Dialect::Sqlite => ("EXPLAIN QUERY PLAN ", "detail"),
        Dialect::Postgres => ("EXPLAIN ", "QUERY PLAN"),
    };
    let sql = Sql {
        text: format!("{prefix}{}", statement.text),
        args: statement.args,
    };
    let rows = db.read().all(sql).await?;
    Ok(rows
        .iter()
        .map(|row| row.raw(column))
        .collect::<Result<_, _>>()?)
}

/// The statement that counts a query's matches.
fn count_statement(dialect: Dialect, class: &Class, query: &ObjectQuery) -> Sql {
    let by_channel = query
        .conditions
        .iter()
        .any(|c| c.field == Field::Builtin(Builtin::Channel));
    matching("COUNT(*) AS n", by_channel, dialect, class, query, false)
}

pub(super) async fn count(db: &Db, class: &Class, query: &ObjectQuery) -> StoreResult<i64> {
    let sql = count_statement(db.dialect(), class, query);
    Ok(db.read().one(sql).await?.int("n")?)
}

/// Hands a write to the backend's writer, which runs it with [`run_write`] and commits.
pub(super) async fn write(store: &SqlStore, write: Write) -> StoreResult<Written> {
    match &store.backend {
        Backend::Sqlite(embedded) => embedded.writer.write(write).await,
        Backend::Postgres(cluster) => cluster.writer.write(write).await,
    }
}

/// Runs a write inside the caller's transaction: the data change and, when the object has a
/// channel, its change message. Returns what was written and the messages to announce after
/// the commit.
pub(in crate::store) async fn run_write(
    conn: &mut Conn<'_>,
    write: &Write,
) -> StoreResult<(Written, Vec<Committed>)> {
    match write {
        Write::CreateObject { class, new, author } => {
            let (object, committed) = create(conn, class, new.clone(), author).await?;
            Ok((Written::Object(object), committed))
        }
        Write::UpdateObject {
            class,
            id,
            changes,
            access,
            author,
            ..
        } => {
            let current = locked(conn, class, *id).await?;
            let (object, committed) = update(conn, class, current, access, changes, author).await?;
            Ok((Written::Object(object), committed))
        }
        Write::DeleteObject {
            class,
            id,
            access,
            author,
            ..
        } => {
            let current = locked(conn, class, *id).await?;
            check_delete(access, &current)?;
            let sql = Sql::new("DELETE FROM objects WHERE id = ?").bind(current.id);
            touched_one(conn.exec().run(sql).await?)?;
            let committed = match &current.channel {
                Some(channel) => vec![
                    announce(
                        conn,
                        class,
                        &current,
                        channel,
                        "delete",
                        author,
                        deleted_payload(current.id),
                    )
                    .await?,
                ],
                None => Vec::new(),
            };
            Ok((Written::Deleted, committed))
        }
        Write::CreateUser {
            instance_id,
            profile_class,
            new,
            profile,
            author,
        } => {
            let now = model::now_micros();
            let sql = Sql::new(
                "INSERT INTO users (instance_id, username, password_hash, user_key, key_digest, \
                 created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
            )
            .bind(*instance_id)
            .bind(new.username.as_str())
            .bind(raw(new.password_hash.as_str()))
            .bind(raw(new.user_key.as_str()))
            .bind(&new.key_digest.0[..])
            .bind(now)
            .bind(now);
            let row = conn
                .exec()
                .one(sql)
                .await
                .map_err(missing_parent_or(conflict("username")))?;
            let user_id = row.int("id")?;
            let mut profile = profile.clone();
            profile.owner_id = Some(user_id);
            let (profile, committed) = create(conn, profile_class, profile, author).await?;
            let user = User {
                id: user_id,
                instance_id: *instance_id,
                username: row.text("username")?,
                password_hash: row.raw("password_hash")?,
                user_key: row.raw("user_key")?,
                profile,
            };
            Ok((Written::User(user), committed))
        }
        Write::UpdateUser {
            instance_id,
            id,
            profile_class,
            changes,
            profile,
            author,
            ..
        } => {
            let sql = Sql::new(
                "UPDATE users SET username = COALESCE(?, username), \
                 password_hash = COALESCE(?, password_hash), updated_at = ? \
                 WHERE instance_id = ? AND id = ? RETURNING *",
            )
            .bind(changes.username.as_deref())
            .bind(super::raw_opt(changes.password_hash.clone()))
            .bind(model::now_micros())
            .bind(*instance_id)
            .bind(*id);
            let row = conn
                .exec()
                .opt(sql)
                .await
                .map_err(conflict("username"))?
                .ok_or(StoreError::NotFound)?;
            let sql = Sql::new(format!(
                "{} WHERE o.class_id = ? AND o.owner_id = ?",
                *SELECT
            ))
            .bind(profile_class.id)
            .bind(*id);
            let current = rows::object(&conn.exec().one(sql).await?)?;
            let (profile, committed) =
                update(conn, profile_class, current, &Access::Full, profile, author).await?;
            let user = User {
                id: *id,
                instance_id: *instance_id,
                username: row.text("username")?,
                password_hash: row.raw("password_hash")?,
                user_key: row.raw("user_key")?,
                profile,
            };
            Ok((Written::User(user), committed))
        }
    }
}

/// Refuses a write validated against a schema that has changed since (another request changed
/// the class between the caller's read of it and this write): its fields may no longer exist or
/// mean the same.
async fn check_schema(conn: &mut Conn<'_>, class: &Class) -> StoreResult<()> {
    let sql = Sql::new("SELECT revision FROM classes WHERE id = ?").bind(class.id);
    let row = conn.exec().one(sql).await.map_err(not_found)?;
    if row.int("revision")? != class.revision {
        return Err(StoreError::Refused(Refusal::NonField(
            "The class's schema changed while this request ran; send it again.".into(),
        )));
    }
    Ok(())
}

async fn create(
    conn: &mut Conn<'_>,
    class: &Class,
    new: NewObject,
    author: &str,
) -> StoreResult<(DataObject, Vec<Committed>)> {
    check_schema(conn, class).await?;
    let mut data = new.data;
    check_references(conn, class, &mut data, None).await?;
    let now = model::now_micros();
    let (document, param) = conn.dialect().document(&data);
    let sql = Sql::new(format!(
        "INSERT INTO objects (class_id, owner_id, owner_permissions, group_id, \
         group_permissions, other_permissions, channel_id, channel_room, data, created_at, \
         updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {param}, ?, ?) RETURNING id"
    ))
    .bind(class.id)
    .bind(new.owner_id)
    .bind(new.owner_permissions.code())
    .bind(new.group_id)
    .bind(new.group_permissions.code())
    .bind(new.other_permissions.code())
    .bind(new.channel.as_ref().map(|c| c.id))
    .bind(new.channel.as_ref().and_then(|c| c.room.clone()))
    .bind(document)
    .bind(now)
    .bind(now);
    let row = conn
        .exec()
        .one(sql)
        .await
        .map_err(missing_parent_or(StoreError::Backend))?;
    let object = DataObject {
        id: row.int("id")?,
        class_id: class.id,
        owner_id: new.owner_id,
        owner_permissions: new.owner_permissions,
        group_id: new.group_id,
        group_permissions: new.group_permissions,
        other_permissions: new.other_permissions,
        channel_id: new.channel.as_ref().map(|c| c.id),
        channel: new.channel.as_ref().map(|c| c.name.clone()),
        channel_room: new.channel.as_ref().and_then(|c| c.room.clone()),
        revision: 1,
        data,
        created_at: now,
        updated_at: now,
    };
    let committed = match &object.channel {
        Some(channel) => vec![
            announce(
                conn,
                class,
                &object,
                channel,
                "create",
                author,
                created_payload(class, &object),
            )
            .await?,
        ],
        None => Vec::new(),
    };
    Ok((object, committed))
}

async fn update(
    conn: &mut Conn<'_>,
    class: &Class,
    current: DataObject,
    access: &Access,
    changes: &ObjectChanges,
    author: &str,
) -> StoreResult<(DataObject, Vec<Committed>)> {
    if !changes.fields.is_empty() {
        check_schema(conn, class).await?;
    }
    let now = model::now_micros();
    let Some((mut next, changed)) = plan_update(access, class, &current, changes, now)? else {
        return Ok((current, Vec::new()));
    };
    check_references(conn, class, &mut next.data, Some(&changed)).await?;
    let (document, param) = conn.dialect().document(&next.data);
    let sql = Sql::new(format!(
        "UPDATE objects SET owner_id = ?, owner_permissions = ?, group_id = ?, \
         group_permissions = ?, other_permissions = ?, data = {param}, revision = ?, \
         updated_at = ? WHERE id = ?"
    ))
    .bind(next.owner_id)
    .bind(next.owner_permissions.code())
    .bind(next.group_id)
    .bind(next.group_permissions.code())
    .bind(next.other_permissions.code())
    .bind(document)
    .bind(next.revision)
    .bind(next.updated_at)
    .bind(next.id);
    touched_one(
        conn.exec()
            .run(sql)
            .await
            .map_err(missing_parent_or(StoreError::Backend))?,
    )?;
    let committed = match &next.channel {
        Some(channel) => vec![
            announce(
                conn,
                class,
                &next,
                channel,
                "update",
                author,
                updated_payload(class, &next, &changed),
            )
            .await?,
        ],
        None => Vec::new(),
    };
    Ok((next, committed))
}

/// Stores the change message of a write in the object's channel (room: its `channel_room`).
async fn announce(
    conn: &mut Conn<'_>,
    class: &Class,
    object: &DataObject,
    channel: &str,
    action: &'static str,
    author: &str,
    payload: String,
) -> StoreResult<Committed> {
    let channel_id = object.channel_id.ok_or(StoreError::NotFound)?;
    let new = NewMessage {
        room: object.channel_room.clone(),
        action,
        author: author.to_owned(),
        metadata: change_metadata(class),
        payload,
    };
    let message = store_message(conn, class.instance_id, channel_id, channel, new).await?;
    Ok(Committed {
        channel_id,
        message,
    })
}

/// Checks the references of `data` (only the `fields` named, when given): a reference to a
/// missing target is refused; a relation keeps only the ids that exist (docs/api.md §10.3, §10.5).
async fn check_references(
    conn: &mut Conn<'_>,
    class: &Class,
    data: &mut Map<String, Value>,
    fields: Option<&[String]>,
) -> StoreResult<()> {
    for def in &class.schema.0 {
        if !matches!(def.kind, FieldType::Reference | FieldType::Relation)
            || fields.is_some_and(|names| !names.contains(&def.name))
        {
            continue;
        }
        let ids: Vec<i64> = match data.get(&def.name) {
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_i64).collect(),
            _ => continue,
        };
        if ids.is_empty() {
            continue;
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let list = list.join(", ");
        let sql = match def.target.as_deref() {
            Some("user") => Sql::new(format!(
                "SELECT id FROM users WHERE instance_id = ? AND id IN ({list})"
            ))
            .bind(class.instance_id),
            Some("self") | None => Sql::new(format!(
                "SELECT id FROM objects WHERE class_id = ? AND id IN ({list})"
            ))
            .bind(class.id),
            Some(target) => Sql::new(format!(
                "SELECT o.id FROM objects o JOIN classes c ON c.id = o.class_id \
                 WHERE c.instance_id = ? AND c.name = ? AND o.id IN ({list})"
            ))
            .bind(class.instance_id)
            .bind(target),
        };
        let found: Vec<i64> = conn
            .exec()
            .all(sql)
            .await?
            .iter()
            .map(|row| row.int("id"))
            .collect::<Result<_, _>>()?;
        match def.kind {
            FieldType::Reference if found.is_empty() => {
                return Err(StoreError::Refused(Refusal::Field(
                    def.name.clone(),
                    "Target with specified id does not exist.".into(),
                )));
            }
            FieldType::Relation => {
                let kept: Vec<i64> = ids.into_iter().filter(|id| found.contains(id)).collect();
                if kept.is_empty() {
                    data.remove(&def.name);
                } else {
                    data.insert(def.name.clone(), Value::from(kept));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
