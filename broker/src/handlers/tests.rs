//! Every advertised API at every advertised version: the handler answers and the answer
//! encodes. `kafka-protocol` refuses to encode a field set outside the versions that
//! carry it, so this catches a handler that fills in too much for an old client.

use std::sync::Arc;

use agentlog_protocol::request::{decode_request, Request};
use agentlog_protocol::response::encode_response;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;

use super::*;
use crate::config::BrokerConfig;

fn broker() -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::with_data_dir(dir.path());
    let broker = Arc::new(Broker::open(config).unwrap());
    (dir, broker)
}

async fn answer(broker: &Arc<Broker>, request: Request) -> Option<Bytes> {
    let reply = dispatch(broker, request).await;
    let body = match reply.body {
        ReplyBody::None => return None,
        ReplyBody::Ready(body) => *body,
        ReplyBody::Later(task) => task.await.unwrap()?,
    };
    Some(encode_response(reply.api_key, reply.version, reply.correlation_id, &body).unwrap())
}

/// Encodes a request the way a client would and decodes it the way the server does.
fn roundtrip(api_key: ApiKey, version: i16, body: &RequestKind) -> Request {
    let mut buf = BytesMut::new();
    buf.put_i16(api_key as i16);
    buf.put_i16(version);
    buf.put_i32(7);
    buf.put_i16(4);
    buf.put_slice(b"test");
    if api_key.request_header_version(version) >= 2 {
        buf.put_u8(0);
    }
    body.encode(&mut buf, version).unwrap();
    decode_request(buf.freeze(), &SUPPORTED).unwrap()
}

