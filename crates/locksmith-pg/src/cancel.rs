//! Cancel requests sent the way libpq sends them, and the backend key a
//! connection was given.
//!
//! tokio-postgres closes its socket as soon as the cancel request is written;
//! libpq waits for the server to close it first. Connection poolers care:
//! PgBouncer 1.18 crashes now and then on a cancel connection that vanishes
//! under it. [`Lingering`] waits (bounded by the caller) for the other side to
//! close before the socket is dropped.
//!
//! The driver keeps the `BackendKeyData` it received to itself; [`key_pid`]
//! reads it back by letting the driver write a cancel request into memory.
//! A pooler announces a key of its own, so a key pid that differs from
//! `pg_backend_pid()` is how [`crate::connection`] knows a pooler is in between.
//! Nothing here decides whom to cancel.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};
use tokio_postgres::CancelToken;

/// A stream whose shutdown waits for the peer to close: libpq's manners.
pub(crate) struct Lingering<S>(pub(crate) S);

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The server answers a cancel request by closing; read until it has.
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.0).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                // A reset is the server closing too.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The process id in the `BackendKeyData` the connection behind `token`
/// received: the backend's pid from a server, a made-up one from a pooler.
pub(crate) async fn key_pid(token: &CancelToken) -> Option<i32> {
    let (ours, mut theirs) = tokio::io::duplex(256);
    let send = token.cancel_query_raw(ours, Passthrough);
    let read = async move {
        let mut head = [0u8; 8];
        theirs.read_exact(&mut head).await.ok()?;
        let code = i32::from_be_bytes(head[4..8].try_into().ok()?);
        // SSLRequest first when the connection uses TLS: say yes, then read the request.
        if code == 80_877_103 {
            theirs.write_all(b"S").await.ok()?;
            theirs.read_exact(&mut head).await.ok()?;
        }
        let mut key = [0u8; 8];
        theirs.read_exact(&mut key).await.ok()?;
        Some(i32::from_be_bytes(key[0..4].try_into().ok()?))
    };
    let (_, pid) = tokio::join!(send, read);
    pid
}

/// A "TLS" that is no TLS at all, for [`key_pid`]'s in-memory exchange only.
struct Passthrough;

struct Plain(DuplexStream);

impl TlsConnect<DuplexStream> for Passthrough {
    type Stream = Plain;
    type Error = io::Error;
    type Future = std::future::Ready<io::Result<Plain>>;

    fn connect(self, stream: DuplexStream) -> Self::Future {
        std::future::ready(Ok(Plain(stream)))
    }
}

impl TlsStream for Plain {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
