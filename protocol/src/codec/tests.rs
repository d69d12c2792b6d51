//! Codec edge cases, and one regression test per defect of `mqttbytes-ng` that the
//! adapter covers (named `codec_defect_*`).

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::reason;

fn decode_all(bytes: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let mut decoder = Decoder::new(1024 * 1024);
    let mut buf = BytesMut::from(bytes);
    let mut packets = Vec::new();
    while let Some(packet) = decoder.decode(&mut buf)? {
        packets.push(packet);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(packets)
}

fn decode_one(bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut packets = decode_all(bytes)?;
    assert_eq!(packets.len(), 1);
    Ok(packets.remove(0))
}

fn encoded(packet: &Packet) -> Vec<u8> {
    encoded_as(packet, ProtocolVersion::V3_1_1)
}

fn encoded_as(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).unwrap();
    buf.to_vec()
}

/// A CONNECT body built by hand: name, level, flags, keep-alive, then payload fields.
fn connect_bytes(name: &str, level: u8, flags: u8, payload: &[&[u8]]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u16(name.len() as u16);
    body.put_slice(name.as_bytes());
    body.put_u8(level);
    body.put_u8(flags);
    body.put_u16(60);
    for field in payload {
        body.put_u16(field.len() as u16);
        body.put_slice(field);
    }
    let mut packet = BytesMut::new();
    packet.put_u8(0x10);
    frame::write_remaining_length(&mut packet, body.len());
    packet.put_slice(&body);
    packet.to_vec()
}

fn malformed(result: Result<Packet, DecodeError>) -> bool {
    matches!(result, Err(DecodeError::Malformed { .. }))
}

#[test]
fn codec_defect_mqtt31_connect_is_accepted() {
    let packet = decode_one(&connect_bytes("MQIsdp", 3, 0x02, &[b"dev-31"])).unwrap();
    let Packet::Connect(connect) = packet else {
        panic!("not a CONNECT")
    };
    assert_eq!(connect.version, ProtocolVersion::V3_1);
    assert_eq!(connect.client_id, "dev-31");
    assert!(connect.clean_session);
}

#[test]
fn version_detection() {
    assert_eq!(detect_version(b"MQTT", 4), Ok(ProtocolVersion::V3_1_1));
    assert_eq!(detect_version(b"MQIsdp", 3), Ok(ProtocolVersion::V3_1));
    assert_eq!(detect_version(b"MQTT", 5), Ok(ProtocolVersion::V5));
    assert_eq!(
        detect_version(b"MQTT", 6),
        Err(DecodeError::UnsupportedProtocolLevel(6))
    );
    assert_eq!(
        detect_version(b"MQIsdp", 4),
        Err(DecodeError::UnsupportedProtocolLevel(4))
    );
    assert!(matches!(
        detect_version(b"HTTP", 4),
        Err(DecodeError::InvalidProtocolName(_))
    ));
}

#[test]
fn unsupported_level_is_reported_for_connack_0x01() {
    assert_eq!(
        decode_one(&connect_bytes("MQTT", 6, 0x02, &[b"x"])),
        Err(DecodeError::UnsupportedProtocolLevel(6))
    );
}

#[test]
fn codec_defect_binary_password_and_empty_username() {
    let password: &[u8] = &[0xff, 0x00, 0xfe];
    let bytes = connect_bytes("MQTT", 4, 0x02 | 0x80 | 0x40, &[b"id", b"", password]);
    let Packet::Connect(connect) = decode_one(&bytes).unwrap() else {
        panic!("not a CONNECT")
    };
    assert_eq!(connect.username.as_deref(), Some(""));
    assert_eq!(connect.password.as_deref(), Some(password));
    // And it survives a round trip.
    assert_eq!(encoded(&Packet::Connect(connect)), bytes);
}

#[test]
fn codec_defect_connect_flag_rules() {
    // Reserved bit (MQTT-3.1.2-3).
    assert!(malformed(decode_one(&connect_bytes(
        "MQTT",
        4,
        0x03,
        &[b"id"]
    ))));
    // Will QoS without the will flag (MQTT-3.1.2-13).
    assert!(malformed(decode_one(&connect_bytes(
        "MQTT",
        4,
        0x0A,
        &[b"id"]
    ))));
    // Will retain without the will flag (MQTT-3.1.2-15).
    assert!(malformed(decode_one(&connect_bytes(
        "MQTT",
        4,
        0x22,
        &[b"id"]
    ))));
    // Password without username (MQTT-3.1.2-22).
    assert!(malformed(decode_one(&connect_bytes(
        "MQTT",
        4,
        0x42,
        &[b"id", b"pw"]
    ))));
    // Will QoS 3 (MQTT-3.1.2-14).
    assert!(malformed(decode_one(&connect_bytes(
        "MQTT",
        4,
        0x1E,
        &[b"id", b"t", b"m"]
    ))));
}

