//! Writes the seed corpus of both fuzz targets from real packets, encoded by the project's
//! own codec: `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.
//!
//! * `corpus/decode/seed-*`: single packets of every type (3.1, 3.1.1 and 5.0 shapes) and
//!   whole client sessions (a CONNECT, then what follows it);
//! * `corpus/connection/seed-*`: client sessions, each behind a plan byte (see
//!   `fuzz_targets/connection.rs`: chunk count in bits 0-1, close at the end in bit 7).
//!
//! Files are named after what they hold and rewritten in place; files the fuzzer added
//! (named by their hash) are left alone.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use protocol::{
    encode, reason, Ack, Auth, ConnAck, Connect, Disconnect, Packet, Properties,
    ProtocolVersion::{self, V3_1, V3_1_1, V5},
    Publish, QoS, SubAck, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe, Will,
};

fn bytes_of(packets: &[Packet], version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for packet in packets {
        encode(packet, version, &mut buf).unwrap_or_else(|e| panic!("encode {packet:?}: {e}"));
    }
    buf.to_vec()
}

fn user(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn connect(version: ProtocolVersion, full: bool) -> Packet {
    connect_as(version, full, "seed-dev")
}

fn connect_as(version: ProtocolVersion, full: bool, client_id: &str) -> Packet {
    let v5 = version == V5;
    let will = full.then(|| Will {
        topic: "will/dev".into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: if v5 {
            Properties {
                will_delay_interval: Some(5),
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                response_topic: Some("will/reply".into()),
                correlation_data: Some(Bytes::from_static(&[1, 2])),
                payload_format_indicator: Some(1),
                user_properties: user(&[("k", "v")]),
                ..Properties::default()
            }
        } else {
            Properties::default()
        },
    });
    Packet::Connect(Box::new(Connect {
        version,
        client_id: client_id.into(),
        clean_session: true,
        keep_alive: 30,
        will,
        username: full.then(|| "user".into()),
        password: full.then(|| Bytes::from_static(&[0xff, 0x00, b'p'])),
        properties: if v5 {
            Properties {
                session_expiry_interval: Some(60),
                receive_maximum: Some(10),
                maximum_packet_size: Some(4096),
                topic_alias_maximum: Some(5),
                request_problem_information: Some(1),
                request_response_information: Some(1),
                user_properties: user(&[("a", "1"), ("a", "2")]),
                ..Properties::default()
            }
        } else {
            Properties::default()
        },
    }))
}

fn publish(qos: QoS, pkid: u16, properties: Properties) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: qos == QoS::AtLeastOnce,
        topic: "seed/t".into(),
        pkid,
        payload: Bytes::from_static(b"hello"),
        properties,
    })
}

fn publish_properties() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("application/json".into()),
        response_topic: Some("seed/reply".into()),
        correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
        topic_alias: Some(1),
        user_properties: user(&[("b", "2"), ("a", "1")]),
        ..Properties::default()
    }
}

fn subscribe(v5: bool) -> Packet {
    let mut shared = SubscribeFilter::new("$share/g/seed/#", QoS::AtLeastOnce);
    shared.retain_handling = 2;
    let mut options = SubscribeFilter::new("seed/+", QoS::ExactlyOnce);
    if v5 {
        options.no_local = true;
        options.retain_as_published = true;
        options.retain_handling = 1;
    }
    Packet::Subscribe(Subscribe {
        pkid: 1,
        filters: vec![
            SubscribeFilter::new("seed/t", QoS::AtMostOnce),
            options,
            shared,
        ],
        properties: if v5 {
            Properties {
                subscription_identifiers: vec![7],
                user_properties: user(&[("s", "1")]),
                ..Properties::default()
            }
        } else {
            Properties::default()
        },
    })
}

fn unsubscribe(v5: bool) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        pkid: 2,
        filters: vec!["seed/t".into(), "seed/+".into()],
        properties: if v5 {
            Properties {
                user_properties: user(&[("u", "1")]),
                ..Properties::default()
            }
        } else {
            Properties::default()
        },
    })
}

fn reason_props() -> Properties {
    Properties {
        reason_string: Some("why".into()),
        user_properties: user(&[("r", "1")]),
        ..Properties::default()
    }
}

