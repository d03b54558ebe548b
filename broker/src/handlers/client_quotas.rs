//! DescribeClientQuotas (v0-1) and AlterClientQuotas (v0-1): the quotas of
//! [`crate::quotas`], with Kafka's filter semantics (exact name, default, or any
//! specified name per entity type; `strict` to exclude entities naming other types) and
//! its validation (INVALID_REQUEST for unknown types and keys, `ip` combined with
//! others, fractional byte rates).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::broker::Broker;
use crate::quotas::{validate_entity, Entity, QuotaError, CLIENT_ID, IP, USER};

const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

/// What one filter component asks of an entity's name for its type.
enum Wanted {
    Exactly(Option<String>),
    Specified,
}

fn filter(request: &DescribeClientQuotasRequest) -> Result<BTreeMap<String, Wanted>, String> {
    let mut wanted = BTreeMap::new();
    for component in &request.components {
        let kind = component.entity_type.to_string();
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err(format!("Custom entity type {kind} not supported"));
        }
        let want = match component.match_type {
            MATCH_EXACT => match &component._match {
                Some(name) => Wanted::Exactly(Some(name.to_string())),
                None => return Err(format!("Invalid null match for entity type {kind}")),
            },
            MATCH_DEFAULT => Wanted::Exactly(None),
            MATCH_SPECIFIED => Wanted::Specified,
            other => return Err(format!("Unknown match type {other}")),
        };
        if wanted.insert(kind.clone(), want).is_some() {
            return Err(format!(
                "Entity type {kind} cannot appear more than once in the filter."
            ));
        }
    }
    if wanted.contains_key(IP) && (wanted.contains_key(USER) || wanted.contains_key(CLIENT_ID)) {
        return Err("Invalid entity filter component combination, IP filter component should not be used with user or clientId filter component.".into());
    }
    Ok(wanted)
}

fn matches(entity: &Entity, wanted: &BTreeMap<String, Wanted>, strict: bool) -> bool {
    let each = wanted
        .iter()
        .all(|(kind, want)| match (entity.get(kind), want) {
            (None, _) => false,
            (Some(name), Wanted::Exactly(wanted)) => name == wanted,
            (Some(name), Wanted::Specified) => name.is_some(),
        });
    each && (!strict || entity.keys().all(|k| wanted.contains_key(k)))
}

/// The quotas of every entity the filter matches.
pub fn describe(
    broker: &Broker,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let wanted = match filter(&request) {
        Ok(wanted) => wanted,
        Err(message) => {
            return DescribeClientQuotasResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(&message)))
                .with_entries(None)
        }
    };
    let entries = broker
        .quotas
        .describe(|entity| matches(entity, &wanted, request.strict))
        .into_iter()
        .map(|(entity, values)| {
            describe_client_quotas_response::EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(kind, name)| {
                            describe_client_quotas_response::EntityData::default()
                                .with_entity_type(str_bytes(kind))
                                .with_entity_name(name.as_deref().map(str_bytes))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(key, value)| {
                            describe_client_quotas_response::ValueData::default()
                                .with_key(str_bytes(key))
                                .with_value(*value)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default()
        .with_error_message(None)
        .with_entries(Some(entries))
}

/// Applies each entry's operations, each with its own result.
pub fn alter(broker: &Broker, request: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    let entries = request
        .entries
        .into_iter()
        .map(|entry| {
            let echoed = entry
                .entity
                .iter()
                .map(|e| {
                    alter_client_quotas_response::EntityData::default()
                        .with_entity_type(e.entity_type.clone())
                        .with_entity_name(e.entity_name.clone())
                })
                .collect();
            let outcome = (|| {
                let mut entity = Entity::new();
                for e in &entry.entity {
                    let name = e.entity_name.as_ref().map(StrBytes::to_string);
                    if entity.insert(e.entity_type.to_string(), name).is_some() {
                        return Err(QuotaError::Invalid(format!(
                            "Duplicate quota entity type {}",
                            e.entity_type.as_str()
                        )));
                    }
                }
                validate_entity(&entity)?;
                let ops: Vec<(String, Option<f64>)> = entry
                    .ops
                    .iter()
                    .map(|op| (op.key.to_string(), (!op.remove).then_some(op.value)))
                    .collect();
                broker.quotas.alter(&entity, &ops, request.validate_only)
            })();
            let response = alter_client_quotas_response::EntryData::default().with_entity(echoed);
            match outcome {
                Ok(()) => response.with_error_message(None),
                Err(error) => {
                    let code = match error {
                        QuotaError::Invalid(_) => ResponseError::InvalidRequest,
                        QuotaError::Storage(_) => ResponseError::KafkaStorageError,
                    };
                    tracing::info!(%error, "client quota change refused");
                    response
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(&error.to_string())))
                }
            }
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}
