//! One blocking Kafka-protocol connection over plain TCP, for the requests librdkafka
//! does not expose (`cluster info`'s ApiVersions, `users`' SCRAM credential APIs).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// One blocking Kafka-protocol connection.
pub struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    /// Connects to the first bootstrap address that accepts.
    pub fn open(bootstrap: &str, timeout: Duration) -> anyhow::Result<Connection> {
        let mut last_error = None;
        for server in bootstrap.split(',').map(str::trim) {
            let addresses = match server.to_socket_addrs() {
                Ok(addresses) => addresses,
                Err(error) => {
                    last_error = Some(anyhow::anyhow!("{server}: {error}"));
                    continue;
                }
            };
            for address in addresses {
                match TcpStream::connect_timeout(&address, timeout) {
                    Ok(stream) => {
                        stream.set_read_timeout(Some(timeout))?;
                        stream.set_write_timeout(Some(timeout))?;
                        return Ok(Connection {
                            stream,
                            correlation_id: 0,
                        });
                    }
                    Err(error) => last_error = Some(anyhow::anyhow!("{address}: {error}")),
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no bootstrap address")))
            .context("connecting to the bootstrap broker")
    }

    /// Sends one request and reads its response.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> anyhow::Result<R::Response> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("agentlog-cli")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version))?;
        request.encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(i32::try_from(body.len())?);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).context("sending a request")?;
        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .context("reading a response")?;
        let len = i32::from_be_bytes(prefix);
        anyhow::ensure!(
            (0..64 << 20).contains(&len),
            "implausible response length {len}"
        );
        let mut body = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut body)
            .context("reading a response")?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(
            &mut body,
            <R::Response as HeaderVersion>::header_version(version),
        )?;
        anyhow::ensure!(
            header.correlation_id == self.correlation_id,
            "response out of order"
        );
        let response = <R::Response as Decodable>::decode(&mut body, version)?;
        anyhow::ensure!(body.remaining() == 0, "trailing bytes after a response");
        Ok(response)
    }
}
