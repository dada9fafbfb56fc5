//! `GET /channels/{channel}/poll/`: long-poll, and the door to WebSocket and SSE streams
//! (docs/api.md §9.8–§9.10). Every check runs before anything is upgraded or streamed, so failures are
//! ordinary HTTP responses.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::channels::{may_read_channels, may_subscribe};
use super::input;
use super::messages::{GAP_HEADER, channel_room, parse_last_id, retention_gap};
use super::request::Fields;
use super::request::{ApiRequest, PathParams};
use super::scope::Budget;
use super::stream::{self, StreamTarget};
use crate::config::CorsOrigins;
use crate::error::ApiError;
use crate::metrics::{self, GapSeen, Present};
use crate::render::message_json;
use crate::store::{IdPage, Message};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1.1/instances/{instance}/channels/{channel}/poll",
        get(poll_channel),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Poll,
    WebSocket,
    Sse,
}

async fn poll_channel(
    State(app): State<AppState>,
    params: PathParams,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    // Checking the caller needs far more future state than waiting does. Each phase is boxed
    // on its own, so a waiting poll (thousands may wait at once) holds only the waiting state.
    let (target, transport, last_id) = Box::pin(prepare(&app, &params, &req)).await?;
    match transport {
        Transport::Poll => {
            drop((req, upgrade, params));
            Box::pin(long_poll(&app, &target, last_id)).await
        }
        Transport::WebSocket => match upgrade {
            Ok(upgrade) => Ok(stream::websocket(app, target, last_id, upgrade)),
            Err(_) => Err(ApiError::BadRequest(
                "Expected WebSocket connection.".into(),
            )),
        },
        Transport::Sse => Ok(stream::sse(app, target, last_id)),
    }
}

/// Every check of a poll or stream request: who asks, for which channel room, from where.
async fn prepare(
    app: &AppState,
    params: &PathParams,
    req: &ApiRequest,
) -> Result<(StreamTarget, Transport, Option<i64>), ApiError> {
    let scope = app
        .instance_scope_charging(req, &params.name("instance"), Budget::Poll)
        .await?;
    if !may_read_channels(&scope.caller) {
        return Err(ApiError::PermissionDenied);
    }
    let channel = app
        .channel(scope.instance.id, &params.name("channel"))
        .await?;
    if !may_subscribe(app, &scope.caller, &channel).await? {
        return Err(ApiError::PermissionDenied);
    }
    let transport = match req.query.get("transport") {
        None | Some("poll") => Transport::Poll,
        Some("websocket") => Transport::WebSocket,
        Some("sse") => Transport::Sse,
        Some(other) => {
            return Err(ApiError::field(
                "transport",
                format!("\"{other}\" is not a valid choice."),
            ));
        }
    };
    let mut last_id = parse_last_id(&req.query)?;
    if transport == Transport::Sse
        && let Some(header) = req.headers.get("last-event-id")
    {
        // A reconnecting browser repeats the original URL but sends a newer Last-Event-ID.
        let parsed = header
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|id| *id >= 0);
        match parsed {
            Some(id) => last_id = Some(id),
            None => {
                return Err(ApiError::BadRequest("Invalid Last-Event-ID header.".into()));
            }
        }
    }
    let room = channel_room(&channel, req.query.get("room"))?;
    if transport != Transport::Poll && !origin_allowed(&app.config.cors_origins, req) {
        return Err(ApiError::Forbidden("Origin not allowed."));
    }
    // Only WebSocket clients opt in to the gap frame: Syncano-era clients would take a frame
    // without `id` for an error (docs/api.md §9.12).
    let gaps = transport == Transport::WebSocket
        && input::boolean(&query_fields(req, "gaps"), "gaps")
            .map_err(|message| ApiError::field("gaps", message))?
            .unwrap_or(false);
    let target = StreamTarget {
        instance: scope.instance.clone(),
        channel,
        room,
        key: scope.key,
        user_key: scope.user_key,
        gaps,
    };
    Ok((target, transport, last_id))
}

