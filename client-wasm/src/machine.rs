//! The MQTT client protocol as a sans-IO state machine.
//!
//! [`Client`] never touches a socket or a clock. Its driver (the browser's WebSocket in
//! [`crate::browser`], or a test) feeds it what happened — the transport opened, bytes
//! arrived, the transport closed, time passed — and asks it what to do: bytes to send
//! ([`Client::poll_transmit`]), things to tell the application ([`Client::poll_event`]),
//! whether to open or close the transport, and when to call again
//! ([`Client::next_timeout`]). So the whole protocol — connect, keep-alive, QoS 1/2 flows,
//! subscription bookkeeping, reconnect with back-off and resubscribe — is tested natively.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::{Bytes, BytesMut};
use protocol::topic::{validate_topic_filter, validate_topic_name, TopicError};
use protocol::{
    encode, encode_publish, publish_size, reason, Ack, ConnAck, Connect, Decoder, Disconnect,
    EncodeError, Packet, Properties, Publish, PublishRef, QoS, Subscribe, SubscribeFilter,
    Unsubscribe, Will,
};

use crate::options::Options;

/// Milliseconds on a monotonic clock chosen by the driver.
pub type Millis = u64;

/// Largest packet the client accepts from a broker.
const MAX_INCOMING_PACKET: usize = 16 * 1024 * 1024;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never asked to connect.
    Idle,
    /// The driver should open the transport ([`Client::poll_open`] says so once).
    OpenRequested,
    /// The driver is opening the transport.
    Opening,
    /// CONNECT sent, waiting for CONNACK.
    Connecting,
    Connected,
    /// The connection was lost; a new attempt is due at the given time.
    WaitingToReconnect {
        at: Millis,
    },
    /// The application disconnected, the broker refused us, or reconnecting is off.
    Closed,
}

/// What the client tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        session_present: bool,
    },
    /// The broker answered CONNECT with a refusal (an MQTT 5.0 reason code, see
    /// [`protocol::reason::describe`]); the client stays closed.
    Refused {
        code: u8,
    },
    /// The connection ended without the application asking. `reconnect_in` is the delay
    /// before the next attempt, if there is one.
    ConnectionLost {
        reason: String,
        reconnect_in: Option<Millis>,
    },
    /// The application's [`Client::disconnect`] completed.
    Closed,
    Message(Box<Publish>),
    /// A QoS 1 or 2 publish of ours is acknowledged end to end. `reason` is 0 on success;
    /// a 5.0 broker may refuse it (0x80 and above) or say nobody subscribed (0x10).
    PublishComplete {
        pkid: u16,
        reason: u8,
    },
    /// A QoS 1 or 2 publish of ours was abandoned: a clean session reconnect discards it.
    PublishAbandoned {
        pkid: u16,
    },
    /// Each filter with its SUBACK code: the granted QoS (0–2) or a failure (0x80+).
    Subscribed {
        pkid: u16,
        results: Vec<(String, u8)>,
    },
    Unsubscribed {
        pkid: u16,
        filters: Vec<String>,
    },
}

/// Why an application request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("not connected")]
    NotConnected,
    #[error("invalid topic: {0}")]
    InvalidTopic(TopicError),
    #[error("invalid topic filter {0:?}: {1}")]
    InvalidFilter(String, TopicError),
    #[error("no topic filters given")]
    NoFilters,
    #[error("every packet identifier is in use")]
    NoPacketIdentifier,
    #[error("the packet ({0} bytes) exceeds the broker's maximum packet size ({1} bytes)")]
    TooLarge(usize, u32),
    #[error("{0}")]
    Encode(#[from] EncodeError),
}

