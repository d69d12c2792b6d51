//! MQTT 3.1 and 3.1.1 packet bodies. Reading and writing go through `mqttbytes-ng`'s v4
//! module, with the checks it lacks done first (see the module documentation of `codec`).
//! 5.0-only fields (reason codes of acks, properties) are dropped on the way out.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mqttbytes_ng::v4 as codec;

use super::frame::{self, FixedHeader};
use super::properties::Properties;
use super::{
    connect, filter_not_empty, no_dup_at_qos0, non_zero_pkid, read_string, DecodeError, EncodeError,
};
use crate::codec::packet::*;
use crate::reason;

/// Reads a 3.1.1 packet, or a 3.1 one (`v31`: what 3.1 leaves unchecked is not checked).
pub(super) fn read_packet(
    header: FixedHeader,
    frame: Bytes,
    v31: bool,
) -> Result<Packet, DecodeError> {
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
        1 => Packet::Connect(Box::new(connect::read(header.flags(), body)?)),
        2 => {
            exact_len(2)?;
            if body[0] & 0xFE != 0 {
                return Err(DecodeError::malformed(
                    name,
                    "reserved acknowledge flags set",
                ));
            }
            let ack = codec::ConnAck::read(codec_header, frame).map_err(codec_err)?;
            let code = reason::connack_from_v3(ack.code as u8)
                .ok_or_else(|| DecodeError::malformed(name, "unknown return code"))?;
            Packet::ConnAck(ConnAck::new(code, ack.session_present))
        }
        3 => Packet::Publish(read_publish(codec_header, frame, v31)?),
        4 => {
            exact_len(2)?;
            let pkid = codec::PubAck::read(codec_header, frame)
                .map_err(codec_err)?
                .pkid;
            non_zero_pkid(name, pkid)?;
            Packet::PubAck(Ack::new(pkid))
        }
        5 => {
            exact_len(2)?;
            let pkid = codec::PubRec::read(codec_header, frame)
                .map_err(codec_err)?
                .pkid;
            non_zero_pkid(name, pkid)?;
            Packet::PubRec(Ack::new(pkid))
        }
        6 => {
            exact_len(2)?;
            let pkid = codec::PubRel::read(codec_header, frame)
                .map_err(codec_err)?
                .pkid;
            non_zero_pkid(name, pkid)?;
            Packet::PubRel(Ack::new(pkid))
        }
        7 => {
            exact_len(2)?;
            let pkid = codec::PubComp::read(codec_header, frame)
                .map_err(codec_err)?
                .pkid;
            non_zero_pkid(name, pkid)?;
            Packet::PubComp(Ack::new(pkid))
        }
        8 => Packet::Subscribe(read_subscribe(body)?),
        9 => {
            let ack = codec::SubAck::read(codec_header, frame).map_err(codec_err)?;
            non_zero_pkid(name, ack.pkid)?;
            Packet::SubAck(SubAck {
                pkid: ack.pkid,
                return_codes: ack
                    .return_codes
                    .into_iter()
                    .map(|code| match code {
                        codec::SubscribeReasonCode::Success(qos) => qos as u8,
                        codec::SubscribeReasonCode::Failure => reason::UNSPECIFIED_ERROR,
                    })
                    .collect(),
                properties: Properties::default(),
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
                super::no_null(name, "topic filter", filter)?;
                filter_not_empty(name, filter)?;
            }
            Packet::Unsubscribe(Unsubscribe {
                pkid: unsubscribe.pkid,
                filters: unsubscribe.topics,
                properties: Properties::default(),
            })
        }
        11 => {
            exact_len(2)?;
            let ack = codec::UnsubAck::read(codec_header, frame).map_err(codec_err)?;
            non_zero_pkid(name, ack.pkid)?;
            Packet::UnsubAck(UnsubAck {
                pkid: ack.pkid,
                reasons: Vec::new(),
                properties: Properties::default(),
            })
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
            Packet::Disconnect(Disconnect::new(reason::NORMAL_DISCONNECTION))
        }
        other => return Err(DecodeError::ReservedPacketType(other)),
    })
}

