//! The server side of one SCRAM exchange (RFC 5802, with RFC 7677's SHA-256 and Kafka's
//! SHA-512): client-first → server-first → client-final → server-final.
//!
//! Channel binding is not offered (Kafka does not either), so a client asking for it
//! ("p=") is refused. Kafka's delegation-token extension (`tokenauth`) is refused too.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::credentials::{CredentialError, CredentialStore, ScramCredential, ScramMechanism};

/// Why an exchange failed. The messages go to the broker log and (for the client's
/// sake) a generic text goes to the client.
#[derive(Debug, Error)]
pub enum ScramError {
    /// The client's message does not follow RFC 5802.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// No credential for this user and mechanism.
    #[error("unknown user")]
    UnknownUser,
    /// The client's proof is wrong: a wrong password.
    #[error("invalid credentials")]
    BadProof,
    /// A message arrived after the exchange ended.
    #[error("unexpected message after the exchange ended")]
    Finished,
    /// The credential store failed.
    #[error(transparent)]
    Store(#[from] CredentialError),
}

/// What to send back after a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The server-first message; the exchange goes on.
    Continue(Vec<u8>),
    /// The server-final message; the client is authenticated.
    Done(Vec<u8>),
}

#[derive(Debug)]
enum State {
    AwaitingFirst,
    AwaitingFinal {
        credential: ScramCredential,
        gs2_header: String,
        nonce: String,
        auth_prefix: String,
    },
    Finished,
}

/// One exchange's state.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
    /// The user named in client-first, once known (for logs).
    pub user: Option<String>,
    server_nonce: String,
}

impl ScramServer {
    /// A new exchange with a random server nonce.
    pub fn new(mechanism: ScramMechanism) -> Self {
        let mut raw = [0u8; 18];
        rand::rng().fill_bytes(&mut raw);
        ScramServer::with_nonce(mechanism, STANDARD.encode(raw))
    }

    /// A new exchange with a given server nonce (RFC test vectors).
    pub fn with_nonce(mechanism: ScramMechanism, server_nonce: String) -> Self {
        ScramServer {
            mechanism,
            state: State::AwaitingFirst,
            user: None,
            server_nonce,
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Takes the next client message.
    pub fn step(&mut self, store: &CredentialStore, message: &[u8]) -> Result<Step, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AwaitingFirst => self.first(store, text),
            State::AwaitingFinal {
                credential,
                gs2_header,
                nonce,
                auth_prefix,
            } => self.last(text, &credential, &gs2_header, &nonce, &auth_prefix),
            State::Finished => Err(ScramError::Finished),
        }
    }

    fn first(&mut self, store: &CredentialStore, text: &str) -> Result<Step, ScramError> {
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().unwrap_or_default();
        let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("no client-first-bare"))?;
        if flag != "n" && flag != "y" {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        let mut user = None;
        let mut client_nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", name)) => user = Some(decode_name(name)?),
                Some(("r", nonce)) => client_nonce = Some(nonce),
                Some(("tokenauth", _)) => {
                    return Err(ScramError::Malformed("delegation tokens are not supported"))
                }
                Some(("m", _)) => return Err(ScramError::Malformed("mandatory extension")),
                _ => {}
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = client_nonce
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no client nonce"))?;
        if let Some(id) = authzid.strip_prefix("a=") {
            if decode_name(id)? != user {
                return Err(ScramError::Malformed("authorization id differs from user"));
            }
        } else if !authzid.is_empty() {
            return Err(ScramError::Malformed("bad authorization id"));
        }
        self.user = Some(user.clone());
        let credential = store
            .get(&user, self.mechanism)?
            .ok_or(ScramError::UnknownUser)?;
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        self.state = State::AwaitingFinal {
            credential,
            gs2_header: format!("{flag},{authzid},"),
            nonce,
            auth_prefix: format!("{bare},{server_first},"),
        };
        Ok(Step::Continue(server_first.into_bytes()))
    }