fn sample(api_key: ApiKey, version: i16) -> RequestKind {
    let topic = topic_name("t");
    match api_key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic)),
            ])))
        }
        ApiKey::Produce => {
            RequestKind::Produce(ProduceRequest::default().with_acks(1).with_topic_data(
                vec![TopicProduceData::default()
                .with_name(topic)
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from_static(b"not a batch")))])],
            ))
        }
        ApiKey::Fetch => {
            RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(0).with_topics(
                vec![FetchTopic::default()
                    .with_topic(if version < 13 { topic } else { Default::default() })
                    .with_partitions(vec![FetchPartition::default().with_partition(0)])],
            ))
        }
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic)
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
        ]))
        }
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                CreatableTopic::default()
                    .with_name(topic_name(&format!("created-{version}")))
                    .with_num_partitions(2)
                    .with_replication_factor(1)
                    .with_configs(vec![CreatableTopicConfig::default()
                        .with_name(str_bytes("retention.ms"))
                        .with_value(Some(str_bytes("1000")))]),
                CreatableTopic::default()
                    .with_name(topic)
                    .with_num_partitions(1)
                    .with_replication_factor(3),
            ]))
        }
        ApiKey::DeleteTopics if version >= 6 => {
            RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name("missing"))),
            ]))
        }
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![topic_name("missing")]),
        ),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_include_documentation(version >= 3)
                .with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(str_bytes("t")),
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(str_bytes("1")),
                ]),
        ),
        ApiKey::DescribeCluster => {
            RequestKind::DescribeCluster(DescribeClusterRequest::default().with_endpoint_type(1))
        }
        ApiKey::InitProducerId if version % 2 == 0 => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(str_bytes("tx"))))
                .with_transaction_timeout_ms(60_000),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::FindCoordinator if version >= 4 => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![str_bytes("g"), str_bytes("h")]),
        ),
        ApiKey::FindCoordinator => {
            RequestKind::FindCoordinator(FindCoordinatorRequest::default().with_key(str_bytes("g")))
        }
        ApiKey::JoinGroup => {
            // An unknown member id answers at once (UNKNOWN_MEMBER_ID), without a wait.
            RequestKind::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(GroupId(str_bytes("g")))
                    .with_session_timeout_ms(10_000)
                    .with_member_id(str_bytes("nobody"))
                    .with_protocol_type(str_bytes("consumer"))
                    .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                    )
                    .with_name(str_bytes("range"))
                    .with_metadata(Bytes::from_static(b"m"))]),
            )
        }
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(str_bytes("g")))
                .with_member_id(str_bytes("nobody")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes("g")))
                .with_member_id(str_bytes("nobody")),
        ),
        ApiKey::LeaveGroup if version >= 3 => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(str_bytes("g")))
                .with_members(vec![leave_group_request::MemberIdentity::default()
                    .with_member_id(str_bytes("nobody"))]),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(str_bytes("g")))
                .with_member_id(str_bytes("nobody")),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(str_bytes("simple")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(5)
                                .with_committed_metadata(Some(str_bytes("meta"))),
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(9)
                                .with_committed_offset(5),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch if version >= 8 => {
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(str_bytes("simple"))),
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(str_bytes("other")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(topic)
                            .with_partition_indexes(vec![0, 1]),
                    ])),
            ]))
        }
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(str_bytes("simple")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic)
                        .with_partition_indexes(vec![0, 1]),
                ])),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(if version >= 4 {
            ListGroupsRequest::default().with_states_filter(vec![str_bytes("Empty")])
        } else {
            ListGroupsRequest::default()
        }),
        ApiKey::DescribeGroups => {
            RequestKind::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![
                GroupId(str_bytes("simple")),
                GroupId(str_bytes("none")),
            ]))
        }
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes("none"))]),
        ),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes("kip848")))
                .with_member_id(str_bytes("m"))
                .with_rebalance_timeout_ms(1000)
                .with_subscribed_topic_names(Some(vec![topic])),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(str_bytes("kip848"))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(str_bytes("simple")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(1),
                        ]),
                ]),
        ),
        ApiKey::DeleteRecords => {
            use kafka_protocol::messages::delete_records_request::{
                DeleteRecordsPartition, DeleteRecordsTopic,
            };
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                DeleteRecordsTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![
                        DeleteRecordsPartition::default().with_offset(-1),
                        DeleteRecordsPartition::default()
                            .with_partition_index(9)
                            .with_offset(5),
                    ]),
            ]))
        }
        ApiKey::AlterConfigs => {
            use kafka_protocol::messages::alter_configs_request::{
                AlterConfigsResource, AlterableConfig,
            };
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes("t"))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(str_bytes("retention.ms"))
                        .with_value(Some(str_bytes("60000")))]),
                AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(str_bytes("1"))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(str_bytes("num.partitions"))
                        .with_value(Some(str_bytes("2")))]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => {
            use kafka_protocol::messages::incremental_alter_configs_request::{
                AlterConfigsResource, AlterableConfig,
            };
            RequestKind::IncrementalAlterConfigs(
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(str_bytes("t"))
                        .with_configs(vec![AlterableConfig::default()
                            .with_name(str_bytes("cleanup.policy"))
                            .with_config_operation(2)
                            .with_value(Some(str_bytes("compact")))]),
                    AlterConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(str_bytes(""))
                        .with_configs(vec![AlterableConfig::default()
                            .with_name(str_bytes("log.retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(str_bytes("nope")))]),
                ]),
            )
        }
        ApiKey::CreatePartitions => {
            use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
            RequestKind::CreatePartitions(
                CreatePartitionsRequest::default()
                    .with_validate_only(true)
                    .with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_name(topic_name("t"))
                            .with_count(3),
                        CreatePartitionsTopic::default()
                            .with_name(topic_name("t"))
                            .with_count(1),
                    ]),
            )
        }
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(str_bytes("tx")))
                .with_v3_and_below_producer_id(ProducerId(0))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![0, 7]),
                ]),
        ),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(str_bytes("tx")))
                .with_group_id(GroupId(str_bytes("g"))),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(str_bytes("tx")))
                .with_committed(true),
        ),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(str_bytes("tx")))
                .with_group_id(GroupId(str_bytes("g")))
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(3),
                        ]),
                ]),
        ),
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic)
                    .with_partition_indexes(vec![0, 9]),
            ]))
        }
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![
                TransactionalId(str_bytes("tx")),
                TransactionalId(str_bytes("none")),
            ]),
        ),
        ApiKey::ListTransactions => RequestKind::ListTransactions(
            ListTransactionsRequest::default()
                .with_state_filters(vec![str_bytes("Ongoing"), str_bytes("Weird")]),
        ),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            kafka_protocol::messages::SaslHandshakeRequest::default()
                .with_mechanism(str_bytes("SCRAM-SHA-256")),
        ),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            kafka_protocol::messages::SaslAuthenticateRequest::default()
                .with_auth_bytes(bytes::Bytes::from_static(b"n,,n=u,r=x")),
        ),
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            kafka_protocol::messages::DescribeUserScramCredentialsRequest::default(),
        ),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            kafka_protocol::messages::AlterUserScramCredentialsRequest::default().with_upsertions(
                vec![
                    kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                        .with_name(str_bytes("u"))
                        .with_mechanism(1)
                        .with_iterations(4096)
                        .with_salt(bytes::Bytes::from_static(b"salt"))
                        .with_salted_password(bytes::Bytes::from_static(b"salted")),
                ],
            ),
        ),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(
            DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(topic)
                    .with_partitions(vec![0, 1]),
            ])),
        ),
        ApiKey::AlterReplicaLogDirs => RequestKind::AlterReplicaLogDirs(
            AlterReplicaLogDirsRequest::default().with_dirs(vec![
                alter_replica_log_dirs_request::AlterReplicaLogDir::default()
                    .with_path(str_bytes("/elsewhere"))
                    .with_topics(vec![
                        alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default()
                            .with_name(topic)
                            .with_partitions(vec![0]),
                    ]),
            ]),
        ),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(
            ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(topic)
                    .with_partitions(vec![0, 7]),
            ])),
        ),
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default().with_topics(vec![
                alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![
                        alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_replicas(Some(vec![BrokerId(1)])),
                    ]),
            ]),
        ),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default(),
        ),
        ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(
            DescribeQuorumRequest::default().with_topics(vec![
                describe_quorum_request::TopicData::default()
                    .with_topic_name(topic_name(describe_quorum::METADATA_TOPIC))
                    .with_partitions(vec![describe_quorum_request::PartitionData::default()]),
            ]),
        ),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(
            DescribeTopicPartitionsRequest::default()
                .with_response_partition_limit(1)
                .with_topics(vec![
                    describe_topic_partitions_request::TopicRequest::default().with_name(topic),
                ]),
        ),
        ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(
            DescribeClientQuotasRequest::default().with_components(vec![
                describe_client_quotas_request::ComponentData::default()
                    .with_entity_type(str_bytes("client-id"))
                    .with_match_type(1),
            ]),
        ),
        ApiKey::AlterClientQuotas => RequestKind::AlterClientQuotas(
            AlterClientQuotasRequest::default().with_entries(vec![
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(str_bytes("client-id"))
                        .with_entity_name(Some(str_bytes("sample")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(str_bytes("producer_byte_rate"))
                        .with_value(1e9)]),
            ]),
        ),
        ApiKey::CreateAcls => RequestKind::CreateAcls(
            kafka_protocol::messages::CreateAclsRequest::default().with_creations(vec![
                kafka_protocol::messages::create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(str_bytes("t"))
                    .with_principal(str_bytes("User:a"))
                    .with_host(str_bytes("*"))
                    .with_operation(3)
                    .with_permission_type(3),
            ]),
        ),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(
            kafka_protocol::messages::DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        ),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(
            kafka_protocol::messages::DeleteAclsRequest::default().with_filters(vec![
                kafka_protocol::messages::delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ]),
        ),
        ApiKey::ShareGroupHeartbeat => RequestKind::ShareGroupHeartbeat(
            ShareGroupHeartbeatRequest::default()
                .with_group_id(GroupId(str_bytes("sg")))
                .with_member_id(str_bytes("m1"))
                .with_subscribed_topic_names(Some(vec![topic])),
        ),
        ApiKey::ShareGroupDescribe => RequestKind::ShareGroupDescribe(
            ShareGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(str_bytes("sg")), GroupId(str_bytes("none"))]),
        ),
        ApiKey::ShareFetch => RequestKind::ShareFetch(
            ShareFetchRequest::default()
                .with_group_id(Some(GroupId(str_bytes("sg"))))
                .with_member_id(Some(str_bytes("m1"))),
        ),
        ApiKey::ShareAcknowledge => RequestKind::ShareAcknowledge(
            ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(str_bytes("sg"))))
                .with_member_id(Some(str_bytes("m1")))
                .with_share_session_epoch(1),
        ),
        ApiKey::DescribeShareGroupOffsets => RequestKind::DescribeShareGroupOffsets(
            DescribeShareGroupOffsetsRequest::default().with_groups(vec![
                describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup::default()
                    .with_group_id(GroupId(str_bytes("sg"))),
            ]),
        ),
        ApiKey::AlterShareGroupOffsets => RequestKind::AlterShareGroupOffsets(
            AlterShareGroupOffsetsRequest::default()
                .with_group_id(GroupId(str_bytes("sg")))
                .with_topics(vec![
                    alter_share_group_offsets_request::AlterShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(topic)
                        .with_partitions(vec![
                            alter_share_group_offsets_request::AlterShareGroupOffsetsRequestPartition::default()
                                .with_start_offset(0),
                        ]),
                ]),
        ),
        ApiKey::DeleteShareGroupOffsets => RequestKind::DeleteShareGroupOffsets(
            DeleteShareGroupOffsetsRequest::default()
                .with_group_id(GroupId(str_bytes("sg")))
                .with_topics(vec![
                    delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(topic),
                ]),
        ),
        other => panic!("no sample request for {other:?}"),
    }
}

