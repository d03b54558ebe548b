//! Reading length-prefixed frames without trusting the prefix, and without holding
//! memory for connections that have nothing in flight.
//!
//! A peer that announces a 100 MiB frame and then sends nothing must not make us
//! allocate 100 MiB: a frame's buffer grows with the bytes that actually arrive. And an
//! idle connection (10,000 of them are a target) must not keep a socket buffer: between
//! frames the reader holds no heap memory at all, and the next read goes to a small probe
//! on the stack until a frame is under way.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How much of an announced frame is allocated before its bytes arrive: typical
/// requests (produce requests are usually up to 1 MiB) get one allocation, while a peer
/// that announces 100 MiB and sends nothing costs at most this much.
const UPFRONT: usize = 1 << 20;

/// How much the buffer may grow per read past [`UPFRONT`] while a large frame arrives.
const GROWTH_STEP: usize = 1 << 20;

/// The first read after an idle spell: large enough for most small requests (heartbeats,
/// fetches, metadata) to arrive whole in one read, small enough to live in the reading
/// future of every idle connection.
const PROBE: usize = 512;

/// How much is read at once while pipelined frames keep arriving.
const BUSY_READ: usize = 8 * 1024;

/// Why no frame could be read.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed mid-frame")]
    Truncated,
    /// The length prefix is negative or above the limit.
    #[error("frame length {length} outside 0..={limit}")]
    TooLarge {
        /// Announced length.
        length: i64,
        /// The limit in force.
        limit: usize,
    },
}

