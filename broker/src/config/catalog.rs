//! The one table of every setting the broker knows, broker-, topic- and group-level:
//! Kafka 4's name, type, default and validator for each (from Apache Kafka's
//! `ServerConfigs`, `ServerLogConfigs`, `LogConfig`, `TopicConfig` and `GroupConfig`),
//! plus agentlog's own settings. Parsing, validation, DescribeConfigs and the README all
//! read from here.
//!
//! Kafka settings that mean nothing on a single node (thread pools, replication
//! throttles, remote storage) are accepted, stored and reported as Kafka would, so that
//! tools written for Kafka keep working; their docs say that agentlog does not use them.

/// The type of a setting's value, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// true / false.
    Boolean,
    /// A 16-bit integer.
    Short,
    /// A 32-bit integer.
    Int,
    /// A 64-bit integer.
    Long,
    /// A floating point number.
    Double,
    /// Free text, or one of a set of words.
    String,
    /// A comma-separated list.
    List,
    /// A Java class name (a plug-in agentlog does not load).
    Class,
    /// A secret: accepted and stored, never described back (DescribeConfigs gives null).
    Password,
}

impl ConfigType {
    /// Kafka's numeric code for the type in DescribeConfigs responses.
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }

    pub(crate) fn validate(self, value: &str) -> bool {
        match self {
            ConfigType::Boolean => matches!(value, "true" | "false"),
            ConfigType::Short => value.parse::<i16>().is_ok(),
            ConfigType::Int => value.parse::<i32>().is_ok(),
            ConfigType::Long => value.parse::<i64>().is_ok(),
            ConfigType::Double => value.parse::<f64>().is_ok(),
            ConfigType::String | ConfigType::List | ConfigType::Class | ConfigType::Password => {
                true
            }
        }
    }
}

/// One setting the broker understands.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// Kafka's name for it.
    pub name: &'static str,
    /// Its type.
    pub kind: ConfigType,
    /// The built-in default, as text.
    pub default: &'static str,
    /// What it does, for DescribeConfigs' documentation field and the README.
    pub doc: &'static str,
    /// Extra check beyond the type (e.g. a range or a set of words).
    pub check: Option<fn(&str) -> bool>,
}

const fn def(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        doc,
        check: None,
    }
}

const fn checked(mut d: ConfigDef, check: fn(&str) -> bool) -> ConfigDef {
    d.check = Some(check);
    d
}

fn at_least(v: &str, min: i64) -> bool {
    v.parse::<i64>().is_ok_and(|n| n >= min)
}

fn between(v: &str, min: i64, max: i64) -> bool {
    v.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n))
}

fn positive(v: &str) -> bool {
    at_least(v, 1)
}

fn non_negative(v: &str) -> bool {
    at_least(v, 0)
}

fn at_least_minus_one(v: &str) -> bool {
    at_least(v, -1)
}

fn at_least_minus_two(v: &str) -> bool {
    at_least(v, -2)
}

fn empty_or_socket_address(v: &str) -> bool {
    v.is_empty() || v.parse::<std::net::SocketAddr>().is_ok()
}

fn flush_policy_word(v: &str) -> bool {
    matches!(v, "batch" | "interval" | "none")
}

/// `delete`, `compact`, both, or (Kafka 4.2) nothing at all: an empty policy keeps
/// every record forever.
fn cleanup_policy(v: &str) -> bool {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .all(|p| matches!(p, "delete" | "compact"))
}

fn timestamp_type(v: &str) -> bool {
    matches!(v, "CreateTime" | "LogAppendTime")
}

fn compression_type(v: &str) -> bool {
    matches!(
        v,
        "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
    )
}

fn ratio(v: &str) -> bool {
    v.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r))
}

fn only_false(v: &str) -> bool {
    v == "false"
}

fn gzip_level(v: &str) -> bool {
    v == "-1" || between(v, 1, 9)
}

fn lz4_level(v: &str) -> bool {
    between(v, 1, 17)
}

fn zstd_level(v: &str) -> bool {
    between(v, -131_072, 22)
}

fn combined_roles(v: &str) -> bool {
    let mut roles: Vec<&str> = v.split(',').map(str::trim).collect();
    roles.sort_unstable();
    roles == ["broker", "controller"]
}

