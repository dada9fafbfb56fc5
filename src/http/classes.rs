//! Classes, read-only: the built-in `user_profile` class that every instance has (SPEC §5.2,
//! §10.1). Clients such as the Syncano Python SDK read its schema before they build a user's
//! profile. Creating and changing classes, and their data objects, arrive with data classes
//! (SPEC §10, Phase 2).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::paging::{Paging, shape};
use super::request::{ApiRequest, PathParams};
use super::scope::{Caller, InstanceScope};
use super::{App, AppState};
use crate::error::{ApiError, json_response};
use crate::model;

/// The one class that exists in this version.
const USER_PROFILE: &str = "user_profile";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1.1/instances/{instance}/classes", get(list_classes))
        .route("/v1.1/instances/{instance}/classes/{class}", get(get_class))
}

/// `user_profile` as the API shows it. Its `other_permissions` are `read` so that every key of
/// the instance can read the (empty) schema clients need to handle profiles; nobody creates or
/// deletes its objects directly.
async fn user_profile_json(app: &App, scope: &InstanceScope) -> Result<Value, ApiError> {
    let instance = &scope.instance;
    let base = format!("/v1.1/instances/{}/classes/{USER_PROFILE}/", instance.name);
    Ok(json!({
        "name": USER_PROFILE,
        "description": "Class that holds profiles for users.",
        "status": "ready",
        "revision": 1,
        "objects_count": app.store.count_users(instance.id).await?,
        "group": null,
        "group_permissions": "none",
        "other_permissions": "read",
        "metadata": {},
        "schema": [],
        "created_at": model::format_timestamp(instance.created_at),
        "updated_at": model::format_timestamp(instance.created_at),
        "links": {"self": base, "objects": format!("{base}objects/")},
    }))
}

async fn class_scope(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
) -> Result<InstanceScope, ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    if matches!(scope.caller, Caller::OtherAccount) {
        return Err(ApiError::PermissionDenied);
    }
    Ok(scope)
}

async fn list_classes(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = class_scope(&app, &req, &params).await?;
    let paging = Paging::parse(&req.query, false)?;
    // The built-in class sorts first; give it the id 1 for paging.
    let prefix_matches = req
        .query
        .get("name__startswith")
        .is_none_or(|prefix| USER_PROFILE.starts_with(prefix));
    let mut rows = Vec::new();
    if paging.admits(1) && prefix_matches {
        rows.push((1, shape(user_profile_json(&app, &scope).await?, &req.query)));
    }
    let path = format!("/v1.1/instances/{}/classes/", scope.instance.name);
    Ok(json_response(
        StatusCode::OK,
        &paging.envelope(rows, &path, &req.query),
    ))
}

async fn get_class(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = class_scope(&app, &req, &params).await?;
    if params.name("class") != USER_PROFILE {
        return Err(ApiError::NotFound);
    }
    let value = user_profile_json(&app, &scope).await?;
    Ok(json_response(StatusCode::OK, &shape(value, &req.query)))
}
