//! The one adapter over the wire codec.
//!
//! Everything in the workspace that reads or writes MQTT bytes goes through [`Decoder`],
//! [`encode`] and [`encode_publish`]. Underneath, for MQTT 3.1 and 3.1.1, `mqttbytes-ng`
//! (v4 module) reads and writes most packets; this module owns what the codec gets wrong
//! or does not do:
//!
//! * framing and the fixed-header flag rules ([`frame`]): the codec ignores reserved
//!   flags, and we must refuse an oversized packet before buffering its body;
//! * CONNECT (`connect`): version detection, MQTT 3.1 (`MQIsdp`), binary passwords,
//!   the connect-flag rules;
//! * SUBSCRIBE: the codec ignores the reserved bits of the subscription options
//!   (MQTT-3.8.3-4) and accepts packet identifier 0;
//! * UNSUBSCRIBE: the codec accepts one with no filters (MQTT-3.10.3-2);
//! * U+0000 in any string (MQTT-1.5.3-2), exact remaining lengths of the fixed-size packets;
//! * PUBLISH encoding, on the broker's hot path: written from borrowed parts so fan-out to
//!   many subscribers allocates nothing per subscriber;
//! * MQTT 5.0 (`v5`, `properties`): the codec's v5 module does not check that a PUBLISH
//!   topic is UTF-8, reads a property that overruns the property length on into the
//!   payload, accepts duplicate properties and forces passwords into strings, so 5.0 is
//!   read and written here; the tests check our bytes against the codec's reader.
//!
//! Each of these has a regression test in `tests.rs`.

mod connect;
pub mod frame;
mod packet;
pub mod properties;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v5;
mod v4;
mod v5;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use connect::detect_version;
pub use packet::*;
pub use properties::Properties;

use frame::{parse_fixed_header, remaining_length_len, write_remaining_length};

/// Why bytes from a peer could not be read as a packet. Every variant means the
/// connection must be closed; [`DecodeError::UnsupportedProtocolLevel`] first earns a
/// CONNACK with return code 0x01.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    #[error("invalid fixed-header flags {flags:#06b} for {packet}")]
    InvalidFlags { packet: &'static str, flags: u8 },
    #[error("not an MQTT connection: protocol name {0:?}")]
    InvalidProtocolName(String),
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    #[error("malformed {packet}: {reason}")]
    Malformed {
        packet: &'static str,
        reason: String,
    },
    /// Well-formed bytes that break a rule of the protocol (MQTT 5.0 answers these with
    /// reason 0x82 rather than 0x81).
    #[error("protocol error in {packet}: {reason}")]
    Protocol {
        packet: &'static str,
        reason: String,
    },
}

impl DecodeError {
    pub(crate) fn malformed(packet: &'static str, reason: impl Into<String>) -> DecodeError {
        DecodeError::Malformed {
            packet,
            reason: reason.into(),
        }
    }

    pub(crate) fn protocol(packet: &'static str, reason: impl Into<String>) -> DecodeError {
        DecodeError::Protocol {
            packet,
            reason: reason.into(),
        }
    }
}

/// Why a packet could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("a string or binary field of {0} bytes exceeds 65535 bytes")]
    FieldTooLong(usize),
    #[error("packet body of {0} bytes exceeds the largest remaining length")]
    PacketTooLong(usize),
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    #[error("invalid packet: {0}")]
    Invalid(&'static str),
    #[error("codec: {0}")]
    Codec(String),
}

/// Reads packets off a byte buffer, one connection's worth of state: the maximum packet
/// size and, once a CONNECT has been read, the protocol version.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// A u32 (MQTT's largest packet is 268,435,460 bytes): a decoder sits in every
    /// connection of a broker, and this keeps it at 8 bytes.
    max_packet_size: u32,
    version: Option<ProtocolVersion>,
}

impl Decoder {
    /// A decoder that refuses packets larger than `max_packet_size` bytes (whole packet,
    /// fixed header included).
    pub fn new(max_packet_size: usize) -> Decoder {
        Decoder {
            max_packet_size: u32::try_from(max_packet_size).unwrap_or(u32::MAX),
            version: None,
        }
    }