#[tokio::test]
async fn every_advertised_version_is_answered_with_an_encodable_response() {
    let (_dir, broker) = broker();
    broker.topics.create("t", 2, Default::default()).unwrap();
    for range in SUPPORTED.iter() {
        for version in range.min..=range.max {
            let request = roundtrip(range.api_key, version, &sample(range.api_key, version));
            let response = answer(&broker, request).await;
            assert!(
                response.is_some(),
                "{:?} v{version} got no response",
                range.api_key
            );
        }
    }
}

#[tokio::test]
async fn api_versions_lists_exactly_the_supported_table() {
    let response = api_versions::handle();
    assert_eq!(response.error_code, 0);
    let listed: Vec<(i16, i16, i16)> = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let expected: Vec<(i16, i16, i16)> = SUPPORTED
        .iter()
        .map(|r| (r.api_key as i16, r.min, r.max))
        .collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn an_unknown_api_versions_version_gets_a_v0_answer_with_error_35() {
    let reply = api_versions::unsupported_version(42);
    assert_eq!(reply.version, 0);
    let ReplyBody::Ready(body) = reply.body else {
        panic!("not ready")
    };
    let frame = encode_response(reply.api_key, reply.version, reply.correlation_id, &body).unwrap();
    // length, correlation id, then the v0 body: error code 35 first.
    assert_eq!(&frame[4..8], &42i32.to_be_bytes());
    assert_eq!(&frame[8..10], &35i16.to_be_bytes());
}

#[tokio::test]
async fn metadata_auto_creates_only_when_allowed() {
    let (_dir, broker) = broker();
    let ask = |name: &str, allow: bool| {
        MetadataRequest::default()
            .with_allow_auto_topic_creation(allow)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(name)))
            ]))
    };
    let refused = metadata::handle(&broker, ask("nope", false), 12, broker.advertised());
    assert_eq!(refused.topics[0].error_code, 3);
    assert!(broker.topics.get("nope").is_none());
    // Kafka answers the creating request LEADER_NOT_AVAILABLE with no partitions, and
    // serves the topic from the next request on.
    let created = metadata::handle(&broker, ask("yes", true), 12, broker.advertised());
    assert_eq!(created.topics[0].error_code, 5);
    assert!(created.topics[0].partitions.is_empty());
    let served = metadata::handle(&broker, ask("yes", true), 12, broker.advertised());
    assert_eq!(served.topics[0].error_code, 0);
    assert_eq!(served.topics[0].partitions.len(), 1);
    assert_eq!(served.topics[0].topic_id, created.topics[0].topic_id);
    let invalid = metadata::handle(&broker, ask("bad name!", true), 12, broker.advertised());
    assert_eq!(invalid.topics[0].error_code, 17);
}

