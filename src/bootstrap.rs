//! The first account (docs/api.md §4.6): a fresh database gets one superuser, and its key is printed
//! once, so a new server is usable in two commands.

use crate::accounts::{self, Registration};
use crate::config::AdminBootstrap;
use crate::keys::{self, Key};
use crate::model;
use crate::store::{Store, StoreError};

/// What was created, for printing; `None` when the database already had accounts.
pub struct CreatedAdmin {
    pub email: String,
    pub generated_password: Option<String>,
    pub key: Key,
}

pub async fn ensure_first_account(
    store: &dyn Store,
    admin: &AdminBootstrap,
) -> anyhow::Result<Option<CreatedAdmin>> {
    let key = admin.parsed_key().map_err(anyhow::Error::msg)?;
    if store.count_accounts().await? > 0 {
        return Ok(None);
    }
    let email = match admin.email.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(raw) => model::parse_email(raw)
            .map_err(|_| anyhow::anyhow!("HERALD_ADMIN_EMAIL is not a valid e-mail address"))?,
        None => "admin@localhost".to_owned(),
    };
    let (password, generated_password) = match admin.password.clone().filter(|p| !p.is_empty()) {
        Some(password) => (password, None),
        None => {
            let password = keys::generate_password();
            (password.clone(), Some(password))
        }
    };
    let password_hash = tokio::task::spawn_blocking(move || keys::hash_password(&password)).await?;
    let registration = Registration {
        email: email.clone(),
        first_name: String::new(),
        last_name: String::new(),
        password_hash,
        is_superuser: true,
    };
    // Processes sharing a database may all get here at once; the store creates one account.
    match accounts::create_first(store, registration, key).await {
        Ok(Some((_, key))) => Ok(Some(CreatedAdmin {
            email,
            generated_password,
            key,
        })),
        // Another process won the race on the same database: its account stands.
        Ok(None) | Err(StoreError::Conflict(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

impl CreatedAdmin {
    /// The one-time block printed to stdout.
    pub fn banner(&self, listen: std::net::SocketAddr) -> String {
        let mut text = String::from(
            "\n================ Herald: first start ================\n\
             A superuser account was created. Keep this key; it is not shown again.\n\n",
        );
        text.push_str(&format!("  email:        {}\n", self.email));
        if let Some(password) = &self.generated_password {
            text.push_str(&format!("  password:     {password}\n"));
        }
        text.push_str(&format!("  account key:  {}\n", self.key.as_str()));
        text.push_str(&format!(
            "\nTry:\n  curl -H \"X-API-KEY: {}\" http://{listen}/v1.1/instances/\n\
             =====================================================\n",
            self.key.as_str()
        ));
        text
    }
}