/// Every packet type, as `version` writes it.
fn single_packets(version: ProtocolVersion) -> Vec<(&'static str, Packet)> {
    let v5 = version == V5;
    let props = |p: Properties| if v5 { p } else { Properties::default() };
    let ack = |pkid: u16, code: u8| Ack {
        pkid,
        reason: code,
        properties: props(reason_props()),
    };
    vec![
        (
            "connack",
            Packet::ConnAck(ConnAck {
                session_present: true,
                code: reason::SUCCESS,
                properties: props(Properties {
                    receive_maximum: Some(100),
                    topic_alias_maximum: Some(8),
                    maximum_qos: Some(1),
                    retain_available: Some(1),
                    assigned_client_identifier: Some("gen".into()),
                    server_keep_alive: Some(20),
                    wildcard_subscription_available: Some(1),
                    subscription_identifier_available: Some(1),
                    shared_subscription_available: Some(0),
                    ..Properties::default()
                }),
            }),
        ),
        (
            "publish-qos0",
            publish(QoS::AtMostOnce, 0, Properties::default()),
        ),
        (
            "publish-qos1",
            publish(QoS::AtLeastOnce, 10, props(publish_properties())),
        ),
        (
            "publish-qos2",
            publish(QoS::ExactlyOnce, 11, props(publish_properties())),
        ),
        (
            "puback",
            Packet::PubAck(ack(10, reason::NO_MATCHING_SUBSCRIBERS)),
        ),
        ("pubrec", Packet::PubRec(ack(11, reason::SUCCESS))),
        ("pubrel", Packet::PubRel(ack(11, reason::SUCCESS))),
        (
            "pubcomp",
            Packet::PubComp(ack(11, reason::PACKET_IDENTIFIER_NOT_FOUND)),
        ),
        ("subscribe", subscribe(v5)),
        (
            "suback",
            Packet::SubAck(SubAck {
                pkid: 1,
                return_codes: vec![0, 2, reason::UNSPECIFIED_ERROR],
                properties: props(reason_props()),
            }),
        ),
        ("unsubscribe", unsubscribe(v5)),
        (
            "unsuback",
            Packet::UnsubAck(UnsubAck {
                pkid: 2,
                reasons: if v5 { vec![0, 0x11] } else { Vec::new() },
                properties: props(reason_props()),
            }),
        ),
        ("pingreq", Packet::PingReq),
        ("pingresp", Packet::PingResp),
        (
            "disconnect",
            Packet::Disconnect(Disconnect {
                reason: if v5 { reason::DISCONNECT_WITH_WILL } else { 0 },
                properties: props(Properties {
                    session_expiry_interval: Some(0),
                    reason_string: Some("bye".into()),
                    ..Properties::default()
                }),
            }),
        ),
    ]
}

/// A client's whole session: CONNECT, subscribe, publish at every QoS, the QoS 2
/// release, ping, unsubscribe, disconnect.
fn session(version: ProtocolVersion, full_connect: bool) -> Vec<u8> {
    session_as(version, full_connect, "seed-dev")
}

