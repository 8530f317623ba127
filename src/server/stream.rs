//! The byte stream to a server: plain TCP or TLS. Writes to TLS are flushed as soon as
//! the socket takes them, and a write the socket could not take yet is remembered, so the
//! relay can finish it before waiting on reads.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

#[derive(Debug)]
enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

#[derive(Debug)]
pub struct ServerStream {
    inner: Inner,
    /// TLS records written into rustls but not yet onto the socket.
    unflushed: bool,
}

impl ServerStream {
    pub fn plain(tcp: TcpStream) -> Self {
        Self { inner: Inner::Plain(tcp), unflushed: false }
    }

    pub fn tls(stream: TlsStream<TcpStream>) -> Self {
        Self { inner: Inner::Tls(Box::new(stream)), unflushed: false }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// The TLS version in use, as the admin console shows it (`None`: plaintext).
    pub fn tls_version(&self) -> Option<&'static str> {
        let Inner::Tls(tls) = &self.inner else { return None };
        Some(match tls.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        })
    }

    fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(tcp) => tcp,
            Inner::Tls(tls) => tls.get_ref().0,
        }
    }

    /// True when a TLS write still waits to reach the socket.
    pub fn unflushed(&self) -> bool {
        self.unflushed
    }

    /// Without waiting: `true` if nothing has arrived and the peer has not closed. An idle
    /// server has nothing to say, so any byte (a FATAL, a TLS alert) or EOF means trouble.
    pub fn quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.tcp().poll_peek(&mut cx, &mut buf), Poll::Pending)
    }

    /// A goodbye for plain connections (best effort, no wait); TLS ones just close.
    pub fn try_write_plain(&self, bytes: &[u8]) {
        if let Inner::Plain(tcp) = &self.inner {
            let _ = tcp.try_write(bytes);
        }
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Inner::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &mut this.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Inner::Tls(tls) => {
                let n = std::task::ready!(Pin::new(tls.as_mut()).poll_write(cx, buf))?;
                this.unflushed = Pin::new(tls.as_mut()).poll_flush(cx).is_pending();
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match &mut this.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Inner::Tls(tls) => {
                std::task::ready!(Pin::new(tls.as_mut()).poll_flush(cx))?;
                this.unflushed = false;
                Poll::Ready(Ok(()))
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Inner::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
