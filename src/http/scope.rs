//! Resolving a request to its caller, following the SPEC's check order (§2.4): the instance must
//! exist (3), then the rate budget is charged (4), then the credentials must be valid (5). What a
//! caller class may do (6 and later) is decided by each resource.

use std::sync::Arc;

use super::App;
use super::request::ApiRequest;
use crate::auth::{AccountCredential, ApiKeyCredential, Credential, Presented, UserCredential};
use crate::error::ApiError;
use crate::keys::Key;
use crate::objects::Class;
use crate::store::{Channel, Instance, StoreError};

const NO_SUCH_USER_KEY: &str = "No such User Key.";

/// The caller classes of docs/api.md §3.4 for an instance-scoped request.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The account key of the instance's owner.
    Owner(AccountCredential),
    /// An account key that does not own the instance.
    OtherAccount,
    /// An API key with `ignore_acl`, with or without a user key.
    Trusted {
        key: ApiKeyCredential,
        user: Option<UserCredential>,
    },
    /// An API key without `ignore_acl` plus a valid user key.
    User {
        key: ApiKeyCredential,
        user: UserCredential,
    },
    /// An API key with `allow_anonymous_read` and no user key.
    AnonymousReader(ApiKeyCredential),
    /// Any other API key without a user key.
    Bare(ApiKeyCredential),
}

impl Caller {
    /// Owners and trusted keys manage channels and bypass permissions (§9.3).
    pub fn is_manager(&self) -> bool {
        matches!(self, Caller::Owner(_) | Caller::Trusted { .. })
    }

    pub fn is_owner(&self) -> bool {
        matches!(self, Caller::Owner(_))
    }

    pub fn api_key(&self) -> Option<&ApiKeyCredential> {
        match self {
            Caller::Trusted { key, .. }
            | Caller::User { key, .. }
            | Caller::AnonymousReader(key)
            | Caller::Bare(key) => Some(key),
            Caller::Owner(_) | Caller::OtherAccount => None,
        }
    }

    /// The user whose key came with the request, if any.
    pub fn user(&self) -> Option<&UserCredential> {
        match self {
            Caller::Trusted { user, .. } => user.as_ref(),
            Caller::User { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The `author` object of messages this caller publishes (§9.5), as compact JSON.
    pub fn author_json(&self) -> String {
        match (self, self.api_key(), self.user()) {
            (Caller::Owner(account), _, _) => format!("{{\"admin\":{}}}", account.id),
            (_, Some(key), Some(user)) => {
                format!("{{\"api_key\":{},\"user\":{}}}", key.id, user.id)
            }
            (_, Some(key), None) => format!("{{\"api_key\":{}}}", key.id),
            (_, None, _) => "{}".to_owned(),
        }
    }
}

/// Which rate budget a request with a valid instance key spends (§2.8).
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Instance,
    /// Poll and stream opens.
    Poll,
}

/// The caller class resolved credentials have in `instance`; `None` when the credential is not
/// valid there (an API key of another instance, or no credential). `user` must already be known
/// to belong to this instance.
pub fn caller_for(
    instance: &Instance,
    credential: Option<Credential>,
    user: Option<UserCredential>,
) -> Option<Caller> {
    match credential? {
        Credential::Account(account) if account.id == instance.owner_id => {
            Some(Caller::Owner(account))
        }
        Credential::Account(_) => Some(Caller::OtherAccount),
        Credential::ApiKey(key) if key.instance_id == instance.id => {
            Some(match (key.ignore_acl, user) {
                (true, user) => Caller::Trusted { key, user },
                (false, Some(user)) => Caller::User { key, user },
                (false, None) if key.allow_anonymous_read => Caller::AnonymousReader(key),
                (false, None) => Caller::Bare(key),
            })
        }
        Credential::ApiKey(_) => None,
    }
}

/// A request resolved against an instance.
pub struct InstanceScope {
    pub instance: Arc<Instance>,
    pub caller: Caller,
    /// The keys the caller presented, kept so long-lived streams can re-check them.
    pub key: Option<Key>,
    pub user_key: Option<Key>,
}

/// A request outside any instance, by a valid key.
pub enum RootCaller {
    Account(AccountCredential),
    ApiKey(ApiKeyCredential),
}

fn first_api_key<const P: bool>(req: &ApiRequest<P>) -> Option<String> {
    if let Some(key) = req.header("x-api-key") {
        return Some(key.to_owned());
    }
    // A key header that is not even text (e.g. non-ASCII bytes) is a key, and a malformed one:
    // `No such API Key.`, not the message for a request without a key.
    if let Some(raw) = req.headers.get("x-api-key")
        && raw.to_str().is_err()
    {
        return Some(String::from_utf8_lossy(raw.as_bytes()).into_owned());
    }
    if let Some(key) = req.query.get("api_key").or_else(|| req.query.get("apikey")) {
        return Some(key.to_owned());
    }
    let authorization = req.header("authorization")?;
    let mut parts = authorization.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_scheme), Some(key), None) if !key.is_empty() => Some(key.to_owned()),
        _ => None,
    }
}

