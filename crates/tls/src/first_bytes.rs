//! The first bytes after the handshake, awaited with a deadline.
//!
//! hyper's HTTP/1 header timeout starts once hyper reads a request head,
//! but a server that speaks HTTP/1 and HTTP/2 first reads a few bytes to
//! tell which one the client speaks, and that wait has no deadline: a
//! client that finishes its handshake and then sends nothing (or the start
//! of the HTTP/2 preface) held its slot forever, however short
//! `header_timeout` was. So the servers read those bytes themselves,
//! within `header_timeout`, and hand hyper a stream that gives them back
//! first.

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

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits up to `within` for enough of the client's first bytes to tell
/// HTTP/1 from HTTP/2: until they stop matching the HTTP/2 preface, or
/// the whole preface has arrived. (Stopping at the first byte would let a
/// client that sends `P` and nothing more sit in hyper's own, unbounded,
/// wait for the rest.)
pub async fn first_bytes<S: AsyncRead + Unpin>(
    mut stream: S,
    within: Duration,
) -> Result<Prefetched<S>, NoRequest> {
    let mut head = Vec::with_capacity(4096);
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(false);
            }
            head.extend_from_slice(&chunk[..n]);
            let seen = head.len().min(H2_PREFACE.len());
            if head[..seen] != H2_PREFACE[..seen] || seen == H2_PREFACE.len() {
                return Ok(true);
            }
        }
    };
    match tokio::time::timeout(within, read).await {
        Err(_) => Err(NoRequest::Silent(within)),
        Ok(Ok(false)) => Err(NoRequest::Closed(None)),
        Ok(Ok(true)) => Ok(Prefetched {
            head,
            pos: 0,
            inner: stream,
        }),
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
    async fn part_of_the_http2_preface_is_not_enough() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"PRI * HTTP/2").await.unwrap();
        let within = Duration::from_millis(100);
        let r = first_bytes(server, within).await;
        assert!(matches!(r, Err(NoRequest::Silent(d)) if d == within));
    }

    #[tokio::test]
    async fn the_whole_http2_preface_is_handed_on() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&H2_PREFACE[..10]).await.unwrap();
        let waiting = tokio::spawn(first_bytes(server, Duration::from_secs(5)));
        client.write_all(&H2_PREFACE[10..]).await.unwrap();
        let mut s = waiting.await.unwrap().unwrap();
        let mut got = vec![0u8; H2_PREFACE.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, H2_PREFACE);
    }

    #[tokio::test]
    async fn one_byte_that_is_not_the_preface_is_enough() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"G").await.unwrap();
        let mut s = first_bytes(server, Duration::from_secs(5)).await.unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"G");
    }

    #[tokio::test]
    async fn a_client_that_closes_is_not_waited_for() {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        let r = first_bytes(server, Duration::from_secs(60)).await;
        assert!(matches!(r, Err(NoRequest::Closed(None))));
    }
}