/// Kafka's `segment.bytes` floor (a legacy record's overhead).
fn segment_bytes(v: &str) -> bool {
    at_least(v, 14)
}

fn index_bytes(v: &str) -> bool {
    at_least(v, 4)
}

/// The largest 64-bit value, Kafka's "never" for flush and compaction-lag settings.
const LONG_MAX: &str = "9223372036854775807";

/// Every broker-level setting.
#[rustfmt::skip]
pub static BROKER_CONFIGS: &[ConfigDef] = &[
    def("node.id", ConfigType::Int, "1", "This broker's id in Metadata responses."),
    def("broker.id", ConfigType::Int, "1", "Synonym of node.id, as older Kafka names it."),
    checked(def("num.partitions", ConfigType::Int, "1", "Partitions of an auto-created topic, and of CreateTopics with num_partitions -1."), positive),
    def("auto.create.topics.enable", ConfigType::Boolean, "true", "Whether Metadata requests that allow it create missing topics."),
    checked(def("default.replication.factor", ConfigType::Int, "1", "Replication factor reported for topics (a single node holds one replica)."), positive),
    checked(def("log.segment.bytes", ConfigType::Int, "1073741824", "Roll the active segment when it would grow past this size."), positive),
    checked(def("log.roll.ms", ConfigType::Long, "604800000", "Roll the active segment when its first batch is older than this."), positive),
    checked(def("log.index.interval.bytes", ConfigType::Int, "4096", "Bytes of log between two sparse index entries."), positive),
    checked(def("message.max.bytes", ConfigType::Int, "1048588", "Largest record batch a producer may send (MESSAGE_TOO_LARGE above it)."), positive),
    checked(def("socket.request.max.bytes", ConfigType::Int, "104857600", "Largest request frame accepted; larger frames close the connection."), positive),
    checked(def("log.retention.ms", ConfigType::Long, "604800000", "Default retention.ms: sealed segments whose newest record is older are deleted (-1: forever)."), at_least_minus_one),
    checked(def("log.retention.bytes", ConfigType::Long, "-1", "Default size a partition is trimmed to (-1: unlimited)."), at_least_minus_one),
    checked(def("log.flush.policy", ConfigType::String, "batch", "agentlog: when appended data is fsynced: batch (before acks=all and before consumers see it; group commit), interval, or none."), flush_policy_word),
    checked(def("log.flush.interval.ms", ConfigType::Long, "1000", "With log.flush.policy=interval, how often to fsync."), positive),
    def("log.preallocate", ConfigType::Boolean, "true", "agentlog: reserve disk space (fallocate) ahead of the active segment's appends under 2 KiB, in steps of 64 KiB to 8 MiB, so that a group commit's fdatasync does not also write a new file size. Kafka's default is false (it would preallocate whole segments)."),
    checked(def("log.tail.cache.bytes", ConfigType::Long, "4194304", "agentlog: bytes of recently appended batches kept in memory per partition for tailing readers."), non_negative),
    checked(def("log.cache.budget.bytes", ConfigType::Long, "67108864", "agentlog: bytes all partitions' tail caches may hold together; beyond it, reads are served from the segment files (the OS page cache), so memory follows this setting, not the number of partitions."), non_negative),
    checked(def("log.retention.check.interval.ms", ConfigType::Long, "5000", "agentlog: how often retention (retention.ms, retention.bytes, DeleteRecords leftovers) is enforced. Kafka's default is 300000; an edge box checks more often."), positive),
    checked(def("log.cleaner.backoff.ms", ConfigType::Long, "2000", "How long the compactor sleeps between passes over compacted topics."), positive),
    checked(def("log.disk.free.min.bytes", ConfigType::Long, "104857600", "agentlog: produce is refused with KAFKA_STORAGE_ERROR (retriable) while the data directory's filesystem has less free space than this (0: never)."), non_negative),
    def("log.cleanup.policy", ConfigType::List, "delete", "Default cleanup.policy of new topics."),
    checked(def("group.initial.rebalance.delay.ms", ConfigType::Int, "3000", "How long the first rebalance of an empty group waits for more members before completing (Kafka's default; tests set it low)."), non_negative),
    checked(def("group.min.session.timeout.ms", ConfigType::Int, "6000", "Smallest session.timeout.ms a group member may ask for (INVALID_SESSION_TIMEOUT below it)."), positive),
    checked(def("group.max.session.timeout.ms", ConfigType::Int, "1800000", "Largest session.timeout.ms a group member may ask for (INVALID_SESSION_TIMEOUT above it)."), positive),
    checked(def("offsets.retention.minutes", ConfigType::Int, "10080", "Committed offsets of a group with no members are dropped this long after the group emptied (or, for standalone commits, after the commit)."), positive),
    checked(def("transaction.max.timeout.ms", ConfigType::Int, "900000", "Largest transaction.timeout.ms a transactional producer may ask for (INVALID_TRANSACTION_TIMEOUT above it)."), positive),
    checked(def("http.listen", ConfigType::String, "", "agentlog: address (host:port) for GET /health and GET /metrics (Prometheus); empty: no HTTP listener. The --http flag overrides it."), empty_or_socket_address),
    def("console.actions", ConfigType::Boolean, "false", "agentlog: the web console at /ui may change things (reset a group's offsets, replay a dead-letter topic); off, it is read-only and refuses them."),
    def("mcp.server.enable", ConfigType::Boolean, "false", "agentlog: serve MCP (streamable HTTP) at /mcp on the HTTP listener (http.listen or --http)."),
    def("mcp.server.read.only", ConfigType::Boolean, "true", "agentlog: the MCP server refuses to write (its produce tool answers with an error) unless this is false."),
    checked(def("mcp.server.max.records", ConfigType::Int, "100", "agentlog: most records one MCP read, search or resource returns."), positive),
    checked(def("mcp.server.max.bytes", ConfigType::Int, "65536", "agentlog: most bytes of JSON one MCP tool or resource result carries; longer results are cut and say so."), positive),
    def("mcp.server.allowed.hosts", ConfigType::List, "localhost,127.0.0.1,::1", "agentlog: Host header values (host or host:port) the MCP server answers; others get 403 (DNS-rebinding protection). Add the names clients use when http.listen is not a loopback address."),
    def("ssl.keystore.location", ConfigType::String, "", "PEM file with the broker's certificate chain and its private key (Kafka's PEM keystore), used by every SSL and SASL_SSL listener."),
    def("ssl.truststore.location", ConfigType::String, "", "PEM file with the CA certificates that client certificates must chain to (needed when ssl.client.auth is not none)."),
    checked(def("ssl.client.auth", ConfigType::String, "none", "none: TLS clients present no certificate; requested: they may, and it must be valid if they do; required: they must."), |v| matches!(v, "none" | "requested" | "required")),
    def("ssl.principal.mapping.rules", ConfigType::String, "DEFAULT", "How an SSL client certificate's subject (RFC 2253, e.g. CN=client,OU=eng,O=acme) becomes its principal's name: Kafka's RULE:pattern/replacement/[LU] and DEFAULT, comma-separated, first match wins; checked at start-up."),
    checked(def("ssl.reload.interval.ms", ConfigType::Long, "5000", "agentlog: how often the keystore and truststore files are checked for changes; a change (or SIGHUP) rebuilds the TLS configuration for new connections (0: only on SIGHUP)."), non_negative),
    checked(def("connection.failed.authentication.limit", ConfigType::Int, "10", "agentlog: failed SASL logins from one IP address within connection.failed.authentication.window.ms after which that address's logins are refused for connection.failed.authentication.backoff.ms (0: no limit)."), non_negative),
    checked(def("connection.failed.authentication.window.ms", ConfigType::Long, "60000", "agentlog: the window in which failed logins from one address are counted."), positive),
    checked(def("connection.failed.authentication.backoff.ms", ConfigType::Long, "60000", "agentlog: how long an address that reached connection.failed.authentication.limit is refused."), non_negative),
    checked(def("connection.failed.authentication.delay.ms", ConfigType::Int, "100", "How long a failed SASL login waits before its answer and the close, slowing password guessing (Kafka's setting)."), non_negative),
    checked(def("sasl.enabled.mechanisms", ConfigType::List, "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", "SASL mechanisms the SASL_PLAINTEXT and SASL_SSL listeners offer (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); PLAIN checks passwords against the stored SCRAM credentials."), crate::security::sasl::valid_mechanism_list),
    def("authorizer.enable", ConfigType::Boolean, "false", "agentlog: enforce ACLs (CreateAcls/DescribeAcls/DeleteAcls manage them); off, every client may do everything, as on Kafka without an authorizer."),
    def("authorizer.class.name", ConfigType::String, "", "Kafka's switch for the same thing: any class name (e.g. org.apache.kafka.metadata.authorizer.StandardAuthorizer) turns the built-in ACL authorizer on."),
    def("super.users", ConfigType::String, "", "Principals allowed everything whatever the ACLs say, separated by ';' (e.g. User:admin;User:ops)."),
    def("allow.everyone.if.no.acl.found", ConfigType::Boolean, "false", "With the authorizer on: whether a resource no ACL covers is open to everyone (Kafka's default false: closed)."),
    checked(def("transaction.abort.timed.out.transaction.cleanup.interval.ms", ConfigType::Int, "10000", "How often transactions open longer than their timeout are looked for and aborted."), positive),
    // Read-only settings of the node's identity and layout. agentlog is a combined
    // KRaft node (broker and controller); listeners, advertised.listeners and
    // log.dirs report the values in force (see `BrokerConfig::value`).
    checked(def("process.roles", ConfigType::List, "broker,controller", "Always broker,controller: agentlog is a one-node KRaft cluster, its own controller."), combined_roles),
    def("listeners", ConfigType::String, "PLAINTEXT://:9092", "Addresses clients connect to, as PROTOCOL://host:port (also `listen`, `--listen`)."),
    def("advertised.listeners", ConfigType::String, "", "Addresses given to clients in Metadata per protocol (also `advertise`, `--advertise`); the listeners themselves when unset."),
    def("log.dirs", ConfigType::String, "./agentlog-data", "The data directory (also `log.dir`, `data.dir`, `--data-dir`); agentlog has one."),
    def("log.dir", ConfigType::String, "./agentlog-data", "Synonym of log.dirs."),
    def("controller.listener.names", ConfigType::String, "CONTROLLER", "Stored and reported; the controller is in-process, with no listener of its own."),
    def("listener.security.protocol.map", ConfigType::String, "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT", "Stored and reported; agentlog's listeners name their protocol directly."),
    def("inter.broker.listener.name", ConfigType::String, "PLAINTEXT", "Stored and reported; a single node has no inter-broker traffic."),
    def("security.inter.broker.protocol", ConfigType::String, "PLAINTEXT", "Stored and reported; a single node has no inter-broker traffic."),
    def("sasl.mechanism.inter.broker.protocol", ConfigType::String, "GSSAPI", "Stored and reported; a single node has no inter-broker traffic."),
    def("sasl.mechanism.controller.protocol", ConfigType::String, "GSSAPI", "Stored and reported; the controller is in-process."),
    def("sasl.jaas.config", ConfigType::Password, "", "Stored, never described back; agentlog's SASL users are the SCRAM credentials (AlterUserScramCredentials, `agentlog users`)."),
    def("sasl.kerberos.service.name", ConfigType::String, "", "Stored and reported; GSSAPI is not offered."),
    def("controller.quorum.voters", ConfigType::List, "", "Stored and reported; the quorum is this node alone (DescribeQuorum)."),
    def("controller.quorum.bootstrap.servers", ConfigType::List, "", "Stored and reported; the quorum is this node alone (DescribeQuorum)."),
    checked(def("background.threads", ConfigType::Int, "10", "Stored and reported; agentlog's background work runs on its async runtime."), positive),
    checked(def("num.io.threads", ConfigType::Int, "8", "Stored and reported; requests are served by the async runtime's worker threads."), positive),
    checked(def("num.network.threads", ConfigType::Int, "3", "Stored and reported; connections are served by the async runtime."), positive),
    checked(def("num.replica.fetchers", ConfigType::Int, "1", "Stored and reported; a single node fetches from no one."), positive),
    checked(def("num.recovery.threads.per.data.dir", ConfigType::Int, "2", "Stored and reported; recovery at start-up scans each partition once."), positive),
    checked(def("queued.max.requests", ConfigType::Int, "500", "Stored and reported; each connection's in-flight requests are bounded instead."), positive),
    def("socket.send.buffer.bytes", ConfigType::Int, "102400", "Stored and reported; the OS default socket buffers are used."),
    def("socket.receive.buffer.bytes", ConfigType::Int, "102400", "Stored and reported; the OS default socket buffers are used."),
    def("delete.topic.enable", ConfigType::Boolean, "true", "Stored and reported; DeleteTopics always works."),
    def("auto.leader.rebalance.enable", ConfigType::Boolean, "true", "Stored and reported; this node leads every partition."),
    def("unclean.leader.election.enable", ConfigType::Boolean, "false", "Default unclean.leader.election.enable of topics; stored and reported (this node is the only replica)."),
    checked(def("min.insync.replicas", ConfigType::Int, "1", "Default min.insync.replicas of topics (one replica here)."), positive),
    checked(def("compression.type", ConfigType::String, "producer", "Default compression.type of topics; batches are stored as the producer compressed them."), compression_type),
    checked(def("compression.gzip.level", ConfigType::Int, "-1", "Default compression.gzip.level of topics; stored and reported."), gzip_level),
    checked(def("compression.lz4.level", ConfigType::Int, "9", "Default compression.lz4.level of topics; stored and reported."), lz4_level),
    checked(def("compression.zstd.level", ConfigType::Int, "3", "Default compression.zstd.level of topics; stored and reported."), zstd_level),
    checked(def("log.roll.jitter.ms", ConfigType::Long, "0", "Default segment.jitter.ms of topics; stored and reported."), non_negative),
    checked(def("log.index.size.max.bytes", ConfigType::Int, "10485760", "Default segment.index.bytes of topics; stored and reported (indexes grow as needed)."), index_bytes),
    checked(def("log.flush.interval.messages", ConfigType::Long, LONG_MAX, "Default flush.messages of topics; stored and reported (log.flush.policy governs fsync)."), positive),
    checked(def("log.flush.scheduler.interval.ms", ConfigType::Long, LONG_MAX, "Stored and reported (log.flush.policy governs fsync)."), non_negative),
    checked(def("log.segment.delete.delay.ms", ConfigType::Long, "60000", "Default file.delete.delay.ms of topics; stored and reported (deleted segments are unlinked at once)."), non_negative),
    checked(def("log.cleaner.delete.retention.ms", ConfigType::Long, "86400000", "Default delete.retention.ms of topics."), non_negative),
    checked(def("log.cleaner.min.compaction.lag.ms", ConfigType::Long, "0", "Default min.compaction.lag.ms of topics."), non_negative),
    checked(def("log.cleaner.max.compaction.lag.ms", ConfigType::Long, LONG_MAX, "Default max.compaction.lag.ms of topics; stored and reported."), positive),
    checked(def("log.cleaner.min.cleanable.ratio", ConfigType::Double, "0.5", "Default min.cleanable.dirty.ratio of topics."), ratio),
    def("log.cleaner.enable", ConfigType::Boolean, "true", "Stored and reported; compacted topics are always compacted."),
    checked(def("log.cleaner.threads", ConfigType::Int, "1", "Stored and reported; one compaction task runs."), non_negative),
    checked(def("log.message.timestamp.type", ConfigType::String, "CreateTime", "Default message.timestamp.type of topics."), timestamp_type),
    checked(def("log.message.timestamp.before.max.ms", ConfigType::Long, LONG_MAX, "Default message.timestamp.before.max.ms of topics."), non_negative),
    checked(def("log.message.timestamp.after.max.ms", ConfigType::Long, "3600000", "Default message.timestamp.after.max.ms of topics (Kafka 4: one hour)."), non_negative),
    checked(def("log.local.retention.ms", ConfigType::Long, "-2", "Default local.retention.ms of topics; stored and reported (no remote storage)."), at_least_minus_two),
    checked(def("log.local.retention.bytes", ConfigType::Long, "-2", "Default local.retention.bytes of topics; stored and reported (no remote storage)."), at_least_minus_two),
    checked(def("remote.log.storage.system.enable", ConfigType::Boolean, "false", "Only false: agentlog has no tiered storage."), only_false),
    checked(def("offsets.topic.replication.factor", ConfigType::Short, "1", "Stored and reported; offsets live in the metadata store, on this node (Kafka's default is 3)."), positive),
    checked(def("offsets.topic.num.partitions", ConfigType::Int, "50", "Stored and reported; offsets live in the metadata store."), positive),
    checked(def("transaction.state.log.replication.factor", ConfigType::Short, "1", "Stored and reported; transaction state lives in the metadata store (Kafka's default is 3)."), positive),
    checked(def("transaction.state.log.min.isr", ConfigType::Int, "1", "Stored and reported (Kafka's default is 2)."), positive),
    checked(def("transaction.state.log.num.partitions", ConfigType::Int, "50", "Stored and reported; transaction state lives in the metadata store."), positive),
    checked(def("quota.window.num", ConfigType::Int, "11", "Samples client quota rates are measured over."), positive),
    checked(def("quota.window.size.seconds", ConfigType::Int, "1", "Length of one client quota sample."), positive),
    checked(def("replica.lag.time.max.ms", ConfigType::Long, "30000", "Stored and reported; this node is the only replica."), positive),
    checked(def("group.consumer.min.heartbeat.interval.ms", ConfigType::Int, "5000", "Smallest consumer.heartbeat.interval.ms a group config may set."), positive),
    checked(def("group.consumer.max.heartbeat.interval.ms", ConfigType::Int, "15000", "Largest consumer.heartbeat.interval.ms a group config may set."), positive),
    checked(def("group.consumer.heartbeat.interval.ms", ConfigType::Int, "5000", "Default consumer.heartbeat.interval.ms of groups (KIP-848 consumer groups)."), positive),
    checked(def("group.consumer.min.session.timeout.ms", ConfigType::Int, "45000", "Smallest consumer.session.timeout.ms a group config may set."), positive),
    checked(def("group.consumer.max.session.timeout.ms", ConfigType::Int, "60000", "Largest consumer.session.timeout.ms a group config may set."), positive),
    checked(def("group.consumer.session.timeout.ms", ConfigType::Int, "45000", "Default consumer.session.timeout.ms of groups (KIP-848 consumer groups)."), positive),
    checked(def("group.share.min.heartbeat.interval.ms", ConfigType::Int, "5000", "Smallest share.heartbeat.interval.ms a group config may set."), positive),
    checked(def("group.share.max.heartbeat.interval.ms", ConfigType::Int, "15000", "Largest share.heartbeat.interval.ms a group config may set."), positive),
    checked(def("group.share.heartbeat.interval.ms", ConfigType::Int, "5000", "Default share.heartbeat.interval.ms of share groups."), positive),
    checked(def("group.share.min.session.timeout.ms", ConfigType::Int, "45000", "Smallest share.session.timeout.ms a group config may set."), positive),
    checked(def("group.share.max.session.timeout.ms", ConfigType::Int, "60000", "Largest share.session.timeout.ms a group config may set."), positive),
    checked(def("group.share.session.timeout.ms", ConfigType::Int, "45000", "Default share.session.timeout.ms of share groups."), positive),
    checked(def("group.share.min.record.lock.duration.ms", ConfigType::Int, "15000", "Smallest share.record.lock.duration.ms a group config may set."), positive),
    checked(def("group.share.max.record.lock.duration.ms", ConfigType::Int, "60000", "Largest share.record.lock.duration.ms a group config may set."), positive),
    checked(def("group.share.record.lock.duration.ms", ConfigType::Int, "30000", "Default share.record.lock.duration.ms of share groups."), positive),
    checked(def("group.share.delivery.count.limit", ConfigType::Int, "5", "Deliveries of a record to a share group before it is archived (and, for queue agents, dead-lettered)."), positive),
    checked(def("group.share.partition.max.record.locks", ConfigType::Int, "2000", "Most records of one partition a share group has in flight at once."), positive),
];

