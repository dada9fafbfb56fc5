//! `GET /v1.1/openapi.json`: the OpenAPI 3.1 description of the API (docs/api.md §11.7), kept in
//! `docs/openapi.json` and compiled into the binary. `tests/api/openapi.rs` holds it to the router.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// The document, as checked in.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/v1.1/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    let mut response = (StatusCode::OK, DOCUMENT).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}
