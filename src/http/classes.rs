//! Classes (docs/api.md §10.1, §10.2, §10.9): the owner manages them; API keys read those their
//! caller may read. Every instance has the built-in class `user_profile` (its users' profiles),
//! which can be changed but not deleted.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::input;
use super::objects::access_of;
use super::paging::{Paging, shape};
use super::request::{ApiRequest, Fields, PathParams};
use super::scope::{Caller, InstanceScope};
use super::{App, AppState};
use crate::error::{ApiError, FieldErrors, checked, json_response};
use crate::model;
use crate::objects::render::class_json;
use crate::objects::schema::Schema;
use crate::objects::{Access, Class, ClassPermission};
use crate::store::{ClassChanges, NewClass, StoreError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.1/instances/{instance}/classes",
            get(list_classes).post(create_class),
        )
        .route(
            "/v1.1/instances/{instance}/classes/{class}",
            get(get_class)
                .put(update_class)
                .patch(update_class)
                .delete(delete_class),
        )
}

const DESCRIPTION_MAX: usize = 256;

/// Callers that read classes, and what they see: API keys without `ignore_acl` see only
/// classes others (or, for users, their groups) may read.
async fn reader_scope(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
) -> Result<(InstanceScope, Access), ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    let access = match &scope.caller {
        Caller::OtherAccount => return Err(ApiError::PermissionDenied),
        // A bare key reads classes as anonymous readers do (docs/api.md §3.4).
        Caller::Bare(_) => Access::Anonymous,
        caller => access_of(app, caller)
            .await?
            .ok_or(ApiError::PermissionDenied)?,
    };
    Ok((scope, access))
}

/// Class writes are the owner's alone.
async fn owner_scope(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
) -> Result<InstanceScope, ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    if !scope.caller.is_owner() {
        return Err(ApiError::PermissionDenied);
    }
    Ok(scope)
}

async fn class_value(app: &App, instance: &str, class: &Class) -> Result<Value, ApiError> {
    let counts = app.store.count_objects(&[class.id]).await?;
    let count = counts.first().map_or(0, |(_, n)| *n);
    Ok(class_json(instance, class, count))
}

fn class_permission(raw: &str) -> Option<ClassPermission> {
    ClassPermission::parse(raw)
}

/// Reads a class's writable fields (the name is read by `create_class`).
async fn class_changes(
    app: &App,
    instance_id: i64,
    fields: &Fields,
    errors: &mut FieldErrors,
) -> Result<ClassChanges, ApiError> {
    let mut changes = ClassChanges {
        description: errors
            .check(
                "description",
                input::string(fields, "description", DESCRIPTION_MAX, true),
            )
            .flatten(),
        metadata: errors
            .check("metadata", input::metadata(fields, "metadata"))
            .flatten(),
        group_permissions: errors
            .check(
                "group_permissions",
                input::choice(fields, "group_permissions", class_permission),
            )
            .flatten(),
        other_permissions: errors
            .check(
                "other_permissions",
                input::choice(fields, "other_permissions", class_permission),
            )
            .flatten(),
        expected_revision: errors
            .check(
                "expected_revision",
                input::integer(fields, "expected_revision"),
            )
            .flatten(),
        ..ClassChanges::default()
    };
    changes.group_id = errors
        .check("group", input::primary_key(fields, "group"))
        .flatten();
    if let Some(Some(id)) = changes.group_id
        && !app.store.group_exists(instance_id, id).await?
    {
        errors.add(
            "group",
            format!("Invalid pk \"{id}\" - object does not exist."),
        );
    }
    match input::json(fields, "schema") {
        Ok(None) => {}
        Ok(Some(Value::Null)) => errors.add("schema", input::NOT_NULL),
        Ok(Some(raw)) => {
            // Targets name classes of this instance.
            let names: Vec<String> = all_class_names(app, instance_id).await?;
            match Schema::parse(&raw, &|name| names.iter().any(|n| n == name)) {
                Ok(schema) => changes.schema = Some(schema),
                Err(message) => errors.add("schema", message),
            }
        }
        Err(message) => errors.add("schema", message),
    }
    Ok(changes)
}

