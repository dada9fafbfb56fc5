//! Classes (docs/api.md §10.1) and the indexes of their objects.
//!
//! All objects live in one table, their custom fields in one JSON document. A field's
//! `filter_index` / `order_index` is a partial expression index on that table, limited to the
//! class's rows (`WHERE class_id = <id>`), so a filtered or ordered list of one class reads an
//! index of that class only. Queries spell each expression exactly as the index does (see
//! [`value_operand`]), with the class id as a literal, because both databases only use a partial
//! index when the query's condition visibly implies the index's.

use async_trait::async_trait;

use serde_json::Value;

use super::{Dialect, Sql, SqlStore, Tx, all, lock_row, raw, raw_opt, rows};
use crate::access::Change;
use crate::model;
use crate::objects::query::Scalar;
use crate::objects::schema::{FieldDef, FieldIndex, FieldType, IndexKind, Schema};
use crate::objects::{Access, Class, USER_PROFILE};
use crate::store::{
    ClassChanges, IdPage, NewClass, ObjectStore, Refusal, StoreError, StoreResult, conflict,
    missing_parent_or, not_found, touched_one,
};

/// How a value appears in SQL: an expression, and how a value compared with it is written.
pub(super) struct Operand {
    pub expr: String,
    /// Compared values are JSON (PostgreSQL `jsonb`) rather than typed SQL values.
    json: bool,
}

impl Operand {
    /// A plain column.
    pub fn column(column: &str) -> Operand {
        Operand {
            expr: column.to_owned(),
            json: false,
        }
    }

    /// The placeholder of a value compared with this operand.
    pub fn param(&self) -> &'static str {
        if self.json { "CAST(? AS jsonb)" } else { "?" }
    }

    /// Binds a compared value (for [`Operand::param`]).
    pub fn bind(&self, sql: Sql, value: &Scalar) -> Sql {
        if self.json {
            let text = match value {
                Scalar::Int(n) => n.to_string(),
                Scalar::Float(f) => Value::from(*f).to_string(),
                Scalar::Bool(b) => b.to_string(),
                Scalar::Text(s) => Value::from(s.as_str()).to_string(),
            };
            return sql.bind(raw(text));
        }
        match value {
            Scalar::Int(n) => sql.bind(*n),
            Scalar::Float(f) => sql.bind(*f),
            Scalar::Text(s) => sql.bind(s.as_str()),
            Scalar::Bool(b) => sql.bind(*b),
        }
    }
}

/// A comparable custom field's value in the document of table alias `table` (`""` inside index
/// definitions), comparing and ordering as the field's type does. `None` for types that are
/// only tested for presence. Field names are `[A-Za-z][A-Za-z0-9_]*` (the schema guarantees
/// it), so they are safe inside the SQL literal.
///
/// On PostgreSQL a non-string value stays `jsonb` (numbers compare as numbers, booleans as
/// booleans) rather than being cast: the expression must never fail on another class's row
/// where a field of the same name has another type, because extended statistics evaluate it on
/// every row of the table. Strings compare by code point, as on SQLite (docs/api.md §10.9).
pub(super) fn value_operand(dialect: Dialect, def: &FieldDef, table: &str) -> Option<Operand> {
    let name = &def.name;
    let string = match def.kind {
        FieldType::String => true,
        FieldType::Integer
        | FieldType::Float
        | FieldType::Datetime
        | FieldType::Reference
        | FieldType::Boolean => false,
        _ => return None,
    };
    Some(match dialect {
        Dialect::Sqlite => Operand {
            expr: format!("json_extract({table}data, '$.{name}')"),
            json: false,
        },
        Dialect::Postgres if string => Operand {
            expr: format!("(({table}data ->> '{name}') COLLATE \"C\")"),
            json: false,
        },
        Dialect::Postgres => Operand {
            expr: format!("({table}data -> '{name}')"),
            json: true,
        },
    })
}

/// Any custom field's stored value, for presence tests (`_exists`).
pub(super) fn presence_expr(dialect: Dialect, def: &FieldDef, table: &str) -> String {
    let name = &def.name;
    match dialect {
        Dialect::Sqlite => format!("json_extract({table}data, '$.{name}')"),
        Dialect::Postgres => format!("({table}data -> '{name}')"),
    }
}

/// The order key of an order index: nulls after values, then the value, then the id.
pub(super) fn order_key(expr: &str, table: &str) -> [String; 3] {
    [
        format!("({expr} IS NULL)"),
        expr.to_owned(),
        format!("{table}id"),
    ]
}

