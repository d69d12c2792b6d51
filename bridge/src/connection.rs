//! One client connection: frames packets off a byte stream and drives the client's
//! session against the shared [`Broker`].
//!
//! A connection is one task. It owns two buffers (bytes read and not yet decoded, bytes
//! to write) and waits on whichever comes first: bytes from the client, room to write,
//! mail in its session, or a kick (takeover, admin, shutdown, or the broker's keep-alive
//! sweep). Every packet produced in one turn of the loop goes out in one write, so
//! acknowledgements and deliveries are coalesced instead of costing a syscall each.
//!
//! Every idle connection holds this task, so its size is watched (a unit test bounds it):
//! the handshake's large state is boxed and dropped once done, and what stays is the
//! connection struct, the session loop's few futures and a 64-byte read buffer.
//!
//! MQTT 3.1, 3.1.1 and 5.0 share this code; 5.0 adds properties, reason codes on every
//! acknowledgement, topic aliases, flow control (receive maximum), and a DISCONNECT with
//! a reason whenever the server closes the connection.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use protocol::frame::MAX_REMAINING_LENGTH;
use protocol::topic::{parse_shared, validate_topic_filter, validate_topic_name};
use protocol::{
    encode, reason, Ack, ConnAck, DecodeError, Decoder, Disconnect, Packet, Properties,
    ProtocolVersion, Publish, QoS, SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe, Will,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{debug, info, Instrument};

use crate::broker::access::Verdict;
use crate::broker::{
    Action, Broker, ConnectionInfo, Identity, Kick, Message, Metrics, Online, Owner, Session,
    TopicAliases, Written, WrongAck, NEVER_EXPIRES,
};
use crate::duplex::{Duplex, Split};
use crate::logsafe::{untrusted, untrusted_message};
use crate::store::Durability;

/// How long a connection kicked while it waits for the store still waits for it, so that
/// what it was about to send (a CONNACK, acks) goes out; past it, or while the store fails,
/// that is dropped unacknowledged.
const KICKED_DURABLE_WAIT: Duration = Duration::from_secs(5);

/// How the client reached us; shown in logs and the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    WebSocket,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket over TLS.
    Wss,
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
/// Read sizes: an idle connection holds a small buffer (memory per connection is what
/// limits how many a broker can hold); a busy one grows it by doubling when reads fill it,
/// so a fast publisher is read in large chunks. Above `BUFFER_KEEP`, an emptied buffer is
/// released.
const READ_MIN: usize = 64;
const BUFFER_KEEP: usize = 64 * 1024;
/// MQTT 3.1 limits client identifiers to 23 characters.
const MQTT31_MAX_CLIENT_ID: usize = 23;
/// How long (writing our last packets included), and for how many bytes, a connection the
/// server closes keeps reading (and discarding) what the client still sends, so that the
/// client reads our last packet instead of a reset ([`Connection::close`]).
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 1024 * 1024;
/// The smallest 5.0 CONNACK: flags, reason code and an empty property length.
const MIN_V5_CONNACK: usize = 5;

/// Why a connection ended. Every end but a normal DISCONNECT publishes the will.
#[derive(Debug, thiserror::Error)]
enum End {
    /// The client sent DISCONNECT; `with_will` for 5.0 reason 0x04.
    #[error("client sent DISCONNECT")]
    Disconnected { with_will: bool },
    /// The client closed its side without a DISCONNECT (over WebSocket: a Close frame).
    #[error("closed by the client without DISCONNECT")]
    Closed,
    /// The socket failed.
    #[error("connection lost: {0}")]
    Lost(String),
    /// Nothing arrived within 1.5 times the keep-alive (MQTT-3.1.2-24).
    #[error("keep-alive timeout")]
    KeepAliveTimeout,
    /// Ended from outside: another connection took the session (MQTT-3.1.4-2), an
    /// administrator kicked the client, or the server is shutting down.
    #[error("ended by the broker: {}", reason::describe(*.0))]
    Kicked(u8),
    /// The client broke the protocol; the spec says close the connection (5.0: with a
    /// DISCONNECT carrying `code`).
    #[error("protocol violation: {message}")]
    Violation { code: u8, message: String },
}

impl End {
    fn violation(code: u8, message: impl Into<String>) -> End {
        End::Violation {
            code,
            message: message.into(),
        }
    }

    /// The reason code of the DISCONNECT a 5.0 client is sent, if any.
    fn disconnect_reason(&self) -> Option<u8> {
        match self {
            End::Disconnected { .. } | End::Closed | End::Lost(_) => None,
            End::KeepAliveTimeout => Some(reason::KEEP_ALIVE_TIMEOUT),
            End::Kicked(code) | End::Violation { code, .. } => Some(*code),
        }
    }
}

impl From<DecodeError> for End {
    fn from(e: DecodeError) -> End {
        let code = match e {
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::Protocol { .. } => reason::PROTOCOL_ERROR,
            _ => reason::MALFORMED_PACKET,
        };
        End::violation(code, e.to_string())
    }
}

/// Serves one client until it disconnects or breaks the protocol. Never panics on input.
pub fn serve<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    broker: Arc<Broker>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_duplex(Split::new(stream), peer, transport, None, broker)
}

/// [`serve`] for a client whose TLS certificate the listener verified and took `identity`
/// from (`use_identity_as_username`): `identity` is its user name, whatever its CONNECT
/// says, and stands in for a password ([`Access::authenticate_certified`]).
///
/// [`Access::authenticate_certified`]: crate::broker::Access::authenticate_certified
pub fn serve_certified<S>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    identity: String,
    broker: Arc<Broker>,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    serve_duplex(Split::new(stream), peer, transport, Some(identity), broker)
}

/// [`serve`] for a TCP stream, whose halves need no lock (or allocation) between them.
pub fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
) -> impl Future<Output = ()> + Send + 'static {
    serve_duplex(stream, peer, Transport::Tcp, None, broker)
}

/// A plain function returning the future, not an `async fn`: an `async fn` keeps its
/// arguments in its state beside the connection they were moved into, and every byte of
/// that state is held by every idle connection.
fn serve_duplex<S: Duplex>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    identity: Option<String>,
    broker: Arc<Broker>,
) -> impl Future<Output = ()> + Send + 'static {
    let id = broker.new_connection_id();
    let span = tracing::info_span!("conn", id, %peer, ?transport);
    Metrics::add(&broker.metrics.connections_accepted, 1);
    let mut conn = Connection {
        stream,
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        decoder: Decoder::new(broker.settings.max_packet_size),
        version: ProtocolVersion::V3_1_1,
        broker,
        id,
        origin: Some(Box::new(Origin {
            peer,
            transport,
            identity,
        })),
        info: None,
        inbound_aliases: None,
        outbound_aliases: TopicAliases::new(0),
        session_expiry: 0,
        client_max_packet: u32::MAX,
        durability: Durability::new(),
    };
    // The block owns the connection in place (its argument would be a second copy).
    async move { conn.serve().await }.instrument(span)
}

