//! MQTT over WebSocket: the handshake, then the WebSocket seen as a plain byte stream.
//!
//! MQTT (MQTT-6.0.0) carries its packets in Binary frames without any alignment: one packet
//! may span several frames and one frame may hold several packets. So the connection layer
//! does not see frames at all: [`WsStream`] yields the concatenated Binary payloads through
//! [`AsyncRead`] and turns everything written between two flushes into one Binary frame,
//! which lets the same packet codec serve TCP and WebSocket clients.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// Subprotocols we answer, most preferred first: `mqtt` is the registered name (MQTT 3.1.1
/// and 5), `mqttv3.1` is what MQTT 3.1 clients (and some old libraries) still send.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Past this many unflushed bytes a write first sends them as a frame, so that a writer
/// that never flushes cannot grow the buffer without bound. Ordinary use (write a few
/// packets, flush) stays far below it and gets exactly one frame per flush.
const WRITE_HIGH_WATER: usize = 1024 * 1024;

/// Why a WebSocket handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WsAcceptError {
    /// We answered the request with an HTTP error (wrong path, no MQTT subprotocol).
    #[error("refused with HTTP {status}: {reason}")]
    Rejected { status: u16, reason: String },
    /// The request was not a valid WebSocket upgrade, or the socket failed.
    #[error("WebSocket handshake failed: {0}")]
    Handshake(#[source] tungstenite::Error),
}

/// Performs the server side of the WebSocket handshake on `tcp` (a TCP stream, or a TLS
/// stream over one for `wss`).
///
/// The request must be for exactly `path` (the query string is ignored), otherwise it is
/// answered 404. If the client offers subprotocols, one of [`SUBPROTOCOLS`] must be among
/// them and is echoed back; otherwise the answer is 400. A client offering no subprotocol
/// at all is accepted, as Mosquitto does, because some clients never send one.
///
/// `max_message_size` bounds one WebSocket message (and frame): tungstenite buffers a whole
/// message before we see a byte of it, so without this a client could make us buffer far
/// more than the MQTT maximum packet size.
pub async fn accept<S>(
    tcp: S,
    path: &str,
    max_message_size: usize,
) -> Result<WsStream<S>, WsAcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut chosen: Option<&'static str> = None;
    // The error type is tungstenite's `ErrorResponse`, fixed by its `Callback` trait.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        if request.uri().path() != path {
            return Err(reject(
                StatusCode::NOT_FOUND,
                format!(
                    "no WebSocket endpoint at {}; MQTT over WebSocket is at {path}",
                    request.uri().path()
                ),
            ));
        }
        let offered = request.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL);
        if offered.iter().next().is_none() {
            return Ok(response);
        }
        let offered: Vec<&str> = offered
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        match SUBPROTOCOLS.into_iter().find(|p| offered.contains(p)) {
            Some(protocol) => {
                chosen = Some(protocol);
                response.headers_mut().insert(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(protocol),
                );
                Ok(response)
            }
            None => Err(reject(
                StatusCode::BAD_REQUEST,
                format!(
                    "unsupported WebSocket subprotocol(s) {}; this endpoint speaks mqtt",
                    offered.join(", ")
                ),
            )),
        }
    };
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size));
    match tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await {
        Ok(inner) => Ok(WsStream {
            inner,
            subprotocol: chosen,
            read_buf: Bytes::new(),
            read_eof: false,
            write_buf: BytesMut::new(),
        }),
        Err(tungstenite::Error::Http(response)) => Err(WsAcceptError::Rejected {
            status: response.status().as_u16(),
            reason: response
                .body()
                .as_deref()
                .map(|body| String::from_utf8_lossy(body).into_owned())
                .unwrap_or_default(),
        }),
        Err(e) => Err(WsAcceptError::Handshake(e)),
    }
}

fn reject(status: StatusCode, reason: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(reason));
    *response.status_mut() = status;
    response
}