#[derive(Debug, Clone)]
enum OutStage {
    /// Waiting for room in the broker's receive maximum (5.0 flow control).
    Waiting(Box<Publish>),
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published(Box<Publish>),
    /// PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// The client state machine. See the module documentation.
#[derive(Debug)]
pub struct Client {
    options: Options,
    state: State,
    decoder: Decoder,
    inbuf: BytesMut,
    out: BytesMut,
    events: VecDeque<Event>,
    /// The transport should be closed (set once, taken by [`Client::poll_close`]).
    close_requested: bool,
    /// Whether the close in progress was asked for by the application.
    closing_by_request: bool,
    /// Why the client itself gave up on the connection, if it did.
    failure: Option<String>,
    next_pkid: u16,
    /// Our QoS 1/2 publishes in flight, by packet identifier, in send order.
    outgoing: BTreeMap<u16, (u64, OutStage)>,
    send_seq: u64,
    /// Incoming QoS 2 identifiers delivered to the application, awaiting PUBREL.
    incoming_qos2: HashSet<u16>,
    /// Filters the application wants, with their options: re-subscribed after a
    /// reconnect that found no session.
    subscriptions: BTreeMap<String, SubscribeFilter>,
    /// Topic aliases the broker defined towards us (5.0), reset on every connection.
    inbound_aliases: HashMap<u16, String>,
    /// The broker's limits from its CONNACK (5.0; unlimited for 3.1.1).
    server_receive_maximum: u16,
    server_max_packet_size: u32,
    /// Keep-alive in force: ours, or the broker's override (5.0 server keep alive).
    keep_alive: u16,
    pending_subscribe: HashMap<u16, Vec<SubscribeFilter>>,
    pending_unsubscribe: HashMap<u16, Vec<String>>,
    connect_sent_at: Millis,
    last_sent: Millis,
    ping_sent_at: Option<Millis>,
    reconnect_attempt: u32,
}

impl Client {
    pub fn new(options: Options) -> Client {
        let mut decoder = Decoder::new(MAX_INCOMING_PACKET);
        decoder.set_version(options.version);
        Client {
            options,
            state: State::Idle,
            decoder,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            events: VecDeque::new(),
            close_requested: false,
            closing_by_request: false,
            failure: None,
            next_pkid: 1,
            outgoing: BTreeMap::new(),
            send_seq: 0,
            incoming_qos2: HashSet::new(),
            subscriptions: BTreeMap::new(),
            inbound_aliases: HashMap::new(),
            server_receive_maximum: u16::MAX,
            server_max_packet_size: u32::MAX,
            keep_alive: 0,
            pending_subscribe: HashMap::new(),
            pending_unsubscribe: HashMap::new(),
            connect_sent_at: 0,
            last_sent: 0,
            ping_sent_at: None,
            reconnect_attempt: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Filters the client is (or will be, after a reconnect) subscribed to.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, QoS)> {
        self.subscriptions.iter().map(|(f, s)| (f.as_str(), s.qos))
    }

    /// The client identifier in use: ours, or the one the broker assigned (5.0).
    pub fn client_id(&self) -> &str {
        &self.options.client_id
    }

    /// Our publishes not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.outgoing.len()
    }

    // ---- application requests ----

    /// Asks for a connection: the driver will see [`Client::poll_open`] return true.
    pub fn connect(&mut self) {
        if matches!(
            self.state,
            State::Idle | State::Closed | State::WaitingToReconnect { .. }
        ) {
            self.state = State::OpenRequested;
            self.closing_by_request = false;
        }
    }

    /// Sends DISCONNECT (if connected) and closes; no reconnect follows.
    pub fn disconnect(&mut self) {
        match self.state {
            State::Connected => {
                self.write(&Packet::Disconnect(Disconnect::new(
                    reason::NORMAL_DISCONNECTION,
                )));
                self.request_close(true);
            }
            State::Connecting | State::Opening => self.request_close(true),
            State::OpenRequested | State::WaitingToReconnect { .. } | State::Idle => {
                self.state = State::Closed;
                self.events.push_back(Event::Closed);
            }
            State::Closed => {}
        }
    }

    /// Publishes a message. Returns the packet identifier for QoS 1/2 (completion is
    /// reported by [`Event::PublishComplete`]).
    pub fn publish(
        &mut self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<Option<u16>, ClientError> {
        self.publish_with(topic, payload, qos, retain, Properties::default())
    }

    /// Publishes with 5.0 properties (payload format, message expiry, content type,
    /// response topic, correlation data, user properties); ignored for 3.1.1.
    pub fn publish_with(
        &mut self,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        mut properties: Properties,
    ) -> Result<Option<u16>, ClientError> {
        validate_topic_name(topic).map_err(ClientError::InvalidTopic)?;
        if self.state != State::Connected {
            return Err(ClientError::NotConnected);
        }
        // Per-hop properties are the client's own business, never the application's.
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.allocate_pkid()?
        };
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: topic.to_owned(),
            pkid,
            payload,
            properties,
        };
        let size = publish_size(&publish.borrowed(), self.options.version);
        if size > self.server_max_packet_size as usize {
            return Err(ClientError::TooLarge(size, self.server_max_packet_size));
        }
        if qos == QoS::AtMostOnce {
            encode_publish(publish.borrowed(), self.options.version, &mut self.out)?;
            return Ok(None);
        }
        self.send_seq += 1;
        self.outgoing
            .insert(pkid, (self.send_seq, OutStage::Waiting(Box::new(publish))));
        self.send_waiting();
        Ok(Some(pkid))
    }

