//! ACL bindings in the metadata store: one key per binding, so creating the same
//! binding twice keeps one and deleting is a key removal.

use super::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};

/// The sled tree holding the bindings.
const TREE: &str = "acls";

/// Reading or writing the ACLs failed.
#[derive(Debug, thiserror::Error)]
pub enum AclStoreError {
    /// The metadata store failed.
    #[error("ACL store: {0}")]
    Store(#[from] sled::Error),
    /// A stored key does not decode (written by a newer agentlog, or damaged).
    #[error("ACL store: undecodable binding {0:?}")]
    Corrupt(String),
}

/// The bindings' tree.
#[derive(Debug)]
pub(super) struct AclStore {
    tree: sled::Tree,
}

impl AclStore {
    pub(super) fn open(db: &sled::Db) -> Result<Self, AclStoreError> {
        Ok(AclStore {
            tree: db.open_tree(TREE)?,
        })
    }

    pub(super) fn load(&self) -> Result<Vec<AclBinding>, AclStoreError> {
        let mut out = Vec::new();
        for entry in self.tree.iter() {
            let (key, _) = entry?;
            out.push(decode(&key)?);
        }
        Ok(out)
    }

    pub(super) fn insert(&self, binding: &AclBinding) -> Result<(), AclStoreError> {
        self.tree.insert(encode(binding), Vec::<u8>::new())?;
        Ok(())
    }

    pub(super) fn remove(&self, binding: &AclBinding) -> Result<(), AclStoreError> {
        self.tree.remove(encode(binding))?;
        Ok(())
    }

    pub(super) fn flush(&self) -> Result<(), AclStoreError> {
        self.tree.flush()?;
        Ok(())
    }
}

/// `type \0 pattern \0 name \0 principal \0 host \0 operation \0 permission`, with the
/// enums by Kafka name (names never contain NUL: Kafka's names and principals are
/// printable).
fn encode(b: &AclBinding) -> Vec<u8> {
    [
        b.resource_type.name(),
        b.pattern.name(),
        &b.name,
        &b.principal,
        &b.host,
        b.operation.name(),
        b.permission.name(),
    ]
    .join("\0")
    .into_bytes()
}

fn decode(key: &[u8]) -> Result<AclBinding, AclStoreError> {
    let text = String::from_utf8_lossy(key);
    let corrupt = || AclStoreError::Corrupt(text.to_string());
    let parts: Vec<&str> = text.split('\0').collect();
    let [kind, pattern, name, principal, host, op, permission] = parts.as_slice() else {
        return Err(corrupt());
    };
    Ok(AclBinding {
        resource_type: ResourceType::from_name(kind).ok_or_else(corrupt)?,
        pattern: PatternType::from_name(pattern).ok_or_else(corrupt)?,
        name: name.to_string(),
        principal: principal.to_string(),
        host: host.to_string(),
        operation: Operation::from_name(op).ok_or_else(corrupt)?,
        permission: Permission::from_name(permission).ok_or_else(corrupt)?,
    })
}