#[test]
fn connect_with_will_round_trips() {
    let connect = Connect {
        version: ProtocolVersion::V3_1_1,
        client_id: "c1".into(),
        clean_session: false,
        keep_alive: 30,
        will: Some(Will {
            topic: "status/c1".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: Properties::default(),
    };
    let bytes = encoded(&Packet::Connect(Box::new(connect.clone())));
    assert_eq!(decode_one(&bytes), Ok(Packet::Connect(Box::new(connect))));
}

#[test]
fn connect_with_trailing_bytes_is_malformed() {
    let mut bytes = connect_bytes("MQTT", 4, 0x02, &[b"id", b"extra"]);
    bytes[1] = (bytes.len() - 2) as u8;
    assert!(malformed(decode_one(&bytes)));
}

#[test]
fn strings_must_be_utf8_without_nul() {
    assert!(malformed(decode_one(&connect_bytes(
        "MQTT",
        4,
        0x02,
        &[b"\xc3\x28"]
    ))));
    assert!(malformed(decode_one(&connect_bytes(
        "MQTT",
        4,
        0x02,
        &[b"a\0b"]
    ))));
    // PUBLISH topic with invalid UTF-8, then with U+0000.
    assert!(malformed(decode_one(&[0x30, 0x04, 0x00, 0x02, 0xc3, 0x28])));
    assert!(malformed(decode_one(&[0x30, 0x04, 0x00, 0x02, b'a', 0x00])));
    // A surrogate half encoded in UTF-8 (MQTT-1.5.3-1).
    assert!(malformed(decode_one(&[
        0x30, 0x05, 0x00, 0x03, 0xed, 0xa0, 0x80
    ])));
}

#[test]
fn oversized_packet_is_refused_from_its_header() {
    let mut decoder = Decoder::new(100);
    // Only the fixed header of a 268,435,455-byte PUBLISH: refused before any body.
    let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0x7f][..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 100
        })
    );
}

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    let mut decoder = Decoder::new(usize::MAX);
    let mut buf = BytesMut::from(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn codec_defect_fixed_header_flags_are_checked() {
    // SUBSCRIBE with flags 0000 instead of 0010 (MQTT-3.8.1-1).
    assert!(matches!(
        decode_one(&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00]),
        Err(DecodeError::InvalidFlags { .. })
    ));
    // PUBREL with flags 0000.
    assert!(matches!(
        decode_one(&[0x60, 0x02, 0x00, 0x01]),
        Err(DecodeError::InvalidFlags { .. })
    ));
    // PINGREQ with a flag.
    assert!(matches!(
        decode_one(&[0xc1, 0x00]),
        Err(DecodeError::InvalidFlags { .. })
    ));
    // Reserved types.
    assert_eq!(
        decode_one(&[0x00, 0x00]),
        Err(DecodeError::ReservedPacketType(0))
    );
    assert_eq!(
        decode_one(&[0xf0, 0x00]),
        Err(DecodeError::ReservedPacketType(15))
    );
}

#[test]
fn codec_defect_subscribe_reserved_option_bits() {
    assert!(malformed(decode_one(&[
        0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x04
    ])));
    // QoS 3 requested.
    assert!(malformed(decode_one(&[
        0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x03
    ])));
}

#[test]
fn codec_defect_empty_subscribe_and_unsubscribe() {
    assert!(malformed(decode_one(&[0x82, 0x02, 0x00, 0x01])));
    assert!(malformed(decode_one(&[0xa2, 0x02, 0x00, 0x01])));
}

fn protocol_error(result: Result<Packet, DecodeError>) -> bool {
    matches!(result, Err(DecodeError::Protocol { .. }))
}

/// MQTT-2.3.1-1: packet identifiers are non-zero, in every packet that has one. Zero is
/// well-formed bytes breaking a rule: a protocol error, not a malformed packet.
#[test]
fn zero_packet_identifiers_are_protocol_errors() {
    for bytes in [
        &[0x82, 0x06, 0x00, 0x00, 0x00, 0x01, b'a', 0x00][..],
        &[0xa2, 0x05, 0x00, 0x00, 0x00, 0x01, b'a'],
        &[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00],
        &[0x34, 0x05, 0x00, 0x01, b'a', 0x00, 0x00],
        &[0x40, 0x02, 0x00, 0x00],
        &[0x50, 0x02, 0x00, 0x00],
        &[0x62, 0x02, 0x00, 0x00],
        &[0x70, 0x02, 0x00, 0x00],
        // SUBACK and UNSUBACK, as a client reads them.
        &[0x90, 0x03, 0x00, 0x00, 0x00],
        &[0xb0, 0x02, 0x00, 0x00],
    ] {
        assert!(protocol_error(decode_one(bytes)), "{bytes:02x?}");
    }
}

