//! Key material and passwords: generation, digests and verification.
//!
//! Keys are 40 lower-case hex characters from the OS CSPRNG. The last digit's parity tells an
//! account or user key (even) from an instance API key (odd) without a lookup (docs/api.md §3.1). Keys are
//! looked up by their SHA-256 digest, so the database index never sees a secret prefix, and the
//! final comparison is constant-time. Passwords are hashed with Argon2id.

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// Argon2 working memory (19 MiB with the default parameters), kept and reused between
/// hashes. Allocating it afresh for each hash lets the allocator keep a copy per thread it ever
/// ran on: a hundred failed log-ins grew the server by 300 MB before this was reused.
pub struct HashMemory(Vec<Block>);

/// Stored hashes asking for more memory than this (1 GiB) are refused rather than computed.
const MAX_HASH_BLOCKS: usize = 1 << 20;

impl HashMemory {
    /// Empty; grows to what the first hash needs.
    pub fn new() -> HashMemory {
        HashMemory(Vec::new())
    }

    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.0.len() < count {
            self.0.resize(count, Block::default());
        }
        &mut self.0[..count]
    }
}

impl Default for HashMemory {
    fn default() -> Self {
        HashMemory::new()
    }
}

/// Argon2 of `password` with a base64 `salt`, in `memory`.
fn argon2_output(
    argon2: &Argon2<'_>,
    password: &str,
    salt: Salt<'_>,
    memory: &mut HashMemory,
) -> password_hash::Result<Output> {
    let params = argon2.params();
    if params.block_count() > MAX_HASH_BLOCKS {
        return Err(password_hash::Error::ParamValueInvalid(
            password_hash::errors::InvalidValue::TooLong,
        ));
    }
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = memory.blocks(params.block_count());
    Output::init_with(len, |out| {
        Ok(argon2.hash_password_into_with_memory(password.as_bytes(), salt, out, &mut *blocks)?)
    })
}

/// Hashes a password with Argon2id and a random salt (PHC string format).
/// CPU-heavy: call it from `spawn_blocking`.
pub fn hash_password(password: &str) -> String {
    hash_password_in(password, &mut HashMemory::new())
}

/// [`hash_password`] in reused memory.
pub fn hash_password_in(password: &str, memory: &mut HashMemory) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let argon2 = Argon2::default();
    let hash = argon2_output(&argon2, password, salt.as_salt(), memory)
        // Hashing only fails for out-of-range parameters, and the defaults are in range.
        .expect("argon2 default parameters are valid");
    PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(argon2.params()).expect("default parameters encode"),
        salt: Some(salt.as_salt()),
        hash: Some(hash),
    }
    .to_string()
}

/// Checks a password against a stored PHC string. CPU-heavy: call it from `spawn_blocking`.
pub fn verify_password(password: &str, stored: &str) -> bool {
    verify_password_in(password, stored, &mut HashMemory::new())
}

/// [`verify_password`] in reused memory. The algorithm, version and parameters are the stored
/// hash's own; the outputs are compared in constant time (`Output`'s equality).
pub fn verify_password_in(password: &str, stored: &str, memory: &mut HashMemory) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let argon2 = (|| -> password_hash::Result<Argon2<'static>> {
        let algorithm = Algorithm::try_from(hash.algorithm)?;
        let version = hash
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        Ok(Argon2::new(algorithm, version, Params::try_from(&hash)?))
    })();
    match argon2.and_then(|argon2| argon2_output(&argon2, password, salt, memory)) {
        Ok(computed) => computed == expected,
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
    fn hashes_in_reused_memory_match_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = HashMemory::new();
        // Ours, checked by the crate's verifier (what earlier versions stored and checked).
        let ours = hash_password_in("roach", &mut memory);
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"roach", &parsed).is_ok());
        assert!(
            Argon2::default()
                .verify_password(b"kelpie", &parsed)
                .is_err()
        );
        // The crate's, with other parameters, checked by ours in the same (dirty) memory.
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::new(2048, 3, 2, Some(40)).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"kelpie", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password_in("kelpie", &theirs, &mut memory));
        assert!(!verify_password_in("roach", &theirs, &mut memory));
        assert!(verify_password_in("roach", &ours, &mut memory));
        // A stored hash asking for absurd memory is refused, not computed.
        let greedy = ours.replace("m=19456", "m=4294967295");
        assert!(!verify_password_in("roach", &greedy, &mut memory));
    }

    #[test]
    fn generated_passwords_are_24_chars() {
        assert_eq!(generate_password().chars().count(), 24);
    }
}