    /// Sends waiting publishes while the broker's receive maximum allows.
    fn send_waiting(&mut self) {
        if self.state != State::Connected {
            return;
        }
        let mut in_window = self
            .outgoing
            .values()
            .filter(|(_, stage)| !matches!(stage, OutStage::Waiting(_)))
            .count();
        let mut waiting: Vec<(u64, u16)> = self
            .outgoing
            .iter()
            .filter(|(_, (_, stage))| matches!(stage, OutStage::Waiting(_)))
            .map(|(pkid, (seq, _))| (*seq, *pkid))
            .collect();
        waiting.sort();
        for (_, pkid) in waiting {
            if in_window >= usize::from(self.server_receive_maximum) {
                break;
            }
            let Some((_, stage)) = self.outgoing.get_mut(&pkid) else {
                continue;
            };
            let OutStage::Waiting(publish) = std::mem::replace(stage, OutStage::Released) else {
                continue;
            };
            let result = encode_publish(publish.borrowed(), self.options.version, &mut self.out);
            debug_assert!(result.is_ok(), "{result:?}");
            *stage = OutStage::Published(publish);
            in_window += 1;
        }
    }

    /// Subscribes to one or more filters. Remembered for resubscribing after a reconnect.
    pub fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Result<u16, ClientError> {
        let filters = filters
            .iter()
            .map(|(filter, qos)| SubscribeFilter::new(*filter, *qos))
            .collect();
        self.subscribe_with(filters, None)
    }

    /// Subscribes with 5.0 options (no local, retain as published, retain handling) and
    /// an optional subscription identifier; the options are ignored for 3.1.1.
    pub fn subscribe_with(
        &mut self,
        filters: Vec<SubscribeFilter>,
        subscription_id: Option<u32>,
    ) -> Result<u16, ClientError> {
        if filters.is_empty() {
            return Err(ClientError::NoFilters);
        }
        for f in &filters {
            validate_topic_filter(&f.filter)
                .map_err(|e| ClientError::InvalidFilter(f.filter.clone(), e))?;
        }
        if self.state != State::Connected {
            return Err(ClientError::NotConnected);
        }
        for f in &filters {
            self.subscriptions.insert(f.filter.clone(), f.clone());
        }
        self.send_subscribe(filters, subscription_id)
    }

    /// Unsubscribes from one or more filters.
    pub fn unsubscribe(&mut self, filters: &[&str]) -> Result<u16, ClientError> {
        if filters.is_empty() {
            return Err(ClientError::NoFilters);
        }
        for filter in filters {
            validate_topic_filter(filter)
                .map_err(|e| ClientError::InvalidFilter((*filter).to_owned(), e))?;
        }
        if self.state != State::Connected {
            return Err(ClientError::NotConnected);
        }
        let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
        for filter in &filters {
            self.subscriptions.remove(filter);
        }
        let pkid = self.allocate_pkid()?;
        self.write(&Packet::Unsubscribe(Unsubscribe {
            pkid,
            filters: filters.clone(),
            properties: Properties::default(),
        }));
        self.pending_unsubscribe.insert(pkid, filters);
        Ok(pkid)
    }

    // ---- driver inputs ----

    /// True once when the driver should open the transport.
    pub fn poll_open(&mut self, now: Millis) -> bool {
        match self.state {
            State::OpenRequested => {}
            State::WaitingToReconnect { at } if now >= at => {}
            _ => return false,
        }
        self.state = State::Opening;
        true
    }

    /// The transport is open: send CONNECT.
    pub fn handle_transport_open(&mut self, now: Millis) {
        if self.state != State::Opening {
            return;
        }
        let o = &self.options;
        let connect = Connect {
            version: o.version,
            client_id: o.client_id.clone(),
            clean_session: o.clean_session,
            keep_alive: o.keep_alive,
            will: o.will.as_ref().map(|w| Will {
                topic: w.topic.clone(),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                properties: w.properties.clone(),
            }),
            username: o.username.clone(),
            password: o.password.clone(),
            properties: Properties {
                session_expiry_interval: (o.session_expiry > 0).then_some(o.session_expiry),
                topic_alias_maximum: (o.topic_alias_maximum > 0).then_some(o.topic_alias_maximum),
                user_properties: o.user_properties.clone(),
                ..Properties::default()
            },
        };
        self.keep_alive = o.keep_alive;
        self.inbound_aliases.clear();
        self.server_receive_maximum = u16::MAX;
        self.server_max_packet_size = u32::MAX;
        self.inbuf.clear();
        self.decoder = Decoder::new(MAX_INCOMING_PACKET);
        self.decoder.set_version(self.options.version);
        self.out.clear();
        self.write(&Packet::Connect(Box::new(connect)));
        self.state = State::Connecting;
        self.connect_sent_at = now;
        self.last_sent = now;
        self.ping_sent_at = None;
    }

