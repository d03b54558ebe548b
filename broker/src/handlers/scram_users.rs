//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): SCRAM users,
//! managed over the wire as `kafka-configs --entity-type users` and AdminClients do.
//!
//! Clients send the salted password, never the password; we keep only the keys derived
//! from it. With no authorizer yet, any client that may connect may manage users (as on
//! Kafka without one); the README says to keep such a listener private.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ResponseKind,
    SaslAuthenticateResponse, SaslHandshakeResponse,
};

use super::{str_bytes, ReplyBody};
use crate::broker::Broker;
use crate::security::credentials::{
    ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS,
};

/// SASL requests on a listener that does not do SASL: Kafka's ILLEGAL_SASL_STATE.
pub fn sasl_on_unsecured_listener(api_key: ApiKey) -> ReplyBody {
    let code = ResponseError::IllegalSaslState.code();
    let message = "this listener does not use SASL (security.protocol must match the listener)";
    ReplyBody::ready(if api_key == ApiKey::SaslHandshake {
        ResponseKind::SaslHandshake(SaslHandshakeResponse::default().with_error_code(code))
    } else {
        ResponseKind::SaslAuthenticate(
            SaslAuthenticateResponse::default()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message))),
        )
    })
}

/// Lists users' mechanisms and iteration counts (never salts or keys).
pub fn describe(
    broker: &Broker,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let response = DescribeUserScramCredentialsResponse::default();
    let stored = match broker.credentials.list() {
        Ok(stored) => stored,
        Err(error) => {
            tracing::error!(%error, "cannot read SCRAM credentials");
            return response
                .with_error_code(ResponseError::UnknownServerError.code())
                .with_error_message(Some(str_bytes(&error.to_string())));
        }
    };
    let mut by_user: BTreeMap<String, Vec<CredentialInfo>> = BTreeMap::new();
    for (user, mechanism, iterations) in stored {
        by_user.entry(user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(mechanism.code())
                .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX)),
        );
    }
    let results = match request.users {
        // Null or empty: every user.
        None => by_user.into_iter().map(found).collect(),
        Some(users) if users.is_empty() => by_user.into_iter().map(found).collect(),
        Some(users) => users
            .into_iter()
            .map(|wanted| {
                let name = wanted.name.to_string();
                match by_user.remove(&name) {
                    Some(infos) => found((name, infos)),
                    None => DescribeUserScramCredentialsResult::default()
                        .with_user(wanted.name)
                        .with_error_code(ResponseError::ResourceNotFound.code())
                        .with_error_message(Some(str_bytes(&format!(
                            "attempt to describe a user credential that does not exist: {name}"
                        )))),
                }
            })
            .collect(),
    };
    response.with_results(results)
}

fn found((user, infos): (String, Vec<CredentialInfo>)) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default()
        .with_user(str_bytes(&user))
        .with_credential_infos(infos)
}

/// Deletes and upserts credentials; one result per user, the first error winning.
pub fn alter(
    broker: &Broker,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut outcome: BTreeMap<String, Result<(), (ResponseError, String)>> = BTreeMap::new();
    let mut record = |user: String, result: Result<(), (ResponseError, String)>| {
        let entry = outcome.entry(user).or_insert(Ok(()));
        if entry.is_ok() {
            *entry = result;
        }
    };
    for deletion in request.deletions {
        let user = deletion.name.to_string();
        let result = match ScramMechanism::from_code(deletion.mechanism) {
            None => Err(unsupported_mechanism(deletion.mechanism)),
            Some(mechanism) => match broker.credentials.remove(&user, mechanism) {
                Ok(true) => Ok(()),
                Ok(false) => Err((
                    ResponseError::ResourceNotFound,
                    format!("no {} credential for user {user}", mechanism.name()),
                )),
                Err(error) => Err((ResponseError::UnknownServerError, error.to_string())),
            },
        };
        record(user, result);
    }
    for upsertion in request.upsertions {
        let user = upsertion.name.to_string();
        let result = upsert(broker, &user, &upsertion);
        if result.is_ok() {
            tracing::info!(%user, mechanism = upsertion.mechanism, "SCRAM credential stored");
        }
        record(user, result);
    }
    let results = outcome
        .into_iter()
        .map(|(user, result)| {
            let result_entry =
                AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
            match result {
                Ok(()) => result_entry,
                Err((error, message)) => result_entry
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn unsupported_mechanism(code: i8) -> (ResponseError, String) {
    (
        ResponseError::UnsupportedSaslMechanism,
        format!("unknown SCRAM mechanism code {code}"),
    )
}

fn upsert(
    broker: &Broker,
    user: &str,
    upsertion: &kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
) -> Result<(), (ResponseError, String)> {
    let mechanism = ScramMechanism::from_code(upsertion.mechanism)
        .ok_or_else(|| unsupported_mechanism(upsertion.mechanism))?;
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "empty user name".into(),
        ));
    }
    let iterations = u32::try_from(upsertion.iterations)
        .ok()
        .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
        .ok_or_else(|| {
            (
                ResponseError::UnacceptableCredential,
                format!("iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"),
            )
        })?;
    if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "salt and salted password must not be empty".into(),
        ));
    }
    let credential = ScramCredential::from_salted(
        mechanism,
        upsertion.salt.to_vec(),
        &upsertion.salted_password,
        iterations,
    );
    broker
        .credentials
        .put(user, mechanism, &credential)
        .map_err(|error| (ResponseError::UnknownServerError, error.to_string()))
}
