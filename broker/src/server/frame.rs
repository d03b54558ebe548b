//! Reading length-prefixed frames without trusting the prefix.
//!
//! A peer that announces a 100 MiB frame and then sends nothing must not make us
//! allocate 100 MiB: the buffer grows with the bytes that actually arrive.

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How much of an announced frame is allocated before its bytes arrive: typical
/// requests (produce requests are usually up to 1 MiB) get one allocation, while a peer
/// that announces 100 MiB and sends nothing costs at most this much.
const UPFRONT: usize = 1 << 20;

/// How much the buffer may grow per read past [`UPFRONT`] while a large frame arrives.
const GROWTH_STEP: usize = 1 << 20;

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

/// Reads one frame body; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let length = i32::from_be_bytes(prefix);
    let length = usize::try_from(length)
        .ok()
        .filter(|len| *len <= limit)
        .ok_or(FrameError::TooLarge {
            length: i64::from(length),
            limit,
        })?;
    let mut buf = BytesMut::with_capacity(length.min(UPFRONT));
    while buf.len() < length {
        let want = (length - buf.len()).min(GROWTH_STEP);
        buf.reserve(want);
        let n = (&mut *reader).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(Some(buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_refuses_oversized_prefixes() {
        let mut input: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0];
        assert_eq!(
            read_frame(&mut input, 10).await.unwrap().unwrap(),
            &b"abc"[..]
        );
        assert_eq!(read_frame(&mut input, 10).await.unwrap().unwrap(), &b""[..]);
        assert!(read_frame(&mut input, 10).await.unwrap().is_none());

        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2];
        assert!(matches!(
            read_frame(&mut huge, 100).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut negative, 100).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut torn: &[u8] = &[0, 0, 0, 9, 1, 2];
        assert!(matches!(
            read_frame(&mut torn, 100).await,
            Err(FrameError::Truncated)
        ));
    }
}
