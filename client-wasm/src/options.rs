//! What a client is told before it connects.

use bytes::Bytes;
use protocol::{Properties, ProtocolVersion, QoS};

/// The Last Will the broker publishes if this client vanishes without a DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 will properties: will delay interval, message expiry, content type, response
    /// topic, correlation data, user properties.
    pub properties: Properties,
}

impl LastWill {
    pub fn new(topic: impl Into<String>, payload: Bytes, qos: QoS, retain: bool) -> LastWill {
        LastWill {
            topic: topic.into(),
            payload,
            qos,
            retain,
            properties: Properties::default(),
        }
    }
}

/// Connection options, as a connection profile in the web app holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub version: ProtocolVersion,
    /// Empty asks the broker to assign one (only with `clean_session`).
    pub client_id: String,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    pub clean_session: bool,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub will: Option<LastWill>,
    /// Reconnect automatically after an unexpected loss of the connection.
    pub reconnect: bool,
    /// First reconnect delay in milliseconds; it doubles up to `reconnect_max_ms`.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// How long to wait for CONNACK, or for a PINGRESP, before giving up on the connection.
    pub response_timeout_ms: u64,
    /// 5.0: how long the broker keeps the session after the connection ends, in seconds
    /// (0: it ends with the connection; `u32::MAX`: never).
    pub session_expiry: u32,
    /// 5.0: user properties sent with CONNECT.
    pub user_properties: Vec<(String, String)>,
    /// 5.0: how many topic aliases the broker may use towards us.
    pub topic_alias_maximum: u16,
}

impl Options {
    pub fn new(client_id: impl Into<String>) -> Options {
        Options {
            version: ProtocolVersion::V3_1_1,
            client_id: client_id.into(),
            keep_alive: 60,
            clean_session: true,
            username: None,
            password: None,
            will: None,
            reconnect: true,
            reconnect_min_ms: 1_000,
            reconnect_max_ms: 30_000,
            response_timeout_ms: 10_000,
            session_expiry: 0,
            user_properties: Vec::new(),
            topic_alias_maximum: 16,
        }
    }
}