struct Connection<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    /// What the client announced in CONNECT; packets to it are written for this version.
    version: ProtocolVersion,
    broker: Arc<Broker>,
    id: u64,
    /// Where the client is, until the CONNECT makes it part of `info`. Boxed: needed once,
    /// and this struct is what every idle connection holds.
    origin: Option<Box<Origin>>,
    /// Who the client is, from the CONNECT on.
    info: Option<Arc<ConnectionInfo>>,
    /// What the work of this turn stored, for its acknowledgements to wait for: passed to
    /// everything that may write for it (explicitly: no other task's writes count).
    durability: Durability,
    /// Topic aliases the client defined (5.0): alias → topic. Boxed, and only once the
    /// client defines one: most never do, and this sits in every connection.
    #[allow(clippy::box_collection)] // The point: 8 bytes inline instead of 48.
    inbound_aliases: Option<Box<HashMap<u16, String>>>,
    /// Topic aliases we give the client.
    outbound_aliases: TopicAliases,
    /// The session expiry interval the client asked for in CONNECT.
    session_expiry: u32,
    /// The largest packet the client accepts (5.0 Maximum Packet Size; unlimited before):
    /// nothing larger is ever written to it (MQTT-3.1.2-24).
    client_max_packet: u32,
}

struct Origin {
    peer: SocketAddr,
    transport: Transport,
    /// The verified certificate identity that is the client's user name, if the listener
    /// gives one (see [`serve_certified`]).
    identity: Option<String>,
}

/// What an accepted CONNECT leaves for the rest of the connection: the session it owns,
/// the signal that it lost it, its place under the connection limit, and of the CONNECT
/// only what is still needed (an idle connection should not hold its whole CONNECT).
struct Opened {
    session: Arc<Session>,
    kick: Arc<Kick>,
    _online: Online,
    /// Boxed: rare, and large with its properties.
    will: Option<Box<Will>>,
    /// The keep-alive in force: the client's, or the one we told it (5.0).
    keep_alive: u16,
}

impl<S: Duplex> Connection<S> {
    /// The connection's whole life: the handshake, then the session until it ends; then
    /// tells a 5.0 client why (if the server ended it), and hands the session back with
    /// the will if the end was not a normal DISCONNECT.
    ///
    /// One function, not one per phase: each `async fn` boundary keeps its own copy of its
    /// arguments in the task, and this task is what every idle connection costs.
    async fn serve(&mut self) {
        // Boxed: the handshake's state (the CONNECT, the CONNACK being built) is large and
        // short-lived; inline, it would size every connection's task for its whole life.
        let opened = match Box::pin(self.handshake()).await {
            Ok(Some(opened)) => opened,
            Ok(None) => return,
            Err(reason) => {
                info!("closing before CONNACK: {}", untrusted_message(&reason));
                return;
            }
        };
        opened.session.mark_for_resend(self.id);
        if self.rbuf.is_empty() {
            // The CONNECT's buffer (shared with the packet read from it): an idle
            // connection starts again from the smallest one.
            self.rbuf = BytesMut::new();
        }
        let end = self
            .serve_session(opened.keep_alive, &opened.session, &opened.kick)
            .await;
        // A turn that ended the connection (a DISCONNECT or a violation after a PUBLISH in
        // the same read) may have written acknowledgements: they wait for the store like any
        // other, or are dropped if it fails, before the close flushes them.
        Box::pin(self.hold_until_durable()).await;
        // `opened` keeps the client counted as connected (its `Online`) until the end, past
        // the close below: the server's shutdown waits for that count to reach zero, and so
        // for every client to be told why and let go.
        let Opened { session, will, .. } = opened;
        match &end {
            End::Disconnected { .. } | End::Closed | End::Kicked(_) | End::Lost(_) => {
                debug!("connection ended: {}", untrusted_message(&end.to_string()))
            }
            End::KeepAliveTimeout => {
                Metrics::add(&self.broker.metrics.keep_alive_timeouts, 1);
                info!(
                    "closing connection: {}",
                    untrusted_message(&end.to_string())
                );
            }
            End::Violation { .. } => {
                Metrics::add(&self.broker.metrics.protocol_violations, 1);
                info!(
                    "closing connection: {}",
                    untrusted_message(&end.to_string())
                );
            }
        }
        let publish_will = !matches!(end, End::Disconnected { with_will: false });
        let will = will
            .filter(|will| publish_will && self.may(Action::Publish, &will.topic))
            .map(|will| self.will_message(*will));
        self.broker
            .close_session(&session, self.id, will, &self.durability);

        if let (true, Some(code)) = (self.is_v5(), end.disconnect_reason()) {
            let mut disconnect = Disconnect::new(code);
            if let End::Violation { message, .. } = &end {
                disconnect.properties.reason_string = Some(message.clone());
                // The reason string is left out if it would make the packet larger than
                // the client accepts (MQTT-3.14.2-3, MQTT-3.1.2-24).
                if !self.queue(&Packet::Disconnect(disconnect.clone())) {
                    disconnect.properties.reason_string = None;
                    // Three bytes: fits every client that got a CONNACK (5 bytes or more).
                    let _ = self.queue(&Packet::Disconnect(disconnect));
                }
            } else {
                let _ = self.queue(&Packet::Disconnect(disconnect));
            }
        }
        // A failed socket takes nothing more. One the client closed may still take the rest
        // of what was on its way (over WebSocket: the frame being written, then the reply
        // to its Close), within the close's bounds.
        if !matches!(end, End::Lost(_)) {
            Box::pin(self.close()).await;
        }
    }

    /// Ends a connection the server closes, so that the client can read the last packets
    /// (a DISCONNECT with its reason, a refusing CONNACK): writes them, shuts down the
    /// writing half, then reads and discards what the client still sends until it closes
    /// too, for at most [`LINGER`] and [`LINGER_BYTES`]. Closing a socket with unread bytes
    /// makes the kernel send a reset, and a reset can destroy what the client has not yet
    /// read; a client still sending (say, PUBRELs past our receive maximum) would lose the
    /// DISCONNECT that tells it why. Boxed by its callers: the buffer and timers are needed
    /// only here, not in every idle connection's task.
    async fn close(&mut self) {
        let linger = async {
            self.write_all().await?;
            let (reader, mut writer) = self.stream.halves();
            writer.shutdown().await?;
            tokio::io::copy(&mut reader.take(LINGER_BYTES), &mut tokio::io::sink()).await
        };
        let _ = timeout(LINGER, linger).await;
    }

    fn is_v5(&self) -> bool {
        self.version == ProtocolVersion::V5
    }

