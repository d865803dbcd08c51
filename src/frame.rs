//! Length-prefixed frames over a byte stream: `u32 big-endian length ‖ body`.
//!
//! Both TCP protocols use this framing: gossip's full-state sync (docs/gossip.md) and the server
//! RPC port (docs/servers.md). Each passes its own size limit, since a gossip state and a Raft
//! snapshot chunk differ by an order of magnitude; a length over the limit is refused before
//! anything is allocated, so a hostile or confused peer cannot make us reserve gigabytes.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Why a frame could not be read. Every variant leaves the stream at an unknown position:
/// the caller should close the connection (and may reconnect), never read on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream cleanly between frames. Not a fault: stop reading.
    #[error("the connection was closed")]
    Closed,
    /// The stream ended inside a frame (a peer that died or gave up mid-write). Close it.
    #[error("the connection was closed in the middle of a frame")]
    Truncated,
    /// The peer announced a frame longer than this protocol accepts. Close the connection:
    /// the peer speaks another protocol, or is broken or hostile.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversize { len: usize, max: usize },
    /// The socket failed. Close the connection; the caller's retry policy decides on a new one.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; LEN_PREFIX];
    // The first byte tells a clean close (no frame started) from a truncated frame.
    if r.read(&mut len[..1]).await? == 0 {
        return Err(FrameError::Closed);
    }
    read_exact(r, &mut len[1..]).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::Oversize { len, max });
    }
    let mut body = vec![0u8; len];
    read_exact(r, &mut body).await?;
    Ok(body)
}

/// `read_exact`, with an early end of stream reported as [`FrameError::Truncated`].
async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), FrameError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// Appends `body` as one frame to `buf`, for writers that send several frames in one write.
pub fn put_frame(buf: &mut Vec<u8>, body: &[u8]) {
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-byte pipe: every read returns at most one byte, the shortest read there is.
    #[tokio::test]
    async fn frames_survive_short_reads() {
        let (mut a, mut b) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            write_frame(&mut a, b"hello").await.unwrap();
            write_frame(&mut a, b"").await.unwrap();
        });
        assert_eq!(read_frame(&mut b, 16).await.unwrap(), b"hello");
        assert_eq!(read_frame(&mut b, 16).await.unwrap(), b"");
        writer.await.unwrap();
        assert!(matches!(
            read_frame(&mut b, 16).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn oversize_frames_are_refused_before_their_body() {
        let mut buf = Vec::new();
        put_frame(&mut buf, &[7; 17]);
        let mut r = &buf[..];
        assert!(matches!(
            read_frame(&mut r, 16).await,
            Err(FrameError::Oversize { len: 17, max: 16 })
        ));
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 17).await.unwrap(), vec![7; 17]);
    }

    #[tokio::test]
    async fn end_of_stream_is_clean_only_between_frames() {
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, 16).await,
            Err(FrameError::Closed)
        ));
        let mut half_prefix: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut half_prefix, 16).await,
            Err(FrameError::Truncated)
        ));
        let mut buf = Vec::new();
        put_frame(&mut buf, b"abcdef");
        buf.truncate(buf.len() - 2);
        let mut half_body = &buf[..];
        assert!(matches!(
            read_frame(&mut half_body, 16).await,
            Err(FrameError::Truncated)
        ));
    }
}
