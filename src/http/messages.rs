//! Publishing to a channel and reading its history (docs/api.md §9.5–§9.7).
//!
//! A publish is answered 201 only after the store committed the message; the hub hears about it
//! after the commit, never before (§9.11 "stored before told").

use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;

use super::channels::{channel_level, may_read_channels, may_subscribe};
use super::input;
use super::paging::{Paging, shape};
use super::request::{ApiRequest, PathParams, PublishRequest, Query};
use super::scope::Caller;
use super::{App, AppState};
use crate::error::{ApiError, json_bytes_response, json_response};
use crate::metrics::GapSeen;
use crate::model::{self, ChannelType, Permission};
use crate::render::message_json;
use crate::store::{Channel, Message, NewMessage};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.1/instances/{instance}/channels/{channel}/publish",
            post(publish_message),
        )
        .route(
            "/v1.1/instances/{instance}/channels/{channel}/history",
            get(list_history),
        )
        .route(
            "/v1.1/instances/{instance}/channels/{channel}/history/{id}",
            get(get_history_message),
        )
}

const ROOM_REQUIRED: &str = "This field is required for channels with separate rooms.";
const PUBLISHED_METADATA: &str = "{\"type\":\"message\"}";

fn self_link(instance: &str, channel: &str, id: i64) -> String {
    format!("/v1.1/instances/{instance}/channels/{channel}/history/{id}/")
}

/// The room a request addresses: normalised, required on `separate_rooms` channels and ignored
/// (always `None`) on `default` ones.
pub fn channel_room(channel: &Channel, raw: Option<&str>) -> Result<Option<String>, ApiError> {
    if channel.kind == ChannelType::Default {
        return Ok(None);
    }
    match model::parse_room(raw).map_err(|message| ApiError::field("room", message))? {
        Some(room) => Ok(Some(room)),
        None => Err(ApiError::FieldString("room", ROOM_REQUIRED)),
    }
}

/// The header that reports a retention gap on poll and history answers (docs/api.md §9.12).
pub const GAP_HEADER: &str = "x-herald-gap";

/// Messages retention removed after a reader's `last_id`: ids `from..=to` (docs/api.md §9.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub from: i64,
    pub to: i64,
}

impl Gap {
    /// `from-to`, the `X-Herald-Gap` value.
    pub fn header(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("{}-{}", self.from, self.to))
            .unwrap_or_else(|_| HeaderValue::from_static("0-0"))
    }

    /// `{"from":F,"to":T}`.
    pub fn json(&self) -> String {
        format!("{{\"from\":{},\"to\":{}}}", self.from, self.to)
    }
}

/// The gap a read after `last_id` of a channel room has, if retention removed messages it has
/// not seen.
pub async fn retention_gap(
    app: &App,
    channel: &Channel,
    room: Option<&str>,
    last_id: i64,
) -> Result<Option<Gap>, ApiError> {
    let pruned_through = app.store.pruned_through(channel.id, room).await?;
    Ok((last_id < pruned_through).then(|| Gap {
        from: last_id.saturating_add(1),
        to: pruned_through,
    }))
}

/// `last_id`: absent, or an integer ≥ 0.
pub fn parse_last_id(query: &Query) -> Result<Option<i64>, ApiError> {
    let Some(raw) = query.get("last_id") else {
        return Ok(None);
    };
    match raw.trim().parse::<i64>() {
        Ok(id) if id >= 0 => Ok(Some(id)),
        Ok(_) => Err(ApiError::field(
            "last_id",
            "Ensure this value is greater than or equal to 0.",
        )),
        Err(_) => Err(ApiError::field("last_id", "A valid integer is required.")),
    }
}

