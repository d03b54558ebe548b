//! DescribeCluster: the one broker, as the admin clients' view of the cluster.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{str_bytes, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;

/// Endpoint type asking for brokers (the only kind we are).
const ENDPOINT_BROKERS: i8 = 1;

/// Describes this single-node cluster.
pub fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    version: i16,
    (host, port): (&str, u16),
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&broker.cluster_id))
        .with_controller_id(BrokerId(broker.node_id))
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    if version >= 1 {
        response = response.with_endpoint_type(request.endpoint_type);
        if request.endpoint_type != ENDPOINT_BROKERS {
            return response
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(str_bytes("only broker endpoints are served here")));
        }
    }
    response.with_brokers(vec![DescribeClusterBroker::default()
        .with_broker_id(BrokerId(broker.node_id))
        .with_host(str_bytes(host))
        .with_port(i32::from(port))])
}
