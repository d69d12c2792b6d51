//! One client connection, over TCP or WebSocket: connect, CONNECT/CONNACK, SUBSCRIBE/SUBACK,
//! then split into a reader and a writer that move whole buffers (one socket write or one
//! WebSocket message per batch of packets).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use protocol::{
    encode, Connect, Decoder, Packet, Properties, ProtocolVersion, QoS, Subscribe, SubscribeFilter,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::target::{Target, Transport};
use crate::wire::MAX_PACKET;

pub const VERSION: ProtocolVersion = ProtocolVersion::V3_1_1;
/// Read buffers grow in steps this large: few syscalls when the broker sends fast.
const READ_CHUNK: usize = 256 << 10;
/// How long connecting and subscribing may take before it counts as a failure.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// tungstenite's read buffer for connections that only idle: its default, 128 KiB
/// allocated up front, would make 10,000 idle WebSocket clients cost mqtt-bench 1.3 GB.
const IDLE_WS_READ_BUFFER: usize = 4 * 1024;

type Ws = WebSocketStream<TcpStream>;

pub enum Reader {
    Tcp(OwnedReadHalf),
    Ws(SplitStream<Ws>),
}

pub enum Writer {
    Tcp(OwnedWriteHalf),
    Ws(SplitSink<Ws, Message>),
}

impl Reader {
    /// Appends what arrives to `buf`; `Ok(0)` when the peer closed the connection.
    pub async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Reader::Tcp(r) => {
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
                r.read_buf(buf).await
            }
            Reader::Ws(r) => loop {
                match r.next().await {
                    None | Some(Ok(Message::Close(_))) => return Ok(0),
                    Some(Ok(Message::Binary(data))) => {
                        buf.extend_from_slice(&data);
                        if !data.is_empty() {
                            return Ok(data.len());
                        }
                    }
                    Some(Ok(Message::Text(_))) => {
                        return Err(io::Error::other("text WebSocket message from the broker"))
                    }
                    Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                    Some(Err(e)) => return Err(io::Error::other(e)),
                }
            },
        }
    }
}

impl Writer {
    /// Writes all of `buf` (one WebSocket message for WebSocket) and empties it.
    pub async fn write(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => {
                w.write_all(buf).await?;
                buf.clear();
            }
            Writer::Ws(w) => {
                let data = buf.split().freeze();
                w.send(Message::Binary(data))
                    .await
                    .map_err(io::Error::other)?;
            }
        }
        Ok(())
    }

    /// Writes `bytes` (DISCONNECT) and closes, waiting at most a second.
    pub async fn close(mut self, bytes: &[u8]) {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut buf = BytesMut::from(bytes);
            let _ = self.write(&mut buf).await;
            match &mut self {
                Writer::Tcp(w) => {
                    let _ = w.shutdown().await;
                }
                Writer::Ws(w) => {
                    let _ = w.close().await;
                }
            }
        })
        .await;
    }
}

/// A connected MQTT client, split; `buf` holds bytes read past the last setup packet.
pub struct Conn {
    pub reader: Reader,
    pub writer: Writer,
    pub buf: BytesMut,
    decoder: Decoder,
}

impl Conn {
    /// TCP (and WebSocket) connection, CONNECT with a clean session, CONNACK 0.
    pub async fn open(
        target: &Target,
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
    ) -> Result<Conn, String> {
        Self::open_with(target, addr, client_id, keep_alive, true, None).await
    }

    /// [`Conn::open`] with a persistent session (3.1.1 clean session 0): the broker keeps
    /// its subscriptions and messages when it disconnects. The session must be new (CONNACK
    /// "session present" 0): one left by an earlier run could hold that run's messages,
    /// which would be counted as this one's.
    pub async fn open_persistent(
        target: &Target,
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
    ) -> Result<Conn, String> {
        Self::open_with(target, addr, client_id, keep_alive, false, None).await
    }

    /// [`Conn::open`] for a connection that will only idle: over WebSocket, with small
    /// buffers, so that thousands of them fit in mqtt-bench (the broker's side is what is
    /// measured).
    pub async fn open_idle(
        target: &Target,
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
    ) -> Result<Conn, String> {
        let config = WebSocketConfig::default().read_buffer_size(IDLE_WS_READ_BUFFER);
        Self::open_with(target, addr, client_id, keep_alive, true, Some(config)).await
    }