async fn publish_message(
    State(app): State<AppState>,
    params: PathParams,
    req: PublishRequest,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let scope = app.instance_scope(&req, &params.name("instance")).await?;
    if !matches!(
        scope.caller,
        Caller::Owner(_) | Caller::Trusted { .. } | Caller::User { .. }
    ) {
        return Err(ApiError::PermissionDenied);
    }
    let channel = app
        .channel(scope.instance.id, &params.name("channel"))
        .await?;
    if channel_level(&app, &scope.caller, &channel).await? < Permission::Publish {
        return Err(ApiError::PermissionDenied);
    }
    if !channel.custom_publish || channel.name == model::EVENTLOG_CHANNEL {
        return Err(ApiError::Forbidden(
            "Custom publish not allowed on this channel.",
        ));
    }
    let fields = req.fields().await?;
    let payload = match input::json(&fields, "payload")
        .map_err(|message| ApiError::field("payload", message))?
    {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(value @ Value::Object(_)) => value.to_string(),
        Some(_) => {
            return Err(ApiError::field(
                "payload",
                "Payload passed in invalid format.",
            ));
        }
    };
    let room = match fields.get("room") {
        None | Some(Value::Null) => None,
        Some(Value::String(room)) => Some(room.as_str()),
        Some(_) => return Err(ApiError::field("room", "Not a valid string.")),
    };
    let room = channel_room(&channel, room)?;
    let new = NewMessage {
        room,
        action: "custom",
        author: scope.caller.author_json(),
        metadata: PUBLISHED_METADATA.to_owned(),
        payload,
    };
    // The store answers after the commit and after the hub heard of the message; a client that
    // hangs up meanwhile cannot undo either.
    let message = app.store.publish(&channel, new).await?;
    app.metrics
        .publish_duration
        .observe(started.elapsed().as_secs_f64());
    let link = self_link(&scope.instance.name, &channel.name, message.id);
    Ok(json_bytes_response(
        StatusCode::CREATED,
        message_json(&message, Some(&link)),
    ))
}

/// A readable channel for history endpoints, whose missing channel is "Channel was not found.".
async fn readable_channel<const P: bool>(
    app: &AppState,
    req: &ApiRequest<P>,
    params: &PathParams,
) -> Result<(String, Channel), ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    if !may_read_channels(&scope.caller) {
        return Err(ApiError::PermissionDenied);
    }
    let channel = match app
        .channel(scope.instance.id, &params.name("channel"))
        .await
    {
        Err(ApiError::NotFound) => return Err(ApiError::ParentNotFound("Channel")),
        other => other?,
    };
    if !may_subscribe(app, &scope.caller, &channel).await? {
        return Err(ApiError::PermissionDenied);
    }
    Ok((scope.instance.name.clone(), (*channel).clone()))
}

fn history_row(instance: &str, channel: &str, message: &Message, query: &Query) -> (i64, Value) {
    let link = self_link(instance, channel, message.id);
    let value = serde_json::from_slice(&message_json(message, Some(&link))).unwrap_or_default();
    (message.id, shape(value, query))
}

async fn list_history(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (instance, channel) = readable_channel(&app, &req, &params).await?;
    let last_id = parse_last_id(&req.query)?;
    let paging = Paging::parse(&req.query, true)?;
    let room = channel_room(&channel, req.query.get("room"))?;
    // The gap is reported once per read: on the first page, not on pages reached by a cursor.
    let gap = match last_id {
        Some(last_id) if paging.last_pk().is_none() => {
            retention_gap(&app, &channel, room.as_deref(), last_id).await?
        }
        _ => None,
    };
    let mut rows = Vec::new();
    if !paging.is_empty_request() {
        let messages = app
            .store
            .history(channel.id, room.as_deref(), paging.window(last_id))
            .await?;
        rows = messages
            .iter()
            .map(|m| history_row(&instance, &channel.name, m, &req.query))
            .collect();
    }
    let path = format!(
        "/v1.1/instances/{instance}/channels/{}/history/",
        channel.name
    );
    let mut response = json_response(StatusCode::OK, &paging.envelope(rows, &path, &req.query));
    if let Some(gap) = gap {
        app.metrics.resume_gap(GapSeen::History);
        response.headers_mut().insert(GAP_HEADER, gap.header());
    }
    Ok(response)
}

async fn get_history_message(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let (instance, channel) = readable_channel(&app, &req, &params).await?;
    let id = params.id("id")?;
    let room = model::parse_room(req.query.get("room"))
        .map_err(|message| ApiError::field("room", message))?;
    // On default channels rooms do not exist, so a room filter cannot exclude anything.
    let room = room.filter(|_| channel.kind == ChannelType::SeparateRooms);
    let message = app.store.message(channel.id, id, room.as_deref()).await?;
    let (_, value) = history_row(&instance, &channel.name, &message, &req.query);
    Ok(json_response(StatusCode::OK, &value))
}