fn first_user_key<const P: bool>(req: &ApiRequest<P>) -> Option<String> {
    req.header("x-user-key")
        .or_else(|| req.query.get("user_key"))
        .or_else(|| req.query.get("userkey"))
        .map(str::to_owned)
}

impl App {
    /// The instance a path names, from the cache or the store.
    pub async fn instance(&self, name: &str) -> Result<Arc<Instance>, ApiError> {
        let miss = match self.instances.get(&name.to_owned()) {
            Ok(instance) => return Ok(instance),
            Err(miss) => miss,
        };
        match self.store.instance_by_name(name).await {
            Ok(instance) => {
                let instance = Arc::new(instance);
                self.instances
                    .insert(miss, name.to_owned(), instance.clone());
                Ok(instance)
            }
            Err(StoreError::NotFound) => Err(ApiError::ParentNotFound("Instance")),
            Err(err) => Err(err.into()),
        }
    }

    /// A channel of an instance, from the cache or the store; `NotFound` when missing.
    pub async fn channel(&self, instance_id: i64, name: &str) -> Result<Arc<Channel>, ApiError> {
        let key = (instance_id, name.to_owned());
        let miss = match self.channels.get(&key) {
            Ok(channel) => return Ok(channel),
            Err(miss) => miss,
        };
        let channel = Arc::new(self.store.channel(instance_id, name).await?);
        self.channels.insert(miss, key, channel.clone());
        Ok(channel)
    }

    /// A class of an instance, from the cache or the store; `NotFound` when missing.
    pub async fn class(&self, instance_id: i64, name: &str) -> Result<Arc<Class>, ApiError> {
        let key = (instance_id, name.to_owned());
        let miss = match self.classes.get(&key) {
            Ok(class) => return Ok(class),
            Err(miss) => miss,
        };
        let class = Arc::new(self.store.class(instance_id, name).await?);
        self.classes.insert(miss, key, class.clone());
        Ok(class)
    }

    /// Reads the API-key slot and resolves it. `Err` only when storage fails.
    async fn presented_credential<const P: bool>(
        &self,
        req: &ApiRequest<P>,
    ) -> Result<(Presented, Option<Credential>), ApiError> {
        let raw = match first_api_key(req) {
            Some(raw) => Some(raw),
            None => req.body_key("_api_key").await,
        };
        let presented = Presented::from_raw(raw.as_deref());
        let credential = match &presented {
            Presented::Key(key) => self.keys.resolve(self.store.as_ref(), key).await?,
            Presented::Nothing | Presented::Malformed => None,
        };
        Ok((presented, credential))
    }

    fn charge_anonymous<const P: bool>(&self, req: &ApiRequest<P>) -> Result<(), ApiError> {
        self.anonymous_limit
            .check(req.client_ip)
            .map_err(|retry_after_secs| ApiError::Throttled { retry_after_secs })
    }

    /// Resolves the caller of an instance-scoped request (check-order steps 3–5).
    pub async fn instance_scope<const P: bool>(
        &self,
        req: &ApiRequest<P>,
        instance_name: &str,
    ) -> Result<InstanceScope, ApiError> {
        self.instance_scope_charging(req, instance_name, Budget::Instance)
            .await
    }