/// An accepted WebSocket, read and written as a byte stream (see the module docs).
pub struct WsStream<S = TcpStream> {
    inner: WebSocketStream<S>,
    subprotocol: Option<&'static str>,
    /// Unread rest of the last Binary message.
    read_buf: Bytes,
    /// The peer closed (or the socket ended): reads return EOF from now on.
    read_eof: bool,
    /// Bytes written since the last flush; the next flush sends them as one Binary frame.
    write_buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// The subprotocol agreed in the handshake (`mqtt` or `mqttv3.1`), if the client
    /// offered any.
    pub fn subprotocol(&self) -> Option<&'static str> {
        self.subprotocol
    }

    /// Hands the buffered bytes to the WebSocket as one Binary message (not yet flushed).
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(self.inner.poll_ready_unpin(cx)).map_err(into_io)?;
        let payload = self.write_buf.split().freeze();
        self.inner
            .start_send_unpin(Message::Binary(payload))
            .map_err(into_io)?;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read_buf.is_empty() {
                let n = this.read_buf.len().min(buf.remaining());
                buf.put_slice(&this.read_buf.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.read_eof {
                return Poll::Ready(Ok(()));
            }
            // tungstenite answers Pings (and flushes the Pong) inside this poll.
            match ready!(this.inner.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(payload))) => this.read_buf = payload,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket frame: MQTT must be sent in binary frames (MQTT-6.0.0-1)",
                    )))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.read_eof = true,
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => this.read_eof = true,
                Some(Err(e)) => return Poll::Ready(Err(into_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_buf.len() >= WRITE_HIGH_WATER {
            ready!(this.poll_send_buffered(cx))?;
        }
        this.write_buf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        this.inner.poll_flush_unpin(cx).map_err(into_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        // Sends a Close frame, flushes, and treats an already closed peer as success.
        match ready!(this.inner.poll_close_unpin(cx)) {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(into_io(e))),
        }
    }
}

