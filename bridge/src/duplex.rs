//! The byte streams a connection serves: read and written at once, each for one turn of
//! the connection's loop.
//!
//! A TCP stream lends its two halves for free ([`TcpStream::split`]); any other stream
//! (WebSocket, TLS) is split once by [`tokio::io::split`], whose halves share it through
//! an `Arc` and a lock. Splitting a TCP stream into owned halves would also cost an `Arc`
//! per connection: borrowing them each turn costs nothing.

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::{tcp, TcpStream};

/// A stream whose reading and writing halves can be borrowed together.
pub trait Duplex: Send + 'static {
    type Reader<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    type Writer<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;

    /// Both halves, for as long as `self` is borrowed.
    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);
}

impl Duplex for TcpStream {
    type Reader<'a> = tcp::ReadHalf<'a>;
    type Writer<'a> = tcp::WriteHalf<'a>;

    fn halves(&mut self) -> (tcp::ReadHalf<'_>, tcp::WriteHalf<'_>) {
        self.split()
    }
}

/// Any stream, split once into halves that can be used at the same time.
pub struct Split<S>(ReadHalf<S>, WriteHalf<S>);

impl<S: AsyncRead + AsyncWrite> Split<S> {
    pub fn new(stream: S) -> Split<S> {
        let (reader, writer) = tokio::io::split(stream);
        Split(reader, writer)
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Duplex for Split<S> {
    type Reader<'a> = &'a mut ReadHalf<S>;
    type Writer<'a> = &'a mut WriteHalf<S>;

    fn halves(&mut self) -> (&mut ReadHalf<S>, &mut WriteHalf<S>) {
        (&mut self.0, &mut self.1)
    }
}
