//! The HTTP edge: shared state, the router, and the layers every response passes through
//! (JSON 404/405 bodies, OPTIONS, CORS; SPEC §2.3, §2.4, §2.9).

mod accounts;
mod api_keys;
mod channels;
mod classes;
mod groups;
mod health;
mod input;
mod instances;
mod messages;
mod paging;
mod poll;
mod request;
mod scope;
mod stream;
mod users;

use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::KeyCache;
use crate::cache::Cache;
use crate::config::{CorsOrigins, ServeArgs};
use crate::error::{ApiError, json_response};
use crate::hub::Hub;
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
    pub instances: Cache<String, Instance>,
    pub channels: Cache<(i64, String), Channel>,
    pub anonymous_limit: RateLimiter<IpAddr>,
    pub instance_limit: RateLimiter<i64>,
    pub poll_limit: RateLimiter<i64>,
    pub shutdown: CancellationToken,
    /// Long-lived tasks (streams) that shutdown waits for.
    pub tasks: TaskTracker,
}

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    pub fn new(
        config: ServeArgs,
        store: Arc<dyn Store>,
        hub: Hub,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> AppState {
        AppState(Arc::new(App {
            poll_limit: RateLimiter::new(config.rate_poll),
            anonymous_limit: RateLimiter::new(config.rate_anon),
            instance_limit: RateLimiter::new(config.rate_instance),
            config,
            store,
            hub,
            keys: KeyCache::default(),
            instances: Cache::default(),
            channels: Cache::default(),
            shutdown,
            tasks,
        }))
    }
}

/// The whole API with its layers. Trailing slashes are trimmed by the caller (see `lib.rs`)
/// before routing, so routes are declared without them.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(accounts::router())
        .merge(instances::router())
        .merge(api_keys::router())
        .merge(channels::router())
        .merge(messages::router())
        .merge(poll::router())
        .merge(users::router())
        .merge(groups::router())
        .merge(classes::router())
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors_and_options))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
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

/// CORS on every response, and preflights answered without touching the API (SPEC §2.9).
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
        HeaderValue::from_static("X-Last-Id, Retry-After"),
    );
}