/// FNV-1a: short, stable names for indexes and statistics.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(super) fn index_name(class_id: i64, index: &FieldIndex) -> String {
    // A hash of the (case-sensitive) field name keeps the name short on PostgreSQL (63 bytes).
    let hash = fnv(&index.field.name);
    let kind = match index.kind {
        IndexKind::Filter => 'f',
        IndexKind::Order => 'o',
    };
    format!("obj_{class_id}_{hash:016x}_{kind}")
}

/// Creates a class's index on one field: `(value, id)` for filters (an equality then also
/// yields id order), `(value IS NULL, value, id)` for order. On PostgreSQL the value's
/// expression also gets extended statistics: the planner does not use a partial index's own
/// statistics, and without them it cannot tell a selective filter from one that matches half
/// the class.
async fn create_index(
    tx: &mut Tx,
    dialect: Dialect,
    class_id: i64,
    index: &FieldIndex,
) -> sqlx::Result<()> {
    let Some(operand) = value_operand(dialect, &index.field, "") else {
        // Presence-only types (array, geopoint, relation) are filtered by scanning the class.
        return Ok(());
    };
    let expr = operand.expr;
    let columns = match index.kind {
        IndexKind::Filter => format!("{expr}, id"),
        IndexKind::Order => order_key(&expr, "").join(", "),
    };
    let name = index_name(class_id, index);
    let sql = format!(
        "CREATE INDEX IF NOT EXISTS \"{name}\" ON objects ({columns}) WHERE class_id = {class_id}"
    );
    tx.exec().run(Sql::new(sql)).await?;
    if dialect == Dialect::Postgres {
        // Shared by every class with a field of this name and kind; never dropped (cheap). A
        // node creating the same statistics at the same moment wins the race harmlessly.
        let sql = format!(
            "CREATE STATISTICS IF NOT EXISTS \"objstat_{:016x}\" ON ({expr}) FROM objects",
            fnv(&expr)
        );
        tx.exec().run(Sql::new("SAVEPOINT statistics")).await?;
        let outcome = tx.exec().run(Sql::new(sql)).await;
        if outcome.is_err() {
            tx.exec().run(Sql::new("ROLLBACK TO statistics")).await?;
        }
        tx.exec().run(Sql::new("RELEASE statistics")).await?;
    }
    Ok(())
}

async fn drop_index(tx: &mut Tx, class_id: i64, index: &FieldIndex) -> sqlx::Result<()> {
    let sql = format!("DROP INDEX IF EXISTS \"{}\"", index_name(class_id, index));
    tx.exec().run(Sql::new(sql)).await?;
    Ok(())
}

/// Drops the object indexes of every class of an instance (before the instance is deleted).
pub(super) async fn drop_instance_indexes(tx: &mut Tx, instance_id: i64) -> StoreResult<()> {
    let sql = Sql::new("SELECT * FROM classes WHERE instance_id = ?").bind(instance_id);
    let classes = all(tx.exec().all(sql).await?, rows::class)?;
    for class in classes {
        for index in class.schema.indexes() {
            drop_index(tx, class.id, &index).await?;
        }
    }
    Ok(())
}

/// Inserts the built-in `user_profile` class of a new instance.
pub(super) async fn create_user_profile_class(
    tx: &mut Tx,
    instance_id: i64,
    now: i64,
) -> sqlx::Result<()> {
    let sql = Sql::new(
        "INSERT INTO classes (instance_id, name, description, group_permissions, \
         other_permissions, created_at, updated_at) VALUES (?, ?, ?, 0, 1, ?, ?)",
    )
    .bind(instance_id)
    .bind(USER_PROFILE)
    .bind("Class that holds profiles for users.")
    .bind(now)
    .bind(now);
    tx.exec().run(sql).await?;
    Ok(())
}

/// Appends the condition of the classes `access` may read (docs/api.md §10.1).
pub(super) fn and_readable_classes(sql: Sql, access: &Access) -> Sql {
    match access {
        Access::Full => sql,
        Access::Anonymous => sql.push(" AND other_permissions >= 1"),
        Access::User { groups, .. } if groups.is_empty() => sql.push(" AND other_permissions >= 1"),
        Access::User { groups, .. } => {
            let ids: Vec<String> = groups.iter().map(i64::to_string).collect();
            sql.push(&format!(
                " AND (other_permissions >= 1 OR (group_permissions >= 1 AND group_id IN ({})))",
                ids.join(", ")
            ))
        }
    }
}

