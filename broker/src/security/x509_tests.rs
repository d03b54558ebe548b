use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::*;

/// Made with `openssl req -x509 -utf8 -multivalue-rdn -subj "/DC=com/DC=acme/O=Acme\,
/// Inc./OU=eng+UID=u42/CN=Jöhn #1 <x>/emailAddress=j@acme.com"`: IA5 and UTF-8
/// strings, a multi-valued RDN, characters RFC 2253 escapes and a type without keyword.
const RICH_SUBJECT: &str = "-----BEGIN CERTIFICATE-----
MIICfDCCAiOgAwIBAgIURhAb9vE5BPsEO5Ion6n3hhUKPYwwCgYIKoZIzj0EAwIw
gZMxEzARBgoJkiaJk/IsZAEZFgNjb20xFDASBgoJkiaJk/IsZAEZFgRhY21lMRMw
EQYDVQQKDApBY21lLCBJbmMuMR8wCgYDVQQLDANlbmcwEQYKCZImiZPyLGQBAQwD
dTQyMRUwEwYDVQQDDAxKw7ZobiAjMSA8eD4xGTAXBgkqhkiG9w0BCQEWCmpAYWNt
ZS5jb20wHhcNMjYxMjA0MTEzNTQyWhcNMzYxMjAxMTEzNTQyWjCBkzETMBEGCgmS
JomT8ixkARkWA2NvbTEUMBIGCgmSJomT8ixkARkWBGFjbWUxEzARBgNVBAoMCkFj
bWUsIEluYy4xHzAKBgNVBAsMA2VuZzARBgoJkiaJk/IsZAEBDAN1NDIxFTATBgNV
BAMMDErDtmhuICMxIDx4PjEZMBcGCSqGSIb3DQEJARYKakBhY21lLmNvbTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABDOg2aT6nXyjv5naVKaJh8ha8gOHNnXAG18T
DAykr4S43QEPdSjVlycfQr9iwQkhjluzAlWdw6MNFrkv5oU7dT+jUzBRMB0GA1Ud
DgQWBBQhZHK0jnolbPO2ocqJDdMcYHN3NDAfBgNVHSMEGDAWgBQhZHK0jnolbPO2
ocqJDdMcYHN3NDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIEeC
iRzQ3/o/KLDiCBmGnl+pcI3j4X/agaB9QxMRq/AyAiBFvKCmeOQ1GvfgGlciS3HR
1q7wmYOpo+raQMfCYOoUWA==
-----END CERTIFICATE-----
";

#[test]
fn subject_is_the_rfc2253_string_java_prints() {
    let cert = CertificateDer::from_pem_slice(RICH_SUBJECT.as_bytes()).unwrap();
    assert_eq!(
        subject_dn(&cert).unwrap(),
        "1.2.840.113549.1.9.1=#160a6a4061636d652e636f6d,CN=Jöhn \\#1 \\<x\\>,\
         OU=eng+UID=u42,O=Acme\\, Inc.,DC=acme,DC=com"
    );
}

#[test]
fn escaping_follows_java_for_specials_nul_and_outer_spaces() {
    assert_eq!(escape("Tkac, Adam"), "Tkac\\, Adam");
    assert_eq!(escape("a=b+c;d\"e\\f"), "a\\=b\\+c\\;d\\\"e\\\\f");
    assert_eq!(escape("  x y "), "\\ \\ x y\\ ");
    assert_eq!(escape("   "), "\\ \\ \\ ");
    assert_eq!(escape("a\0b"), "a\\00b");
    assert_eq!(escape(""), "");
}

#[test]
fn malformed_der_is_an_error_not_a_panic() {
    let cert = CertificateDer::from_pem_slice(RICH_SUBJECT.as_bytes()).unwrap();
    let bytes: &[u8] = cert.as_ref();
    for cut in 0..bytes.len() {
        let _ = subject_dn(&bytes[..cut]);
    }
    assert!(subject_dn(&[]).is_err());
    assert!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(subject_dn(&[0x30, 0x02, 0x30, 0x00]).is_err());
    let mut flipped = bytes.to_vec();
    for i in 0..flipped.len() {
        flipped[i] ^= 0x80;
        let _ = subject_dn(&flipped);
        flipped[i] ^= 0x80;
    }
}

#[test]
fn oids_print_as_dotted_decimal() {
    assert_eq!(oid_text(&[0x55, 0x04, 0x03]).unwrap(), "2.5.4.3");
    assert_eq!(
        oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]).unwrap(),
        "1.2.840.113549.1.9.1"
    );
    assert_eq!(
        oid_text(&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19]).unwrap(),
        "0.9.2342.19200300.100.1.25"
    );
    assert!(oid_text(&[0x86]).is_err());
    assert!(oid_text(&[]).is_err());
}
