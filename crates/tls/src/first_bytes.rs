//! The first bytes after the handshake, awaited with a deadline.
//!
//! hyper's HTTP/1 header timeout starts once hyper reads a request head,
//! but a server that speaks HTTP/1 and HTTP/2 first reads a few bytes to
//! tell which one the client speaks, and that wait has no deadline: a
//! client that finishes its handshake and then sends nothing held its slot
//! forever, however short `header_timeout` was. So the servers read the
//! first bytes themselves, within `header_timeout`, and hand hyper a
//! stream that gives those bytes back first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Why a connection never got to its first request.
#[derive(Debug)]
pub enum NoRequest {
    /// Nothing arrived within the deadline.
    Silent(Duration),
    /// The client closed the connection, or it failed.
    Closed(Option<io::Error>),
}

/// `inner`, with bytes already read from it returned before the rest.
#[derive(Debug)]
pub struct Prefetched<S> {
    head: Vec<u8>,
    pos: usize,
    inner: S,
}

/// Waits up to `within` for the client's first bytes on `stream`.
pub async fn first_bytes<S: AsyncRead + Unpin>(
    mut stream: S,
    within: Duration,
) -> Result<Prefetched<S>, NoRequest> {
    let mut head = vec![0u8; 4096];
    match tokio::time::timeout(within, stream.read(&mut head)).await {
        Err(_) => Err(NoRequest::Silent(within)),
        Ok(Ok(0)) => Err(NoRequest::Closed(None)),
        Ok(Ok(n)) => {
            head.truncate(n);
            Ok(Prefetched {
                head,
                pos: 0,
                inner: stream,
            })
        }
        Ok(Err(e)) => Err(NoRequest::Closed(Some(e))),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefetched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefetched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S> Prefetched<S> {
    /// The stream underneath (for the TLS session's details).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_first_bytes_come_back_before_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut s = first_bytes(server, Duration::from_secs(5)).await.unwrap();
        client.write_all(b"Host: x\r\n\r\n").await.unwrap();
        drop(client);
        let mut all = String::new();
        s.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }

    #[tokio::test]
    async fn a_small_reader_gets_the_first_bytes_in_pieces() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"abcdef").await.unwrap();
        let mut s = first_bytes(server, Duration::from_secs(5)).await.unwrap();
        let mut two = [0u8; 2];
        for want in [b"ab", b"cd", b"ef"] {
            s.read_exact(&mut two).await.unwrap();
            assert_eq!(&two, want);
        }
        s.write_all(b"reply").await.unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"reply");
    }

    #[tokio::test]
    async fn a_silent_client_is_given_up_on_after_the_deadline() {
        let (_client, server) = tokio::io::duplex(64);
        let within = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let r = first_bytes(server, within).await;
        assert!(matches!(r, Err(NoRequest::Silent(d)) if d == within));
        assert!(started.elapsed() >= within);
    }

    #[tokio::test]
    async fn a_client_that_closes_is_not_waited_for() {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        let r = first_bytes(server, Duration::from_secs(60)).await;
        assert!(matches!(r, Err(NoRequest::Closed(None))));
    }
}
