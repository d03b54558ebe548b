use super::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use super::{Authorizer, Session};
use crate::config::BrokerConfig;

fn authorizer(settings: &[(&str, &str)]) -> (Authorizer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let mut config = BrokerConfig::with_data_dir(dir.path());
    config.set("authorizer.enable", "true").unwrap();
    for (k, v) in settings {
        config.set(k, v).unwrap();
    }
    (Authorizer::open(&db, &config).unwrap(), dir)
}

fn acl(
    kind: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    op: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: kind,
        name: name.into(),
        pattern,
        principal: principal.into(),
        host: "*".into(),
        operation: op,
        permission,
    }
}

fn alice() -> Session {
    Session::new("User:alice", "127.0.0.1")
}

#[test]
fn nothing_is_allowed_without_acls_unless_configured() {
    let (authz, _dir) = authorizer(&[]);
    assert!(!authz.authorize(&alice(), Operation::Read, ResourceType::Topic, "t"));
    let (open, _dir) = authorizer(&[("allow.everyone.if.no.acl.found", "true")]);
    assert!(open.authorize(&alice(), Operation::Read, ResourceType::Topic, "t"));
    let (sup, _dir) = authorizer(&[("super.users", "User:bob; User:alice")]);
    assert!(sup.authorize(
        &alice(),
        Operation::Alter,
        ResourceType::Cluster,
        "kafka-cluster"
    ));
}

#[test]
fn allow_implies_describe_and_deny_wins() {
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    let (authz, _dir) = authorizer(&[("allow.everyone.if.no.acl.found", "true")]);
    authz
        .create(&[
            acl(
                ResourceType::Topic,
                "orders-",
                Prefixed,
                "User:alice",
                Write,
                Allow,
            ),
            acl(
                ResourceType::Topic,
                "orders-secret",
                Literal,
                "User:*",
                All,
                Deny,
            ),
            acl(
                ResourceType::Topic,
                "*",
                Literal,
                "User:alice",
                AlterConfigs,
                Allow,
            ),
        ])
        .unwrap();
    let s = alice();
    assert!(authz.authorize(&s, Write, ResourceType::Topic, "orders-eu"));
    assert!(authz.authorize(&s, Describe, ResourceType::Topic, "orders-eu"));
    assert!(!authz.authorize(&s, Read, ResourceType::Topic, "orders-eu"));
    assert!(!authz.authorize(&s, Write, ResourceType::Topic, "orders-secret"));
    assert!(authz.authorize(&s, DescribeConfigs, ResourceType::Topic, "anything"));
    // The wildcard ACL covers every topic, so none is "without ACLs" any more.
    assert!(!authz.authorize(
        &Session::new("User:eve", "1.2.3.4"),
        Read,
        ResourceType::Topic,
        "x"
    ));
    // A group no ACL covers falls back to allow.everyone.if.no.acl.found.
    assert!(authz.authorize(&s, Read, ResourceType::Group, "g"));
    let bits = authz.operations_bitfield(Some(&s), ResourceType::Topic, "orders-eu");
    let expected = [Write, Describe, DescribeConfigs, AlterConfigs]
        .iter()
        .fold(0, |b, op| b | (1 << op.code()));
    assert_eq!(bits, expected);
}

#[test]
fn hosts_must_match() {
    let (authz, _dir) = authorizer(&[]);
    let mut binding = acl(
        ResourceType::Group,
        "g",
        PatternType::Literal,
        "User:alice",
        Operation::Read,
        Permission::Allow,
    );
    binding.host = "10.0.0.1".into();
    authz.create(&[binding]).unwrap();
    assert!(!authz.authorize(&alice(), Operation::Read, ResourceType::Group, "g"));
    let remote = Session::new("User:alice", "10.0.0.1");
    assert!(authz.authorize(&remote, Operation::Read, ResourceType::Group, "g"));
}

#[test]
fn filters_match_as_kafka() {
    use PatternType::*;
    let prefixed = acl(
        ResourceType::Topic,
        "ord",
        Prefixed,
        "User:a",
        Operation::Read,
        Permission::Allow,
    );
    let wildcard = acl(
        ResourceType::Topic,
        "*",
        Literal,
        "User:a",
        Operation::Read,
        Permission::Allow,
    );
    let exact = acl(
        ResourceType::Topic,
        "orders",
        Literal,
        "User:a",
        Operation::Read,
        Permission::Allow,
    );
    let filter = |pattern, name: &str| AclFilter {
        resource_type: ResourceType::Topic,
        name: Some(name.into()),
        pattern,
        principal: None,
        host: None,
        operation: Operation::Any,
        permission: Permission::Any,
    };
    let matched = |f: &AclFilter| {
        [&prefixed, &wildcard, &exact]
            .iter()
            .filter(|b| f.matches(b))
            .count()
    };
    assert_eq!(matched(&filter(Match, "orders")), 3);
    assert_eq!(matched(&filter(Any, "orders")), 1);
    assert_eq!(matched(&filter(Literal, "ord")), 0);
    assert_eq!(matched(&filter(Prefixed, "ord")), 1);
    assert!(filter(PatternType::Unknown, "x").is_unknown());
}

#[test]
fn invalid_bindings_are_refused_and_acls_persist() {
    use PatternType::*;
    let bad = acl(
        ResourceType::Group,
        "g",
        Literal,
        "alice",
        Operation::Read,
        Permission::Allow,
    );
    assert!(bad.validate().is_err());
    let bad = acl(
        ResourceType::Group,
        "g",
        Literal,
        "User:a",
        Operation::Write,
        Permission::Allow,
    );
    assert!(bad.validate().is_err());
    let bad = acl(
        ResourceType::Cluster,
        "c",
        Literal,
        "User:a",
        Operation::Alter,
        Permission::Allow,
    );
    assert!(bad.validate().is_err());
    let good = acl(
        ResourceType::Cluster,
        "kafka-cluster",
        Literal,
        "User:a",
        Operation::Alter,
        Permission::Allow,
    );
    assert_eq!(good.validate(), Ok(()));

    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::with_data_dir(dir.path());
    config
        .set(
            "authorizer.class.name",
            "kafka.security.authorizer.AclAuthorizer",
        )
        .unwrap();
    {
        let db = sled::open(dir.path().join("m")).unwrap();
        let authz = Authorizer::open(&db, &config).unwrap();
        assert!(authz.enabled());
        authz.create(&[good.clone(), good.clone()]).unwrap();
    }
    let db = sled::open(dir.path().join("m")).unwrap();
    let authz = Authorizer::open(&db, &config).unwrap();
    let everything = AclFilter {
        resource_type: ResourceType::Any,
        name: None,
        pattern: Any,
        principal: None,
        host: None,
        operation: Operation::Any,
        permission: Permission::Any,
    };
    assert_eq!(authz.describe(&everything), vec![good.clone()]);
    assert_eq!(authz.delete(&everything).unwrap(), vec![good]);
    assert!(authz.describe(&everything).is_empty());
}