    fn last(
        &mut self,
        text: &str,
        credential: &ScramCredential,
        gs2_header: &str,
        nonce: &str,
        auth_prefix: &str,
    ) -> Result<Step, ScramError> {
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut final_nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", value)) => binding = Some(value),
                Some(("r", value)) => final_nonce = Some(value),
                _ => {}
            }
        }
        if binding != Some(STANDARD.encode(gs2_header).as_str()) {
            return Err(ScramError::Malformed("channel binding does not match"));
        }
        if final_nonce != Some(nonce) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!("{auth_prefix}{without_proof}");
        let signature = self
            .mechanism
            .hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::BadProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !bool::from(
            self.mechanism
                .hash(&client_key)
                .ct_eq(&credential.stored_key),
        ) {
            return Err(ScramError::BadProof);
        }
        let server_signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        Ok(Step::Done(
            format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
        ))
    }
}

/// RFC 5802 saslname: `=2C` is a comma, `=3D` an equals sign, any other `=` is an error.
fn decode_name(raw: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at + 1..at + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store holding RFC 7677's user: "user", password "pencil", its salt, 4096 rounds.
    fn rfc7677_store() -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = CredentialStore::open(&db).unwrap();
        let mech = ScramMechanism::Sha256;
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = mech.salted_password(b"pencil", &salt, 4096);
        store
            .put(
                "user",
                mech,
                &ScramCredential::from_salted(mech, salt, &salted, 4096),
            )
            .unwrap();
        (dir, store)
    }

    /// Every truncation and many single-byte mutations of both client messages, fed
    /// to fresh exchanges: each is answered or refused, nothing panics, and no mutated
    /// final message authenticates.
    #[test]
    fn mangled_client_messages_are_refused_without_panicking() {
        let (_dir, store) = rfc7677_store();
        let mech = ScramMechanism::Sha256;
        let nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let first: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let last: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let variants = |message: &[u8]| {
            let mut out: Vec<Vec<u8>> = (0..message.len()).map(|n| message[..n].to_vec()).collect();
            for at in 0..message.len() {
                for byte in [b',', b'=', 0, 0xff, b'A'] {
                    let mut mutated = message.to_vec();
                    if mutated[at] != byte {
                        mutated[at] = byte;
                        out.push(mutated);
                    }
                }
            }
            out
        };
        for mangled in variants(first) {
            let _ = ScramServer::with_nonce(mech, nonce.into()).step(&store, &mangled);
        }
        for mangled in variants(last) {
            let mut server = ScramServer::with_nonce(mech, nonce.into());
            server.step(&store, first).unwrap();
            assert!(
                !matches!(server.step(&store, &mangled), Ok(Step::Done(_))),
                "{}",
                String::from_utf8_lossy(&mangled)
            );
        }
    }

    /// RFC 7677 section 3, byte for byte.
    #[test]
    fn rfc7677_exchange() {
        let (_dir, store) = rfc7677_store();
        let mech = ScramMechanism::Sha256;

        let mut server = ScramServer::with_nonce(mech, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
        let first = server
            .step(&store, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        assert_eq!(
            first,
            Step::Continue(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                    .to_vec()
            )
        );
        let last = server.step(&store, b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        assert_eq!(
            last,
            Step::Done(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec())
        );
        assert!(matches!(
            server.step(&store, b"x"),
            Err(ScramError::Finished)
        ));

        // Same exchange, one bit of the proof flipped: a wrong password.
        let mut server = ScramServer::with_nonce(mech, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into());
        server
            .step(&store, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
            .unwrap();
        assert!(matches!(
            server.step(&store, b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
            Err(ScramError::BadProof)
        ));
        let mut server = ScramServer::new(mech);
        assert!(matches!(
            server.step(&store, b"n,,n=nobody,r=abc"),
            Err(ScramError::UnknownUser)
        ));
        for bad in [
            &b"p=tls-unique,,n=user,r=a"[..],
            b"n,,r=a",
            b"n,,n=us=er,r=a",
            b"\xff",
        ] {
            assert!(matches!(
                ScramServer::new(mech).step(&store, bad),
                Err(ScramError::Malformed(_))
            ));
        }
    }
}