fn read_publish(
    header: mqttbytes_ng::FixedHeader,
    frame: Bytes,
    v31: bool,
) -> Result<Publish, DecodeError> {
    const NAME: &str = "PUBLISH";
    let publish = codec::Publish::read(header, frame).map_err(|e| match e {
        mqttbytes_ng::Error::InvalidQoS(_) => DecodeError::malformed(NAME, "QoS 3 (MQTT-3.3.1-4)"),
        mqttbytes_ng::Error::PacketIdZero => {
            DecodeError::protocol(NAME, "packet identifier 0 (MQTT-2.3.1-1)")
        }
        mqttbytes_ng::Error::TopicNotUtf8 => {
            DecodeError::malformed(NAME, "topic is not valid UTF-8 (MQTT-1.5.3-1)")
        }
        other => DecodeError::malformed(NAME, other.to_string()),
    })?;
    super::no_null(NAME, "topic", &publish.topic)?;
    let qos = super::from_codec_qos(publish.qos);
    // 3.1 only says DUP "applies to messages where the value of QoS is greater than zero".
    if !v31 {
        no_dup_at_qos0(publish.dup, qos)?;
    }
    Ok(Publish {
        dup: publish.dup,
        qos,
        retain: publish.retain,
        topic: publish.topic,
        pkid: publish.pkid,
        payload: publish.payload,
        properties: Properties::default(),
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
        filter_not_empty(NAME, &filter)?;
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
        filters.push(SubscribeFilter::new(filter, qos));
    }
    if filters.is_empty() {
        return Err(DecodeError::malformed(
            NAME,
            "no topic filters (MQTT-3.8.3-3)",
        ));
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties: Properties::default(),
    })
}

/// Writes a 3.1 / 3.1.1 packet (CONNECT and PUBLISH are handled by the caller).
pub(super) fn write(packet: &Packet, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let result = match packet {
        Packet::Connect(_) | Packet::Publish(_) => unreachable!("written by codec::encode"),
        Packet::ConnAck(ack) => {
            // Written by hand: the codec's return-code enum cannot carry every code we map.
            buf.put_slice(&[0x20, 0x02, ack.session_present as u8]);
            buf.put_u8(reason::connack_v3(ack.code));
            return Ok(());
        }
        Packet::PubAck(ack) => codec::PubAck::new(ack.pkid).write(buf),
        Packet::PubRec(ack) => codec::PubRec::new(ack.pkid).write(buf),
        Packet::PubRel(ack) => codec::PubRel::new(ack.pkid).write(buf),
        Packet::PubComp(ack) => codec::PubComp::new(ack.pkid).write(buf),
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
                    .map(|f| {
                        codec::SubscribeFilter::new(f.filter.clone(), super::to_codec_qos(f.qos))
                    })
                    .collect(),
            }
            .write(buf)
        }
        Packet::SubAck(ack) => codec::SubAck::new(
            ack.pkid,
            ack.return_codes
                .iter()
                .map(|&code| match QoS::from_u8(code) {
                    Some(qos) => codec::SubscribeReasonCode::Success(super::to_codec_qos(qos)),
                    None => codec::SubscribeReasonCode::Failure,
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
        Packet::UnsubAck(ack) => codec::UnsubAck::new(ack.pkid).write(buf),
        Packet::PingReq => codec::PingReq.write(buf),
        Packet::PingResp => codec::PingResp.write(buf),
        Packet::Disconnect(_) => codec::Disconnect.write(buf),
        Packet::Auth(_) => return Err(EncodeError::Unsupported("AUTH before MQTT 5.0")),
    };
    result
        .map(|_| ())
        .map_err(|e| EncodeError::Codec(e.to_string()))
}
