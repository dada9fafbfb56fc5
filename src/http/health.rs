//! Health probes and the API roots (SPEC §2.3, §11.1).

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

/// Storage must answer; fan-out is reported but a lost Redis does not make the node unhealthy,
/// since it keeps serving and repairs from storage (SPEC §11.5).
async fn health(State(app): State<AppState>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let fanout = match &app.cluster {
        None => "local",
        Some(cluster) if cluster.connected() => "redis",
        Some(_) => "redis: disconnected, reconnecting",
    };
    let response = match app.store.ping().await {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"status": "ok", "version": version, "storage": "ok", "fanout": fanout}),
        ),
        Err(err) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "version": version,
                    "storage": format!("error: {err}"), "fanout": fanout}),
        ),
    };
    no_store(response)
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.into_response()
}
