//! An application message as the broker stores and forwards it.

use bytes::Bytes;
use protocol::QoS;

/// One published message, shared by every subscriber it goes to (behind an `Arc`), so
/// fan-out never copies the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// The QoS it was published with; each subscriber gets at most its granted QoS.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
}
