//! Accounts: registration, login, details, key reset and password change (docs/api.md §4).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use std::net::IpAddr;

use super::input;
use super::request::ApiRequest;
use super::scope::RootCaller;
use super::{App, AppState};
use crate::accounts::{self, Registration};
use crate::error::{ApiError, FieldErrors, checked, json_response};
use crate::model;
use crate::passwords::Identity;
use crate::store::{Account, AccountChanges, StoreError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1.1/account/register", post(register_account))
        .route("/v1.1/account/auth", post(log_in))
        .route(
            "/v1.1/account",
            get(get_account).put(update_account).patch(update_account),
        )
        .route("/v1.1/account/reset_key", post(reset_account_key))
        .route("/v1.1/account/password", post(change_password))
}

const NAME_MAX: usize = 64;
const PASSWORD_MAX: usize = 1024;

/// The account as the API shows it (§4); `with_key` adds `account_key`.
pub fn account_json(account: &Account, with_key: bool) -> Value {
    let mut value = json!({
        "id": account.id,
        "email": account.email,
        "first_name": account.first_name,
        "last_name": account.last_name,
        "is_active": true,
        "has_password": account.password_hash.is_some(),
        "metadata": account.metadata,
    });
    if with_key {
        value["account_key"] = json!(account.account_key);
    }
    value
}

/// Hashes a new password on the bounded Argon2 pool (docs/api.md §3.3).
pub(super) async fn hash_password(app: &App, password: String) -> Result<String, ApiError> {
    Ok(app.passwords.hash(password).await?)
}

/// Checks a password of `identity` (`stored`: its hash, `None` when the identity does not exist
/// or has no password), counting toward its lock-out and the client's budget (docs/api.md §3.3).
pub(super) async fn verify_password(
    app: &App,
    ip: IpAddr,
    identity: Identity,
    password: String,
    stored: Option<String>,
) -> Result<bool, ApiError> {
    Ok(app.passwords.verify(ip, identity, password, stored).await?)
}

fn email_field(fields: &super::request::Fields, required: bool) -> Result<Option<String>, String> {
    match input::string(fields, "email", 254, false)? {
        Some(raw) => model::parse_email(&raw).map(Some),
        None if required => Err(input::REQUIRED.into()),
        None => Ok(None),
    }
}

async fn register_account(
    State(app): State<AppState>,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    if !app.config.allow_registration {
        match app.root_caller(&req).await? {
            Some(RootCaller::Account(account)) if account.is_superuser => {}
            _ => return Err(ApiError::BadRequest("Registration disabled.".into())),
        }
    } else {
        // Open registration ignores keys, but keyless callers still spend the anonymous budget.
        app.root_caller(&req).await.ok();
    }
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let email = errors.check("email", email_field(&fields, true)).flatten();
    let password = errors.check(
        "password",
        input::required_string(&fields, "password", PASSWORD_MAX),
    );
    let first_name = errors
        .check(
            "first_name",
            input::string(&fields, "first_name", NAME_MAX, true),
        )
        .flatten();
    let last_name = errors
        .check(
            "last_name",
            input::string(&fields, "last_name", NAME_MAX, true),
        )
        .flatten();
    errors.finish()?;
    let (email, password) = (checked(email)?, checked(password)?);
    let registration = Registration {
        email,
        first_name: first_name.unwrap_or_default(),
        last_name: last_name.unwrap_or_default(),
        password_hash: hash_password(&app, password).await?,
        is_superuser: false,
    };
    let (account, _) = accounts::create(app.store.as_ref(), registration).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &account_json(&account, true),
    ))
}

async fn log_in(State(app): State<AppState>, req: ApiRequest) -> Result<Response, ApiError> {
    // Any key sent is ignored here; every attempt spends the anonymous budget, which is what
    // slows password guessing.
    app.anonymous_limit
        .check(req.client_ip)
        .map_err(|retry_after_secs| ApiError::Throttled { retry_after_secs })?;
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let email = errors.check("email", email_field(&fields, true)).flatten();
    let password = errors.check(
        "password",
        input::required_string(&fields, "password", PASSWORD_MAX),
    );
    errors.finish()?;
    let (email, password) = (checked(email)?, checked(password)?);
    let account = match app.store.account_by_email(&email).await {
        Ok(account) => Some(account),
        Err(StoreError::NotFound) => None,
        Err(err) => return Err(err.into()),
    };
    // An unknown e-mail costs the same check as a wrong password.
    let stored = account.as_ref().and_then(|a| a.password_hash.clone());
    let identity = Identity::Account { email };
    let matched = verify_password(&app, req.client_ip, identity, password, stored).await?;
    match account {
        None => Err(ApiError::Unauthorized("Invalid email.")),
        Some(_) if !matched => Err(ApiError::Unauthorized("Invalid password.")),
        Some(account) => Ok(json_response(StatusCode::OK, &account_json(&account, true))),
    }
}

async fn get_account(State(app): State<AppState>, req: ApiRequest) -> Result<Response, ApiError> {
    let caller = app.account_caller(&req).await?;
    let account = app.store.account(caller.id).await?;
    Ok(json_response(
        StatusCode::OK,
        &super::paging::shape(account_json(&account, false), &req.query),
    ))
}

async fn update_account(
    State(app): State<AppState>,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = app.account_caller(&req).await?;
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let changes = AccountChanges {
        email: errors.check("email", email_field(&fields, false)).flatten(),
        first_name: errors
            .check(
                "first_name",
                input::string(&fields, "first_name", NAME_MAX, true),
            )
            .flatten(),
        last_name: errors
            .check(
                "last_name",
                input::string(&fields, "last_name", NAME_MAX, true),
            )
            .flatten(),
        metadata: errors
            .check("metadata", input::metadata(&fields, "metadata"))
            .flatten(),
    };
    errors.finish()?;
    let account = app.store.update_account(caller.id, changes).await?;
    Ok(json_response(
        StatusCode::OK,
        &account_json(&account, false),
    ))
}

async fn reset_account_key(
    State(app): State<AppState>,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = app.account_caller(&req).await?;
    let (account, _) = accounts::reset_key(app.store.as_ref(), caller.id).await?;
    Ok(json_response(StatusCode::OK, &account_json(&account, true)))
}

async fn change_password(
    State(app): State<AppState>,
    req: ApiRequest,
) -> Result<Response, ApiError> {
    let caller = app.account_caller(&req).await?;
    let fields = req.fields().await?;
    let mut errors = FieldErrors::default();
    let current = errors.check(
        "current_password",
        input::required_string(&fields, "current_password", PASSWORD_MAX),
    );
    let new = errors.check(
        "new_password",
        input::required_string(&fields, "new_password", PASSWORD_MAX),
    );
    errors.finish()?;
    let (current, new) = (checked(current)?, checked(new)?);
    let account = app.store.account(caller.id).await?;
    let identity = Identity::Account {
        email: account.email.clone(),
    };
    let stored = account.password_hash;
    if !verify_password(&app, req.client_ip, identity, current, stored).await? {
        return Err(ApiError::field("current_password", "Invalid password."));
    }
    let hash = hash_password(&app, new).await?;
    app.store.set_account_password(caller.id, &hash).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