impl SqlStore {
    async fn class_for_update(
        &self,
        tx: &mut Tx,
        instance_id: i64,
        name: &str,
    ) -> StoreResult<Class> {
        let locking = match tx {
            // Not FOR UPDATE: object writes hold key-share locks on their class row while they
            // insert (the foreign key), and must not wait for a schema change, which then
            // waits for them.
            Tx::Postgres(_) => " FOR NO KEY UPDATE",
            Tx::Sqlite(_) => "",
        };
        let sql = Sql::new(format!(
            "SELECT * FROM classes WHERE instance_id = ? AND name = ?{locking}"
        ))
        .bind(instance_id)
        .bind(name);
        let row = tx.exec().one(sql).await.map_err(not_found)?;
        Ok(rows::class(&row)?)
    }
}

#[async_trait]
impl ObjectStore for SqlStore {
    async fn create_class(
        &self,
        instance_id: i64,
        new: NewClass,
        max_classes: u32,
    ) -> StoreResult<Class> {
        let mut tx = self.db.begin().await?;
        if max_classes > 0 {
            // Concurrent creates in one instance count one at a time.
            lock_row(&mut tx, "instances", instance_id).await?;
            let sql =
                Sql::new("SELECT COUNT(*) AS n FROM classes WHERE instance_id = ? AND name <> ?")
                    .bind(instance_id)
                    .bind(USER_PROFILE);
            if tx.exec().one(sql).await?.int("n")? >= i64::from(max_classes) {
                return Err(StoreError::LimitExceeded);
            }
        }
        let now = model::now_micros();
        let sql = Sql::new(
            "INSERT INTO classes (instance_id, name, description, schema, group_id, \
             group_permissions, other_permissions, metadata, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(instance_id)
        .bind(new.name)
        .bind(new.description)
        .bind(raw(new.schema.to_json().to_string()))
        .bind(new.group_id)
        .bind(new.group_permissions.code())
        .bind(new.other_permissions.code())
        .bind(raw(new.metadata.to_string()))
        .bind(now)
        .bind(now);
        let row = tx
            .exec()
            .one(sql)
            .await
            .map_err(missing_parent_or(conflict("name")))?;
        let class = rows::class(&row)?;
        let dialect = self.db.dialect();
        for index in class.schema.indexes() {
            create_index(&mut tx, dialect, class.id, &index).await?;
        }
        tx.commit().await?;
        Ok(class)
    }

    async fn class(&self, instance_id: i64, name: &str) -> StoreResult<Class> {
        let sql = Sql::new("SELECT * FROM classes WHERE instance_id = ? AND name = ?")
            .bind(instance_id)
            .bind(name);
        let row = self.db.read().one(sql).await.map_err(not_found)?;
        Ok(rows::class(&row)?)
    }

    async fn list_classes(
        &self,
        instance_id: i64,
        name_prefix: Option<&str>,
        access: &Access,
        page: IdPage,
    ) -> StoreResult<Vec<Class>> {
        let mut sql = Sql::new("SELECT * FROM classes WHERE instance_id = ?").bind(instance_id);
        if let Some(prefix) = name_prefix {
            sql = sql.and_prefix(self.db.dialect(), "name", prefix);
        }
        let sql = and_readable_classes(sql, access).and_page("id", page);
        all(self.db.read().all(sql).await?, rows::class)
    }

    async fn update_class(
        &self,
        instance_id: i64,
        name: &str,
        changes: ClassChanges,
    ) -> StoreResult<Class> {
        let mut tx = self.db.begin().await?;
        let current = self.class_for_update(&mut tx, instance_id, name).await?;
        if let Some(expected) = changes.expected_revision
            && expected != current.revision
        {
            return Err(StoreError::Refused(Refusal::RevisionMismatch {
                expected,
                actual: current.revision,
            }));
        }
        let schema = changes.schema.filter(|s| *s != current.schema);
        let (set_group, group_id) = match changes.group_id {
            Some(group) => (true, group),
            None => (false, None),
        };
        let sql = Sql::new(
            "UPDATE classes SET description = COALESCE(?, description), \
             schema = COALESCE(?, schema), revision = revision + ?, \
             group_id = CASE WHEN ? THEN ? ELSE group_id END, \
             group_permissions = COALESCE(?, group_permissions), \
             other_permissions = COALESCE(?, other_permissions), \
             metadata = COALESCE(?, metadata), updated_at = ? WHERE id = ? RETURNING *",
        )
        .bind(changes.description)
        .bind(raw_opt(schema.as_ref().map(|s| s.to_json().to_string())))
        .bind(i64::from(schema.is_some()))
        .bind(set_group)
        .bind(group_id)
        .bind(changes.group_permissions.map(|p| p.code()))
        .bind(changes.other_permissions.map(|p| p.code()))
        .bind(raw_opt(changes.metadata.map(|m| m.to_string())))
        .bind(model::now_micros())
        .bind(current.id);
        let row = tx
            .exec()
            .one(sql)
            .await
            .map_err(missing_parent_or(StoreError::Backend))?;
        let class = rows::class(&row)?;
        if let Some(schema) = &schema {
            self.change_schema(&mut tx, &current, schema).await?;
        }
        let change = Change::Class {
            instance_id,
            name: name.to_owned(),
        };
        self.commit_logged(tx, change).await?;
        Ok(class)
    }

    async fn delete_class(&self, instance_id: i64, name: &str) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        let class = self.class_for_update(&mut tx, instance_id, name).await?;
        for index in class.schema.indexes() {
            drop_index(&mut tx, class.id, &index).await?;
        }
        let sql = Sql::new("DELETE FROM classes WHERE id = ?").bind(class.id);
        touched_one(tx.exec().run(sql).await?)?;
        let change = Change::Class {
            instance_id,
            name: name.to_owned(),
        };
        self.commit_logged(tx, change).await
    }

