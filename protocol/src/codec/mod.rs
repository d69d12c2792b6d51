//! The one adapter over the wire codec.
//!
//! Everything in the workspace that reads or writes MQTT bytes goes through [`Decoder`],
//! [`encode`] and [`encode_publish`]. Underneath, `mqttbytes-ng` (v4 module) reads and
//! writes most packets; this module owns what the codec gets wrong or does not do:
//!
//! * framing and the fixed-header flag rules ([`frame`]): the codec ignores reserved
//!   flags, and we must refuse an oversized packet before buffering its body;
//! * CONNECT ([`connect`]): version detection, MQTT 3.1 (`MQIsdp`), binary passwords,
//!   the connect-flag rules;
//! * SUBSCRIBE: the codec ignores the reserved bits of the subscription options
//!   (MQTT-3.8.3-4) and accepts packet identifier 0;
//! * UNSUBSCRIBE: the codec accepts one with no filters (MQTT-3.10.3-2);
//! * U+0000 in any string (MQTT-1.5.3-2), exact remaining lengths of the fixed-size packets;
//! * PUBLISH encoding, on the broker's hot path: written from borrowed parts so fan-out to
//!   many subscribers allocates nothing per subscriber.
//!
//! Each of these has a regression test in `tests.rs`.

mod connect;
pub mod frame;
mod packet;
#[cfg(test)]
mod tests;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqttbytes_ng::v4 as codec;

pub use connect::detect_version;
pub use packet::*;

use frame::{parse_fixed_header, remaining_length_len, write_remaining_length, FixedHeader};

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
}

