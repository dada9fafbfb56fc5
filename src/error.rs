//! The API's one error type and its Syncano-shaped bodies (docs/api.md §2.4).
//!
//! Handlers return `Result<_, ApiError>`; `IntoResponse` picks the status and one of the two body
//! shapes (`{"detail": ...}` or field -> list of messages). Internal causes are logged once here
//! and never reach the client.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::passwords::Refused;
use crate::store::{Refusal, StoreError};

pub const PERMISSION_DENIED: &str = "You do not have permission to perform this action.";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    /// A parent in a nested path is missing: "Instance was not found." and friends.
    #[error("{0} was not found")]
    ParentNotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed(Method),
    #[error("permission denied")]
    PermissionDenied,
    /// 403 with a specific detail, e.g. "Custom publish not allowed on this channel.".
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("no such api key")]
    NoSuchApiKey,
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// 400 `{"detail": ...}`.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("body over {0} bytes")]
    PayloadTooLarge(usize),
    #[error("unsupported media type")]
    UnsupportedMediaType(String),
    #[error("throttled")]
    Throttled { retry_after_secs: u64 },
    /// An identity locked out after too many failed password checks (docs/api.md §3.3).
    #[error("locked out")]
    LockedOut { retry_after_secs: u64 },
    /// Password work is at capacity (docs/api.md §3.3).
    #[error("busy")]
    Busy,
    /// 400 field errors: each field maps to a list of messages.
    #[error("invalid fields")]
    Fields(FieldErrors),
    /// 400 with one field mapped to a plain string (Syncano's shape for a few checks).
    #[error("invalid field {0}")]
    FieldString(&'static str, &'static str),
    /// As `FieldString`, with a message made at run time (`query`, `expected_revision`).
    #[error("invalid field {0}: {1}")]
    FieldText(&'static str, String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn field(name: &str, message: impl Into<String>) -> ApiError {
        let mut errors = FieldErrors::default();
        errors.add(name, message);
        ApiError::Fields(errors)
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Locked { retry_after_secs } => ApiError::LockedOut { retry_after_secs },
            Refused::Throttled { retry_after_secs } => ApiError::Throttled { retry_after_secs },
            Refused::Busy => ApiError::Busy,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict(field) => ApiError::field(field, "This field must be unique."),
            StoreError::Refused(Refusal::Forbidden) => ApiError::PermissionDenied,
            StoreError::Refused(Refusal::RevisionMismatch { expected, actual }) => {
                ApiError::FieldText(
                    "expected_revision",
                    format!("Revision mismatch. Expected {expected}, got {actual}."),
                )
            }
            StoreError::Refused(Refusal::Field(field, message)) => ApiError::field(&field, message),
            StoreError::Refused(Refusal::NonField(message)) => {
                ApiError::field("non_field_errors", message)
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

/// Field errors in the order they were found.
#[derive(Debug, Default)]
pub struct FieldErrors(Map<String, Value>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let entry = self
            .0
            .entry(field.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(message.into()));
        }
    }

    /// Records the errors of a nested object under `field`, e.g. `{"profile": {"group": [...]}}`.
    pub fn add_nested(&mut self, field: &str, inner: FieldErrors) {
        self.0.insert(field.to_owned(), Value::Object(inner.0));
    }

    /// Records the error of a field check, passing its value through.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.add(field, message);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing failed, the collected errors otherwise.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Fields(self))
        }
    }
}

/// A value whose check passed: once `FieldErrors::finish` returned `Ok`, every value read
/// through `FieldErrors::check` is present.
pub fn checked<T>(value: Option<T>) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a validated field is missing")))
}

pub fn detail(message: &str) -> Value {
    json!({ "detail": message })
}

/// A JSON response with the SPEC's content type.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    json_bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

pub fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// `1 second`, `2 seconds`.
fn seconds(n: u64) -> String {
    if n == 1 {
        "1 second".into()
    } else {
        format!("{n} seconds")
    }
}

/// A 429 with `Retry-After`.
fn too_many(message: &str, retry_after_secs: u64) -> Response {
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, &detail(message));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, detail("Not found.")),
            ApiError::ParentNotFound(kind) => (
                StatusCode::NOT_FOUND,
                detail(&format!("{kind} was not found.")),
            ),
            ApiError::MethodNotAllowed(method) => (
                StatusCode::METHOD_NOT_ALLOWED,
                detail(&format!("Method \"{method}\" not allowed.")),
            ),
            ApiError::PermissionDenied => (StatusCode::FORBIDDEN, detail(PERMISSION_DENIED)),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, detail(message)),
            ApiError::NoSuchApiKey => (StatusCode::FORBIDDEN, detail("No such API Key.")),
            ApiError::Unauthorized(message) => (StatusCode::UNAUTHORIZED, detail(message)),
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, detail(&message)),
            ApiError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                detail(&format!("Request size limit exceeded ({limit}).")),
            ),
            ApiError::UnsupportedMediaType(media_type) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail(&format!(
                    "Unsupported media type \"{media_type}\" in request."
                )),
            ),
            ApiError::Throttled { retry_after_secs } => {
                let message = format!(
                    "Request was throttled. Expected available in {}.",
                    seconds(retry_after_secs)
                );
                return too_many(&message, retry_after_secs);
            }
            ApiError::LockedOut { retry_after_secs } => {
                let message = format!(
                    "Too many failed logins. Try again in {}.",
                    seconds(retry_after_secs)
                );
                return too_many(&message, retry_after_secs);
            }
            ApiError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                detail("Server is busy. Try again."),
            ),
            ApiError::Fields(errors) => (StatusCode::BAD_REQUEST, Value::Object(errors.0)),
            ApiError::FieldString(field, message) => {
                (StatusCode::BAD_REQUEST, json!({ field: message }))
            }
            ApiError::FieldText(field, message) => {
                (StatusCode::BAD_REQUEST, json!({ field: message }))
            }
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    detail("Internal server error."),
                )
            }
        };
        json_response(status, &body)
    }
}