    async fn count_objects(&self, class_ids: &[i64]) -> StoreResult<Vec<(i64, i64)>> {
        if class_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = class_ids.iter().map(i64::to_string).collect();
        let sql = Sql::new(format!(
            "SELECT class_id, COUNT(*) AS n FROM objects WHERE class_id IN ({}) \
             GROUP BY class_id",
            ids.join(", ")
        ));
        let counted = self.db.read().all(sql).await?;
        class_ids
            .iter()
            .map(|id| {
                let mut n = 0;
                for row in &counted {
                    if row.int("class_id")? == *id {
                        n = row.int("n")?;
                    }
                }
                Ok((*id, n))
            })
            .collect()
    }

    async fn object(
        &self,
        class: &crate::objects::Class,
        id: i64,
    ) -> StoreResult<crate::objects::DataObject> {
        super::objects::object(&self.db, class, id).await
    }

    async fn list_objects(
        &self,
        class: &crate::objects::Class,
        query: &crate::store::ObjectQuery,
    ) -> StoreResult<Vec<crate::objects::DataObject>> {
        super::objects::list(&self.db, class, query).await
    }

    async fn count_matching(
        &self,
        class: &crate::objects::Class,
        query: &crate::store::ObjectQuery,
    ) -> StoreResult<i64> {
        super::objects::count(&self.db, class, query).await
    }

    async fn write(&self, write: crate::store::Write) -> StoreResult<crate::store::Written> {
        super::objects::write(self, write).await
    }
}

impl SqlStore {
    /// Applies a schema change to the class's objects and indexes.
    async fn change_schema(
        &self,
        tx: &mut Tx,
        current: &Class,
        schema: &Schema,
    ) -> StoreResult<()> {
        let change = current.schema.change_to(schema);
        let dialect = self.db.dialect();
        for index in &change.drop_indexes {
            drop_index(tx, current.id, index).await?;
        }
        if !change.discarded.is_empty() {
            // Names are `[A-Za-z][A-Za-z0-9_]*`: safe inside the literals.
            let data = match dialect {
                Dialect::Sqlite => {
                    let paths: Vec<String> = change
                        .discarded
                        .iter()
                        .map(|f| format!("'$.{f}'"))
                        .collect();
                    format!("json_remove(data, {})", paths.join(", "))
                }
                Dialect::Postgres => {
                    let keys: Vec<String> = change
                        .discarded
                        .iter()
                        .map(|f| format!(" - '{f}'"))
                        .collect();
                    format!("data{}", keys.concat())
                }
            };
            let sql = Sql::new(format!(
                "UPDATE objects SET data = {data} WHERE class_id = ?"
            ))
            .bind(current.id);
            tx.exec().run(sql).await?;
        }
        for index in &change.create_indexes {
            create_index(tx, dialect, current.id, index).await?;
        }
        Ok(())
    }
}
