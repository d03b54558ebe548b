//! Authorization: Kafka's ACL model (principals, resources, operations, ALLOW/DENY)
//! checked on every request once `authorizer.enable` is on.
//!
//! The decision is Kafka's `StandardAuthorizer`'s: super users may do anything; any
//! matching DENY refuses; else a matching ALLOW (with Kafka's implied operations)
//! allows; a resource with no ACL at all is allowed only when
//! `allow.everyone.if.no.acl.found` is true. Bindings live in the metadata store and
//! in memory (a short list read under a lock on every check).
//!
//! [`enforce`] applies the decision to each request, the way `KafkaApis` does: topics
//! the caller may not see drop out of Metadata, denied partitions answer
//! TOPIC_AUTHORIZATION_FAILED and the rest proceed, and so on.

pub mod acl;
pub mod enforce;
mod store;

use std::sync::{Arc, RwLock};

pub use acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
pub use store::AclStoreError;

use crate::config::BrokerConfig;

/// Who sent a request, for the authorizer: the principal (`User:alice`,
/// `User:ANONYMOUS`) and the client's IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `Type:name`.
    pub principal: Arc<str>,
    /// The client's IP address as text (what an ACL's host is compared with).
    pub host: String,
}

impl Session {
    /// A session for `principal` connecting from `host`.
    pub fn new(principal: &str, host: impl Into<String>) -> Self {
        Session {
            principal: Arc::from(principal),
            host: host.into(),
        }
    }
}

/// The broker's authorizer: whether it is on, its super users, and the ACLs.
#[derive(Debug)]
pub struct Authorizer {
    enabled: bool,
    super_users: Vec<String>,
    allow_if_no_acl: bool,
    acls: RwLock<Vec<AclBinding>>,
    store: store::AclStore,
}

impl Authorizer {
    /// Loads the ACLs from the metadata store and reads the settings.
    pub fn open(db: &sled::Db, config: &BrokerConfig) -> Result<Self, AclStoreError> {
        let store = store::AclStore::open(db)?;
        let acls = store.load()?;
        let class = config.get_or("authorizer.class.name", String::new());
        let enabled = config.get_or("authorizer.enable", false) || !class.trim().is_empty();
        let super_users = config
            .get_or("super.users", String::new())
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(Authorizer {
            enabled,
            super_users,
            allow_if_no_acl: config.get_or("allow.everyone.if.no.acl.found", false),
            acls: RwLock::new(acls),
            store,
        })
    }

    /// Whether ACLs are enforced (off: every client may do everything, as on a Kafka
    /// broker without `authorizer.class.name`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `session` may perform `op` on the resource `name` of `kind`. Always true
    /// while the authorizer is off.
    pub fn authorize(
        &self,
        session: &Session,
        op: Operation,
        kind: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled || self.is_super(&session.principal) {
            return true;
        }
        let acls = self.acls.read().unwrap_or_else(|p| p.into_inner());
        let mut found = false;
        let mut allowed = false;
        for acl in acls.iter().filter(|a| a.covers(kind, name)) {
            found = true;
            if !acl.applies_to(&session.principal, &session.host) {
                continue;
            }
            match acl.permission {
                Permission::Deny if acl.operation.denies(op) => return false,
                Permission::Allow if acl.operation.allows(op) => allowed = true,
                _ => {}
            }
        }
        allowed || (!found && self.allow_if_no_acl)
    }

    /// Whether `session` may perform `op` on at least one resource of `kind` (Kafka's
    /// `authorizeByResourceType`, used for idempotent producers holding WRITE on some
    /// topic): an ALLOW that applies, unless a DENY for every resource of the type
    /// (LITERAL `*` or PREFIXED "") applies too.
    pub fn authorize_any(&self, session: &Session, op: Operation, kind: ResourceType) -> bool {
        if !self.enabled || self.is_super(&session.principal) {
            return true;
        }
        let acls = self.acls.read().unwrap_or_else(|p| p.into_inner());
        let applicable = || {
            acls.iter().filter(move |a| {
                a.resource_type == kind && a.applies_to(&session.principal, &session.host)
            })
        };
        let denied_everywhere = applicable().any(|a| {
            a.permission == Permission::Deny
                && a.operation.denies(op)
                && a.covers(kind, "")
                && (a.name == acl::WILDCARD || a.pattern == PatternType::Prefixed)
        });
        if denied_everywhere {
            return false;
        }
        applicable().any(|a| a.permission == Permission::Allow && a.operation.allows(op))
            || (self.allow_if_no_acl && !acls.iter().any(|a| a.resource_type == kind))
    }

    /// Kafka's authorized-operations bitfield for one resource: bit `code` set for each
    /// of the type's operations `session` may perform (all of them while the authorizer
    /// is off).
    pub fn operations_bitfield(
        &self,
        session: Option<&Session>,
        kind: ResourceType,
        name: &str,
    ) -> i32 {
        kind.operations()
            .iter()
            .filter(|op| session.is_none_or(|s| self.authorize(s, **op, kind, name)))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// Adds bindings (already validated); an existing identical binding is kept once.
    pub fn create(&self, bindings: &[AclBinding]) -> Result<(), AclStoreError> {
        let mut acls = self.acls.write().unwrap_or_else(|p| p.into_inner());
        for binding in bindings {
            self.store.insert(binding)?;
            if !acls.contains(binding) {
                acls.push(binding.clone());
            }
        }
        self.store.flush()
    }

    /// The bindings `filter` matches.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        let acls = self.acls.read().unwrap_or_else(|p| p.into_inner());
        acls.iter().filter(|a| filter.matches(a)).cloned().collect()
    }

    /// Removes and returns the bindings `filter` matches.
    pub fn delete(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, AclStoreError> {
        let mut acls = self.acls.write().unwrap_or_else(|p| p.into_inner());
        let (gone, kept): (Vec<_>, Vec<_>) = acls.drain(..).partition(|a| filter.matches(a));
        *acls = kept;
        for binding in &gone {
            if let Err(error) = self.store.remove(binding) {
                // Nothing is reported deleted: keep enforcing every matched binding
                // (the store may have dropped some of them already; a retry finishes).
                acls.extend(gone.iter().cloned());
                return Err(error);
            }
        }
        self.store.flush()?;
        Ok(gone)
    }

    fn is_super(&self, principal: &str) -> bool {
        self.super_users.iter().any(|s| s == principal)
    }
}

#[cfg(test)]
mod tests;
