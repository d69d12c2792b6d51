//! MQTT 5.0: round trips, the rules the codec's v5 module misses (`codec_defect_*`), and
//! differential checks of our bytes against `mqttbytes-ng`'s v5 reader.

use bytes::{Bytes, BytesMut};
use mqttbytes_ng::v5 as oracle;
use proptest::prelude::*;

use super::*;
use crate::reason;

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A decoder that has already seen a 5.0 CONNECT.
fn v5_decoder() -> Decoder {
    let mut decoder = Decoder::new(1 << 20);
    decoder.set_version(V5);
    decoder
}

fn decode_v5(bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = v5_decoder().decode(&mut buf)?.expect("a whole packet");
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(packet)
}

fn encode_v5(packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, V5, &mut buf).unwrap();
    buf.to_vec()
}

fn rich_properties() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
        user_properties: vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("b".into(), "3".into()),
        ],
        ..Properties::default()
    }
}

fn connect_v5() -> Connect {
    Connect {
        version: V5,
        client_id: "dev".into(),
        clean_session: true,
        keep_alive: 30,
        will: Some(Will {
            topic: "will/dev".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(5),
                message_expiry_interval: Some(60),
                ..Properties::default()
            },
        }),
        username: None,
        // 5.0 allows a password without a username (MQTT 5.0 §3.1.2.9).
        password: Some(Bytes::from_static(&[0, 255])),
        properties: Properties {
            session_expiry_interval: Some(u32::MAX),
            receive_maximum: Some(10),
            maximum_packet_size: Some(4096),
            topic_alias_maximum: Some(5),
            request_problem_information: Some(1),
            user_properties: vec![("k".into(), "v".into())],
            ..Properties::default()
        },
    }
}

#[test]
fn v5_connect_round_trips_and_sets_the_decoder_version() {
    let connect = connect_v5();
    let bytes = encode_v5(&Packet::Connect(Box::new(connect.clone())));
    let mut decoder = Decoder::new(1 << 20);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Connect(Box::new(connect))))
    );
    assert_eq!(decoder.version(), Some(V5));
}

#[test]
fn v5_packets_round_trip() {
    let with_reason = |pkid, reason| Ack {
        pkid,
        reason,
        properties: Properties {
            reason_string: Some("why".into()),
            ..Properties::default()
        },
    };
    let packets = [
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: reason::SUCCESS,
            properties: Properties {
                receive_maximum: Some(100),
                maximum_qos: Some(1),
                retain_available: Some(1),
                maximum_packet_size: Some(1 << 20),
                assigned_client_identifier: Some("auto-1".into()),
                topic_alias_maximum: Some(10),
                wildcard_subscription_available: Some(1),
                subscription_identifier_available: Some(1),
                shared_subscription_available: Some(1),
                server_keep_alive: Some(60),
                ..Properties::default()
            },
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: "a/b".into(),
            pkid: 7,
            payload: Bytes::from_static(b"{}"),
            properties: Properties {
                subscription_identifiers: vec![1, 268_435_455],
                topic_alias: Some(3),
                ..rich_properties()
            },
        }),
        Packet::PubAck(Ack::new(1)),
        Packet::PubAck(Ack::with_reason(1, reason::NO_MATCHING_SUBSCRIBERS)),
        Packet::PubRec(with_reason(2, reason::NOT_AUTHORIZED)),
        Packet::PubRel(Ack::with_reason(3, reason::PACKET_IDENTIFIER_NOT_FOUND)),
        Packet::PubComp(with_reason(4, reason::SUCCESS)),
        Packet::Subscribe(Subscribe {
            pkid: 5,
            filters: vec![
                SubscribeFilter {
                    filter: "x/#".into(),
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 2,
                },
                SubscribeFilter::new("$share/g/y", QoS::AtMostOnce),
            ],
            properties: Properties {
                subscription_identifiers: vec![42],
                ..Properties::default()
            },
        }),
        Packet::SubAck(SubAck {
            pkid: 5,
            return_codes: vec![2, reason::TOPIC_FILTER_INVALID],
            properties: Properties::default(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 6,
            filters: vec!["x/#".into()],
            properties: Properties::default(),
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 6,
            reasons: vec![reason::NO_SUBSCRIPTION_EXISTED],
            properties: Properties::default(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::new(reason::NORMAL_DISCONNECTION)),
        Packet::Disconnect(Disconnect {
            reason: reason::SESSION_TAKEN_OVER,
            properties: Properties {
                reason_string: Some("another connection".into()),
                ..Properties::default()
            },
        }),
        Packet::Auth(Auth {
            reason: reason::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some("SCRAM-SHA-1".into()),
                authentication_data: Some(Bytes::from_static(b"data")),
                ..Properties::default()
            },
        }),
    ];
    for packet in packets {
        assert_eq!(
            decode_v5(&encode_v5(&packet)),
            Ok(packet.clone()),
            "{packet:?}"
        );
    }
}

