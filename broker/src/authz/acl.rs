//! ACL bindings and filters as Kafka defines them (`org.apache.kafka.common.acl` and
//! `org.apache.kafka.common.resource`): the wire codes, which operations each resource
//! type supports, and how a filter matches a binding.

/// The pattern name that matches every resource of its type (Kafka's
/// `ResourcePattern.WILDCARD_RESOURCE`).
pub const WILDCARD: &str = "*";

/// The only name a Cluster resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The principal of a connection that did not authenticate (plaintext, or TLS without
/// a client certificate), as Kafka names it.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// The principal an ACL uses to mean "everyone".
pub const ANY_USER: &str = "User:*";

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $code:literal => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant = $code),+
        }

        impl $name {
            /// From its wire code; `None` for codes Kafka does not define.
            pub fn from_code(code: i8) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// Its wire code.
            pub fn code(self) -> i8 {
                self as i8
            }

            /// Kafka's name for it (as `kafka-acls.sh` and the README spell it).
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// From Kafka's name, case and `_`/`-` insensitive.
            pub fn from_name(text: &str) -> Option<Self> {
                let wanted: String = text.chars().filter(|c| *c != '_' && *c != '-').collect();
                [$(Self::$variant),+]
                    .into_iter()
                    .find(|v| v.name().replace('_', "").eq_ignore_ascii_case(&wanted))
            }
        }
    };
}

wire_enum!(
    /// What an ACL is about (`ResourceType`).
    ResourceType {
        /// Unknown (a newer client's type): never matches.
        Unknown = 0 => "UNKNOWN",
        /// Filters only: any type.
        Any = 1 => "ANY",
        /// A topic.
        Topic = 2 => "TOPIC",
        /// A consumer group.
        Group = 3 => "GROUP",
        /// The cluster (`kafka-cluster`).
        Cluster = 4 => "CLUSTER",
        /// A transactional id.
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        /// A delegation token (no token APIs here; accepted for completeness).
        DelegationToken = 6 => "DELEGATION_TOKEN",
        /// A user (token APIs).
        User = 7 => "USER",
    }
);

wire_enum!(
    /// How an ACL's resource name is matched (`PatternType`).
    PatternType {
        /// Unknown: never matches.
        Unknown = 0 => "UNKNOWN",
        /// Filters only: any pattern type, names compared exactly.
        Any = 1 => "ANY",
        /// Filters only: every binding that would apply to the named resource.
        Match = 2 => "MATCH",
        /// The exact name, or `*` for every resource.
        Literal = 3 => "LITERAL",
        /// Every resource whose name starts with the pattern.
        Prefixed = 4 => "PREFIXED",
    }
);

wire_enum!(
    /// What an ACL allows or denies (`AclOperation`).
    Operation {
        /// Unknown: never matches.
        Unknown = 0 => "UNKNOWN",
        /// Filters only.
        Any = 1 => "ANY",
        /// Every operation.
        All = 2 => "ALL",
        /// Consume, commit offsets, join groups.
        Read = 3 => "READ",
        /// Produce.
        Write = 4 => "WRITE",
        /// Create topics.
        Create = 5 => "CREATE",
        /// Delete topics, records, groups.
        Delete = 6 => "DELETE",
        /// Add partitions, change ACLs.
        Alter = 7 => "ALTER",
        /// See that something exists.
        Describe = 8 => "DESCRIBE",
        /// Broker-to-broker requests.
        ClusterAction = 9 => "CLUSTER_ACTION",
        /// Read configs.
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        /// Change configs.
        AlterConfigs = 11 => "ALTER_CONFIGS",
        /// Idempotent producers (cluster).
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        /// Create delegation tokens.
        CreateTokens = 13 => "CREATE_TOKENS",
        /// Describe delegation tokens.
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
        /// Two-phase commit transactions (KIP-939).
        TwoPhaseCommit = 15 => "TWO_PHASE_COMMIT",
    }
);

wire_enum!(
    /// Whether an ACL allows or denies (`AclPermissionType`).
    Permission {
        /// Unknown: never matches.
        Unknown = 0 => "UNKNOWN",
        /// Filters only.
        Any = 1 => "ANY",
        /// Refuses; wins over every ALLOW.
        Deny = 2 => "DENY",
        /// Allows.
        Allow = 3 => "ALLOW",
    }
);

impl ResourceType {
    /// The operations an ACL on this resource type may name (besides ALL), as Kafka's
    /// `AclEntry.supportedOperations`; also what an authorized-operations bitfield
    /// covers.
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write, TwoPhaseCommit],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
            ResourceType::Unknown | ResourceType::Any => &[],
        }
    }
}