async fn all_class_names(app: &App, instance_id: i64) -> Result<Vec<String>, ApiError> {
    let mut names = Vec::new();
    let mut after = None;
    loop {
        let page = crate::store::IdPage {
            after,
            before: None,
            descending: false,
            limit: 100,
        };
        let classes = app
            .store
            .list_classes(instance_id, None, &Access::Full, page)
            .await?;
        let done = classes.len() < 100;
        after = classes.last().map(|c| c.id);
        names.extend(classes.into_iter().map(|c| c.name));
        if done {
            return Ok(names);
        }
    }
}

async fn list_classes(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (scope, access) = reader_scope(&app, &req, &params).await?;
    let paging = Paging::parse(&req.query, false)?;
    let classes = if paging.size() == 0 {
        Vec::new()
    } else {
        app.store
            .list_classes(
                scope.instance.id,
                req.query.get("name__startswith"),
                &access,
                paging.window(None),
            )
            .await?
    };
    let ids: Vec<i64> = classes.iter().map(|c| c.id).collect();
    let counts = app.store.count_objects(&ids).await?;
    let instance = &scope.instance.name;
    let rows = classes
        .iter()
        .map(|class| {
            let count = counts
                .iter()
                .find(|(id, _)| *id == class.id)
                .map_or(0, |(_, n)| *n);
            (
                class.id,
                shape(class_json(instance, class, count), &req.query),
            )
        })
        .collect();
    let path = format!("/v1.1/instances/{instance}/classes/");
    Ok(json_response(
        StatusCode::OK,
        &paging.envelope(rows, &path, &req.query),
    ))
}

async fn create_class(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = owner_scope(&app, &req, &params).await?;
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let name = match input::required_string(&fields, "name", 64) {
        Ok(raw) => errors.check("name", model::parse_class_name(&raw)),
        Err(message) => {
            errors.add("name", message);
            None
        }
    };
    let changes = class_changes(&app, scope.instance.id, &fields, &mut errors).await?;
    errors.finish()?;
    let limit = app.config.max_classes_per_instance;
    let new = NewClass {
        name: checked(name)?,
        description: changes.description.unwrap_or_default(),
        schema: changes.schema.unwrap_or_default(),
        group_id: changes.group_id.flatten(),
        group_permissions: changes
            .group_permissions
            .unwrap_or(ClassPermission::CreateObjects),
        other_permissions: changes
            .other_permissions
            .unwrap_or(ClassPermission::CreateObjects),
        metadata: changes
            .metadata
            .unwrap_or_else(|| Value::Object(Default::default())),
    };
    let class = match app.store.create_class(scope.instance.id, new, limit).await {
        Err(StoreError::LimitExceeded) => {
            return Err(ApiError::BadRequest(format!(
                "Class count exceeded ({limit})."
            )));
        }
        other => other?,
    };
    let value = class_value(&app, &scope.instance.name, &class).await?;
    Ok(json_response(StatusCode::CREATED, &value))
}

async fn get_class(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (scope, access) = reader_scope(&app, &req, &params).await?;
    let class = app
        .store
        .class(scope.instance.id, &params.name("class"))
        .await?;
    // A class the caller may not read looks missing (docs/api.md §10.9).
    if access.class_level(&class) < ClassPermission::Read {
        return Err(ApiError::NotFound);
    }
    let value = class_value(&app, &scope.instance.name, &class).await?;
    Ok(json_response(StatusCode::OK, &shape(value, &req.query)))
}

async fn update_class(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = owner_scope(&app, &req, &params).await?;
    let name = params.name("class");
    // The class must exist before its body is judged (check order, docs/api.md §2.4).
    app.store.class(scope.instance.id, &name).await?;
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let changes = class_changes(&app, scope.instance.id, &fields, &mut errors).await?;
    errors.finish()?;
    let class = app
        .store
        .update_class(scope.instance.id, &name, changes)
        .await?;
    let value = class_value(&app, &scope.instance.name, &class).await?;
    Ok(json_response(StatusCode::OK, &value))
}

async fn delete_class(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = owner_scope(&app, &req, &params).await?;
    let class = app
        .store
        .class(scope.instance.id, &params.name("class"))
        .await?;
    if class.is_user_profile() {
        return Err(ApiError::PermissionDenied);
    }
    app.store
        .delete_class(scope.instance.id, &class.name)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