/// One query parameter as a body field, for the body-field readers of `input`.
fn query_fields(req: &ApiRequest, name: &str) -> Fields {
    req.query
        .get(name)
        .map(|value| (name.to_owned(), Value::String(value.to_owned())))
        .into_iter()
        .collect()
}

/// Streams refuse browsers from unlisted origins; requests without `Origin` are not browsers.
fn origin_allowed(origins: &CorsOrigins, req: &ApiRequest) -> bool {
    match (origins, req.header("origin")) {
        (CorsOrigins::Any, _) | (_, None) => true,
        (CorsOrigins::List(list), Some(origin)) => list.iter().any(|allowed| allowed == origin),
    }
}

/// The oldest retained message of the room after `last_id`.
async fn first_after(
    app: &AppState,
    target: &StreamTarget,
    last_id: i64,
) -> Result<Option<Message>, ApiError> {
    let page = IdPage {
        after: Some(last_id),
        before: None,
        descending: false,
        limit: 1,
    };
    let mut found = app
        .store
        .history(target.channel.id, target.room.as_deref(), page)
        .await?;
    Ok(found.pop())
}

fn message_response(id: i64, json: Bytes) -> Response {
    let mut response = Response::new(Body::from(json));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert("x-last-id", HeaderValue::from(id));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// §9.8: answer with the oldest message after `last_id`, or wait for the next one; either
/// answer says when retention removed messages after `last_id` (§9.12).
async fn long_poll(
    app: &AppState,
    target: &StreamTarget,
    last_id: Option<i64>,
) -> Result<Response, ApiError> {
    let gap = match last_id {
        Some(last_id) => {
            retention_gap(app, &target.channel, target.room.as_deref(), last_id).await?
        }
        None => None,
    };
    let mut response = wait_for_message(app, target, last_id).await?;
    if response.status() == StatusCode::OK {
        app.metrics.delivered.get(metrics::Transport::Poll).inc();
    }
    if let Some(gap) = gap {
        app.metrics.resume_gap(GapSeen::Poll);
        response.headers_mut().insert(GAP_HEADER, gap.header());
    }
    Ok(response)
}

async fn wait_for_message(
    app: &AppState,
    target: &StreamTarget,
    last_id: Option<i64>,
) -> Result<Response, ApiError> {
    // Subscribe before looking at storage: a message committed in between is then in both
    // places, never in neither.
    let mut subscription = app
        .hub
        .subscribe(target.instance.id, &target.channel, target.room.clone())
        .await?;
    if let Some(last_id) = last_id
        && let Some(message) = first_after(app, target, last_id).await?
    {
        return Ok(message_response(
            message.id,
            Bytes::from(message_json(&message, None)),
        ));
    }
    let timeout = tokio::time::sleep(app.config.poll_timeout);
    tokio::pin!(timeout);
    let _waiting = Present::new(app.metrics.subscribers.get(metrics::Transport::Poll));
    loop {
        tokio::select! {
            () = app.shutdown.cancelled() => return Ok(StatusCode::NO_CONTENT.into_response()),
            () = &mut timeout => return Ok(StatusCode::NO_CONTENT.into_response()),
            delivery = subscription.recv() => match delivery {
                Ok(delivery) if last_id.is_none_or(|last| delivery.id > last) => {
                    return Ok(message_response(delivery.id, delivery.json.clone()));
                }
                Ok(_) => {}
                // Deliveries were skipped while this waiter was not polled. With a position,
                // storage has the oldest one; without, the oldest still buffered is next.
                Err(RecvError::Lagged(_)) => {
                    if let Some(last_id) = last_id
                        && let Some(message) = first_after(app, target, last_id).await?
                    {
                        return Ok(message_response(
                            message.id,
                            Bytes::from(message_json(&message, None)),
                        ));
                    }
                }
                Err(RecvError::Closed) => return Err(ApiError::NotFound),
            },
        }
    }
}
