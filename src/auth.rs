//! Who is calling: where keys are read from, what they resolve to, and the cache that keeps a
//! database round trip off every request.
//!
//! The cache maps a key's digest to its credential. Resetting or deleting a key (or deleting its
//! instance or account) removes the entry before the change is acknowledged, so a replaced key
//! stops working at once. Unknown keys are never cached: guessing cannot grow memory.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::cache::{Invalidations, Miss};
use crate::keys::{Key, KeyDigest, KeyKind};
use crate::store::{Account, ApiKey, Store, StoreError, StoreResult};

/// An account key's identity.
#[derive(Clone, Debug)]
pub struct AccountCredential {
    pub id: i64,
    pub is_superuser: bool,
}

/// An instance API key's identity and flags.
#[derive(Clone, Debug)]
pub struct ApiKeyCredential {
    pub id: i64,
    pub instance_id: i64,
    pub ignore_acl: bool,
    pub allow_user_create: bool,
    pub allow_group_create: bool,
    pub allow_anonymous_read: bool,
}

/// A user key's identity (docs/api.md §7): valid only with an API key of the same instance.
#[derive(Clone, Debug)]
pub struct UserCredential {
    pub id: i64,
    pub instance_id: i64,
}

#[derive(Clone, Debug)]
pub enum Credential {
    Account(AccountCredential),
    ApiKey(ApiKeyCredential),
}

/// What a cached digest belongs to. User keys have account-key parity, so the slot a key came
/// in decides which kinds it may resolve to.
#[derive(Clone, Debug)]
enum Cached {
    Key(Credential),
    User(UserCredential),
}

impl From<&Account> for AccountCredential {
    fn from(account: &Account) -> Self {
        AccountCredential {
            id: account.id,
            is_superuser: account.is_superuser,
        }
    }
}

impl From<&ApiKey> for ApiKeyCredential {
    fn from(key: &ApiKey) -> Self {
        ApiKeyCredential {
            id: key.id,
            instance_id: key.instance_id,
            ignore_acl: key.ignore_acl,
            allow_user_create: key.allow_user_create,
            allow_group_create: key.allow_group_create,
            allow_anonymous_read: key.allow_anonymous_read,
        }
    }
}

/// What the request carried in the API-key slot (docs/api.md §3.2).
#[derive(Debug)]
pub enum Presented {
    Nothing,
    /// Present but not 40 hex characters: never a valid key.
    Malformed,
    Key(Key),
}

impl Presented {
    pub fn from_raw(raw: Option<&str>) -> Presented {
        match raw {
            None => Presented::Nothing,
            Some(raw) => Key::parse(raw.trim()).map_or(Presented::Malformed, Presented::Key),
        }
    }
}

/// Entries beyond this make the cache start over: a bound, not an eviction policy, since every
/// entry is a real key and re-reading one costs a single indexed query.
const MAX_CACHED_KEYS: usize = 100_000;

#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<KeyDigest, (KeyDigest, Cached)>>,
    invalidations: Invalidations,
}

impl KeyCache {
    /// Resolves a key to its credential, from the cache or the store. `None` for unknown keys.
    pub async fn resolve(&self, store: &dyn Store, key: &Key) -> StoreResult<Option<Credential>> {
        let digest = key.digest();
        let miss = match self.cached(&digest) {
            Ok(Cached::Key(credential)) => return Ok(Some(credential)),
            Ok(Cached::User(_)) => self.invalidations.miss(),
            Err(miss) => miss,
        };
        let found = match key.kind() {
            KeyKind::Account => store
                .account_by_key(&digest)
                .await
                .map(|a| Credential::Account(AccountCredential::from(&a))),
            KeyKind::ApiKey => store
                .api_key_by_key(&digest)
                .await
                .map(|k| Credential::ApiKey(ApiKeyCredential::from(&k))),
        };
        match found {
            Ok(credential) => {
                self.insert(miss, digest, Cached::Key(credential.clone()));
                Ok(Some(credential))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Resolves a key from the user-key slot. `None` for unknown keys.
    pub async fn resolve_user(
        &self,
        store: &dyn Store,
        key: &Key,
    ) -> StoreResult<Option<UserCredential>> {
        let digest = key.digest();
        let miss = match self.cached(&digest) {
            Ok(Cached::User(user)) => return Ok(Some(user)),
            Ok(Cached::Key(_)) => self.invalidations.miss(),
            Err(miss) => miss,
        };
        match store.user_by_key(&digest).await {
            Ok(user) => {
                let credential = UserCredential {
                    id: user.id,
                    instance_id: user.instance_id,
                };
                self.insert(miss, digest, Cached::User(credential.clone()));
                Ok(Some(credential))
            }
            Err(StoreError::NotFound) => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn cached(&self, digest: &KeyDigest) -> Result<Cached, Miss> {
        let entries = self.read();
        let found = entries
            .get(digest)
            // The map found the entry by hash; confirm the digest without a timing side channel.
            .filter(|(stored, _)| stored.ct_eq(digest))
            .map(|(_, cached)| cached.clone());
        found.ok_or_else(|| self.invalidations.miss())
    }

    /// Stores what was read after `miss`, unless something was forgotten since.
    fn insert(&self, miss: Miss, digest: KeyDigest, cached: Cached) {
        let mut entries = self.write();
        if !self.invalidations.still_current(&miss) {
            return;
        }
        if entries.len() >= MAX_CACHED_KEYS {
            entries.clear();
        }
        entries.insert(digest, (digest, cached));
    }

    /// Drops every cached entry the predicate matches.
    fn forget(&self, matches: impl Fn(&Cached) -> bool) {
        let mut entries = self.write();
        self.invalidations.bump();
        entries.retain(|_, (_, cached)| !matches(cached));
    }

    pub fn forget_account(&self, account_id: i64) {
        self.forget(|c| matches!(c, Cached::Key(Credential::Account(a)) if a.id == account_id));
    }

    pub fn forget_api_key(&self, key_id: i64) {
        self.forget(|c| matches!(c, Cached::Key(Credential::ApiKey(k)) if k.id == key_id));
    }

    pub fn forget_user(&self, user_id: i64) {
        self.forget(|c| matches!(c, Cached::User(u) if u.id == user_id));
    }

    pub fn forget_all(&self) {
        let mut entries = self.write();
        self.invalidations.bump();
        entries.clear();
    }

    pub fn forget_instance(&self, instance_id: i64) {
        self.forget(|c| match c {
            Cached::Key(Credential::ApiKey(k)) => k.instance_id == instance_id,
            Cached::User(u) => u.instance_id == instance_id,
            Cached::Key(Credential::Account(_)) => false,
        });
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<KeyDigest, (KeyDigest, Cached)>> {
        // A poisoned lock only means another request panicked mid-insert; the map is still usable.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<KeyDigest, (KeyDigest, Cached)>> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }
}
