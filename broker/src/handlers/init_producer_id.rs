//! InitProducerId: producer ids for idempotent producers (Java clients from 3.0 on ask
//! for one by default), and epoch bumps when a producer resets its sequences (KIP-360).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;

/// Allocates a producer id, or bumps the epoch of the one the producer already has.
pub fn handle(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if request.transactional_id.is_some() {
        // Transactions arrive in a later release; say so plainly rather than hand out
        // an id that the transaction APIs could not honour.
        return response.with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let known = request.producer_id.0 >= 0 && request.producer_epoch >= 0;
    if known && request.producer_epoch < i16::MAX - 1 {
        return response
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    match broker.next_producer_id() {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::error!(%error, "cannot allocate a producer id");
            response.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}
