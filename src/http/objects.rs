//! Data objects of a class (docs/api.md §10.3, §10.4, §10.9): list with `query`, `order_by` and
//! counts, create, read, update (detail `POST` or `PATCH`; `PUT` is 405) and delete.
//!
//! Every write goes through `Store::write`, which stores the change and, when the object has a
//! channel, its change message in one transaction.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::channels::channel_level;
use super::object_input::read_object;
use super::paging::{Paging, shape};
use super::request::{ApiRequest, PathParams};
use super::scope::{Caller, InstanceScope};
use super::users::MAX_GROUPS_PER_USER;
use super::{App, AppState};
use crate::error::{ApiError, FieldErrors, json_response};
use crate::model::Permission;
use crate::objects::query::{Builtin, Field, Kind, Order, Scalar, parse_order_by, parse_queries};
use crate::objects::render::object_json;
use crate::objects::{Access, Class, ClassPermission, DataObject, ObjectPermission};
use crate::store::{Cursor, IdPage, ObjectQuery, Write, Written};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1.1/instances/{instance}/classes/{class}/objects",
            get(list_objects).post(create_object),
        )
        .route(
            "/v1.1/instances/{instance}/classes/{class}/objects/{id}",
            get(get_object)
                .post(update_object)
                .patch(update_object)
                .delete(delete_object),
        )
}

pub const NO_CHANNEL_PUBLISH: &str =
    "You do not have permission to publish data to specified channel.";

/// The caller's access to classes and objects; `None` for callers that may not use them at all
/// (bare keys, other accounts).
pub async fn access_of(app: &App, caller: &Caller) -> Result<Option<Access>, ApiError> {
    Ok(match caller {
        Caller::Owner(_) | Caller::Trusted { .. } => Some(Access::Full),
        Caller::User { user, .. } => {
            let all = IdPage {
                after: None,
                before: None,
                descending: false,
                limit: i64::from(MAX_GROUPS_PER_USER),
            };
            let groups = app.store.groups_of_user(user.id, all).await?;
            Some(Access::User {
                id: user.id,
                groups: groups.iter().map(|g| g.id).collect(),
            })
        }
        Caller::AnonymousReader(_) => Some(Access::Anonymous),
        Caller::Bare(_) | Caller::OtherAccount => None,
    })
}

/// A request on a class's objects, resolved: the caller may use objects and read the class.
struct ObjectScope {
    scope: InstanceScope,
    access: Access,
    class: Arc<Class>,
}

async fn object_scope(
    app: &AppState,
    req: &ApiRequest,
    params: &PathParams,
    writes: bool,
) -> Result<ObjectScope, ApiError> {
    let scope = app.instance_scope(req, &params.name("instance")).await?;
    let access = match access_of(app, &scope.caller).await? {
        Some(Access::Anonymous) if writes => return Err(ApiError::PermissionDenied),
        Some(access) => access,
        None => return Err(ApiError::PermissionDenied),
    };
    let class = match app.class(scope.instance.id, &params.name("class")).await {
        Err(ApiError::NotFound) => return Err(ApiError::ParentNotFound("Class")),
        other => other?,
    };
    if access.class_level(&class) < ClassPermission::Read {
        return Err(ApiError::PermissionDenied);
    }
    Ok(ObjectScope {
        scope,
        access,
        class,
    })
}

/// A user writing an object with a channel needs publish level on it (custom publish aside).
pub async fn check_channel_publish(
    app: &App,
    caller: &Caller,
    instance_id: i64,
    channel: Option<&str>,
) -> Result<(), ApiError> {
    let (Caller::User { .. }, Some(name)) = (caller, channel) else {
        return Ok(());
    };
    let channel = match app.channel(instance_id, name).await {
        Ok(channel) => channel,
        // Deleted meanwhile: the object no longer publishes.
        Err(ApiError::NotFound) => return Ok(()),
        Err(err) => return Err(err),
    };
    if channel_level(app, caller, &channel).await? < Permission::Publish {
        return Err(ApiError::Forbidden(NO_CHANNEL_PUBLISH));
    }
    Ok(())
}

/// The object the caller addresses: `Not found.` when it does not exist or the caller may not
/// read it (docs/api.md §10.9).
async fn readable_object(
    app: &App,
    os: &ObjectScope,
    params: &PathParams,
) -> Result<(DataObject, ObjectPermission), ApiError> {
    let object = app.store.object(&os.class, params.id("id")?).await?;
    let level = os.access.object_level(&object);
    if level < ObjectPermission::Read {
        return Err(ApiError::NotFound);
    }
    Ok((object, level))
}

/// The object a write addresses: readable (else `Not found.`), at `needed` level (else 403),
/// and, for a user, on a channel they may publish to.
async fn writable_object(
    app: &App,
    os: &ObjectScope,
    params: &PathParams,
    needed: ObjectPermission,
) -> Result<DataObject, ApiError> {
    let (object, level) = readable_object(app, os, params).await?;
    if level < needed {
        return Err(ApiError::PermissionDenied);
    }
    let channel = object.channel.as_deref();
    check_channel_publish(app, &os.scope.caller, os.scope.instance.id, channel).await?;
    Ok(object)
}

fn written_object(written: Written) -> Result<DataObject, ApiError> {
    match written {
        Written::Object(object) => Ok(object),
        _ => Err(ApiError::Internal(anyhow::anyhow!(
            "an object write returned no object"
        ))),
    }
}

