//! SASL on a connection: SaslHandshake picks a mechanism, SaslAuthenticate carries its
//! messages (KIP-152), and until the exchange succeeds only ApiVersions is served.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::credentials::{CredentialStore, ScramMechanism};
use super::scram::{ScramError, ScramServer, Step};

/// SASL/PLAIN's name.
const PLAIN: &str = "PLAIN";

/// Whether a `sasl.enabled.mechanisms` value names only mechanisms we implement.
pub fn valid_mechanism_list(value: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .all(|m| m == PLAIN || ScramMechanism::from_name(m).is_some())
}

/// What the client gets told when authentication fails; the reason goes to the log
/// only, so that a prober cannot tell an unknown user from a wrong password.
fn failed_message(mechanism: &str) -> String {
    format!("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}")
}

#[derive(Debug)]
enum State {
    /// No handshake yet.
    Start,
    /// PLAIN chosen; its one message is next.
    Plain,
    /// A SCRAM exchange is under way.
    Scram(Box<ScramServer>),
    /// Authenticated as this user.
    Done(String),
}

/// Where a connection stands after one SASL request.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More messages to come.
    Pending,
    /// The client is now this user: every API is open to it.
    Authenticated(String),
    /// The exchange failed: send the answer, then close (as Kafka does).
    Failed,
    /// Refused without checking anything (the address is backing off after too many
    /// failures): send the answer and close, without the failure delay.
    Refused,
}

/// The answer to a login from an address that is backing off (see
/// [`super::login_guard`]): SASL_AUTHENTICATION_FAILED saying why and for how long.
pub fn refused(address: std::net::IpAddr, left: std::time::Duration) -> SaslAuthenticateResponse {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let message = format!(
        "Authentication refused: too many failed authentication attempts from {address}; try again in {seconds} s"
    );
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::SaslAuthenticationFailed.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

/// One connection's SASL state.
#[derive(Debug)]
pub struct Authenticator {
    enabled: Vec<String>,
    state: State,
}

impl Authenticator {
    /// Offers the given mechanisms (already validated by the config).
    pub fn new(enabled: Vec<String>) -> Self {
        Authenticator {
            enabled,
            state: State::Start,
        }
    }

    /// The authenticated user, once there is one.
    pub fn principal(&self) -> Option<&str> {
        match &self.state {
            State::Done(user) => Some(user),
            _ => None,
        }
    }

    /// Answers SaslHandshake: accepts an enabled mechanism, otherwise lists them.
    pub fn handshake(
        &mut self,
        request: &SaslHandshakeRequest,
    ) -> (SaslHandshakeResponse, Progress) {
        let mechanisms = self
            .enabled
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
        let wanted = request.mechanism.as_str();
        if !matches!(self.state, State::Start) {
            let error = ResponseError::IllegalSaslState.code();
            return (response.with_error_code(error), Progress::Failed);
        }
        if !self.enabled.iter().any(|m| m == wanted) {
            tracing::warn!(mechanism = %wanted.escape_debug(), "authentication failed: mechanism not enabled");
            let error = ResponseError::UnsupportedSaslMechanism.code();
            return (response.with_error_code(error), Progress::Failed);
        }
        self.state = match ScramMechanism::from_name(wanted) {
            Some(scram) => State::Scram(Box::new(ScramServer::new(scram))),
            None => State::Plain,
        };
        (response, Progress::Pending)
    }

    /// Answers SaslAuthenticate with the mechanism's next message.
    pub fn authenticate(
        &mut self,
        store: &CredentialStore,
        request: &SaslAuthenticateRequest,
        peer: std::net::SocketAddr,
    ) -> (SaslAuthenticateResponse, Progress) {
        let response = SaslAuthenticateResponse::default();
        let (mechanism, result) = match &mut self.state {
            State::Plain => (PLAIN.to_string(), plain(store, &request.auth_bytes)),
            State::Scram(server) => {
                let name = server_mechanism(server);
                match server.step(store, &request.auth_bytes) {
                    Ok(Step::Continue(reply)) => {
                        return (response.with_auth_bytes(reply.into()), Progress::Pending)
                    }
                    Ok(Step::Done(reply)) => {
                        let user = server.user.clone().unwrap_or_default();
                        self.state = State::Done(user.clone());
                        let response = response.with_auth_bytes(reply.into());
                        return (response, Progress::Authenticated(user));
                    }
                    Err(error) => (name, Err((server.user.clone(), error))),
                }
            }
            State::Start | State::Done(_) => {
                let error = ResponseError::IllegalSaslState;
                return (
                    response
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_static_str(
                            "SaslAuthenticate is only valid after a successful SaslHandshake",
                        ))),
                    Progress::Failed,
                );
            }
        };
        match result {
            Ok(user) => {
                self.state = State::Done(user.clone());
                (response, Progress::Authenticated(user))
            }
            Err((user, error)) => {
                tracing::warn!(%peer, %mechanism, user = ?user.as_deref().unwrap_or("?"), reason = %error, "authentication failed");
                let response = response
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(failed_message(&mechanism))));
                (response, Progress::Failed)
            }
        }
    }
}

fn server_mechanism(server: &ScramServer) -> String {
    server.mechanism().name().to_string()
}

/// SASL/PLAIN (RFC 4616): `authzid \0 user \0 password`, checked against the stored
/// SCRAM credentials.
fn plain(store: &CredentialStore, message: &[u8]) -> Result<String, (Option<String>, ScramError)> {
    let mut fields = message.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err((
            None,
            ScramError::Malformed("PLAIN message is not authzid\\0user\\0password"),
        ));
    };
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| ScramError::Malformed("not UTF-8"))
    };
    let user = text(user).map_err(|e| (None, e))?;
    let fail = |e: ScramError| (Some(user.clone()), e);
    let password = text(password).map_err(fail)?;
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(fail(ScramError::Malformed(
            "authorization id differs from user",
        )));
    }
    match store.check_password(&user, &password) {
        Ok(true) => Ok(user),
        Ok(false) => Err(fail(ScramError::BadProof)),
        Err(error) => Err(fail(error.into())),
    }
}
