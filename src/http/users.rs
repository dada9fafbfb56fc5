//! Users of an instance: CRUD, key reset, login and the current user (SPEC §7).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::accounts::{hash_password, verify_password};
use super::groups::group_json;
use super::input;
use super::paging::{Paging, shape};
use super::request::{ApiRequest, Fields, PathParams};
use super::scope::{Caller, InstanceScope};
use super::{App, AppState};
use crate::cluster::Change;
use crate::error::{ApiError, FieldErrors, checked, json_response};
use crate::keys::{Key, KeyKind};
use crate::model;
use crate::store::{
    IdPage, NewUser, OBJECT_PERMISSIONS, ProfileChanges, StoreError, User, UserChanges,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.1/instances/{instance}/users",
            get(list_users).post(create_user),
        )
        .route(
            "/v1.1/instances/{instance}/users/{id}",
            get(get_user)
                .put(update_user)
                .patch(update_user)
                .delete(delete_user),
        )
        .route(
            "/v1.1/instances/{instance}/users/{id}/reset_key",
            post(reset_user_key),
        )
        .route("/v1.1/instances/{instance}/user/auth", post(log_in_user))
        .route(
            "/v1.1/instances/{instance}/user",
            get(get_current_user)
                .put(update_current_user)
                .patch(update_current_user),
        )
}

const USERNAME_MAX: usize = 64;
const PASSWORD_MAX: usize = 1024;
/// A user's groups are listed whole in its representation; a user has at most this many.
pub const MAX_GROUPS_PER_USER: u32 = 32;

/// The user as the API shows it (§7), with its groups and profile.
pub async fn user_json(app: &App, instance: &str, user: &User) -> Result<Value, ApiError> {
    let all = IdPage {
        after: None,
        before: None,
        descending: false,
        limit: i64::from(MAX_GROUPS_PER_USER),
    };
    let groups: Vec<Value> = app
        .store
        .groups_of_user(user.id, all)
        .await?
        .iter()
        .map(|g| group_json(instance, g))
        .collect();
    let base = format!("/v1.1/instances/{instance}/users/{}/", user.id);
    let profile = &user.profile;
    let profile_link = format!(
        "/v1.1/instances/{instance}/classes/user_profile/objects/{}/",
        profile.id
    );
    Ok(json!({
        "id": user.id,
        "username": user.username,
        "user_key": user.user_key,
        "groups": groups,
        "profile": {
            "id": profile.id,
            "owner": user.id,
            "owner_permissions": profile.owner_permissions,
            "group": profile.group_id,
            "group_permissions": profile.group_permissions,
            "other_permissions": profile.other_permissions,
            "channel": null,
            "channel_room": null,
            "revision": profile.revision,
            "created_at": model::format_timestamp(profile.created_at),
            "updated_at": model::format_timestamp(profile.updated_at),
            "links": {"self": profile_link, "owner": base},
        },
        "links": {
            "self": base,
            "groups": format!("{base}groups/"),
            "reset-key": format!("{base}reset_key/"),
            "profile": profile_link,
        },
    }))
}

fn object_permission(raw: &str) -> Option<String> {
    OBJECT_PERMISSIONS.contains(&raw).then(|| raw.to_owned())
}