/// MQTT-3.3.1-2: a QoS 0 PUBLISH must not have DUP set.
#[test]
fn dup_on_a_qos0_publish_is_malformed() {
    assert!(malformed(decode_one(&[0x38, 0x03, 0x00, 0x01, b'a'])));
    // DUP with QoS 1 is what a re-delivery looks like.
    assert!(decode_one(&[0x3a, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]).is_ok());
}

/// MQTT-1.5.5-1: a remaining length must use the fewest bytes (`80 00` is 0 in two bytes).
#[test]
fn remaining_length_must_be_minimally_encoded() {
    assert!(malformed(decode_one(&[0xc0, 0x80, 0x00])));
    assert!(malformed(decode_one(&[
        0x30, 0x85, 0x00, 0x00, 0x01, b'a', b'x', b'y'
    ])));
    // 128 needs two bytes: `80 01` is its shortest form.
    let mut publish = vec![0x30, 0x80, 0x01, 0x00, 0x01, b'a'];
    publish.extend_from_slice(&[b'x'; 125]);
    assert!(decode_one(&publish).is_ok());
}

/// MQTT 3.1 §2.1: DUP, QoS and RETAIN are "not used" outside PUBLISH, so a 3.1 client may set
/// them on CONNECT and later packets; 3.1.1 forbids them (MQTT-2.2.2-2), and DUP on QoS 0.
#[test]
fn mqtt31_fixed_header_flags_are_not_checked() {
    let mut connect = connect_bytes("MQIsdp", 3, 0x02, &[b"c31"]);
    connect[0] = 0x12;
    let mut decoder = Decoder::new(1024);
    let mut buf = BytesMut::from(&connect[..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    buf.extend_from_slice(&[0xc2, 0x00, 0x42, 0x02, 0x00, 0x07]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingReq)));
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::PubAck(Ack::new(7))))
    );
    // DUP on QoS 0: 3.1 only says DUP "applies to" QoS above 0, no rule to break.
    buf.extend_from_slice(&[0x38, 0x03, 0x00, 0x01, b'a']);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Publish(Publish { dup: true, .. })))
    ));

    let mut connect = connect_bytes("MQTT", 4, 0x02, &[b"c311"]);
    connect[0] = 0x12;
    assert!(matches!(
        decode_one(&connect),
        Err(DecodeError::InvalidFlags { .. })
    ));
}

/// SUBSCRIBE or UNSUBSCRIBE bytes (3.1.1 layout, or 5.0 with an empty property list) for
/// one filter, packet identifier 1.
pub(super) fn filter_packet(byte1: u8, filter: &str, v5: bool) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if v5 {
        body.push(0x00);
    }
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    if byte1 == 0x82 {
        body.push(0x00);
    }
    let mut out = vec![byte1, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

/// MQTT-4.7.3-1: an empty filter makes SUBSCRIBE and UNSUBSCRIBE malformed. In 3.1.1,
/// `$share/g` is well-formed (5.0's rules are in tests_v5.rs).
#[test]
fn empty_filters_are_malformed() {
    for byte1 in [0x82, 0xa2] {
        assert!(malformed(decode_one(&filter_packet(byte1, "", false))));
    }
    assert!(decode_one(&filter_packet(0xa2, "$share/g", false)).is_ok());
}

#[test]
fn publish_qos3_is_malformed() {
    assert!(malformed(decode_one(&[
        0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01
    ])));
}

#[test]
fn fixed_size_packets_need_exact_lengths() {
    assert!(malformed(decode_one(&[0x40, 0x03, 0x00, 0x01, 0x00])));
    assert!(malformed(decode_one(&[0xc0, 0x01, 0x00])));
    assert!(malformed(decode_one(&[0xe0, 0x01, 0x00])));
    assert_eq!(
        decode_one(&[0xe0, 0x00]),
        Ok(Packet::Disconnect(Disconnect::new(0)))
    );
    assert_eq!(decode_one(&[0xc0, 0x00]), Ok(Packet::PingReq));
}

#[test]
fn several_packets_in_one_buffer_and_one_packet_across_reads() {
    let mut bytes = encoded(&Packet::PingReq);
    bytes.extend(encoded(&Packet::PubAck(Ack::new(7))));
    bytes.extend(encoded(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "a/b".into(),
        pkid: 9,
        payload: Bytes::from_static(b"hello"),
        properties: Properties::default(),
    })));
    assert_eq!(decode_all(&bytes).unwrap().len(), 3);

    // Fed one byte at a time, the same packets come out.
    let mut decoder = Decoder::new(1024);
    let mut buf = BytesMut::new();
    let mut count = 0;
    for byte in bytes {
        buf.put_u8(byte);
        while decoder.decode(&mut buf).unwrap().is_some() {
            count += 1;
        }
    }
    assert_eq!(count, 3);
}

