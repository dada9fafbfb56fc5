//! A fresh PostgreSQL schema per test, so tests share one database without seeing each other.
//! Shared by the test binaries (`#[path]`-included); not a test target itself.

use sqlx::{Connection, PgConnection};

/// Where the PostgreSQL tests run: `HERALD_TEST_DATABASE_URL`, when set and not empty.
pub fn database_url() -> Option<String> {
    std::env::var("HERALD_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

pub struct PgSchema {
    base_url: String,
    pub name: String,
}

impl PgSchema {
    /// Creates `herald_t_<random hex>` in the database at `base_url`.
    pub async fn create(base_url: &str) -> PgSchema {
        let name = format!("herald_t_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect(base_url)
            .await
            .expect("connect to HERALD_TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        let _ = conn.close().await;
        PgSchema {
            base_url: base_url.to_owned(),
            name,
        }
    }

    /// The database URL whose connections use only this schema. Their application name is the
    /// schema's, so `drop` can end connections that a test left open.
    pub fn url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options=-c%20search_path%3D{name}&application_name={name}",
            self.base_url,
            name = self.name
        )
    }

    /// Ends the schema's connections and drops it with everything in it.
    pub async fn drop(self) {
        let mut conn = PgConnection::connect(&self.base_url)
            .await
            .expect("connect to HERALD_TEST_DATABASE_URL");
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .execute(&mut conn)
        .await;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .execute(&mut conn)
            .await
            .expect("drop test schema");
        let _ = conn.close().await;
    }
}
