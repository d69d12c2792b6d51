//! One client connection: frames packets off a byte stream and drives the client's
//! session against the shared [`Broker`].
//!
//! A connection is one task. It owns two buffers (bytes read and not yet decoded, bytes
//! to write) and waits on whichever comes first: bytes from the client, room to write,
//! mail in its session, a takeover, or the keep-alive deadline. Every packet produced in
//! one turn of the loop goes out in one write, so acknowledgements and deliveries are
//! coalesced instead of costing a syscall each.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::topic::{validate_topic_filter, validate_topic_name};
use protocol::{
    encode, reason, Ack, ConnAck, Connect, DecodeError, Decoder, Packet, Properties,
    ProtocolVersion, Publish, QoS, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, Instrument};

use crate::broker::{Broker, ConnectionInfo, Kick, Message, Metrics, Owner, Session};

/// How the client reached us; shown in logs and (later) the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    WebSocket,
}

/// How long a new connection has to send its CONNECT: a client that opens a socket and
/// says nothing (or trickles a CONNECT) must not hold resources for ever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Session mail is moved into the write buffer only while it is below this, so a client
/// that reads slowly leaves its messages in its (bounded) session queue, not in memory here.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Above this much unwritten output we stop reading from the client too: a client that
/// publishes without reading its acknowledgements cannot grow our buffer without bound.
const WRITE_READ_LIMIT: usize = 1024 * 1024;
/// Read buffer growth step, and the capacity above which an empty buffer is released.
const READ_CHUNK: usize = 4 * 1024;
const BUFFER_KEEP: usize = 64 * 1024;
/// Stands in for "never" where a deadline is required (adding `Duration::MAX` overflows).
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);
/// MQTT 3.1 limits client identifiers to 23 characters.
const MQTT31_MAX_CLIENT_ID: usize = 23;

/// Why a connection ended. Every end but [`End::Disconnected`] publishes the will.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("client sent DISCONNECT")]
    /// The client sent DISCONNECT.
    Disconnected,
    /// The socket closed or failed without a DISCONNECT.
    #[error("connection lost: {0}")]
    Lost(String),
    /// Nothing arrived within 1.5 times the keep-alive (MQTT-3.1.2-24).
    #[error("keep-alive timeout")]
    KeepAliveTimeout,
    /// Ended from outside: another connection with the same client identifier took the
    /// session (MQTT-3.1.4-2), or an administrator kicked the client. The reason is an
    /// MQTT 5.0 reason code.
    #[error("ended by the broker: {}", reason::describe(*.0))]
    Kicked(u8),
    /// The client broke the protocol; the spec says close the connection.
    #[error("protocol violation: {0}")]
    Violation(String),
}

/// Serves one client until it disconnects or breaks the protocol. Never panics on input.
pub async fn serve<S>(stream: S, peer: SocketAddr, transport: Transport, broker: Arc<Broker>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = broker.new_connection_id();
    let span = tracing::info_span!("conn", id, %peer, ?transport);
    async move {
        let (reader, writer) = tokio::io::split(stream);
        let mut conn = Connection {
            reader,
            writer,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            decoder: Decoder::new(broker.settings.max_packet_size),
            version: ProtocolVersion::V3_1_1,
            broker,
            id,
            peer,
            transport,
        };
        Metrics::add(&conn.broker.metrics.connections_accepted, 1);
        match conn.handshake().await {
            Ok(Some((connect, opened))) => conn.run(connect, opened).await,
            Ok(None) => {}
            Err(reason) => info!("closing before CONNACK: {reason}"),
        }
    }
    .instrument(span)
    .await
}

struct Connection<S> {
    reader: ReadHalf<S>,
    writer: WriteHalf<S>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    /// What the client announced in CONNECT; packets to it are written for this version.
    version: ProtocolVersion,
    broker: Arc<Broker>,
    id: u64,
    peer: SocketAddr,
    transport: Transport,
}