#[test]
fn produce_validation_maps_each_fault_to_its_kafka_code() {
    use agentlog_protocol::fixtures;
    use kafka_protocol::records::Compression;
    let value = || Some(Bytes::from_static(b"v"));
    let good = fixtures::encode(
        &[
            fixtures::record(0, None, value(), 1),
            fixtures::record(1, None, value(), 1),
        ],
        Compression::None,
    );
    assert!(produce::validate_batches(&good, 1 << 20).is_ok());
    let code = |bytes: &[u8], max| match produce::validate_batches(bytes, max) {
        Ok(()) => 0,
        Err(error) => match error {
            produce::ProduceError::Corrupt(_) => 2,
            produce::ProduceError::TooLarge { .. } => 10,
            produce::ProduceError::OldMagic(_) => 43,
            produce::ProduceError::Invalid(_) => 87,
            other => panic!("unexpected {other}"),
        },
    };
    assert_eq!(code(&good, 10), 10);
    let mut flipped = good.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(code(&flipped, 1 << 20), 2);
    let mut offset = good.to_vec();
    offset[7] = 5;
    assert_eq!(code(&offset, 1 << 20), 87);
    let mut magic = good.to_vec();
    magic[16] = 1;
    assert_eq!(code(&magic, 1 << 20), 43);
    assert_eq!(code(&good[..good.len() - 1], 1 << 20), 2);
    // A record count the bytes cannot hold (kept consistent with the offset delta and
    // the CRC, so only the count check can catch it).
    let mut inflated = good.to_vec();
    inflated[57..61].copy_from_slice(&1_000_000i32.to_be_bytes());
    inflated[23..27].copy_from_slice(&999_999i32.to_be_bytes());
    let crc = crc32c::crc32c(&inflated[21..]);
    inflated[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(code(&inflated, 1 << 20), 87);
    assert_eq!(code(&[], 1 << 20), 87);
}

/// The connection applies requests in order and waits for nothing while doing so: a
/// JoinGroup that must wait for the rebalance is applied at once and answered later,
/// so the member's Heartbeat on the same connection is read and answered meanwhile.
#[tokio::test(start_paused = true)]
async fn a_waiting_join_group_does_not_hold_up_later_requests() {
    let (_dir, broker) = broker(); // group.initial.rebalance.delay.ms: Kafka's 3000
    let join = JoinGroupRequest::default()
        .with_group_id(GroupId(str_bytes("w")))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(60_000)
        .with_protocol_type(str_bytes("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(str_bytes("range"))
        .with_metadata(Bytes::from_static(b"m"))]);
    let started = tokio::time::Instant::now();
    let request = roundtrip(ApiKey::JoinGroup, 3, &RequestKind::JoinGroup(join));
    let reply = dispatch(&broker, request).await;
    assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    let ReplyBody::Later(pending) = reply.body else {
        panic!("JoinGroup must answer later")
    };
    let described = broker.groups.describe("w").unwrap();
    assert_eq!(
        described.state,
        crate::groups::GroupState::PreparingRebalance
    );
    let member_id = described.members[0].member_id.clone();

    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(str_bytes("w")))
        .with_member_id(str_bytes(&member_id));
    let request = roundtrip(ApiKey::Heartbeat, 3, &RequestKind::Heartbeat(heartbeat));
    let ReplyBody::Ready(body) = dispatch(&broker, request).await.body else {
        panic!("Heartbeat answers at once")
    };
    let ResponseKind::Heartbeat(heartbeat) = *body else {
        panic!("not a heartbeat response")
    };
    assert_eq!(heartbeat.error_code, 27, "REBALANCE_IN_PROGRESS");

    let Some(ResponseKind::JoinGroup(joined)) = pending.await.unwrap() else {
        panic!("not a join response")
    };
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(3000));
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.member_id.as_str(), member_id);
    assert_eq!(joined.leader.as_str(), member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
}

