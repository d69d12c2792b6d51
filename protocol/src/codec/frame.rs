//! The fixed header: packet type, flags and the remaining length.
//!
//! Framing is ours rather than the codec's so that an oversized packet is refused from its
//! first bytes (before its body is buffered) and so that the flag rules of MQTT 3.1.1
//! §2.2.2 are enforced: the codec ignores reserved flags.

use super::packet::ProtocolVersion;
use super::DecodeError;

/// The largest value the 4-byte variable length encoding can carry.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The first byte: type in the high nibble, flags in the low one.
    pub byte1: u8,
    /// Bytes taken by the fixed header itself (2 to 5).
    pub header_len: usize,
    pub remaining_len: usize,
}

impl FixedHeader {
    pub fn packet_type(&self) -> u8 {
        self.byte1 >> 4
    }

    pub fn flags(&self) -> u8 {
        self.byte1 & 0x0F
    }

    /// Size of the whole packet on the wire.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// Parses the fixed header at the start of `buf`. `Ok(None)` means more bytes are needed.
/// `version` is the connection's, once its CONNECT has been read (`None` before).
/// Refuses reserved packet types, wrong flags and packets larger than `max_packet_size`
/// as soon as the header is complete, so a hostile length is never buffered.
pub fn parse_fixed_header(
    buf: &[u8],
    max_packet_size: usize,
    version: Option<ProtocolVersion>,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_type_and_flags(byte1, version)?;

    let mut remaining_len = 0usize;
    let mut shift = 0;
    for (i, &byte) in buf[1..].iter().enumerate() {
        remaining_len |= ((byte & 0x7F) as usize) << shift;
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                // A last byte of 0 after a continuation adds nothing: the same value fits
                // in fewer bytes (MQTT-1.5.5-1; 3.1.1 §2.2.3 encodes it the same way).
                return Err(DecodeError::malformed(
                    "fixed header",
                    "remaining length not in its shortest encoding (MQTT-1.5.5-1)",
                ));
            }
            let header = FixedHeader {
                byte1,
                header_len: 2 + i,
                remaining_len,
            };
            if header.frame_len() > max_packet_size {
                return Err(DecodeError::PacketTooLarge {
                    size: header.frame_len(),
                    max: max_packet_size,
                });
            }
            return Ok(Some(header));
        }
        shift += 7;
        if i == 3 {
            // A fifth length byte: MQTT-2.2.3, at most four.
            return Err(DecodeError::malformed(
                "fixed header",
                "remaining length longer than 4 bytes",
            ));
        }
    }
    Ok(None)
}

fn check_type_and_flags(byte1: u8, version: Option<ProtocolVersion>) -> Result<(), DecodeError> {
    let packet_type = byte1 >> 4;
    let flags = byte1 & 0x0F;
    let (name, required) = match packet_type {
        // 15 is AUTH from 5.0 on, reserved before.
        15 if version == Some(ProtocolVersion::V5) => ("AUTH", 0),
        0 | 15 => return Err(DecodeError::ReservedPacketType(packet_type)),
        // PUBLISH flags are DUP, QoS and RETAIN; QoS 3 is checked when the packet is read.
        3 => return Ok(()),
        // CONNECT's flags depend on the version it announces: the CONNECT reader checks them.
        1 => return Ok(()),
        // MQTT 3.1 gives every packet DUP, QoS and RETAIN bits, "not used" outside PUBLISH
        // (MQTT 3.1 §2.1): a 3.1 client may set them, and they are ignored.
        _ if version == Some(ProtocolVersion::V3_1) => return Ok(()),
        6 => ("PUBREL", 0b0010),
        8 => ("SUBSCRIBE", 0b0010),
        10 => ("UNSUBSCRIBE", 0b0010),
        other => (type_name(other), 0),
    };
    if flags != required {
        return Err(DecodeError::InvalidFlags {
            packet: name,
            flags,
        });
    }
    Ok(())
}

/// The spec's name of a packet type number.
pub fn type_name(packet_type: u8) -> &'static str {
    match packet_type {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved",
    }
}

/// Appends the variable-length encoding of `len` (which must not exceed
/// [`MAX_REMAINING_LENGTH`]).
pub fn write_remaining_length(buf: &mut bytes::BytesMut, mut len: usize) {
    use bytes::BufMut;
    debug_assert!(len <= MAX_REMAINING_LENGTH);
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

/// Bytes the variable-length encoding of `len` takes.
pub fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Reads a variable byte integer (MQTT 5.0 §1.5.5) off the front of `buf`. Only the
/// shortest encoding of a value is accepted (MQTT-1.5.5-1): `81 00` is not 1.
pub fn read_vbi(buf: &mut bytes::Bytes) -> Result<u32, &'static str> {
    use bytes::Buf;
    let mut value = 0u32;
    for i in 0..4 {
        if !buf.has_remaining() {
            return Err("variable byte integer is truncated");
        }
        let byte = buf.get_u8();
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err("variable byte integer not in its shortest encoding (MQTT-1.5.5-1)");
            }
            return Ok(value);
        }
    }
    Err("variable byte integer longer than 4 bytes")
}

/// Appends a variable byte integer (the same encoding as the remaining length).
pub fn write_vbi(buf: &mut bytes::BytesMut, value: usize) {
    write_remaining_length(buf, value)
}

/// Bytes a variable byte integer takes.
pub fn vbi_len(value: usize) -> usize {
    remaining_length_len(value)
}
