//! Test certificates (scripts/make-test-certs.sh and more signed by its CA with the
//! openssl CLI) and a raw Kafka client over TLS (rustls), which shows the certificate a
//! listener served.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::RawClient;

/// A Kafka client over TLS.
pub type TlsClient = RawClient<StreamOwned<ClientConnection, TcpStream>>;

/// A fresh test CA, broker certificate (`broker.pem`) and client certificate
/// (`client.pem`) from scripts/make-test-certs.sh.
pub fn make_certificates() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/make-test-certs.sh"
    ))
    .arg(dir.path())
    .stdout(Stdio::null())
    .status()
    .expect("run make-test-certs.sh");
    assert!(status.success());
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Signs `dir/NAME.pem` (certificate then key, as the script writes them) for an
/// openssl `-subj` subject with the script's CA; `server` makes it a localhost
/// server certificate, otherwise a client one.
pub fn sign(dir: &Path, name: &str, subject: &str, server: bool) {
    let extensions = if server {
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    } else {
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    };
    std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
    let (key, csr, ext, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
    let mut pem = std::fs::read(dir.join(&crt)).unwrap();
    pem.extend(std::fs::read(dir.join(&key)).unwrap());
    std::fs::write(dir.join(format!("{name}.pem")), pem).unwrap();
}

/// The first certificate in a PEM file, DER.
pub fn first_certificate(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .expect("a certificate")
        .unwrap()
        .to_vec()
}

/// Connects over TLS trusting `dir/ca.crt`, presenting `dir/CLIENT.pem` if given, and
/// completes the handshake.
pub fn tls_client(address: &str, dir: &Path, client: Option<&str>) -> TlsClient {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(first_certificate(&dir.join("ca.crt"))))
        .unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(name) => {
            let pem = dir.join(format!("{name}.pem"));
            let chain = vec![CertificateDer::from(first_certificate(&pem))];
            let key = PrivateKeyDer::from_pem_file(&pem).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let server = ServerName::try_from("localhost").unwrap();
    let connection = ClientConnection::new(Arc::new(config), server).unwrap();
    let tcp = TcpStream::connect(address).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake");
    }
    RawClient {
        stream,
        next_correlation: 1,
    }
}

/// The DER of the certificate the broker served on this connection.
pub fn served_certificate(client: &TlsClient) -> Vec<u8> {
    client
        .stream
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the broker served a certificate")
        .to_vec()
}