#[test]
fn acks_round_trip() {
    let packets = [
        Packet::ConnAck(ConnAck::new(reason::SUCCESS, true)),
        Packet::ConnAck(ConnAck::new(reason::NOT_AUTHORIZED, false)),
        Packet::PubAck(Ack::new(1)),
        Packet::PubRec(Ack::new(2)),
        Packet::PubRel(Ack::new(3)),
        Packet::PubComp(Ack::new(65535)),
        Packet::SubAck(SubAck {
            pkid: 4,
            return_codes: vec![0, 2, 0x80],
            properties: Properties::default(),
        }),
        Packet::Subscribe(Subscribe {
            pkid: 5,
            filters: vec![SubscribeFilter::new("a/+/#", QoS::AtLeastOnce)],
            properties: Properties::default(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 6,
            filters: vec!["a/+/#".into(), "b".into()],
            properties: Properties::default(),
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 7,
            reasons: vec![],
            properties: Properties::default(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::new(0)),
    ];
    for packet in packets {
        assert_eq!(
            decode_one(&encoded(&packet)),
            Ok(packet.clone()),
            "{packet:?}"
        );
    }
}

#[test]
fn v5_only_codes_map_to_the_nearest_v3_return_code() {
    assert_eq!(
        encoded(&Packet::ConnAck(ConnAck::new(
            reason::BAD_AUTHENTICATION_METHOD,
            false
        ))),
        vec![0x20, 0x02, 0x00, 0x05]
    );
    assert_eq!(
        encoded(&Packet::ConnAck(ConnAck::new(reason::SERVER_BUSY, false))),
        vec![0x20, 0x02, 0x00, 0x03]
    );
    // Any SUBACK failure is 0x80 in 3.1.1.
    let suback = Packet::SubAck(SubAck {
        pkid: 1,
        return_codes: vec![reason::NOT_AUTHORIZED],
        properties: Properties::default(),
    });
    assert_eq!(encoded(&suback), vec![0x90, 0x03, 0x00, 0x01, 0x80]);
}

#[test]
fn publish_size_matches_encoding() {
    let mut properties = Properties::default();
    properties.user_properties.push(("k".into(), "v".into()));
    properties.message_expiry_interval = Some(30);
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for (topic, payload, qos) in [
            ("a", 0, QoS::AtMostOnce),
            ("a/b/c", 200, QoS::AtLeastOnce),
            ("t", 20_000, QoS::ExactlyOnce),
        ] {
            let payload = vec![7u8; payload];
            let publish = PublishRef {
                dup: false,
                qos,
                retain: false,
                topic,
                pkid: 1,
                payload: &payload,
                properties: &properties,
            };
            let mut buf = BytesMut::new();
            encode_publish(publish, version, &mut buf).unwrap();
            assert_eq!(buf.len(), publish_size(&publish, version));
        }
    }
}

fn arb_publish() -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        "[a-z/]{1,20}",
        1u16..,
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(dup, qos, retain, topic, pkid, payload)| {
            let qos = QoS::from_u8(qos).unwrap();
            Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos,
                retain,
                topic,
                pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
                payload: payload.into(),
                properties: Properties::default(),
            }
        })
}

proptest! {
    /// Whatever arrives, the decoder returns an error or a packet; it never panics.
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut decoder = Decoder::new(1000);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    }

    /// Likewise for input that starts as a valid CONNECT and is then corrupted.
    #[test]
    fn corrupted_connect_never_panics(flip in 0usize..40, value in any::<u8>()) {
        let mut bytes = connect_bytes("MQTT", 4, 0xee, &[b"id", b"t", b"m", b"u", b"p"]);
        let at = flip % bytes.len();
        bytes[at] = value;
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = Decoder::new(1000).decode(&mut buf);
    }

    #[test]
    fn publish_round_trips(publish in arb_publish()) {
        let bytes = encoded(&Packet::Publish(publish.clone()));
        prop_assert_eq!(decode_one(&bytes), Ok(Packet::Publish(publish)));
    }
}
