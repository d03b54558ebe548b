//! InitProducerId: producer ids for idempotent producers (Java clients from 3.0 on ask
//! for one by default), epoch bumps when a producer resets its sequences (KIP-360), and
//! for transactional producers the transaction coordinator's id and epoch (fencing the
//! previous producer of the same transactional id).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::transactions::InitTxnError;

/// The first version with PRODUCER_FENCED (KIP-588); older clients get
/// INVALID_PRODUCER_EPOCH for the same condition, as Kafka answers them.
const PRODUCER_FENCED_SINCE: i16 = 4;

/// Allocates a producer id, or bumps the epoch of the one the producer already has.
pub fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    let known = request.producer_id.0 >= 0 && request.producer_epoch >= 0;
    if let Some(transactional_id) = &request.transactional_id {
        let expected = known.then_some((request.producer_id.0, request.producer_epoch));
        return match broker.transactions.init_producer(
            broker,
            transactional_id.0.as_str(),
            request.transaction_timeout_ms,
            expected,
        ) {
            Ok((id, epoch)) => response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            Err(error) => {
                tracing::debug!(%error, "transactional InitProducerId refused");
                let code = match &error {
                    InitTxnError::InvalidTimeout(_) => ResponseError::InvalidTransactionTimeout,
                    InitTxnError::Check(check) => check.code(version < PRODUCER_FENCED_SINCE),
                };
                response
                    .with_error_code(code.code())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        };
    }
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
