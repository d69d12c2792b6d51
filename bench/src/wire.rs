//! The hot path of the client: framing with the codec's fixed-header parser, then a
//! borrowed view of PUBLISH and of the two-byte acknowledgements, so receiving a message
//! allocates nothing. Everything else (CONNACK, SUBACK, …) goes through
//! [`protocol::Decoder`] in `conn.rs`; every packet we write is encoded by
//! [`protocol::encode`] / [`protocol::encode_publish`], except the four-byte acks, which
//! are written by hand and checked against the codec in the tests.

use bytes::{BufMut, BytesMut};
use protocol::frame::parse_fixed_header;

/// Largest packet the client accepts from a broker.
pub const MAX_PACKET: usize = 16 << 20;

pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;
pub const PINGREQ: [u8; 2] = [0xC0, 0];
pub const DISCONNECT: [u8; 2] = [0xE0, 0];

/// A packet at the front of a read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Publish {
        qos: u8,
        pkid: u16,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    /// PUBACK (4), PUBREC (5), PUBREL (6) or PUBCOMP (7).
    Ack { packet_type: u8, pkid: u16 },
    /// Any other packet, by type number.
    Other { packet_type: u8 },
}

/// The packet at the front of `buf` and its length on the wire; `Ok(None)` until it is
/// complete.
pub fn next_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, String> {
    let Some(header) = parse_fixed_header(buf, MAX_PACKET, None).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let len = header.frame_len();
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[header.header_len..len];
    let u16_at = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
    let frame = match header.packet_type() {
        3 => {
            let qos = (header.byte1 >> 1) & 3;
            if qos == 3 {
                return Err("PUBLISH with QoS 3".into());
            }
            if body.len() < 2 {
                return Err("truncated PUBLISH".into());
            }
            let topic_end = 2 + u16_at(0) as usize;
            let payload_start = topic_end + if qos > 0 { 2 } else { 0 };
            if body.len() < payload_start {
                return Err("truncated PUBLISH".into());
            }
            Frame::Publish {
                qos,
                pkid: if qos > 0 { u16_at(topic_end) } else { 0 },
                topic: &body[2..topic_end],
                payload: &body[payload_start..],
            }
        }
        packet_type @ 4..=7 => {
            if body.len() < 2 {
                return Err(format!("truncated acknowledgement (type {packet_type})"));
            }
            Frame::Ack {
                packet_type,
                pkid: u16_at(0),
            }
        }
        packet_type => Frame::Other { packet_type },
    };
    Ok(Some((frame, len)))
}

/// Appends a PUBACK, PUBREC, PUBREL or PUBCOMP (`byte1` is one of the constants above).
pub fn put_ack(buf: &mut BytesMut, byte1: u8, pkid: u16) {
    buf.put_u8(byte1);
    buf.put_u8(2);
    buf.put_u16(pkid);
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{
        encode, encode_publish, Ack, Packet, Properties, ProtocolVersion, PublishRef, QoS,
    };

    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

    #[test]
    fn hand_written_acks_match_the_codec() {
        for (byte1, packet) in [
            (PUBACK, Packet::PubAck(Ack::new(513))),
            (PUBREC, Packet::PubRec(Ack::new(513))),
            (PUBREL, Packet::PubRel(Ack::new(513))),
            (PUBCOMP, Packet::PubComp(Ack::new(513))),
        ] {
            let mut ours = BytesMut::new();
            put_ack(&mut ours, byte1, 513);
            let mut theirs = BytesMut::new();
            encode(&packet, V4, &mut theirs).unwrap();
            assert_eq!(ours, theirs, "{}", packet.name());
        }
        let mut theirs = BytesMut::new();
        encode(&Packet::PingReq, V4, &mut theirs).unwrap();
        assert_eq!(&theirs[..], PINGREQ);
        let mut theirs = BytesMut::new();
        encode(
            &Packet::Disconnect(protocol::Disconnect::new(0)),
            V4,
            &mut theirs,
        )
        .unwrap();
        assert_eq!(&theirs[..], DISCONNECT);
    }

    fn publish(qos: QoS, pkid: u16, payload: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        let properties = Properties::default();
        encode_publish(
            PublishRef {
                dup: false,
                qos,
                retain: false,
                topic: "a/b",
                pkid,
                payload,
                properties: &properties,
            },
            V4,
            &mut buf,
        )
        .unwrap();
        buf
    }

    #[test]
    fn reads_publishes_of_each_qos() {
        let payload = [7u8; 200]; // a two-byte remaining length
        for (qos, pkid) in [
            (QoS::AtMostOnce, 0),
            (QoS::AtLeastOnce, 9),
            (QoS::ExactlyOnce, 65535),
        ] {
            let buf = publish(qos, pkid, &payload);
            let (frame, len) = next_frame(&buf).unwrap().unwrap();
            assert_eq!(len, buf.len());
            assert_eq!(
                frame,
                Frame::Publish {
                    qos: qos as u8,
                    pkid,
                    topic: b"a/b",
                    payload: &payload
                }
            );
        }
    }

    #[test]
    fn waits_for_whole_frames_and_walks_a_batch() {
        let mut buf = publish(QoS::AtLeastOnce, 1, b"hello");
        put_ack(&mut buf, PUBREL, 42);
        buf.extend_from_slice(&[0xD0, 0]); // PINGRESP
        for cut in 0..buf.len() {
            // Every prefix that ends inside the first packet is incomplete.
            let first = next_frame(&buf[..cut]).unwrap();
            assert!(first.is_none() || cut >= buf.len() - 6, "cut {cut}");
        }
        let (_, a) = next_frame(&buf).unwrap().unwrap();
        let (frame, b) = next_frame(&buf[a..]).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::Ack {
                packet_type: 6,
                pkid: 42
            }
        );
        let (frame, c) = next_frame(&buf[a + b..]).unwrap().unwrap();
        assert_eq!(frame, Frame::Other { packet_type: 13 });
        assert_eq!(a + b + c, buf.len());
    }

    #[test]
    fn refuses_malformed() {
        // PUBLISH QoS 3.
        assert!(next_frame(&[0x36, 4, 0, 0, 0, 1]).is_err());
        // Topic length past the end.
        assert!(next_frame(&[0x30, 2, 0, 9]).is_err());
        // PUBREL with the wrong flags (the codec's framing rule).
        assert!(next_frame(&[0x60, 2, 0, 1]).is_err());
        // Truncated PUBACK body.
        assert!(next_frame(&[0x40, 1, 0]).is_err());
    }
}
