//! Instances: list, create, detail, update, delete and rename (docs/api.md §5).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::accounts::account_json;
use super::input;
use super::paging::{Paging, shape};
use super::request::{ApiRequest, PathParams};
use super::scope::{Caller, RootCaller};
use super::{App, AppState};
use crate::error::{ApiError, FieldErrors, checked, json_response};
use crate::model;
use crate::store::{Instance, InstanceChanges, StoreError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1.1/instances", get(list_instances).post(create_instance))
        .route(
            "/v1.1/instances/{instance}",
            get(get_instance)
                .put(update_instance)
                .patch(update_instance)
                .delete(delete_instance),
        )
        .route("/v1.1/instances/{instance}/rename", post(rename_instance))
}

const DESCRIPTION_MAX: usize = 256;

async fn instance_json(app: &App, instance: &Instance, role: &str) -> Result<Value, ApiError> {
    let owner = app.store.account(instance.owner_id).await?;
    let base = format!("/v1.1/instances/{}/", instance.name);
    Ok(json!({
        "name": instance.name,
        "description": instance.description,
        "role": role,
        "owner": account_json(&owner, false),
        "metadata": instance.metadata,
        "created_at": model::format_timestamp(instance.created_at),
        "updated_at": model::format_timestamp(instance.updated_at),
        "links": {
            "self": base,
            "api_keys": format!("{base}api_keys/"),
            "users": format!("{base}users/"),
            "groups": format!("{base}groups/"),
            "channels": format!("{base}channels/"),
            "classes": format!("{base}classes/"),
            "rename": format!("{base}rename/"),
        },
    }))
}

fn role(caller: &Caller) -> &'static str {
    if caller.is_owner() { "full" } else { "api_key" }
}

/// Reads `description` and `metadata`, the writable fields of an instance.
fn instance_changes(fields: &super::request::Fields, errors: &mut FieldErrors) -> InstanceChanges {
    InstanceChanges {
        description: errors
            .check(
                "description",
                input::string(fields, "description", DESCRIPTION_MAX, true),
            )
            .flatten(),
        metadata: errors
            .check("metadata", input::metadata(fields, "metadata"))
            .flatten(),
    }
}

async fn list_instances(
    State(app): State<AppState>,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let paging = Paging::parse(&req.query, false)?;
    let rows = match app.root_caller(&req).await? {
        None => return Err(ApiError::PermissionDenied),
        Some(RootCaller::Account(account)) => {
            let mut rows = Vec::new();
            if !paging.is_empty_request() {
                let prefix = req.query.get("name__startswith");
                for instance in app
                    .store
                    .list_instances(account.id, prefix, paging.window(None))
                    .await?
                {
                    let value = instance_json(&app, &instance, "full").await?;
                    rows.push((instance.id, shape(value, &req.query)));
                }
            }
            rows
        }
        Some(RootCaller::ApiKey(key)) => {
            // An API key sees exactly its own instance, paged and filtered like any list.
            let instance = app.store.instance(key.instance_id).await?;
            let prefix_matches = req
                .query
                .get("name__startswith")
                .is_none_or(|prefix| instance.name.starts_with(prefix));
            if paging.admits(instance.id) && prefix_matches {
                let value = instance_json(&app, &instance, "api_key").await?;
                vec![(instance.id, shape(value, &req.query))]
            } else {
                Vec::new()
            }
        }
    };
    Ok(json_response(
        StatusCode::OK,
        &paging.envelope(rows, "/v1.1/instances/", &req.query),
    ))
}

async fn create_instance(
    State(app): State<AppState>,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let account = match app.root_caller(&req).await? {
        Some(RootCaller::Account(account)) => account,
        _ => return Err(ApiError::PermissionDenied),
    };
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let name = errors.check(
        "name",
        input::required_string(&fields, "name", 64).and_then(|n| model::parse_instance_name(&n)),
    );
    let changes = instance_changes(&fields, &mut errors);
    errors.finish()?;
    let name = checked(name)?;
    let limit = app.config.max_instances_per_account;
    let instance = match app
        .store
        .create_instance(account.id, &name, changes, limit)
        .await
    {
        Ok(instance) => instance,
        Err(StoreError::LimitExceeded) => {
            return Err(ApiError::BadRequest(format!(
                "Instance count exceeded ({limit})."
            )));
        }
        Err(err) => return Err(err.into()),
    };
    app.instances.remove(&instance.name);
    Ok(json_response(
        StatusCode::CREATED,
        &instance_json(&app, &instance, "full").await?,
    ))
}

/// The instance detail answers 404 `Not found.` both for a missing instance and for an account
/// key that does not own it: other accounts' instances are invisible (§5.3).
async fn detail_scope(
    app: &App,
    req: &ApiRequest,
    params: &PathParams,
) -> Result<super::scope::InstanceScope, ApiError> {
    match app.instance_scope(req, &params.name("instance")).await {
        Err(ApiError::ParentNotFound(_)) => Err(ApiError::NotFound),
        Ok(scope) if matches!(scope.caller, Caller::OtherAccount) => Err(ApiError::NotFound),
        other => other,
    }
}

async fn get_instance(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = detail_scope(&app, &req, &params).await?;
    let value = instance_json(&app, &scope.instance, role(&scope.caller)).await?;
    Ok(json_response(StatusCode::OK, &shape(value, &req.query)))
}

async fn update_instance(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = detail_scope(&app, &req, &params).await?;
    if !scope.caller.is_owner() {
        return Err(ApiError::PermissionDenied);
    }
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let changes = instance_changes(&fields, &mut errors);
    errors.finish()?;
    let instance = app
        .store
        .update_instance(scope.instance.id, changes)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &instance_json(&app, &instance, "full").await?,
    ))
}

async fn delete_instance(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = detail_scope(&app, &req, &params).await?;
    if !scope.caller.is_owner() {
        return Err(ApiError::PermissionDenied);
    }
    app.store.delete_instance(scope.instance.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rename_instance(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.instance_scope(&req, &params.name("instance")).await?;
    if !scope.caller.is_owner() {
        return Err(ApiError::PermissionDenied);
    }
    let fields = req.fields().await?;
    let new_name = input::required_string(&fields, "new_name", 64)
        .and_then(|n| model::parse_instance_name(&n))
        .map_err(|message| ApiError::field("new_name", message))?;
    let instance = app
        .store
        .rename_instance(scope.instance.id, &new_name)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &instance_json(&app, &instance, "full").await?,
    ))
}
