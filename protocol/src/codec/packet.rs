//! The packets as the rest of the workspace sees them: one version-neutral shape, whatever
//! codec sits underneath. Payloads are [`Bytes`] so one received payload can be shared by
//! every subscriber without a copy.

use std::fmt;

use bytes::Bytes;

use super::properties::Properties;

/// The MQTT protocol version a client announced in its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name string of CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V3_1 => "3.1",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        })
    }
}

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a wire value; `None` for 3, which is malformed everywhere.
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: ProtocolVersion,
    pub client_id: String,
    /// "Clean session" in 3.1.1, "clean start" in 5.0.
    pub clean_session: bool,
    /// Seconds; 0 turns the keep-alive mechanism off.
    pub keep_alive: u16,
    pub will: Option<Will>,
    /// `None` when the username flag is clear; `Some("")` is a present, empty username.
    pub username: Option<String>,
    /// Binary data, not a string: the spec allows any bytes here.
    pub password: Option<Bytes>,
    /// MQTT 5.0 only; empty for earlier versions.
    pub properties: Properties,
}

/// The Last Will a client leaves with the broker in its CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5.0 will properties (delay interval, expiry, content type …).
    pub properties: Properties,
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// An MQTT 5.0 reason code (see [`crate::reason`]); written to 3.1.1 clients as the
    /// nearest 3.1.1 return code.
    pub code: u8,
    pub properties: Properties,
}

impl ConnAck {
    pub fn new(code: u8, session_present: bool) -> ConnAck {
        ConnAck {
            session_present,
            code,
            properties: Properties::default(),
        }
    }
}

/// PUBLISH, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in MQTT 5.0 when a topic alias stands for it.
    pub topic: String,
    /// Packet identifier; 0 (absent) for QoS 0.
    pub pkid: u16,
    pub payload: Bytes,
    pub properties: Properties,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP: a packet identifier, and in 5.0 a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub pkid: u16,
    pub reason: u8,
    pub properties: Properties,
}

impl Ack {
    /// A successful acknowledgement.
    pub fn new(pkid: u16) -> Ack {
        Ack::with_reason(pkid, crate::reason::SUCCESS)
    }

    pub fn with_reason(pkid: u16, reason: u8) -> Ack {
        Ack {
            pkid,
            reason,
            properties: Properties::default(),
        }
    }
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    pub filter: String,
    pub qos: QoS,
    /// 5.0: do not send the subscriber its own messages.
    pub no_local: bool,
    /// 5.0: keep the RETAIN flag of the publish on delivery.
    pub retain_as_published: bool,
    /// 5.0: 0 send retained messages on subscribe, 1 only if the subscription is new,
    /// 2 never.
    pub retain_handling: u8,
}

impl SubscribeFilter {
    pub fn new(filter: impl Into<String>, qos: QoS) -> SubscribeFilter {
        SubscribeFilter {
            filter: filter.into(),
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }
}

/// SUBSCRIBE: one or more filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: u16,
    pub filters: Vec<SubscribeFilter>,
    pub properties: Properties,
}

/// SUBACK: one reason code per filter, in order: 0, 1, 2 for the granted QoS, 0x80 and
/// above for a failure (3.1.1 knows only 0x80).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pkid: u16,
    pub return_codes: Vec<u8>,
    pub properties: Properties,
}

/// UNSUBSCRIBE: one or more filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: u16,
    pub filters: Vec<String>,
    pub properties: Properties,
}

/// UNSUBACK; the reason codes (one per filter) exist in 5.0 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub pkid: u16,
    pub reasons: Vec<u8>,
    pub properties: Properties,
}

/// DISCONNECT; reason and properties exist in 5.0 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: u8,
    pub properties: Properties,
}

impl Disconnect {
    pub fn new(reason: u8) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }
}

/// AUTH (5.0 only): a step of enhanced authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: u8,
    pub properties: Properties,
}

/// Every MQTT control packet, whatever the version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Boxed: by far the largest packet, and one per connection.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The control packet type number (1 = CONNECT … 15 = AUTH).
    pub fn packet_type(&self) -> u8 {
        match self {
            Packet::Connect(_) => 1,
            Packet::ConnAck(_) => 2,
            Packet::Publish(_) => 3,
            Packet::PubAck(_) => 4,
            Packet::PubRec(_) => 5,
            Packet::PubRel(_) => 6,
            Packet::PubComp(_) => 7,
            Packet::Subscribe(_) => 8,
            Packet::SubAck(_) => 9,
            Packet::Unsubscribe(_) => 10,
            Packet::UnsubAck(_) => 11,
            Packet::PingReq => 12,
            Packet::PingResp => 13,
            Packet::Disconnect(_) => 14,
            Packet::Auth(_) => 15,
        }
    }

    /// The packet's name as the spec writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}