impl Operation {
    /// Whether an ALLOW ACL for `self` also allows `wanted`: ALL allows everything,
    /// READ/WRITE/DELETE/ALTER imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS.
    pub fn allows(self, wanted: Operation) -> bool {
        use Operation::*;
        self == All
            || self == wanted
            || (wanted == Describe && matches!(self, Read | Write | Delete | Alter))
            || (wanted == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY ACL for `self` refuses `wanted` (no implication for denials).
    pub fn denies(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The resource name or prefix (`*` with LITERAL: all).
    pub name: String,
    /// LITERAL or PREFIXED.
    pub pattern: PatternType,
    /// `Type:name`, e.g. `User:alice` or `User:*`.
    pub principal: String,
    /// The client's IP address, or `*`.
    pub host: String,
    /// The operation.
    pub operation: Operation,
    /// ALLOW or DENY.
    pub permission: Permission,
}

/// Why a binding cannot be created (Kafka answers INVALID_REQUEST with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAcl {
    /// UNKNOWN or ANY where a concrete value is needed.
    #[error("{0} is not valid in an ACL binding")]
    NotConcrete(&'static str),
    /// The principal is not `Type:name`.
    #[error("could not parse principal `{0}`: expected Type:name, e.g. User:alice")]
    Principal(String),
    /// Empty resource name.
    #[error("resource name must not be empty")]
    EmptyName,
    /// A Cluster ACL on another name.
    #[error("the cluster resource is named {CLUSTER_NAME} and matched LITERAL")]
    ClusterName,
    /// A NUL character in a name, principal or host (no Kafka name has one).
    #[error("names, principals and hosts must not contain NUL")]
    Nul,
    /// An operation the resource type does not have.
    #[error("operation {0} does not apply to resource type {1}")]
    Operation(&'static str, &'static str),
}

impl AclBinding {
    /// Checks a binding to be created as Kafka's `AclControlManager.validateNewAcl` does.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        if matches!(
            self.resource_type,
            ResourceType::Unknown | ResourceType::Any
        ) {
            return Err(InvalidAcl::NotConcrete("resource type"));
        }
        if !matches!(self.pattern, PatternType::Literal | PatternType::Prefixed) {
            return Err(InvalidAcl::NotConcrete("pattern type"));
        }
        if matches!(self.operation, Operation::Unknown | Operation::Any) {
            return Err(InvalidAcl::NotConcrete("operation"));
        }
        if matches!(self.permission, Permission::Unknown | Permission::Any) {
            return Err(InvalidAcl::NotConcrete("permission type"));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Err(InvalidAcl::Principal(self.principal.clone())),
        }
        if self.name.is_empty() {
            return Err(InvalidAcl::EmptyName);
        }
        if [&self.name, &self.principal, &self.host]
            .iter()
            .any(|s| s.contains('\0'))
        {
            return Err(InvalidAcl::Nul);
        }
        if self.resource_type == ResourceType::Cluster
            && (self.name != CLUSTER_NAME || self.pattern != PatternType::Literal)
        {
            return Err(InvalidAcl::ClusterName);
        }
        if self.operation != Operation::All
            && !self.resource_type.operations().contains(&self.operation)
        {
            return Err(InvalidAcl::Operation(
                self.operation.name(),
                self.resource_type.name(),
            ));
        }
        Ok(())
    }

    /// Whether this binding's pattern covers the resource `name` of `kind`.
    pub fn covers(&self, kind: ResourceType, name: &str) -> bool {
        self.resource_type == kind
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == WILDCARD,
                PatternType::Prefixed => name.starts_with(self.name.as_str()),
                _ => false,
            }
    }

    /// Whether this binding applies to `principal` connecting from `host`.
    pub fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == ANY_USER)
            && (self.host == host || self.host == WILDCARD)
    }
}

/// A DescribeAcls or DeleteAcls filter (`AclBindingFilter`): `None` strings match
/// anything, as do ANY codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// ANY or one type.
    pub resource_type: ResourceType,
    /// A name, or any.
    pub name: Option<String>,
    /// ANY, MATCH, LITERAL or PREFIXED.
    pub pattern: PatternType,
    /// A principal, or any.
    pub principal: Option<String>,
    /// A host, or any.
    pub host: Option<String>,
    /// ANY or one operation.
    pub operation: Operation,
    /// ANY, ALLOW or DENY.
    pub permission: Permission,
}

impl AclFilter {
    /// Whether the filter names something this broker does not know (Kafka refuses
    /// such filters with INVALID_REQUEST).
    pub fn is_unknown(&self) -> bool {
        self.resource_type == ResourceType::Unknown
            || self.pattern == PatternType::Unknown
            || self.operation == Operation::Unknown
            || self.permission == Permission::Unknown
    }

    /// Whether `binding` matches, as `AclBindingFilter.matches`.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_pattern(binding)
            && self
                .principal
                .as_ref()
                .is_none_or(|p| *p == binding.principal)
            && self.host.as_ref().is_none_or(|h| *h == binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }

    /// `ResourcePatternFilter.matches`.
    fn matches_pattern(&self, binding: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != binding.resource_type {
            return false;
        }
        if !matches!(self.pattern, PatternType::Any | PatternType::Match)
            && self.pattern != binding.pattern
        {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        if self.pattern == PatternType::Any || self.pattern == binding.pattern {
            return *name == binding.name;
        }
        match binding.pattern {
            PatternType::Literal => *name == binding.name || binding.name == WILDCARD,
            PatternType::Prefixed => name.starts_with(binding.name.as_str()),
            _ => false,
        }
    }
}