#[test]
fn codec_defect_bare_v5_disconnect_is_accepted() {
    assert_eq!(
        decode_v5(&[0xe0, 0x00]),
        Ok(Packet::Disconnect(Disconnect::new(
            reason::NORMAL_DISCONNECTION
        )))
    );
    // Reason 0x04 alone: disconnect with will.
    assert_eq!(
        decode_v5(&[0xe0, 0x01, 0x04]),
        Ok(Packet::Disconnect(Disconnect::new(
            reason::DISCONNECT_WITH_WILL
        )))
    );
}

#[test]
fn codec_defect_auth_exists_in_v5_only() {
    assert!(matches!(decode_v5(&[0xf0, 0x00]), Ok(Packet::Auth(_))));
    let mut buf = BytesMut::from(&[0xf0, 0x00][..]);
    assert_eq!(
        Decoder::new(100).decode(&mut buf),
        Err(DecodeError::ReservedPacketType(15))
    );
}

#[test]
fn codec_defect_property_overrunning_its_length_is_malformed() {
    // PUBACK pkid 1, reason 0, property length 2, but a 5-byte reason string follows.
    let bytes = [
        0x40, 0x0a, 0x00, 0x01, 0x00, 0x02, 0x1f, 0x00, 0x02, b'h', b'i', b'!',
    ];
    assert!(matches!(
        decode_v5(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn codec_defect_duplicate_and_misplaced_properties_are_refused() {
    // PUBLISH with message expiry given twice: a protocol error (MQTT 5.0 §2.2.2.2).
    let dup = [
        0x30, 0x0e, 0x00, 0x01, b't', 0x0a, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2,
    ];
    assert!(matches!(decode_v5(&dup), Err(DecodeError::Protocol { .. })));
    // PUBLISH with a session expiry interval, which only CONNECT, CONNACK and DISCONNECT carry.
    let misplaced = [0x30, 0x09, 0x00, 0x01, b't', 0x05, 0x11, 0, 0, 0, 1];
    assert!(matches!(
        decode_v5(&misplaced),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn codec_defect_v5_publish_topic_must_be_utf8() {
    let bytes = [0x30, 0x05, 0x00, 0x02, 0xc3, 0x28, 0x00];
    assert!(matches!(
        decode_v5(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
}

#[test]
fn v5_subscribe_option_rules() {
    // Reserved bits 6-7.
    let reserved = [0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x40];
    assert!(decode_v5(&reserved).is_err());
    // Retain handling 3.
    let rh3 = [0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30];
    assert!(decode_v5(&rh3).is_err());
}

/// MQTT 5.0 §2.4: each packet's reason code must be one its table lists; any other makes
/// the packet malformed (PUBACK 0xFF, PUBCOMP 0x20, DISCONNECT 0x05 ...).
#[test]
fn reason_codes_outside_the_packets_table_are_malformed() {
    for bytes in [
        &[0x40, 0x03, 0x00, 0x01, 0xff][..],
        &[0x50, 0x03, 0x00, 0x01, 0x92],
        &[0x62, 0x03, 0x00, 0x01, 0x10],
        &[0x70, 0x03, 0x00, 0x01, 0x20],
        &[0xe0, 0x01, 0x05],
        &[0xf0, 0x01, 0x01],
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0x03],
        &[0x20, 0x03, 0x00, 0x8e, 0x00],
    ] {
        assert!(
            matches!(decode_v5(bytes), Err(DecodeError::Malformed { .. })),
            "{bytes:02x?}"
        );
    }
    for bytes in [
        &[0x40, 0x03, 0x00, 0x01, 0x97][..],
        &[0x50, 0x03, 0x00, 0x01, 0x10],
        &[0x62, 0x03, 0x00, 0x01, 0x92],
        &[0x70, 0x04, 0x00, 0x01, 0x92, 0x00],
        &[0xe0, 0x01, 0x8b],
    ] {
        assert!(decode_v5(bytes).is_ok(), "{bytes:02x?}");
    }
}

/// MQTT-1.5.5-1: a Variable Byte Integer in its shortest form only, in the property length
/// and in the Subscription Identifier (`81 00` is 1 in two bytes).
#[test]
fn variable_byte_integers_must_be_minimally_encoded() {
    // SUBSCRIBE, subscription identifier 1 written as 81 00.
    let sid = [
        0x82, 0x0a, 0x00, 0x01, 0x03, 0x0b, 0x81, 0x00, 0x00, 0x01, b'a', 0x00,
    ];
    assert!(matches!(
        decode_v5(&sid),
        Err(DecodeError::Malformed { .. })
    ));
    // PUBLISH with its property length 0 written as 80 00.
    let len = [0x30, 0x06, 0x00, 0x01, b't', 0x80, 0x00, b'p'];
    assert!(matches!(
        decode_v5(&len),
        Err(DecodeError::Malformed { .. })
    ));
    // The shortest forms are read.
    let ok = [
        0x82, 0x09, 0x00, 0x01, 0x02, 0x0b, 0x01, 0x00, 0x01, b'a', 0x00,
    ];
    assert!(decode_v5(&ok).is_ok());
}

/// An acknowledgement whose bytes cannot hold what they announce is malformed: a property
/// length past the end, a packet identifier cut short.
#[test]
fn acks_that_cannot_hold_what_they_announce_are_malformed() {
    for bytes in [
        &[0x40, 0x01, 0x00][..],
        &[0x40, 0x04, 0x00, 0x01, 0x00, 0x05],
        &[0x62, 0x05, 0x00, 0x01, 0x00, 0x01, 0x1f],
        &[0x70, 0x05, 0x00, 0x01, 0x92, 0x00, 0x00],
    ] {
        assert!(
            matches!(decode_v5(bytes), Err(DecodeError::Malformed { .. })),
            "{bytes:02x?}"
        );
    }
}

/// MQTT-2.2.1-3 in 5.0: a zero packet identifier is a protocol error (0x82).
#[test]
fn v5_zero_packet_identifiers_are_protocol_errors() {
    for bytes in [
        &[0x40, 0x02, 0x00, 0x00][..],
        &[0x50, 0x03, 0x00, 0x00, 0x00],
        &[0x62, 0x02, 0x00, 0x00],
        &[0x70, 0x02, 0x00, 0x00],
        &[0x32, 0x06, 0x00, 0x01, b't', 0x00, 0x00, 0x00],
    ] {
        assert!(
            matches!(decode_v5(bytes), Err(DecodeError::Protocol { .. })),
            "{bytes:02x?}"
        );
    }
}

/// MQTT-4.7.3-1, MQTT-4.8.2-2: in 5.0 an empty filter, or a shared subscription with no
/// filter after its share name, makes SUBSCRIBE and UNSUBSCRIBE malformed; a share with a
/// bad name but a filter (`$share//t`) is well-formed (a reason code refuses it).
#[test]
fn v5_empty_and_missing_shared_filters_are_malformed() {
    use super::tests::filter_packet;
    for filter in ["", "$share/g", "$share/g/", "$share/"] {
        for byte1 in [0x82, 0xa2] {
            assert!(
                matches!(
                    decode_v5(&filter_packet(byte1, filter, true)),
                    Err(DecodeError::Malformed { .. })
                ),
                "{byte1:#04x} {filter:?}"
            );
        }
    }
    assert!(decode_v5(&filter_packet(0x82, "$share//t", true)).is_ok());
}

#[test]
fn v5_properties_are_dropped_toward_3_1_1() {
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        pkid: 0,
        payload: Bytes::from_static(b"p"),
        properties: rich_properties(),
    };
    let mut buf = BytesMut::new();
    encode(&Packet::Publish(publish), ProtocolVersion::V3_1_1, &mut buf).unwrap();
    assert_eq!(&buf[..], &[0x30, 0x04, 0x00, 0x01, b't', b'p']);
    let mut buf = BytesMut::new();
    encode(
        &Packet::PubAck(Ack::with_reason(9, reason::NO_MATCHING_SUBSCRIBERS)),
        ProtocolVersion::V3_1_1,
        &mut buf,
    )
    .unwrap();
    assert_eq!(&buf[..], &[0x40, 0x02, 0x00, 0x09]);
}

/// Our 5.0 bytes, read by the codec's own v5 reader: the two agree on every field.
#[test]
fn differential_publish_against_the_codec() {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "sensors/1".into(),
        pkid: 12,
        payload: Bytes::from_static(b"21.5"),
        properties: rich_properties(),
    };
    let mut buf = BytesMut::from(&encode_v5(&Packet::Publish(publish.clone()))[..]);
    let Ok(oracle::Packet::Publish(theirs)) = oracle::Packet::read(&mut buf, None) else {
        panic!("the codec could not read our PUBLISH");
    };
    assert_eq!(&theirs.topic[..], publish.topic.as_bytes());
    assert_eq!(theirs.pkid, 12);
    assert!(theirs.retain);
    assert_eq!(theirs.payload, publish.payload);
    let props = theirs.properties.expect("properties");
    assert_eq!(props.message_expiry_interval, Some(3600));
    assert_eq!(props.content_type.as_deref(), Some("application/json"));
    assert_eq!(props.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(props.user_properties, publish.properties.user_properties);
}

#[test]
fn differential_connack_and_subscribe_against_the_codec() {
    let connack = Packet::ConnAck(ConnAck {
        session_present: false,
        code: reason::SUCCESS,
        properties: Properties {
            receive_maximum: Some(20),
            topic_alias_maximum: Some(8),
            assigned_client_identifier: Some("auto".into()),
            ..Properties::default()
        },
    });
    let mut buf = BytesMut::from(&encode_v5(&connack)[..]);
    let Ok(oracle::Packet::ConnAck(theirs)) = oracle::Packet::read(&mut buf, None) else {
        panic!("the codec could not read our CONNACK");
    };
    let props = theirs.properties.expect("properties");
    assert_eq!(props.receive_max, Some(20));
    assert_eq!(props.topic_alias_max, Some(8));
    assert_eq!(props.assigned_client_identifier.as_deref(), Some("auto"));

    let subscribe = Packet::Subscribe(Subscribe {
        pkid: 3,
        filters: vec![SubscribeFilter {
            filter: "a/+".into(),
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: 1,
        }],
        properties: Properties::default(),
    });
    let mut buf = BytesMut::from(&encode_v5(&subscribe)[..]);
    let Ok(oracle::Packet::Subscribe(theirs)) = oracle::Packet::read(&mut buf, None) else {
        panic!("the codec could not read our SUBSCRIBE");
    };
    assert_eq!(theirs.filters[0].path, "a/+");
    assert!(theirs.filters[0].nolocal);
    assert!(theirs.filters[0].preserve_retain);
}

/// The codec's 5.0 bytes, read by us.
#[test]
fn differential_codec_publish_read_by_us() {
    let mut theirs = oracle::Publish::new(
        "t/1",
        mqttbytes_ng::QoS::ExactlyOnce,
        "payload",
        Some(oracle::PublishProperties {
            message_expiry_interval: Some(9),
            user_properties: vec![("x".into(), "y".into())],
            ..Default::default()
        }),
    );
    theirs.pkid = 77;
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let Packet::Publish(ours) = decode_v5(&buf).unwrap() else {
        panic!("not a PUBLISH")
    };
    assert_eq!(ours.topic, "t/1");
    assert_eq!(ours.pkid, 77);
    assert_eq!(ours.qos, QoS::ExactlyOnce);
    assert_eq!(ours.properties.message_expiry_interval, Some(9));
    assert_eq!(
        ours.properties.user_properties,
        vec![("x".into(), "y".into())]
    );
}

proptest! {
    #[test]
    fn v5_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut decoder = v5_decoder();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    }

    #[test]
    fn v5_publish_round_trips(
        topic in "[a-z/]{1,12}",
        payload in proptest::collection::vec(any::<u8>(), 0..100),
        expiry in proptest::option::of(any::<u32>()),
        users in proptest::collection::vec(("[a-z]{0,5}", "[a-z]{0,5}"), 0..4),
        ids in proptest::collection::vec(1u32..268_435_455, 0..3),
    ) {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic,
            pkid: 1,
            payload: payload.into(),
            properties: Properties {
                message_expiry_interval: expiry,
                user_properties: users,
                subscription_identifiers: ids,
                ..Properties::default()
            },
        };
        prop_assert_eq!(decode_v5(&encode_v5(&Packet::Publish(publish.clone()))), Ok(Packet::Publish(publish)));
    }
}