/// Whether a boolean query parameter is set to any of the §2.2 true spellings.
fn truthy(raw: Option<&str>) -> bool {
    matches!(
        raw.map(str::trim),
        Some("true" | "True" | "TRUE" | "t" | "T" | "yes" | "y" | "on" | "1")
    )
}

/// The value of the order field on `object`, as a `last_value` cursor carries it.
fn order_value(order: &Order, object: &DataObject) -> Option<String> {
    match &order.field {
        Field::Builtin(Builtin::CreatedAt) => Some(object.created_at.to_string()),
        Field::Builtin(Builtin::UpdatedAt) => Some(object.updated_at.to_string()),
        Field::Builtin(_) => None,
        Field::Custom(def) => object
            .data
            .get(&def.name)
            .and_then(|value| Scalar::from_stored(order.field.kind(), value))
            .map(|scalar| scalar.to_text()),
    }
}

async fn list_objects(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let os = object_scope(&app, &req, &params, false).await?;
    let paging = Paging::parse(&req.query, false)?;
    let order = parse_order_by(req.query.get("order_by"), &os.class.schema)
        .map_err(ApiError::BadRequest)?;
    let queries = req
        .query
        .iter()
        .filter(|(k, _)| *k == "query")
        .map(|(_, v)| v);
    let conditions =
        parse_queries(queries, &os.class.schema).map_err(|m| ApiError::FieldText("query", m))?;
    // `order_by` overrides `ordering`; its sign alone sets the direction (docs/api.md §10.9).
    let order = order.unwrap_or(Order {
        field: Field::Builtin(Builtin::Id),
        descending: paging.is_descending(),
    });
    let after = paging.last_pk().map(|id| Cursor {
        value: req
            .query
            .get("last_value")
            .filter(|_| order.field.kind() != Kind::Opaque)
            .and_then(|text| order.field.scalar_from_text(text)),
        id,
    });
    let query = ObjectQuery {
        conditions,
        access: os.access.clone(),
        order: Order {
            field: order.field.clone(),
            descending: order.descending != paging.is_backward(),
        },
        after,
        limit: paging.size(),
    };
    let objects = if paging.size() == 0 {
        Vec::new()
    } else {
        app.store.list_objects(&os.class, &query).await?
    };
    let instance = &os.scope.instance.name;
    let rows = objects
        .iter()
        .map(|object| {
            let value = shape(object_json(instance, &os.class, object), &req.query);
            (object.id, order_value(&order, object), value)
        })
        .collect();
    let path = format!(
        "/v1.1/instances/{instance}/classes/{}/objects/",
        os.class.name
    );
    let mut envelope = paging.keyed_envelope(rows, &path, &req.query);
    if truthy(req.query.get("include_count")) {
        envelope["objects_count"] = json!(app.store.count_matching(&os.class, &query).await?);
    }
    Ok(json_response(StatusCode::OK, &envelope))
}

async fn create_object(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let os = object_scope(&app, &req, &params, true).await?;
    if os.class.is_user_profile()
        || os.access.class_level(&os.class) < ClassPermission::CreateObjects
    {
        return Err(ApiError::PermissionDenied);
    }
    let fields = req.fields().await?;
    let owner = os.scope.caller.user().map(|user| user.id);
    let mut errors = FieldErrors::default();
    let input = read_object(
        &app,
        &os.class,
        &os.access,
        &fields,
        None,
        owner,
        &mut errors,
    )
    .await?;
    errors.finish()?;
    let channel = input
        .channel
        .as_ref()
        .map(|(channel, _)| channel.name.clone());
    check_channel_publish(
        &app,
        &os.scope.caller,
        os.scope.instance.id,
        channel.as_deref(),
    )
    .await?;
    let write = Write::CreateObject {
        class: Class::clone(&os.class),
        new: input.into_new(owner),
        author: os.scope.caller.author_json(),
    };
    let object = written_object(app.store.write(write).await?)?;
    let value = object_json(&os.scope.instance.name, &os.class, &object);
    Ok(json_response(StatusCode::CREATED, &value))
}

async fn get_object(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let os = object_scope(&app, &req, &params, false).await?;
    let (object, _) = readable_object(&app, &os, &params).await?;
    let value = object_json(&os.scope.instance.name, &os.class, &object);
    Ok(json_response(StatusCode::OK, &shape(value, &req.query)))
}

async fn update_object(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let os = object_scope(&app, &req, &params, true).await?;
    let current = writable_object(&app, &os, &params, ObjectPermission::Write).await?;
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let input = read_object(
        &app,
        &os.class,
        &os.access,
        &fields,
        Some(&current),
        current.owner_id,
        &mut errors,
    )
    .await?;
    errors.finish()?;
    let write = Write::UpdateObject {
        class: Class::clone(&os.class),
        id: current.id,
        channel_id: current.channel_id,
        changes: input.changes,
        access: os.access.clone(),
        author: os.scope.caller.author_json(),
    };
    let object = written_object(app.store.write(write).await?)?;
    let value = object_json(&os.scope.instance.name, &os.class, &object);
    Ok(json_response(StatusCode::OK, &value))
}

async fn delete_object(
    State(app): State<AppState>,
    params: PathParams,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let os = object_scope(&app, &req, &params, true).await?;
    if os.class.is_user_profile() {
        return Err(ApiError::PermissionDenied);
    }
    let current = writable_object(&app, &os, &params, ObjectPermission::Full).await?;
    let write = Write::DeleteObject {
        class: Class::clone(&os.class),
        id: current.id,
        channel_id: current.channel_id,
        access: os.access.clone(),
        author: os.scope.caller.author_json(),
    };
    app.store.write(write).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
