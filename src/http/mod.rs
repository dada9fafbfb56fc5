//! The HTTP edge: shared state, the router, and the layers every response passes through
//! (JSON 404/405 bodies, OPTIONS, CORS; docs/api.md §2.3, §2.4, §2.9).

mod accounts;
mod api_keys;
mod channels;
mod classes;
pub mod console;
mod groups;
mod health;
mod input;
mod instances;
mod messages;
pub mod metrics;
mod object_input;
mod objects;
mod openapi;
mod paging;
mod poll;
mod request;
mod scope;
mod stream;
mod users;

pub use request::client_ip;

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::{Arc, Weak};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access;
use crate::auth::KeyCache;
use crate::cache::Cache;
use crate::cluster::{Change, Cluster};
use crate::config::{CorsOrigins, ServeArgs};
use crate::connections::Connections;
use crate::error::{ApiError, json_response};
use crate::hub::Hub;
use crate::metrics::{Limit, Metrics};
use crate::objects::Class;
use crate::passwords::{self, Passwords};
use crate::ratelimit::RateLimiter;
use crate::store::{Channel, Instance, Store};

pub use scope::Caller;

/// Everything a request handler may touch. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<App>);

pub struct App {
    pub config: ServeArgs,
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    pub keys: KeyCache,
    /// Tells open streams about changes that may end them.
    pub access: access::Notices,
    pub instances: Cache<String, Instance>,
    pub channels: Cache<(i64, String), Channel>,
    pub classes: Cache<(i64, String), Class>,
    pub anonymous_limit: RateLimiter<IpAddr>,
    pub instance_limit: RateLimiter<i64>,
    pub poll_limit: RateLimiter<i64>,
    /// Password hashing and checks, bounded and guarded against guessing (docs/api.md §3.3).
    pub passwords: Passwords,
    pub shutdown: CancellationToken,
    /// Long-lived tasks (streams) that shutdown waits for.
    pub tasks: TaskTracker,
    /// Cluster mode: the Redis relay that tells other nodes about changes.
    pub cluster: Option<Arc<Cluster>>,
    pub metrics: Arc<Metrics>,
    /// Open client connections and what was turned away (§2.10).
    pub connections: Arc<Connections>,
}

/// The running parts a server's handlers share (see `runtime`).
pub struct Parts {
    pub config: ServeArgs,
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    pub cluster: Option<Arc<Cluster>>,
    pub metrics: Arc<Metrics>,
    pub connections: Arc<Connections>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl AppState {
    /// A handle that does not keep the server's state alive (for the store's listener, which
    /// the state itself holds through the store).
    pub fn downgrade(&self) -> Weak<App> {
        Arc::downgrade(&self.0)
    }
}

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        let Parts {
            config,
            store,
            hub,
            cluster,
            metrics,
            connections,
            shutdown,
            tasks,
        } = parts;
        let refused = |limit| metrics.rate_limited(limit).clone();
        AppState(Arc::new(App {
            poll_limit: RateLimiter::new(config.rate_poll, refused(Limit::Poll)),
            anonymous_limit: RateLimiter::new(config.rate_anon, refused(Limit::Anonymous)),
            instance_limit: RateLimiter::new(config.rate_instance, refused(Limit::Instance)),
            passwords: Passwords::new(
                passwords::Settings {
                    max_failures: config.login_max_failures,
                    window: config.login_window,
                    per_ip_per_minute: config.rate_login,
                    concurrency: config.hash_concurrency(),
                },
                &metrics,
            ),
            config,
            store,
            hub,
            keys: KeyCache::default(),
            access: access::Notices::default(),
            instances: Cache::default(),
            channels: Cache::default(),
            classes: Cache::default(),
            shutdown,
            tasks,
            cluster,
            metrics,
            connections,
        }))
    }
}

impl App {
    /// Forgets what a change made stale here and tells the other nodes to do the same. The
    /// store calls it (through its listener, see `runtime`) right after the change commits and
    /// before the caller is answered, so the caller's next request (on any node, within a
    /// second) sees it.
    pub fn changed(&self, change: Change) {
        self.apply(&change);
        if let Some(cluster) = &self.cluster {
            cluster.announce(change);
        }
    }