    /// The protocol version learned from CONNECT (or set by a client with [`Self::set_version`]).
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// A client knows its version before it reads anything.
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = Some(version);
    }

    /// Takes the next whole packet off the front of `buf`. `Ok(None)` means more bytes are
    /// needed (nothing is consumed). On error the stream is unusable and must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let v5 = self.version == Some(ProtocolVersion::V5);
        let Some(header) = parse_fixed_header(buf, self.max_packet_size as usize, self.version)?
        else {
            return Ok(None);
        };
        if buf.len() < header.frame_len() {
            return Ok(None);
        }
        let frame = buf.split_to(header.frame_len()).freeze();
        let packet = if v5 {
            v5::read_packet(header, frame)?
        } else {
            v4::read_packet(header, frame, self.version == Some(ProtocolVersion::V3_1))?
        };
        if let Packet::Connect(connect) = &packet {
            self.version = Some(connect.version);
        }
        Ok(Some(packet))
    }

    /// Bytes still missing for the packet at the front of `buf`, when its fixed header is
    /// complete: lets a reader grow its buffer once instead of in small steps.
    pub fn missing_bytes(&self, buf: &[u8]) -> usize {
        match parse_fixed_header(buf, self.max_packet_size as usize, self.version) {
            Ok(Some(header)) => header.frame_len().saturating_sub(buf.len()),
            _ => 0,
        }
    }
}

/// Packet identifiers are non-zero (MQTT-2.3.1-1; MQTT-2.2.1-3 in 5.0). A zero one is
/// well-formed bytes breaking a rule: a protocol error (5.0 reason 0x82), not malformed.
pub(crate) fn non_zero_pkid(packet: &'static str, pkid: u16) -> Result<(), DecodeError> {
    if pkid == 0 {
        Err(DecodeError::protocol(
            packet,
            "packet identifier 0 (MQTT-2.3.1-1, MQTT-2.2.1-3)",
        ))
    } else {
        Ok(())
    }
}

/// DUP must be 0 in a QoS 0 PUBLISH (MQTT-3.3.1-2): there is nothing to re-deliver.
/// Inline, the error out of line: this is on every PUBLISH's path.
#[inline]
pub(crate) fn no_dup_at_qos0(dup: bool, qos: QoS) -> Result<(), DecodeError> {
    if dup && qos == QoS::AtMostOnce {
        Err(dup_at_qos0())
    } else {
        Ok(())
    }
}

#[cold]
fn dup_at_qos0() -> DecodeError {
    DecodeError::malformed("PUBLISH", "DUP flag set on a QoS 0 message (MQTT-3.3.1-2)")
}

/// A topic filter is at least one character long (MQTT-4.7.3-1): an empty one in SUBSCRIBE
/// or UNSUBSCRIBE makes the packet malformed.
pub(crate) fn filter_not_empty(packet: &'static str, filter: &str) -> Result<(), DecodeError> {
    if filter.is_empty() {
        return Err(DecodeError::malformed(
            packet,
            "empty topic filter (MQTT-4.7.3-1)",
        ));
    }
    Ok(())
}

/// In 5.0, a shared subscription is part of the protocol, and one without a topic filter
/// after its share name (`$share/g`, `$share/g/`, MQTT-4.8.2-2) makes SUBSCRIBE and
/// UNSUBSCRIBE malformed, as an empty filter does. Other invalid filters are well-formed
/// and get a reason code. (In 3.1.1 such a filter is well-formed: the broker refuses a
/// SUBSCRIBE to it by closing, as any filter it cannot take, and answers an UNSUBSCRIBE.)
pub(crate) fn v5_filter_present(packet: &'static str, filter: &str) -> Result<(), DecodeError> {
    filter_not_empty(packet, filter)?;
    if crate::topic::shared_without_filter(filter) {
        return Err(DecodeError::malformed(
            packet,
            format!("shared subscription {filter:?} has no topic filter (MQTT-4.8.2-2)"),
        ));
    }
    Ok(())
}

pub(crate) fn no_null(packet: &'static str, field: &str, value: &str) -> Result<(), DecodeError> {
    if value.contains('\0') {
        Err(DecodeError::malformed(
            packet,
            format!("{field} contains U+0000 (MQTT-1.5.3-2)"),
        ))
    } else {
        Ok(())
    }
}