    /// Bytes arrived from the broker.
    pub fn handle_input(&mut self, now: Millis, bytes: &[u8]) {
        if !matches!(self.state, State::Connecting | State::Connected) {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        loop {
            match self.decoder.decode(&mut self.inbuf) {
                Ok(Some(packet)) => {
                    if let Err(reason) = self.handle_packet(now, packet) {
                        self.fail(reason);
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.fail(format!("malformed data from the broker: {e}"));
                    return;
                }
            }
        }
    }

    /// The transport closed (by either side, or failed to open).
    pub fn handle_transport_closed(&mut self, now: Millis, reason: &str) {
        self.close_requested = false;
        self.ping_sent_at = None;
        let reason = self.failure.take().unwrap_or_else(|| reason.to_owned());
        if self.closing_by_request || self.state == State::Closed {
            if self.state != State::Closed {
                self.state = State::Closed;
                self.events.push_back(Event::Closed);
            }
            self.closing_by_request = false;
            return;
        }
        let reconnect_in = self.options.reconnect.then(|| self.backoff());
        self.state = match reconnect_in {
            Some(delay) => {
                self.reconnect_attempt += 1;
                State::WaitingToReconnect { at: now + delay }
            }
            None => State::Closed,
        };
        self.events.push_back(Event::ConnectionLost {
            reason,
            reconnect_in,
        });
    }

    /// Time passed: send a PINGREQ when due, give up on a silent broker.
    pub fn handle_timeout(&mut self, now: Millis) {
        match self.state {
            State::Connecting if now >= self.connect_sent_at + self.options.response_timeout_ms => {
                self.fail("no CONNACK from the broker".into());
            }
            State::Connected if self.keep_alive > 0 => {
                if let Some(sent) = self.ping_sent_at {
                    if now >= sent + self.options.response_timeout_ms {
                        self.fail("no PINGRESP from the broker".into());
                    }
                } else if now >= self.last_sent + self.keep_alive_ms() {
                    self.write(&Packet::PingReq);
                    self.ping_sent_at = Some(now);
                    self.last_sent = now;
                }
            }
            _ => {}
        }
    }

    // ---- driver outputs ----

    /// Bytes to send now, if any. Everything written since the last call comes as one
    /// buffer, so the driver sends one WebSocket frame per turn.
    pub fn poll_transmit(&mut self, now: Millis) -> Option<Bytes> {
        if self.out.is_empty() {
            return None;
        }
        self.last_sent = now;
        Some(self.out.split().freeze())
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True once when the driver should close the transport (then call
    /// [`Client::handle_transport_closed`]).
    pub fn poll_close(&mut self) -> bool {
        std::mem::take(&mut self.close_requested)
    }

    /// When [`Client::handle_timeout`] (or [`Client::poll_open`]) next has work to do.
    pub fn next_timeout(&self) -> Option<Millis> {
        match self.state {
            State::Connecting => Some(self.connect_sent_at + self.options.response_timeout_ms),
            State::Connected if self.keep_alive > 0 => Some(match self.ping_sent_at {
                Some(sent) => sent + self.options.response_timeout_ms,
                None => self.last_sent + self.keep_alive_ms(),
            }),
            State::WaitingToReconnect { at } => Some(at),
            _ => None,
        }
    }

    // ---- internals ----

    fn keep_alive_ms(&self) -> Millis {
        u64::from(self.keep_alive) * 1000
    }

    /// Exponential back-off: min, 2×min, 4×min … capped at max.
    fn backoff(&self) -> Millis {
        let factor = 1u64 << self.reconnect_attempt.min(16);
        (self.options.reconnect_min_ms.saturating_mul(factor)).min(self.options.reconnect_max_ms)
    }

    fn request_close(&mut self, by_request: bool) {
        self.close_requested = true;
        self.closing_by_request = by_request;
    }

    /// Gives up on the current connection; the driver closes it and reports back, and
    /// `reason` is what [`Event::ConnectionLost`] then says.
    fn fail(&mut self, reason: String) {
        self.request_close(false);
        self.failure = Some(reason);
    }

    fn write(&mut self, packet: &Packet) {
        let result = encode(packet, self.options.version, &mut self.out);
        debug_assert!(result.is_ok(), "{result:?}");
    }

    fn allocate_pkid(&mut self) -> Result<u16, ClientError> {
        for _ in 0..u16::MAX {
            let pkid = self.next_pkid;
            self.next_pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            if !self.outgoing.contains_key(&pkid)
                && !self.pending_subscribe.contains_key(&pkid)
                && !self.pending_unsubscribe.contains_key(&pkid)
            {
                return Ok(pkid);
            }
        }
        Err(ClientError::NoPacketIdentifier)
    }

    fn send_subscribe(
        &mut self,
        filters: Vec<SubscribeFilter>,
        subscription_id: Option<u32>,
    ) -> Result<u16, ClientError> {
        let pkid = self.allocate_pkid()?;
        self.write(&Packet::Subscribe(Subscribe {
            pkid,
            filters: filters.clone(),
            properties: Properties {
                subscription_identifiers: subscription_id.into_iter().collect(),
                ..Properties::default()
            },
        }));
        self.pending_subscribe.insert(pkid, filters);
        Ok(pkid)
    }

    fn handle_packet(&mut self, now: Millis, packet: Packet) -> Result<(), String> {
        if self.state == State::Connecting {
            let Packet::ConnAck(ack) = packet else {
                return Err(format!("expected CONNACK, got {}", packet.name()));
            };
            self.on_connack(now, ack);
            return Ok(());
        }
        match packet {
            Packet::Publish(mut publish) => {
                self.resolve_alias(&mut publish)?;
                self.on_publish(publish);
            }
            Packet::PubRel(Ack { pkid, .. }) => {
                self.incoming_qos2.remove(&pkid);
                self.write(&Packet::PubComp(Ack::new(pkid)));
            }
            Packet::PubAck(Ack { pkid, reason, .. }) => {
                if let Some((_, OutStage::Published(p))) = self.outgoing.get(&pkid) {
                    if p.qos == QoS::AtLeastOnce {
                        self.outgoing.remove(&pkid);
                        self.events
                            .push_back(Event::PublishComplete { pkid, reason });
                        self.send_waiting();
                    }
                }
            }
            Packet::PubRec(Ack { pkid, reason, .. }) => {
                if let Some((_, stage)) = self.outgoing.get_mut(&pkid) {
                    if reason >= reason::UNSPECIFIED_ERROR {
                        // A refusing PUBREC ends the exchange (MQTT 5.0 §4.3.3).
                        self.outgoing.remove(&pkid);
                        self.events
                            .push_back(Event::PublishComplete { pkid, reason });
                        self.send_waiting();
                    } else {
                        *stage = OutStage::Released;
                        self.write(&Packet::PubRel(Ack::new(pkid)));
                    }
                }
            }
            Packet::PubComp(Ack { pkid, reason, .. }) => {
                if let Some((_, OutStage::Released)) = self.outgoing.get(&pkid) {
                    self.outgoing.remove(&pkid);
                    self.events
                        .push_back(Event::PublishComplete { pkid, reason });
                    self.send_waiting();
                }
            }
            Packet::Disconnect(disconnect) => {
                let mut reason = format!(
                    "the broker disconnected: {} ({:#04x})",
                    reason::describe(disconnect.reason),
                    disconnect.reason
                );
                if let Some(text) = disconnect.properties.reason_string {
                    reason.push_str(": ");
                    reason.push_str(&text);
                }
                if disconnect.reason == reason::SESSION_TAKEN_OVER {
                    // Another client uses our id: reconnecting would only fight over it.
                    self.options.reconnect = false;
                }
                return Err(reason);
            }
            Packet::SubAck(ack) => {
                let Some(filters) = self.pending_subscribe.remove(&ack.pkid) else {
                    return Ok(());
                };
                let results: Vec<(String, u8)> = filters
                    .into_iter()
                    .zip(ack.return_codes)
                    .map(|(f, code)| (f.filter, code))
                    .collect();
                for (filter, code) in &results {
                    if *code >= reason::UNSPECIFIED_ERROR {
                        self.subscriptions.remove(filter);
                    }
                }
                self.events.push_back(Event::Subscribed {
                    pkid: ack.pkid,
                    results,
                });
            }
            Packet::UnsubAck(ack) => {
                if let Some(filters) = self.pending_unsubscribe.remove(&ack.pkid) {
                    self.events.push_back(Event::Unsubscribed {
                        pkid: ack.pkid,
                        filters,
                    });
                }
            }
            Packet::PingResp => self.ping_sent_at = None,
            other => return Err(format!("unexpected {} from the broker", other.name())),
        }
        Ok(())
    }

    fn on_publish(&mut self, publish: Publish) {
        match publish.qos {
            QoS::AtMostOnce => self.events.push_back(Event::Message(Box::new(publish))),
            QoS::AtLeastOnce => {
                self.write(&Packet::PubAck(Ack::new(publish.pkid)));
                self.events.push_back(Event::Message(Box::new(publish)));
            }
            QoS::ExactlyOnce => {
                self.write(&Packet::PubRec(Ack::new(publish.pkid)));
                // Delivered once; a duplicate before PUBREL is only acknowledged.
                if self.incoming_qos2.insert(publish.pkid) {
                    self.events.push_back(Event::Message(Box::new(publish)));
                }
            }
        }
    }

    /// Resolves a topic alias the broker used (5.0): defined by topic + alias, used by
    /// alias alone. The alias is removed so the application sees plain messages.
    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<(), String> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        if alias == 0 || alias > self.options.topic_alias_maximum {
            return Err(format!(
                "the broker used topic alias {alias} beyond our maximum"
            ));
        }
        if publish.topic.is_empty() {
            publish.topic = self
                .inbound_aliases
                .get(&alias)
                .cloned()
                .ok_or_else(|| format!("the broker used undefined topic alias {alias}"))?;
        } else {
            self.inbound_aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    fn on_connack(&mut self, _now: Millis, ack: ConnAck) {
        if ack.code != reason::SUCCESS {
            self.events.push_back(Event::Refused { code: ack.code });
            self.state = State::Closed;
            self.request_close(true);
            return;
        }
        self.state = State::Connected;
        self.reconnect_attempt = 0;
        let p = &ack.properties;
        if let Some(max) = p.receive_maximum {
            self.server_receive_maximum = max;
        }
        if let Some(max) = p.maximum_packet_size {
            self.server_max_packet_size = max;
        }
        if let Some(keep_alive) = p.server_keep_alive {
            self.keep_alive = keep_alive;
        }
        if let Some(id) = &p.assigned_client_identifier {
            // Reconnects must use it to find the session again (MQTT-3.2.2-16).
            self.options.client_id = id.clone();
        }
        let session_present = ack.session_present;
        if !session_present {
            // A new session on the broker: what the old one was doing is gone there, and a
            // client without a session discards its own session state too (MQTT-3.1.2-6).
            self.incoming_qos2.clear();
            self.pending_subscribe.clear();
            self.pending_unsubscribe.clear();
            let abandoned: Vec<u16> = self
                .outgoing
                .iter()
                .filter(|(_, (_, stage))| !matches!(stage, OutStage::Waiting(_)))
                .map(|(pkid, _)| *pkid)
                .collect();
            for pkid in abandoned {
                self.outgoing.remove(&pkid);
                self.events.push_back(Event::PublishAbandoned { pkid });
            }
        } else {
            // MQTT-4.4.0-1: re-send unacknowledged PUBLISH (with DUP) and PUBREL, in order.
            let mut resend: Vec<_> = self.outgoing.iter().collect();
            resend.sort_by_key(|(_, (seq, _))| *seq);
            let mut out = BytesMut::new();
            for (pkid, (_, stage)) in resend {
                let version = self.options.version;
                let result = match stage {
                    OutStage::Published(p) => encode_publish(
                        PublishRef {
                            dup: true,
                            ..p.borrowed()
                        },
                        version,
                        &mut out,
                    ),
                    OutStage::Released => {
                        encode(&Packet::PubRel(Ack::new(*pkid)), version, &mut out)
                    }
                    OutStage::Waiting(_) => continue,
                };
                debug_assert!(result.is_ok());
            }
            self.out.extend_from_slice(&out);
        }
        if session_present {
            let subscribes: Vec<_> = self.pending_subscribe.drain().collect();
            for (_, filters) in subscribes {
                let _ = self.send_subscribe(filters, None);
            }
        } else if !self.subscriptions.is_empty() {
            let filters = self.subscriptions.values().cloned().collect();
            let _ = self.send_subscribe(filters, None);
        }
        self.send_waiting();
        self.events.push_back(Event::Connected {
            session_present: ack.session_present,
        });
    }
}