/// Reads the `profile` object of a user create/update (§7 "Profile").
async fn profile_changes(
    app: &App,
    instance_id: i64,
    fields: &Fields,
    errors: &mut FieldErrors,
) -> Result<ProfileChanges, ApiError> {
    let profile = match input::json(fields, "profile") {
        Ok(None | Some(Value::Null)) => return Ok(ProfileChanges::default()),
        Ok(Some(Value::Object(map))) => map,
        Ok(Some(_)) => {
            errors.add("profile", "Invalid data. Expected a dictionary.");
            return Ok(ProfileChanges::default());
        }
        Err(message) => {
            errors.add("profile", message);
            return Ok(ProfileChanges::default());
        }
    };
    let mut nested = FieldErrors::default();
    let group_id = nested
        .check("group", input::primary_key(&profile, "group"))
        .flatten();
    if let Some(Some(id)) = group_id
        && app.store.group(instance_id, id).await.is_err()
    {
        nested.add(
            "group",
            format!("Invalid pk \"{id}\" - object does not exist."),
        );
    }
    let changes = ProfileChanges {
        owner_permissions: nested
            .check(
                "owner_permissions",
                input::choice(&profile, "owner_permissions", object_permission),
            )
            .flatten(),
        group_id,
        group_permissions: nested
            .check(
                "group_permissions",
                input::choice(&profile, "group_permissions", object_permission),
            )
            .flatten(),
        other_permissions: nested
            .check(
                "other_permissions",
                input::choice(&profile, "other_permissions", object_permission),
            )
            .flatten(),
    };
    if let Err(ApiError::Fields(inner)) = nested.finish() {
        errors.add_nested("profile", inner);
    }
    Ok(changes)
}

fn username_field(fields: &Fields, required: bool) -> Result<Option<String>, String> {
    match input::string(fields, "username", USERNAME_MAX, false)? {
        Some(name) => Ok(Some(model::normalize(&name))),
        None if required => Err(input::REQUIRED.into()),
        None => Ok(None),
    }
}

/// Instance scope for user endpoints: owners, trusted keys and users (others are refused).
async fn user_scope(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
) -> Result<InstanceScope, ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    match scope.caller {
        Caller::Owner(_) | Caller::Trusted { .. } | Caller::User { .. } => Ok(scope),
        _ => Err(ApiError::PermissionDenied),
    }
}

async fn list_users(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = user_scope(&app, &req, &params).await?;
    let paging = Paging::parse(&req.query, false)?;
    let name = &scope.instance.name;
    let users = match &scope.caller {
        // A user sees exactly themself.
        Caller::User { user, .. } if paging.admits(user.id) => {
            vec![app.store.user(scope.instance.id, user.id).await?]
        }
        Caller::User { .. } => Vec::new(),
        _ if paging.is_empty_request() => Vec::new(),
        _ => {
            app.store
                .list_users(
                    scope.instance.id,
                    req.query.get("username__startswith"),
                    paging.window(None),
                )
                .await?
        }
    };
    let mut rows = Vec::with_capacity(users.len());
    for user in &users {
        rows.push((
            user.id,
            shape(user_json(&app, name, user).await?, &req.query),
        ));
    }
    let path = format!("/v1.1/instances/{name}/users/");
    Ok(json_response(
        StatusCode::OK,
        &paging.envelope(rows, &path, &req.query),
    ))
}

async fn create_user(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.instance_scope(&req, &params.name("instance")).await?;
    let allowed = scope.caller.is_manager()
        || scope
            .caller
            .api_key()
            .is_some_and(|key| key.allow_user_create);
    if !allowed {
        return Err(ApiError::PermissionDenied);
    }
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let username = errors
        .check("username", username_field(&fields, true))
        .flatten();
    let password = errors.check(
        "password",
        input::required_string(&fields, "password", PASSWORD_MAX),
    );
    let profile = profile_changes(&app, scope.instance.id, &fields, &mut errors).await?;
    errors.finish()?;
    let (username, password) = (checked(username)?, checked(password)?);
    let key = Key::generate(KeyKind::Account);
    let user = app
        .store
        .create_user(
            scope.instance.id,
            NewUser {
                username,
                password_hash: hash_password(password).await?,
                user_key: key.as_str().to_owned(),
                key_digest: key.digest(),
                profile,
            },
        )
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &user_json(&app, &scope.instance.name, &user).await?,
    ))
}

/// The addressed user, if the caller may see it: managers see all, a user only themself.
async fn visible_user(app: &AppState, scope: &InstanceScope, id: i64) -> Result<User, ApiError> {
    if let Caller::User { user, .. } = &scope.caller
        && user.id != id
    {
        return Err(ApiError::NotFound);
    }
    Ok(app.store.user(scope.instance.id, id).await?)
}