/// A session this connection owns, with the signal that it lost it.
struct Opened {
    session: Arc<Session>,
    kick: Arc<Kick>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Reads the CONNECT and answers it. `Ok(None)`: refused with a CONNACK already sent.
    async fn handshake(&mut self) -> Result<Option<(Connect, Opened)>, String> {
        let first = match timeout(CONNECT_TIMEOUT, self.read_packet()).await {
            Err(_) => return Err("no CONNECT within the connect timeout".into()),
            Ok(Err(ReadError::Decode(DecodeError::UnsupportedProtocolLevel(level)))) => {
                info!("unsupported protocol level {level}: CONNACK 0x01");
                self.refuse(reason::UNSUPPORTED_PROTOCOL_VERSION).await;
                return Ok(None);
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(packet)) => packet,
        };
        let Packet::Connect(mut connect) = first else {
            return Err(format!(
                "first packet is {}, not CONNECT (MQTT-3.1.0-1)",
                first.name()
            ));
        };
        self.version = connect.version;
        if connect.version == ProtocolVersion::V5 {
            info!("MQTT 5.0 is not enabled: CONNACK 0x84");
            self.refuse(reason::UNSUPPORTED_PROTOCOL_VERSION).await;
            return Ok(None);
        }

        if connect.client_id.is_empty() {
            if !connect.clean_session {
                // MQTT-3.1.3-8: no identifier and a persistent session cannot be resumed.
                info!("empty client id without clean session: CONNACK 0x02");
                self.refuse(reason::CLIENT_IDENTIFIER_NOT_VALID).await;
                return Ok(None);
            }
            connect.client_id = self.broker.generate_client_id(self.id);
        } else if connect.version == ProtocolVersion::V3_1
            && connect.client_id.chars().count() > MQTT31_MAX_CLIENT_ID
        {
            info!("MQTT 3.1 client id longer than 23 characters: CONNACK 0x02");
            self.refuse(reason::CLIENT_IDENTIFIER_NOT_VALID).await;
            return Ok(None);
        }
        if let Some(will) = &connect.will {
            validate_topic_name(&will.topic).map_err(|e| format!("invalid will topic: {e}"))?;
        }

        let kick = Arc::new(Kick::default());
        let info = Arc::new(ConnectionInfo {
            connection_id: self.id,
            client_id: Arc::from(connect.client_id.as_str()),
            username: connect.username.clone(),
            peer: self.peer,
            transport: self.transport,
            version: connect.version,
            keep_alive: connect.keep_alive,
            clean_start: connect.clean_session,
            connected_at: std::time::SystemTime::now(),
        });
        let opened = self.broker.open_session(
            &connect.client_id,
            connect.clean_session,
            Owner {
                info,
                kick: kick.clone(),
            },
        );
        debug!(
            client_id = %connect.client_id,
            version = %connect.version,
            clean = connect.clean_session,
            keep_alive = connect.keep_alive,
            session_present = opened.session_present,
            "connected"
        );
        self.queue(&Packet::ConnAck(ConnAck::new(
            reason::SUCCESS,
            opened.session_present,
        )));
        Ok(Some((
            *connect,
            Opened {
                session: opened.session,
                kick,
            },
        )))
    }

    /// Sends a refusing CONNACK and lets the connection close (MQTT-3.2.2-5).
    async fn refuse(&mut self, code: u8) {
        self.queue(&Packet::ConnAck(ConnAck::new(code, false)));
        let _ = self.write_all().await;
    }

    /// Serves a connected client until the connection ends, then publishes the will if
    /// the end was not a DISCONNECT and releases the session.
    async fn run(&mut self, connect: Connect, opened: Opened) {
        let Opened { session, kick } = opened;
        let resent = session.write_resend(self.id, &mut self.wbuf);
        self.count_publishes_out(resent);
        let end = self.serve_session(&connect, &session, &kick).await;
        match &end {
            End::Disconnected | End::Kicked(_) | End::Lost(_) => debug!("connection ended: {end}"),
            End::KeepAliveTimeout => {
                Metrics::add(&self.broker.metrics.keep_alive_timeouts, 1);
                info!("closing connection: {end}");
            }
            End::Violation(_) => {
                Metrics::add(&self.broker.metrics.protocol_violations, 1);
                info!("closing connection: {end}");
            }
        }
        if !matches!(end, End::Disconnected) {
            if let Some(will) = connect.will {
                debug!(topic = %will.topic, "publishing will");
                self.broker.publish(Message {
                    topic: will.topic,
                    payload: will.payload,
                    qos: will.qos,
                    retain: will.retain,
                });
            }
        }
        self.broker.close_session(&session, self.id);
        if !matches!(end, End::Lost(_)) {
            // Best effort: let the client see everything we answered before closing.
            let _ = timeout(Duration::from_secs(1), self.write_all()).await;
            let _ = self.writer.shutdown().await;
        }
    }

