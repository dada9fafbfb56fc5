//! The running server: one owner for what lives as long as it does (the store, the hub, the
//! cluster relay, the metrics registry, the connection counts) and for every background task it
//! starts, all on one task tracker so that shutdown waits for each of them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::access::{self, Change};
use crate::cluster::{Cluster, Redis};
use crate::config::{DatabaseUrl, ServeArgs};
use crate::connections::{self, Connections};
use crate::http::{self, App, AppState, Parts};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::retention::{self, Retention};
use crate::store::{CommitListener, Message};
use crate::{bootstrap, open_store};

pub struct Runtime {
    app: AppState,
}

impl Runtime {
    /// Opens storage (and joins the cluster on Redis in cluster mode), makes the first account
    /// of an empty database, announcing it for `local_addr`, and starts the background tasks:
    /// the pruner, the access-log follower and, in a cluster, the relay.
    pub async fn start(args: ServeArgs, local_addr: SocketAddr) -> anyhow::Result<Runtime> {
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(args.stream_queue as usize);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let events = |messages: Arc<dyn CommitListener>| {
            Arc::new(StoreEvents {
                messages,
                metrics: metrics.clone(),
                app: OnceLock::new(),
            })
        };
        let (store, events, cluster, changes) = match &args.redis_url {
            None => {
                let events = events(Arc::new(hub.clone()));
                let store = open_store(&args.database, events.clone()).await?;
                (store, events, None, None)
            }
            Some(url) => {
                if matches!(args.database.database_url, DatabaseUrl::Sqlite(_)) {
                    anyhow::bail!(
                        "--redis-url (HERALD_REDIS_URL) is for cluster mode, which needs \
                         PostgreSQL storage: set --database-url postgres://..., or drop \
                         --redis-url to run one node on SQLite"
                    );
                }
                // The store hears every commit on the cluster side, and holds the cluster's id
                // and secret that Redis is joined with: the store first, then Redis.
                let (cluster, relay) = Cluster::new(args.redis_queue as usize, &metrics);
                let events = events(cluster.clone());
                let store = open_store(&args.database, events.clone()).await?;
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
                        &tasks,
                        shutdown.clone(),
                    )
                    .await?;
                (store, events, Some(cluster), Some(changes))
            }
        };
        if let Some(created) = bootstrap::ensure_first_account(store.as_ref(), &args.admin).await? {
            println!("{}", created.banner(local_addr));
        }

        let retention = Retention {
            max_messages: args.history_max_messages,
            max_channel_messages: args.history_max_channel_messages,
            max_age: args.history_max_age(),
        };
        tasks.spawn(retention::run_pruner(
            store.clone(),
            retention,
            args.prune_interval,
            metrics.history_pruned.clone(),
            shutdown.clone(),
        ));
        let access_check_interval = args.access_check_interval;
        let app = AppState::new(Parts {
            config: args,
            store,
            hub,
            cluster,
            connections: Arc::new(Connections::new(&metrics)),
            metrics,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        });
        let _ = events.app.set(app.downgrade());
        tasks.spawn(access::follow_log(
            app.clone(),
            access_check_interval,
            shutdown.clone(),
        ));
        if let Some(changes) = changes {
            tasks.spawn(apply_changes(app.clone(), changes, shutdown));
        }
        Ok(Runtime { app })
    }

    /// Serves the API on `listener` (and `/metrics` on `metrics_listen` when set) until
    /// `shutdown` resolves, then drains within `shutdown_grace`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = self.app;
        let token = app.shutdown.clone();
        let tasks = app.tasks.clone();
        let grace = app.config.shutdown_grace;
        if let Some(addr) = app.config.metrics_listen {
            let metrics_listener = TcpListener::bind(addr).await.map_err(|err| {
                anyhow::anyhow!("cannot listen for metrics on {addr}: {err} (--metrics-listen)")
            })?;
            tracing::info!(
                "metrics on http://{}/metrics",
                metrics_listener.local_addr()?
            );
            let router = http::metrics::router().with_state(app.clone());
            let stop = token.clone().cancelled_owned();
            tasks.spawn(async move {
                if let Err(err) = axum::serve(metrics_listener, router)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::warn!("the metrics listener failed: {err}");
                }
            });
        }
        let local_addr = listener.local_addr()?;
        let limits = connections::Limits::from_args(&app.config);
        let connections = app.connections.clone();
        let cluster = app.cluster.clone();
        let router = NormalizePathLayer::trim_trailing_slash().layer(http::router(app));
        tracing::info!("listening on http://{local_addr}");

        // One deadline for the whole drain, set when shutdown begins.
        let deadline = std::sync::OnceLock::new();
        let deadline_after = |grace| *deadline.get_or_init(|| tokio::time::Instant::now() + grace);
        let mut server = tokio::spawn(connections::serve(
            listener,
            router,
            limits,
            connections,
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
        // No request can publish any more: the relay sends what is queued, then stops.
        if let Some(cluster) = cluster {
            cluster.close();
        }
        // Streams and the background tasks watch the token; give them what is left of the
        // grace period.
        tasks.close();
        if tokio::time::timeout_at(deadline_after(grace), tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace elapsed with streams still closing");
        }
        Ok(())
    }
}

/// What the store tells this server.
struct StoreEvents {
    /// Hears each stored message next: the hub (embedded), or the cluster relay, which tells
    /// the hub in order.
    messages: Arc<dyn CommitListener>,
    metrics: Arc<Metrics>,
    /// The server's state, once it exists (nothing is changed before).
    app: OnceLock<Weak<App>>,
}

impl CommitListener for StoreEvents {
    fn committed(&self, channel_id: i64, message: &Message) {
        self.metrics.published(message.action);
        self.messages.committed(channel_id, message);
    }

    /// Forgets here what the change made stale, closes the streams it ends, and tells the
    /// other nodes: every way of changing things (API, console) goes through the store, so
    /// none of them can forget to.
    fn changed(&self, change: &Change) {
        if let Some(app) = self.app.get().and_then(Weak::upgrade) {
            app.changed(change.clone());
        }
    }
}

/// What other nodes changed: forget it here too.
async fn apply_changes(
    app: AppState,
    mut changes: mpsc::UnboundedReceiver<Change>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.recv() => match change {
                Some(change) => app.apply(&change),
                None => return,
            },
        }
    }
}
