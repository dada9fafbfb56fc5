//! Herald: a self-hosted realtime Channels server speaking the Syncano REST API v1.1.
//!
//! `run` serves the API on a listener the caller bound (tests pass port 0) until `shutdown`
//! completes, then drains within `shutdown_grace`.

pub mod access;
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
pub mod model;
pub mod objects;
pub mod passwords;
pub mod ratelimit;
pub mod render;
pub mod retention;
pub mod store;
pub mod tail;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::cluster::{Cluster, Redis};
use crate::config::{DatabaseArgs, DatabaseUrl, ServeArgs, SqliteSynchronous};
use crate::hub::Hub;
use crate::retention::Retention;
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
    let hub = Hub::new(args.stream_queue as usize);
    let token = CancellationToken::new();
    let (store, cluster) = match &args.redis_url {
        None => (
            open_store(&args.database, Arc::new(hub.clone())).await?,
            None,
        ),
        Some(url) => {
            if matches!(args.database.database_url, DatabaseUrl::Sqlite(_)) {
                anyhow::bail!(
                    "--redis-url (HERALD_REDIS_URL) is for cluster mode, which needs PostgreSQL \
                     storage: set --database-url postgres://..., or drop --redis-url to run \
                     one node on SQLite"
                );
            }
            // The store hears every commit on the cluster side, and holds the cluster's id and
            // secret that Redis is joined with: the store first, then Redis.
            let (cluster, relay) = Cluster::new(args.redis_queue as usize);
            let store = open_store(&args.database, cluster.clone()).await?;
            let identity = store.cluster_identity().await?;
            let redis = Redis {
                url,
                prefix: args.redis_prefix.as_deref(),
                identity: &identity,
            };
            let changes = relay
                .start(
                    redis,
                    hub.clone(),
                    store.clone(),
                    args.poll_timeout / 10,
                    token.clone(),
                )
                .await?;
            (store, Some((cluster, changes)))
        }
    };
    let local_addr = listener.local_addr()?;
    if let Some(created) = bootstrap::ensure_first_account(store.as_ref(), &args.admin).await? {
        println!("{}", created.banner(local_addr));
    }

    let tasks = TaskTracker::new();
    let retention = Retention {
        max_messages: args.history_max_messages,
        max_channel_messages: args.history_max_channel_messages,
        max_age: args.history_max_age(),
    };
    tasks.spawn(retention::run_pruner(
        store.clone(),
        retention,
        args.prune_interval,
        token.clone(),
    ));

    let grace = args.shutdown_grace;
    let limits = connections::Limits::from_args(&args);
    let (cluster, changes) = cluster.unzip();
    let access_check_interval = args.access_check_interval;
    let state = http::AppState::new(args, store, hub, token.clone(), tasks.clone(), cluster);
    tasks.spawn(access::follow_log(
        state.clone(),
        access_check_interval,
        token.clone(),
    ));
    if let Some(mut changes) = changes {
        // What other nodes changed: forget it here too.
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                state.apply(&change);
            }
        });
    }
    let app = NormalizePathLayer::trim_trailing_slash().layer(http::router(state));
    tracing::info!("listening on http://{local_addr}");

    // One deadline for the whole drain, set when shutdown begins.
    let deadline = std::sync::OnceLock::new();
    let deadline_after = |grace| *deadline.get_or_init(|| tokio::time::Instant::now() + grace);
    let mut server = tokio::spawn(connections::serve(
        listener,
        app,
        limits,
        Arc::new(connections::Connections::default()),
        token.clone(),
    ));
    tokio::select! {
        result = &mut server => {
            token.cancel();
            result?;
        }
        () = shutdown => {
            tracing::info!("shutting down; draining for up to {grace:?}");
            token.cancel();
            match tokio::time::timeout_at(deadline_after(grace), &mut server).await {
                Ok(result) => result?,
                Err(_) => {
                    tracing::warn!("shutdown grace elapsed; closing remaining connections");
                    server.abort();
                }
            }
        }
    }
    // Streams and the pruner watch the token; give them what is left of the grace period.
    tasks.close();
    if tokio::time::timeout_at(deadline_after(grace), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed with streams still closing");
    }
    Ok(())
}