    /// Reads the CONNECT and answers it. `Ok(None)`: refused with a CONNACK, and closed.
    async fn handshake(&mut self) -> Result<Option<Opened>, String> {
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
        self.broker.metrics.packet_in(first.packet_type());
        let Packet::Connect(connect) = first else {
            return Err(format!(
                "first packet is {}, not CONNECT (MQTT-3.1.0-1)",
                first.name()
            ));
        };
        let mut connect = connect;
        self.version = connect.version;
        if self.is_v5() {
            self.client_max_packet = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        }
        if (self.client_max_packet as usize) < MIN_V5_CONNACK {
            // Not even a CONNACK fits what the client accepts (MQTT-3.1.2-24), refusing or
            // not: close without sending anything.
            return Err(format!(
                "the client's maximum packet size {} cannot hold any CONNACK (MQTT-3.1.2-24)",
                self.client_max_packet
            ));
        }

        if self.is_v5() && connect.properties.authentication_method.is_some() {
            // No enhanced authentication method is configured (MQTT-4.12.0-1).
            info!("unsupported authentication method: CONNACK 0x8C");
            self.refuse(reason::BAD_AUTHENTICATION_METHOD).await;
            return Ok(None);
        }
        let mut assigned_id = None;
        if connect.version == ProtocolVersion::V3_1
            && !(1..=MQTT31_MAX_CLIENT_ID).contains(&connect.client_id.chars().count())
        {
            // MQTT 3.1 §3.1: "between 1 and 23 characters"; it has no assigned identifiers.
            info!("MQTT 3.1 client id not 1 to 23 characters long: CONNACK 0x02");
            self.refuse(reason::CLIENT_IDENTIFIER_NOT_VALID).await;
            return Ok(None);
        }
        if connect.client_id.is_empty() {
            if !connect.clean_session && !self.is_v5() {
                // MQTT-3.1.3-8: no identifier and a persistent session cannot be resumed.
                info!("empty client id without clean session: CONNACK 0x02");
                self.refuse(reason::CLIENT_IDENTIFIER_NOT_VALID).await;
                return Ok(None);
            }
            connect.client_id = self.broker.generate_client_id(self.id);
            assigned_id = Some(connect.client_id.clone());
        }
        // The longest keep-alive we accept (Mosquitto's max_keepalive): 0 asks for none,
        // which is longer than any. 5.0 is told the one to use (MQTT-3.2.2-21); 3.1.x has no
        // way to be told and is refused, with "identifier rejected" as Mosquitto does.
        let max_keepalive = self.broker.settings.max_keepalive;
        let mut server_keep_alive = None;
        if max_keepalive < u16::MAX
            && (connect.keep_alive == 0 || connect.keep_alive > max_keepalive)
        {
            if !self.is_v5() {
                info!(
                    keep_alive = connect.keep_alive,
                    max_keepalive, "keep-alive above max_keepalive: CONNACK 0x02"
                );
                self.refuse(reason::CLIENT_IDENTIFIER_NOT_VALID).await;
                return Ok(None);
            }
            connect.keep_alive = max_keepalive;
            server_keep_alive = Some(max_keepalive);
        }
        // What a CONNACK accepting this client must carry; the rest can be left out. Our
        // limits must be said unless they are what absence means (a receive maximum of
        // 65,535 and no packet size limit, MQTT 5.0 §3.2.2.3.3, §3.2.2.3.6): a client told
        // nothing may send up to those. If that does not fit the client's maximum packet
        // size, the client cannot be served: it is refused, with a bare CONNACK that fits.
        let settings = &self.broker.settings;
        let required = Properties {
            server_keep_alive,
            assigned_client_identifier: assigned_id,
            receive_maximum: Some(settings.receive_maximum).filter(|&max| max != u16::MAX),
            maximum_packet_size: u32::try_from(settings.max_packet_size)
                .ok()
                .filter(|&max| (max as usize) < 5 + MAX_REMAINING_LENGTH),
            ..Properties::default()
        };
        if self.is_v5()
            && self.encoded_len(&connack(true, required.clone())) > self.client_max_packet as usize
        {
            info!(
                "the client's maximum packet size {} cannot hold the CONNACK it needs \
                 (MQTT-3.1.2-24): CONNACK 0x83",
                self.client_max_packet
            );
            self.refuse(reason::IMPLEMENTATION_SPECIFIC_ERROR).await;
            return Ok(None);
        }
        if let Some(will) = &connect.will {
            let valid = validate_topic_name(&will.topic).map_err(|e| e.to_string());
            let response_ok = will
                .properties
                .response_topic
                .as_deref()
                .is_none_or(|t| validate_topic_name(t).is_ok());
            if let Err(e) = valid.and_then(|()| {
                response_ok
                    .then_some(())
                    .ok_or_else(|| "invalid will response topic".to_owned())
            }) {
                if self.is_v5() {
                    self.refuse(reason::TOPIC_NAME_INVALID).await;
                    return Ok(None);
                }
                return Err(format!("invalid will topic: {e}"));
            }
        }

        // A verified certificate identity (`use_identity_as_username`) is the user name,
        // whatever the CONNECT says, and needs no password, as in Mosquitto.
        let verdict = match self.origin.as_mut().and_then(|o| o.identity.take()) {
            Some(identity) => {
                let verdict = self.broker.access().authenticate_certified(&identity);
                connect.username = Some(identity);
                connect.password = None;
                verdict
            }
            None => self
                .broker
                .access()
                .authenticate(connect.username.as_deref(), connect.password.as_deref()),
        };
        let authenticated = match verdict {
            Verdict::Decided(result) => result,
            Verdict::Slow(check) => {
                let ip = self
                    .origin
                    .as_ref()
                    .map_or(IpAddr::from([0, 0, 0, 0]), |o| o.peer.ip());
                let username = connect.username.as_deref().unwrap_or_default();
                self.broker.credential_checks.run(ip, username, check).await
            }
        };
        if let Err(code) = authenticated {
            info!(
                username = %untrusted(connect.username.as_deref().unwrap_or("")),
                "authentication failed: {}",
                reason::describe(code)
            );
            self.refuse(code).await;
            return Ok(None);
        }
        let online = match self.broker.admit() {
            Ok(online) => online,
            Err(code) => {
                info!(
                    "refused under the global limits: {}",
                    reason::describe(code)
                );
                self.refuse(code).await;
                return Ok(None);
            }
        };

        let props = &connect.properties;
        self.session_expiry = match connect.version {
            ProtocolVersion::V5 => props.session_expiry_interval.unwrap_or(0),
            _ if connect.clean_session => 0,
            _ => NEVER_EXPIRES,
        };
        // A session to keep needs the store: while its writes fail, say so now (5.0 0x88,
        // 3.1.1 0x03 "server unavailable") rather than leave the client without a CONNACK
        // until the disk has room again. Clean sessions are served as usual.
        if let Some(store) = self.broker.store().filter(|s| s.is_failing()) {
            if self.session_expiry > 0 {
                store.count_refused();
                info!("persistent session refused while the store is failing: server unavailable");
                self.refuse(reason::SERVER_UNAVAILABLE).await;
                return Ok(None);
            }
        }
        // Outbound aliases keep their topics for the life of the connection: bounded by our
        // own limit too, not only the client's (which may be 65535 long topics).
        self.outbound_aliases = TopicAliases::new(
            props
                .topic_alias_maximum
                .unwrap_or(0)
                .min(self.broker.settings.topic_alias_maximum),
        );
        let Some(origin) = self.origin.take() else {
            return Err("a second handshake on one connection".into());
        };
        let client_id: Arc<str> = Arc::from(connect.client_id.as_str());
        let kick = Arc::new(Kick::default());
        let info = Arc::new(ConnectionInfo {
            connection_id: self.id,
            client_id: client_id.clone(),
            username: connect.username.clone(),
            peer: origin.peer,
            transport: origin.transport,
            version: connect.version,
            keep_alive: connect.keep_alive,
            clean_start: connect.clean_session,
            connected_at: SystemTime::now(),
            receive_maximum: props.receive_maximum.unwrap_or(u16::MAX),
            max_packet_size: props.maximum_packet_size.unwrap_or(u32::MAX),
            topic_alias_maximum: props.topic_alias_maximum.unwrap_or(0),
        });
        self.info = Some(info.clone());
        let opened = self.broker.open_session(
            &client_id,
            connect.clean_session,
            self.session_expiry,
            Owner {
                info,
                kick: kick.clone(),
            },
            &self.durability,
        );
        if self.session_expiry == 0 && self.broker.store().is_some_and(|s| s.is_failing()) {
            // A clean session that replaced a stored one deleted it: that delete is
            // applied when the store works again, and the CONNACK does not wait for it.
            self.durability.take();
        }
        debug!(
            client_id = %untrusted(&connect.client_id),
            version = %connect.version,
            clean = connect.clean_session,
            keep_alive = connect.keep_alive,
            session_present = opened.session_present,
            "connected"
        );
        let mut connack = connack(opened.session_present, required);
        if self.is_v5() {
            let settings = &self.broker.settings;
            connack.properties = Properties {
                topic_alias_maximum: Some(settings.topic_alias_maximum),
                retain_available: Some(1),
                wildcard_subscription_available: Some(1),
                subscription_identifier_available: Some(1),
                shared_subscription_available: Some(1),
                ..connack.properties
            };
            // MQTT-3.1.2-24: not even the CONNACK may exceed the client's maximum. These
            // are optional (absent, they mean "available", and no topic aliases): drop
            // them, least useful first, until it fits; the required ones were checked above.
            let droppable: [fn(&mut Properties); 5] = [
                |p| p.shared_subscription_available = None,
                |p| p.subscription_identifier_available = None,
                |p| p.wildcard_subscription_available = None,
                |p| p.retain_available = None,
                |p| p.topic_alias_maximum = None,
            ];
            for drop_one in droppable {
                if self.encoded_len(&connack) <= self.client_max_packet as usize {
                    break;
                }
                drop_one(&mut connack.properties);
            }
        }
        // Fits: what it must carry was checked above, and the rest dropped until it did.
        let _ = self.queue(&Packet::ConnAck(connack));
        Ok(Some(Opened {
            session: opened.session,
            kick,
            _online: online,
            will: connect.will.take().map(Box::new),
            keep_alive: connect.keep_alive,
        }))
    }

