//! Key material and passwords: generation, digests and verification.
//!
//! Keys are 40 lower-case hex characters from the OS CSPRNG. The last digit's parity tells an
//! account or user key (even) from an instance API key (odd) without a lookup (SPEC §3.1). Keys are
//! looked up by their SHA-256 digest, so the database index never sees a secret prefix, and the
//! final comparison is constant-time. Passwords are hashed with Argon2id.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The length of every key, in hex characters.
pub const KEY_LEN: usize = 40;

/// Which kind of key a 40-hex value is, by its last digit's parity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Even last digit: an account key (or, in the user-key slot, a user key).
    Account,
    /// Odd last digit: an instance API key.
    ApiKey,
}

/// A key normalised to lower case and known to be 40 hex characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

impl Key {
    /// Accepts any case; anything but 40 hex characters is not a key.
    pub fn parse(raw: &str) -> Option<Key> {
        if raw.len() == KEY_LEN && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(Key(raw.to_ascii_lowercase()))
        } else {
            None
        }
    }

    pub fn kind(&self) -> KeyKind {
        let last = self.0.as_bytes()[KEY_LEN - 1];
        let value = (last as char).to_digit(16).unwrap_or(0);
        if value.is_multiple_of(2) {
            KeyKind::Account
        } else {
            KeyKind::ApiKey
        }
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest(Sha256::digest(self.0.as_bytes()).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh random key of the given kind.
    pub fn generate(kind: KeyKind) -> Key {
        let mut bytes = [0u8; KEY_LEN / 2];
        OsRng.fill_bytes(&mut bytes);
        // Force the parity of the last hex digit (the low nibble of the last byte).
        let last = &mut bytes[KEY_LEN / 2 - 1];
        match kind {
            KeyKind::Account => *last &= !1,
            KeyKind::ApiKey => *last |= 1,
        }
        Key(hex::encode(bytes))
    }
}

impl std::fmt::Debug for Key {
    // Keys never reach logs, not even through a stray `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// SHA-256 of a key: what storage indexes and compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// Constant-time equality, for the final check after an index lookup.
    pub fn ct_eq(&self, other: &KeyDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyDigest(..)")
    }
}

/// Hashes a password with Argon2id and a random salt (PHC string format).
/// CPU-heavy: call it from `spawn_blocking`.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        // Hashing only fails for out-of-range parameters, and the defaults are in range.
        .expect("argon2 default parameters are valid")
}

/// Checks a password against a stored PHC string. CPU-heavy: call it from `spawn_blocking`.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(hash) => Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random password for the bootstrap account: 24 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_requested_parity() {
        for _ in 0..200 {
            let account = Key::generate(KeyKind::Account);
            let api = Key::generate(KeyKind::ApiKey);
            assert_eq!(account.kind(), KeyKind::Account);
            assert_eq!(api.kind(), KeyKind::ApiKey);
            assert_eq!(Key::parse(account.as_str()), Some(account));
        }
    }

    #[test]
    fn keys_are_case_insensitive_and_exactly_40_hex() {
        let key = Key::parse("ABCDEF0123456789ABCDEF0123456789ABCDEF01").unwrap();
        assert_eq!(key.as_str(), "abcdef0123456789abcdef0123456789abcdef01");
        assert_eq!(key.kind(), KeyKind::ApiKey);
        assert!(Key::parse("abc").is_none());
        assert!(Key::parse("zbcdef0123456789abcdef0123456789abcdef01").is_none());
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("roach");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("roach", &hash));
        assert!(!verify_password("kelpie", &hash));
        assert!(!verify_password("roach", "not a hash"));
    }

    #[test]
    fn generated_passwords_are_24_chars() {
        assert_eq!(generate_password().chars().count(), 24);
    }
}
