//! A client certificate's subject as the distinguished name Kafka's principal builder
//! sees: Java's `X500Principal.getName()`, the RFC 2253 string (`CN=client,OU=eng,O=acme`,
//! most specific first). Only the subject is read, with a minimal DER walk: rustls has
//! already verified the certificate, so nothing here decides trust.

use thiserror::Error;

/// Why a certificate's subject could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("certificate subject unreadable: {0}")]
pub struct DnError(&'static str);

/// DER tags this walk meets.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;

/// One DER element: its tag, its contents, and its whole encoding.
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    encoded: &'a [u8],
}

/// Takes one element off the front of `input`.
fn next<'a>(input: &mut &'a [u8]) -> Result<Element<'a>, DnError> {
    let whole: &'a [u8] = input;
    let (&tag, rest) = whole.split_first().ok_or(DnError("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(DnError("multi-byte tag"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(DnError("truncated"))?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(DnError("bad length"));
        }
        let (digits, after) = rest.split_at(count);
        rest = after;
        digits
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < length {
        return Err(DnError("truncated"));
    }
    let header = whole.len() - rest.len();
    let (encoded, after) = whole.split_at(header + length);
    *input = after;
    Ok(Element {
        tag,
        content: &encoded[header..],
        encoded,
    })
}

/// Takes one element that must have `tag`.
fn expect<'a>(input: &mut &'a [u8], tag: u8, what: &'static str) -> Result<Element<'a>, DnError> {
    let element = next(input)?;
    if element.tag == tag {
        Ok(element)
    } else {
        Err(DnError(what))
    }
}

/// The RFC 2253 subject of a DER certificate, as Java's `X500Principal.getName()`.
pub fn subject_dn(certificate: &[u8]) -> Result<String, DnError> {
    let mut input = certificate;
    let mut certificate = expect(&mut input, SEQUENCE, "not a certificate")?.content;
    let mut tbs = expect(&mut certificate, SEQUENCE, "no tbsCertificate")?.content;
    // [0] version (absent in v1 certificates), then the serial number.
    if next(&mut tbs)?.tag == VERSION {
        next(&mut tbs)?;
    }
    expect(&mut tbs, SEQUENCE, "no signature algorithm")?;
    expect(&mut tbs, SEQUENCE, "no issuer")?;
    expect(&mut tbs, SEQUENCE, "no validity")?;
    let subject = expect(&mut tbs, SEQUENCE, "no subject")?;
    name_to_rfc2253(subject.content)
}

/// A DER `Name` (its contents) as RFC 2253: the RDNs in reverse order, comma-separated,
/// the attributes of a multi-valued RDN joined by `+` in their encoded order.
pub fn name_to_rfc2253(mut name: &[u8]) -> Result<String, DnError> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let mut set = expect(&mut name, SET, "RDN is not a SET")?.content;
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let mut pair = expect(&mut set, SEQUENCE, "attribute is not a SEQUENCE")?.content;
            let oid = expect(&mut pair, OID, "attribute type is not an OID")?;
            let value = next(&mut pair)?;
            attributes.push(attribute(&oid_text(oid.content)?, &value));
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// Dotted decimal of an OID's contents.
fn oid_text(content: &[u8]) -> Result<String, DnError> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for (i, &byte) in content.iter().enumerate() {
        if value > u64::MAX >> 7 {
            return Err(DnError("OID arc too large"));
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        } else if i + 1 == content.len() {
            return Err(DnError("OID ends mid-arc"));
        }
    }
    if arcs.is_empty() {
        return Err(DnError("empty OID"));
    }
    Ok(arcs
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// The keywords Java's RFC 2253 output uses; every other type is its dotted OID.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// One `type=value`: a string value of a keyword type escaped as RFC 2253 says (as Java
/// escapes it), anything else `#` and the hex of the value's DER encoding.
fn attribute(oid: &str, value: &Element<'_>) -> String {
    let text = keyword(oid).and_then(|keyword| Some((keyword, string_value(value)?)));
    match text {
        Some((keyword, text)) => format!("{keyword}={}", escape(&text)),
        None => {
            let hex: String = value.encoded.iter().map(|b| format!("{b:02x}")).collect();
            format!("{oid}=#{hex}")
        }
    }
}

/// The text of a DER string type Java renders as a string (`isDerString`).
fn string_value(value: &Element<'_>) -> Option<String> {
    match value.tag {
        // UTF8String
        0x0c => Some(String::from_utf8_lossy(value.content).into_owned()),
        // PrintableString, T61String, IA5String, GeneralString: one byte per character.
        0x13 | 0x14 | 0x16 | 0x1b => Some(value.content.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1e => {
            let units: Vec<u16> = value
                .content
                .chunks(2)
                .map(|pair| match pair {
                    [hi, lo] => u16::from_be_bytes([*hi, *lo]),
                    _ => 0xfffd,
                })
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// RFC 2253 escaping as Java's `AVA.toRFC2253String`: a backslash before each of
/// `,=+<>#;"\`, `\00` for NUL, and a backslash before leading and trailing spaces.
fn escape(text: &str) -> String {
    let mut escaped: Vec<(bool, char)> = Vec::new();
    for c in text.chars() {
        match c {
            ',' | '=' | '+' | '<' | '>' | '#' | ';' | '"' | '\\' => {
                escaped.push((false, '\\'));
                escaped.push((false, c));
            }
            '\0' => {
                escaped.extend([(false, '\\'), (false, '0'), (false, '0')]);
            }
            _ => escaped.push((true, c)),
        }
    }
    let blank = |(plain, c): &(bool, char)| *plain && (*c == ' ' || *c == '\r');
    let lead = escaped.iter().take_while(|e| blank(e)).count();
    let trail = escaped.iter().rev().take_while(|e| blank(e)).count();
    let mut out = String::with_capacity(text.len() + 4);
    for (i, (_, c)) in escaped.iter().enumerate() {
        if i < lead || i >= escaped.len() - trail {
            out.push('\\');
        }
        out.push(*c);
    }
    out
}

#[cfg(test)]
#[path = "x509_tests.rs"]
mod tests;
