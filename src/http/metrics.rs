//! `GET /metrics` (docs/api.md §11.2) and the layer that counts every request by route template.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::metrics::CONTENT_TYPE;

/// The route label of requests no route matched (unknown paths, trimmed or not).
const UNMATCHED: &str = "unmatched";

/// `/metrics`, for the main listener or a listener of its own (`metrics_listen`).
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.config.metrics_token
        && !bearer_matches(&headers, &token.0)
    {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"herald metrics\""),
        );
        return response;
    }
    let text = app.metrics.render(app.store.as_ref(), &app.connections);
    let mut response = Response::new(Body::from(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether `Authorization` is `Bearer <token>`, compared in constant time.
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|presented| bool::from(presented.ct_eq(token.as_bytes())))
}

/// Counts each request under its method and route template once it is answered. Streams count
/// when their response starts (the upgrade, or the event stream's head).
pub async fn count_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    app.metrics.http_request(
        method,
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The method label: the methods the API has, and one word for any other.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "other",
    }
}
