//! Groups and memberships, seen from both sides (docs/api.md §8).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::input;
use super::paging::{Paging, shape};
use super::request::{ApiRequest, Fields, PathParams};
use super::scope::{Caller, InstanceScope};
use super::users::{MAX_GROUPS_PER_USER, user_json};
use super::{App, AppState};
use crate::error::{ApiError, FieldErrors, json_response};
use crate::model;
use crate::store::{Group, GroupChanges, StoreError, User};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.1/instances/{instance}/groups",
            get(list_groups).post(create_group),
        )
        .route(
            "/v1.1/instances/{instance}/groups/{id}",
            get(get_group)
                .put(update_group)
                .patch(update_group)
                .delete(delete_group),
        )
        .route(
            "/v1.1/instances/{instance}/groups/{id}/users",
            get(list_memberships::<GROUP_SIDE>).post(add_membership::<GROUP_SIDE>),
        )
        .route(
            "/v1.1/instances/{instance}/groups/{id}/users/{member}",
            get(get_membership::<GROUP_SIDE>).delete(remove_membership::<GROUP_SIDE>),
        )
        .route(
            "/v1.1/instances/{instance}/users/{id}/groups",
            get(list_memberships::<USER_SIDE>).post(add_membership::<USER_SIDE>),
        )
        .route(
            "/v1.1/instances/{instance}/users/{id}/groups/{member}",
            get(get_membership::<USER_SIDE>).delete(remove_membership::<USER_SIDE>),
        )
}

pub fn group_json(instance: &str, group: &Group) -> Value {
    let base = format!("/v1.1/instances/{instance}/groups/{}/", group.id);
    json!({
        "id": group.id,
        "name": group.name,
        "label": group.label,
        "description": group.description,
        "links": {"self": base, "users": format!("{base}users/")},
    })
}

fn group_changes(fields: &Fields) -> Result<GroupChanges, ApiError> {
    let mut errors = FieldErrors::default();
    let name = match fields.get("name") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(_) => match input::string(fields, "name", 64, true) {
            Ok(Some(raw)) if raw.is_empty() => Some(None),
            Ok(Some(raw)) => errors
                .check("name", model::parse_channel_name(&raw))
                .map(Some),
            Ok(None) => None,
            Err(message) => {
                errors.add("name", message);
                None
            }
        },
    };
    let changes = GroupChanges {
        name,
        label: errors
            .check("label", input::string(fields, "label", 64, true))
            .flatten(),
        description: errors
            .check(
                "description",
                input::string(fields, "description", 256, true),
            )
            .flatten(),
    };
    errors.finish()?;
    Ok(changes)
}

/// Groups are readable by the owner and every API key of the instance (§8.1).
async fn reading_scope(
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

async fn list_groups(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = reading_scope(&app, &req, &params).await?;
    let paging = Paging::parse(&req.query, false)?;
    let groups = if paging.is_empty_request() {
        Vec::new()
    } else {
        app.store
            .list_groups(
                scope.instance.id,
                req.query.get("label__startswith"),
                paging.window(None),
            )
            .await?
    };
    let name = &scope.instance.name;
    let rows = groups
        .iter()
        .map(|g| (g.id, shape(group_json(name, g), &req.query)))
        .collect();
    let path = format!("/v1.1/instances/{name}/groups/");
    Ok(json_response(
        StatusCode::OK,
        &paging.envelope(rows, &path, &req.query),
    ))
}

async fn create_group(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.instance_scope(&req, &params.name("instance")).await?;
    let allowed = scope.caller.is_manager()
        || scope
            .caller
            .api_key()
            .is_some_and(|key| key.allow_group_create);
    if !allowed {
        return Err(ApiError::PermissionDenied);
    }
    let changes = group_changes(&req.fields().await?)?;
    let group = app.store.create_group(scope.instance.id, changes).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &group_json(&scope.instance.name, &group),
    ))
}

async fn get_group(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = reading_scope(&app, &req, &params).await?;
    let group = app.store.group(scope.instance.id, params.id("id")?).await?;
    Ok(json_response(
        StatusCode::OK,
        &shape(group_json(&scope.instance.name, &group), &req.query),
    ))
}

