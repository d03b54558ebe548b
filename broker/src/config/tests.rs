//! The settings table's parsing, precedence, validation and README agreement.

use super::*;

#[test]
fn kafka_names_toml_names_and_env_names_are_the_same_setting() {
    let mut config = BrokerConfig::default();
    config.set("num.partitions", "3").unwrap();
    assert_eq!(config.num_partitions(), 3);
    config
        .apply_toml("num_partitions = 4\n[log]\nsegment.bytes = 1024\n")
        .unwrap();
    assert_eq!(config.num_partitions(), 4);
    assert_eq!(config.log_config(&BTreeMap::new()).segment_bytes, 1024);
    let ignored = config
        .apply_env([
            ("AGENTLOG_NUM_PARTITIONS".to_string(), "5".to_string()),
            ("AGENTLOG_BIN".to_string(), "/usr/bin/agentlog".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ])
        .unwrap();
    assert_eq!(config.num_partitions(), 5);
    assert_eq!(ignored, vec!["AGENTLOG_BIN".to_string()]);
    assert!(config
        .apply_env([("AGENTLOG_NUM_PARTITIONS".to_string(), "x".to_string())])
        .is_err());
    assert_eq!(
        config.value("num.partitions").unwrap().1,
        ConfigSource::StaticBroker
    );
    assert_eq!(
        config.value("message.max.bytes").unwrap().1,
        ConfigSource::Default
    );
}

#[test]
fn bad_values_and_names_are_refused_with_their_names() {
    let mut config = BrokerConfig::default();
    assert_eq!(
        config.set("num.partitions", "zero"),
        Err(ConfigError::Invalid {
            name: "num.partitions".into(),
            value: "zero".into()
        })
    );
    assert!(config.set("num.partitions", "0").is_err());
    assert!(matches!(
        config.set("no.such.thing", "1"),
        Err(ConfigError::Unknown(_))
    ));
    assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
    assert!(validate_topic_config("cleanup.policy", "shred").is_err());
    assert!(validate_topic_config("retention.ms", "-2").is_err());
    // Kafka 4.2: an empty policy is no cleanup at all.
    assert!(validate_topic_config("cleanup.policy", "").is_ok());
    assert!(validate_topic_config("remote.storage.enable", "true").is_err());
    assert!(validate_topic_config("remote.storage.enable", "false").is_ok());
    assert!(validate_topic_config("local.retention.ms", "-2").is_ok());
    assert!(validate_topic_config("max.compaction.lag.ms", "0").is_err());
    assert!(config.set("process.roles", "broker").is_err());
    assert!(config.set("num.io.threads", "16").is_ok());
}

#[test]
fn topic_values_fall_back_to_broker_synonyms_then_defaults() {
    let mut config = BrokerConfig::default();
    config.set("log.segment.bytes", "2048").unwrap();
    let mut overrides = BTreeMap::new();
    assert_eq!(
        config.topic_value(&overrides, "segment.bytes"),
        Some(("2048".into(), ConfigSource::StaticBroker))
    );
    overrides.insert("segment.bytes".to_string(), "4096".to_string());
    assert_eq!(
        config.topic_value(&overrides, "segment.bytes"),
        Some(("4096".into(), ConfigSource::DynamicTopic))
    );
    assert_eq!(
        config.topic_value(&overrides, "cleanup.policy"),
        Some(("delete".into(), ConfigSource::Default))
    );
}

#[test]
fn identity_settings_report_the_values_in_force() {
    let mut config = BrokerConfig::with_data_dir("/data");
    config
        .set("listeners", "PLAINTEXT://127.0.0.1:9092")
        .unwrap();
    let value = |name| config.value(name).map(|(v, _)| v);
    assert_eq!(
        value("listeners").as_deref(),
        Some("PLAINTEXT://127.0.0.1:9092")
    );
    assert_eq!(value("advertised.listeners"), value("listeners"));
    assert_eq!(value("log.dirs").as_deref(), Some("/data"));
    assert_eq!(value("process.roles").as_deref(), Some("broker,controller"));
    // A topic setting's broker default comes under Kafka's synonym.
    config
        .set("log.message.timestamp.after.max.ms", "1000")
        .unwrap();
    assert_eq!(
        config.topic_value(&BTreeMap::new(), "message.timestamp.after.max.ms"),
        Some(("1000".into(), ConfigSource::StaticBroker))
    );
}

#[test]
fn listeners_parse_with_or_without_scheme() {
    let mut config = BrokerConfig::default();
    config
        .set("listen", "PLAINTEXT://127.0.0.1:0,[::1]:9093")
        .unwrap();
    assert_eq!(config.listeners.len(), 2);
    assert!(config.set("listen", "nonsense").is_err());
    config.set("advertise", "example.com:9092").unwrap();
    assert_eq!(
        config.advertised,
        vec![(SecurityProtocol::Plaintext, "example.com:9092".to_string())]
    );
}

#[test]
fn the_readme_documents_every_setting() {
    let readme = include_str!("../../../README.md");
    let names = BROKER_CONFIGS
        .iter()
        .map(|d| d.name)
        .chain(TOPIC_CONFIGS.iter().map(|(d, _)| d.name))
        .chain(GROUP_CONFIGS.iter().map(|(d, _, _)| d.name));
    for name in names {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README does not document `{name}`"
        );
    }
}

#[test]
fn the_readme_toml_example_is_accepted_verbatim() {
    let readme = include_str!("../../../README.md");
    let example = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a toml example");
    let mut config = BrokerConfig::default();
    config.apply_toml(example).unwrap();
    assert_eq!(config.num_partitions(), 3);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/agentlog"));
    assert_eq!(
        config.log_config(&BTreeMap::new()).segment_bytes,
        268_435_456
    );
}

#[test]
fn agent_runtime_keys_are_left_alone() {
    let mut config = BrokerConfig::default();
    config
        .apply_toml(
            "backend = \"kafka\"\nbootstrap = \"k:9092\"\nnum.partitions = 2\n\
             [agents_backend.properties]\n\"a.b\" = 1\n\
             [[agents]]\nname = \"r\"\ntopics = [\"t\"]\n\
             [[uplinks]]\nname = \"c\"\nbootstrap = \"central:9092\"\n\
             [uplinks.properties]\n\"security.protocol\" = \"ssl\"\n",
        )
        .unwrap();
    assert_eq!(config.num_partitions(), 2);
}

/// The README's principal-mapping example (Security, "Principals") is accepted as it is
/// printed, and maps the subject its comment names to the name it promises.
#[test]
fn the_readme_principal_mapping_example_is_accepted_verbatim() {
    let readme = include_str!("../../../README.md");
    let example = readme
        .split("```toml\n")
        .map(|rest| rest.split("```").next().unwrap_or_default())
        .find(|block| block.contains("ssl.principal.mapping.rules"))
        .expect("README has the principal-mapping example");
    let mut config = BrokerConfig::default();
    config.apply_toml(example).unwrap();
    let rules = config.get_or("ssl.principal.mapping.rules", String::new());
    let mapper = crate::security::principal_mapping::PrincipalMapper::parse(&rules).unwrap();
    assert_eq!(mapper.name("CN=alice,OU=eng,O=acme").unwrap(), "alice");
    assert_eq!(
        mapper.name("CN=bob,OU=ops,O=acme").unwrap(),
        "CN=bob,OU=ops,O=acme"
    );
    assert_eq!(config.get_or("ssl.client.auth", String::new()), "required");
}
