//! MQTT 5.0 packet bodies, read and written here (see `properties` for why the codec's
//! v5 module is not used on the wire; the tests cross-check against it).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::connect::{self, put_field};
use super::frame::{self, remaining_length_len, write_remaining_length, FixedHeader};
use super::properties::{Context, Properties};
use super::{
    no_dup_at_qos0, non_zero_pkid, read_string, v5_filter_present, DecodeError, EncodeError,
};
use crate::codec::packet::*;
use crate::reason;

pub(super) fn read_packet(header: FixedHeader, frame: Bytes) -> Result<Packet, DecodeError> {
    let name = frame::type_name(header.packet_type());
    let mut body = frame.slice(header.header_len..);
    let b = &mut body;
    let packet = match header.packet_type() {
        1 => {
            return Ok(Packet::Connect(Box::new(connect::read(
                header.flags(),
                body,
            )?)))
        }
        2 => {
            let flags = u8_field(b, name)?;
            if flags & 0xFE != 0 {
                return Err(DecodeError::malformed(
                    name,
                    "reserved acknowledge flags set",
                ));
            }
            let code = u8_field(b, name)?;
            known_reason(name, header.packet_type(), code)?;
            let properties = Properties::read(b, Context::ConnAck)?;
            Packet::ConnAck(ConnAck {
                session_present: flags & 1 == 1,
                code,
                properties,
            })
        }
        3 => Packet::Publish(read_publish(header.flags(), b)?),
        4 => Packet::PubAck(read_ack(b, name, header.packet_type())?),
        5 => Packet::PubRec(read_ack(b, name, header.packet_type())?),
        6 => Packet::PubRel(read_ack(b, name, header.packet_type())?),
        7 => Packet::PubComp(read_ack(b, name, header.packet_type())?),
        8 => Packet::Subscribe(read_subscribe(b)?),
        9 => {
            let pkid = u16_field(b, name)?;
            non_zero_pkid(name, pkid)?;
            let properties = Properties::read(b, Context::SubAck)?;
            let return_codes = b.split_off(0).to_vec();
            if return_codes.is_empty() {
                return Err(DecodeError::malformed(name, "no reason codes"));
            }
            for &code in &return_codes {
                known_reason(name, header.packet_type(), code)?;
            }
            Packet::SubAck(SubAck {
                pkid,
                return_codes,
                properties,
            })
        }
        10 => {
            let pkid = u16_field(b, name)?;
            non_zero_pkid(name, pkid)?;
            let properties = Properties::read(b, Context::Unsubscribe)?;
            let mut filters = Vec::new();
            while b.has_remaining() {
                let filter = read_string(b, name, "topic filter")?;
                v5_filter_present(name, &filter)?;
                filters.push(filter);
            }
            if filters.is_empty() {
                return Err(DecodeError::protocol(
                    name,
                    "no topic filters (MQTT-3.10.3-2)",
                ));
            }
            Packet::Unsubscribe(Unsubscribe {
                pkid,
                filters,
                properties,
            })
        }
        11 => {
            let pkid = u16_field(b, name)?;
            non_zero_pkid(name, pkid)?;
            let properties = Properties::read(b, Context::UnsubAck)?;
            let reasons = b.split_off(0).to_vec();
            for &code in &reasons {
                known_reason(name, header.packet_type(), code)?;
            }
            Packet::UnsubAck(UnsubAck {
                pkid,
                reasons,
                properties,
            })
        }
        12 | 13 => {
            if header.remaining_len != 0 {
                return Err(DecodeError::malformed(name, "must have no body"));
            }
            if header.packet_type() == 12 {
                Packet::PingReq
            } else {
                Packet::PingResp
            }
        }
        14 => {
            // A bare `e0 00` is a normal disconnection (MQTT 5.0 §3.14.2.1).
            let (reason, properties) = read_reason_and_properties(b, Context::Disconnect)?;
            known_reason(name, header.packet_type(), reason)?;
            Packet::Disconnect(Disconnect { reason, properties })
        }
        15 => {
            let (reason, properties) = read_reason_and_properties(b, Context::Auth)?;
            known_reason(name, header.packet_type(), reason)?;
            Packet::Auth(Auth { reason, properties })
        }
        other => return Err(DecodeError::ReservedPacketType(other)),
    };
    if body.has_remaining() {
        return Err(DecodeError::malformed(
            name,
            "bytes left over after the packet",
        ));
    }
    Ok(packet)
}