    async fn serve_session(
        &mut self,
        connect: &Connect,
        session: &Arc<Session>,
        kick: &Kick,
    ) -> End {
        // MQTT-3.1.2-24: one and a half times the keep-alive; 0 turns it off.
        let keep_alive = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        // Without a keep-alive the timer is never polled; it still needs a valid instant.
        let deadline = sleep_until(Instant::now() + keep_alive.unwrap_or(NO_DEADLINE));
        tokio::pin!(deadline);
        let mut unflushed = false;

        loop {
            if self.wbuf.len() < WRITE_HIGH_WATER {
                let sent = session.write_queued(self.id, &mut self.wbuf, WRITE_HIGH_WATER);
                self.count_publishes_out(sent);
            }
            unflushed |= !self.wbuf.is_empty();
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK {
                let missing = self.decoder.missing_bytes(&self.rbuf);
                self.rbuf.reserve(missing.clamp(READ_CHUNK, BUFFER_KEEP));
            }
            let reading = self.wbuf.len() < WRITE_READ_LIMIT;
            // Counted when the write completes; a failed write ends the connection anyway.
            let pending_out = self.wbuf.len();
            let mail_room = self.wbuf.len() < WRITE_HIGH_WATER;

            tokio::select! {
                biased;
                reason = kick.kicked() => return End::Kicked(reason),
                read = self.reader.read_buf(&mut self.rbuf), if reading => {
                    match read {
                        Ok(0) => return End::Lost("closed by the client without DISCONNECT".into()),
                        Err(e) => return End::Lost(e.to_string()),
                        Ok(n) => Metrics::add(&self.broker.metrics.bytes_in, n as u64),
                    }
                    if let Some(keep_alive) = keep_alive {
                        deadline.as_mut().reset(Instant::now() + keep_alive);
                    }
                    if let Some(end) = self.handle_input(session) {
                        return end;
                    }
                }
                written = flush(&mut self.writer, &mut self.wbuf), if unflushed => {
                    Metrics::add(&self.broker.metrics.bytes_out, pending_out as u64);
                    if let Err(e) = written {
                        return End::Lost(e.to_string());
                    }
                    unflushed = false;
                    if self.wbuf.capacity() > BUFFER_KEEP {
                        self.wbuf = BytesMut::new();
                    }
                }
                _ = session.wait_for_mail(), if mail_room => {}
                _ = &mut deadline, if keep_alive.is_some() => return End::KeepAliveTimeout,
            }
        }
    }

