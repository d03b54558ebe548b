//! SCRAM credentials (RFC 5802): per user and mechanism, the salt, the iteration count
//! and the two keys derived from the salted password, kept in the metadata store. The
//! password itself is never stored; PLAIN logins are checked against the same keys.

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The sled tree holding credentials, keyed by `mechanism \0 user`.
const TREE: &str = "scram_credentials";

/// Iterations Kafka accepts for SCRAM credentials (its ScramMechanism bounds).
pub const MIN_ITERATIONS: u32 = 4096;
/// See [`MIN_ITERATIONS`].
pub const MAX_ITERATIONS: u32 = 16384;

/// The SCRAM hash functions Kafka supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    /// Both, in the order credentials are listed.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// From a SASL mechanism name.
    pub fn from_name(name: &str) -> Option<Self> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's wire code (AlterUserScramCredentials / DescribeUserScramCredentials).
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// From Kafka's wire code.
    pub fn from_code(code: i8) -> Option<Self> {
        ScramMechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    /// HMAC with this mechanism's hash.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => mac::<Hmac<Sha256>>(key, data),
            ScramMechanism::Sha512 => mac::<Hmac<Sha512>>(key, data),
        }
    }

    /// This mechanism's hash.
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    match <M as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A new random salt (32 bytes, as Kafka's tools use).
pub fn random_salt() -> Vec<u8> {
    let mut salt = vec![0u8; 32];
    rand::rng().fill_bytes(&mut salt);
    salt
}

/// What is stored for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// Random per credential.
    pub salt: Vec<u8>,
    /// H(HMAC(SaltedPassword, "Client Key")): checks a client's proof.
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key"): proves the server knew the password.
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl ScramCredential {
    /// Derives the stored keys from a salted password (what AlterUserScramCredentials
    /// carries; the client salted it).
    pub fn from_salted(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// A fresh credential for a password, with a random salt.
    pub fn new(mechanism: ScramMechanism, password: &str, iterations: u32) -> Self {
        let salt = random_salt();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted(mechanism, salt, &salted, iterations)
    }

    /// Whether `password` is the one this credential was made from (PLAIN logins).
    pub fn matches_password(&self, mechanism: ScramMechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        bool::from(mechanism.hash(&client_key).ct_eq(&self.stored_key))
    }
}

/// Reading or writing the credential store failed.
#[derive(Debug, Error)]
pub enum CredentialError {
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record does not parse (written by a newer version, or damaged).
    #[error("stored credential for `{0}` is unreadable")]
    Corrupt(String),
}

/// The users and their SCRAM credentials, persisted in the broker's metadata store.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    tree: sled::Tree,
}

fn key(user: &str, mechanism: ScramMechanism) -> Vec<u8> {
    let mut key = mechanism.name().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(user.as_bytes());
    key
}

impl CredentialStore {
    /// Opens the store's tree in the metadata database.
    pub fn open(db: &sled::Db) -> Result<Self, CredentialError> {
        Ok(CredentialStore {
            tree: db.open_tree(TREE)?,
        })
    }

    /// The credential of `user` for `mechanism`, if any.
    pub fn get(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredential>, CredentialError> {
        match self.tree.get(key(user, mechanism))? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| CredentialError::Corrupt(user.to_string())),
        }
    }

    /// Adds or replaces a credential, durably.
    pub fn put(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        credential: &ScramCredential,
    ) -> Result<(), CredentialError> {
        let bytes = serde_json::to_vec(credential)
            .map_err(|_| CredentialError::Corrupt(user.to_string()))?;
        self.tree.insert(key(user, mechanism), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Removes a credential; whether there was one.
    pub fn remove(&self, user: &str, mechanism: ScramMechanism) -> Result<bool, CredentialError> {
        let existed = self.tree.remove(key(user, mechanism))?.is_some();
        self.tree.flush()?;
        Ok(existed)
    }

    /// Every user with the mechanisms and iteration counts of their credentials,
    /// sorted by user name.
    pub fn list(&self) -> Result<Vec<(String, ScramMechanism, u32)>, CredentialError> {
        let mut out = Vec::new();
        for entry in self.tree.iter() {
            let (raw_key, value) = entry?;
            let text = String::from_utf8_lossy(&raw_key);
            let Some((mech, user)) = text.split_once('\0') else {
                continue;
            };
            let Some(mechanism) = ScramMechanism::from_name(mech) else {
                continue;
            };
            let credential: ScramCredential = serde_json::from_slice(&value)
                .map_err(|_| CredentialError::Corrupt(user.to_string()))?;
            out.push((user.to_string(), mechanism, credential.iterations));
        }
        out.sort_by(|a, b| (&a.0, a.1.code()).cmp(&(&b.0, b.1.code())));
        Ok(out)
    }

    /// Checks a PLAIN login against any stored credential of the user.
    pub fn check_password(&self, user: &str, password: &str) -> Result<bool, CredentialError> {
        for mechanism in ScramMechanism::ALL {
            if let Some(credential) = self.get(user, mechanism)? {
                return Ok(credential.matches_password(mechanism, password));
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector_keys_and_plain_checks() {
        // RFC 7677 section 3: user "user", password "pencil", 4096 iterations.
        let salt = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            "W22ZaJ0SNY7soEsUEjb6gQ==",
        )
        .unwrap();
        let mech = ScramMechanism::Sha256;
        let salted = mech.salted_password(b"pencil", &salt, 4096);
        let credential = ScramCredential::from_salted(mech, salt, &salted, 4096);
        assert!(credential.matches_password(mech, "pencil"));
        assert!(!credential.matches_password(mech, "pencil2"));

        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = CredentialStore::open(&db).unwrap();
        store.put("user", mech, &credential).unwrap();
        assert!(store.check_password("user", "pencil").unwrap());
        assert!(!store.check_password("user", "wrong").unwrap());
        assert!(!store.check_password("nobody", "pencil").unwrap());
        assert_eq!(store.list().unwrap(), vec![("user".into(), mech, 4096)]);
        assert!(store.remove("user", mech).unwrap());
        assert!(store.list().unwrap().is_empty());
    }
}
