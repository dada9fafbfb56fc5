//! Channel management and the channel permission rules (docs/api.md §9.1–§9.4).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::input;
use super::paging::{Paging, shape};
use super::request::{ApiRequest, Fields, PathParams};
use super::scope::Caller;
use super::{App, AppState};
use crate::error::{ApiError, FieldErrors, checked, json_response};
use crate::model::{self, ChannelType, Permission};
use crate::store::{Channel, ChannelChanges, ChannelVisibility, NewChannel};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.1/instances/{instance}/channels",
            get(list_channels).post(create_channel),
        )
        .route(
            "/v1.1/instances/{instance}/channels/{channel}",
            get(get_channel)
                .put(update_channel)
                .patch(update_channel)
                .delete(delete_channel),
        )
}

/// The caller's permission level on `channel` (§9.3). Owners and trusted keys have every
/// level; a user has the higher of the channel's `other_permissions` and, when a member of the
/// channel's group, its `group_permissions`; anonymous readers at most subscribe.
pub async fn channel_level(
    app: &App,
    caller: &Caller,
    channel: &Channel,
) -> Result<Permission, ApiError> {
    Ok(match caller {
        Caller::Owner(_) | Caller::Trusted { .. } => Permission::Publish,
        Caller::User { user, .. } => {
            let mut level = channel.other_permissions;
            if let Some(group) = channel.group_id
                && channel.group_permissions > level
                && app.store.is_member(user.id, group).await?
            {
                level = channel.group_permissions;
            }
            level
        }
        Caller::AnonymousReader(_) => channel.other_permissions.min(Permission::Subscribe),
        Caller::Bare(_) | Caller::OtherAccount => Permission::None,
    })
}

/// Whether the caller may read, list, poll and see the history of `channel`.
pub async fn may_subscribe(
    app: &App,
    caller: &Caller,
    channel: &Channel,
) -> Result<bool, ApiError> {
    Ok(channel_level(app, caller, channel).await? >= Permission::Subscribe)
}

/// Callers who may use subscribe endpoints at all (check-order step 6); the per-channel
/// decision is [`may_subscribe`].
pub fn may_read_channels(caller: &Caller) -> bool {
    matches!(
        caller,
        Caller::Owner(_)
            | Caller::Trusted { .. }
            | Caller::User { .. }
            | Caller::AnonymousReader(_)
    )
}

pub fn channel_json(instance: &str, channel: &Channel) -> Value {
    let base = format!("/v1.1/instances/{instance}/channels/{}/", channel.name);
    let mut links = json!({
        "self": base,
        "poll": format!("{base}poll/"),
        "publish": format!("{base}publish/"),
        "history": format!("{base}history/"),
    });
    if let Some(group) = channel.group_id {
        links["group"] = json!(format!("/v1.1/instances/{instance}/groups/{group}/"));
    }
    json!({
        "name": channel.name,
        "description": channel.description,
        "type": channel.kind.as_str(),
        "group": channel.group_id,
        "group_permissions": channel.group_permissions.as_str(),
        "other_permissions": channel.other_permissions.as_str(),
        "custom_publish": channel.custom_publish,
        "created_at": model::format_timestamp(channel.created_at),
        "updated_at": model::format_timestamp(channel.updated_at),
        "links": links,
    })
}

/// Reads the writable fields shared by create and update. The group must exist in this instance.
async fn channel_changes(
    app: &AppState,
    instance_id: i64,
    fields: &Fields,
    errors: &mut FieldErrors,
) -> Result<ChannelChanges, ApiError> {
    let group_id = errors
        .check("group", input::primary_key(fields, "group"))
        .flatten();
    if let Some(Some(id)) = group_id
        && !app.store.group_exists(instance_id, id).await?
    {
        errors.add(
            "group",
            format!("Invalid pk \"{id}\" - object does not exist."),
        );
    }
    Ok(ChannelChanges {
        description: errors
            .check(
                "description",
                input::string(fields, "description", 256, true),
            )
            .flatten(),
        group_id,
        group_permissions: errors
            .check(
                "group_permissions",
                input::choice(fields, "group_permissions", Permission::parse),
            )
            .flatten(),
        other_permissions: errors
            .check(
                "other_permissions",
                input::choice(fields, "other_permissions", Permission::parse),
            )
            .flatten(),
        custom_publish: errors
            .check("custom_publish", input::boolean(fields, "custom_publish"))
            .flatten(),
    })
}