    /// Handles every whole packet in the read buffer.
    fn handle_input(&mut self, session: &Arc<Session>) -> Option<End> {
        loop {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(packet)) => {
                    self.broker.metrics.packet_in(packet.packet_type());
                    if let Some(end) = self.handle(packet, session) {
                        return Some(end);
                    }
                }
                Ok(None) => break,
                Err(e) => return Some(End::Violation(e.to_string())),
            }
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() > BUFFER_KEEP {
            self.rbuf = BytesMut::new();
        }
        None
    }

    fn handle(&mut self, packet: Packet, session: &Arc<Session>) -> Option<End> {
        match packet {
            Packet::Publish(publish) => return self.on_publish(publish, session),
            Packet::PubAck(ack) => {
                session.on_puback(ack.pkid);
            }
            Packet::PubRec(ack) => {
                if session.on_pubrec(ack.pkid, &mut self.wbuf) {
                    self.broker.metrics.packet_out(6);
                }
            }
            Packet::PubRel(ack) => {
                // Answered even for an unknown identifier: the client may be retrying after
                // losing our PUBCOMP.
                session.complete_incoming_qos2(ack.pkid);
                self.queue(&Packet::PubComp(Ack::new(ack.pkid)));
            }
            Packet::PubComp(ack) => {
                session.on_pubcomp(ack.pkid);
            }
            Packet::Subscribe(subscribe) => return self.on_subscribe(subscribe, session),
            Packet::Unsubscribe(unsubscribe) => return self.on_unsubscribe(unsubscribe, session),
            Packet::PingReq => self.queue(&Packet::PingResp),
            Packet::Disconnect(_) => return Some(End::Disconnected),
            Packet::Connect(_) => {
                return Some(End::Violation("second CONNECT (MQTT-3.1.0-2)".into()));
            }
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp
            | Packet::Auth(_)) => {
                return Some(End::Violation(format!(
                    "{} is a server-to-client packet",
                    other.name()
                )));
            }
        }
        None
    }

    fn on_publish(&mut self, publish: Publish, session: &Arc<Session>) -> Option<End> {
        if let Err(e) = validate_topic_name(&publish.topic) {
            return Some(End::Violation(format!(
                "PUBLISH topic {:?}: {e}",
                publish.topic
            )));
        }
        let Publish {
            qos,
            pkid,
            topic,
            payload,
            retain,
            ..
        } = publish;
        let message = Message {
            topic,
            payload,
            qos,
            retain,
        };
        match qos {
            QoS::AtMostOnce => {
                self.broker.publish(message);
            }
            QoS::AtLeastOnce => {
                self.broker.publish(message);
                self.queue(&Packet::PubAck(Ack::new(pkid)));
            }
            QoS::ExactlyOnce => {
                // Routed on first receipt; a re-sent duplicate before PUBREL is only
                // acknowledged again (exactly once, "method B" of MQTT 3.1.1 §4.3.3).
                if session.begin_incoming_qos2(pkid) {
                    self.broker.publish(message);
                }
                self.queue(&Packet::PubRec(Ack::new(pkid)));
            }
        }
        None
    }

    fn on_subscribe(&mut self, subscribe: Subscribe, session: &Arc<Session>) -> Option<End> {
        if let Some(bad) = subscribe.filters.iter().find_map(|f| {
            validate_topic_filter(&f.filter)
                .err()
                .map(|e| (&f.filter, e))
        }) {
            return Some(End::Violation(format!(
                "SUBSCRIBE filter {:?}: {}",
                bad.0, bad.1
            )));
        }
        // The SUBACK goes out before the retained messages the subscriptions queue.
        let return_codes = subscribe.filters.iter().map(|f| f.qos as u8).collect();
        self.queue(&Packet::SubAck(SubAck {
            pkid: subscribe.pkid,
            return_codes,
            properties: Properties::default(),
        }));
        for filter in &subscribe.filters {
            self.broker.subscribe(session, &filter.filter, filter.qos);
        }
        None
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe, session: &Arc<Session>) -> Option<End> {
        for filter in &unsubscribe.filters {
            if let Err(e) = validate_topic_filter(filter) {
                return Some(End::Violation(format!(
                    "UNSUBSCRIBE filter {filter:?}: {e}"
                )));
            }
        }
        for filter in &unsubscribe.filters {
            self.broker.unsubscribe(session, filter);
        }
        // MQTT-3.10.4-5: UNSUBACK even when nothing was subscribed.
        self.queue(&Packet::UnsubAck(UnsubAck {
            pkid: unsubscribe.pkid,
            reasons: Vec::new(),
            properties: Properties::default(),
        }));
        None
    }

    /// Counts PUBLISH packets the session wrote into our buffer.
    fn count_publishes_out(&self, n: usize) {
        if n > 0 {
            Metrics::add(&self.broker.metrics.messages_sent, n as u64);
            for _ in 0..n {
                self.broker.metrics.packet_out(3);
            }
        }
    }

    /// Appends a packet to the write buffer; it goes out with the rest of this turn's.
    fn queue(&mut self, packet: &Packet) {
        self.broker.metrics.packet_out(packet.packet_type());
        if let Err(e) = encode(packet, self.version, &mut self.wbuf) {
            // Only packets we built ourselves land here, all well within limits.
            debug!("could not encode {}: {e}", packet.name());
        }
    }

    async fn write_all(&mut self) -> io::Result<()> {
        let len = self.wbuf.len();
        let result = flush(&mut self.writer, &mut self.wbuf).await;
        Metrics::add(
            &self.broker.metrics.bytes_out,
            (len - self.wbuf.len()) as u64,
        );
        result
    }

    /// Reads until one whole packet is decoded.
    async fn read_packet(&mut self) -> Result<Packet, ReadError> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(packet);
            }
            let missing = self.decoder.missing_bytes(&self.rbuf);
            self.rbuf.reserve(missing.clamp(256, BUFFER_KEEP));
            if self.reader.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// Writes the whole buffer, then flushes (for WebSocket, flushing sends the frame).
/// Cancel-safe: what was written is gone from `buf`, the rest stays.
async fn flush<W: AsyncWrite + Unpin>(writer: &mut W, buf: &mut BytesMut) -> io::Result<()> {
    while !buf.is_empty() {
        if writer.write_buf(buf).await? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    writer.flush().await
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Io(#[from] io::Error),
}