async fn call(
    broker: &Arc<Broker>,
    api_key: ApiKey,
    version: i16,
    body: RequestKind,
) -> ResponseKind {
    let reply = dispatch(broker, roundtrip(api_key, version, &body)).await;
    match reply.body {
        ReplyBody::Ready(body) => *body,
        ReplyBody::Later(task) => task.await.unwrap().unwrap(),
        ReplyBody::None => panic!("no response"),
    }
}

#[tokio::test]
async fn fenced_producers_get_the_error_code_of_their_request_version() {
    let (_dir, broker) = broker();
    let init = || {
        RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(str_bytes("fence"))))
                .with_transaction_timeout_ms(60_000),
        )
    };
    let ResponseKind::InitProducerId(first) =
        call(&broker, ApiKey::InitProducerId, 4, init()).await
    else {
        panic!("wrong response kind")
    };
    let ResponseKind::InitProducerId(second) =
        call(&broker, ApiKey::InitProducerId, 4, init()).await
    else {
        panic!("wrong response kind")
    };
    assert_eq!(first.producer_id, second.producer_id);
    assert_eq!(second.producer_epoch, first.producer_epoch + 1);
    let end = || {
        RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(str_bytes("fence")))
                .with_producer_id(first.producer_id)
                .with_producer_epoch(first.producer_epoch)
                .with_committed(true),
        )
    };
    for (version, code) in [(1, 47), (2, 90), (4, 90)] {
        let ResponseKind::EndTxn(response) = call(&broker, ApiKey::EndTxn, version, end()).await
        else {
            panic!("wrong response kind")
        };
        assert_eq!(response.error_code, code, "EndTxn v{version}");
    }
    let too_long = RequestKind::InitProducerId(
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(str_bytes("fence"))))
            .with_transaction_timeout_ms(i32::MAX),
    );
    let ResponseKind::InitProducerId(response) =
        call(&broker, ApiKey::InitProducerId, 4, too_long).await
    else {
        panic!("wrong response kind")
    };
    assert_eq!(response.error_code, 50, "INVALID_TRANSACTION_TIMEOUT");
}