/// Broker settings that AlterConfigs / IncrementalAlterConfigs may change at runtime
/// (persisted in the metadata store, applied without a restart), as Kafka allows; every
/// other broker setting is read-only, as DescribeConfigs reports.
pub static DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "log.retention.ms",
    "log.retention.bytes",
    "log.cleanup.policy",
    "log.segment.bytes",
    "log.roll.ms",
    "message.max.bytes",
    "log.retention.check.interval.ms",
    "log.cleaner.backoff.ms",
    "log.disk.free.min.bytes",
    "background.threads",
    "num.io.threads",
    "num.network.threads",
    "num.replica.fetchers",
    "num.recovery.threads.per.data.dir",
    "unclean.leader.election.enable",
    "min.insync.replicas",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "log.roll.jitter.ms",
    "log.index.size.max.bytes",
    "log.flush.interval.messages",
    "log.segment.delete.delay.ms",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.threads",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "log.local.retention.ms",
    "log.local.retention.bytes",
];

/// Every topic-level setting of Kafka 4, and the broker setting it defaults to.
#[rustfmt::skip]
pub static TOPIC_CONFIGS: &[(ConfigDef, Option<&str>)] = &[
    (checked(def("cleanup.policy", ConfigType::List, "delete", "delete, compact, both, or empty (keep everything: no retention, no compaction)."), cleanup_policy), Some("log.cleanup.policy")),
    (checked(def("retention.ms", ConfigType::Long, "604800000", "How long to keep a segment (-1: forever)."), at_least_minus_one), Some("log.retention.ms")),
    (checked(def("retention.bytes", ConfigType::Long, "-1", "Size a partition is trimmed to (-1: unlimited)."), at_least_minus_one), Some("log.retention.bytes")),
    (checked(def("segment.bytes", ConfigType::Int, "1073741824", "Segment size."), segment_bytes), Some("log.segment.bytes")),
    (checked(def("segment.ms", ConfigType::Long, "604800000", "Segment age before rolling."), positive), Some("log.roll.ms")),
    (checked(def("segment.jitter.ms", ConfigType::Long, "0", "Stored and reported; segments roll at segment.ms exactly."), non_negative), Some("log.roll.jitter.ms")),
    (checked(def("segment.index.bytes", ConfigType::Int, "10485760", "Stored and reported; the sparse index grows as needed."), index_bytes), Some("log.index.size.max.bytes")),
    (checked(def("max.message.bytes", ConfigType::Int, "1048588", "Largest record batch accepted for this topic."), non_negative), Some("message.max.bytes")),
    (checked(def("index.interval.bytes", ConfigType::Int, "4096", "Bytes between sparse index entries."), non_negative), Some("log.index.interval.bytes")),
    (checked(def("message.timestamp.type", ConfigType::String, "CreateTime", "CreateTime or LogAppendTime."), timestamp_type), Some("log.message.timestamp.type")),
    (checked(def("message.timestamp.before.max.ms", ConfigType::Long, LONG_MAX, "CreateTime records older than this (by the broker's clock) are refused with INVALID_TIMESTAMP."), non_negative), Some("log.message.timestamp.before.max.ms")),
    (checked(def("message.timestamp.after.max.ms", ConfigType::Long, "3600000", "CreateTime records further than this in the future are refused with INVALID_TIMESTAMP."), non_negative), Some("log.message.timestamp.after.max.ms")),
    (checked(def("compression.type", ConfigType::String, "producer", "Batches are stored as the producer compressed them."), compression_type), Some("compression.type")),
    (checked(def("compression.gzip.level", ConfigType::Int, "-1", "Stored and reported (batches are not recompressed)."), gzip_level), Some("compression.gzip.level")),
    (checked(def("compression.lz4.level", ConfigType::Int, "9", "Stored and reported (batches are not recompressed)."), lz4_level), Some("compression.lz4.level")),
    (checked(def("compression.zstd.level", ConfigType::Int, "3", "Stored and reported (batches are not recompressed)."), zstd_level), Some("compression.zstd.level")),
    (checked(def("min.insync.replicas", ConfigType::Int, "1", "Replicas that must acknowledge acks=all (one on a single node)."), positive), Some("min.insync.replicas")),
    (def("unclean.leader.election.enable", ConfigType::Boolean, "false", "Stored and reported; this node is the only replica."), Some("unclean.leader.election.enable")),
    (checked(def("delete.retention.ms", ConfigType::Long, "86400000", "How long tombstones survive compaction."), non_negative), Some("log.cleaner.delete.retention.ms")),
    (checked(def("min.compaction.lag.ms", ConfigType::Long, "0", "Minimum age before a record may be compacted."), non_negative), Some("log.cleaner.min.compaction.lag.ms")),
    (checked(def("max.compaction.lag.ms", ConfigType::Long, LONG_MAX, "Stored and reported; compacted topics are compacted every log.cleaner.backoff.ms."), positive), Some("log.cleaner.max.compaction.lag.ms")),
    (checked(def("min.cleanable.dirty.ratio", ConfigType::Double, "0.5", "Dirty fraction that triggers compaction."), ratio), Some("log.cleaner.min.cleanable.ratio")),
    (checked(def("file.delete.delay.ms", ConfigType::Long, "60000", "Stored and reported; deleted segments are unlinked at once."), non_negative), Some("log.segment.delete.delay.ms")),
    (checked(def("flush.messages", ConfigType::Long, LONG_MAX, "Stored and reported; log.flush.policy governs fsync."), positive), Some("log.flush.interval.messages")),
    (checked(def("flush.ms", ConfigType::Long, LONG_MAX, "Stored and reported; log.flush.policy governs fsync."), non_negative), None),
    (def("preallocate", ConfigType::Boolean, "false", "Stored and reported; log.preallocate governs preallocation."), None),
    (checked(def("local.retention.ms", ConfigType::Long, "-2", "Stored and reported; without remote storage, retention.ms governs (-2)."), at_least_minus_two), Some("log.local.retention.ms")),
    (checked(def("local.retention.bytes", ConfigType::Long, "-2", "Stored and reported; without remote storage, retention.bytes governs (-2)."), at_least_minus_two), Some("log.local.retention.bytes")),
    (checked(def("remote.storage.enable", ConfigType::Boolean, "false", "Only false: agentlog has no tiered storage."), only_false), None),
    (def("remote.log.copy.disable", ConfigType::Boolean, "false", "Stored and reported; no tiered storage."), None),
    (def("remote.log.delete.on.disable", ConfigType::Boolean, "false", "Stored and reported; no tiered storage."), None),
    (def("leader.replication.throttled.replicas", ConfigType::List, "", "Stored and reported; a single node replicates to no one."), None),
    (def("follower.replication.throttled.replicas", ConfigType::List, "", "Stored and reported; a single node replicates to no one."), None),
];