async fn update_group(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.manager_scope(&req, &params.name("instance")).await?;
    let id = params.id("id")?;
    app.store.group(scope.instance.id, id).await?;
    let changes = group_changes(&req.fields().await?)?;
    let group = app
        .store
        .update_group(scope.instance.id, id, changes)
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &group_json(&scope.instance.name, &group),
    ))
}

async fn delete_group(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.manager_scope(&req, &params.name("instance")).await?;
    app.store
        .delete_group(scope.instance.id, params.id("id")?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which side of a membership a path starts from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `/groups/{id}/users/...`
    Group,
    /// `/users/{id}/groups/...`
    User,
}

/// `Side` as a const parameter, so one handler serves both views.
const GROUP_SIDE: bool = false;
const USER_SIDE: bool = true;

impl Side {
    fn from_const(user_side: bool) -> Side {
        if user_side { Side::User } else { Side::Group }
    }
}

/// The membership path's parent (user and/or group) with the caller's rights checked (§8.2):
/// managers see and change everything; a user only reads their own memberships.
struct Parent {
    scope: InstanceScope,
    group: Option<Group>,
    user: Option<User>,
}

async fn membership_parent(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
    side: Side,
    write: bool,
) -> Result<Parent, ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    match &scope.caller {
        caller if caller.is_manager() => {}
        Caller::User { user, .. } if !write => {
            if side == Side::User && params.id("id")? != user.id {
                return Err(ApiError::PermissionDenied);
            }
        }
        _ => return Err(ApiError::PermissionDenied),
    }
    let id = params.id("id").map_err(|_| parent_missing(side))?;
    let (group, user) = match side {
        Side::Group => match app.store.group(scope.instance.id, id).await {
            Ok(group) => (Some(group), None),
            Err(StoreError::NotFound) => return Err(parent_missing(side)),
            Err(err) => return Err(err.into()),
        },
        Side::User => match app.store.user(scope.instance.id, id).await {
            Ok(user) => (None, Some(user)),
            Err(StoreError::NotFound) => return Err(parent_missing(side)),
            Err(err) => return Err(err.into()),
        },
    };
    Ok(Parent { scope, group, user })
}

fn parent_missing(side: Side) -> ApiError {
    match side {
        Side::Group => ApiError::ParentNotFound("Group"),
        Side::User => ApiError::ParentNotFound("User"),
    }
}

async fn membership_json(
    app: &App,
    instance: &str,
    side: Side,
    group: &Group,
    user: &User,
) -> Result<Value, ApiError> {
    Ok(match side {
        Side::Group => json!({
            "user": user_json(app, instance, user).await?,
            "links": {"self": format!(
                "/v1.1/instances/{instance}/groups/{}/users/{}/", group.id, user.id)},
        }),
        Side::User => json!({
            "group": group_json(instance, group),
            "links": {"self": format!(
                "/v1.1/instances/{instance}/users/{}/groups/{}/", user.id, group.id)},
        }),
    })
}

async fn list_memberships<const SIDE: bool>(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let side = Side::from_const(SIDE);
    let parent = membership_parent(&app, &req, &params, side, false).await?;
    let paging = Paging::parse(&req.query, false)?;
    let instance = parent.scope.instance.name.clone();
    let mut rows = Vec::new();
    let path;
    match (&parent.group, &parent.user) {
        (Some(group), _) => {
            path = format!("/v1.1/instances/{instance}/groups/{}/users/", group.id);
            let members = match parent.scope.caller.user() {
                // A user sees only their own membership in a group's list.
                Some(me) if !parent.scope.caller.is_manager() => {
                    if paging.admits(me.id) && app.store.is_member(me.id, group.id).await? {
                        vec![app.store.user(parent.scope.instance.id, me.id).await?]
                    } else {
                        Vec::new()
                    }
                }
                _ if paging.is_empty_request() => Vec::new(),
                _ => {
                    app.store
                        .users_of_group(group.id, paging.window(None))
                        .await?
                }
            };
            for user in &members {
                let value = membership_json(&app, &instance, side, group, user).await?;
                rows.push((user.id, shape(value, &req.query)));
            }
        }
        (None, Some(user)) => {
            path = format!("/v1.1/instances/{instance}/users/{}/groups/", user.id);
            let groups = if paging.is_empty_request() {
                Vec::new()
            } else {
                app.store
                    .groups_of_user(user.id, paging.window(None))
                    .await?
            };
            for group in &groups {
                let value = membership_json(&app, &instance, side, group, user).await?;
                rows.push((group.id, shape(value, &req.query)));
            }
        }
        (None, None) => return Err(ApiError::NotFound),
    }
    Ok(json_response(
        StatusCode::OK,
        &paging.envelope(rows, &path, &req.query),
    ))
}