#[tokio::test]
async fn offset_fetch_require_stable_waits_for_staged_transactional_offsets() {
    let (_dir, broker) = broker();
    broker.topics.create("t", 1, Default::default()).unwrap();
    let (pid, epoch) = broker
        .transactions
        .init_producer(&broker, "stable", 60_000, None)
        .unwrap();
    broker
        .transactions
        .add_offsets(
            "stable",
            pid,
            epoch,
            "g",
            crate::transactions::Persist::Durable,
        )
        .unwrap();
    let commit = RequestKind::TxnOffsetCommit(
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(str_bytes("stable")))
            .with_group_id(GroupId(str_bytes("g")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(9),
                    ]),
            ]),
    );
    let ResponseKind::TxnOffsetCommit(staged) =
        call(&broker, ApiKey::TxnOffsetCommit, 3, commit).await
    else {
        panic!("wrong response kind")
    };
    assert_eq!(staged.topics[0].partitions[0].error_code, 0);
    let fetch = |require_stable| {
        RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(str_bytes("g")))
                .with_require_stable(require_stable)
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic_name("t"))
                        .with_partition_indexes(vec![0]),
                ])),
        )
    };
    let partition = |response: ResponseKind| match response {
        ResponseKind::OffsetFetch(r) => {
            let p = &r.topics[0].partitions[0];
            (p.error_code, p.committed_offset)
        }
        _ => panic!("wrong response kind"),
    };
    assert_eq!(
        partition(call(&broker, ApiKey::OffsetFetch, 7, fetch(true)).await),
        (88, -1),
        "UNSTABLE_OFFSET_COMMIT"
    );
    assert_eq!(
        partition(call(&broker, ApiKey::OffsetFetch, 7, fetch(false)).await),
        (0, -1)
    );
    broker
        .transactions
        .end_txn(&broker, "stable", pid, epoch, true)
        .unwrap();
    assert_eq!(
        partition(call(&broker, ApiKey::OffsetFetch, 7, fetch(true)).await),
        (0, 9)
    );
}
