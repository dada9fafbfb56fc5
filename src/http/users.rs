//! Users of an instance: CRUD, key reset, login and the current user (docs/api.md §7).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::accounts::{hash_password, verify_password};
use super::groups::group_json;
use super::input;
use super::object_input::{ObjectInput, read_object};
use super::objects::{NO_CHANNEL_PUBLISH, access_of, check_channel_publish};
use super::paging::{Paging, shape};
use super::request::{ApiRequest, Fields, PathParams};
use super::scope::{Caller, InstanceScope};
use super::{App, AppState};
use crate::error::{ApiError, FieldErrors, checked, json_response};
use crate::keys::{Key, KeyKind};
use crate::model;
use crate::model::Permission;
use crate::objects::render::object_json;
use crate::objects::{Access, Class, DataObject, USER_PROFILE};
use crate::passwords::Identity;
use crate::store::{IdPage, NewUser, StoreError, User, UserChanges, Write, Written};

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
    let profile_class = app.class(user.instance_id, USER_PROFILE).await?;
    let profile = object_json(instance, &profile_class, &user.profile);
    let base = format!("/v1.1/instances/{instance}/users/{}/", user.id);
    Ok(json!({
        "id": user.id,
        "username": user.username,
        "user_key": user.user_key,
        "groups": groups,
        "profile": profile,
        "links": {
            "self": base,
            "groups": format!("{base}groups/"),
            "reset-key": format!("{base}reset_key/"),
            "profile": format!(
                "/v1.1/instances/{instance}/classes/{USER_PROFILE}/objects/{}/",
                user.profile.id
            ),
        },
    }))
}

/// Reads the `profile` object of a user create or update (§7 "Profile"): the fields of an
/// object of `user_profile`, its owner aside (always the user). Errors nest under `profile`.
async fn read_profile(
    app: &App,
    class: &Class,
    access: &Access,
    fields: &Fields,
    current: Option<&DataObject>,
    errors: &mut FieldErrors,
) -> Result<ObjectInput, ApiError> {
    let mut profile = match input::json(fields, "profile") {
        Ok(Some(Value::Object(map))) => map,
        Ok(None | Some(Value::Null)) => Fields::new(),
        Ok(Some(_)) => {
            errors.add("profile", "Invalid data. Expected a dictionary.");
            Fields::new()
        }
        Err(message) => {
            errors.add("profile", message);
            Fields::new()
        }
    };
    profile.remove("owner");
    let mut nested = FieldErrors::default();
    let owner = current.and_then(|c| c.owner_id);
    let input = read_object(app, class, access, &profile, current, owner, &mut nested).await?;
    if let Err(ApiError::Fields(inner)) = nested.finish() {
        errors.add_nested("profile", inner);
    }
    Ok(input)
}

/// Who a profile is written as: managers have full access; anyone else (a user changing
/// themself, a sign-up key) acts as a user.
async fn profile_access(app: &App, caller: &Caller) -> Result<Access, ApiError> {
    Ok(match access_of(app, caller).await? {
        Some(Access::Full) => Access::Full,
        Some(user @ Access::User { .. }) => user,
        _ => Access::User {
            id: 0,
            groups: Vec::new(),
        },
    })
}

/// A user changing a profile that has a channel needs publish level on it (§10.3).
async fn check_profile_channel(
    app: &App,
    scope: &InstanceScope,
    profile: &DataObject,
) -> Result<(), ApiError> {
    check_channel_publish(
        app,
        &scope.caller,
        scope.instance.id,
        profile.channel.as_deref(),
    )
    .await
}

fn written_user(written: Written) -> Result<User, ApiError> {
    match written {
        Written::User(user) => Ok(user),
        _ => Err(ApiError::Internal(anyhow::anyhow!(
            "a user write returned no user"
        ))),
    }
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
    let profile_class = Class::clone(&*app.class(scope.instance.id, USER_PROFILE).await?);
    let access = profile_access(&app, &scope.caller).await?;
    let profile = read_profile(&app, &profile_class, &access, &fields, None, &mut errors).await?;
    errors.finish()?;
    if let Some((channel, _)) = &profile.channel
        && !scope.caller.is_manager()
        && channel.other_permissions < Permission::Publish
    {
        return Err(ApiError::Forbidden(NO_CHANNEL_PUBLISH));
    }
    let (username, password) = (checked(username)?, checked(password)?);
    let key = Key::generate(KeyKind::Account);
    let write = Write::CreateUser {
        instance_id: scope.instance.id,
        profile_class,
        new: NewUser {
            username,
            password_hash: hash_password(&app, password).await?,
            user_key: key.as_str().to_owned(),
            key_digest: key.digest(),
        },
        profile: profile.into_new(None),
        author: scope.caller.author_json(),
    };
    let user = written_user(app.store.write(write).await?)?;
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
    let profile_class = Class::clone(&*app.class(scope.instance.id, USER_PROFILE).await?);
    let access = profile_access(app, &scope.caller).await?;
    let profile = read_profile(
        app,
        &profile_class,
        &access,
        &fields,
        Some(&user.profile),
        &mut errors,
    )
    .await?;
    errors.finish()?;
    if !profile.changes.is_empty() {
        check_profile_channel(app, scope, &user.profile).await?;
    }
    let password_hash = match password {
        Some(password) => Some(hash_password(app, password).await?),
        None => None,
    };
    let write = Write::UpdateUser {
        instance_id: scope.instance.id,
        id: user.id,
        profile_class,
        changes: UserChanges {
            username,
            password_hash,
        },
        profile_channel_id: user.profile.channel_id,
        profile: profile.changes,
        author: scope.caller.author_json(),
    };
    let updated = written_user(app.store.write(write).await?)?;
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
    let username = model::normalize(&username);
    let user = match app
        .store
        .user_by_username(scope.instance.id, &username)
        .await
    {
        Ok(user) => Some(user),
        Err(StoreError::NotFound) => None,
        Err(err) => return Err(err.into()),
    };
    // An unknown username costs the same check as a wrong password.
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let identity = Identity::User {
        instance_id: scope.instance.id,
        username,
    };
    let matched = verify_password(&app, req.client_ip, identity, password, stored).await?;
    match user {
        None => Err(ApiError::Unauthorized("Invalid username.")),
        Some(_) if !matched => Err(ApiError::Unauthorized("Invalid password.")),
        Some(user) => Ok(json_response(
            StatusCode::OK,
            &user_json(&app, &scope.instance.name, &user).await?,
        )),
    }
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
