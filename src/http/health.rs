//! Health probes and the API roots (docs/api.md §2.3, §11.1).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;
use crate::error::json_response;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/v1.1", get(api_root))
        .route("/health", get(health))
        .route("/health/live", get(live))
}

async fn root() -> Response {
    json_response(StatusCode::OK, &json!({"links": {"v1.1": "/v1.1/"}}))
}

async fn api_root() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"links": {"instances": "/v1.1/instances/", "account": "/v1.1/account/"}}),
    )
}

async fn live() -> Response {
    no_store(json_response(StatusCode::OK, &json!({"status": "ok"})))
}

/// 200 when storage answers and, in cluster mode, the Redis subscription is up; otherwise 503
/// naming the failing part (docs/api.md §11.1). A node without Redis still serves and repairs from
/// storage, but it is not delivering other nodes' messages promptly, so it reports unhealthy.
async fn health(State(app): State<AppState>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let fanout = match &app.cluster {
        None => "local",
        Some(cluster) if cluster.connected() => "ok",
        Some(_) => "error: not connected to Redis; reconnecting",
    };
    // Keyless callers get no database error text (it can name hosts, users, paths): the log
    // has it.
    let storage = match app.store.ping().await {
        Ok(()) => "ok",
        Err(err) => {
            tracing::error!(error = %err, "health check: storage does not answer");
            "error"
        }
    };
    let healthy = storage == "ok" && !fanout.starts_with("error");
    let (status, word) = if healthy {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    no_store(json_response(
        status,
        &json!({"status": word, "version": version, "storage": storage, "fanout": fanout}),
    ))
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.into_response()
}