fn into_io(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, error)
        }
        tungstenite::Error::Protocol(_)
        | tungstenite::Error::Capacity(_)
        | tungstenite::Error::Utf8(_) => io::Error::new(io::ErrorKind::InvalidData, error),
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::MaybeTlsStream;

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    const LIMIT: Duration = Duration::from_secs(20);

    /// Listens on a loopback port and runs `accept(_, "/mqtt")` on the first connection.
    async fn server() -> (String, JoinHandle<Result<WsStream, WsAcceptError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            accept(tcp, "/mqtt", 1024 * 1024).await
        });
        (format!("ws://{addr}"), task)
    }

    /// Connects to `url` offering `protocols` (none if empty).
    async fn client(
        url: &str,
        protocols: &str,
    ) -> Result<(Client, Option<String>), tungstenite::Error> {
        let mut request = url.into_client_request().unwrap();
        if !protocols.is_empty() {
            request.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(protocols).unwrap(),
            );
        }
        let (ws, response) = tokio_tungstenite::connect_async(request).await?;
        let protocol = response
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.to_str().unwrap().to_owned());
        Ok((ws, protocol))
    }

    async fn connected() -> (Client, WsStream) {
        let (url, server) = server().await;
        let (client, protocol) = client(&format!("{url}/mqtt"), "mqtt").await.unwrap();
        assert_eq!(protocol.as_deref(), Some("mqtt"));
        let stream = server.await.unwrap().unwrap();
        assert_eq!(stream.subprotocol(), Some("mqtt"));
        (client, stream)
    }

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(LIMIT, future)
            .await
            .expect("timed out")
    }

    #[tokio::test]
    async fn packet_split_across_frames_is_reassembled() {
        within(async {
            let (mut client, mut stream) = connected().await;
            // PUBLISH QoS 0, topic "a/b", payload "hi", cut inside the topic.
            let packet = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
            client
                .send(Message::binary(packet[..5].to_vec()))
                .await
                .unwrap();
            client.send(Message::Ping(Bytes::new())).await.unwrap();
            client
                .send(Message::binary(packet[5..].to_vec()))
                .await
                .unwrap();
            let mut got = [0u8; 9];
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, packet);
        })
        .await;
    }

    /// A message over the limit is refused before it is handed on, not buffered whole.
    #[tokio::test]
    async fn message_over_the_size_limit_is_an_error() {
        within(async {
            let (mut client, mut stream) = connected().await;
            // The client may fail to finish sending once the server gives up: ignore that.
            let _ = client
                .send(Message::binary(vec![0u8; 2 * 1024 * 1024]))
                .await;
            let mut got = Vec::new();
            assert!(stream.read_to_end(&mut got).await.is_err());
            assert!(got.is_empty());
        })
        .await;
    }

    #[tokio::test]
    async fn several_packets_in_one_frame_are_all_read() {
        within(async {
            let (mut client, mut stream) = connected().await;
            let pingreq = [0xC0, 0x00];
            let disconnect = [0xE0, 0x00];
            client
                .send(Message::binary([pingreq, disconnect].concat()))
                .await
                .unwrap();
            let mut got = [0u8; 2];
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, pingreq);
            stream.read_exact(&mut got).await.unwrap();
            assert_eq!(got, disconnect);
        })
        .await;
    }

    #[tokio::test]
    async fn writes_between_flushes_go_out_as_one_binary_frame() {
        within(async {
            let (mut client, mut stream) = connected().await;
            let connack = [0x20, 0x02, 0x00, 0x00];
            let pingresp = [0xD0, 0x00];
            stream.write_all(&connack).await.unwrap();
            stream.write_all(&pingresp).await.unwrap();
            stream.flush().await.unwrap();
            stream.write_all(&pingresp).await.unwrap();
            stream.flush().await.unwrap();
            // A flush with nothing written sends no empty frame.
            stream.flush().await.unwrap();
            stream.shutdown().await.unwrap();

            let first = client.next().await.unwrap().unwrap();
            assert_eq!(first, Message::binary([&connack[..], &pingresp].concat()));
            let second = client.next().await.unwrap().unwrap();
            assert_eq!(second, Message::binary(pingresp.to_vec()));
            assert!(matches!(
                client.next().await.unwrap().unwrap(),
                Message::Close(_)
            ));
        })
        .await;
    }

    #[tokio::test]
    async fn text_frame_is_an_error() {
        within(async {
            let (mut client, mut stream) = connected().await;
            client.send(Message::text("hello")).await.unwrap();
            let mut buf = [0u8; 16];
            let error = stream.read(&mut buf).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        })
        .await;
    }

    #[tokio::test]
    async fn close_is_end_of_stream() {
        within(async {
            let (mut client, mut stream) = connected().await;
            client.send(Message::binary(vec![0xC0])).await.unwrap();
            client.close(None).await.unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, [0xC0]);
        })
        .await;
    }

    #[tokio::test]
    async fn wrong_path_is_404() {
        within(async {
            let (url, server) = server().await;
            let error = client(&format!("{url}/other"), "mqtt").await.unwrap_err();
            match error {
                tungstenite::Error::Http(response) => assert_eq!(response.status(), 404),
                other => panic!("expected HTTP 404, got {other}"),
            }
            match server.await.unwrap() {
                Err(WsAcceptError::Rejected {
                    status: 404,
                    reason,
                }) => {
                    assert!(reason.contains("/mqtt"), "{reason}")
                }
                Err(other) => panic!("expected a 404 rejection, got {other}"),
                Ok(_) => panic!("expected a 404 rejection, got a connection"),
            }
        })
        .await;
    }

    #[tokio::test]
    async fn query_string_does_not_affect_the_path() {
        within(async {
            let (url, server) = server().await;
            client(&format!("{url}/mqtt?client=1"), "mqtt")
                .await
                .unwrap();
            server.await.unwrap().unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn subprotocol_negotiation() {
        within(async {
            for (offered, answered) in [
                ("mqtt", Some("mqtt")),
                ("mqttv3.1", Some("mqttv3.1")),
                ("mqttv3.1, mqtt", Some("mqtt")),
                ("chat, mqttv3.1", Some("mqttv3.1")),
                ("", None),
            ] {
                let (url, server) = server().await;
                let (_client, protocol) = client(&format!("{url}/mqtt"), offered)
                    .await
                    .unwrap_or_else(|e| panic!("offering {offered:?}: {e}"));
                assert_eq!(protocol.as_deref(), answered, "offering {offered:?}");
                let stream = server.await.unwrap().unwrap();
                assert_eq!(stream.subprotocol(), answered, "offering {offered:?}");
            }

            let (url, server) = server().await;
            match client(&format!("{url}/mqtt"), "chat, superchat").await {
                Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
                Err(other) => panic!("expected HTTP 400, got {other}"),
                Ok(_) => panic!("expected HTTP 400, got a connection"),
            }
            assert!(matches!(
                server.await.unwrap(),
                Err(WsAcceptError::Rejected { status: 400, .. })
            ));
        })
        .await;
    }

    #[tokio::test]
    async fn plain_http_request_is_a_handshake_error() {
        within(async {
            let (url, server) = server().await;
            let addr = url.trim_start_matches("ws://");
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            assert!(server.await.unwrap().is_err());
        })
        .await;
    }
}
