//! Accounts (docs/api.md §4): the one way to create an account or give it a new key, for the API,
//! the CLI (`herald account ...`) and the first start of an empty database alike.
//!
//! Callers validate input and hash the password their own way (the server on its bounded
//! hashing pool, the CLI on a blocking thread); what is stored, and how the key is made, is
//! decided here. Changes to keys reach running servers through the store (see `access`).

use crate::keys::{Key, KeyKind};
use crate::store::{Account, AccountStore, NewAccount, StoreResult};

/// A new account, validated, its password hashed.
pub struct Registration {
    /// Normalised (see `model::parse_email`).
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: String,
    pub is_superuser: bool,
}

impl Registration {
    fn into_new(self, key: &Key) -> NewAccount {
        NewAccount {
            email: self.email,
            first_name: self.first_name,
            last_name: self.last_name,
            password_hash: Some(self.password_hash),
            account_key: key.as_str().to_owned(),
            key_digest: key.digest(),
            is_superuser: self.is_superuser,
        }
    }
}

/// Stores a new account with a new account key. A taken e-mail is a `Conflict`.
pub async fn create(
    store: &dyn AccountStore,
    registration: Registration,
) -> StoreResult<(Account, Key)> {
    let key = Key::generate(KeyKind::Account);
    let account = store.create_account(registration.into_new(&key)).await?;
    Ok((account, key))
}

/// Stores the first account of an empty database, with `key` if one was configured. `None`
/// when the database has an account already (another process may have just made it).
pub async fn create_first(
    store: &dyn AccountStore,
    registration: Registration,
    key: Option<Key>,
) -> StoreResult<Option<(Account, Key)>> {
    let key = key.unwrap_or_else(|| Key::generate(KeyKind::Account));
    let account = store
        .create_first_account(registration.into_new(&key))
        .await?;
    Ok(account.map(|account| (account, key)))
}

/// Gives an account a new key; the old one is refused from then on.
pub async fn reset_key(store: &dyn AccountStore, id: i64) -> StoreResult<(Account, Key)> {
    let key = Key::generate(KeyKind::Account);
    let account = store
        .set_account_key(id, key.as_str(), &key.digest())
        .await?;
    Ok((account, key))
}