    /// Applies a change made on this node, announced by another, or read from the access log.
    pub fn apply(&self, change: &Change) {
        match change {
            Change::Account { id } => self.keys.forget_account(*id),
            Change::ApiKey { id, .. } => self.keys.forget_api_key(*id),
            Change::User { id, .. } => self.keys.forget_user(*id),
            Change::Membership { .. } => {}
            Change::Channel { instance_id, name } => {
                self.channels.remove(&(*instance_id, name.clone()));
            }
            Change::ChannelDeleted {
                instance_id,
                name,
                channel_id,
            } => {
                self.channels.remove(&(*instance_id, name.clone()));
                self.hub.close_channel(*channel_id);
            }
            Change::Channels { instance_id } => {
                self.channels.retain(|(id, _), _| id != instance_id);
                self.classes.retain(|(id, _), _| id != instance_id);
            }
            Change::Class { instance_id, name } => {
                self.classes.remove(&(*instance_id, name.clone()));
            }
            Change::Instance { id } => {
                // Instances are cached by name, and the name may be the old one.
                self.instances.retain(|_, instance| instance.id != *id);
                self.channels
                    .retain(|(instance_id, _), _| instance_id != id);
            }
            Change::InstanceDeleted { id } => {
                self.instances.retain(|_, instance| instance.id != *id);
                self.channels
                    .retain(|(instance_id, _), _| instance_id != id);
                self.classes.retain(|(instance_id, _), _| instance_id != id);
                self.keys.forget_instance(*id);
                self.hub.close_instance(*id);
            }
            Change::Everything => {
                self.keys.forget_all();
                self.instances.retain(|_, _| false);
                self.channels.retain(|_, _| false);
                self.classes.retain(|_, _| false);
            }
        }
        self.access.notify(change.reach());
    }
}

/// The whole API with its layers. Trailing slashes are trimmed by the caller (see `lib.rs`)
/// before routing, so routes are declared without them.
pub fn router(state: AppState) -> Router {
    let metrics_here = state.config.metrics_listen.is_none();
    Router::new()
        .merge(health::router())
        .merge(if metrics_here {
            metrics::router()
        } else {
            Router::new()
        })
        .merge(accounts::router())
        .merge(instances::router())
        .merge(api_keys::router())
        .merge(channels::router())
        .merge(messages::router())
        .merge(poll::router())
        .merge(users::router())
        .merge(groups::router())
        .merge(classes::router())
        .merge(objects::router())
        .merge(openapi::router())
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors_and_options))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

const ALLOWED_HEADERS: &str = "accept, accept-encoding, authorization, content-type, dnt, origin, \
                               user-agent, x-csrftoken, x-requested-with, x-api-key, x-user-key, \
                               last-event-id";

/// Turns the router's bare 405s into the SPEC's JSON body and answers plain OPTIONS requests
/// with the route's `Allow` header (the router knows which methods a path has; OPTIONS itself is
/// never routed, so asking it yields exactly that 405 and its `Allow` header).
async fn json_errors_and_options(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    // The router adds its `Allow` header outside this layer, to whichever response we return.
    if method == Method::OPTIONS {
        json_response(
            StatusCode::OK,
            &json!({
                "renders": ["application/json"],
                "parses": ["application/json", "application/x-www-form-urlencoded",
                           "multipart/form-data"],
            }),
        )
    } else {
        ApiError::MethodNotAllowed(method).into_response()
    }
}

/// CORS on every response, and preflights answered without touching the API (docs/api.md §2.9).
async fn cors(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let is_preflight = request.method() == Method::OPTIONS
        && origin.is_some()
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if is_preflight {
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("DELETE, GET, OPTIONS, PATCH, POST, PUT"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        response
    } else {
        next.run(request).await
    };
    add_cors_headers(
        &app.config.cors_origins,
        origin.as_ref(),
        response.headers_mut(),
    );
    response
}

fn add_cors_headers(origins: &CorsOrigins, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    match origins {
        CorsOrigins::Any => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        CorsOrigins::List(list) => {
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
            if let Some(origin) = origin.filter(|o| {
                o.to_str()
                    .is_ok_and(|o| list.iter().any(|allowed| allowed == o))
            }) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            }
        }
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-Last-Id, X-Herald-Gap, Retry-After"),
    );
}