async fn add_membership<const SIDE: bool>(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let side = Side::from_const(SIDE);
    let parent = membership_parent(&app, &req, &params, side, true).await?;
    let instance_id = parent.scope.instance.id;
    let fields = req.fields().await?;
    let target_field = match side {
        Side::Group => "user",
        Side::User => "group",
    };
    let target = match input::primary_key(&fields, target_field) {
        Ok(Some(Some(id))) => id,
        Ok(_) => return Err(ApiError::field(target_field, input::REQUIRED)),
        Err(message) => return Err(ApiError::field(target_field, message)),
    };
    let invalid = || {
        ApiError::field(
            target_field,
            format!("Invalid pk \"{target}\" - object does not exist."),
        )
    };
    let (group, user) = match (parent.group, parent.user) {
        (Some(group), _) => {
            let user = app
                .store
                .user(instance_id, target)
                .await
                .map_err(|_| invalid())?;
            (group, user)
        }
        (None, Some(user)) => {
            let group = app
                .store
                .group(instance_id, target)
                .await
                .map_err(|_| invalid())?;
            (group, user)
        }
        (None, None) => return Err(ApiError::NotFound),
    };
    match app
        .store
        .add_membership(user.id, group.id, MAX_GROUPS_PER_USER)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::BadRequest(
                "User is already a part of that group.".into(),
            ));
        }
        Err(StoreError::LimitExceeded) => {
            return Err(ApiError::BadRequest(format!(
                "User's group count exceeded ({MAX_GROUPS_PER_USER})."
            )));
        }
        Err(err) => return Err(err.into()),
    }
    let instance = &parent.scope.instance.name;
    Ok(json_response(
        StatusCode::CREATED,
        &membership_json(&app, instance, side, &group, &user).await?,
    ))
}

/// The membership a detail path names; 404 when the two are not linked.
async fn membership(
    app: &AppState,
    parent: &Parent,
    params: &PathParams,
) -> Result<(Group, User), ApiError> {
    let other = params.id("member")?;
    let instance_id = parent.scope.instance.id;
    let (group, user) = match (&parent.group, &parent.user) {
        (Some(group), _) => (group.clone(), app.store.user(instance_id, other).await?),
        (None, Some(user)) => (app.store.group(instance_id, other).await?, user.clone()),
        (None, None) => return Err(ApiError::NotFound),
    };
    if let Caller::User { user: me, .. } = &parent.scope.caller
        && me.id != user.id
    {
        return Err(ApiError::NotFound);
    }
    if !app.store.is_member(user.id, group.id).await? {
        return Err(ApiError::NotFound);
    }
    Ok((group, user))
}

async fn get_membership<const SIDE: bool>(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let side = Side::from_const(SIDE);
    let parent = membership_parent(&app, &req, &params, side, false).await?;
    let (group, user) = membership(&app, &parent, &params).await?;
    let value = membership_json(&app, &parent.scope.instance.name, side, &group, &user).await?;
    Ok(json_response(StatusCode::OK, &shape(value, &req.query)))
}

async fn remove_membership<const SIDE: bool>(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let side = Side::from_const(SIDE);
    let parent = membership_parent(&app, &req, &params, side, true).await?;
    let (group, user) = membership(&app, &parent, &params).await?;
    app.store.remove_membership(user.id, group.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