/// Every group-level setting of Kafka 4 (resource type GROUP, KIP-848 and KIP-932),
/// with the broker setting it defaults to and the broker settings bounding it.
#[rustfmt::skip]
pub static GROUP_CONFIGS: &[(ConfigDef, &str, (&str, &str))] = &[
    (checked(def("consumer.session.timeout.ms", ConfigType::Int, "45000", "Session timeout of this consumer group's members (KIP-848 protocol)."), positive), "group.consumer.session.timeout.ms", ("group.consumer.min.session.timeout.ms", "group.consumer.max.session.timeout.ms")),
    (checked(def("consumer.heartbeat.interval.ms", ConfigType::Int, "5000", "Heartbeat interval of this consumer group's members (KIP-848 protocol)."), positive), "group.consumer.heartbeat.interval.ms", ("group.consumer.min.heartbeat.interval.ms", "group.consumer.max.heartbeat.interval.ms")),
    (checked(def("share.session.timeout.ms", ConfigType::Int, "45000", "Session timeout of this share group's members."), positive), "group.share.session.timeout.ms", ("group.share.min.session.timeout.ms", "group.share.max.session.timeout.ms")),
    (checked(def("share.heartbeat.interval.ms", ConfigType::Int, "5000", "Heartbeat interval of this share group's members."), positive), "group.share.heartbeat.interval.ms", ("group.share.min.heartbeat.interval.ms", "group.share.max.heartbeat.interval.ms")),
    (checked(def("share.record.lock.duration.ms", ConfigType::Int, "30000", "How long a share group's member holds a delivered record before it is redelivered."), positive), "group.share.record.lock.duration.ms", ("group.share.min.record.lock.duration.ms", "group.share.max.record.lock.duration.ms")),
];