/// Splits a byte stream into frame bodies.
///
/// [`FrameReader::next_frame`] is cancel-safe: every byte read is stored in the reader
/// before the next await, so a connection can wait for a frame and for other events
/// (a reply becoming ready, shutdown) in one `select!` without losing input.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    /// Bytes read but not yet part of a returned frame, short of one frame's body:
    /// empty (and unallocated) while the connection is idle.
    carry: BytesMut,
    /// The body of a frame larger than what one read brought, allocated for exactly
    /// its announced length so that the stored batches it becomes pin nothing more.
    body: Option<(usize, BytesMut)>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of `reader`'s frames.
    pub fn new(reader: R) -> FrameReader<R> {
        FrameReader {
            reader,
            carry: BytesMut::new(),
            body: None,
        }
    }

    /// Bytes this reader holds on the heap for frames still arriving (0 when idle).
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.carry.capacity() + self.body.as_ref().map_or(0, |(_, body)| body.capacity())
    }

    /// Whether a whole frame has arrived and waits to be taken (a pipelined request).
    pub fn holds_whole_frame(&self) -> bool {
        match &self.body {
            Some((length, body)) => body.len() >= *length,
            None => self.carry.first_chunk::<4>().is_some_and(|prefix| {
                usize::try_from(i32::from_be_bytes(*prefix))
                    .is_ok_and(|length| self.carry.len() - 4 >= length)
            }),
        }
    }

    /// Reads one frame body; `Ok(None)` on a clean end of stream between frames. A
    /// length prefix over `limit` is refused before anything is allocated for it.
    pub async fn next_frame(&mut self, limit: usize) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = self.take_frame(limit)? {
                return Ok(Some(frame));
            }
            let read = match &mut self.body {
                Some((length, body)) => {
                    let want = (*length - body.len()).min(GROWTH_STEP);
                    body.reserve(want);
                    (&mut self.reader).take(want as u64).read_buf(body).await?
                }
                None if self.carry.is_empty() => {
                    let mut probe = [0u8; PROBE];
                    let n = self.reader.read(&mut probe).await?;
                    self.carry
                        .extend_from_slice(probe.get(..n).unwrap_or_default());
                    n
                }
                None => {
                    self.carry.reserve(BUSY_READ);
                    self.reader.read_buf(&mut self.carry).await?
                }
            };
            if read == 0 {
                return if self.carry.is_empty() && self.body.is_none() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// A whole frame from what has arrived, if there is one; moves a frame that is still
    /// arriving into its own buffer.
    fn take_frame(&mut self, limit: usize) -> Result<Option<Bytes>, FrameError> {
        if let Some((length, body)) = &mut self.body {
            if body.len() < *length {
                return Ok(None);
            }
            let frame = std::mem::take(body).freeze();
            self.body = None;
            return Ok(Some(frame));
        }
        let Some(prefix) = self.carry.first_chunk::<4>() else {
            return Ok(None);
        };
        let announced = i32::from_be_bytes(*prefix);
        let length = usize::try_from(announced)
            .ok()
            .filter(|len| *len <= limit)
            .ok_or(FrameError::TooLarge {
                length: i64::from(announced),
                limit,
            })?;
        let arrived = self.carry.len() - 4;
        if arrived >= length {
            // Copied out, not split off: a frame kept by the log must not hold the
            // rest of the read buffer with it.
            let frame = Bytes::copy_from_slice(self.carry.get(4..4 + length).unwrap_or_default());
            self.carry.advance(4 + length);
            self.release_if_empty();
            return Ok(Some(frame));
        }
        let mut body = BytesMut::with_capacity(length.min(UPFRONT));
        body.extend_from_slice(self.carry.get(4..).unwrap_or_default());
        self.carry.clear();
        self.release_if_empty();
        self.body = Some((length, body));
        Ok(None)
    }

    /// Gives the read buffer back once nothing is left in it: idle connections hold none.
    fn release_if_empty(&mut self) {
        if self.carry.is_empty() {
            self.carry = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], limit: usize) -> Vec<Result<Option<Bytes>, String>> {
        let mut reader = FrameReader::new(input);
        let mut out = Vec::new();
        loop {
            let next = reader.next_frame(limit).await.map_err(|e| e.to_string());
            let end = !matches!(next, Ok(Some(_)));
            out.push(next);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn reads_frames_and_refuses_oversized_prefixes() {
        let got = frames(&[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0], 10).await;
        assert_eq!(
            got,
            vec![
                Ok(Some(Bytes::from_static(b"abc"))),
                Ok(Some(Bytes::new())),
                Ok(None)
            ]
        );
        let mut huge = FrameReader::new(&[0x7f, 0xff, 0xff, 0xff, 1, 2][..]);
        assert!(matches!(
            huge.next_frame(100).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut negative = FrameReader::new(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            negative.next_frame(100).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut torn = FrameReader::new(&[0, 0, 0, 9, 1, 2][..]);
        assert!(matches!(
            torn.next_frame(100).await,
            Err(FrameError::Truncated)
        ));
        let mut torn_prefix = FrameReader::new(&[0, 0][..]);
        assert!(matches!(
            torn_prefix.next_frame(100).await,
            Err(FrameError::Truncated)
        ));
    }

    /// Frames larger than the probe, pipelined frames and frames split across reads all
    /// come out whole and in order, and the reader holds no buffer once they are out.
    #[tokio::test]
    async fn frames_of_every_size_arrive_whole_and_idle_readers_hold_nothing() {
        let sizes = [0usize, 1, 100, PROBE - 4, PROBE, PROBE + 1, 5000, 70_000, 3];
        let mut wire = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            wire.extend_from_slice(&u32::try_from(*size).unwrap().to_be_bytes());
            wire.extend(std::iter::repeat_n(i as u8, *size));
        }
        // Delivered in uneven pieces, as a socket would.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for piece in wire.chunks(777) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut reader = FrameReader::new(server);
        for (i, size) in sizes.iter().enumerate() {
            let frame = reader.next_frame(1 << 20).await.unwrap().unwrap();
            assert_eq!(frame.len(), *size, "frame {i}");
            assert!(frame.iter().all(|b| *b == i as u8), "frame {i}");
        }
        writer.await.unwrap();
        assert!(reader.next_frame(1 << 20).await.unwrap().is_none());
        assert_eq!(reader.buffered_capacity(), 0);
    }

    /// A wait for the next frame can be dropped at any point (a `select!` took another
    /// branch) without losing a byte: every frame still arrives whole.
    #[tokio::test]
    async fn next_frame_is_cancel_safe() {
        let (mut client, server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for i in 0..50u8 {
                let size = usize::from(i) * 37;
                let mut frame = u32::try_from(size).unwrap().to_be_bytes().to_vec();
                frame.extend(std::iter::repeat_n(i, size));
                for piece in frame.chunks(13) {
                    client.write_all(piece).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut reader = FrameReader::new(server);
        let mut got = 0u8;
        while got < 50 {
            tokio::select! {
                frame = reader.next_frame(1 << 20) => {
                    let frame = frame.unwrap().unwrap();
                    assert_eq!(frame.len(), usize::from(got) * 37);
                    assert!(frame.iter().all(|b| *b == got));
                    got += 1;
                }
                () = tokio::task::yield_now() => {}
            }
        }
        writer.await.unwrap();
    }
}