    async fn open_with(
        target: &Target,
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
        clean_session: bool,
        ws_config: Option<WebSocketConfig>,
    ) -> Result<Conn, String> {
        tokio::time::timeout(
            SETUP_TIMEOUT,
            Self::open_inner(
                target,
                addr,
                client_id,
                keep_alive,
                clean_session,
                ws_config,
            ),
        )
        .await
        .map_err(|_| format!("{client_id}: no CONNACK within {SETUP_TIMEOUT:?}"))?
        .map_err(|e| format!("{client_id}: {e}"))
    }

    async fn open_inner(
        target: &Target,
        addr: SocketAddr,
        client_id: &str,
        keep_alive: u16,
        clean_session: bool,
        ws_config: Option<WebSocketConfig>,
    ) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (reader, writer) = match target.transport {
            Transport::Tcp => {
                let (r, w) = stream.into_split();
                (Reader::Tcp(r), Writer::Tcp(w))
            }
            Transport::Ws => {
                let mut request = target
                    .ws_url()
                    .into_client_request()
                    .map_err(|e| format!("WebSocket request: {e}"))?;
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(request, stream, ws_config)
                        .await
                        .map_err(|e| format!("WebSocket handshake: {e}"))?;
                let (w, r) = ws.split();
                (Reader::Ws(r), Writer::Ws(w))
            }
        };
        let mut decoder = Decoder::new(MAX_PACKET);
        decoder.set_version(VERSION);
        let mut conn = Conn {
            reader,
            writer,
            buf: BytesMut::new(),
            decoder,
        };
        let connect = Packet::Connect(Box::new(Connect {
            version: VERSION,
            client_id: client_id.to_string(),
            clean_session,
            keep_alive,
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }));
        conn.send(&connect).await?;
        match conn.next_packet().await? {
            Packet::ConnAck(ack) if ack.code == 0 && ack.session_present && !clean_session => Err(
                "the broker resumed an existing session (CONNACK session present): \
                     this client id's session must be new"
                    .into(),
            ),
            Packet::ConnAck(ack) if ack.code == 0 => Ok(conn),
            Packet::ConnAck(ack) => Err(format!("CONNACK refused, code {:#04x}", ack.code)),
            other => Err(format!("expected CONNACK, got {}", other.name())),
        }
    }

    async fn send(&mut self, packet: &Packet) -> Result<(), String> {
        let mut buf = BytesMut::new();
        encode(packet, VERSION, &mut buf).map_err(|e| e.to_string())?;
        self.writer.write(&mut buf).await.map_err(|e| e.to_string())
    }

    /// The next packet, through the codec (setup only: it allocates).
    async fn next_packet(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(packet) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| e.to_string())?
            {
                return Ok(packet);
            }
            match self.reader.read(&mut self.buf).await {
                Ok(0) => return Err("the broker closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Subscribes to `filters` (up to 100 per SUBSCRIBE, all sent before the SUBACKs are
    /// read) and checks that every one was granted.
    pub async fn subscribe(&mut self, filters: &[String], qos: QoS) -> Result<(), String> {
        tokio::time::timeout(SETUP_TIMEOUT, self.subscribe_inner(filters, qos))
            .await
            .map_err(|_| format!("no SUBACK within {SETUP_TIMEOUT:?}"))?
    }

    async fn subscribe_inner(&mut self, filters: &[String], qos: QoS) -> Result<(), String> {
        let mut buf = BytesMut::new();
        let chunks: Vec<&[String]> = filters.chunks(100).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let packet = Packet::Subscribe(Subscribe {
                pkid: i as u16 + 1,
                filters: chunk
                    .iter()
                    .map(|f| SubscribeFilter::new(f.clone(), qos))
                    .collect(),
                properties: Properties::default(),
            });
            encode(&packet, VERSION, &mut buf).map_err(|e| e.to_string())?;
        }
        self.writer
            .write(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let mut acked = 0;
        while acked < chunks.len() {
            match self.next_packet().await? {
                Packet::SubAck(ack) => {
                    if let Some(code) = ack.return_codes.iter().find(|&&c| c >= 0x80) {
                        return Err(format!("SUBSCRIBE refused, code {code:#04x}"));
                    }
                    acked += 1;
                }
                other => return Err(format!("expected SUBACK, got {}", other.name())),
            }
        }
        // Anything read past the last SUBACK stays in `buf` for the hot path.
        Ok(())
    }
}