    /// Waits (at most [`KICKED_DURABLE_WAIT`]) until what this connection's last turn
    /// stored is durable; if it cannot be (the store fails), drops what that turn wrote, so
    /// that nothing unstored is acknowledged.
    async fn hold_until_durable(&mut self) {
        let touched = self.durability.take();
        let Some(store) = self.broker.store().filter(|_| touched > 0) else {
            return;
        };
        let durable = !store.is_failing()
            && timeout(KICKED_DURABLE_WAIT, store.wait_durable(touched))
                .await
                .is_ok();
        if !durable {
            self.wbuf.clear();
        }
    }

    /// Bytes `connack` takes on the wire.
    fn encoded_len(&self, connack: &ConnAck) -> usize {
        let mut probe = BytesMut::new();
        let _ = encode(&Packet::ConnAck(connack.clone()), self.version, &mut probe);
        probe.len()
    }

    /// Sends a refusing CONNACK and closes the connection (MQTT-3.2.2-5), giving the client
    /// the chance to read it ([`Self::close`]). Part of the handshake's (boxed) future: an
    /// await in `serve` would add its state to every connection's task.
    async fn refuse(&mut self, code: u8) {
        // A bare CONNACK: the handshake closes first when not even that fits the client.
        let _ = self.queue(&Packet::ConnAck(ConnAck::new(code, false)));
        self.close().await;
    }

    /// Whether the access policy lets this client do `action` on `topic`.
    /// Nothing is allowed before the CONNECT is accepted.
    fn may(&self, action: Action, topic: &str) -> bool {
        self.info.as_ref().is_some_and(|info| {
            self.broker.may(
                Identity {
                    client_id: &info.client_id,
                    username: info.username.as_deref(),
                },
                action,
                topic,
            )
        })
    }

    /// The client identifier, from the CONNECT on.
    fn client_id(&self) -> Option<Arc<str>> {
        self.info.as_ref().map(|info| info.client_id.clone())
    }