async fn list_channels(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.instance_scope(&req, &params.name("instance")).await?;
    if !may_read_channels(&scope.caller) {
        return Err(ApiError::PermissionDenied);
    }
    let paging = Paging::parse(&req.query, false)?;
    let name = &scope.instance.name;
    let mut rows = Vec::new();
    if !paging.is_empty_request() {
        // Each caller sees the channels it may subscribe to; the filter runs in the query so
        // pages stay full.
        let visibility = match &scope.caller {
            Caller::User { user, .. } => ChannelVisibility::User(user.id),
            caller if caller.is_manager() => ChannelVisibility::All,
            _ => ChannelVisibility::Others,
        };
        let channels = app
            .store
            .list_channels(
                scope.instance.id,
                req.query.get("name__startswith"),
                visibility,
                paging.window(None),
            )
            .await?;
        rows = channels
            .iter()
            .map(|c| (c.id, shape(channel_json(name, c), &req.query)))
            .collect();
    }
    let path = format!("/v1.1/instances/{name}/channels/");
    Ok(json_response(
        StatusCode::OK,
        &paging.envelope(rows, &path, &req.query),
    ))
}

async fn create_channel(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.manager_scope(&req, &params.name("instance")).await?;
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let name = errors.check(
        "name",
        input::required_string(&fields, "name", 64).and_then(|n| model::parse_channel_name(&n)),
    );
    let kind = errors
        .check("type", input::choice(&fields, "type", ChannelType::parse))
        .flatten();
    let changes = channel_changes(&app, scope.instance.id, &fields, &mut errors).await?;
    errors.finish()?;
    let name = checked(name)?;
    let new = NewChannel {
        name,
        kind: kind.unwrap_or(ChannelType::Default),
        description: changes.description.unwrap_or_default(),
        group_id: changes.group_id.flatten(),
        group_permissions: changes.group_permissions.unwrap_or(Permission::None),
        other_permissions: changes.other_permissions.unwrap_or(Permission::None),
        custom_publish: changes.custom_publish.unwrap_or(false),
    };
    let channel = app.store.create_channel(scope.instance.id, new).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &channel_json(&scope.instance.name, &channel),
    ))
}

async fn get_channel(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.instance_scope(&req, &params.name("instance")).await?;
    if !may_read_channels(&scope.caller) {
        return Err(ApiError::PermissionDenied);
    }
    let channel = app
        .channel(scope.instance.id, &params.name("channel"))
        .await?;
    if !may_subscribe(&app, &scope.caller, &channel).await? {
        return Err(ApiError::PermissionDenied);
    }
    Ok(json_response(
        StatusCode::OK,
        &shape(channel_json(&scope.instance.name, &channel), &req.query),
    ))
}

async fn update_channel(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.manager_scope(&req, &params.name("instance")).await?;
    let name = params.name("channel");
    let channel = app.channel(scope.instance.id, &name).await?;
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let changes = channel_changes(&app, scope.instance.id, &fields, &mut errors).await?;
    if channel.name == model::EVENTLOG_CHANNEL && changes.custom_publish == Some(true) {
        errors.add(
            "custom_publish",
            "Custom publish cannot be enabled on the eventlog channel.",
        );
    }
    errors.finish()?;
    let updated = app
        .store
        .update_channel(scope.instance.id, &name, changes)
        .await;
    let updated = updated?;
    Ok(json_response(
        StatusCode::OK,
        &channel_json(&scope.instance.name, &updated),
    ))
}

async fn delete_channel(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let scope = app.manager_scope(&req, &params.name("instance")).await?;
    let name = params.name("channel");
    let channel = app.channel(scope.instance.id, &name).await?;
    if model::is_builtin_channel(&channel.name) {
        return Err(ApiError::PermissionDenied);
    }
    let deleted = app.store.delete_channel(scope.instance.id, &name).await;
    app.channels.remove(&(scope.instance.id, name.clone()));
    deleted?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
