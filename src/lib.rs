//! Herald: a self-hosted realtime Channels server speaking the Syncano REST API v1.1.
//!
//! `run` serves the API on a listener the caller bound (tests pass port 0) until `shutdown`
//! completes, then drains within `shutdown_grace`.

pub mod access;
pub mod accounts;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connections;
pub mod error;
pub mod http;
pub mod hub;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod objects;
pub mod passwords;
pub mod ratelimit;
pub mod render;
pub mod retention;
pub mod runtime;
pub mod store;
pub mod tail;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{DatabaseArgs, DatabaseUrl, ServeArgs, SqliteSynchronous};
use crate::store::{CommitListener, SqlStore, Store};

/// Opens the configured database (applying migrations) and returns it behind the `Store` trait.
/// `listener` hears about every committed message (the hub, when serving).
pub async fn open_store(
    args: &DatabaseArgs,
    listener: Arc<dyn CommitListener>,
) -> anyhow::Result<Arc<dyn Store>> {
    match &args.database_url {
        DatabaseUrl::Sqlite(path) => {
            let store = SqlStore::open_sqlite(
                path,
                args.sqlite_synchronous == SqliteSynchronous::Full,
                args.db_pool,
                listener,
            )
            .await?;
            Ok(Arc::new(store))
        }
        // `--sqlite-synchronous` has no meaning here: PostgreSQL commits are durable as the
        // server is configured.
        DatabaseUrl::Postgres(url) => Ok(Arc::new(
            SqlStore::open_postgres(url, args.db_pool, listener).await?,
        )),
    }
}

/// Opens the configured database for a short command (`herald account ...`) that may run beside
/// a server on the same database (docs/api.md §11.5): the server hears of its changes through the
/// access log within `access_check_interval`.
pub async fn open_store_beside_server(args: &DatabaseArgs) -> anyhow::Result<Arc<dyn Store>> {
    match &args.database_url {
        DatabaseUrl::Sqlite(path) => {
            let synchronous_full = args.sqlite_synchronous == SqliteSynchronous::Full;
            Ok(Arc::new(
                SqlStore::open_sqlite_beside_server(path, synchronous_full).await?,
            ))
        }
        DatabaseUrl::Postgres(_) => open_store(args, Arc::new(store::NoListener)).await,
    }
}

/// Serves Herald on `listener` until `shutdown` resolves.
pub async fn run(
    args: ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    runtime::Runtime::start(args, listener.local_addr()?)
        .await?
        .serve(listener, shutdown)
        .await
}
