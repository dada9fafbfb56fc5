//! Instance API keys: list, create, detail, update, delete and reset (docs/api.md §6).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::AppState;
use super::input;
use super::paging::{Paging, shape};
use super::request::{ApiRequest, Fields, PathParams};
use super::scope::InstanceScope;
use crate::error::{ApiError, FieldErrors, json_response};
use crate::keys::{Key, KeyKind};
use crate::model;
use crate::store::{ApiKey, ApiKeyChanges};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.1/instances/{instance}/api_keys",
            get(list_api_keys).post(create_api_key),
        )
        .route(
            "/v1.1/instances/{instance}/api_keys/{id}",
            get(get_api_key)
                .put(update_api_key)
                .patch(update_api_key)
                .delete(delete_api_key),
        )
        .route(
            "/v1.1/instances/{instance}/api_keys/{id}/reset_key",
            post(reset_api_key),
        )
}

fn api_key_json(instance: &str, key: &ApiKey) -> Value {
    let base = format!("/v1.1/instances/{instance}/api_keys/{}/", key.id);
    json!({
        "id": key.id,
        "api_key": key.api_key,
        "description": key.description,
        "ignore_acl": key.ignore_acl,
        "allow_user_create": key.allow_user_create,
        "allow_group_create": key.allow_group_create,
        "allow_anonymous_read": key.allow_anonymous_read,
        "created_at": model::format_timestamp(key.created_at),
        "links": {"self": base, "reset_key": format!("{base}reset_key/")},
    })
}

fn api_key_changes(fields: &Fields) -> Result<ApiKeyChanges, ApiError> {
    let mut errors = FieldErrors::default();
    let changes = ApiKeyChanges {
        description: errors
            .check(
                "description",
                input::string(fields, "description", 256, true),
            )
            .flatten(),
        ignore_acl: errors
            .check("ignore_acl", input::boolean(fields, "ignore_acl"))
            .flatten(),
        allow_user_create: errors
            .check(
                "allow_user_create",
                input::boolean(fields, "allow_user_create"),
            )
            .flatten(),
        allow_group_create: errors
            .check(
                "allow_group_create",
                input::boolean(fields, "allow_group_create"),
            )
            .flatten(),
        allow_anonymous_read: errors
            .check(
                "allow_anonymous_read",
                input::boolean(fields, "allow_anonymous_read"),
            )
            .flatten(),
    };
    errors.finish()?;
    Ok(changes)
}

async fn scope(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
) -> Result<InstanceScope, ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    if scope.caller.is_owner() || scope.caller.api_key().is_some() {
        Ok(scope)
    } else {
        Err(ApiError::PermissionDenied)
    }
}

async fn list_api_keys(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = scope(&app, &req, &params).await?;
    let paging = Paging::parse(&req.query, false)?;
    let name = &scope.instance.name;
    let keys = match scope.caller.api_key() {
        // An API key sees only itself, paged like any list.
        Some(own) if paging.admits(own.id) => {
            vec![app.store.api_key(scope.instance.id, own.id).await?]
        }
        Some(_) => Vec::new(),
        None if paging.is_empty_request() => Vec::new(),
        None => {
            app.store
                .list_api_keys(scope.instance.id, paging.window(None))
                .await?
        }
    };
    let rows = keys
        .iter()
        .map(|key| (key.id, shape(api_key_json(name, key), &req.query)))
        .collect();
    let path = format!("/v1.1/instances/{name}/api_keys/");
    Ok(json_response(
        StatusCode::OK,
        &paging.envelope(rows, &path, &req.query),
    ))
}

async fn create_api_key(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = scope(&app, &req, &params).await?;
    if !scope.caller.is_owner() {
        return Err(ApiError::PermissionDenied);
    }
    let changes = api_key_changes(&req.fields().await?)?;
    let key = Key::generate(KeyKind::ApiKey);
    let created = app
        .store
        .create_api_key(scope.instance.id, key.as_str(), &key.digest(), changes)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &api_key_json(&scope.instance.name, &created),
    ))
}

/// The addressed key, if the caller may see it: owners see all, an API key only itself.
async fn visible_key(
    app: &AppState,
    scope: &InstanceScope,
    params: &PathParams,
) -> Result<ApiKey, ApiError> {
    let id = params.id("id")?;
    if scope.caller.api_key().is_some_and(|own| own.id != id) {
        return Err(ApiError::NotFound);
    }
    Ok(app.store.api_key(scope.instance.id, id).await?)
}

async fn get_api_key(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = scope(&app, &req, &params).await?;
    let key = visible_key(&app, &scope, &params).await?;
    Ok(json_response(
        StatusCode::OK,
        &shape(api_key_json(&scope.instance.name, &key), &req.query),
    ))
}

/// Writes are the owner's; the key must exist before its body is looked at (§2.4 order).
async fn owned_key(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
) -> Result<(InstanceScope, ApiKey), ApiError> {
    let scope = scope(app, req, params).await?;
    if !scope.caller.is_owner() {
        return Err(ApiError::PermissionDenied);
    }
    let key = visible_key(app, &scope, params).await?;
    Ok((scope, key))
}

async fn update_api_key(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (scope, key) = owned_key(&app, &req, &params).await?;
    let changes = api_key_changes(&req.fields().await?)?;
    let updated = app
        .store
        .update_api_key(scope.instance.id, key.id, changes)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &api_key_json(&scope.instance.name, &updated),
    ))
}

async fn delete_api_key(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (scope, key) = owned_key(&app, &req, &params).await?;
    app.store.delete_api_key(scope.instance.id, key.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reset_api_key(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (scope, key) = owned_key(&app, &req, &params).await?;
    let fresh = Key::generate(KeyKind::ApiKey);
    let updated = app
        .store
        .set_api_key_key(scope.instance.id, key.id, fresh.as_str(), &fresh.digest())
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &api_key_json(&scope.instance.name, &updated),
    ))
}