fn u8_field(b: &mut Bytes, packet: &'static str) -> Result<u8, DecodeError> {
    if !b.has_remaining() {
        return Err(DecodeError::malformed(packet, "truncated"));
    }
    Ok(b.get_u8())
}

fn u16_field(b: &mut Bytes, packet: &'static str) -> Result<u16, DecodeError> {
    if b.remaining() < 2 {
        return Err(DecodeError::malformed(packet, "truncated"));
    }
    Ok(b.get_u16())
}

/// A reason code the spec does not list for this packet type makes the packet malformed
/// (MQTT 5.0 §2.4: "the Reason Code ... MUST be one of those listed for that packet").
fn known_reason(name: &'static str, packet_type: u8, code: u8) -> Result<(), DecodeError> {
    if reason::is_listed_for(packet_type, code) {
        Ok(())
    } else {
        Err(DecodeError::malformed(
            name,
            format!("reason code {code:#04x} is not one the spec lists for {name}"),
        ))
    }
}

/// A reason code and properties that may both be omitted (DISCONNECT, AUTH, acks).
fn read_reason_and_properties(
    b: &mut Bytes,
    context: Context,
) -> Result<(u8, Properties), DecodeError> {
    if !b.has_remaining() {
        return Ok((reason::SUCCESS, Properties::default()));
    }
    let code = b.get_u8();
    if !b.has_remaining() {
        return Ok((code, Properties::default()));
    }
    Ok((code, Properties::read(b, context)?))
}

fn read_ack(b: &mut Bytes, name: &'static str, packet_type: u8) -> Result<Ack, DecodeError> {
    let pkid = u16_field(b, name)?;
    non_zero_pkid(name, pkid)?;
    let (reason, properties) = read_reason_and_properties(b, Context::Ack)?;
    known_reason(name, packet_type, reason)?;
    Ok(Ack {
        pkid,
        reason,
        properties,
    })
}

fn read_publish(flags: u8, b: &mut Bytes) -> Result<Publish, DecodeError> {
    const NAME: &str = "PUBLISH";
    let qos = QoS::from_u8((flags >> 1) & 0b11)
        .ok_or_else(|| DecodeError::malformed(NAME, "QoS 3 (MQTT-3.3.1-4)"))?;
    let topic = read_string(b, NAME, "topic")?;
    let pkid = if qos == QoS::AtMostOnce {
        0
    } else {
        let pkid = u16_field(b, NAME)?;
        non_zero_pkid(NAME, pkid)?;
        pkid
    };
    let properties = Properties::read(b, Context::Publish)?;
    let payload = b.split_off(0);
    // `split_off(0)` leaves `b` empty and hands over the same buffer: no copy.
    let dup = flags & 0b1000 != 0;
    no_dup_at_qos0(dup, qos)?;
    Ok(Publish {
        dup,
        qos,
        retain: flags & 1 != 0,
        topic,
        pkid,
        payload,
        properties,
    })
}

fn read_subscribe(b: &mut Bytes) -> Result<Subscribe, DecodeError> {
    const NAME: &str = "SUBSCRIBE";
    let pkid = u16_field(b, NAME)?;
    non_zero_pkid(NAME, pkid)?;
    let properties = Properties::read(b, Context::Subscribe)?;
    let mut filters = Vec::new();
    while b.has_remaining() {
        let filter = read_string(b, NAME, "topic filter")?;
        v5_filter_present(NAME, &filter)?;
        let options = u8_field(b, NAME)?;
        if options & 0b1100_0000 != 0 {
            return Err(DecodeError::malformed(
                NAME,
                "reserved subscription option bits set (MQTT-3.8.3-5)",
            ));
        }
        // Both are protocol errors in 5.0 (§3.8.3.1), not malformed packets.
        let qos = QoS::from_u8(options & 0b11)
            .ok_or_else(|| DecodeError::protocol(NAME, "requested QoS 3"))?;
        let retain_handling = (options >> 4) & 0b11;
        if retain_handling == 3 {
            return Err(DecodeError::protocol(NAME, "retain handling 3"));
        }
        filters.push(SubscribeFilter {
            filter,
            qos,
            no_local: options & 0b0100 != 0,
            retain_as_published: options & 0b1000 != 0,
            retain_handling,
        });
    }
    if filters.is_empty() {
        return Err(DecodeError::protocol(
            NAME,
            "no topic filters (MQTT-3.8.3-2)",
        ));
    }
    Ok(Subscribe {
        pkid,
        filters,
        properties,
    })
}