    /// The will as a message, with its delay in seconds.
    fn will_message(&self, will: Will) -> (Message, u32) {
        let delay = will.properties.will_delay_interval.unwrap_or(0);
        let expires_at = will.properties.message_expiry_interval.map(|secs| {
            std::time::Instant::now() + Duration::from_secs(u64::from(secs) + u64::from(delay))
        });
        let message = Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: forwardable(will.properties),
            expires_at,
            origin: self.client_id(),
            stored_id: Default::default(),
        };
        (message, delay)
    }

    async fn serve_session(&mut self, keep_alive: u16, session: &Arc<Session>, kick: &Kick) -> End {
        // MQTT-3.1.2-24: one and a half times the keep-alive; 0 turns it off. The broker's
        // keep-alive sweep kicks us when the deadline passes.
        let keep_alive_ms = u64::from(keep_alive) * 1500;
        if keep_alive_ms > 0 {
            kick.set_deadline(self.broker.clock_ms() + keep_alive_ms);
        }
        let mut unflushed = false;
        let mut read_filled = false;
        let mut read_size = READ_MIN;
        // Packets that came in the same read as the CONNECT are already buffered: handle
        // them now, not when the client next sends something.
        if !self.rbuf.is_empty() {
            if let Some(end) = self.handle_input(session) {
                return end;
            }
        }

        loop {
            if self.wbuf.len() < WRITE_HIGH_WATER {
                let mut aliases = std::mem::take(&mut self.outbound_aliases);
                // Every delivery passes the reader's ACL as it is sent, not only when it
                // was routed: queued and re-sent messages too, under the rules of now.
                let access = self.broker.read_checks();
                let info = self.info.as_deref();
                let may_read = |topic: &str| {
                    let (Some(access), Some(info)) = (&access, info) else {
                        return true;
                    };
                    access.authorize(
                        Identity {
                            client_id: &info.client_id,
                            username: info.username.as_deref(),
                        },
                        Action::Read,
                        topic,
                    )
                };
                let written = session.write_queued(
                    self.id,
                    &mut self.wbuf,
                    WRITE_HIGH_WATER,
                    &mut aliases,
                    access
                        .is_some()
                        .then_some(&may_read as &dyn Fn(&str) -> bool),
                    &self.durability,
                );
                self.outbound_aliases = aliases;
                self.count_publishes_out(written);
            }
            // What this turn stored (acknowledged publishes, deliveries given a packet id,
            // subscriptions) must be durable before any of it reaches the wire: the
            // promise is that an acknowledged message survives a crash. QoS 0 and clean
            // sessions store nothing, so they never wait here.
            let touched = self.durability.take();
            if touched > 0 {
                if let Some(store) = self.broker.store() {
                    // A kick still ends the connection meanwhile (keep-alive, takeover, an
                    // administrator, shutdown): a store failing for long must not hold it
                    // forever. A working store finishes the write in moments, and what it
                    // waited for (a CONNACK, say, whose session was taken over at once) is
                    // still sent; while the store fails it is dropped, not acknowledged.
                    // Boxed: the wait's state would otherwise size every idle connection's
                    // task.
                    let (kicked, durable) = Box::pin(async move {
                        tokio::select! {
                            biased;
                            () = store.wait_durable(touched) => (false, true),
                            () = kick.kicked() => {
                                let wait = timeout(KICKED_DURABLE_WAIT, store.wait_durable(touched));
                                (true, !store.is_failing() && wait.await.is_ok())
                            }
                        }
                    })
                    .await;
                    if !durable {
                        self.wbuf.clear();
                    }
                    if kicked {
                        return match kick.reason() {
                            reason::KEEP_ALIVE_TIMEOUT => End::KeepAliveTimeout,
                            reason => End::Kicked(reason),
                        };
                    }
                }
            }
            if read_filled {
                // The client sends faster than we handle it. Before reading more, let the
                // tasks this one feeds (its subscribers) have the CPU: otherwise a turn of
                // this task lasts tokio's whole budget (about a hundred buffers), and an
                // overloaded broker reads what it then has to drop. (Here, not before the
                // durability wait: what this turn stored must not be another task's to
                // wait for.)
                read_filled = false;
                tokio::task::yield_now().await;
            }
            unflushed |= !self.wbuf.is_empty();
            if self.rbuf.capacity() - self.rbuf.len() < read_size {
                let missing = self.decoder.missing_bytes(&self.rbuf);
                self.rbuf.reserve(missing.clamp(read_size, BUFFER_KEEP));
            }
            let spare = self.rbuf.capacity() - self.rbuf.len();
            let reading = self.wbuf.len() < WRITE_READ_LIMIT;
            let mail_room = self.wbuf.len() < WRITE_HIGH_WATER;
            // Counted when the write completes; a failed write ends the connection anyway.
            let pending_out = self.wbuf.len();
            // The halves are borrowed for the wait only: what happened is handled after.
            let event = {
                let (mut reader, mut writer) = self.stream.halves();
                tokio::select! {
                    biased;
                    () = kick.kicked() => Event::Kicked,
                    read = reader.read_buf(&mut self.rbuf), if reading => Event::Read(read),
                    written = flush(&mut writer, &mut self.wbuf), if unflushed => {
                        Event::Written(written)
                    }
                    () = session.wait_for_mail(), if mail_room => Event::Mail,
                }
            };
            match event {
                Event::Kicked => {
                    return match kick.reason() {
                        reason::KEEP_ALIVE_TIMEOUT => End::KeepAliveTimeout,
                        reason => End::Kicked(reason),
                    };
                }
                Event::Read(Ok(0)) => return End::Closed,
                // Bytes the transport cannot frame (a WebSocket protocol error, which the
                // transport has answered with its own Close) break the protocol too.
                Event::Read(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    return End::violation(reason::MALFORMED_PACKET, e.to_string());
                }
                Event::Read(Err(e)) => return End::Lost(e.to_string()),
                Event::Read(Ok(n)) => {
                    Metrics::add(&self.broker.metrics.bytes_in, n as u64);
                    // A read that filled the buffer: more is waiting, read more at once.
                    read_filled = n == spare;
                    if read_filled {
                        read_size = (read_size * 2).min(BUFFER_KEEP);
                    } else if n < read_size / 4 {
                        read_size = (read_size / 2).max(READ_MIN);
                    }
                    if keep_alive_ms > 0 {
                        kick.set_deadline(self.broker.clock_ms() + keep_alive_ms);
                    }
                    if let Some(end) = self.handle_input(session) {
                        return end;
                    }
                }
                Event::Written(written) => {
                    Metrics::add(&self.broker.metrics.bytes_out, pending_out as u64);
                    if let Err(e) = written {
                        return End::Lost(e.to_string());
                    }
                    unflushed = false;
                    if self.wbuf.capacity() > BUFFER_KEEP || self.wbuf.capacity() < READ_MIN {
                        // A large buffer goes back to the allocator, and so does a tiny one
                        // (what the CONNACK left): it would not hold a turn's writes anyway
                        // and costs every idle connection.
                        self.wbuf = BytesMut::new();
                    }
                }
                Event::Mail => {}
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
                Err(e) => return Some(e.into()),
            }
        }
        if self.rbuf.is_empty() && self.rbuf.capacity() > BUFFER_KEEP {
            self.rbuf = BytesMut::new();
        }
        None
    }

    fn handle(&mut self, packet: Packet, session: &Arc<Session>) -> Option<End> {
        // An acknowledgement that does not belong to the exchange its packet identifier is
        // in (MQTT-4.3.2, MQTT-4.3.3) ends the connection; one for an identifier with
        // nothing in flight is ignored, or answered where the spec says so.
        let wrong = |ack: &str, e: WrongAck| {
            Some(End::violation(
                reason::PROTOCOL_ERROR,
                format!("{ack} for {e} (MQTT-4.3.2, MQTT-4.3.3)"),
            ))
        };
        match packet {
            Packet::Publish(publish) => return self.on_publish(publish, session),
            Packet::PubAck(ack) => {
                if let Err(e) = session.on_puback(ack.pkid) {
                    return wrong("PUBACK", e);
                }
            }
            Packet::PubRec(ack) => {
                let failed = ack.reason >= reason::UNSPECIFIED_ERROR;
                let before = self.wbuf.len();
                if let Err(e) =
                    session.on_pubrec(ack.pkid, failed, &mut self.wbuf, &self.durability)
                {
                    return wrong("PUBREC", e);
                }
                if self.wbuf.len() > before {
                    self.broker.metrics.packet_out(6);
                }
            }
            Packet::PubRel(ack) => {
                // Answered even for an unknown identifier: the client may be retrying after
                // losing our PUBCOMP; 5.0 says so with "packet identifier not found".
                let known = session.complete_incoming_qos2(ack.pkid, &self.durability);
                let code = if known || !self.is_v5() {
                    reason::SUCCESS
                } else {
                    reason::PACKET_IDENTIFIER_NOT_FOUND
                };
                return self.answer(&Packet::PubComp(Ack::with_reason(ack.pkid, code)));
            }
            Packet::PubComp(ack) => {
                if let Err(e) = session.on_pubcomp(ack.pkid) {
                    return wrong("PUBCOMP", e);
                }
            }
            Packet::Subscribe(subscribe) => return self.on_subscribe(subscribe, session),
            Packet::Unsubscribe(unsubscribe) => return self.on_unsubscribe(unsubscribe, session),
            Packet::PingReq => return self.answer(&Packet::PingResp),
            Packet::Disconnect(disconnect) => return self.on_disconnect(disconnect, session),
            Packet::Connect(_) => {
                return Some(End::violation(
                    reason::PROTOCOL_ERROR,
                    "second CONNECT (MQTT-3.1.0-2)",
                ));
            }
            Packet::Auth(_) => {
                return Some(End::violation(
                    reason::PROTOCOL_ERROR,
                    "AUTH without an authentication method (MQTT-4.12.0-1)",
                ));
            }
            other @ (Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp) => {
                return Some(End::violation(
                    reason::PROTOCOL_ERROR,
                    format!("{} is a server-to-client packet", other.name()),
                ));
            }
        }
        None
    }

    fn on_disconnect(&mut self, disconnect: Disconnect, session: &Arc<Session>) -> Option<End> {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            if self.session_expiry == 0 && expiry != 0 {
                return Some(End::violation(
                    reason::PROTOCOL_ERROR,
                    "session expiry set on DISCONNECT after 0 on CONNECT (MQTT-3.14.2-2)",
                ));
            }
            session.set_expiry(expiry, &self.durability);
        }
        Some(End::Disconnected {
            with_will: disconnect.reason == reason::DISCONNECT_WITH_WILL,
        })
    }

    /// Resolves a 5.0 topic alias: a PUBLISH with topic and alias defines it, one with
    /// only the alias uses it (MQTT 5.0 §3.3.2.3.4).
    fn resolve_topic(&mut self, publish: &mut Publish) -> Result<(), End> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        if alias == 0 || alias > self.broker.settings.topic_alias_maximum {
            return Err(End::violation(
                reason::TOPIC_ALIAS_INVALID,
                format!(
                    "topic alias {alias} outside 1..={}",
                    self.broker.settings.topic_alias_maximum
                ),
            ));
        }
        if publish.topic.is_empty() {
            match self.inbound_aliases.as_ref().and_then(|a| a.get(&alias)) {
                Some(topic) => publish.topic = topic.clone(),
                None => {
                    return Err(End::violation(
                        reason::PROTOCOL_ERROR,
                        format!("topic alias {alias} used before it was defined"),
                    ))
                }
            }
        } else {
            self.inbound_aliases
                .get_or_insert_default()
                .insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    fn on_publish(&mut self, mut publish: Publish, session: &Arc<Session>) -> Option<End> {
        if self.is_v5() {
            if publish.topic.is_empty() && publish.properties.topic_alias.is_none() {
                return Some(End::violation(
                    reason::PROTOCOL_ERROR,
                    "PUBLISH with an empty topic and no topic alias (MQTT 5.0 §3.3.2.3.4)",
                ));
            }
            if let Err(end) = self.resolve_topic(&mut publish) {
                return Some(end);
            }
            if !publish.properties.subscription_identifiers.is_empty() {
                return Some(End::violation(
                    reason::PROTOCOL_ERROR,
                    "PUBLISH from a client with a subscription identifier (MQTT-3.3.4-6)",
                ));
            }
            if let Some(topic) = &publish.properties.response_topic {
                if validate_topic_name(topic).is_err() {
                    return Some(End::violation(
                        reason::PROTOCOL_ERROR,
                        format!(
                            "invalid response topic {:?} (MQTT-3.3.2-14)",
                            untrusted(topic)
                        ),
                    ));
                }
            }
        }
        if let Err(e) = validate_topic_name(&publish.topic) {
            return Some(End::violation(
                reason::TOPIC_NAME_INVALID,
                format!("PUBLISH topic {:?}: {e}", untrusted(&publish.topic)),
            ));
        }
        let Publish {
            dup,
            qos,
            pkid,
            topic,
            payload,
            retain,
            properties,
        } = publish;
        // 5.0 lets the receiver check a payload that claims to be UTF-8 (MQTT-3.3.2-4).
        let bad_format = properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&payload).is_err();
        if bad_format && qos == QoS::AtMostOnce {
            return Some(End::violation(
                reason::PAYLOAD_FORMAT_INVALID,
                "payload is not the UTF-8 its format indicator claims",
            ));
        }
        let allowed = self.may(Action::Publish, &topic);
        if !allowed {
            debug!(topic = %untrusted(&topic), "publish not authorized: dropped");
        }
        if qos == QoS::ExactlyOnce
            && session.incoming_qos2_pending() >= usize::from(self.broker.settings.receive_maximum)
            && self.is_v5()
        {
            return Some(End::violation(
                reason::RECEIVE_MAXIMUM_EXCEEDED,
                "more QoS 2 publishes in flight than our receive maximum (MQTT-3.3.4-9)",
            ));
        }
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| std::time::Instant::now() + Duration::from_secs(u64::from(secs)));
        let message = Message {
            topic,
            payload,
            qos,
            retain,
            properties: forwardable(properties),
            expires_at,
            origin: self.client_id(),
            stored_id: Default::default(),
        };
        let ack_code = |matched: usize| {
            if matched == 0 {
                reason::NO_MATCHING_SUBSCRIBERS
            } else {
                reason::SUCCESS
            }
        };
        // A refused publish is dropped; 3.1.1 has no way to say so and gets a normal ack
        // (as Mosquitto does), 5.0 gets "not authorized" (MQTT-3.3.5-2 … 0x87).
        let refused = if self.is_v5() {
            reason::NOT_AUTHORIZED
        } else {
            reason::SUCCESS
        };
        // While the store fails, a publish that would have to be stored (retained, queued
        // for a persistent session, or a persistent session's own QoS 2 exchange) is not
        // taken: its ack would wait as long as the failure lasts. 5.0 is told "quota
        // exceeded" (0x97); a 3.1.1 ack cannot say no, so the connection is closed without
        // one and the client sends the message again when it reconnects. A QoS 0 retained
        // message is delivered, but not kept as the topic's retained message.
        if allowed && !bad_format && self.broker.store().is_some_and(|s| s.is_failing()) {
            let needs_store = self.broker.publish_needs_store(&message)
                || (qos == QoS::ExactlyOnce && !dup && session.expiry() > 0);
            if let (Some(store), true) = (self.broker.store(), needs_store) {
                store.count_refused();
                let ack = Ack::with_reason(pkid, reason::QUOTA_EXCEEDED);
                match qos {
                    QoS::AtMostOnce => {
                        self.broker
                            .publish_retaining(message, false, &self.durability);
                        return None;
                    }
                    QoS::AtLeastOnce if self.is_v5() => {
                        return self.answer(&Packet::PubAck(ack));
                    }
                    QoS::ExactlyOnce if self.is_v5() => {
                        return self.answer(&Packet::PubRec(ack));
                    }
                    _ => {
                        info!(
                            qos = qos as u8,
                            "a publish to be stored while the store is failing: closing \
                             (a 3.1.1 ack cannot refuse)"
                        );
                        // Acks this turn wrote may wait on the store too: the close must
                        // not flush them.
                        self.wbuf.clear();
                        return Some(End::Kicked(reason::SERVER_UNAVAILABLE));
                    }
                }
            }
        }
        // A retained message the retained store has no room for is refused (and counted):
        // 5.0 is told "quota exceeded", 3.1.1 gets its normal ack, as for a refused publish.
        let v5 = self.is_v5();
        let publish = |message| match self.broker.try_publish(message, true, &self.durability) {
            Ok(matched) => ack_code(matched),
            Err(code) if v5 => code,
            Err(_) => reason::SUCCESS,
        };
        match qos {
            QoS::AtMostOnce => {
                if allowed {
                    publish(message);
                }
            }
            QoS::AtLeastOnce => {
                let code = if bad_format {
                    reason::PAYLOAD_FORMAT_INVALID
                } else if !allowed {
                    refused
                } else {
                    publish(message)
                };
                return self.answer(&Packet::PubAck(Ack::with_reason(pkid, code)));
            }
            QoS::ExactlyOnce => {
                // Routed on first receipt; a re-sent duplicate before PUBREL is only
                // acknowledged again (exactly once, "method B" of MQTT 3.1.1 §4.3.3).
                let code = if bad_format {
                    reason::PAYLOAD_FORMAT_INVALID
                } else if !allowed {
                    refused
                } else if session.begin_incoming_qos2(pkid, &self.durability) {
                    let code = publish(message);
                    if code >= 0x80 {
                        // A failed PUBREC ends the exchange (MQTT 5.0 §4.3.3).
                        session.complete_incoming_qos2(pkid, &self.durability);
                    }
                    code
                } else {
                    reason::SUCCESS
                };
                return self.answer(&Packet::PubRec(Ack::with_reason(pkid, code)));
            }
        }
        None
    }

    fn on_subscribe(&mut self, subscribe: Subscribe, session: &Arc<Session>) -> Option<End> {
        let subscription_id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut return_codes = Vec::with_capacity(subscribe.filters.len());
        let mut accepted: Vec<&SubscribeFilter> = Vec::with_capacity(subscribe.filters.len());
        // Room left under the per-client limit; replacing a subscription takes none.
        let max = match self.broker.settings.max_subscriptions_per_client {
            0 => usize::MAX,
            max => max,
        };
        let mut room = max.saturating_sub(session.subscription_count());
        // A persistent session's subscriptions are stored: while the store fails they are
        // refused (5.0: 0x97; 3.1.1: 0x80) rather than left without a SUBACK.
        let store_failing = self.store_failing_for(session);
        let mut over_limit = 0usize;
        // The new filters of this SUBSCRIBE given room (a repeated one takes it once).
        let mut taken = std::collections::HashSet::new();
        for filter in &subscribe.filters {
            let valid = validate_topic_filter(&filter.filter)
                .map_err(|e| e.to_string())
                .and_then(|()| parse_shared(&filter.filter).map_err(|e| e.to_string()));
            match valid {
                Ok(shared) => {
                    if shared.is_some() && filter.no_local && self.is_v5() {
                        return Some(End::violation(
                            reason::PROTOCOL_ERROR,
                            "no local on a shared subscription (MQTT-3.8.3-4)",
                        ));
                    }
                    let inner = shared.map_or(filter.filter.as_str(), |(_, inner)| inner);
                    if !self.may(Action::Subscribe, inner) {
                        debug!(filter = %untrusted(&filter.filter), "subscription not authorized");
                        return_codes.push(if self.is_v5() {
                            reason::NOT_AUTHORIZED
                        } else {
                            reason::UNSPECIFIED_ERROR
                        });
                        continue;
                    }
                    if store_failing {
                        return_codes.push(if self.is_v5() {
                            reason::QUOTA_EXCEEDED
                        } else {
                            reason::UNSPECIFIED_ERROR
                        });
                        continue;
                    }
                    let replaces = session.has_subscription(&filter.filter)
                        || taken.contains(filter.filter.as_str());
                    if !replaces {
                        if room == 0 {
                            over_limit += 1;
                            return_codes.push(if self.is_v5() {
                                reason::QUOTA_EXCEEDED
                            } else {
                                reason::UNSPECIFIED_ERROR
                            });
                            continue;
                        }
                        room -= 1;
                        taken.insert(filter.filter.as_str());
                    }
                    return_codes.push(filter.qos as u8);
                    accepted.push(filter);
                }
                // 5.0 refuses the one filter; 3.1.1 has no code for it: close.
                Err(e) if self.is_v5() => {
                    debug!(filter = %untrusted(&filter.filter), "refusing filter: {e}");
                    return_codes.push(reason::TOPIC_FILTER_INVALID);
                }
                Err(e) => {
                    return Some(End::violation(
                        reason::TOPIC_FILTER_INVALID,
                        format!("SUBSCRIBE filter {:?}: {e}", untrusted(&filter.filter)),
                    ));
                }
            }
        }
        if let (true, Some(store)) = (store_failing, self.broker.store()) {
            store.count_refused();
        }
        if over_limit > 0 {
            Metrics::add(
                &self.broker.metrics.subscriptions_refused,
                over_limit as u64,
            );
            info!(
                "{over_limit} filters refused: the client holds its maximum of {max} \
                 subscriptions (max_subscriptions_per_client)"
            );
        }
        // The SUBACK goes out before the retained messages the subscriptions queue.
        let suback = Packet::SubAck(SubAck {
            pkid: subscribe.pkid,
            return_codes,
            properties: Properties::default(),
        });
        if let Some(end) = self.answer(&suback) {
            return Some(end);
        }
        for filter in accepted {
            self.broker
                .subscribe(session, filter, subscription_id, &self.durability);
        }
        None
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe, session: &Arc<Session>) -> Option<End> {
        if self.store_failing_for(session) {
            if let Some(store) = self.broker.store() {
                store.count_refused();
            }
            if !self.is_v5() {
                // A 3.1.1 UNSUBACK cannot refuse: close, as for a publish to be stored.
                info!("an UNSUBSCRIBE to be stored while the store is failing: closing");
                self.wbuf.clear();
                return Some(End::Kicked(reason::SERVER_UNAVAILABLE));
            }
            return self.answer(&Packet::UnsubAck(UnsubAck {
                pkid: unsubscribe.pkid,
                reasons: vec![reason::UNSPECIFIED_ERROR; unsubscribe.filters.len()],
                properties: Properties::default(),
            }));
        }
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            if let Err(e) = validate_topic_filter(filter) {
                if self.is_v5() {
                    reasons.push(reason::TOPIC_FILTER_INVALID);
                    continue;
                }
                return Some(End::violation(
                    reason::TOPIC_FILTER_INVALID,
                    format!("UNSUBSCRIBE filter {:?}: {e}", untrusted(filter)),
                ));
            }
            reasons.push(
                if self.broker.unsubscribe(session, filter, &self.durability) {
                    reason::SUCCESS
                } else {
                    reason::NO_SUBSCRIPTION_EXISTED
                },
            );
        }
        // MQTT-3.10.4-5: UNSUBACK even when nothing was subscribed.
        self.answer(&Packet::UnsubAck(UnsubAck {
            pkid: unsubscribe.pkid,
            reasons,
            properties: Properties::default(),
        }))
    }

    /// Whether `session` is persistent and the store it needs is failing: its SUBSCRIBE and
    /// UNSUBSCRIBE are then refused instead of waiting for the disk.
    fn store_failing_for(&self, session: &Session) -> bool {
        session.expiry() > 0 && self.broker.store().is_some_and(|s| s.is_failing())
    }

    /// Counts what the session wrote into our buffer.
    fn count_publishes_out(&self, written: Written) {
        let metrics = &self.broker.metrics;
        Metrics::add(&metrics.messages_sent, written.sent as u64);
        Metrics::add(&metrics.dropped_expired, written.expired as u64);
        Metrics::add(&metrics.dropped_too_large, written.too_large as u64);
        Metrics::add(
            &metrics.dropped_not_authorized,
            written.not_authorized as u64,
        );
        metrics.packets_out_n(3, written.sent as u64);
    }

    /// Queues the answer to a client's packet. One larger than the client's maximum packet
    /// size (a SUBACK for many filters) cannot be sent, and a request without its answer
    /// leaves the client waiting: the connection ends (5.0: 0x95, "packet too large").
    fn answer(&mut self, packet: &Packet) -> Option<End> {
        if self.queue(packet) {
            return None;
        }
        Some(End::violation(
            reason::PACKET_TOO_LARGE,
            format!(
                "the {} answering it exceeds the client's maximum packet size {} (MQTT-3.1.2-24)",
                packet.name(),
                self.client_max_packet
            ),
        ))
    }

    /// Appends a packet to the write buffer; it goes out with the rest of this turn's.
    /// False if it was not written: larger than the client's maximum packet size (the spec
    /// forbids sending it, MQTT-3.1.2-24), or not encodable.
    #[must_use = "a packet the client cannot take must be dealt with"]
    fn queue(&mut self, packet: &Packet) -> bool {
        let start = self.wbuf.len();
        if let Err(e) = encode(packet, self.version, &mut self.wbuf) {
            // Only packets we built ourselves land here, all well within limits.
            debug!("could not encode {}: {e}", packet.name());
            self.wbuf.truncate(start);
            return false;
        }
        if self.wbuf.len() - start > self.client_max_packet as usize {
            debug!(
                "{} of {} bytes exceeds the client's maximum packet size {}: not sent",
                packet.name(),
                self.wbuf.len() - start,
                self.client_max_packet
            );
            self.wbuf.truncate(start);
            return false;
        }
        self.broker.metrics.packet_out(packet.packet_type());
        true
    }

    async fn write_all(&mut self) -> io::Result<()> {
        let len = self.wbuf.len();
        let result = flush(&mut self.stream.halves().1, &mut self.wbuf).await;
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
            self.rbuf.reserve(missing.clamp(READ_MIN, BUFFER_KEEP));
            if self.stream.halves().0.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

/// The properties of a publish (or will) that travel with the message to subscribers.
/// The topic alias, subscription identifiers and expiry interval are per hop and are
/// rebuilt on delivery; will-only properties are not message properties.
fn forwardable(properties: Properties) -> Properties {
    Properties {
        payload_format_indicator: properties.payload_format_indicator,
        content_type: properties.content_type,
        response_topic: properties.response_topic,
        correlation_data: properties.correlation_data,
        user_properties: properties.user_properties,
        ..Properties::default()
    }
}

/// A successful CONNACK carrying `properties`.
fn connack(session_present: bool, properties: Properties) -> ConnAck {
    ConnAck {
        properties,
        ..ConnAck::new(reason::SUCCESS, session_present)
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

/// What ended one wait of the connection loop.
enum Event {
    Kicked,
    Read(io::Result<usize>),
    Written(io::Result<()>),
    Mail,
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection holds one of these tasks, plus 104 bytes of task header, the
    /// whole rounded up to a multiple of 128: 664 is the most that fits 768. The bench's
    /// idle scenario measures the whole; this catches the largest part growing back (a
    /// large local held across an await, a boxed value kept alive, an `async fn` argument
    /// stored twice) without a run of the bench.
    #[tokio::test]
    async fn a_tcp_connection_task_stays_small() {
        const LIMIT: usize = 664;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let broker = Broker::new(Default::default());
        let peer = "127.0.0.1:1".parse().unwrap();
        let task = serve_tcp(stream, peer, broker);
        let size = std::mem::size_of_val(&task);
        assert!(
            size <= LIMIT,
            "a connection's task is {size} bytes, more than {LIMIT}"
        );
    }

    /// A 3.1.1 CONNECT, clean session, client id `id`, with a user name and password if
    /// given.
    fn connect_311(id: &str, credentials: Option<(&str, &str)>) -> Vec<u8> {
        let string = |body: &mut Vec<u8>, s: &str| {
            body.extend_from_slice(&(s.len() as u16).to_be_bytes());
            body.extend_from_slice(s.as_bytes());
        };
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
        string(&mut body, id);
        if let Some((username, password)) = credentials {
            body[7] |= 0x80 | 0x40;
            string(&mut body, username);
            string(&mut body, password);
        }
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend_from_slice(&body);
        packet
    }

    /// Sends `connect` (client id `id`) over a fresh connection, served with the
    /// certificate identity `identity` if given; returns the CONNACK's return code and the
    /// user name the broker then knows the client by (if it was let in).
    async fn answer(
        broker: &Arc<Broker>,
        identity: Option<&str>,
        id: &str,
        connect: &[u8],
    ) -> (u8, Option<String>) {
        let (mut client, server) = tokio::io::duplex(4096);
        let peer = "127.0.0.1:1".parse().unwrap();
        let task = match identity {
            Some(identity) => tokio::spawn(serve_certified(
                server,
                peer,
                Transport::Tls,
                identity.to_owned(),
                broker.clone(),
            )),
            None => tokio::spawn(serve(server, peer, Transport::Tls, broker.clone())),
        };
        client.write_all(connect).await.unwrap();
        let mut connack = [0u8; 4];
        timeout(Duration::from_secs(5), client.read_exact(&mut connack))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(connack[..3], [0x20, 0x02, 0x00]);
        let username = broker
            .session(id)
            .and_then(|s| s.connection)
            .and_then(|c| c.username.clone());
        drop(client);
        let _ = timeout(Duration::from_secs(5), task).await;
        (connack[3], username)
    }

    /// `use_identity_as_username`: the certificate's identity is the user name whatever the
    /// CONNECT says (another name, a wrong password, none at all), and the policy is asked
    /// about the certificate, not the password; the same CONNECTs without it are refused.
    #[tokio::test]
    async fn a_certificate_identity_replaces_the_connects_credentials() {
        let broker = Broker::new(Default::default());
        let closed = crate::auth::AuthPolicy::new(false, None, None);
        broker.set_access(closed.into_access());
        let claims = [
            ("c1", Some(("admin", "guess"))),
            ("c2", Some(("device-7", ""))),
            ("c3", None),
        ];
        for (id, credentials) in claims {
            let connect = connect_311(id, credentials);
            let (code, username) = answer(&broker, Some("device-7"), id, &connect).await;
            assert_eq!(code, 0, "{credentials:?}");
            assert_eq!(username.as_deref(), Some("device-7"));
            let (code, username) = answer(&broker, None, id, &connect).await;
            assert_ne!(code, 0, "refused without the certificate");
            assert_eq!(username, None);
        }
    }
}