fn session_as(version: ProtocolVersion, full_connect: bool, client_id: &str) -> Vec<u8> {
    let v5 = version == V5;
    let props = if v5 {
        publish_properties()
    } else {
        Properties::default()
    };
    let mut packets = vec![
        connect_as(version, full_connect, client_id),
        subscribe(v5),
        publish(QoS::AtMostOnce, 0, Properties::default()),
        publish(QoS::AtLeastOnce, 10, props.clone()),
        publish(QoS::ExactlyOnce, 11, props),
        Packet::PubRel(Ack::new(11)),
        Packet::PubAck(Ack::new(1)),
        Packet::PingReq,
    ];
    if v5 {
        // The alias defined above, used with an empty topic.
        let mut aliased = publish(QoS::AtLeastOnce, 12, Properties::default());
        if let Packet::Publish(p) = &mut aliased {
            p.topic.clear();
            p.properties.topic_alias = Some(1);
        }
        packets.push(aliased);
    }
    packets.push(unsubscribe(v5));
    packets.push(Packet::Disconnect(Disconnect::new(reason::SUCCESS)));
    bytes_of(&packets, version)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let decode = root.join("decode");
    let connection = root.join("connection");
    fs::create_dir_all(&decode).unwrap();
    fs::create_dir_all(&connection).unwrap();

    for (tag, version) in [("v31", V3_1), ("v311", V3_1_1), ("v5", V5)] {
        write(
            &decode,
            &format!("{tag}-connect-min"),
            &bytes_of(&[connect(version, false)], version),
        );
        write(
            &decode,
            &format!("{tag}-connect-full"),
            &bytes_of(&[connect(version, true)], version),
        );
        write(&decode, &format!("{tag}-session"), &session(version, true));
        if version == V3_1 {
            continue; // the same packets as 3.1.1 after CONNECT
        }
        for (name, packet) in single_packets(version) {
            write(
                &decode,
                &format!("{tag}-{name}"),
                &bytes_of(&[packet], version),
            );
        }
    }
    let auth = Packet::Auth(Auth {
        reason: reason::CONTINUE_AUTHENTICATION,
        properties: Properties {
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(Bytes::from_static(b"client-first")),
            ..Properties::default()
        },
    });
    write(&decode, "v5-auth", &bytes_of(&[auth.clone()], V5));

    // Sessions for the connection target, behind plan bytes: one chunk and closed at the
    // end, four chunks and left open (the broker's timers end it).
    for (tag, version) in [("v31", V3_1), ("v311", V3_1_1), ("v5", V5)] {
        for (plan, how) in [(0x80u8, "whole-close"), (0x03, "chunks-open")] {
            for (full, what) in [(true, "full"), (false, "min")] {
                let mut bytes = vec![plan];
                bytes.extend(session(version, full));
                write(&connection, &format!("{tag}-{what}-{how}"), &bytes);
            }
        }
    }
    // A connection that ends without DISCONNECT (the will goes out), and 5.0 AUTH after
    // CONNECT (a protocol error), and an unsupported protocol level (CONNACK 0x01).
    let mut abrupt = vec![0x81];
    abrupt.extend(bytes_of(
        &[
            connect(V3_1_1, true),
            publish(QoS::AtLeastOnce, 3, Properties::default()),
        ],
        V3_1_1,
    ));
    write(&connection, "v311-no-disconnect", &abrupt);
    let mut with_auth = vec![0x80];
    with_auth.extend(bytes_of(&[connect(V5, false), auth], V5));
    write(&connection, "v5-auth-after-connect", &with_auth);
    let mut level6 = vec![0x80];
    level6.extend(bytes_of(&[connect(V3_1_1, false)], V3_1_1));
    level6[1 + 2 + 2 + 4] = 6; // plan, fixed header, name length, "MQTT": the level byte
    write(&connection, "level-6", &level6);

    // Two clients on one broker (plan bit 6): the bytes are split in half, so the shorter
    // side is padded with PINGREQs (harmless, and not read at all after a DISCONNECT).
    let pair = |plan: u8, a: Vec<u8>, b: Vec<u8>| {
        let half = a.len().max(b.len()).next_multiple_of(2);
        let mut bytes = vec![plan];
        for mut side in [a, b] {
            while side.len() < half {
                side.extend_from_slice(&[0xC0, 0x00]);
            }
            side.truncate(half);
            bytes.extend(side);
        }
        bytes
    };
    // The same client id, 3.1.1 then 5.0: a takeover across versions.
    write(
        &connection,
        "pair-takeover",
        &pair(0xC0, session(V3_1_1, true), session(V5, true)),
    );
    // Two members of the shared group `$share/g/seed/#`, each publishing to it.
    write(
        &connection,
        "pair-shared",
        &pair(
            0xC1,
            session_as(V5, false, "seed-a"),
            session_as(V5, false, "seed-b"),
        ),
    );
    // A will subscriber, and a client that leaves without DISCONNECT (its will goes out).
    let watcher = bytes_of(
        &[
            connect_as(V3_1_1, false, "seed-watch"),
            Packet::Subscribe(Subscribe {
                pkid: 1,
                filters: vec![SubscribeFilter::new("will/#", QoS::AtLeastOnce)],
                properties: Properties::default(),
            }),
        ],
        V3_1_1,
    );
    let leaver = bytes_of(&[connect_as(V5, true, "seed-leaver")], V5);
    write(&connection, "pair-will", &pair(0x42, watcher, leaver));

    let count = |dir: &Path| fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    println!(
        "seeds written: {} files in {}, {} in {}",
        count(&decode),
        decode.display(),
        count(&connection),
        connection.display()
    );
}