/// Writes the fixed header of a packet whose body is `body_len` bytes.
fn header(buf: &mut BytesMut, byte1: u8, body_len: usize) -> Result<(), EncodeError> {
    if body_len > frame::MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLong(body_len));
    }
    buf.reserve(1 + remaining_length_len(body_len) + body_len);
    buf.put_u8(byte1);
    write_remaining_length(buf, body_len);
    Ok(())
}

/// Writes an ack-like packet: packet id (if any), then reason and properties, omitting
/// what the spec lets us omit (reason 0 without properties).
fn write_ack(
    buf: &mut BytesMut,
    byte1: u8,
    pkid: Option<u16>,
    code: u8,
    properties: &Properties,
) -> Result<(), EncodeError> {
    let id_len = if pkid.is_some() { 2 } else { 0 };
    let has_properties = !properties.is_empty();
    let tail = if has_properties {
        1 + properties.encoded_len()
    } else if code != reason::SUCCESS {
        1
    } else {
        0
    };
    header(buf, byte1, id_len + tail)?;
    if let Some(pkid) = pkid {
        buf.put_u16(pkid);
    }
    if tail > 0 {
        buf.put_u8(code);
    }
    if has_properties {
        properties.write(buf)?;
    }
    Ok(())
}

/// Writes a 5.0 packet (CONNECT and PUBLISH are handled by the caller).
pub(super) fn write(packet: &Packet, buf: &mut BytesMut) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(_) | Packet::Publish(_) => unreachable!("written by codec::encode"),
        Packet::ConnAck(ack) => {
            header(buf, 0x20, 2 + ack.properties.encoded_len())?;
            buf.put_u8(ack.session_present as u8);
            buf.put_u8(ack.code);
            ack.properties.write(buf)?;
        }
        Packet::PubAck(ack) => write_ack(buf, 0x40, Some(ack.pkid), ack.reason, &ack.properties)?,
        Packet::PubRec(ack) => write_ack(buf, 0x50, Some(ack.pkid), ack.reason, &ack.properties)?,
        Packet::PubRel(ack) => write_ack(buf, 0x62, Some(ack.pkid), ack.reason, &ack.properties)?,
        Packet::PubComp(ack) => write_ack(buf, 0x70, Some(ack.pkid), ack.reason, &ack.properties)?,
        Packet::Subscribe(subscribe) => {
            let filters: usize = subscribe.filters.iter().map(|f| 3 + f.filter.len()).sum();
            header(buf, 0x82, 2 + subscribe.properties.encoded_len() + filters)?;
            buf.put_u16(subscribe.pkid);
            subscribe.properties.write(buf)?;
            for f in &subscribe.filters {
                put_field(buf, f.filter.as_bytes())?;
                buf.put_u8(
                    f.qos as u8
                        | (f.no_local as u8) << 2
                        | (f.retain_as_published as u8) << 3
                        | (f.retain_handling & 0b11) << 4,
                );
            }
        }
        Packet::SubAck(ack) => {
            header(
                buf,
                0x90,
                2 + ack.properties.encoded_len() + ack.return_codes.len(),
            )?;
            buf.put_u16(ack.pkid);
            ack.properties.write(buf)?;
            buf.put_slice(&ack.return_codes);
        }
        Packet::Unsubscribe(unsubscribe) => {
            let filters: usize = unsubscribe.filters.iter().map(|f| 2 + f.len()).sum();
            header(
                buf,
                0xA2,
                2 + unsubscribe.properties.encoded_len() + filters,
            )?;
            buf.put_u16(unsubscribe.pkid);
            unsubscribe.properties.write(buf)?;
            for filter in &unsubscribe.filters {
                put_field(buf, filter.as_bytes())?;
            }
        }
        Packet::UnsubAck(ack) => {
            header(
                buf,
                0xB0,
                2 + ack.properties.encoded_len() + ack.reasons.len(),
            )?;
            buf.put_u16(ack.pkid);
            ack.properties.write(buf)?;
            buf.put_slice(&ack.reasons);
        }
        Packet::PingReq => buf.put_slice(&[0xC0, 0x00]),
        Packet::PingResp => buf.put_slice(&[0xD0, 0x00]),
        Packet::Disconnect(d) => write_ack(buf, 0xE0, None, d.reason, &d.properties)?,
        Packet::Auth(a) => write_ack(buf, 0xF0, None, a.reason, &a.properties)?,
    }
    Ok(())
}
