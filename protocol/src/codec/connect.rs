//! CONNECT, read and written here rather than by `mqttbytes-ng`, because the codec
//! refuses MQTT 3.1 (`MQIsdp`, level 3), conflates an absent username with an empty one,
//! insists the password be UTF-8 (the spec makes it binary data) and ignores the reserved
//! flag and the will/username flag rules of MQTT-3.1.2-3, -11, -13, -15 and -22.
//! One reader serves every version: 5.0 adds properties in two places and allows a
//! password without a username.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::frame::{remaining_length_len, write_remaining_length};
use super::properties::{Context, Properties};
use super::{read_binary, read_string, DecodeError, EncodeError};
use crate::codec::packet::{Connect, ProtocolVersion, QoS, Will};

const CONNECT: &str = "CONNECT";

const FLAG_RESERVED: u8 = 0b0000_0001;
const FLAG_CLEAN_SESSION: u8 = 0b0000_0010;
const FLAG_WILL: u8 = 0b0000_0100;
const FLAG_WILL_QOS: u8 = 0b0001_1000;
const FLAG_WILL_RETAIN: u8 = 0b0010_0000;
const FLAG_PASSWORD: u8 = 0b0100_0000;
const FLAG_USERNAME: u8 = 0b1000_0000;

/// Works out which protocol a CONNECT speaks from its protocol name and level.
///
/// An unknown name is not MQTT at all (the connection is closed without a CONNACK,
/// MQTT-3.1.2-1); a known name with an unknown level gets CONNACK 0x01 (MQTT-3.1.2-2).
pub fn detect_version(name: &[u8], level: u8) -> Result<ProtocolVersion, DecodeError> {
    match (name, level) {
        (b"MQTT", 4) => Ok(ProtocolVersion::V3_1_1),
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V3_1),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQTT" | b"MQIsdp", level) => Err(DecodeError::UnsupportedProtocolLevel(level)),
        (name, _) => Err(DecodeError::InvalidProtocolName(
            String::from_utf8_lossy(name).into_owned(),
        )),
    }
}

/// Reads the body of a CONNECT (everything after the fixed header); `header_flags` are the
/// low four bits of its first byte.
pub fn read(header_flags: u8, mut body: Bytes) -> Result<Connect, DecodeError> {
    let name = read_binary(&mut body, CONNECT, "protocol name")?;
    if body.remaining() < 4 {
        return Err(DecodeError::malformed(
            CONNECT,
            "variable header is truncated",
        ));
    }
    let level = body.get_u8();
    let version = detect_version(&name, level)?;
    let v5 = version == ProtocolVersion::V5;
    // Reserved, must be 0, from 3.1.1 on (MQTT-2.2.2-2); "not used" in 3.1, so ignored.
    if version != ProtocolVersion::V3_1 && header_flags != 0 {
        return Err(DecodeError::InvalidFlags {
            packet: CONNECT,
            flags: header_flags,
        });
    }

    let flags = body.get_u8();
    let keep_alive = body.get_u16();
    if version != ProtocolVersion::V3_1 && flags & FLAG_RESERVED != 0 {
        return Err(DecodeError::malformed(
            CONNECT,
            "reserved flag is set (MQTT-3.1.2-3)",
        ));
    }
    let will_qos = (flags & FLAG_WILL_QOS) >> 3;
    if flags & FLAG_WILL == 0 && flags & (FLAG_WILL_QOS | FLAG_WILL_RETAIN) != 0 {
        return Err(DecodeError::malformed(
            CONNECT,
            "will QoS or retain set without the will flag (MQTT-3.1.2-13, -15)",
        ));
    }
    if !v5 && flags & FLAG_PASSWORD != 0 && flags & FLAG_USERNAME == 0 {
        return Err(DecodeError::malformed(
            CONNECT,
            "password flag set without the username flag (MQTT-3.1.2-22)",
        ));
    }

    let properties = if v5 {
        Properties::read(&mut body, Context::Connect)?
    } else {
        Properties::default()
    };
    let client_id = read_string(&mut body, CONNECT, "client identifier")?;
    let will = if flags & FLAG_WILL != 0 {
        let qos = QoS::from_u8(will_qos)
            .ok_or_else(|| DecodeError::malformed(CONNECT, "will QoS 3 (MQTT-3.1.2-14)"))?;
        let properties = if v5 {
            Properties::read(&mut body, Context::Will)?
        } else {
            Properties::default()
        };
        let topic = read_string(&mut body, CONNECT, "will topic")?;
        let payload = read_binary(&mut body, CONNECT, "will message")?;
        Some(Will {
            topic,
            payload,
            qos,
            retain: flags & FLAG_WILL_RETAIN != 0,
            properties,
        })
    } else {
        None
    };
    let username = if flags & FLAG_USERNAME != 0 {
        Some(read_string(&mut body, CONNECT, "username")?)
    } else {
        None
    };
    let password = if flags & FLAG_PASSWORD != 0 {
        Some(read_binary(&mut body, CONNECT, "password")?)
    } else {
        None
    };
    if body.has_remaining() {
        return Err(DecodeError::malformed(
            CONNECT,
            "bytes left over after the payload the flags announce",
        ));
    }

    Ok(Connect {
        version,
        client_id,
        clean_session: flags & FLAG_CLEAN_SESSION != 0,
        keep_alive,
        will,
        username,
        password,
        properties,
    })
}

/// Writes a CONNECT for `connect.version`.
pub fn write(connect: &Connect, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = connect.version == ProtocolVersion::V5;
    if !v5 && connect.password.is_some() && connect.username.is_none() {
        return Err(EncodeError::Invalid("a password needs a username"));
    }
    let name = connect.version.protocol_name();
    let field = |s: usize| 2 + s;
    let mut len = field(name.len()) + 1 + 1 + 2 + field(connect.client_id.len());
    if v5 {
        len += connect.properties.encoded_len();
    }
    let mut flags = 0u8;
    if connect.clean_session {
        flags |= FLAG_CLEAN_SESSION;
    }
    if let Some(will) = &connect.will {
        flags |= FLAG_WILL | ((will.qos as u8) << 3);
        if will.retain {
            flags |= FLAG_WILL_RETAIN;
        }
        len += field(will.topic.len()) + field(will.payload.len());
        if v5 {
            len += will.properties.encoded_len();
        }
    }
    if let Some(username) = &connect.username {
        flags |= FLAG_USERNAME;
        len += field(username.len());
    }
    if let Some(password) = &connect.password {
        flags |= FLAG_PASSWORD;
        len += field(password.len());
    }

    buf.reserve(1 + remaining_length_len(len) + len);
    buf.put_u8(0x10);
    write_remaining_length(buf, len);
    put_field(buf, name.as_bytes())?;
    buf.put_u8(connect.version.level());
    buf.put_u8(flags);
    buf.put_u16(connect.keep_alive);
    if v5 {
        connect.properties.write(buf)?;
    }
    put_field(buf, connect.client_id.as_bytes())?;
    if let Some(will) = &connect.will {
        if v5 {
            will.properties.write(buf)?;
        }
        put_field(buf, will.topic.as_bytes())?;
        put_field(buf, &will.payload)?;
    }
    if let Some(username) = &connect.username {
        put_field(buf, username.as_bytes())?;
    }
    if let Some(password) = &connect.password {
        put_field(buf, password)?;
    }
    Ok(())
}

/// Writes a length-prefixed field, refusing one that does not fit its 16-bit length.
pub(super) fn put_field(buf: &mut BytesMut, bytes: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong(bytes.len()))?;
    buf.put_u16(len);
    buf.put_slice(bytes);
    Ok(())
}