async fn get_user(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = user_scope(&app, &req, &params).await?;
    let user = visible_user(&app, &scope, params.id("id")?).await?;
    let value = user_json(&app, &scope.instance.name, &user).await?;
    Ok(json_response(StatusCode::OK, &shape(value, &req.query)))
}

/// PUT requires `username`; PATCH changes only what is sent (§2.2).
async fn apply_user_update(
    app: &AppState,
    scope: &InstanceScope,
    req: &ApiRequest,
    user: &User,
) -> Result<Response, ApiError> {
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let is_put = req.method == axum::http::Method::PUT;
    let username = errors
        .check("username", username_field(&fields, is_put))
        .flatten();
    let password = errors
        .check(
            "password",
            input::string(&fields, "password", PASSWORD_MAX, false),
        )
        .flatten();
    let profile = profile_changes(app, scope.instance.id, &fields, &mut errors).await?;
    errors.finish()?;
    let password_hash = match password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let updated = app
        .store
        .update_user(
            scope.instance.id,
            user.id,
            UserChanges {
                username,
                password_hash,
                profile,
            },
        )
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &user_json(app, &scope.instance.name, &updated).await?,
    ))
}

async fn update_user(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = user_scope(&app, &req, &params).await?;
    let user = visible_user(&app, &scope, params.id("id")?).await?;
    apply_user_update(&app, &scope, &req, &user).await
}

async fn delete_user(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = user_scope(&app, &req, &params).await?;
    if !scope.caller.is_manager() {
        return Err(ApiError::PermissionDenied);
    }
    let id = params.id("id")?;
    app.store.delete_user(scope.instance.id, id).await?;
    app.changed(Change::User { id });
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reset_user_key(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = user_scope(&app, &req, &params).await?;
    let user = visible_user(&app, &scope, params.id("id")?).await?;
    let fresh = Key::generate(KeyKind::Account);
    let updated = app
        .store
        .set_user_key(scope.instance.id, user.id, fresh.as_str(), &fresh.digest())
        .await?;
    app.changed(Change::User { id: user.id });
    Ok(json_response(
        StatusCode::OK,
        &user_json(&app, &scope.instance.name, &updated).await?,
    ))
}

async fn log_in_user(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.instance_scope(&req, &params.name("instance")).await?;
    if matches!(scope.caller, Caller::OtherAccount) {
        return Err(ApiError::PermissionDenied);
    }
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let username = errors.check(
        "username",
        input::required_string(&fields, "username", USERNAME_MAX),
    );
    let password = errors.check(
        "password",
        input::required_string(&fields, "password", PASSWORD_MAX),
    );
    errors.finish()?;
    let (username, password) = (checked(username)?, checked(password)?);
    let user = match app
        .store
        .user_by_username(scope.instance.id, &model::normalize(&username))
        .await
    {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(ApiError::Unauthorized("Invalid username.")),
        Err(err) => return Err(err.into()),
    };
    if !verify_password(password, Some(user.password_hash.clone())).await? {
        return Err(ApiError::Unauthorized("Invalid password."));
    }
    Ok(json_response(
        StatusCode::OK,
        &user_json(&app, &scope.instance.name, &user).await?,
    ))
}

/// `/user/`: the user whose key came with the request (§7.6).
async fn current_user(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
) -> Result<(InstanceScope, User), ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    let Some(user) = scope.caller.user() else {
        return Err(ApiError::PermissionDenied);
    };
    let user = app.store.user(scope.instance.id, user.id).await?;
    Ok((scope, user))
}

async fn get_current_user(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (scope, user) = current_user(&app, &req, &params).await?;
    let value = user_json(&app, &scope.instance.name, &user).await?;
    Ok(json_response(StatusCode::OK, &shape(value, &req.query)))
}

async fn update_current_user(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (scope, user) = current_user(&app, &req, &params).await?;
    apply_user_update(&app, &scope, &req, &user).await
}