    /// As [`App::instance_scope`], charging a valid key's request to `budget`.
    pub async fn instance_scope_charging<const P: bool>(
        &self,
        req: &ApiRequest<P>,
        instance_name: &str,
        budget: Budget,
    ) -> Result<InstanceScope, ApiError> {
        let instance = self.instance(instance_name).await?;
        let (presented, credential) = self.presented_credential(req).await?;
        let valid_here = match &credential {
            Some(Credential::Account(_)) => true,
            Some(Credential::ApiKey(key)) => key.instance_id == instance.id,
            None => false,
        };
        if valid_here {
            let limiter = match budget {
                Budget::Instance => &self.instance_limit,
                Budget::Poll => &self.poll_limit,
            };
            limiter
                .check(instance.id)
                .map_err(|retry_after_secs| ApiError::Throttled { retry_after_secs })?;
        }
        // The user key counts only beside an API key of this instance (§3.2).
        let mut user_key = None;
        let mut user = None;
        if matches!(&credential, Some(Credential::ApiKey(key)) if key.instance_id == instance.id) {
            let raw = match first_user_key(req) {
                Some(raw) => Some(raw),
                None => req.body_key("_user_key").await,
            };
            if let Some(raw) = raw {
                let key = Key::parse(raw.trim()).ok_or(ApiError::Forbidden(NO_SUCH_USER_KEY))?;
                let found = self.keys.resolve_user(self.store.as_ref(), &key).await?;
                match found {
                    Some(found) if found.instance_id == instance.id => user = Some(found),
                    _ => return Err(ApiError::Forbidden(NO_SUCH_USER_KEY)),
                }
                user_key = Some(key);
            }
        }
        match caller_for(&instance, credential, user) {
            Some(caller) => Ok(InstanceScope {
                instance,
                caller,
                key: match presented {
                    Presented::Key(key) => Some(key),
                    Presented::Nothing | Presented::Malformed => None,
                },
                user_key,
            }),
            None => {
                self.charge_anonymous(req)?;
                Err(match presented {
                    Presented::Nothing => ApiError::PermissionDenied,
                    Presented::Malformed | Presented::Key(_) => ApiError::NoSuchApiKey,
                })
            }
        }
    }

    /// An instance-scoped request that only owners and trusted keys may make: managing
    /// channels, groups and memberships (§3.4).
    pub async fn manager_scope<const P: bool>(
        &self,
        req: &ApiRequest<P>,
        instance_name: &str,
    ) -> Result<InstanceScope, ApiError> {
        let scope = self.instance_scope(req, instance_name).await?;
        if !scope.caller.is_manager() {
            return Err(ApiError::PermissionDenied);
        }
        Ok(scope)
    }

    /// Resolves the caller of a request outside any instance. `None` when no key was sent.
    pub async fn root_caller<const P: bool>(
        &self,
        req: &ApiRequest<P>,
    ) -> Result<Option<RootCaller>, ApiError> {
        let (presented, credential) = self.presented_credential(req).await?;
        match (presented, credential) {
            (_, Some(Credential::Account(account))) => Ok(Some(RootCaller::Account(account))),
            (_, Some(Credential::ApiKey(key))) => {
                self.instance_limit
                    .check(key.instance_id)
                    .map_err(|retry_after_secs| ApiError::Throttled { retry_after_secs })?;
                Ok(Some(RootCaller::ApiKey(key)))
            }
            (Presented::Nothing, None) => {
                self.charge_anonymous(req)?;
                Ok(None)
            }
            (Presented::Malformed | Presented::Key(_), None) => {
                self.charge_anonymous(req)?;
                Err(ApiError::NoSuchApiKey)
            }
        }
    }

    /// Account endpoints (§4.3–4.5): an account key and nothing else.
    pub async fn account_caller<const P: bool>(
        &self,
        req: &ApiRequest<P>,
    ) -> Result<AccountCredential, ApiError> {
        match self.root_caller(req).await? {
            Some(RootCaller::Account(account)) => Ok(account),
            Some(RootCaller::ApiKey(_)) | None => Err(ApiError::PermissionDenied),
        }
    }
}