impl DecodeError {
    pub(crate) fn malformed(packet: &'static str, reason: impl Into<String>) -> DecodeError {
        DecodeError::Malformed {
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
    max_packet_size: usize,
    version: Option<ProtocolVersion>,
}

impl Decoder {
    /// A decoder that refuses packets larger than `max_packet_size` bytes (whole packet,
    /// fixed header included).
    pub fn new(max_packet_size: usize) -> Decoder {
        Decoder {
            max_packet_size,
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
        let Some(header) = parse_fixed_header(buf, self.max_packet_size)? else {
            return Ok(None);
        };
        if buf.len() < header.frame_len() {
            return Ok(None);
        }
        let frame = buf.split_to(header.frame_len()).freeze();
        let packet = read_packet(header, frame)?;
        if let Packet::Connect(connect) = &packet {
            self.version = Some(connect.version);
        }
        Ok(Some(packet))
    }

    /// Bytes still missing for the packet at the front of `buf`, when its fixed header is
    /// complete: lets a reader grow its buffer once instead of in small steps.
    pub fn missing_bytes(&self, buf: &[u8]) -> usize {
        match parse_fixed_header(buf, self.max_packet_size) {
            Ok(Some(header)) => header.frame_len().saturating_sub(buf.len()),
            _ => 0,
        }
    }
}

fn read_packet(header: FixedHeader, frame: Bytes) -> Result<Packet, DecodeError> {
    let name = frame::type_name(header.packet_type());
    let body = frame.slice(header.header_len..);
    let exact_len = |expected: usize| {
        if header.remaining_len == expected {
            Ok(())
        } else {
            Err(DecodeError::malformed(
                name,
                format!(
                    "remaining length {} where {expected} is required",
                    header.remaining_len
                ),
            ))
        }
    };
    let codec_header =
        mqttbytes_ng::FixedHeader::new(header.byte1, header.header_len - 1, header.remaining_len);
    let codec_err = |e: mqttbytes_ng::Error| DecodeError::malformed(name, e.to_string());

    Ok(match header.packet_type() {
        1 => Packet::Connect(connect::read(body)?),
        2 => {
            exact_len(2)?;
            if body[0] & 0xFE != 0 {
                return Err(DecodeError::malformed(
                    name,
                    "reserved acknowledge flags set",
                ));
            }
            let ack = codec::ConnAck::read(codec_header, frame).map_err(codec_err)?;
            Packet::ConnAck(ConnAck {
                session_present: ack.session_present,
                code: ConnectReturnCode::from_u8(ack.code as u8)
                    .ok_or_else(|| DecodeError::malformed(name, "unknown return code"))?,
            })
        }
        3 => Packet::Publish(read_publish(codec_header, frame)?),
        4 => {
            exact_len(2)?;
            Packet::PubAck(
                codec::PubAck::read(codec_header, frame)
                    .map_err(codec_err)?
                    .pkid,
            )
        }
        5 => {
            exact_len(2)?;
            Packet::PubRec(
                codec::PubRec::read(codec_header, frame)
                    .map_err(codec_err)?
                    .pkid,
            )
        }
        6 => {
            exact_len(2)?;
            Packet::PubRel(
                codec::PubRel::read(codec_header, frame)
                    .map_err(codec_err)?
                    .pkid,
            )
        }
        7 => {
            exact_len(2)?;
            Packet::PubComp(
                codec::PubComp::read(codec_header, frame)
                    .map_err(codec_err)?
                    .pkid,
            )
        }
        8 => Packet::Subscribe(read_subscribe(body)?),
        9 => {
            let ack = codec::SubAck::read(codec_header, frame).map_err(codec_err)?;
            Packet::SubAck(SubAck {
                pkid: ack.pkid,
                return_codes: ack
                    .return_codes
                    .into_iter()
                    .map(|code| match code {
                        codec::SubscribeReasonCode::Success(qos) => {
                            SubscribeReturnCode::Success(from_codec_qos(qos))
                        }
                        codec::SubscribeReasonCode::Failure => SubscribeReturnCode::Failure,
                    })
                    .collect(),
            })
        }
        10 => {
            let unsubscribe = codec::Unsubscribe::read(codec_header, frame).map_err(codec_err)?;
            non_zero_pkid(name, unsubscribe.pkid)?;
            if unsubscribe.topics.is_empty() {
                return Err(DecodeError::malformed(
                    name,
                    "no topic filters (MQTT-3.10.3-2)",
                ));
            }
            for filter in &unsubscribe.topics {
                no_null(name, "topic filter", filter)?;
            }
            Packet::Unsubscribe(Unsubscribe {
                pkid: unsubscribe.pkid,
                filters: unsubscribe.topics,
            })
        }
        11 => {
            exact_len(2)?;
            Packet::UnsubAck(
                codec::UnsubAck::read(codec_header, frame)
                    .map_err(codec_err)?
                    .pkid,
            )
        }
        12 => {
            exact_len(0)?;
            Packet::PingReq
        }
        13 => {
            exact_len(0)?;
            Packet::PingResp
        }
        14 => {
            exact_len(0)?;
            Packet::Disconnect
        }
        other => return Err(DecodeError::ReservedPacketType(other)),
    })
}

fn read_publish(header: mqttbytes_ng::FixedHeader, frame: Bytes) -> Result<Publish, DecodeError> {
    const NAME: &str = "PUBLISH";
    let publish = codec::Publish::read(header, frame).map_err(|e| match e {
        mqttbytes_ng::Error::InvalidQoS(_) => DecodeError::malformed(NAME, "QoS 3 (MQTT-3.3.1-4)"),
        mqttbytes_ng::Error::PacketIdZero => {
            DecodeError::malformed(NAME, "packet identifier 0 (MQTT-2.3.1-1)")
        }
        mqttbytes_ng::Error::TopicNotUtf8 => {
            DecodeError::malformed(NAME, "topic is not valid UTF-8 (MQTT-1.5.3-1)")
        }
        other => DecodeError::malformed(NAME, other.to_string()),
    })?;
    no_null(NAME, "topic", &publish.topic)?;
    Ok(Publish {
        dup: publish.dup,
        qos: from_codec_qos(publish.qos),
        retain: publish.retain,
        topic: publish.topic,
        pkid: publish.pkid,
        payload: publish.payload,
    })
}

/// SUBSCRIBE is read here: the codec drops the reserved option bits unchecked.
fn read_subscribe(mut body: Bytes) -> Result<Subscribe, DecodeError> {
    const NAME: &str = "SUBSCRIBE";
    if body.remaining() < 2 {
        return Err(DecodeError::malformed(NAME, "missing packet identifier"));
    }
    let pkid = body.get_u16();
    non_zero_pkid(NAME, pkid)?;
    let mut filters = Vec::new();
    while body.has_remaining() {
        let filter = read_string(&mut body, NAME, "topic filter")?;
        if !body.has_remaining() {
            return Err(DecodeError::malformed(NAME, "topic filter without options"));
        }
        let options = body.get_u8();
        if options & 0b1111_1100 != 0 {
            return Err(DecodeError::malformed(
                NAME,
                "reserved subscription option bits set (MQTT-3.8.3-4)",
            ));
        }
        let qos = QoS::from_u8(options)
            .ok_or_else(|| DecodeError::malformed(NAME, "requested QoS 3 (MQTT-3.8.3-4)"))?;
        filters.push(SubscribeFilter { filter, qos });
    }
    if filters.is_empty() {
        return Err(DecodeError::malformed(
            NAME,
            "no topic filters (MQTT-3.8.3-3)",
        ));
    }
    Ok(Subscribe { pkid, filters })
}

fn non_zero_pkid(packet: &'static str, pkid: u16) -> Result<(), DecodeError> {
    if pkid == 0 {
        Err(DecodeError::malformed(
            packet,
            "packet identifier 0 (MQTT-2.3.1-1)",
        ))
    } else {
        Ok(())
    }
}

fn no_null(packet: &'static str, field: &str, value: &str) -> Result<(), DecodeError> {
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

fn from_codec_qos(qos: mqttbytes_ng::QoS) -> QoS {
    match qos {
        mqttbytes_ng::QoS::AtMostOnce => QoS::AtMostOnce,
        mqttbytes_ng::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mqttbytes_ng::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn to_codec_qos(qos: QoS) -> mqttbytes_ng::QoS {
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
}

impl Publish {
    /// The borrowed view [`encode_publish`] takes.
    pub fn as_ref(&self) -> PublishRef<'_> {
        PublishRef {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            pkid: self.pkid,
            payload: &self.payload,
        }
    }
}

/// Bytes a PUBLISH takes on the wire, fixed header included.
pub fn publish_size(topic_len: usize, payload_len: usize, qos: QoS) -> usize {
    let body = 2 + topic_len + if qos == QoS::AtMostOnce { 0 } else { 2 } + payload_len;
    1 + remaining_length_len(body) + body
}

/// Appends a PUBLISH to `buf`.
pub fn encode_publish(publish: PublishRef<'_>, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let has_pkid = publish.qos != QoS::AtMostOnce;
    if has_pkid && publish.pkid == 0 {
        return Err(EncodeError::Invalid(
            "QoS 1/2 PUBLISH needs a packet identifier",
        ));
    }
    let topic_len = u16::try_from(publish.topic.len())
        .map_err(|_| EncodeError::FieldTooLong(publish.topic.len()))?;
    let body = 2 + publish.topic.len() + if has_pkid { 2 } else { 0 } + publish.payload.len();
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
    buf.put_slice(publish.payload);
    Ok(())
}

/// Appends `packet` to `buf`. PUBLISH and CONNECT are written here, the rest by the codec.
pub fn encode(packet: &Packet, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let result = match packet {
        Packet::Connect(connect) => return connect::write(connect, buf),
        Packet::Publish(publish) => return encode_publish(publish.as_ref(), buf),
        Packet::ConnAck(ack) => codec::ConnAck {
            session_present: ack.session_present,
            code: to_codec_return_code(ack.code),
        }
        .write(buf),
        Packet::PubAck(pkid) => codec::PubAck::new(*pkid).write(buf),
        Packet::PubRec(pkid) => codec::PubRec::new(*pkid).write(buf),
        Packet::PubRel(pkid) => codec::PubRel::new(*pkid).write(buf),
        Packet::PubComp(pkid) => codec::PubComp::new(*pkid).write(buf),
        Packet::Subscribe(subscribe) => {
            for filter in &subscribe.filters {
                if filter.filter.len() > u16::MAX as usize {
                    return Err(EncodeError::FieldTooLong(filter.filter.len()));
                }
            }
            codec::Subscribe {
                pkid: subscribe.pkid,
                filters: subscribe
                    .filters
                    .iter()
                    .map(|f| codec::SubscribeFilter::new(f.filter.clone(), to_codec_qos(f.qos)))
                    .collect(),
            }
            .write(buf)
        }
        Packet::SubAck(ack) => codec::SubAck::new(
            ack.pkid,
            ack.return_codes
                .iter()
                .map(|code| match code {
                    SubscribeReturnCode::Success(qos) => {
                        codec::SubscribeReasonCode::Success(to_codec_qos(*qos))
                    }
                    SubscribeReturnCode::Failure => codec::SubscribeReasonCode::Failure,
                })
                .collect(),
        )
        .write(buf),
        Packet::Unsubscribe(unsubscribe) => {
            for filter in &unsubscribe.filters {
                if filter.len() > u16::MAX as usize {
                    return Err(EncodeError::FieldTooLong(filter.len()));
                }
            }
            codec::Unsubscribe {
                pkid: unsubscribe.pkid,
                topics: unsubscribe.filters.clone(),
            }
            .write(buf)
        }
        Packet::UnsubAck(pkid) => codec::UnsubAck::new(*pkid).write(buf),
        Packet::PingReq => codec::PingReq.write(buf),
        Packet::PingResp => codec::PingResp.write(buf),
        Packet::Disconnect => codec::Disconnect.write(buf),
    };
    result
        .map(|_| ())
        .map_err(|e| EncodeError::Codec(e.to_string()))
}

fn to_codec_return_code(code: ConnectReturnCode) -> codec::ConnectReturnCode {
    match code {
        ConnectReturnCode::Accepted => codec::ConnectReturnCode::Success,
        ConnectReturnCode::UnacceptableProtocolVersion => {
            codec::ConnectReturnCode::RefusedProtocolVersion
        }
        ConnectReturnCode::IdentifierRejected => codec::ConnectReturnCode::BadClientId,
        ConnectReturnCode::ServerUnavailable => codec::ConnectReturnCode::ServiceUnavailable,
        ConnectReturnCode::BadUserNameOrPassword => codec::ConnectReturnCode::BadUserNamePassword,
        ConnectReturnCode::NotAuthorized => codec::ConnectReturnCode::NotAuthorized,
    }
}