/// Reads a length-prefixed binary field.
pub(crate) fn read_binary(
    body: &mut Bytes,
    packet: &'static str,
    field: &str,
) -> Result<Bytes, DecodeError> {
    if body.remaining() < 2 {
        return Err(DecodeError::malformed(
            packet,
            format!("{field} is truncated"),
        ));
    }
    let len = body.get_u16() as usize;
    if body.remaining() < len {
        return Err(DecodeError::malformed(
            packet,
            format!("{field} runs past the end of the packet"),
        ));
    }
    Ok(body.split_to(len))
}

/// Reads a length-prefixed UTF-8 string that must not contain U+0000.
pub(crate) fn read_string(
    body: &mut Bytes,
    packet: &'static str,
    field: &str,
) -> Result<String, DecodeError> {
    let bytes = read_binary(body, packet, field)?;
    let string = String::from_utf8(bytes.to_vec()).map_err(|_| {
        DecodeError::malformed(packet, format!("{field} is not valid UTF-8 (MQTT-1.5.3-1)"))
    })?;
    no_null(packet, field, &string)?;
    Ok(string)
}

pub(crate) fn from_codec_qos(qos: mqttbytes_ng::QoS) -> QoS {
    match qos {
        mqttbytes_ng::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttbytes_ng::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttbytes_ng::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

pub(crate) fn to_codec_qos(qos: QoS) -> mqttbytes_ng::QoS {
    match qos {
        QoS::AtMostOnce => mqttbytes_ng::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttbytes_ng::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqttbytes_ng::QoS::ExactlyOnce,
    }
}

/// A PUBLISH made of borrowed parts, so the broker can write one stored message to many
/// subscribers without building a packet per subscriber.
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    /// Ignored for QoS 0; must be non-zero otherwise.
    pub pkid: u16,
    pub payload: &'a [u8],
    /// Written for 5.0 only.
    pub properties: &'a Properties,
}

impl Publish {
    /// The borrowed view [`encode_publish`] takes.
    pub fn borrowed(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            pkid: self.pkid,
            payload: &self.payload,
            properties: &self.properties,
        }
    }
}

/// Bytes a PUBLISH takes on the wire, fixed header included.
pub fn publish_size(publish: &PublishRef<'_>, version: ProtocolVersion) -> usize {
    let body = publish_body_len(publish, version);
    1 + remaining_length_len(body) + body
}

fn publish_body_len(publish: &PublishRef<'_>, version: ProtocolVersion) -> usize {
    let pkid = if publish.qos == QoS::AtMostOnce { 0 } else { 2 };
    let properties = if version == ProtocolVersion::V5 {
        publish.properties.encoded_len()
    } else {
        0
    };
    2 + publish.topic.len() + pkid + properties + publish.payload.len()
}

/// Appends a PUBLISH to `buf`, with properties for 5.0 and without for 3.1.x.
pub fn encode_publish(
    publish: PublishRef<'_>,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let has_pkid = publish.qos != QoS::AtMostOnce;
    if has_pkid && publish.pkid == 0 {
        return Err(EncodeError::Invalid(
            "QoS 1/2 PUBLISH needs a packet identifier",
        ));
    }
    let topic_len = u16::try_from(publish.topic.len())
        .map_err(|_| EncodeError::FieldTooLong(publish.topic.len()))?;
    let body = publish_body_len(&publish, version);
    if body > frame::MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLong(body));
    }
    buf.reserve(1 + remaining_length_len(body) + body);
    buf.put_u8(0x30 | (publish.dup as u8) << 3 | (publish.qos as u8) << 1 | publish.retain as u8);
    write_remaining_length(buf, body);
    buf.put_u16(topic_len);
    buf.put_slice(publish.topic.as_bytes());
    if has_pkid {
        buf.put_u16(publish.pkid);
    }
    if version == ProtocolVersion::V5 {
        publish.properties.write(buf)?;
    }
    buf.put_slice(publish.payload);
    Ok(())
}

/// Appends `packet` to `buf` as `version` writes it. 5.0-only parts (properties, reason
/// codes of acks) are dropped for 3.1.x; CONNECT is written for its own version.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(connect) => connect::write(connect, buf),
        Packet::Publish(publish) => encode_publish(publish.borrowed(), version, buf),
        other if version == ProtocolVersion::V5 => v5::write(other, buf),
        other => v4::write(other, buf),
    }
}
