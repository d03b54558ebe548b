//! The one function every fuzz driver calls, so libFuzzer and the stable runner test
//! exactly the same thing.

use agentlog_protocol::guard::covered_versions;
use agentlog_protocol::request::decode_request;
use bytes::Bytes;

/// Feeds one request frame (no length prefix) through header parsing, the guard and
/// kafka-protocol's body decoder, with every API and version the guard covers enabled.
///
/// Any outcome is fine except a panic, an abort, or an absurd allocation: those are what
/// the guard exists to prevent.
pub fn decode_one(data: &[u8]) {
    let table = covered_versions();
    let _ = decode_request(Bytes::copy_from_slice(data), &table);
}

/// A SASL listener's credential store with one user (`alice`, password `alice-secret`,
/// both SCRAM mechanisms), made once per process in a temporary sled database.
fn sasl_store() -> &'static agentlog_broker::security::credentials::CredentialStore {
    use agentlog_broker::security::credentials::{
        CredentialStore, ScramCredential, ScramMechanism, MIN_ITERATIONS,
    };
    static STORE: std::sync::OnceLock<CredentialStore> = std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("temporary sled database");
        let store = CredentialStore::open(&db).expect("credential tree");
        for mechanism in ScramMechanism::ALL {
            let credential = ScramCredential::new(mechanism, "alice-secret", MIN_ITERATIONS);
            store
                .put("alice", mechanism, &credential)
                .expect("store alice");
        }
        store
    })
}

/// Drives one connection's SASL state machine (`Authenticator`) with a sequence of
/// request frames, each prefixed by a big-endian u16 length: every frame is decoded as
/// the broker decodes it, and SaslHandshake / SaslAuthenticate requests go to the
/// authenticator in order, as the connection loop sends them; a failure ends the
/// exchange (the broker closes the connection there).
///
/// Any outcome is fine except a panic or an absurd allocation. Returns the user the
/// exchange authenticated, if it got that far.
pub fn sasl_exchange(data: &[u8]) -> Option<String> {
    use agentlog_broker::security::sasl::{Authenticator, Progress};
    use agentlog_protocol::kafka_protocol::messages::RequestKind;

    let table = covered_versions();
    let store = sasl_store();
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let mechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].map(str::to_string);
    let mut auth = Authenticator::new(mechanisms.to_vec());
    let mut rest = data;
    while rest.len() >= 2 {
        let length = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (frame, after) = rest[2..].split_at(length);
        rest = after;
        let Ok(request) = decode_request(Bytes::copy_from_slice(frame), &table) else {
            continue;
        };
        let progress = match &request.body {
            RequestKind::SaslHandshake(req) => auth.handshake(req).1,
            RequestKind::SaslAuthenticate(req) => auth.authenticate(store, req, peer).1,
            _ => continue,
        };
        match progress {
            Progress::Pending => {}
            Progress::Authenticated(user) => {
                assert_eq!(auth.principal(), Some(user.as_str()));
            }
            Progress::Failed | Progress::Refused => return None,
        }
    }
    auth.principal().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use agentlog_protocol::kafka_protocol::messages::{
        RequestHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
    };
    use agentlog_protocol::kafka_protocol::protocol::{Encodable, Request, StrBytes};
    use bytes::BytesMut;

    fn frame<R: Request + Encodable>(request: &R, version: i16, out: &mut Vec<u8>) {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(1);
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
    }

    fn plain(password: &str) -> Vec<u8> {
        let mut input = Vec::new();
        let handshake =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        frame(&handshake, 1, &mut input);
        let message = format!("\0alice\0{password}");
        let authenticate =
            SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(message));
        frame(&authenticate, 2, &mut input);
        input
    }

    #[test]
    fn the_harness_reaches_a_successful_login_and_a_failed_one() {
        assert_eq!(
            super::sasl_exchange(&plain("alice-secret")).as_deref(),
            Some("alice")
        );
        assert_eq!(super::sasl_exchange(&plain("wrong")), None);
        let mut torn = plain("alice-secret");
        torn.truncate(torn.len() - 3);
        assert_eq!(super::sasl_exchange(&torn), None);
    }
}
